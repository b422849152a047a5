"""What the commands share: the parser helpers every command declares its options
with, reading data and model files, writing tables, reports and progress."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import textwrap
from pathlib import Path

import numpy as np

from .. import _progress
from .._io import read_metadata
from ._datafiles import DataError, ReadOptions, Table, read_table, typed, write_table
from ._record import FitRecord


class Usage(DataError):
    """A bad option value (exit code 2)."""


#: Significant digits of computed numbers in text output (``--precision``).
PRECISION = 6


# --- declaring a command ---------------------------------------------------------------


def add_command(sub, name: str, help: str, examples: str, run) -> argparse.ArgumentParser:
    """A subcommand whose ``run(args)`` returns the exit code; every one takes -q."""
    p = sub.add_parser(
        name,
        help=help,
        description=help,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n" + textwrap.indent(examples.strip(), "  "),
    )
    p.set_defaults(run=run)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress or messages")
    return p


def add_read_options(p) -> None:
    p.add_argument("--dropna", action="store_true", help="drop rows with missing values")
    p.add_argument(
        "--no-header",
        action="store_true",
        help="the text file's first line is data, not column names (named x0, x1, ...)",
    )
    p.add_argument(
        "--delimiter",
        metavar="CHAR",
        help="a text file's field separator: a character, tab or space (runs of blanks); "
        "default: the extension's (, or tab) where it fits, else , tab ; or blanks, "
        "as the first lines show",
    )
    p.add_argument("--encoding", default="utf-8", help="a text file's encoding (default utf-8)")
    p.add_argument(
        "--format",
        choices=("csv", "tsv", "txt", "npy", "npz", "parquet"),
        help="how to read the data where its extension does not say (standard input, "
        "'-', is csv unless told)",
    )


def add_table_output(p) -> None:
    p.add_argument(
        "-o",
        "--output",
        help="output file (.csv, .tsv, .txt, .npy, .npz, .parquet); stdout (CSV) if omitted",
    )
    p.add_argument("--json", action="store_true", help="JSON records on stdout")
    p.add_argument(
        "--precision",
        type=int,
        default=PRECISION,
        metavar="DIGITS",
        help="significant digits of the numbers the command computes in text and JSON "
        f"output (default {PRECISION}; 17 round-trips exactly; binary formats keep all)",
    )


# --- reports and progress ----------------------------------------------------------------


def say(args, text: str = "") -> None:
    if not args.quiet:
        print(text, file=report_stream(args))


def report_stream(args):
    """Where reports go: standard error when ``-o -`` sends the output to stdout."""
    return sys.stderr if getattr(args, "output", None) == "-" else sys.stdout


class _Bar:
    """A tqdm bar on stderr over a sweep's models, or over a single fit's iterations
    (with the current lower bound, less ``offset``: the data's units when the fit
    runs on standardised columns)."""

    def __init__(self, total: int, unit: str, desc: str, offset: float = 0.0):
        from tqdm import tqdm

        self.unit, self.offset, self.desc = unit, offset, desc
        self.bar = tqdm(total=total, unit=unit, desc=desc, file=sys.stderr, leave=False)
        self.n_compiled = 0

    def compiling(self, what: str) -> None:
        # the count stays where it is: compiling is said beside it, never by moving it
        self.n_compiled += 1
        self.bar.set_postfix_str(f"compiling {what} (program {self.n_compiled})")

    def models_done(self, n: int) -> None:
        if self.unit == "model":
            self.bar.update(n)
            self.bar.set_postfix_str("")

    def iteration(self, n_iter: int, lower_bound: float) -> None:
        if self.unit == "iter" and n_iter > self.bar.n:
            self.bar.update(n_iter - self.bar.n)
        if np.isfinite(lower_bound):
            bound = lower_bound - self.offset
            self.bar.set_postfix_str(f"iteration {n_iter}, lower bound {bound:.5f}")

    def close(self) -> None:
        self.bar.close()


def _progress_wanted(args) -> bool:
    if getattr(args, "quiet", False):
        return False
    return os.environ.get("JAXGMM_PROGRESS") == "always" or sys.stderr.isatty()


def with_progress(args, bar: tuple[int, str, str, float], work):
    """``work()``, with a bar of (total, unit, description, offset) on a terminal."""
    if not _progress_wanted(args):
        return work()
    shown = _Bar(*bar)
    try:
        with _progress.reporting(shown):
            return work()
    finally:
        shown.close()


# --- reading ----------------------------------------------------------------------------


def column_list(text: str | None, flag: str = "--columns") -> list[str] | None:
    """The column names of a comma-separated option (None where it was not given)."""
    if text is None:
        return None
    names = [c.strip() for c in text.split(",") if c.strip()]
    if not names:
        raise Usage(f"{flag}: give column names separated by commas, e.g. {flag} a,b")
    return names


def read(args, path) -> Table:
    """Read a data file as the options say, passing on how its header was read."""
    options = ReadOptions(
        header=not args.no_header,
        delimiter=args.delimiter,
        encoding=args.encoding,
        format=args.format,
    )
    table = read_table(path, options)
    if table.note and not args.quiet:
        print(table.note, file=sys.stderr)
    return table


def load_model(path):
    """(model, file metadata, :class:`FitRecord`) of a fitted model file."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such model file")
    from .._loading import load  # the estimators: imported by the commands that need them

    try:
        model = load(path)
        meta = read_metadata(path)
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, not a model file") from None
    if not hasattr(model, "means_"):
        raise DataError(f"{path}: the model in this file was never fitted")
    return model, meta, FitRecord.from_json(meta["extra"])


def model_rows(model, record: FitRecord, table: Table, dropna: bool):
    """The model's columns of ``table`` (in the data's units) and the rows kept."""
    wanted = record.column_names(model.n_features_in_)
    unnamed = [f"x{j}" for j in range(len(table.names))]
    if all(n in table.names for n in wanted):
        names = wanted
    elif table.names == unnamed and len(table.names) == len(wanted):
        names = table.names  # a file without names: by position
    else:
        missing = [n for n in wanted if n not in table.names]
        raise DataError(
            f"{table.path}: the model was fitted on columns {', '.join(wanted)} but this "
            f"file lacks {', '.join(repr(m) for m in missing)}; give a file with those columns"
        )
    return table.numeric(names, dropna=dropna)


def input_columns(args, table: Table, keep) -> tuple[list[str], list]:
    """The input's columns for the rows kept; with ``--dropna``, first a ``row`` column
    (each row's 0-based position in the input, as pandas numbers them) so that the
    output joins back to it."""
    names, columns = list(table.names), [c[keep] for c in table.columns]
    if args.dropna:
        names.insert(0, free_name("row", names))
        columns.insert(0, np.flatnonzero(keep))
    return names, columns


def dropped_note(args, table: Table, keep) -> None:
    n = int((~keep).sum())
    if n and not args.quiet:
        print(f"{table.path}: dropped {n} row(s) with missing values (--dropna)", file=sys.stderr)


# --- the model in the data's units -------------------------------------------------------


def full_covariances(model) -> np.ndarray:
    """Any covariance type's ``covariances_`` as (K, d, d) matrices."""
    from .._covariance import covariance_class

    k, d = model.means_.shape
    c = np.asarray(model.covariances_, np.float64)
    return covariance_class(model.covariance_type).dense(c, k, d)


def in_data_units(model, record: FitRecord) -> tuple[np.ndarray, np.ndarray]:
    """Means and full covariances in the data's units (standardisation undone)."""
    s = record.standardization
    means = s.invert(np.asarray(model.means_, np.float64))
    return means, s.covariances(full_covariances(model))


def criterion_table(table: dict, criterion: str, chosen: tuple[str, int]) -> str:
    """A sweep's table as text, the chosen (covariance type, K) row marked."""
    types, ks = np.asarray(table["covariance_type"]), np.asarray(table["n_components"])
    best = int(np.flatnonzero((types == chosen[0]) & (ks == chosen[1]))[0])
    lines = [
        f"{'covariance':>10} {'K':>2} {'BIC':>10} {'AIC':>10} {'ICL':>10} {'log-lik':>10}"
        f" {'params':>6} {'iters':>5}"
    ]
    degenerate = table.get("degenerate", np.zeros(len(table["bic"]), bool))
    for i in range(len(table["bic"])):
        mark = f"  <- chosen (lowest {criterion.upper()})" if i == best else ""
        if degenerate[i]:
            mark += "  degenerate: a component on too few rows"
        lines.append(
            f"{table['covariance_type'][i]:>10} {table['n_components'][i]:>2}"
            f" {table['bic'][i]:10.2f} {table['aic'][i]:10.2f} {table['icl'][i]:10.2f}"
            f" {table['log_likelihood'][i]:10.2f} {table['n_parameters'][i]:>6}"
            f" {table['n_iter'][i]:>5}{mark}"
        )
    return "\n".join(lines)


def top_models(table: dict, criterion: str, chosen: tuple[str, int], n: int = 3) -> str:
    """The sweep's best ``n`` models by the criterion, as mclust's ``summary`` shows
    them (degenerate fits last; ``-v`` prints them all)."""
    values = np.asarray(table[criterion], np.float64)
    degenerate = np.asarray(table.get("degenerate", np.zeros(len(values), bool)))
    order = np.lexsort((values, degenerate))[:n]
    lines = [f"top {len(order)} of {len(values)} models by {criterion.upper()} (-v shows all):"]
    for rank, i in enumerate(order, 1):
        name, k = table["covariance_type"][i], table["n_components"][i]
        mark = "  <- chosen" if (name, k) == tuple(chosen) else ""
        if degenerate[i]:
            mark += "  (not chosen: a component holds too few rows)"
        lines.append(f"  {rank}. {name:>9} K={k:<3} {criterion.upper()} {values[i]:12.2f}{mark}")
    return "\n".join(lines)


def edge_note(table: dict, k: int, n_rows: int) -> str | None:
    """A hint when the chosen K is the largest (or smallest, above 1) the sweep tried:
    the best K may lie beyond the range."""
    ks = sorted(set(np.asarray(table["n_components"]).tolist()))
    if len(ks) < 2:
        return None
    if k == ks[-1] and k < n_rows:
        wider = f"{ks[0]}:{2 * k}"
        return f"note: K={k} is the largest K tried; the best may be larger (try -k {wider})"
    if k == ks[0] and k > 1:
        return f"note: K={k} is the smallest K tried; the best may be smaller (try -k 1:{ks[-1]})"
    return None


#: Terminal output is at most this wide (or the terminal's width, if narrower).
WIDTH = 100


def wrap_width() -> int:
    """The width terminal output keeps to."""
    return min(WIDTH, shutil.get_terminal_size((WIDTH, 24)).columns)


def component_table(weights, means, names, sizes=None) -> str:
    """Each component's weight, size (rows it holds most likely) and mean, one row
    per component; where that is wider than the terminal (many or long column names),
    one row per column instead, the components across in groups that fit."""
    k = len(weights)
    size_header = f" {'rows':>7}" if sizes is not None else ""
    width = max(10, *(len(n) for n in names))
    wide = f"{'component':>9} {'weight':>7}{size_header}  " + " ".join(
        f"{n:>{width}}" for n in names
    )
    if len(wide) <= wrap_width():
        lines = [wide]
        for j, (w, m) in enumerate(zip(weights, means, strict=True)):
            size = f" {sizes[j]:>7}" if sizes is not None else ""
            lines.append(f"{j:>9} {w:7.4f}{size}  " + " ".join(f"{v:>{width}.4g}" for v in m))
        return "\n".join(lines)
    label = min(max(9, *(len(n) for n in names)), 30)
    per_line = max(1, (wrap_width() - label - 1) // 11)
    blocks = []
    for start in range(0, k, per_line):
        js = range(start, min(k, start + per_line))
        rows = [f"{'component':>{label}} " + " ".join(f"{j:>10}" for j in js)]
        rows.append(f"{'weight':>{label}} " + " ".join(f"{weights[j]:>10.4f}" for j in js))
        if sizes is not None:
            rows.append(f"{'rows':>{label}} " + " ".join(f"{sizes[j]:>10}" for j in js))
        for c, name in enumerate(names):
            short = name if len(name) <= label else name[: label - 1] + "~"
            rows.append(f"{short:>{label}} " + " ".join(f"{means[j][c]:>10.4g}" for j in js))
        blocks.append("\n".join(rows))
    return "\n\n".join(blocks)


# --- writing ----------------------------------------------------------------------------


def free_name(name: str, taken: list[str]) -> str:
    """``name``, with underscores added until no column of ``taken`` has it."""
    while name in taken:
        name = f"{name}_"
    return name


def emit_table(args, names, columns, computed=()) -> None:
    """Write the columns where the options say; the ``computed`` ones (by name) are
    rounded to ``--precision`` significant digits in text and JSON (the input's
    columns are repeated as read)."""
    if not 1 <= args.precision <= 17:
        raise Usage(f"--precision {args.precision}: give 1 to 17 significant digits")
    digits = dict.fromkeys(computed, args.precision)
    if args.output is not None:
        write_table(args.output, names, columns, digits=digits)
        if not args.quiet and not args.json:
            n = len(columns[0]) if columns else 0
            print(f"wrote {n} rows to {args.output}", file=sys.stderr)
    elif args.json:
        values = [_json_values(c, digits.get(n)) for n, c in zip(names, columns, strict=True)]
        rows = [dict(zip(names, vals, strict=True)) for vals in zip(*values, strict=True)]
        print(json.dumps(rows, default=json_default))
    else:
        write_table(None, names, columns, out=sys.stdout, digits=digits)


def _json_values(column, digits: int | None = None) -> list:
    """A column as JSON values: numbers as numbers (also when read as text; rounded to
    ``digits`` significant digits where given), missing numbers as null (JSON has no
    NaN)."""
    column = typed(column)
    if digits is not None and column.dtype.kind == "f":
        column = np.array([float(f"{v:.{digits}g}") for v in column.tolist()])
    return [None if isinstance(v, float) and v != v else v for v in column.tolist()]


def json_default(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    raise TypeError(type(v).__name__)


def table_lists(criterion_) -> dict:
    """A sweep's table (a structured array) as JSON-ready lists."""
    return {k: criterion_[k].tolist() for k in criterion_.dtype.names}
