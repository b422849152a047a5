"""The seed notebook's problem, end to end: ``python -m jaxgmm.demo`` (``make demo``).

Four blobs of 30, 50, 20 and 5 points; eight EM restarts fitted in parallel from
``jax.random.split(key, 8)``; the best one printed beside the truth.
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np
from scipy.optimize import linear_sum_assignment

from .datasets import SEED_CENTERS, SEED_SIZES, make_seed_blobs
from .multistart import best_index, fit_restarts, select


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="data and key seed (default 0)")
    parser.add_argument("--n-init", type=int, default=8, help="parallel restarts (default 8)")
    parser.add_argument("--covariance", default="full", help="covariance type (default full)")
    args = parser.parse_args(argv)

    X, _ = make_seed_blobs(args.seed)
    k = len(SEED_SIZES)
    print(f"jaxgmm demo: the seed's data, {X.shape[0]} points in {k} blobs {SEED_SIZES}")
    print(f"fitting K={k} ({args.covariance} covariances), {args.n_init} restarts in parallel")
    print(f"devices: {jax.devices()}")

    key = jax.random.key(args.seed)
    fit = lambda: fit_restarts(key, X, k, covariance_type=args.covariance, n_init=args.n_init)
    t0 = time.perf_counter()
    jax.block_until_ready(fit())
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    results = jax.block_until_ready(fit())
    warm = time.perf_counter() - t0

    best = select(results, best_index(results))
    weights = np.asarray(best.params.weights)
    means = np.asarray(best.params.means)
    # Match fitted components to the true blobs by distance of the means.
    cost = ((means[:, None, :] - SEED_CENTERS[None, :, :]) ** 2).sum(-1)
    rows, cols = linear_sum_assignment(cost)
    true_w = np.asarray(SEED_SIZES) / sum(SEED_SIZES)

    print()
    print("restart  lower bound  iterations  converged")
    for i in range(args.n_init):
        mark = "  <- best" if i == int(best_index(results)) else ""
        print(
            f"{i:>7}  {float(results.lower_bound[i]):>11.5f}  {int(results.n_iter[i]):>10}"
            f"  {bool(results.converged[i])!s:>9}{mark}"
        )
    print()
    print("component  weight (true)     mean                 true mean")
    for r, c in sorted(zip(rows, cols, strict=True), key=lambda rc: rc[1]):
        m, t = means[r], SEED_CENTERS[c]
        print(
            f"{c:>9}  {weights[r]:.3f} ({true_w[c]:.3f})"
            f"   [{m[0]:7.3f} {m[1]:7.3f}]   [{t[0]:5.1f} {t[1]:5.1f}]"
        )
    err = np.sqrt(cost[rows, cols]).max()
    print()
    print(f"log-likelihood per point: {float(best.lower_bound):.5f}")
    print(f"iterations: {int(best.n_iter)}, converged: {bool(best.converged)}")
    print(f"largest distance of a fitted mean to its true centre: {err:.3f}")
    print(f"wall time: {first:.2f} s first call (compiling), {warm * 1e3:.1f} ms warm")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
