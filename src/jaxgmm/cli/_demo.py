"""``jaxgmm demo`` (``make demo``): the seed notebook's question, end to end.

Four blobs of 30, 50, 20 and 5 points, and we do not know there are four: every K from
1 to 8 and every covariance type is fitted (5 parallel restarts each, one compiled
program per covariance type), BIC chooses, and the chosen model is printed beside the
truth.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from ._common import add_command, table_lists, top_models
from ._record import FitRecord

EXAMPLES = """
jaxgmm demo
jaxgmm demo -o demo.png --seed 3
jaxgmm demo --max-k 6 --criterion icl --json
"""


def register(sub) -> None:
    help = "the seed's problem end to end: four blobs, K unknown, chosen by BIC"
    p = add_command(sub, "demo", help, EXAMPLES, run)
    p.add_argument(
        "-o", "--output", default="jaxgmm-demo.png", help="the picture to write: .png, .svg or .pdf"
    )
    p.add_argument("--seed", type=int, default=0, help="data and key seed (default 0)")
    p.add_argument("--n-init", type=int, default=5, help="restarts per model (default 5)")
    p.add_argument("--max-k", type=int, default=8, help="largest K tried (default 8)")
    p.add_argument("--criterion", default="bic", choices=("bic", "aic", "icl"))
    p.add_argument("--dpi", type=int, default=100)
    p.add_argument("--json", action="store_true", help="print the outcome as JSON")


def report(seed: int = 0, n_init: int = 5, max_k: int = 8, criterion: str = "bic", quiet=False):
    """Fit the sweep on the seed's data and print the report; returns (model, X, y)."""
    # imported here: every command loads this module, and these take seconds
    import jax
    from scipy.optimize import linear_sum_assignment
    from sklearn.metrics import adjusted_rand_score

    from .._datasets import SEED_CENTERS, SEED_SIZES, make_seed_blobs

    say = (lambda *a: None) if quiet else print
    X, y = make_seed_blobs(seed)
    say(f"jaxgmm demo: the seed's data, {X.shape[0]} points in blobs of {SEED_SIZES}")
    say(
        f"K unknown: fitting K=1..{max_k} x mclust's 14 covariance families x {n_init} "
        f"restarts; devices {jax.devices()}"
    )
    from .. import GaussianMixtureIC

    model = GaussianMixtureIC(max_k, n_init=n_init, criterion=criterion, random_state=seed)
    t0 = time.perf_counter()
    model.fit(X)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    model.fit(X)
    warm = time.perf_counter() - t0

    table = table_lists(model.criterion_)
    say()
    chosen = (model.covariance_type_, model.n_components_)
    say(top_models(table, criterion, chosen, 5).replace("(-v shows all)", "(--json has all)"))
    say(_best_by_k(table, criterion))

    best = model.best_estimator_
    say()
    say(
        f"chosen: K={model.n_components_}, covariance '{model.covariance_type_}', "
        f"{best.n_iter_} iterations, converged {best.converged_}"
    )
    true_w = np.asarray(SEED_SIZES) / sum(SEED_SIZES)
    cost = ((best.means_[:, None, :] - SEED_CENTERS[None, :, :]) ** 2).sum(-1)
    rows, cols = linear_sum_assignment(cost)
    # Components are numbered as the model (and the plot) number them; each is
    # matched to the true blob whose centre is nearest.
    say("component  true blob  weight (true)     mean                 true mean")
    for r, c in sorted(zip(rows, cols, strict=True)):
        m, t = best.means_[r], SEED_CENTERS[c]
        say(
            f"{r:>9}  {c:>9}  {best.weights_[r]:.3f} ({true_w[c]:.3f})"
            f"   [{m[0]:7.3f} {m[1]:7.3f}]   [{t[0]:5.1f} {t[1]:5.1f}]"
        )
    say()
    say(f"log-likelihood per point: {best.score(X):.5f}")
    ari = adjusted_rand_score(y, model.predict(X))
    say(f"adjusted Rand index, true blobs vs predicted: {ari:.3f}")
    say(f"wall time: {first:.2f} s first call (compiling), {warm * 1e3:.1f} ms warm")
    return model, X, y


def run(args) -> int:
    from sklearn.metrics import adjusted_rand_score

    quiet = args.quiet or args.json
    model, x, y = report(args.seed, args.n_init, args.max_k, args.criterion, quiet)
    best = model.best_estimator_
    summary = {
        "n_components": int(model.n_components_),
        "covariance_type": model.covariance_type_,
        "adjusted_rand_index": float(adjusted_rand_score(y, model.predict(x))),
        # numbered as the printed table and the plot number them
        "weights": best.weights_.tolist(),
        "means": best.means_.tolist(),
        "criterion": args.criterion,
        "table": table_lists(model.criterion_),  # every model the sweep fitted
        "png": None,
    }
    from ._figures import Request, classification
    from ._plots import pyplot, save_figure
    from ._views import fitted

    try:
        pyplot()
    except ImportError as e:
        print(f"jaxgmm demo: no plot: {e}", file=sys.stderr)
        if args.json:
            print(json.dumps(summary))
        return 0
    record = FitRecord(
        columns=["x0", "x1"], criterion=args.criterion, table=table_lists(model.criterion_)
    )
    sweep = (record.table, args.criterion, (best.covariance_type, best.n_components))
    request = Request(title="the seed's four blobs", dpi=args.dpi, sweep=sweep)
    fig = classification(fitted(best, record, x), request)
    save_figure(fig, args.output)
    if args.json:
        print(json.dumps({**summary, "png": str(args.output)}))
    elif not args.quiet:
        print(f"wrote {args.output}")
    return 0


def _best_by_k(table: dict, criterion: str) -> str:
    """The best criterion value at each K, over the families: how the choice of K
    looks (one line, degenerate fits left out)."""
    ks = np.asarray(table["n_components"])
    values = np.where(table["degenerate"], np.inf, np.asarray(table[criterion], np.float64))
    best = {int(k): values[ks == k].min() for k in sorted(set(ks.tolist()))}
    cells = "  ".join(f"{k}: {v:.1f}" for k, v in best.items() if np.isfinite(v))
    return f"best {criterion.upper()} at each K:  {cells}"
