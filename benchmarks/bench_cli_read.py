"""The command line on a large CSV: reading it, and ``jaxgmm fit big.csv -k 4``, against
pandas reading it plus the library's fit of the array, in the same run.

    python benchmarks/bench_cli_read.py [--rows 300000] [--keep DIR]

Writes ``--rows`` x 8 columns of make_blobs (pandas' CSV, 45 MB at the default) and
prints: the time and peak memory (over the process's size before reading; Linux) of
``pandas.read_csv`` and of the command's reader (``cli._datafiles.read_table``), each
in a fresh process; then the wall time of ``jaxgmm fit big.csv -k 4 --n-init 1`` (a
fresh process, programs from a warm cache), against pandas' read plus
``GaussianMixture(4, n_init=1).fit`` of the array in one process (also warm). Issue
14's target: the command at most 2x the sum.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

READ = """
import json, sys, time
path, how = sys.argv[1], sys.argv[2]
def peak():  # the process's peak resident memory (MB) since the last reset
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
def reset():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # the peak starts again from the present size
if how == "pandas":
    import pandas as pd
    reset(); before = peak(); t = time.perf_counter()
    x = pd.read_csv(path).to_numpy()
else:
    from jaxgmm.cli._datafiles import read_table
    import pyarrow.csv, pyarrow.parquet  # imported as pandas is, before the clock
    reset(); before = peak(); t = time.perf_counter()
    x, _ = read_table(path).numeric()
print(json.dumps({"seconds": time.perf_counter() - t, "mb": peak() - before, "rows": len(x)}))
"""

FIT = """
import json, sys, time
import pandas as pd
import jaxgmm
t = time.perf_counter()
x = pd.read_csv(sys.argv[1]).to_numpy()
read = time.perf_counter() - t
t = time.perf_counter()
jaxgmm.GaussianMixture(4, n_init=1, random_state=0).fit(x)
print(json.dumps({"read": read, "fit": time.perf_counter() - t}))
"""


def _python(code: str, *args) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _command(*args) -> float:
    jaxgmm = Path(sys.executable).with_name("jaxgmm")
    t = time.perf_counter()
    subprocess.run([str(jaxgmm), *map(str, args)], capture_output=True, check=True)
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=300_000)
    p.add_argument("--keep", help="write the CSV here and keep it")
    args = p.parse_args()
    import pandas as pd
    from sklearn.datasets import make_blobs

    directory = Path(args.keep or tempfile.mkdtemp(prefix="jaxgmm-bench-"))
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "big.csv"
    x = make_blobs(args.rows, 8, centers=4, random_state=0)[0]
    pd.DataFrame(x, columns=[f"f{j}" for j in range(8)]).to_csv(path, index=False)
    print(f"{path}: {args.rows} rows x 8, {os.path.getsize(path) / 1e6:.1f} MB")

    pandas, ours = _python(READ, path, "pandas"), _python(READ, path, "jaxgmm")
    print(f"  pandas.read_csv:        {pandas['seconds']:6.2f} s  +{pandas['mb']:5.0f} MB")
    print(
        f"  jaxgmm's reader:        {ours['seconds']:6.2f} s  +{ours['mb']:5.0f} MB"
        f"  ({ours['seconds'] / pandas['seconds']:.2f}x pandas' time)"
    )

    model = directory / "big.jgmm"
    fit = ["fit", path, "-k", "4", "--n-init", "1", "-q", "-o", model]
    _command(*fit)  # compile (the program cache keeps it for the next process)
    _python(FIT, path)
    command = min(_command(*fit) for _ in range(2))
    library = min((_python(FIT, path) for _ in range(2)), key=lambda r: r["read"] + r["fit"])
    base = library["read"] + library["fit"]
    print(f"  jaxgmm fit big.csv -k 4: {command:6.2f} s (a new process, warm program cache)")
    print(
        f"  pandas read + fit:       {base:6.2f} s  ({library['read']:.2f} + {library['fit']:.2f});"
        f" the command takes {command / base:.2f}x (target <= 2x)"
    )
    if not args.keep:
        for f in (path, model):
            f.unlink(missing_ok=True)
        directory.rmdir()


if __name__ == "__main__":
    main()
