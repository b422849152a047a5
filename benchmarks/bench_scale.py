"""Data larger than memory: seconds per EM pass and peak memory, in memory against
streamed from a ``.npy`` file, from Parquet and over two local processes.

    python benchmarks/bench_scale.py [--rows 250k,1M,4M,16M] [--d 8] [--k 4]
                                     [--dir /tmp/jaxgmm-scale] [--sweep-rows 1M]
                                     [--modes memory,npy,parquet,2 stream,2 in mem]

For each row count it writes the data once (a ``.npy`` file and a Parquet file in
1M-row groups, both then in the page cache), then runs each mode in a fresh process:

* ``memory``: ``np.load`` and ``jaxgmm.fit`` on the array (the reference);
* ``npy``: ``jaxgmm.fit`` on ``NpySource`` (read by ``seek``/``readinto``);
* ``parquet``: on ``ParquetSource``;
* ``2 stream``: two processes on localhost (``jaxgmm.distributed``), each streaming
  half of the ``.npy`` file, the sums added on the host after each pass;
* ``2 in mem``: two processes, each holding half of the rows in memory: one program
  over both processes' devices (``jaxgmm._spmd``), the sums gathered inside it.

On a 2-core machine each process has one core, so no speed-up over ``memory`` is
expected here from two processes: the figures show what the collectives cost.

Seconds per pass are ``(t(7 iterations) - t(2 iterations)) / 5`` from the same start
with ``tol=0``, after a first fit of each length that compiles every program on the way,
so setup passes and compilation are left out (an iteration that takes the exact second
pass counts as one); peak RSS is the process's high-water mark (for ``memory`` it includes the
loaded array). Ratios are in-memory time over streamed time (1.0: as fast as in
memory) and peak RSS against the smallest data's.

Last, a sweep over K=1..8 with 2 restarts (16 fits, one covariance type) streamed
from ``.npy``: its seconds per iteration against one fit's, which shows one pass
serving every fit.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

FULL, SHORT = 7, 2


def parse_rows(text: str) -> list[int]:
    units = {"k": 10**3, "m": 10**6}
    out = []
    for part in text.split(","):
        part = part.strip().lower()
        out.append(int(float(part[:-1]) * units[part[-1]]) if part[-1] in units else int(part))
    return out


def write_data(directory: Path, n: int, d: int, k: int) -> tuple[Path, Path]:
    """The rows as ``.npy`` and Parquet, written in pieces (never all in memory)."""
    npy, parquet = directory / f"x{n}.npy", directory / f"x{n}.parquet"
    if npy.exists() and parquet.exists():
        return npy, parquet
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    centers = rng.normal(size=(k, d)) * 4
    header = {"descr": "<f8", "fortran_order": False, "shape": (n, d)}
    piece = 1 << 20
    partial = [p.with_name(p.name + ".partial") for p in (npy, parquet)]
    with open(partial[0], "wb") as f, pq.ParquetWriter(partial[1], _schema(d)) as writer:
        np.lib.format.write_array_header_2_0(f, header)
        for start in range(0, n, piece):
            m = min(piece, n - start)
            x = centers[rng.integers(0, k, m)] + rng.normal(size=(m, d))
            f.write(x.tobytes())
            writer.write_table(pa.table({f"x{j}": x[:, j] for j in range(d)}))
    for done, path in zip(partial, (npy, parquet), strict=True):  # complete files only
        done.rename(path)
    return npy, parquet


def _schema(d: int):
    import pyarrow as pa

    return pa.schema([(f"x{j}", pa.float64()) for j in range(d)])


def start(d: int, k: int) -> dict:
    rng = np.random.default_rng(1)
    return dict(
        weights_init=np.full(k, 1 / k).tolist(),
        means_init=(rng.normal(size=(k, d)) * 4).tolist(),
        precisions_init=np.tile(np.eye(d), (k, 1, 1)).tolist(),
    )


# --- one mode, in a fresh process -----------------------------------------------------


def child(mode: str, path: str, d: int, k: int, port: int = 0, index: int = 0) -> None:
    import resource

    import jax

    import jaxgmm
    from jaxgmm import data, distributed

    if mode.startswith("2 "):
        distributed.initialize(f"127.0.0.1:{port}", 2, index)
    if mode == "memory":
        X = np.load(path)
    elif mode == "2 in mem":  # this process's half of the rows
        whole = np.load(path, mmap_mode="r")
        half = -(-len(whole) // 2)
        X = np.array(whole[index * half : (index + 1) * half])
        del whole
    elif mode == "parquet":
        X = data.ParquetSource(path)
    else:
        X = data.NpySource(path)
    kw = dict(covariance_type="full", tol=0.0, **{a: np.asarray(v) for a, v in start(d, k).items()})

    def timed(iters: int) -> float:
        t = time.perf_counter()
        r = jaxgmm.fit(jax.random.key(0), X, k, max_iter=iters, **kw)
        jax.block_until_ready(r.lower_bound)
        return time.perf_counter() - t

    timed(FULL), timed(SHORT)  # compile (in memory, max_iter is compiled in)
    short = timed(SHORT)
    per_pass = (timed(FULL) - short) / (FULL - SHORT)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"per_pass": per_pass, "rss_mb": rss}))


def sweep_child(path: str) -> None:
    import jax

    import jaxgmm
    from jaxgmm import data

    X = data.NpySource(path)

    def timed(fn) -> float:
        fn()  # compiles
        t = time.perf_counter()
        fn()
        return time.perf_counter() - t

    kw = dict(covariance_types=["full"], n_init=2, tol=0.0)
    short = timed(lambda: jaxgmm.sweep(jax.random.key(0), X, range(1, 9), max_iter=SHORT, **kw))
    full = timed(lambda: jaxgmm.sweep(jax.random.key(0), X, range(1, 9), max_iter=FULL, **kw))
    one = dict(covariance_type="full", tol=0.0)
    one_short = timed(lambda: jaxgmm.fit(jax.random.key(0), X, 8, max_iter=SHORT, **one))
    one_full = timed(lambda: jaxgmm.fit(jax.random.key(0), X, 8, max_iter=FULL, **one))
    print(
        json.dumps(
            {
                "sweep": (full - short) / (FULL - SHORT),
                "one": (one_full - one_short) / (FULL - SHORT),
            }
        )
    )


def run_mode(mode: str, path: Path, d: int, k: int) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, str(path), str(d), str(k)]
    if not mode.startswith("2 "):
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        return json.loads(out.strip().splitlines()[-1])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = [
        subprocess.Popen([*cmd, str(port), str(i)], stdout=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    outs = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    return {"per_pass": outs[0]["per_pass"], "rss_mb": max(o["rss_mb"] for o in outs)}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        mode, path, d, k, *rest = sys.argv[2:]
        if mode == "sweep":
            return sweep_child(path)
        return child(mode, path, int(d), int(k), *map(int, rest))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", default="250k,1M,4M,16M")
    p.add_argument("--d", type=int, default=8)
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--dir", default="/tmp/jaxgmm-scale")
    p.add_argument("--sweep-rows", default="1M")
    p.add_argument("--modes", default="memory,npy,parquet,2 stream,2 in mem")
    args = p.parse_args()
    directory = Path(args.dir)
    directory.mkdir(parents=True, exist_ok=True)
    modes = args.modes.split(",")
    if modes[0] != "memory":
        p.error("--modes: the first mode is memory (the reference)")
    print(f"full covariances, D={args.d}, K={args.k}, float64; {os.cpu_count()} cores")
    print(f"{'rows':>10} {'mode':>8} {'s/pass':>8} {'vs memory':>10} {'peak RSS MB':>12}")
    first_rss: dict[str, float] = {}
    for n in parse_rows(args.rows):
        npy, parquet = write_data(directory, n, args.d, args.k)
        base = None
        for mode in modes:
            r = run_mode(mode, parquet if mode == "parquet" else npy, args.d, args.k)
            base = r["per_pass"] if mode == "memory" else base
            first_rss.setdefault(mode, r["rss_mb"])
            growth = r["rss_mb"] / first_rss[mode] - 1
            print(
                f"{n:>10} {mode:>8} {r['per_pass']:>8.3f} {base / r['per_pass']:>9.2f}x "
                f"{r['rss_mb']:>8.0f} ({growth:+.0%})",
                flush=True,
            )
    n = parse_rows(args.sweep_rows)[0]
    if n == 0:  # --sweep-rows 0: no sweep
        return
    npy, _ = write_data(directory, n, args.d, args.k)
    cmd = [sys.executable, __file__, "--child", "sweep", str(npy), "0", "0"]
    r = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    print(
        f"\nsweep K=1..8 x 2 restarts (16 fits) on {n} rows from .npy: {r['sweep']:.3f} s per "
        f"iteration; one K=8 fit {r['one']:.3f} s ({r['sweep'] / r['one']:.1f}x one fit's "
        "pass for 16 fits)"
    )


if __name__ == "__main__":
    main()
