"""``jaxgmm fit``'s streamed mode: data larger than ``--memory-budget`` is fitted from a
data source (:mod:`jaxgmm.data`) in chunks, never read whole. With ``--distributed``
several processes each read their share: into memory where it fits the budget (one
program over every process's devices), else in chunks."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import sys
from pathlib import Path

import numpy as np

from ..data import Derived
from ._common import Usage
from ._datafiles import DataError

#: An in-memory fit holds about this many copies of the rows at its peak (the file's
#: values, the float array, the padded device copy).
IN_MEMORY_COPIES = 3
_UNITS = {"": 1, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def add_options(p) -> None:
    p.add_argument(
        "--memory-budget",
        metavar="SIZE",
        help="stream the data in chunks when an in-memory fit would need more than SIZE "
        "(e.g. 4GB, 512MB); .npy and Parquet files only",
    )
    p.add_argument(
        "--distributed",
        action="store_true",
        help="one fit over several processes (jaxgmm.distributed.initialize: from "
        "JAXGMM_COORDINATOR/_NUM_PROCESSES/_PROCESS_ID or srun/mpirun); each reads its share "
        "(into memory if it fits --memory-budget, else in chunks)",
    )
    p.add_argument("--coordinator", metavar="HOST:PORT", help="with --distributed: the coordinator")
    p.add_argument("--num-processes", type=int, help="with --distributed: processes in the run")
    p.add_argument("--process-id", type=int, help="with --distributed: this process's index")


def parse_size(text: str) -> int:
    """``4GB``, ``4G``, ``4GiB``, ``512MB``, ``1.5g`` or a number of bytes."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(i?b)?\s*", text, re.IGNORECASE)
    if not m or float(m.group(1)) <= 0:
        raise Usage(f"--memory-budget {text!r}: give a size such as 4GB, 512MB or 1.5G")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def join_run(args) -> bool:
    """Join a multi-process run if asked; whether this process writes the results
    (process 0, or the only one)."""
    asked = args.distributed or args.coordinator or args.num_processes or args.process_id
    if not asked:
        return True
    if not args.distributed:
        raise Usage("--coordinator, --num-processes and --process-id go with --distributed")
    from .. import distributed

    try:
        distributed.initialize(args.coordinator, args.num_processes, args.process_id)
    except ValueError as e:
        raise Usage(f"--distributed: {e}") from None
    return distributed.process_index() == 0


def source_for(args, columns: list[str] | None):
    """A data source for ``args.data`` when the fit streams (``None``: read it whole)."""
    from .. import data

    budget = parse_size(args.memory_budget) if args.memory_budget else None
    if budget is None and not args.distributed:
        return None
    path = Path(args.data)
    streamable = path.suffix.lower() in (".npy", ".parquet", ".pq") or path.is_dir()
    if not streamable:
        size = path.stat().st_size if path.is_file() else 0
        if args.distributed or size * IN_MEMORY_COPIES > budget:
            raise DataError(
                f"{path}: only .npy and Parquet files (or a directory of Parquet files) are "
                "read in chunks; convert it to Parquet to stream it"
            )
        return None
    try:
        if path.suffix.lower() == ".npy":
            source = data.NpySource(path)
            if columns is not None:
                raise DataError(f"{path}: --columns needs named columns; a .npy file has none")
        else:
            source = data.ParquetSource(path, columns=columns)
    except ValueError as e:
        raise DataError(str(e)) from None
    needed = source.n_rows * source.n_features * 8 * IN_MEMORY_COPIES
    if not args.distributed and needed <= budget:
        return None
    if args.dropna:
        raise DataError(f"{path}: --dropna needs the data in memory; drop the rows beforehand")
    return source


def own_rows(args, source) -> np.ndarray | None:
    """With ``--distributed``: this process's share of the rows, in memory, where the
    largest share fits ``--memory-budget`` (or no budget is given); None: stream it.
    Every process decides alike (from the largest share), as they must run the same
    fit."""
    from .. import distributed
    from ..data import share

    count = distributed.process_count()
    largest = -(-source.n_rows // count) * source.n_features * 8 * IN_MEMORY_COPIES
    if args.memory_budget and largest > parse_size(args.memory_budget):
        return None
    part = share(source, distributed.process_index(), count)
    return part.read(0, part.n_rows)[0]


def names_of(source) -> list[str]:
    return list(getattr(source, "columns", None) or [f"x{j}" for j in range(source.n_features)])


def column_moments(source) -> tuple[np.ndarray, np.ndarray]:
    """The columns' mean and standard deviation, in one pass (shifted by the first
    row, so that large offsets do not cancel)."""
    from ..data import chunks

    shift, n, s1, s2 = None, 0, 0.0, 0.0
    for _, x, _ in chunks(source, 1 << 16):
        x = np.asarray(x, np.float64)
        shift = x[0] if shift is None else shift
        x = x - shift
        n, s1, s2 = n + len(x), s1 + x.sum(0), s2 + (x * x).sum(0)
    mean = s1 / n
    return shift + mean, np.sqrt(np.maximum(s2 / n - mean * mean, 0.0))


@dataclasses.dataclass(frozen=True)
class Standardized(Derived):
    """A source's rows as ``(x - mean) / scale``: itself a source."""

    mean: np.ndarray
    scale: np.ndarray

    @property
    def n_rows(self) -> int:
        return self.source.n_rows

    def read(self, start: int, stop: int):
        x, w = self.source.read(start, stop)
        return ((x - self.mean) / self.scale).astype(self.dtype, copy=False), w


def spread_rows(source, most: int = 1 << 20) -> np.ndarray:
    """At most ``most`` rows spread evenly over the source (every n-th row): what
    the fit's log-likelihood quantiles are taken from."""
    from ..data import chunks

    step = max(1, -(-source.n_rows // most))
    parts = [x[(-start) % step :: step] for start, x, _ in chunks(source, step * 4096)]
    return np.concatenate(parts)


@contextlib.contextmanager
def quiet_stdout(active: bool):
    """Standard output sent to standard error while ``active``: the collectives'
    library (gloo) prints a line to stdout when processes connect, which would land in
    ``--json`` output or a table written to stdout."""
    if not active:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
