"""``jaxgmm fit``: fit a mixture to a data file (one K, or a sweep that chooses K and
the covariance type) and save the model with the record of the fit."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path

import numpy as np

from . import _streaming
from ._common import (
    Usage,
    add_command,
    add_read_options,
    column_list,
    component_table,
    criterion_table,
    dropped_note,
    edge_note,
    in_data_units,
    json_default,
    read,
    report_stream,
    say,
    table_lists,
    top_models,
    with_progress,
    wrap_width,
)
from ._datafiles import COMPRESSIONS, DataError
from ._record import QUANTILES, FitRecord, Standardization

#: mclust's 14 families (jaxgmm._families.FAMILIES, written out: importing it imports
#: JAX, which the command's early errors need not wait for).
_FAMILIES = (
    "EII", "VII", "EEI", "VEI", "EVI", "VVI", "EEE",
    "VEE", "EVE", "VVE", "EEV", "VEV", "EVV", "VVV",
)  # fmt: skip

EXAMPLES = """
jaxgmm fit data.csv -k 3 -o model.jgmm
jaxgmm fit data.csv -k auto --covariance all --criterion bic   # mclust's 14 families
jaxgmm fit data.csv -k 1:9 --covariance VVE
jaxgmm fit data.parquet -k 1:6 --columns height,weight --standardize --seed 1
jaxgmm fit parts/ -k 8 --memory-budget 4GB        # a directory of Parquet files, streamed
srun -n 4 jaxgmm fit parts/ -k 8 --distributed    # four processes, each reads a share
"""


def register(sub) -> None:
    p = add_command(sub, "fit", "fit a mixture to a data file and save the model", EXAMPLES, run)
    p.add_argument("data", help="CSV, TSV, .npy, .npz or Parquet file (or directory of them)")
    p.add_argument(
        "-k",
        default="auto",
        help="components: a number, a range such as 1:10, a list such as 2,3,5 (or "
        "1:4,8), or auto (1:10, chosen by the criterion; default)",
    )
    p.add_argument(
        "--covariance",
        choices=("full", "tied", "diag", "spherical", "all", "sklearn", *_FAMILIES),
        metavar="TYPE",
        help="covariance type: full, tied, diag, spherical, or one of mclust's families "
        f"({', '.join(_FAMILIES)}); all: the 14 families, sklearn: the first four "
        "(default: full for a fixed K, all for a range)",
    )
    p.add_argument("--criterion", choices=("bic", "aic", "icl"), default="bic")
    p.add_argument(
        "--n-init",
        type=int,
        default=5,
        help="restarts per model (default 5; where K or the type is chosen, one more "
        "from mclust's hierarchical partition)",
    )
    p.add_argument(
        "--no-hierarchical-start",
        dest="hierarchical_start",
        action="store_false",
        help="where K or the type is chosen, start from the k-means restarts alone (by "
        "default each model also starts once from mclust's hierarchical partition)",
    )
    p.add_argument("--max-iter", type=int, default=100)
    p.add_argument("--tol", type=float, default=1e-3)
    p.add_argument(
        "--columns", help="comma-separated columns to use (default: every numeric column)"
    )
    p.add_argument("--exclude", help="comma-separated columns to leave out (e.g. an id)")
    p.add_argument(
        "--standardize",
        action="store_true",
        help="scale columns to zero mean and unit variance (constant columns are only "
        "centred, as scikit-learn's StandardScaler does)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    add_read_options(p)
    _streaming.add_options(p)
    p.add_argument("-o", "--output", help="model file to write (default: DATA's name + .jgmm)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("-v", "--verbose", action="store_true", help="print every model the sweep tried")


def parse_k(text: str) -> tuple[list[int], bool]:
    """``4`` -> ([4], False); ``auto`` -> (1..10, True); ``2:6`` -> (2..6, True);
    ``2,3,5`` or ``1:4,8`` -> those, True (a sweep chooses among them)."""
    text = text.strip().lower()
    try:
        if text == "auto":
            return list(range(1, 11)), True
        ks: set[int] = set()
        for part in text.split(","):
            if ":" in part:
                lo, hi = (int(v) for v in part.split(":", 1))
                if not 1 <= lo <= hi:
                    raise ValueError
                ks.update(range(lo, hi + 1))
            else:
                ks.add(int(part))
        if not ks or min(ks) < 1:
            raise ValueError
        return sorted(ks), len(ks) > 1 or "," in text or ":" in text
    except ValueError:
        raise Usage(
            f"-k {text!r}: give a positive number of components (-k 4), a range (-k 1:10), "
            "a list (-k 2,3,5) or -k auto"
        ) from None


def _output_path(args) -> str | Path:
    if args.output is None and args.data == "-":
        raise Usage("reading standard input: name the model file with -o, e.g. -o model.jgmm")
    data = Path(args.data)
    if data.suffix.lower() in COMPRESSIONS:  # data.csv.gz -> data.jgmm
        data = data.with_suffix("")
    out = args.output or data.with_suffix(".jgmm").name
    if str(out) != "-" and not Path(out).parent.is_dir():  # say so before fitting
        raise DataError(f"{out}: the directory {Path(out).parent} does not exist; create it first")
    return out


def _read_data(args):
    """(table, x, rows kept, column names) of the file's selected columns."""
    table = read(args, args.data)
    names = _chosen_columns(args, table)
    x, keep = table.numeric(names, dropna=args.dropna)
    if x.shape[0] == 0:
        raise DataError(f"{table.path}: no rows with data")
    if x.shape[1] == 0:
        raise DataError(f"{table.path}: no columns selected")
    return table, x, keep, names


def _chosen_columns(args, table) -> list[str]:
    """``--columns``, else every numeric column but ``--exclude``'s (the others are
    named in a note: an id, a species, a date)."""
    columns, exclude = column_list(args.columns), column_list(args.exclude, "--exclude") or []
    unknown = [n for n in exclude if n not in table.names]
    if unknown:
        raise DataError(
            f"{table.path}: --exclude names no column {unknown[0]!r}; the columns are "
            f"{', '.join(table.names)}"
        )
    if columns is not None:
        return [n for n in columns if n not in exclude]
    numeric, other = table.numeric_names()
    if other and not args.quiet:
        print(
            f"{table.path}: skipped {len(other)} non-numeric column(s): {', '.join(other)} "
            "(choose columns with --columns)",
            file=sys.stderr,
        )
    return [n for n in numeric if n not in exclude]


def _components(ks: list[int], auto: bool, table, n: int) -> list[int]:
    """The Ks that ``n`` rows can fit (a range drops the larger ones)."""
    if auto and max(ks) > n:
        ks = [k for k in ks if k <= n]
    if n < max(ks, default=1) or not ks or n < 2:
        raise DataError(
            f"{table.path}: {n} row(s) with data but K={max(ks, default=1)} needs at least "
            f"{max(max(ks, default=1), 2)}; lower -k or give more rows"
        )
    return ks


def _estimator(args, ks: list[int], auto: bool):
    """The estimator to fit and its progress bar's (total, unit)."""
    from .. import GaussianMixture, GaussianMixtureIC

    covariance = args.covariance or ("all" if auto else "full")
    common = dict(n_init=args.n_init, max_iter=args.max_iter, tol=args.tol, random_state=args.seed)
    if auto or covariance in ("all", "sklearn"):
        est = GaussianMixtureIC(
            ks,
            covariance_type=covariance,
            criterion=args.criterion,
            hierarchical_start=args.hierarchical_start,
            **common,
        )
        n_types = {"all": len(_FAMILIES), "sklearn": 4}.get(covariance, 1)
        return est, (n_types * len(ks), "model")
    return GaussianMixture(ks[0], covariance_type=covariance, **common), (args.max_iter, "iter")


def run(args) -> int:
    ks, auto = parse_k(args.k)
    writes = _streaming.join_run(args)
    out = _output_path(args)
    source = _streaming.source_for(args, column_list(args.columns))
    if source is not None:
        return _run_streamed(args, source, (ks, auto), out, writes)
    table, x, keep, names = _read_data(args)
    n = x.shape[0]
    ks = _components(ks, auto, table, n)
    scaling = Standardization.of(x) if args.standardize else Standardization()
    est, (total, unit) = _estimator(args, ks, auto)
    z = scaling.apply(x)
    with_progress(args, (total, unit, "fitting", scaling.log_det), lambda: est.fit(z))
    return _save(args, est, (names, scaling, n), (table, keep, z), out)


def _run_streamed(args, source, k, out, writes: bool) -> int:
    """The fit of a data source read in chunks (the same record and report)."""
    place = argparse.Namespace(path=Path(args.data))
    names = _streaming.names_of(source)
    ks = _components(*k, place, source.n_rows)
    scaling = Standardization()
    if args.standardize:
        moments = _streaming.column_moments(source)
        scaling = Standardization.from_moments(*moments)
        source = _streaming.Standardized(source, scaling.mean, scaling.scale)
    est, (total, unit) = _estimator(args, ks, k[1])
    own = _streaming.own_rows(args, source) if args.distributed else None
    data = source if own is None else own  # in memory: one program over all processes
    with _streaming.quiet_stdout(args.distributed):
        with_progress(args, (total, unit, "fitting", scaling.log_det), lambda: est.fit(data))
    if not writes:  # another process reports and writes the model
        return 0
    rows = _streaming.spread_rows(source)  # the quantiles' rows
    return _save(args, est, (names, scaling, source.n_rows), (place, np.ones(0, bool), rows), out)


def _save(args, est, fitted, data, out) -> int:
    """Every fit's end: the chosen model and its record written to ``out``, and the
    report. ``fitted``: (column names, standardization, rows fitted); ``data``: (what
    was read, which rows were kept, the rows the log-likelihood quantiles come from)."""
    from .._io import save

    (names, scaling, n), (table, keep, z) = fitted, data
    sweep = hasattr(est, "best_estimator_")
    model = est.best_estimator_ if sweep else est
    log_lik = model.score_samples(z) - scaling.log_det
    record = FitRecord(
        columns=names,
        standardization=scaling,
        data=str(table.path),
        n_rows=int(n),
        dropped_rows=int((~keep).sum()),
        train_log_lik_quantiles=np.quantile(log_lik, QUANTILES).tolist(),
        criterion=args.criterion if sweep else None,
        table=scaling.criterion_table(table_lists(est.criterion_), n) if sweep else None,
    )
    save(model, out, extra=record.to_json())
    _report(args, (model, record, log_lik, z), table, keep, out)
    return 0


def _report(args, fitted, table, keep, out) -> None:
    model, record, log_lik, z = fitted
    means, _ = in_data_units(model, record)
    if args.json:
        summary = {
            "model": str(out),
            "n_components": int(model.n_components),
            "covariance_type": model.covariance_type,
            "converged": bool(model.converged_),
            "n_iter": int(model.n_iter_),
            "log_likelihood_per_row": float(np.mean(log_lik)),
            "columns": record.columns,
            "weights": model.weights_.tolist(),
            "means": means.tolist(),
            "rows": record.n_rows,
        }
        if record.table:
            summary |= {"criterion": record.criterion, "table": record.table}
        print(json.dumps(summary, default=json_default), file=report_stream(args))
        return
    dropped_note(args, table, keep)
    if record.table:
        chosen = (model.covariance_type, model.n_components)
        shown = criterion_table if args.verbose else top_models
        say(args, shown(record.table, record.criterion, chosen))
        say(args)
    scaled = " (standardised for the fit)" if record.standardization.active else ""
    columns = f"{table.path}: {record.n_rows} rows, columns {', '.join(record.columns)}{scaled}"
    say(args, textwrap.fill(columns, wrap_width(), subsequent_indent="  "))
    say(
        args,
        f"model: K={model.n_components}, covariance '{model.covariance_type}', "
        f"{model.n_iter_} iterations, converged {bool(model.converged_)}, "
        f"log-likelihood per row {np.mean(log_lik):.5f}",
    )
    whole = len(z) == record.n_rows  # a streamed fit's z is a sample of the rows
    sizes = np.bincount(model.predict(z), minlength=model.n_components) if whole else None
    say(args, component_table(model.weights_, means, record.columns, sizes))
    if record.table:
        note = edge_note(record.table, model.n_components, record.n_rows)
        if note:
            say(args, note)
    say(args, f"wrote {out}")
