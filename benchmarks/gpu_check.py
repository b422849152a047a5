"""One short check of jaxgmm on a machine with a GPU; writes its results to a JSON file.

    python benchmarks/gpu_check.py [--out gpu_check.json] [--quick]

Checks, each against a reference in the same run:

* float64 on the GPU against the same fit on the CPU (same start, same iterations):
  the largest relative difference of the parameters and of the lower bound;
* float32 precision: a float32 GPU fit against the float64 CPU fit (with TF32
  matrix products the lower bound was 1e-3 off; at full float32 about 1e-6);
* seconds per EM iteration on the GPU (float32 and float64) against scikit-learn on
  the CPU, at N=1M, D=16, K=16, full covariances;
* seconds per iteration for several block sizes (``block_rows``), and the size
  jaxgmm chooses;
* run-to-run determinism: the same fit twice, bit for bit;
* device memory: the peak bytes the GPU held.

Without a GPU it runs on the CPU alone (its comparisons are then trivial), so that
the script itself is tested anywhere; ``--quick`` shrinks the data for that.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import jax
import numpy as np

import jaxgmm


def data(n: int, d: int, k: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d)) * 3
    x = centers[rng.integers(0, k, n)] + rng.normal(size=(n, d))
    start = dict(
        weights_init=np.full(k, 1 / k),
        means_init=centers + 0.5,
        precisions_init=np.tile(np.eye(d), (k, 1, 1)),
    )
    return x, start


def fit_on(device, x, k, start, **kw):
    with jax.default_device(device):
        r = jaxgmm.fit(jax.random.key(0), x, k, covariance_type="full", **start, **kw)
        return jax.device_get(r)


def rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def per_iteration(device, x, k, start, iters=(2, 7), **kw) -> float:
    def timed(m):
        t = time.perf_counter()
        r = fit_on(device, x, k, start, tol=0.0, max_iter=m, **kw)
        np.asarray(r.lower_bound)
        return time.perf_counter() - t

    timed(1)  # compiles
    return (timed(iters[1]) - timed(iters[0])) / (iters[1] - iters[0])


def sklearn_per_iteration(x, k, start, iters=(2, 5)) -> float:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    def timed(m):
        gm = GaussianMixture(k, tol=0.0, max_iter=m, **start)
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            gm.fit(x)
        return time.perf_counter() - t

    return (timed(iters[1]) - timed(iters[0])) / (iters[1] - iters[0])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="gpu_check.json")
    p.add_argument("--quick", action="store_true", help="small data (for a CPU-only run)")
    args = p.parse_args()
    cpu = jax.devices("cpu")[0]
    try:
        gpu = jax.devices("gpu")[0]
    except RuntimeError:
        gpu = cpu
    n, d, k = (20_000, 8, 4) if args.quick else (1_000_000, 16, 16)
    out: dict = {
        "jax": jax.__version__,
        "jaxgmm": jaxgmm.__version__,
        "device": str(gpu.device_kind),
        "platform": gpu.platform,
        "shape": {"n": n, "d": d, "k": k, "covariance": "full"},
    }

    def report(name, value):
        out[name] = value
        print(f"{name}: {value}", flush=True)

    x, start = data(n, d, k)
    small = min(n, 200_000)
    ref = fit_on(cpu, x[:small], k, start, tol=1e-6)
    on_gpu = fit_on(gpu, x[:small], k, start, tol=1e-6)
    report(
        "float64_gpu_vs_cpu",
        {
            "n_iter": [int(on_gpu.n_iter), int(ref.n_iter)],
            "weights": rel(on_gpu.params.weights, ref.params.weights),
            "means": rel(on_gpu.params.means, ref.params.means),
            "covariances": rel(
                on_gpu.params.covariance.covariances, ref.params.covariance.covariances
            ),
            "lower_bound": rel(on_gpu.lower_bound, ref.lower_bound),
        },
    )
    f32 = fit_on(gpu, x[:small].astype(np.float32), k, start, tol=1e-6)
    report(
        "float32_gpu_vs_float64_cpu",
        {
            "lower_bound": rel(f32.lower_bound, ref.lower_bound),
            "means": rel(f32.params.means, ref.params.means),
        },
    )
    again = fit_on(gpu, x[:small].astype(np.float32), k, start, tol=1e-6)
    leaves = zip(jax.tree_util.tree_leaves(f32), jax.tree_util.tree_leaves(again), strict=True)
    same = all(np.array_equal(a, b, equal_nan=True) for a, b in leaves)
    report("deterministic_run_to_run", bool(same))

    timings = {}
    for dtype in (np.float32, np.float64):
        xs = x.astype(dtype)
        timings[np.dtype(dtype).name] = per_iteration(gpu, xs, k, start)
    sk = sklearn_per_iteration(x if args.quick else x[:200_000], k, start)
    sk *= 1 if args.quick else n / 200_000  # scikit-learn's iteration is linear in N
    report(
        "seconds_per_iteration",
        {
            "jaxgmm_gpu": timings,
            "sklearn_cpu_float64": sk,
            "ratio_float64": sk / timings["float64"],
            "ratio_float32": sk / timings["float32"],
        },
    )
    from jaxgmm._rows import block_rows_for

    with jax.default_device(gpu):
        chosen = block_rows_for(n, 1 + d + d * (d + 1) // 2, 4)
    blocks = {}
    for rows in (4096, 16384, 65536, 262144, 1048576):
        if rows <= n:
            blocks[rows] = per_iteration(gpu, x.astype(np.float32), k, start, block_rows=rows)
    report("block_rows_seconds_float32", {"chosen": chosen, "per_iteration": blocks})
    stats = gpu.memory_stats() or {}
    report(
        "device_memory",
        {key: stats.get(key) for key in ("peak_bytes_in_use", "bytes_limit")},
    )
    with open(args.out, "w") as f:
        json.dump(out, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
