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

from .datasets import SEED_CENTERS, SEED_SIZES, make_seed_blobs
from .estimator import GaussianMixtureIC


def _table(table: dict, best: int, criterion: str) -> str:
    lines = [
        f"{'covariance':>10} {'K':>2} {'BIC':>9} {'AIC':>9} {'ICL':>9} {'log-lik':>9}"
        f" {'params':>6} {'iters':>5}"
    ]
    for i in range(len(table["bic"])):
        mark = f"  <- lowest {criterion.upper()}" if i == best else ""
        lines.append(
            f"{table['covariance_type'][i]:>10} {table['n_components'][i]:>2}"
            f" {table['bic'][i]:9.2f} {table['aic'][i]:9.2f} {table['icl'][i]:9.2f}"
            f" {table['log_likelihood'][i]:9.2f} {table['n_parameters'][i]:>6}"
            f" {table['n_iter'][i]:>5}{mark}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="data and key seed (default 0)")
    parser.add_argument("--n-init", type=int, default=5, help="restarts per model (default 5)")
    parser.add_argument("--max-k", type=int, default=8, help="largest K tried (default 8)")
    parser.add_argument("--criterion", default="bic", choices=("bic", "aic", "icl"))
    args = parser.parse_args(argv)

    X, y = make_seed_blobs(args.seed)
    print(f"jaxgmm demo: the seed's data, {X.shape[0]} points in blobs of {SEED_SIZES}")
    print(
        f"K unknown: fitting K=1..{args.max_k} x 4 covariance types x {args.n_init} "
        f"restarts, one compiled program per covariance type; devices {jax.devices()}"
    )
    model = GaussianMixtureIC(
        args.max_k, n_init=args.n_init, criterion=args.criterion, random_state=args.seed
    )
    t0 = time.perf_counter()
    model.fit(X)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    model.fit(X)
    warm = time.perf_counter() - t0

    table = {k: np.asarray(v) for k, v in dict(model.criterion_).items()}
    crit = table[args.criterion]
    print()
    print(_table(table, int(np.argmin(crit)), args.criterion))

    best = model.best_estimator_
    print()
    print(
        f"chosen: K={model.n_components_}, covariance '{model.covariance_type_}', "
        f"{best.n_iter_} iterations, converged {best.converged_}"
    )
    true_w = np.asarray(SEED_SIZES) / sum(SEED_SIZES)
    cost = ((best.means_[:, None, :] - SEED_CENTERS[None, :, :]) ** 2).sum(-1)
    rows, cols = linear_sum_assignment(cost)
    print("component  weight (true)     mean                 true mean")
    for r, c in sorted(zip(rows, cols, strict=True), key=lambda rc: rc[1]):
        m, t = best.means_[r], SEED_CENTERS[c]
        print(
            f"{c:>9}  {best.weights_[r]:.3f} ({true_w[c]:.3f})"
            f"   [{m[0]:7.3f} {m[1]:7.3f}]   [{t[0]:5.1f} {t[1]:5.1f}]"
        )
    print()
    print(f"log-likelihood per point: {best.score(X):.5f}")
    ari = adjusted_rand_score(y, model.predict(X))
    print(f"adjusted Rand index, true blobs vs predicted: {ari:.3f}")
    print(f"wall time: {first:.2f} s first call (compiling), {warm * 1e3:.1f} ms warm")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
