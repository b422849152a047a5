"""EM iteration speed at every shape, jaxgmm against scikit-learn in the same run.

    python benchmarks/bench_shapes.py [--iters 10] [--repeat 2] [--only 0,3]
                                      [--skip-em] [--skip-predict]

For each shape of the grid (issue 15's six, and two more that users meet: full with
D=128 and diag with K=64) both libraries start from the same parameters (means drawn
from the rows, identity covariances, equal weights) with ``tol=0``, so both run the
same iterations; seconds per iteration are ``(t(1 + iters) - t(1)) / iters``, each
time the best of ``--repeat``, jaxgmm's programs compiled beforehand. Then the
fitted estimators' ``predict``, ``predict_proba`` and ``score_samples`` on 1k, 10k and
100k rows (D=2, K=3, full), each the best of several calls.

scikit-learn is measured at its best: OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE, which
some machines set and which slow numpy's BLAS, are removed from this process's
environment before numpy loads. Ratios are scikit-learn's time over jaxgmm's.
"""

from __future__ import annotations

import os
import sys

_SLOW_BLAS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
if any(v in os.environ for v in _SLOW_BLAS):
    env = {k: v for k, v in os.environ.items() if k not in _SLOW_BLAS}
    os.execve(sys.executable, [sys.executable, *sys.argv], env)

import argparse  # noqa: E402
import functools  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402
from bench_em import best_of, jax_fit, make_data, per_iteration, sklearn_fit, start  # noqa: E402
from sklearn.mixture import GaussianMixture as SkGM  # noqa: E402

import jaxgmm  # noqa: E402

#: (covariance type, N, D, K, dtype): issue 15's grid, the reference shape
#: (benchmarks/bench_em.py's) in both dtypes, then two shapes of our choice.
SHAPES = [
    ("full", 100_000, 2, 4, np.float64),
    ("diag", 100_000, 16, 16, np.float64),
    ("tied", 100_000, 16, 16, np.float64),
    ("spherical", 100_000, 16, 16, np.float64),
    ("full", 20_000, 64, 8, np.float64),
    ("full", 200_000, 8, 32, np.float32),
    ("full", 100_000, 16, 16, np.float64),
    ("full", 100_000, 16, 16, np.float32),
    ("full", 10_000, 128, 4, np.float64),
    ("diag", 100_000, 16, 64, np.float64),
]


def em_grid(shapes, iters, repeat):
    header = (
        f"{'#':>2} {'type':9} {'N':>7} {'D':>4} {'K':>3} {'dtype':7}"
        f" {'sklearn ms/iter':>15} {'jaxgmm ms/iter':>14} {'ratio':>7}"
    )
    print(header)
    print("-" * len(header))
    ratios = {}
    for i, (ctype, n, d, k, dtype) in shapes:
        x = make_data(n, d, k, dtype)
        init = start(x, k, covariance_type=ctype)
        fits = [functools.partial(f, covariance_type=ctype) for f in (sklearn_fit, jax_fit)]
        t_sk, t_jx = (per_iteration(f, x, k, iters, init, repeat) for f in fits)
        ratios[i] = t_sk / t_jx
        print(
            f"{i:>2} {ctype:9} {n:>7} {d:>4} {k:>3} {np.dtype(dtype).name:7}"
            f" {1e3 * t_sk:15.1f} {1e3 * t_jx:14.1f} {t_sk / t_jx:6.1f}x",
            flush=True,
        )
    return ratios


def predict_grid(rows=(1_000, 10_000, 100_000), d=2, k=3):
    print(f"\nfitted estimators (full, D={d}, K={k}), ms per call, best of several")
    header = f"{'rows':>7} {'method':14} {'sklearn':>9} {'jaxgmm':>9} {'ratio':>7}"
    print(header)
    print("-" * len(header))
    x_fit = make_data(2_000, d, k, np.float64)
    sk = SkGM(k, random_state=0).fit(x_fit)
    jx = jaxgmm.GaussianMixture(k, random_state=0).fit(x_fit)
    for n in rows:
        x = make_data(n, d, k, np.float64, seed=2)
        repeat = max(5, 200_000 // n)
        for method in ("predict", "predict_proba", "score_samples"):
            getattr(jx, method)(x)  # compile
            t_sk = best_of(lambda m=method, x=x: getattr(sk, m)(x), repeat)
            t_jx = best_of(lambda m=method, x=x: getattr(jx, m)(x), repeat)
            print(
                f"{n:>7} {method:14} {1e3 * t_sk:9.3f} {1e3 * t_jx:9.3f} {t_sk / t_jx:6.2f}x",
                flush=True,
            )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--only", help="comma-separated shape numbers (default: all)")
    parser.add_argument("--skip-em", action="store_true")
    parser.add_argument("--skip-predict", action="store_true")
    args = parser.parse_args(argv)
    chosen = range(len(SHAPES)) if args.only is None else map(int, args.only.split(","))
    shapes = [(i, SHAPES[i]) for i in chosen]
    print(f"jaxgmm {jaxgmm.__version__}, jax {jax.__version__}, devices {jax.devices()}")
    print(f"{args.iters} iterations, tol=0, best of {args.repeat}\n")
    if not args.skip_em:
        em_grid(shapes, args.iters, args.repeat)
    if not args.skip_predict:
        predict_grid()


if __name__ == "__main__":
    main()
