"""Reading and writing the command line's data files: CSV, TSV, ``.npy``, ``.npz`` and
Parquet (with pyarrow). Every problem is a :class:`DataError` whose one-line message
names the file, the column or line, and the fix.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from pathlib import Path

import numpy as np

from .io import atomic_write

__all__ = ["DataError", "Table", "read_table", "write_table"]

MISSING = {"", "na", "nan", "n/a", "null", "none", "-"}
TEXT_FORMATS = {".csv": ",", ".tsv": "\t", ".tab": "\t", ".txt": None}
FORMATS = (".csv", ".tsv", ".tab", ".txt", ".npy", ".npz", ".parquet", ".pq")


class DataError(ValueError):
    """Bad input for the command line; its message is shown as it is, exit code 2."""


@dataclasses.dataclass
class Table:
    """Named columns as read: text files keep their text, so that outputs can repeat
    the input's columns exactly."""

    path: Path
    names: list[str]
    columns: list[np.ndarray]
    line_of_row: np.ndarray  # 1-based line (text files) or row number of each row

    @property
    def n_rows(self) -> int:
        return len(self.line_of_row)

    def numeric(self, names: list[str] | None = None, dropna: bool = False):
        """The named columns (all by default) as a float64 matrix, and the kept rows.

        Raises DataError on unknown or non-numeric columns and on missing values
        (unless ``dropna``).
        """
        names = self.names if names is None else names
        unknown = [n for n in names if n not in self.names]
        if unknown:
            raise DataError(
                f"{self.path}: no column {unknown[0]!r}; the columns are {', '.join(self.names)}"
            )
        cols = []
        missing = np.zeros(self.n_rows, bool)
        counts = {}
        for name in names:
            raw = self.columns[self.names.index(name)]
            values, absent = _to_float(raw, name, self)
            cols.append(values)
            missing |= absent
            if absent.any():
                counts[name] = int(absent.sum())
        x = np.column_stack(cols) if cols else np.zeros((self.n_rows, 0))
        if missing.any() and not dropna:
            where = ", ".join(f"column {n!r}: {c}" for n, c in counts.items())
            raise DataError(
                f"{self.path}: {int(missing.sum())} row(s) with missing values ({where}); "
                "drop those rows with --dropna"
            )
        keep = ~missing
        return x[keep], keep


def _to_float(raw: np.ndarray, name: str, table: Table):
    if raw.dtype.kind not in "fiub":
        try:  # text columns that are all numbers: converted in C, one call
            raw = raw.astype(np.float64)
        except (ValueError, TypeError):
            pass  # missing markers or text: the row-by-row pass below names them
    if raw.dtype.kind in "fiub":
        values = raw.astype(np.float64)
        bad = np.isinf(values)
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(
                f"{table.path}: column {name!r} has an infinite value at "
                f"{_where(table, i)}; remove or fix that row"
            )
        return values, np.isnan(values)
    values = np.empty(len(raw))
    absent = np.zeros(len(raw), bool)
    for i, text in enumerate(raw):
        text = "" if text is None else str(text).strip()
        if text.lower() in MISSING:
            absent[i], values[i] = True, np.nan
            continue
        try:
            values[i] = float(text)
        except ValueError:
            raise DataError(
                f"{table.path}: column {name!r} is not numeric ({text!r} at "
                f"{_where(table, i)}); choose numeric columns with --columns"
            ) from None
        if not math.isfinite(values[i]):
            raise DataError(
                f"{table.path}: column {name!r} has an infinite value at "
                f"{_where(table, i)}; remove or fix that row"
            )
    return values, absent


def _where(table: Table, i: int) -> str:
    kind = "line" if table.path.suffix.lower() in TEXT_FORMATS else "row"
    return f"{kind} {int(table.line_of_row[i])}"


def read_table(path: str | Path) -> Table:
    """Read a data file by its extension (see :data:`FORMATS`)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, not a data file")
    suffix = path.suffix.lower()
    try:
        if suffix in TEXT_FORMATS:
            return _read_text(path, TEXT_FORMATS[suffix])
        if suffix in (".npy", ".npz"):
            return _read_numpy(path)
        if suffix in (".parquet", ".pq"):
            return _read_parquet(path)
    except DataError:
        raise
    except (OSError, ValueError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: cannot read it as {suffix} ({e})") from None
    raise DataError(
        f"{path}: unknown file format {suffix or '(no extension)'!r}; use one of "
        + " ".join(FORMATS)
    )


def _read_text(path: Path, delimiter: str | None) -> Table:
    text = path.read_text(encoding="utf-8-sig")
    if delimiter is None:
        first = text.split("\n", 1)[0]
        delimiter = "\t" if "\t" in first else ","
    rows = [(i + 1, r) for i, r in enumerate(csv.reader(io.StringIO(text), delimiter=delimiter))]
    rows = [(line, r) for line, r in rows if any(f.strip() for f in r)]
    if not rows:
        raise DataError(f"{path}: the file is empty")
    head = rows[0][1]
    has_header = not all(_is_number_or_missing(f) for f in head)
    names = [h.strip() or f"column{j + 1}" for j, h in enumerate(head)] if has_header else None
    body = rows[1:] if has_header else rows
    width = len(head)
    for line, r in body:
        if len(r) != width:
            raise DataError(
                f"{path}: line {line} has {len(r)} fields, the header has {width}; "
                "fix that line (is the delimiter right?)"
            )
    if names is None:
        names = [f"x{j}" for j in range(width)]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise DataError(f"{path}: column name {dup!r} appears twice; rename one")
    cols = [np.array([r[j] for _, r in body], dtype=object) for j in range(width)]
    return Table(path, names, cols, np.array([line for line, _ in body], dtype=np.int64))


def _is_number_or_missing(text: str) -> bool:
    text = text.strip()
    if text.lower() in MISSING:
        return True
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_numpy(path: Path) -> Table:
    data = np.load(path, allow_pickle=False)
    if isinstance(data, np.lib.npyio.NpzFile):
        with data:
            if not data.files:
                raise DataError(f"{path}: the archive holds no array")
            name = next((n for n in ("X", "x", "data") if n in data.files), data.files[0])
            arr = data[name]
    else:
        arr = data
    if arr.dtype.names:  # a structured array: named columns
        names = list(arr.dtype.names)
        cols = [np.asarray(arr[n]) for n in names]
        return Table(path, names, cols, np.arange(1, len(arr) + 1))
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise DataError(f"{path}: expected a 2-D array (rows x columns), got shape {arr.shape}")
    if arr.dtype.kind not in "fiub":
        raise DataError(f"{path}: the array is not numeric (dtype {arr.dtype})")
    names = [f"x{j}" for j in range(arr.shape[1])]
    return Table(path, names, list(arr.T), np.arange(1, arr.shape[0] + 1))


_PYARROW_HINT = "Parquet needs pyarrow: pip install 'jaxgmm[parquet]' (or pip install pyarrow)"


def _pyarrow():
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise DataError(_PYARROW_HINT) from None
    return pyarrow


def _read_parquet(path: Path) -> Table:
    pa = _pyarrow()
    try:
        t = pa.parquet.read_table(path)
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{path}: not a readable Parquet file ({e})") from None
    cols = []
    for name in t.column_names:
        c = t.column(name)
        if pa.types.is_integer(c.type) or pa.types.is_floating(c.type):
            cols.append(np.asarray(c.to_numpy(zero_copy_only=False), np.float64))
        else:
            cols.append(np.array(c.to_pylist(), dtype=object))
    return Table(path, list(t.column_names), cols, np.arange(1, t.num_rows + 1))


def write_table(path: str | Path | None, names: list[str], columns: list, out=None) -> None:
    """Write columns to ``path`` (CSV, TSV, ``.npy`` or Parquet by its extension;
    atomically) or, without a path, as CSV to ``out``."""
    if path is None:
        w = csv.writer(out, lineterminator="\n")
        w.writerow(names)
        w.writerows(zip(*(_texts(c) for c in columns), strict=True))
        return
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        pa = _pyarrow()
        table = pa.table({n: np.asarray(c) for n, c in zip(names, columns, strict=True)})
        atomic_write(path, lambda f: pa.parquet.write_table(table, f))
    elif suffix == ".npy":
        arr = np.column_stack([np.asarray(c, np.float64) for c in columns])
        atomic_write(path, lambda f: np.save(f, arr))
    elif suffix in TEXT_FORMATS or suffix == "":
        delimiter = TEXT_FORMATS.get(suffix) or ","

        def write(f):
            text = io.TextIOWrapper(f, encoding="utf-8", newline="")
            w = csv.writer(text, delimiter=delimiter, lineterminator="\n")
            w.writerow(names)
            w.writerows(zip(*(_texts(c) for c in columns), strict=True))
            text.flush()
            text.detach()

        atomic_write(path, write)
    else:
        raise DataError(f"{path}: cannot write {suffix!r} files; use .csv, .tsv, .npy or .parquet")


def _texts(column) -> list[str]:
    column = np.asarray(column)
    if column.dtype.kind == "f":
        return [repr(float(v)) for v in column]
    return [str(v) for v in column]
