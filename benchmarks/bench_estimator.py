"""jaxgmm.GaussianMixture against sklearn.mixture.GaussianMixture, end to end.

    python benchmarks/bench_estimator.py [--sizes small,medium,large] [--skip-fresh]

For each size, on the same data in the same run: wall time of ``fit`` (initialization
included) with n_init=1 and n_init=8, of ``predict`` and of ``score_samples``, and
the ratio sklearn / jaxgmm. jaxgmm's compile time is reported apart: the first call
in this process minus a second identical call, and the first fit in a fresh process
with the persistent compilation cache off and then on.

Sizes: small N=1,000 D=2 K=3; medium N=100,000 D=16 K=16 (default tol, both fitted to
convergence: iterations are printed); large N=1,000,000 D=32 K=16, a fixed 10
iterations (n_init=8 is skipped for scikit-learn there: it would take ~15 minutes).
"""

from __future__ import annotations

import os
import sys

_SLOW_BLAS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
if any(v in os.environ for v in _SLOW_BLAS):
    env = {k: v for k, v in os.environ.items() if k not in _SLOW_BLAS}
    os.execve(sys.executable, [sys.executable, *sys.argv], env)

os.environ.setdefault("JAXGMM_CACHE_DIR", "off")  # in-process compile times are cold

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import textwrap  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
from sklearn.datasets import make_blobs  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.mixture import GaussianMixture as SkGM  # noqa: E402

import jaxgmm  # noqa: E402

SIZES = {
    "small": dict(n=1_000, d=2, k=3, max_iter=100, tol=1e-3),
    "medium": dict(n=100_000, d=16, k=16, max_iter=100, tol=1e-3),
    "large": dict(n=1_000_000, d=32, k=16, max_iter=10, tol=0.0),
}

FRESH = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np
    from sklearn.datasets import make_blobs
    import jaxgmm
    n, d, k, max_iter, tol = json.loads(sys.argv[1])
    X, _ = make_blobs(n, n_features=d, centers=k, random_state=0)
    t = time.perf_counter()
    jaxgmm.GaussianMixture(k, max_iter=max_iter, tol=tol, random_state=0).fit(X)
    first = time.perf_counter() - t
    t = time.perf_counter()
    jaxgmm.GaussianMixture(k, max_iter=max_iter, tol=tol, random_state=0).fit(X)
    print(json.dumps([first, time.perf_counter() - t]))
    """
)


def timed(fn, repeat=1):
    best, out = np.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def fresh_process(cfg, cache_dir):
    env = dict(os.environ, JAXGMM_CACHE_DIR=cache_dir)
    args = json.dumps([cfg["n"], cfg["d"], cfg["k"], cfg["max_iter"], cfg["tol"]])
    out = subprocess.run(
        [sys.executable, "-c", FRESH, args], env=env, capture_output=True, text=True, check=True
    )
    first, second = json.loads(out.stdout.strip().splitlines()[-1])
    return first - second


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="small,medium,large")
    parser.add_argument("--skip-fresh", action="store_true", help="no fresh-process runs")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore", ConvergenceWarning)
    print(f"jaxgmm {jaxgmm.__version__}; float64 data; ratios are sklearn / jaxgmm\n")
    header = (
        f"{'size':7} {'what':22} {'sklearn s':>10} {'jaxgmm s':>10} {'speed-up':>9}"
        f" {'iters sk/jx':>12}"
    )
    print(header)
    print("-" * len(header))
    compile_rows = []
    for name in args.sizes.split(","):
        cfg = SIZES[name]
        X, _ = make_blobs(cfg["n"], n_features=cfg["d"], centers=cfg["k"], random_state=0)
        kw = dict(max_iter=cfg["max_iter"], tol=cfg["tol"], random_state=0)
        k = cfg["k"]
        repeat = 5 if name == "small" else 1

        # compile time: first call minus an identical second call, in this process
        t_first, _ = timed(lambda: jaxgmm.GaussianMixture(k, **kw).fit(X))  # noqa: B023
        t_second, _ = timed(lambda: jaxgmm.GaussianMixture(k, **kw).fit(X))  # noqa: B023
        compile_rows.append([name, t_first - t_second])

        for n_init in (1, 8):
            jx = jaxgmm.GaussianMixture(k, n_init=n_init, **kw)
            jaxgmm.GaussianMixture(k, n_init=n_init, **kw).fit(X)  # compile this n_init
            t_jx, jx = timed(lambda: jx.fit(X), repeat)  # noqa: B023
            if name == "large" and n_init == 8:
                print(f"{name:7} {'fit n_init=8':22} {'(skipped)':>10} {t_jx:10.3f}")
                continue
            sk = SkGM(k, n_init=n_init, **kw)
            t_sk, sk = timed(lambda: sk.fit(X), repeat)  # noqa: B023
            print(
                f"{name:7} {f'fit n_init={n_init}':22} {t_sk:10.3f} {t_jx:10.3f}"
                f" {t_sk / t_jx:8.1f}x {f'{sk.n_iter_}/{jx.n_iter_}':>12}"
            )
        jx.predict(X), jx.score_samples(X)  # compile
        for what in ("predict", "score_samples"):
            t_sk, _ = timed(lambda: getattr(sk, what)(X), 3)  # noqa: B023
            t_jx, _ = timed(lambda: getattr(jx, what)(X), 3)  # noqa: B023
            print(f"{name:7} {what:22} {t_sk:10.4f} {t_jx:10.4f} {t_sk / t_jx:8.1f}x")

    print("\njaxgmm compile time of the first fit (first call minus second call)")
    print(f"{'size':7} {'in this process':>16} {'fresh, no cache':>16} {'fresh, cached':>14}")
    for name, in_process in compile_rows:
        if args.skip_fresh:
            print(f"{name:7} {in_process:15.2f}s")
            continue
        with tempfile.TemporaryDirectory() as cache:
            cold = fresh_process(SIZES[name], "off")
            fresh_process(SIZES[name], cache)  # fills the cache
            warm = fresh_process(SIZES[name], cache)
        print(f"{name:7} {in_process:15.2f}s {cold:15.2f}s {warm:13.2f}s")


if __name__ == "__main__":
    main()
