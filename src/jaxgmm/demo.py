"""The seed notebook's question, end to end: ``python -m jaxgmm.demo`` (``make demo``).

Four blobs of 30, 50, 20 and 5 points, and we do not know there are four: every K from
1 to 8 and every covariance type is fitted (5 parallel restarts each, one compiled
program per covariance type), BIC chooses, and the chosen model is printed beside the
truth.
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score

from ._mixture_ic import GaussianMixtureIC
from .datasets import SEED_CENTERS, SEED_SIZES, make_seed_blobs


def criterion_table(table: dict, criterion: str, chosen: tuple[str, int]) -> str:
    """A sweep's table as text, the chosen (covariance type, K) row marked."""
    types, ks = np.asarray(table["covariance_type"]), np.asarray(table["n_components"])
    best = int(np.flatnonzero((types == chosen[0]) & (ks == chosen[1]))[0])
    lines = [
        f"{'covariance':>10} {'K':>2} {'BIC':>10} {'AIC':>10} {'ICL':>10} {'log-lik':>10}"
        f" {'params':>6} {'iters':>5}"
    ]
    degenerate = table.get("degenerate", np.zeros(len(table["bic"]), bool))
    for i in range(len(table["bic"])):
        mark = f"  <- chosen (lowest {criterion.upper()})" if i == best else ""
        if degenerate[i]:
            mark += "  degenerate: a component on too few rows"
        lines.append(
            f"{table['covariance_type'][i]:>10} {table['n_components'][i]:>2}"
            f" {table['bic'][i]:10.2f} {table['aic'][i]:10.2f} {table['icl'][i]:10.2f}"
            f" {table['log_likelihood'][i]:10.2f} {table['n_parameters'][i]:>6}"
            f" {table['n_iter'][i]:>5}{mark}"
        )
    return "\n".join(lines)


def run(seed: int = 0, n_init: int = 5, max_k: int = 8, criterion: str = "bic", quiet=False):
    """Fit the sweep on the seed's data and print the report; returns (model, X, y)."""
    say = (lambda *a: None) if quiet else print
    X, y = make_seed_blobs(seed)
    say(f"jaxgmm demo: the seed's data, {X.shape[0]} points in blobs of {SEED_SIZES}")
    say(
        f"K unknown: fitting K=1..{max_k} x 4 covariance types x {n_init} "
        f"restarts, one compiled program per covariance type; devices {jax.devices()}"
    )
    model = GaussianMixtureIC(max_k, n_init=n_init, criterion=criterion, random_state=seed)
    t0 = time.perf_counter()
    model.fit(X)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    model.fit(X)
    warm = time.perf_counter() - t0

    table = {k: model.criterion_[k] for k in model.criterion_.dtype.names}
    say()
    say(criterion_table(table, criterion, (model.covariance_type_, model.n_components_)))

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="data and key seed (default 0)")
    parser.add_argument("--n-init", type=int, default=5, help="restarts per model (default 5)")
    parser.add_argument("--max-k", type=int, default=8, help="largest K tried (default 8)")
    parser.add_argument("--criterion", default="bic", choices=("bic", "aic", "icl"))
    args = parser.parse_args(argv)
    run(args.seed, args.n_init, args.max_k, args.criterion)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
