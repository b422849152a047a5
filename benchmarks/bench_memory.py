"""Peak memory of a fit, jaxgmm against scikit-learn, measured in the same run.

    python benchmarks/bench_memory.py [--n 4000000] [--d 8] [--k 5] [--wide 300x2000]

Each measurement runs in a fresh child process: it makes the data, notes its resident
set size (the baseline: interpreter, libraries and the data itself), fits, and reports
the peak RSS above that baseline as a multiple of the data's size. Rows:

* tall data, N x D float64 and float32, K components, full covariances;
* wide data (``--wide NxD``, K=2, full): the expanded features phi(x) have
  D(D+1)/2 columns, which is what makes wide data expensive for the fast form.

jaxgmm is measured twice, each time in a fresh process: with an empty program cache
(``cold``: the fit compiles its program, which alone takes ~300-400 MB however small the
data, before the data is uploaded) and with the program cached (``warm``: loaded from
jaxgmm's program cache, as in every later process on the same machine).

Iterations are capped (``--iters``, default 5, ``tol=0``): peak memory does not grow
with them, and the run stays short.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

CHILD = r"""
import json, resource, sys, time, warnings
import numpy as np
spec = json.loads(sys.argv[1])

def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

def peak_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024

if spec["lib"] == "jaxgmm":
    import jax, jaxgmm
    Model = jaxgmm.GaussianMixture
else:
    from sklearn.mixture import GaussianMixture as Model
rng = np.random.default_rng(0)
n, d, k = spec["n"], spec["d"], spec["k"]
X = rng.standard_normal((n, d)).astype(spec["dtype"])
X[: n // 2] += 3.0
# the baseline: the high-water mark so far is reset, so that VmHWM is the fit's peak
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
base = rss_mb()
warnings.simplefilter("ignore")
t0 = time.perf_counter()
m = Model(k, covariance_type="full", max_iter=spec["iters"], tol=0.0, random_state=0).fit(X)
elapsed = time.perf_counter() - t0
print(json.dumps({"base_mb": base, "peak_mb": peak_mb(), "seconds": elapsed,
                  "score": float(m.score(X[:10000])), "data_mb": X.nbytes / 2**20}))
"""


def measure(lib: str, n: int, d: int, k: int, dtype: str, iters: int, cache=None) -> dict:
    spec = json.dumps({"lib": lib, "n": n, "d": d, "k": k, "dtype": dtype, "iters": iters})
    env = dict(os.environ, JAXGMM_CACHE_DIR=cache or "off")
    out = subprocess.run(
        [sys.executable, "-c", CHILD, spec], capture_output=True, text=True, check=True, env=env
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def report(label: str, n: int, d: int, k: int, dtype: str, iters: int, libs) -> None:
    rows = {}
    for lib in libs:
        if lib != "jaxgmm":
            rows[lib] = measure(lib, n, d, k, dtype, iters)
            continue
        with tempfile.TemporaryDirectory() as cache:
            rows["jaxgmm cold"] = measure(lib, n, d, k, dtype, iters, cache)
            rows["jaxgmm warm"] = measure(lib, n, d, k, dtype, iters, cache)
    data = next(iter(rows.values()))["data_mb"]
    for lib, r in rows.items():
        above = r["peak_mb"] - r["base_mb"]
        print(
            f"{label:<28} {lib:<11} data {data:8.1f} MB  peak above baseline "
            f"{above:8.1f} MB = {above / data:5.2f}x data  ({r['seconds']:6.1f} s, "
            f"score {r['score']:.4f})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4_000_000)
    parser.add_argument("--d", type=int, default=8)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--wide", default="300x2000", help="NxD of the wide case ('' to skip)")
    parser.add_argument("--libs", default="jaxgmm,sklearn", help="comma-separated")
    args = parser.parse_args()
    libs = args.libs.split(",")
    for dtype in ("float64", "float32"):
        label = f"{args.n} x {args.d} {dtype} K={args.k}"
        report(label, args.n, args.d, args.k, dtype, args.iters, libs)
    if args.wide:
        n, d = (int(v) for v in args.wide.lower().split("x"))
        report(f"{n} x {d} float64 K=2", n, d, 2, "float64", args.iters, libs)


if __name__ == "__main__":
    main()
