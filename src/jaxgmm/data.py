"""Data sources: rows that a fit reads chunk by chunk, never all at once.

A *source* is any object with

* ``n_rows`` and ``n_features`` (ints) and ``dtype`` (a NumPy floating dtype, or
  None: float64);
* ``read(start, stop)``: rows ``start`` to ``stop`` as ``(x, w)``, ``x`` a float
  array of shape (stop - start, n_features) and ``w`` their weights (None: all 1).

That is the whole protocol (:class:`Source`): a Dask array, a Zarr store or a
database cursor becomes a source in a few lines. jaxgmm supplies

* :class:`ArraySource`: an array in memory (with optional weights);
* :class:`NpySource`: a ``.npy`` file, read with ``seek`` and ``readinto`` one chunk
  at a time (not memory-mapped: mapped pages count in the process's memory);
* :class:`ParquetSource`: Parquet files or a directory of them (pyarrow), some
  columns as features and one as the weight, read by row groups.

:func:`as_source` turns an array or a path into a source; :func:`share` gives the
rows of one process of several (contiguous, as even as possible), and
:func:`chunks` walks a source's rows in chunks of a fixed size.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np


def float_dtype(x) -> np.dtype:
    """:func:`jaxgmm._typing.float_dtype` (imported when first used: it imports JAX,
    which the command line's early errors need not wait for)."""
    from ._typing import float_dtype

    return float_dtype(x)


__all__ = [
    "ArraySource",
    "Derived",
    "NpySource",
    "ParquetSource",
    "RowRange",
    "Source",
    "as_source",
    "chunks",
    "is_source",
    "share",
    "write_rows",
]


@runtime_checkable
class Source(Protocol):
    """Rows read by ranges: what a streamed fit needs of its data."""

    n_rows: int
    n_features: int
    dtype: Any

    def read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray | None]: ...


@dataclasses.dataclass(frozen=True)
class ArraySource:
    """Rows of an array in memory (``sample_weight``: one weight per row)."""

    x: Any
    sample_weight: Any = None

    def __post_init__(self):
        x = np.asarray(self.x)
        if x.ndim != 2:
            raise ValueError(f"Expected a 2D array of rows, got an array of shape {x.shape}")
        w = self.sample_weight
        if w is not None:
            w = np.asarray(w, np.float64)
            if w.shape != (x.shape[0],):
                raise ValueError(
                    f"sample_weight has shape {w.shape}; expected ({x.shape[0]},), one per row"
                )
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "sample_weight", w)

    @property
    def n_rows(self) -> int:
        return self.x.shape[0]

    @property
    def n_features(self) -> int:
        return self.x.shape[1]

    @property
    def dtype(self) -> np.dtype:
        return float_dtype(self.x)

    def read(self, start: int, stop: int):
        w = None if self.sample_weight is None else self.sample_weight[start:stop]
        return np.asarray(self.x[start:stop], self.dtype), w


class NpySource:
    """Rows of a 2-D ``.npy`` file (C order, any real dtype), read chunk by chunk."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            with open(self.path, "rb") as f:
                version = np.lib.format.read_magic(f)
                read_header = {
                    (1, 0): np.lib.format.read_array_header_1_0,
                    (2, 0): np.lib.format.read_array_header_2_0,
                }.get(version)
                if read_header is None:
                    raise ValueError(f"format version {version} is not supported")
                shape, fortran, dtype = read_header(f)
                self._offset = f.tell()
        except (OSError, ValueError) as e:
            raise ValueError(f"{self.path}: not a readable .npy file ({e})") from None
        if len(shape) != 2 or fortran or dtype.hasobject or dtype.kind not in "fiu":
            raise ValueError(
                f"{self.path}: a source needs a 2-D numeric array in C order, got shape "
                f"{shape}, dtype {dtype}{', Fortran order' if fortran else ''}; "
                "np.save(path, np.ascontiguousarray(x, float)) writes one"
            )
        self.n_rows, self.n_features = shape
        self._file_dtype = dtype
        self.dtype = float_dtype(dtype)

    def read(self, start: int, stop: int):
        n = max(stop - start, 0)
        out = np.empty((n, self.n_features), self._file_dtype)
        row_bytes = self.n_features * self._file_dtype.itemsize
        with open(self.path, "rb", buffering=0) as f:
            f.seek(self._offset + start * row_bytes)
            view = memoryview(out.reshape(-1).view(np.uint8))
            got = 0
            while got < view.nbytes:  # readinto may return less than asked
                k = f.readinto(view[got:])
                if not k:
                    raise ValueError(f"{self.path}: the file ends before row {stop}")
                got += k
        return out.astype(self.dtype, copy=False), None

    def __repr__(self) -> str:
        return f"NpySource({str(self.path)!r})"


class ParquetSource:
    """Rows of Parquet files (a file, a directory of ``*.parquet`` files, or a list,
    in that order): ``columns`` as the features (default: every numeric column but
    the weight), ``weight`` the name of a column of sample weights. Reads row groups
    as they are needed; rows need not align with them."""

    def __init__(
        self,
        path: str | os.PathLike | Sequence[str | os.PathLike],
        columns: Sequence[str] | None = None,
        weight: str | None = None,
    ):
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise ImportError(
                "Parquet needs pyarrow: pip install 'jaxgmm[parquet]' (or pip install pyarrow)"
            ) from None
        self.files = _parquet_files(path)
        schema = pq.read_schema(self.files[0])
        numeric = [f.name for f in schema if _is_numeric(f.type)]
        if weight is not None and weight not in schema.names:
            raise ValueError(f"{self.files[0]}: no weight column {weight!r}; it has {schema.names}")
        if columns is None:
            columns = [c for c in numeric if c != weight]
        missing = [c for c in columns if c not in numeric]
        if missing:
            raise ValueError(
                f"{self.files[0]}: the feature columns {missing} are not numeric columns of "
                f"the file (numeric: {numeric})"
            )
        if not columns:
            raise ValueError(f"{self.files[0]}: no numeric feature columns")
        self.columns, self.weight = list(columns), weight
        # (file, row group, first row, rows) of every row group, in order
        self._groups = []
        first = 0
        for file in self.files:
            meta = pq.ParquetFile(file).metadata
            for g in range(meta.num_row_groups):
                rows = meta.row_group(g).num_rows
                self._groups.append((file, g, first, rows))
                first += rows
        self.n_rows, self.n_features = first, len(self.columns)
        types = [schema.field(c).type for c in self.columns]
        all32 = all(str(t) == "float" for t in types)
        self.dtype = np.dtype(np.float32 if all32 else np.float64)
        self._cached = None  # ((file, row group), its table): the last group read

    def __getstate__(self):
        return {**vars(self), "_cached": None}

    def read(self, start: int, stop: int):
        import pyarrow as pa  # not kept on the source, which stays picklable
        import pyarrow.parquet as pq

        xs, ws, opened = [], [], {}
        wanted = self.columns + ([self.weight] if self.weight else [])
        for file, g, first, rows in self._groups:
            lo, hi = max(start, first), min(stop, first + rows)
            if lo >= hi:
                continue
            if self._cached is not None and self._cached[0] == (file, g):
                table = self._cached[1]
            else:
                if file not in opened:  # each file's footer is read once per call
                    opened[file] = pq.ParquetFile(file)
                self._cached = None  # the previous group's memory goes back first
                pa.default_memory_pool().release_unused()
                table = opened[file].read_row_group(g, columns=wanted)
                # chunks are read in order and are often smaller than a row group:
                # the last group read is kept for the next chunk (decoding a group
                # once per chunk cost 16x for 64k-row chunks of 1M-row groups)
                self._cached = ((file, g), table)
            table = table.slice(lo - first, hi - lo)
            cols = [_column(table, c, file) for c in wanted]
            xs.append(np.stack(cols[: self.n_features], axis=1).astype(self.dtype, copy=False))
            if self.weight:
                ws.append(cols[-1].astype(np.float64, copy=False))
        x = np.concatenate(xs) if xs else np.empty((0, self.n_features), self.dtype)
        w = (np.concatenate(ws) if ws else np.empty(0)) if self.weight else None
        return x, w

    def __repr__(self) -> str:
        return f"ParquetSource({[str(f) for f in self.files]!r}, columns={self.columns!r})"


def _parquet_files(path) -> list[Path]:
    if isinstance(path, str | os.PathLike):
        p = Path(path)
        files = sorted(p.glob("*.parquet")) + sorted(p.glob("*.pq")) if p.is_dir() else [p]
    else:
        files = [Path(f) for f in path]
    if not files:
        raise ValueError(f"{path}: no Parquet files (*.parquet, *.pq) there")
    for f in files:
        if not f.is_file():
            raise ValueError(f"{f}: no such Parquet file")
    return files


def _is_numeric(t) -> bool:
    import pyarrow as pa

    return pa.types.is_integer(t) or pa.types.is_floating(t)


def _column(table, name: str, file) -> np.ndarray:
    column = table.column(name)
    if column.null_count:
        raise ValueError(f"{file}: column {name!r} has {column.null_count} missing values")
    return np.asarray(column.to_numpy(zero_copy_only=False))


@dataclasses.dataclass(frozen=True)
class Derived:
    """A source made from another, ``source``: the same features, dtype and column
    names (a subclass gives ``n_rows`` and ``read``)."""

    source: Any

    @property
    def n_features(self) -> int:
        return self.source.n_features

    @property
    def dtype(self):
        return self.source.dtype

    @property
    def columns(self) -> list[str] | None:
        return getattr(self.source, "columns", None)


@dataclasses.dataclass(frozen=True)
class RowRange(Derived):
    """Rows ``start`` to ``stop`` of ``source``: itself a source (one process's share)."""

    start: int
    stop: int

    @property
    def n_rows(self) -> int:
        return self.stop - self.start

    def read(self, start: int, stop: int):
        return self.source.read(self.start + start, self.start + min(stop, self.n_rows))


def share(source: Source, process_index: int, process_count: int) -> RowRange:
    """The rows process ``process_index`` of ``process_count`` reads: contiguous, the
    first ``n_rows % process_count`` processes one row more than the others."""
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index must be in [0, {process_count}), got {process_index}")
    base, extra = divmod(source.n_rows, process_count)
    start = process_index * base + min(process_index, extra)
    return RowRange(source, start, start + base + (process_index < extra))


def is_source(data) -> bool:
    """Whether ``data`` is a source or the path of one (not an array)."""
    if isinstance(data, np.ndarray):  # first: a check against the protocol takes ~30 us
        return False
    return isinstance(data, Source | str | os.PathLike)


def as_source(data, sample_weight=None) -> Source:
    """A source for ``data``: a source itself, a path (``.npy``, ``.parquet``, or a
    directory of Parquet files) or an array in memory."""
    if isinstance(data, Source):
        if sample_weight is not None:
            raise ValueError("sample_weight goes with an array; a source carries its own weights")
        return data
    if isinstance(data, str | os.PathLike):
        p = Path(data)
        if sample_weight is not None:
            raise ValueError("sample_weight goes with an array; name a weight column instead")
        if p.suffix.lower() == ".npy":
            return NpySource(p)
        if p.is_dir() or p.suffix.lower() in (".parquet", ".pq"):
            return ParquetSource(p)
        raise ValueError(f"{p}: a source file is .npy or Parquet (or a directory of Parquet)")
    return ArraySource(data, sample_weight)


def chunks(source: Source, rows: int) -> Iterator[tuple[int, np.ndarray, np.ndarray | None]]:
    """``(start, x, w)`` for consecutive chunks of ``rows`` rows (the last may be
    shorter), in order."""
    for start in range(0, source.n_rows, rows):
        x, w = source.read(start, min(start + rows, source.n_rows))
        yield start, x, w


def write_rows(path, column: str, n_rows: int, parts) -> None:
    """Write ``parts`` (arrays of rows, in order, ``n_rows`` in all) to a ``.npy`` or
    Parquet file as they come, so that they are never all in memory. A 2-D part's
    columns are named ``column_0``, ``column_1``... in Parquet. Written to a temporary
    file that replaces ``path`` only when complete."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".npy", ".parquet", ".pq"):
        raise ValueError(f"{path}: rows are written to a .npy or a .parquet file")
    tmp = path.with_name(f".{path.name}.partial")
    try:
        if suffix == ".npy":
            _write_npy(tmp, n_rows, parts)
        else:
            _write_parquet(tmp, column, parts)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_npy(path: Path, n_rows: int, parts) -> None:
    parts = iter(parts)
    first = np.asarray(next(parts))
    header = {
        "descr": np.lib.format.dtype_to_descr(first.dtype),
        "fortran_order": False,
        "shape": (n_rows, *first.shape[1:]),
    }
    written = 0
    with open(path, "wb") as f:
        np.lib.format.write_array_header_2_0(f, header)
        for part in itertools.chain([first], parts):
            part = np.ascontiguousarray(part, first.dtype)
            f.write(part.tobytes())
            written += len(part)
    if written != n_rows:
        raise RuntimeError(f"{path}: wrote {written} rows, expected {n_rows}")


def _write_parquet(path: Path, column: str, parts) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer = None
    try:
        for part in parts:
            part = np.asarray(part)
            if part.ndim == 1:
                table = pa.table({column: part})
            else:
                table = pa.table({f"{column}_{j}": part[:, j] for j in range(part.shape[1])})
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
