"""mclust's 14 covariance families: the model jaxgmm's sweep chooses against mclust's,
and the sweep's speed against fitting the same models one by one.

    python benchmarks/bench_families.py [--n-init 10] [--skip-speed | --skip-quality]
                                        [--rows 100000] [--max-k 9]

Quality: on wine (13 features standardised by StandardScaler), iris (4
features) and the seed's four blobs (``make_seed_blobs(0)``), the sweep over mclust's
defaults (K = 1..9, all 14 families) with ``--n-init`` k-means restarts and the
sweep's default hierarchical start (mclust's own partition, one more start): the chosen
model and its BIC against mclust's, and the best BIC of each family. BIC is as
jaxgmm writes it, ``-2 log L + p log n`` (lower is better; mclust prints the negative).

mclust's values: the chosen models and their BIC are issue 13's (mclust 6.0.0,
``Mclust(X)`` with its defaults: hierarchical agglomeration start, K = 1..9, the 14
families); the log-likelihood and BIC of every family and K are in
``benchmarks/mclust_6.0.0.csv``, made by ``benchmarks/mclust_values.R`` from these data
sets (``--export-data``; R and mclust are not needed to run this script). For each
data set the script counts the (family, K) where jaxgmm's log-likelihood is at least
mclust's less ``--ll-tol`` (1e-3), and lists the others, each fitted again with the
degeneracy rule off (``min_component_samples=0``) to show whether the sweep reached
mclust's value and dropped it for a component of fewer than d + 1 effective samples.
Fits are run to ``--tol``
(1e-6, on the change of the mean log-likelihood; mclust stops at a relative change of
1e-5 of the total, which is looser on these data), with ``--max-iter`` 1000.

Speed: on ``--rows`` x 8 rows in 6 clusters, the sweep over the 14 families and
K = 1..``--max-k`` (one k-means start each, no hierarchical start: the same fits as
the loop), with its one shared program and with a program per family, against the
same fits one by one (``jaxgmm.fit``): each the first time (compiling, jaxgmm's
program cache empty) and again; scikit-learn's loop over its four types in the same run;
then what the hierarchical start adds to the sweep (its partition on 2000 sampled
rows, and one more fit per model).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
from sklearn.datasets import load_iris, load_wine, make_blobs
from sklearn.mixture import GaussianMixture as SkGM

import jaxgmm
from jaxgmm import _agglomerate
from jaxgmm._datasets import make_seed_blobs
from jaxgmm._families import FAMILIES

#: name -> (family, K, BIC) of mclust's choice (issue 13; mclust 6.0.0).
MCLUST = {"wine": ("VVE", 3, 5416.9), "iris": ("VEV", 2, 561.7), "seed blobs": ("EII", 4, 881.8)}
#: mclust's log-likelihood and BIC of every (data set, family, K); see the docstring.
MCLUST_TABLE = Path(__file__).with_name("mclust_6.0.0.csv")


def mclust_table() -> dict[tuple[str, str, int], tuple[float, float]]:
    """(data, family, K) -> (log-likelihood, BIC) from MCLUST_TABLE; NaN where mclust
    found no fit."""
    lines = [ln for ln in MCLUST_TABLE.read_text().splitlines() if not ln.startswith("#")]
    table = {}
    for row in csv.DictReader(lines):
        key = (row["data"], row["family"], int(row["K"]))
        table[key] = tuple(float(row[c].replace("NA", "nan")) for c in ("log_likelihood", "bic"))
    return table


def data_sets() -> dict[str, np.ndarray]:
    wine = load_wine().data
    # scikit-learn's StandardScaler (ddof 0), as issue 13's figures were made: its
    # jaxgmm diag K=4 BIC 5476.5 is reproduced with it (R's scale(), ddof 1, gives 13.0 less)
    wine = (wine - wine.mean(0)) / wine.std(0)
    return {"wine": wine, "iris": load_iris().data, "seed blobs": make_seed_blobs(0)[0]}


def quality(n_init: int, tol: float, max_iter: int, ll_tol: float, only=None) -> None:
    print(f"the sweep over K=1..9 and the 14 families, {n_init} k-means restarts, tol={tol}")
    print(f"{'data':>11} {'mclust':>14} {'its BIC':>9} {'jaxgmm':>14} {'its BIC':>9} {'diff':>7}")
    reference = mclust_table()
    for name, X in data_sets().items():
        if only and name not in only:
            continue
        t = time.perf_counter()
        result = jaxgmm.sweep(
            jax.random.key(0),
            X,
            range(1, 10),
            list(FAMILIES),
            n_init=n_init,
            tol=tol,
            max_iter=max_iter,
        )
        seconds = time.perf_counter() - t
        table = result.table
        family, k, bic = MCLUST[name]
        ours = (table["family"][result.best], int(table["n_components"][result.best]))
        best = float(table["bic"][result.best])
        print(
            f"{name:>11} {family + ', K=' + str(k):>14} {bic:>9.1f} "
            f"{ours[0] + ', K=' + str(ours[1]):>14} {best:>9.1f} {best - bic:>+7.1f}"
            f"   ({seconds:.1f} s)"
        )
        sound = ~table["degenerate"]
        per_family = []
        for fam in FAMILIES:
            rows = (table["family"] == fam) & sound
            if rows.any():
                i = np.flatnonzero(rows)[np.argmin(table["bic"][rows])]
                per_family.append(f"{fam} {table['bic'][i]:.1f} (K={table['n_components'][i]})")
        print("            best of each family: " + ", ".join(per_family))
        short = compare_log_likelihoods(name, table, reference, ll_tol)
        if short:  # the sweep dropped a fit with a component below d + 1 samples?
            print("            the same cells, degenerate fits kept (min_component_samples=0):")
        for fam, k in short:
            kept = jaxgmm.sweep(
                jax.random.key(0),
                X,
                [k],
                [fam],
                n_init=n_init,
                tol=tol,
                max_iter=max_iter,
                min_component_samples=0,
            ).table
            gain = float(kept["log_likelihood"][0]) - reference[(name, fam, k)][0]
            print(
                f"              {fam} K={k}: {gain:+.4f} against mclust's, smallest component "
                f"{kept['smallest_component'][0]:.2f} samples (the rule: {X.shape[1] + 1})"
            )


def compare_log_likelihoods(name, table, reference, ll_tol) -> list[tuple[str, int]]:
    """jaxgmm's log-likelihood against mclust's at every (family, K) both fitted;
    returns the (family, K) below it."""
    at_least, short, only_ours, only_theirs, gains, below = 0, [], [], [], [], []
    for fam, k, ll, degenerate in zip(
        table["family"],
        table["n_components"],
        table["log_likelihood"],
        table["degenerate"],
        strict=True,
    ):
        theirs = reference[(name, fam, int(k))][0]
        ours = np.nan if degenerate else float(ll)
        if np.isnan(theirs) or np.isnan(ours):
            if not np.isnan(ours):
                only_ours.append(f"{fam} K={k}")
            elif not np.isnan(theirs):
                only_theirs.append(f"{fam} K={k}")
            continue
        gains.append(ours - theirs)
        if ours >= theirs - ll_tol:
            at_least += 1
        else:
            short.append(f"{fam} K={k} {ours - theirs:+.4f}")
            below.append((str(fam), int(k)))
    gains = np.array(gains)
    print(
        f"            log-likelihood at least mclust's (-{ll_tol:g}): {at_least} of {len(gains)}"
        f" (family, K) both fitted; largest gain {gains.max():+.3f}, median {np.median(gains):+.4f}"
    )
    if short:
        print("            below mclust's: " + ", ".join(short))
    if only_ours:
        print("            fitted by jaxgmm only (mclust: NA): " + ", ".join(only_ours))
    if only_theirs:
        print("            fitted by mclust only (jaxgmm: degenerate): " + ", ".join(only_theirs))
    return below


def export_data(directory: str) -> None:
    """The data sets as CSV (17 digits) for benchmarks/mclust_values.R."""
    Path(directory).mkdir(parents=True, exist_ok=True)
    for name, X in data_sets().items():
        path = Path(directory) / (name.replace(" ", "_") + ".csv")
        np.savetxt(path, X, delimiter=",", fmt="%.17g")
        print(f"wrote {path}")


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def speed(rows: int, max_k: int) -> None:
    """The sweep (all 14 families x K = 1..max_k in one call) against the same fits one
    by one, first runs (compiling; jaxgmm's program cache empty) and then again, and
    scikit-learn's loop over its four."""
    # first runs compile: jaxgmm's program cache starts empty (programs stored by an
    # earlier run would be loaded instead), and it is on, as users have it: a process
    # past its share of memory maps drops its programs and loads them again from it
    os.environ["JAXGMM_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench_families")
    X = make_blobs(rows, 8, centers=6, random_state=0)[0]
    ks = range(1, max_k + 1)
    key = jax.random.key(0)

    def sweep(hierarchical_start=False):
        families = list(FAMILIES)
        return jaxgmm.sweep(key, X, ks, families, n_init=1, hierarchical_start=hierarchical_start)

    def one_by_one(families):
        for fam in families:
            for k in ks:
                jaxgmm.fit(key, X, k, covariance_type=fam).lower_bound.block_until_ready()

    def sklearn():
        for cov in ("full", "tied", "diag", "spherical"):
            for k in ks:
                SkGM(k, covariance_type=cov, random_state=0).fit(X)

    first, again = {}, {}
    first["sweep"], again["sweep"] = timed(sweep), timed(sweep)
    with _sharing_off():
        first["types"], again["types"] = timed(sweep), timed(sweep)
    # each family's loop again right after its first run: the loop's 126 programs
    # would otherwise push the first ones out of memory (jaxgmm._programs drops
    # programs near the process's memory-map limit), and running them again would
    # load them anew
    first["loop"] = again["loop"] = 0.0
    for fam in FAMILIES:
        first["loop"] += timed(lambda fam=fam: one_by_one([fam]))
        again["loop"] += timed(lambda fam=fam: one_by_one([fam]))
    shared = ["full", "tied", "diag", "spherical"]
    again["loop, 4"] = timed(lambda: one_by_one(shared))
    again["sklearn"] = timed(sklearn)
    timed(lambda: sweep(True))
    again["hierarchical"] = timed(lambda: sweep(True))
    partition = timed(lambda: _agglomerate.sampled_partitions(X, None, ks, seed=0))

    n, n4 = len(FAMILIES) * len(ks), 4 * len(ks)
    print(f"\n{rows} x 8 rows, K=1..{max_k}, one k-means start each ({n} fits)")
    print(f"{'':48} {'first run':>10} {'again':>8}")
    lines = [
        ("jaxgmm sweep, 14 families (one program)", "sweep"),
        ("jaxgmm sweep, a program per family", "types"),
        (f"jaxgmm one by one, the same {n} fits", "loop"),
    ]
    for label, name in lines:
        print(f"  {label:46} {first[name]:9.1f}s {again[name]:7.2f}s")
    print(
        f"  the loop over the sweep: {first['loop'] / first['sweep']:.1f}x first, "
        f"{again['loop'] / again['sweep']:.1f}x again"
    )
    print(f"  jaxgmm one by one, scikit-learn's 4 ({n4} fits), again: {again['loop, 4']:7.2f}s")
    print(
        f"  scikit-learn's loop over its 4 ({n4} fits):           {again['sklearn']:7.2f}s"
        f"  ({again['sklearn'] / again['sweep']:.1f}x the 14-family sweep again)"
    )
    print(
        f"  the sweep with its hierarchical start ({2 * n} fits), again: "
        f"{again['hierarchical']:.2f}s, of which the partition (2000 rows): {partition:.2f}s"
    )


@contextlib.contextmanager
def _sharing_off():
    """Sweeps with a program per type (the families share one below
    ``_engine.SWEEP_SHARING_WORK`` per pass)."""
    from jaxgmm import _engine

    saved = _engine.SWEEP_SHARING_WORK
    _engine.SWEEP_SHARING_WORK = 0
    try:
        yield
    finally:
        _engine.SWEEP_SHARING_WORK = saved


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-init", type=int, default=10)
    p.add_argument("--tol", type=float, default=1e-6)
    p.add_argument("--max-iter", type=int, default=1000)
    p.add_argument("--ll-tol", type=float, default=1e-3)
    p.add_argument("--export-data", metavar="DIR", help="write the data sets as CSV for R")
    p.add_argument("--data", help="comma-separated data sets (wine, iris, 'seed blobs')")
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--max-k", type=int, default=9)
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--skip-quality", action="store_true")
    args = p.parse_args()
    if args.export_data:
        export_data(args.export_data)
    if not args.skip_quality:
        only = args.data.split(",") if args.data else None
        quality(args.n_init, args.tol, args.max_iter, args.ll_tol, only)
    if not args.skip_speed:
        speed(args.rows, args.max_k)


if __name__ == "__main__":
    main()
