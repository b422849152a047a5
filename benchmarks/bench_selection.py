"""Model selection: how often the sweep finds the seed's four blobs, and how fast it is.

    python benchmarks/bench_selection.py [--draws 30] [--skip-speed]

Quality: on ``--draws`` independent draws of the seed's data (make_blobs seeds
0..draws-1), how often the default ``GaussianMixtureIC()`` (K=1..8, mclust's 14
families) picks K=4, against
scikit-learn's BIC loop over K=1..8 (full covariances only, and all four types); and
how often a 10-component Dirichlet-process ``BayesianGaussianMixture`` (full) leaves
exactly 4 components above 1% weight, jaxgmm's and scikit-learn's.

Speed: wall time of the full sweep (K=1..8, four covariance types, 5 restarts) on the
seed's data and on N=100,000, D=8 data with 6 clusters, against the equivalent
scikit-learn loop in the same run; jaxgmm warm (compiled) and in a fresh process
(compilation included, persistent cache off).
"""

from __future__ import annotations

import os
import sys

_SLOW_BLAS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
if any(v in os.environ for v in _SLOW_BLAS):
    env = {k: v for k, v in os.environ.items() if k not in _SLOW_BLAS}
    os.execve(sys.executable, [sys.executable, *sys.argv], env)
os.environ.setdefault("JAXGMM_CACHE_DIR", "off")

import argparse  # noqa: E402
import subprocess  # noqa: E402
import textwrap  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
from sklearn.datasets import make_blobs  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.mixture import BayesianGaussianMixture as SkBGM  # noqa: E402
from sklearn.mixture import GaussianMixture as SkGM  # noqa: E402

import jaxgmm  # noqa: E402

TYPES = ("full", "tied", "diag", "spherical")
KS = range(1, 9)


def sklearn_loop(X, types=TYPES, n_init=5):
    """The loop a scikit-learn user writes: every K and type, keep the lowest BIC."""
    best, best_k = np.inf, None
    for cov in types:
        for k in KS:
            bic = SkGM(k, covariance_type=cov, n_init=n_init, random_state=0).fit(X).bic(X)
            if bic < best:
                best, best_k = bic, k
    return best_k


FRESH = textwrap.dedent(
    """
    import sys, time, numpy as np
    from sklearn.datasets import make_blobs
    import jaxgmm
    n, d, c = map(int, sys.argv[1:4])
    X, _ = make_blobs(n, n_features=d, centers=c, random_state=0)
    t = time.perf_counter()
    jaxgmm.GaussianMixtureIC(8, covariance_type="sklearn", n_init=5, random_state=0).fit(X)
    print(time.perf_counter() - t)
    """
)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=30)
    parser.add_argument("--skip-speed", action="store_true")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore", ConvergenceWarning)

    print(f"Quality: K=4 found on {args.draws} draws of the seed's data")
    counts = {
        "jaxgmm GaussianMixtureIC()": 0,
        "sklearn BIC, full": 0,
        "sklearn BIC, all types": 0,
        "jaxgmm Bayesian (DP, 10)": 0,
        "sklearn Bayesian (DP, 10)": 0,
    }
    for seed in range(args.draws):
        X, _ = jaxgmm.make_seed_blobs(seed)
        counts["jaxgmm GaussianMixtureIC()"] += (
            jaxgmm.GaussianMixtureIC(random_state=0).fit(X).n_components_ == 4
        )
        counts["sklearn BIC, full"] += sklearn_loop(X, ("full",), n_init=1) == 4
        counts["sklearn BIC, all types"] += sklearn_loop(X, TYPES, n_init=1) == 4
        # components above 1% weight in a 10-component Dirichlet-process mixture
        bgm = dict(n_components=10, weight_concentration_prior_type="dirichlet_process")
        ours = jaxgmm.BayesianGaussianMixture(random_state=0, **bgm).fit(X)
        theirs = SkBGM(random_state=0, **bgm).fit(X)
        counts["jaxgmm Bayesian (DP, 10)"] += np.sum(ours.weights_ > 0.01) == 4
        counts["sklearn Bayesian (DP, 10)"] += np.sum(theirs.weights_ > 0.01) == 4
    for name, c in counts.items():
        print(f"  {name:28} {c:>2} / {args.draws}")
    if args.skip_speed:
        return

    print("\nSpeed: sweep K=1..8 x 4 covariance types x 5 restarts")
    print(f"{'data':22} {'sklearn loop s':>15} {'jaxgmm warm s':>14} {'fresh process s':>16}")
    for name, (n, d, c) in {
        "seed (105 x 2)": (105, 2, 4),
        "N=100,000 D=8, 6 cl.": (100_000, 8, 6),
    }.items():
        if n == 105:
            X, _ = jaxgmm.make_seed_blobs(0)
        else:
            X, _ = make_blobs(n, n_features=d, centers=c, random_state=0)
        # scikit-learn's four types, as its loop fits (the default tries mclust's 14)
        model = jaxgmm.GaussianMixtureIC(8, covariance_type="sklearn", n_init=5, random_state=0)
        model.fit(X)
        t = time.perf_counter()
        model.fit(X)
        warm = time.perf_counter() - t
        t = time.perf_counter()
        sklearn_loop(X)
        t_sk = time.perf_counter() - t
        out = subprocess.run(
            [sys.executable, "-c", FRESH, str(n), str(d), str(c)],
            capture_output=True,
            text=True,
            check=True,
            env=dict(os.environ, JAXGMM_CACHE_DIR="off"),
        )
        fresh = float(out.stdout.strip().splitlines()[-1])
        print(
            f"{name:22} {t_sk:15.2f} {warm:14.3f} {fresh:16.2f}"
            f"   (warm {t_sk / warm:.0f}x, fresh {t_sk / fresh:.1f}x)"
        )


if __name__ == "__main__":
    main()
