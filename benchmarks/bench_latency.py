"""Time to a first result, jaxgmm against scikit-learn, measured in the same run.

    python benchmarks/bench_latency.py [--rows import,iris,change,seed,grid,cli]

Every row runs in fresh processes (the row says which cache they find): jaxgmm's
program cache off ("cold"), or a cache filled by an earlier process ("warm").
scikit-learn has nothing to compile, so it is timed once per row. Times exclude the
interpreter's start and the imports, except on the import row.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, sys, time, warnings
t_import = time.perf_counter()
task, lib = sys.argv[1], sys.argv[2]
if lib == "jaxgmm":
    import jaxgmm
    bare_s = time.perf_counter() - t_import
    GM, IC = jaxgmm.GaussianMixture, jaxgmm.GaussianMixtureIC  # loads JAX, scikit-learn
else:
    from sklearn.mixture import GaussianMixture as GM
    bare_s = time.perf_counter() - t_import
import_s = time.perf_counter() - t_import
import numpy as np
from sklearn.datasets import load_iris
warnings.simplefilter("ignore")
X = load_iris().data
TYPES = ("full", "tied", "diag", "spherical")

def sweep(x, ks, n_init):
    if lib == "jaxgmm":
        return IC(list(ks), covariance_type="all", n_init=n_init, random_state=0).fit(x)
    fits = [GM(k, covariance_type=t, n_init=n_init, random_state=0).fit(x)
            for t in TYPES for k in ks]
    return min(fits, key=lambda m: m.bic(x))

t0 = time.perf_counter()
out = {"import": import_s, "bare_import": bare_s}
if task == "import":
    pass
elif task == "iris":
    GM(3, random_state=0).fit(X)
    out["first"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    GM(4, random_state=0).fit(X)
    out["new_k"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    GM(3, n_init=5, random_state=0).fit(X)
    out["new_n_init"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    GM(3, covariance_type="diag", random_state=0).fit(X)
    out["new_type"] = time.perf_counter() - t1
elif task == "seed":
    if lib == "jaxgmm":
        x, _ = jaxgmm.make_seed_blobs(0)
    else:
        rng = np.random.default_rng(0)
        x = np.vstack([rng.normal(c, 1.0, (n, 2)) for c, n in
                       zip([(1, -1), (5, 5), (8, 7), (10, 0)], (30, 50, 20, 5))])
    sweep(x, range(1, 9), 5)
    out["first"] = time.perf_counter() - t0
elif task == "iris_sweep":  # what `jaxgmm fit iris.csv -k auto` fits
    sweep(X, range(1, 11), 5)
    out["first"] = time.perf_counter() - t0
elif task == "grid":
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    pipe = make_pipeline(StandardScaler(), GM(random_state=0))
    grid = {"gaussianmixture__n_components": [1, 2, 3, 4, 5],
            "gaussianmixture__covariance_type": ["full", "diag"]}
    GridSearchCV(pipe, grid, cv=5).fit(X)
    out["first"] = time.perf_counter() - t0
print(json.dumps(out))
"""


def child(task: str, lib: str, cache: str) -> dict:
    env = {**os.environ, "JAXGMM_CACHE_DIR": cache}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, task, lib], env=env, capture_output=True, text=True
    )
    if proc.returncode:
        raise RuntimeError(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def cli(csv: Path, cache: str) -> float:
    """``jaxgmm fit iris.csv -k auto`` (40 models) in a fresh process, wall time."""
    import time

    script = Path(sys.executable).parent / "jaxgmm"
    env = {**os.environ, "JAXGMM_CACHE_DIR": cache}
    t0 = time.perf_counter()
    subprocess.run(
        [str(script), "fit", str(csv), "-k", "auto", "-q", "-o", str(csv.with_suffix(".jgmm"))],
        env=env,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - t0


def row(label: str, ours: float, theirs: float) -> None:
    print(f"{label:<62} {ours:8.2f} s {theirs:8.2f} s {ours / theirs:8.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="import,iris,seed,grid,cli")
    rows = parser.parse_args().rows.split(",")
    print(f"{'':<62} {'jaxgmm':>10} {'sklearn':>10} {'ratio':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        warm = str(Path(tmp) / "cache")
        if "import" in rows:
            ours, theirs = (child("import", lib, "off") for lib in ("jaxgmm", "sklearn"))
            row("import jaxgmm / import sklearn.mixture", ours["bare_import"], theirs["import"])
            row("  and its GaussianMixture (JAX, scikit-learn)", ours["import"], theirs["import"])
        for task, label in (
            ("iris", "first GaussianMixture(3).fit(iris)"),
            ("seed", "the seed's question (K=1..8 x 4 types x 5 restarts)"),
            ("grid", "GridSearchCV(StandardScaler, GM), 5 K x 2 types x 5 folds"),
        ):
            if task not in rows:
                continue
            sk = child(task, "sklearn", "off")
            cold = child(task, "jaxgmm", "off")
            child(task, "jaxgmm", warm)  # fills the cache
            hot = child(task, "jaxgmm", warm)
            row(f"{label}, cache off", cold["first"], sk["first"])
            row(f"{label}, warm cache", hot["first"], sk["first"])
            if task == "iris":
                for key, what in (
                    ("new_k", "a new K"),
                    ("new_n_init", "a new n_init"),
                    ("new_type", "a new covariance type"),
                ):
                    row(f"  then {what} in the same process, cache off", cold[key], sk[key])
        if "cli" in rows:
            csv = Path(tmp) / "iris.csv"
            from sklearn.datasets import load_iris

            data = load_iris()
            lines = [",".join(f"x{j}" for j in range(4))]
            lines += [",".join(map(str, r)) for r in data.data]
            csv.write_text("\n".join(lines) + "\n")
            sk = child("iris_sweep", "sklearn", "off")  # the same 40 models, in a loop
            row("jaxgmm fit iris.csv -k auto (40 models), cache off", cli(csv, "off"), sk["first"])
            cli(csv, warm)
            row("jaxgmm fit iris.csv -k auto (40 models), warm cache", cli(csv, warm), sk["first"])


if __name__ == "__main__":
    main()
