"""Reading and writing the command line's data files: CSV, TSV and whitespace-separated
text (through pyarrow's CSV reader; plain or compressed, from a file or standard
input), ``.npy``, ``.npz`` and Parquet. Every problem is a :class:`DataError` whose
one-line message names the file, the column or line, and the fix.
"""

from __future__ import annotations

import bz2
import contextlib
import csv
import dataclasses
import functools
import gzip
import io
import lzma
import math
import re
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .._io import atomic_write

__all__ = ["DataError", "ReadOptions", "Table", "read_table", "write_table"]

MISSING = {"", "na", "nan", "n/a", "null", "none", "-"}
#: The same markers as pyarrow's CSV reader should take them (it matches exactly).
_NULLS = sorted({v for m in MISSING for v in (m, m.upper(), m.capitalize())})
TEXT_FORMATS = {".csv": ",", ".tsv": "\t", ".tab": "\t", ".txt": None}
FORMATS = (".csv", ".tsv", ".tab", ".txt", ".npy", ".npz", ".parquet", ".pq")
#: Compressed files, by their last extension (data.csv.gz is CSV compressed by gzip).
COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd", ".zstd": "zstd"}
#: ``--format`` names, as extensions.
FORMAT_NAMES = {
    "csv": ".csv", "tsv": ".tsv", "txt": ".txt",
    "npy": ".npy", "npz": ".npz", "parquet": ".parquet",
}  # fmt: skip
#: ``--delimiter`` names for the characters a shell makes awkward.
DELIMITER_NAMES = {"tab": "\t", "\\t": "\t", "space": " ", "whitespace": " ", "comma": ",",
                   "semicolon": ";"}  # fmt: skip
#: Delimiters tried, in this order, when none is given and the extension says none.
_SNIFFED = (",", "\t", ";")


class DataError(ValueError):
    """Bad input for the command line; its message is shown as it is, exit code 2."""


@dataclasses.dataclass(frozen=True)
class ReadOptions:
    """How to read a data file: the command's reading flags, in one place.

    ``header``: whether a text file's first line names the columns (pandas' rule: it
    does, even when it looks like numbers); ``delimiter``: a text file's field
    separator (None: ``,`` for .csv, tab for .tsv, else the first of ``,``, tab and
    ``;`` that splits the first lines alike, else whitespace; ``" "`` is any run of
    spaces and tabs); ``encoding``: a text file's; ``format``: a name of
    :data:`FORMAT_NAMES` where the extension does not say (standard input is CSV).
    """

    header: bool = True
    delimiter: str | None = None
    encoding: str = "utf-8"
    format: str | None = None


@dataclasses.dataclass
class Table:
    """Named columns as read, typed as the reader found them (numbers as int64 or
    float64, with NaN where missing; anything else as Python objects)."""

    path: Path | str
    names: list[str]
    columns: list[np.ndarray]
    #: where data row ``i`` is in the file, for messages ("line 7", "row 7")
    locate: Callable[[int], str] | None = None
    note: str | None = None  # something the user should hear about how it was read

    @property
    def n_rows(self) -> int:
        return len(self.columns[0]) if self.columns else 0

    def where(self, i: int) -> str:
        return self.locate(i) if self.locate is not None else f"row {i + 1}"

    def numeric_names(self) -> tuple[list[str], list[str]]:
        """(numeric columns, the others): the columns a fit can take by default."""
        kinds = [_is_numeric(c) for c in self.columns]
        numeric = [n for n, k in zip(self.names, kinds, strict=True) if k]
        return numeric, [n for n, k in zip(self.names, kinds, strict=True) if not k]

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
        x = np.empty((self.n_rows, len(names)))
        missing = np.zeros(self.n_rows, bool)
        counts = {}
        for j, name in enumerate(names):
            raw = self.columns[self.names.index(name)]
            x[:, j], absent = _to_float(raw, name, self)
            missing |= absent
            if absent.any():
                counts[name] = int(absent.sum())
        if missing.any() and not dropna:
            where = ", ".join(f"column {n!r}: {c}" for n, c in counts.items())
            raise DataError(
                f"{self.path}: {int(missing.sum())} row(s) with missing values ({where}); "
                "drop those rows with --dropna"
            )
        keep = ~missing
        return (x[keep] if missing.any() else x), keep


def _is_numeric(column: np.ndarray) -> bool:
    return typed(column).dtype.kind in "fiu"


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
                f"{table.where(i)}; remove or fix that row"
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
                f"{table.where(i)}); choose numeric columns with --columns"
            ) from None
        if not math.isfinite(values[i]):
            raise DataError(
                f"{table.path}: column {name!r} has an infinite value at "
                f"{table.where(i)}; remove or fix that row"
            )
    return values, absent


def read_table(path: str | Path, options: ReadOptions = ReadOptions()) -> Table:
    """Read a data file (``"-"``: standard input) by its extension, or ``options.format``
    (see :data:`FORMATS`; ``.gz``, ``.bz2``, ``.xz`` and ``.zst`` after it are
    decompressed)."""
    stdin = str(path) == "-"
    path = Path(path)
    name = "stdin" if stdin else path
    if not stdin and not path.exists():
        raise DataError(f"{path}: no such file")
    if not stdin and path.is_dir():
        raise DataError(f"{path}: is a directory, not a data file")
    compression = None if stdin else COMPRESSIONS.get(path.suffix.lower())
    inner = path.with_suffix("") if compression else path
    suffix = _format_suffix(name, inner, options.format, stdin)
    try:
        if suffix in TEXT_FORMATS:
            plain = compression is None and not stdin  # pyarrow reads it in blocks
            source = path if plain else _read_arrow(path, compression, stdin)
            return _read_text(name, source, TEXT_FORMATS[suffix], options)
        if suffix in (".npy", ".npz"):
            plain = compression is None and not stdin
            source = path if plain else io.BytesIO(_read_bytes(path, compression, stdin))
            return _read_numpy(name, source)
        if suffix in (".parquet", ".pq"):
            plain = compression is None and not stdin
            return _read_parquet(name, path if plain else _read_arrow(path, compression, stdin))
    except DataError:
        raise
    except (OSError, ValueError, EOFError, UnicodeDecodeError, csv.Error, lzma.LZMAError) as e:
        raise DataError(f"{name}: cannot read it as {suffix} ({e})") from None
    raise AssertionError(suffix)  # _format_suffix knows no other


def _format_suffix(name, inner: Path, given: str | None, stdin: bool) -> str:
    """The extension that says how to read the data: ``--format``'s, else the file's
    (under its compression's); standard input is CSV unless told."""
    if given is not None:
        suffix = FORMAT_NAMES.get(given.lower().lstrip("."))
        if suffix is None:
            raise DataError(f"--format {given!r}: use one of {', '.join(FORMAT_NAMES)}")
        return suffix
    if stdin:
        return ".csv"
    suffix = inner.suffix.lower()
    if suffix not in FORMATS:
        raise DataError(
            f"{name}: unknown file format {suffix or '(no extension)'!r}; use one of "
            + " ".join(FORMATS)
            + " (optionally compressed: .gz .bz2 .xz .zst), or name it with --format"
        )
    return suffix


def _opened(path: Path, compression: str | None, stdin: bool):
    """The file (or standard input) as a binary stream of its decompressed bytes."""
    if stdin:
        return contextlib.nullcontext(sys.stdin.buffer)
    if compression == "zstd":  # not in Python's standard library before 3.14
        return _pyarrow().input_stream(str(path), compression="zstd")
    opener = {"gzip": gzip.open, "bz2": bz2.open, "xz": lzma.open}.get(compression, open)
    return opener(path, "rb")


def _read_bytes(path: Path, compression: str | None, stdin: bool) -> bytes:
    """The file's bytes, decompressed."""
    with _opened(path, compression, stdin) as f:
        return f.read()


def _read_arrow(path: Path, compression: str | None, stdin: bool):
    """The file's bytes, decompressed, in a buffer of pyarrow's own (see
    :func:`_arrow_copy`), written in pieces as they are decompressed: never the whole
    file twice in memory."""
    out = _pyarrow().BufferOutputStream()
    with _opened(path, compression, stdin) as f:
        while piece := f.read(1 << 24):
            out.write(piece)
    return out.getvalue()


def _read_text(name, source, usual: str | None, options: ReadOptions) -> Table:
    """CSV-like text (a file's path, or its bytes in a pyarrow buffer: _read_arrow) through
    pyarrow's reader (typed columns, in C); a file it cannot parse is checked line by
    line for a message that names the line. ``usual``: the extension's delimiter,
    preferred where it fits the first lines."""
    pa, pc = _pyarrow(), _pyarrow_csv()
    if isinstance(source, pa.Buffer):
        if source.size >= 3 and source.slice(0, 3).to_pybytes() == b"\xef\xbb\xbf":
            source = source.slice(3)
        head = source.slice(0, min(source.size, 1 << 16)).to_pybytes()
        whole = functools.cache(source.to_pybytes)  # a copy: for messages, re-encoded text
    else:
        with open(source, "rb") as f:
            head = f.read(1 << 16).removeprefix(b"\xef\xbb\xbf")
        whole = functools.cache(lambda: source.read_bytes().removeprefix(b"\xef\xbb\xbf"))
    complete = len(head) < 1 << 16  # the sample is the whole file
    if re.search(rb"\S", head) is None and re.search(rb"\S", whole()) is None:
        raise DataError(f"{name}: the file is empty")
    delimiter = options.delimiter
    if delimiter is not None:
        delimiter = DELIMITER_NAMES.get(delimiter.lower(), delimiter)
        if len(delimiter) != 1:
            raise DataError(f"--delimiter {delimiter!r}: give one character, or tab or space")
    sample = head.decode(options.encoding, errors="ignore")
    if delimiter is None:
        delimiter = _sniff(sample, usual, complete=complete)
    decimal = _decimal_mark(sample, delimiter)
    if delimiter == " " or options.encoding.lower().replace("_", "-") not in ("utf-8", "utf8"):
        text = _decoded(name, whole(), options.encoding)
        if delimiter == " ":  # runs of blanks: fields cannot be quoted, commas cannot occur
            text = "\n".join(",".join(line.split()) for line in text.splitlines())
            delimiter = ","
        encoded = text.encode("utf-8")
        source, whole = _arrow_copy(pa, encoded), lambda: encoded
    read = pc.ReadOptions(autogenerate_column_names=not options.header, block_size=1 << 24)
    parse = pc.ParseOptions(delimiter=delimiter, newlines_in_values=True)
    convert = pc.ConvertOptions(
        null_values=_NULLS,
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
        decimal_point=decimal,
    )
    given = str(source) if isinstance(source, Path) else pa.BufferReader(source)
    try:
        t = pc.read_csv(given, read, parse, convert)
    except pa.ArrowInvalid as e:
        if "UTF8" in str(e) or "UTF-8" in str(e):
            _decoded(name, whole(), "utf-8")  # raises the message that names --encoding
        _diagnose(name, whole(), delimiter, options.header)
        what = f"text separated by {delimiter!r}"
        raise DataError(f"{name}: cannot read it as {what} ({e}); see --delimiter") from None
    if any(pa.types.is_binary(c.type) for c in t.columns):  # pyarrow's reading of bad UTF-8
        _decoded(name, whole(), "utf-8")  # raises the message that names --encoding
    names = t.column_names
    if options.header:
        names = [n.strip() or f"column{j + 1}" for j, n in enumerate(names)]
    else:
        names = [f"x{j}" for j in range(len(names))]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise DataError(f"{name}: column name {dup!r} appears twice; rename one")
    note = None
    if options.header and _looks_like_data(t.column_names):
        # a header of years or codes looks like data; say which way it was read
        note = (
            f"{name}: the first line ({','.join(n.strip() for n in t.column_names)}) is read "
            "as column names; give --no-header if it is data"
        )
    columns = [_numpy_column(pa, t.column(j)) for j in range(t.num_columns)]
    locate = lambda i: f"line {_line_of(whole(), delimiter, options.header, i)}"
    return Table(name, names, columns, locate, note)


def _decoded(name, data: bytes, encoding: str) -> str:
    try:
        return data.decode(encoding)
    except LookupError:
        raise DataError(f"--encoding {encoding!r}: Python knows no such encoding") from None
    except UnicodeDecodeError as e:
        raise DataError(
            f"{name}: not {encoding} text (byte {e.start}); give its encoding with "
            "--encoding, e.g. --encoding latin-1"
        ) from None


def _sniff(sample: str, usual: str | None, complete: bool) -> str:
    """The delimiter that splits the first lines into the same number (> 1) of
    fields: ``usual`` (the extension's) if it does, else the first of
    :data:`_SNIFFED` that does, else whitespace if it does, else ``usual`` or a comma
    (one column). ``complete``: the sample is the whole file (else its last line may
    be cut short)."""
    lines = [line for line in sample.splitlines() if line.strip()]
    if not complete:
        lines = lines[:-1] or lines  # the last may be cut short
    lines = lines[:20]
    for delimiter in dict.fromkeys((usual, *_SNIFFED)):
        if delimiter is None:
            continue
        widths = {len(row) for row in csv.reader(lines, delimiter=delimiter)}
        if len(widths) == 1 and widths.pop() > 1:
            return delimiter
    widths = {len(line.split()) for line in lines}
    if len(widths) == 1 and widths.pop() > 1:
        return " "
    return usual or ","


_COMMA_DECIMAL = re.compile(r"^\s*[-+]?\d*,\d+(?:[eE][-+]?\d+)?\s*$")
_POINT_DECIMAL = re.compile(r"^\s*[-+]?\d*\.\d+(?:[eE][-+]?\d+)?\s*$")


def _decimal_mark(sample: str, delimiter: str) -> str:
    """``,`` for text separated by ``;`` whose numbers are written 3,14 (the European
    convention spreadsheets write), else ``.``."""
    if delimiter != ";":
        return "."
    fields = [f for line in sample.splitlines()[:20] for f in line.split(";")]
    comma = any(_COMMA_DECIMAL.match(f) for f in fields)
    return "," if comma and not any(_POINT_DECIMAL.match(f) for f in fields) else "."


def _numpy_column(pa, column) -> np.ndarray:
    """A pyarrow column as numpy: numbers as numbers (integers stay integers; with
    nulls they become floats with NaN), anything else as Python objects (None where
    missing)."""
    kind = column.type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        signed = pa.types.is_signed_integer(kind)
        code = "f" if pa.types.is_floating(kind) else "i" if signed else "u"
        dtype = np.dtype(f"{code}{kind.bit_width // 8}")
        parts = [_primitive(chunk, dtype) for chunk in column.chunks]
        return np.concatenate(parts) if parts else np.empty(0, dtype)
    if pa.types.is_null(kind):  # nothing but missing markers
        return np.full(len(column), np.nan)
    return np.array(column.to_pylist(), dtype=object)


def _primitive(chunk, dtype: np.dtype) -> np.ndarray:
    """One chunk of numbers from its Arrow buffers (validity bitmap, values), NaN where
    null. By hand: pyarrow's own ``to_numpy`` imports pandas, a quarter of a second
    the command would otherwise pay on every run."""
    values = np.frombuffer(
        chunk.buffers()[1], dtype, count=len(chunk), offset=chunk.offset * dtype.itemsize
    )
    if chunk.null_count == 0:
        return values
    bits = np.unpackbits(np.frombuffer(chunk.buffers()[0], np.uint8), bitorder="little")
    valid = bits[chunk.offset : chunk.offset + len(chunk)].astype(bool)
    return np.where(valid, values, np.nan)


def _text_rows(data: bytes, delimiter: str):
    """(line, fields) of every non-empty line, as Python's csv module reads them
    (the slow path: messages only)."""
    text = data.decode("utf-8", errors="replace")
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    for fields in reader:
        if fields:
            yield reader.line_num, fields


def _line_of(data: bytes, delimiter: str, header: bool, i: int) -> int:
    """The line of data row ``i`` (0-based), counted as a text editor counts."""
    rows = _text_rows(data, delimiter)
    for j, (line, _) in enumerate(rows):
        if j == i + header:
            return line
    return -1


def _diagnose(name, data: bytes, delimiter: str, header: bool) -> None:
    """Raise the message for the first line with another number of fields than the
    first, if there is one (the reason pyarrow's reader gives up, most often)."""
    rows = _text_rows(data, delimiter)
    first = next(rows, None)
    if first is None:
        raise DataError(f"{name}: the file is empty")
    width = len(first[1])
    what = "the header has" if header else "the first line has"
    for line, fields in rows:
        if len(fields) != width:
            raise DataError(
                f"{name}: line {line} has {len(fields)} fields, {what} {width}; "
                "fix that line (is the delimiter right? see --delimiter)"
            )


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


def _read_numpy(path, source) -> Table:
    data = np.load(source, allow_pickle=False)
    if isinstance(data, np.lib.npyio.NpzFile):
        with data:
            if not data.files:
                raise DataError(f"{path}: the archive holds no array")
            arrays = {name: data[name] for name in data.files}
        if _are_columns(arrays):  # as write_table writes it: one array per column
            return Table(path, list(arrays), list(arrays.values()))
        name = next((n for n in ("X", "x", "data") if n in arrays), next(iter(arrays)))
        arr = arrays[name]
    else:
        arr = data
    if arr.dtype.names:  # a structured array: named columns
        names = list(arr.dtype.names)
        cols = [np.asarray(arr[n]) for n in names]
        return Table(path, names, cols)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise DataError(f"{path}: expected a 2-D array (rows x columns), got shape {arr.shape}")
    if arr.dtype.kind not in "fiub":
        raise DataError(f"{path}: the array is not numeric (dtype {arr.dtype})")
    names = [f"x{j}" for j in range(arr.shape[1])]
    return Table(path, names, list(arr.T))


def _are_columns(arrays: dict[str, np.ndarray]) -> bool:
    """Whether an archive's arrays are named columns: two or more 1-D arrays of one
    length (an archive with one array, or with 2-D ones, holds a matrix)."""
    values = list(arrays.values())
    return (
        len(values) > 1 and all(a.ndim == 1 for a in values) and len({len(a) for a in values}) == 1
    )


_PYARROW_HINT = "reading and writing files needs pyarrow: pip install pyarrow"


def _pyarrow():
    """pyarrow with its Parquet module (a dependency; the message is for a broken
    installation)."""
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise DataError(_PYARROW_HINT) from None
    return pyarrow


def _pyarrow_csv():
    try:
        import pyarrow.csv
    except ImportError:
        raise DataError(_PYARROW_HINT) from None
    return pyarrow.csv


def _arrow_copy(pa, data: bytes):
    """A copy of ``data`` in Arrow's memory, for pyarrow's readers. Its threaded
    readers can drop their last reference to the input on a worker thread after the
    call returned; a buffer Python owns then takes the GIL on that thread, and if the
    interpreter is exiting by then, the process aborts ("terminate called without an
    active exception", apache/arrow#34314: seen here after ``jaxgmm predict`` read a
    .gz)."""
    copy = pa.allocate_buffer(len(data))
    memoryview(copy).cast("B")[:] = data
    return copy


def _read_parquet(path, source) -> Table:
    pa = _pyarrow()
    try:
        t = pa.parquet.read_table(source if isinstance(source, Path) else pa.BufferReader(source))
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{path}: not a readable Parquet file ({e})") from None
    cols = [_numpy_column(pa, t.column(j)) for j in range(t.num_columns)]
    return Table(path, list(t.column_names), cols)


def write_table(
    path: str | Path | None, names: list[str], columns: list, out=None, digits=None
) -> None:
    """Write columns to ``path`` by its extension, atomically, or as CSV to ``out``.

    CSV and TSV write numbers so that they read back the same (shortest round-trip),
    but for the columns ``digits`` names (name -> significant digits); Parquet,
    ``.npy`` and ``.npz`` carry numbers as numbers (see :func:`typed`). ``.npy`` is one
    float matrix, so every column must be numeric; ``.npz`` holds one array per
    column, under the column's name (text as unicode arrays, which load without
    pickle).
    """
    digits = [(digits or {}).get(n) for n in names]
    if path is None:
        _write_csv(out, names, columns, ",", digits)
        return
    path = Path(path)
    suffix = path.suffix.lower()
    compression = COMPRESSIONS.get(suffix)
    if compression is not None:  # out.csv.gz: the text, compressed
        suffix = path.with_suffix("").suffix.lower()
        if suffix not in TEXT_FORMATS:
            raise DataError(
                f"{path}: only text (.csv, .tsv, .txt) is written compressed; "
                "Parquet compresses itself"
            )
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
            with _compressed(f, compression) as raw:
                text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
                _write_csv(text, names, columns, delimiter, digits)
                text.flush()
                text.detach()

        atomic_write(path, write)
    else:
        raise DataError(
            f"{path}: cannot write {suffix!r} files; use .csv, .tsv, .txt, .npy, .npz or "
            ".parquet (text also as .csv.gz, .bz2, .xz or .zst)"
        )


@contextlib.contextmanager
def _compressed(f, compression: str | None):
    """``f`` itself, or a stream that compresses into it (closed, so flushed, at the
    end; ``f`` stays open)."""
    if compression is None:
        yield f
        return
    if compression == "zstd":
        pa = _pyarrow()
        stream = pa.CompressedOutputStream(pa.PythonFile(f, mode="w"), "zstd")
    else:
        opener = {"gzip": gzip.GzipFile, "bz2": bz2.BZ2File, "xz": lzma.LZMAFile}[compression]
        stream = opener(fileobj=f, mode="wb") if compression == "gzip" else opener(f, "wb")
    try:
        yield stream
    finally:
        stream.close()


def _write_csv(out, names, columns, delimiter: str, digits: list) -> None:
    w = csv.writer(out, delimiter=delimiter, lineterminator="\n")
    w.writerow(names)
    w.writerows(zip(*(_texts(c, d) for c, d in zip(columns, digits, strict=True)), strict=True))


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


def _texts(column, digits: int | None = None) -> list[str]:
    """A column as text: floats to ``digits`` significant digits, else as Python
    prints them (the shortest text that reads back the same); missing as empty."""
    column = np.asarray(column)
    if column.dtype.kind == "f":
        text = (lambda v: f"{v:.{digits}g}") if digits else repr
        return ["" if v != v else text(v) for v in column.tolist()]
    return ["" if v is None else str(v) for v in column.tolist()]
