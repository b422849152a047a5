"""Reading and writing the command line's data files: CSV, TSV, ``.npy``, ``.npz`` and
Parquet (with pyarrow). Every problem is a :class:`DataError` whose one-line message
names the file, the column or line, and the fix.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import zipfile
from pathlib import Path

import numpy as np

from .._io import atomic_write

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
    note: str | None = None  # something the user should hear about how it was read

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


def read_table(path: str | Path, header: bool = True) -> Table:
    """Read a data file by its extension (see :data:`FORMATS`).

    Parameters
    ----------
    path : str or Path
    header : bool, default=True
        Whether the first row of a text file holds the column names (pandas' rule:
        it does, even when it looks like numbers); without one the columns are named
        ``x0``, ``x1``, ... Other formats carry their names and ignore it.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, not a data file")
    suffix = path.suffix.lower()
    try:
        if suffix in TEXT_FORMATS:
            return _read_text(path, TEXT_FORMATS[suffix], header)
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


def _read_text(path: Path, delimiter: str | None, header: bool) -> Table:
    text = path.read_text(encoding="utf-8-sig")
    if delimiter is None:
        first = text.split("\n", 1)[0]
        delimiter = "\t" if "\t" in first else ","
    rows = [(i + 1, r) for i, r in enumerate(csv.reader(io.StringIO(text), delimiter=delimiter))]
    rows = [(line, r) for line, r in rows if any(f.strip() for f in r)]
    if not rows:
        raise DataError(f"{path}: the file is empty")
    head = rows[0][1]
    names = [h.strip() or f"column{j + 1}" for j, h in enumerate(head)] if header else None
    body = rows[1:] if header else rows
    note = None
    if header and _looks_like_data(head):
        # a header of years or codes looks like data; say which way it was read
        note = (
            f"{path}: the first line ({','.join(f.strip() for f in head)}) is read as column "
            "names; give --no-header if it is data"
        )
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
    lines = np.array([line for line, _ in body], dtype=np.int64)
    return Table(path, names, cols, lines, note)


def _looks_like_data(fields: list[str]) -> bool:
    """Whether a row is all numbers (or missing markers), at least one a number."""
    return all(_is_number_or_missing(f) for f in fields) and any(
        f.strip().lower() not in MISSING for f in fields
    )


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
            arrays = {name: data[name] for name in data.files}
        if _are_columns(arrays):  # as write_table writes it: one array per column
            names = list(arrays)
            n = len(arrays[names[0]])
            return Table(path, names, list(arrays.values()), np.arange(1, n + 1))
        name = next((n for n in ("X", "x", "data") if n in arrays), next(iter(arrays)))
        arr = arrays[name]
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


def _are_columns(arrays: dict[str, np.ndarray]) -> bool:
    """Whether an archive's arrays are named columns: two or more 1-D arrays of one
    length (an archive with one array, or with 2-D ones, holds a matrix)."""
    values = list(arrays.values())
    return (
        len(values) > 1 and all(a.ndim == 1 for a in values) and len({len(a) for a in values}) == 1
    )


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
            # integers stay integers (with nulls, pyarrow gives floats and NaN)
            cols.append(np.asarray(c.to_numpy(zero_copy_only=False)))
        else:
            cols.append(np.array(c.to_pylist(), dtype=object))
    return Table(path, list(t.column_names), cols, np.arange(1, t.num_rows + 1))


def write_table(path: str | Path | None, names: list[str], columns: list, out=None) -> None:
    """Write columns to ``path`` by its extension, atomically, or as CSV to ``out``.

    CSV and TSV repeat text columns as they were read; Parquet, ``.npy`` and ``.npz``
    carry numbers as numbers (see :func:`typed`). ``.npy`` is one float matrix, so
    every column must be numeric; ``.npz`` holds one array per column, under the
    column's name (text as unicode arrays, which load without pickle).
    """
    if path is None:
        _write_csv(out, names, columns, ",")
        return
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        pa = _pyarrow()
        table = pa.table({n: typed(c) for n, c in zip(names, columns, strict=True)})
        atomic_write(path, lambda f: pa.parquet.write_table(table, f))
    elif suffix == ".npy":
        arr = _matrix(path, names, columns)
        atomic_write(path, lambda f: np.save(f, arr, allow_pickle=False))
    elif suffix == ".npz":
        arrays = {n: _plain_array(c) for n, c in zip(names, columns, strict=True)}
        atomic_write(path, lambda f: _write_npz(f, arrays))
    elif suffix in TEXT_FORMATS or suffix == "":
        delimiter = TEXT_FORMATS.get(suffix) or ","

        def write(f):
            text = io.TextIOWrapper(f, encoding="utf-8", newline="")
            _write_csv(text, names, columns, delimiter)
            text.flush()
            text.detach()

        atomic_write(path, write)
    else:
        raise DataError(
            f"{path}: cannot write {suffix!r} files; use .csv, .tsv, .npy, .npz or .parquet"
        )


def _write_csv(out, names, columns, delimiter: str) -> None:
    w = csv.writer(out, delimiter=delimiter, lineterminator="\n")
    w.writerow(names)
    w.writerows(zip(*(_texts(c) for c in columns), strict=True))


def typed(column) -> np.ndarray:
    """A column as a typed format should hold it: text that is all integers as int64,
    all numbers (or missing markers) as float64 with NaN, anything else unchanged.

    Text files are read as text so that CSV outputs repeat them exactly; Parquet,
    JSON and numpy outputs must not turn the input's numbers into strings.
    """
    column = np.asarray(column)
    if column.dtype.kind not in "OU" or len(column) == 0:
        return column
    if not all(isinstance(v, str) for v in column.tolist()):
        return column  # Python objects from Parquet (bools, dates, nulls): as they are
    texts = np.char.strip(column.astype(str))
    missing = np.isin(np.char.lower(texts), list(MISSING))
    if missing.all():
        return column
    if not missing.any():
        try:  # int() takes no "1.5" nor "1e3": only integer literals pass
            return np.array([int(t) for t in texts], dtype=np.int64)
        except (ValueError, OverflowError):
            pass
    try:
        values = np.where(missing, "nan", texts).astype(np.float64)
    except ValueError:
        return column  # text
    return values


def _plain_array(column) -> np.ndarray:
    """A column as an array numpy writes without pickle: numbers typed, text unicode."""
    column = typed(column)
    if column.dtype.kind == "O":
        return np.array(["" if v is None else str(v) for v in column.tolist()])
    return column


def _matrix(path: Path, names: list[str], columns: list) -> np.ndarray:
    """The columns as one float matrix for ``.npy``; a text column is an error that
    names it, not a failed conversion deep in numpy."""
    typed_columns = [typed(c) for c in columns]
    for name, column in zip(names, typed_columns, strict=True):
        if column.dtype.kind not in "fiub":
            raise DataError(
                f"{path}: column {name!r} is text and a .npy file holds numbers only; "
                "write .csv, .parquet or .npz instead"
            )
    if not typed_columns:
        return np.zeros((0, 0))
    return np.column_stack([c.astype(np.float64) for c in typed_columns])


def _write_npz(f, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez`` by hand: a column may be named ``file`` or ``allow_pickle``, which
    ``np.savez(f, **arrays)`` would take as its own arguments."""
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, arr in arrays.items():
            with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, arr, allow_pickle=False)


def _texts(column) -> list[str]:
    column = np.asarray(column)
    if column.dtype.kind == "f":
        return [repr(float(v)) for v in column]
    return [str(v) for v in column]
