"""EM iteration speed of jaxgmm against scikit-learn, measured in the same run.

    python benchmarks/bench_em.py [--n 100000] [--d 16] [--k 16] [--iters 20]

Prints, for float32 and float64 on the same data (full covariances):

* seconds per EM iteration of jaxgmm and of scikit-learn's GaussianMixture, started
  from the same parameters with ``tol=0`` so both run the same number of iterations;
* the ratio, the achieved GFLOP/s (4 N K D^2 flops per full-covariance iteration) and
  that as a fraction of a dense matmul's GFLOP/s measured here;
* 8 restarts in parallel (one vmapped program) against 8 sequential scikit-learn fits.

scikit-learn is measured at its best: OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE, which
some machines set and which slow numpy's BLAS, are removed from this process's
environment before numpy loads.
"""

from __future__ import annotations

import os
import sys

_SLOW_BLAS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
if any(v in os.environ for v in _SLOW_BLAS):
    env = {k: v for k, v in os.environ.items() if k not in _SLOW_BLAS}
    os.execve(sys.executable, [sys.executable, *sys.argv], env)

import argparse  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.mixture import GaussianMixture  # noqa: E402

import jaxgmm  # noqa: E402
from jaxgmm._typing import x64_scope  # noqa: E402


def best_of(fn, repeat=3):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return min(times)


def matmul_gflops(dtype, n=2048):
    with x64_scope(dtype):
        a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)), dtype)
        f = jax.jit(lambda a: a @ a)
        jax.block_until_ready(f(a))
        return 2 * n**3 / best_of(lambda: f(a), 5) / 1e9


def make_data(n, d, k, dtype, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=4.0, size=(k, d))
    x = centers[rng.integers(0, k, n)] + rng.standard_normal((n, d))
    return x.astype(dtype)


def start(x, k, seed=1, covariance_type="full"):
    """Equal weights, means drawn from the rows, identity precisions in the type's
    shape (scikit-learn's ``precisions_init`` convention, which jaxgmm shares)."""
    rng = np.random.default_rng(seed)
    d = x.shape[1]
    means = x[rng.choice(x.shape[0], k, replace=False)].astype(np.float64)
    precisions = {
        "full": lambda: np.stack([np.eye(d)] * k),
        "tied": lambda: np.eye(d),
        "diag": lambda: np.ones((k, d)),
        "spherical": lambda: np.ones(k),
    }[covariance_type]()
    return np.full(k, 1.0 / k), means, precisions


def sklearn_fit(x, k, max_iter, init, n_init=1, init_params="kmeans", covariance_type="full"):
    w0, m0, p0 = init if init is not None else (None, None, None)
    gm = GaussianMixture(
        k,
        covariance_type=covariance_type,
        max_iter=max_iter,
        tol=0.0,
        n_init=n_init,
        init_params=init_params,
        weights_init=w0,
        means_init=m0,
        precisions_init=p0,
        random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return gm.fit(x)


def jax_fit(x, k, max_iter, init, n_init=1, init_params="kmeans", covariance_type="full"):
    w0, m0, p0 = init if init is not None else (None, None, None)
    return jaxgmm.fit_restarts(
        jax.random.key(0),
        x,
        k,
        covariance_type=covariance_type,
        n_init=n_init,
        init_params=init_params,
        weights_init=w0,
        means_init=m0,
        precisions_init=p0,
        max_iter=max_iter,
        tol=0.0,
    )


def per_iteration(fit, x, k, iters, init, repeat=3):
    """Seconds per iteration: (time of 1 + iters iterations - time of 1) / iters,
    each the best of ``repeat``."""
    for m in (1, 1 + iters):  # compile both programs first
        jax.block_until_ready(fit(x, k, m, init))
    t_long = best_of(lambda: fit(x, k, 1 + iters, init), repeat)
    t_short = best_of(lambda: fit(x, k, 1, init), repeat)
    return (t_long - t_short) / iters


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--d", type=int, default=16)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--restarts", type=int, default=8)
    args = parser.parse_args(argv)
    n, d, k = args.n, args.d, args.k
    flops = 4 * n * k * d * d

    try:
        from threadpoolctl import threadpool_info

        blas = [
            (i["internal_api"], i.get("architecture"), i["num_threads"]) for i in threadpool_info()
        ]
    except ImportError:  # pragma: no cover
        blas = "threadpoolctl not installed"
    print(f"jaxgmm {jaxgmm.__version__}, jax {jax.__version__}, devices {jax.devices()}")
    print(f"numpy BLAS: {blas}")
    print(f"N={n} D={d} K={k} full covariance, {args.iters} iterations, tol=0\n")

    header = (
        f"{'dtype':8} {'sklearn s/iter':>15} {'jaxgmm s/iter':>14} {'speed-up':>9}"
        f" {'GFLOP/s':>8} {'matmul GFLOP/s':>15} {'of matmul':>10}"
    )
    print(header)
    print("-" * len(header))
    rows = {}
    for dtype in (np.float32, np.float64):
        x = make_data(n, d, k, dtype)
        init = start(x, k)
        t_sk = per_iteration(sklearn_fit, x, k, args.iters, init)
        t_jx = per_iteration(jax_fit, x, k, args.iters, init)
        peak = matmul_gflops(dtype)
        gflops = flops / t_jx / 1e9
        rows[dtype] = t_sk / t_jx
        print(
            f"{np.dtype(dtype).name:8} {t_sk:15.4f} {t_jx:14.4f} {t_sk / t_jx:8.1f}x"
            f" {gflops:8.1f} {peak:15.1f} {gflops / peak:9.1%}"
        )

    r = args.restarts
    print(f"\n{r} restarts, random_from_data init, {args.iters} iterations each")
    print(f"{'dtype':8} {'sklearn (seq.) s':>17} {'jaxgmm (vmap) s':>16} {'speed-up':>9}")
    for dtype in (np.float32, np.float64):
        x = make_data(n, d, k, dtype)
        fit_sk = lambda x=x: sklearn_fit(x, k, args.iters, None, r, "random_from_data")
        fit_jx = lambda x=x: jax_fit(x, k, args.iters, None, r, "random_from_data")
        jax.block_until_ready(fit_jx())
        t_sk, t_jx = best_of(fit_sk, 1), best_of(fit_jx, 2)
        print(f"{np.dtype(dtype).name:8} {t_sk:17.3f} {t_jx:16.3f} {t_sk / t_jx:8.1f}x")
    return rows


if __name__ == "__main__":
    main()
