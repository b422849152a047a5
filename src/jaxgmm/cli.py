"""The ``jaxgmm`` command: Gaussian mixtures for people who have a file, not a notebook.

    jaxgmm fit data.csv -k auto -o model.jgmm      how many groups, and which
    jaxgmm predict model.jgmm data.csv -o out.csv  which row belongs where
    jaxgmm score model.jgmm data.csv --outliers 0.01
    jaxgmm sample model.jgmm -n 1000 -o samples.csv
    jaxgmm plot model.jgmm data.csv -o fig.png
    jaxgmm info model.jgmm
    jaxgmm demo

Exit codes: 0 success, 2 bad input or usage (a one-line message on stderr), 1 an
internal error. ``JAXGMM_DEBUG=1`` shows tracebacks; ``JAXGMM_PROGRESS=always`` shows
progress even when stderr is not a terminal.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np

from . import _progress
from ._tables import DataError, Table, read_table, typed, write_table
from .demo import criterion_table
from .io import load, read_metadata, save

__all__ = ["main"]

_QUANTILES = np.linspace(0, 1, 1001)


class _Usage(DataError):
    """A bad option value (exit code 2)."""


# --- progress ------------------------------------------------------------------------


class _Bar:
    """A tqdm bar on stderr over a sweep's models, or over a single fit's iterations
    (with the current lower bound, less ``offset``: the data's units when the fit
    runs on standardised columns)."""

    def __init__(self, total: int, unit: str, desc: str, offset: float = 0.0):
        from tqdm import tqdm

        self.unit, self.offset = unit, offset
        self.bar = tqdm(total=total, unit=unit, desc=desc, file=sys.stderr, leave=False)
        self.best = -np.inf

    def models_done(self, n: int) -> None:
        if self.unit == "model":
            self.bar.update(n)

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


def _with_progress(args, total: int, unit: str, desc: str, work, offset: float = 0.0):
    if not _progress_wanted(args):
        return work()
    bar = _Bar(total, unit, desc, offset)
    try:
        with _progress.reporting(bar):
            return work()
    finally:
        bar.close()


# --- helpers -------------------------------------------------------------------------


def _say(args, text: str = "") -> None:
    if not args.quiet:
        print(text, file=_report_stream(args))


def _report_stream(args):
    """Where reports go: standard error when ``-o -`` sends the output to stdout."""
    return sys.stderr if getattr(args, "output", None) == "-" else sys.stdout


def _parse_k(text: str) -> tuple[list[int], bool]:
    """``4`` -> ([4], False); ``auto`` -> (1..10, True); ``2:6`` -> (2..6, True)."""
    text = text.strip().lower()
    try:
        if text == "auto":
            return list(range(1, 11)), True
        if ":" in text:
            lo, hi = (int(v) for v in text.split(":", 1))
            if not 1 <= lo <= hi:
                raise ValueError
            return list(range(lo, hi + 1)), True
        k = int(text)
        if k < 1:
            raise ValueError
        return [k], False
    except ValueError:
        raise _Usage(
            f"-k {text!r}: give a positive number of components (-k 4), a range (-k 1:10) "
            "or -k auto"
        ) from None


def _columns_arg(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [c.strip() for c in text.split(",") if c.strip()]
    if not names:
        raise _Usage("--columns: give column names separated by commas, e.g. --columns a,b")
    return names


def _read(args, path) -> Table:
    """Read a data file as the options say, passing on how its header was read."""
    table = read_table(path, header=not args.no_header)
    if table.note and not args.quiet:
        print(table.note, file=sys.stderr)
    return table


def _read_numeric(args, columns) -> tuple[Table, np.ndarray, np.ndarray, list[str]]:
    table = _read(args, args.data)
    names = table.names if columns is None else columns
    x, keep = table.numeric(names, dropna=args.dropna)
    if x.shape[0] == 0:
        raise DataError(f"{table.path}: no rows with data")
    return table, x, keep, names


def _load_model(path):
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such model file")
    try:
        model = load(path)
        meta = read_metadata(path)
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, not a model file") from None
    if not hasattr(model, "means_"):
        raise DataError(f"{path}: the model in this file was never fitted")
    return model, meta


def _model_rows(model, meta, table: Table, dropna: bool):
    """The model's columns of ``table`` (in the data's units) and the rows kept."""
    wanted = meta["extra"].get("columns") or [f"x{j}" for j in range(model.n_features_in_)]
    if all(n in table.names for n in wanted):
        names = wanted
    elif table.names == [f"x{j}" for j in range(len(table.names))] and len(table.names) == len(
        wanted
    ):
        names = table.names  # a file without names: by position
    else:
        missing = [n for n in wanted if n not in table.names]
        raise DataError(
            f"{table.path}: the model was fitted on columns {', '.join(wanted)} but this "
            f"file lacks {', '.join(repr(m) for m in missing)}; give a file with those columns"
        )
    return table.numeric(names, dropna=dropna)


def _table_lists(criterion_) -> dict:
    """A sweep's table (a structured array) as JSON-ready lists."""
    return {k: criterion_[k].tolist() for k in criterion_.dtype.names}


def _standardize(meta, x):
    s = meta["extra"].get("standardize")
    return x if not s else (x - np.asarray(s["mean"])) / np.asarray(s["scale"])


def _unstandardize(meta, z):
    s = meta["extra"].get("standardize")
    return z if not s else z * np.asarray(s["scale"]) + np.asarray(s["mean"])


def _log_det_scale(meta) -> float:
    s = meta["extra"].get("standardize")
    return 0.0 if not s else float(np.sum(np.log(s["scale"])))


def _in_data_units(table: dict, n_rows: int, log_det_scale: float) -> dict:
    """A criterion table fitted on standardised columns, in the data's units: each
    row's log-likelihood loses n log|det scale| (the Jacobian), each criterion gains
    twice that. The ranking, and so the choice, is unchanged."""
    shift = n_rows * log_det_scale
    table = dict(table)
    table["log_likelihood"] = [v - shift for v in table["log_likelihood"]]
    for name in ("bic", "aic", "icl"):
        table[name] = [v + 2 * shift for v in table[name]]
    return table


def _original_units(model, meta):
    """Means and full covariances in the data's units (standardisation undone)."""
    from .plotting import full_covariances

    k, d = model.means_.shape
    covs = full_covariances(model.covariance_type, model.covariances_, k, d)
    means = _unstandardize(meta, np.asarray(model.means_, np.float64))
    s = meta["extra"].get("standardize")
    if s:
        scale = np.asarray(s["scale"])
        covs = covs * scale[None, :, None] * scale[None, None, :]
    return means, covs


def _emit_table(args, names, columns) -> None:
    if args.output is not None:
        write_table(args.output, names, columns)
        if not args.quiet and not args.json:
            print(
                f"wrote {len(columns[0]) if columns else 0} rows to {args.output}", file=sys.stderr
            )
    elif args.json:
        values = [_json_values(c) for c in columns]
        rows = [dict(zip(names, vals, strict=True)) for vals in zip(*values, strict=True)]
        print(json.dumps(rows, default=_json_default))
    else:
        write_table(None, names, columns, out=sys.stdout)


def _json_values(column) -> list:
    """A column as JSON values: numbers as numbers (also when read as text), missing
    numbers as null (JSON has no NaN)."""
    values = typed(column).tolist()
    return [None if isinstance(v, float) and v != v else v for v in values]


def _json_default(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    raise TypeError(type(v).__name__)


def _dropped_note(args, table: Table, keep) -> None:
    n = int((~keep).sum())
    if n and not args.quiet:
        print(f"{table.path}: dropped {n} row(s) with missing values (--dropna)", file=sys.stderr)


# --- commands ------------------------------------------------------------------------


def cmd_fit(args) -> int:
    from . import GaussianMixture, GaussianMixtureIC

    ks, auto = _parse_k(args.k)
    out = args.output or Path(args.data).with_suffix(".jgmm").name
    if str(out) != "-" and not Path(out).parent.is_dir():  # say so before fitting
        raise DataError(f"{out}: the directory {Path(out).parent} does not exist; create it first")
    table, x, keep, names = _read_numeric(args, _columns_arg(args.columns))
    if x.shape[1] == 0:
        raise DataError(f"{table.path}: no columns selected")
    n = x.shape[0]
    if auto and max(ks) > n:
        ks = [k for k in ks if k <= n]
    if n < max(ks, default=1) or not ks or n < 2:
        raise DataError(
            f"{table.path}: {n} row(s) with data but K={max(ks, default=1)} needs at least "
            f"{max(max(ks, default=1), 2)}; lower -k or give more rows"
        )
    covariance = args.covariance or ("all" if auto else "full")
    standardize = None
    if args.standardize:
        mean, scale = x.mean(0), x.std(0)
        constant = [names[j] for j in np.flatnonzero(scale == 0)]
        if constant:
            raise DataError(
                f"{table.path}: column {constant[0]!r} is constant and cannot be "
                "standardised; leave it out with --columns"
            )
        standardize = {"mean": mean.tolist(), "scale": scale.tolist()}
        x = (x - mean) / scale
    sweep = auto or covariance == "all"
    common = dict(n_init=args.n_init, max_iter=args.max_iter, tol=args.tol, random_state=args.seed)
    if sweep:
        est = GaussianMixtureIC(ks, covariance_type=covariance, criterion=args.criterion, **common)
        n_types = 4 if covariance == "all" else 1
        total, unit = n_types * len(ks), "model"
    else:
        est = GaussianMixture(ks[0], covariance_type=covariance, **common)
        total, unit = args.max_iter, "iter"
    extra = {"standardize": standardize}
    offset = _log_det_scale({"extra": extra})
    _with_progress(args, total, unit, "fitting", lambda: est.fit(x), offset)
    model = est.best_estimator_ if sweep else est
    log_lik = model.score_samples(x) - offset
    extra |= {
        "columns": names,
        "data": str(table.path),
        "n_rows": int(n),
        "dropped_rows": int((~keep).sum()),
        "train_log_lik_quantiles": np.quantile(log_lik, _QUANTILES).tolist(),
    }
    if sweep:
        crit = _in_data_units(_table_lists(est.criterion_), n, offset)
        extra.update(criterion=args.criterion, table=crit)
    save(model, out, extra=extra)
    means, _ = _original_units(model, {"extra": extra})
    summary = {
        "model": str(out),
        "n_components": int(model.n_components),
        "covariance_type": model.covariance_type,
        "converged": bool(model.converged_),
        "n_iter": int(model.n_iter_),
        "log_likelihood_per_row": float(np.mean(log_lik)),
        "columns": names,
        "weights": model.weights_.tolist(),
        "means": means.tolist(),
        "rows": int(n),
    }
    if sweep:
        summary["criterion"] = args.criterion
        summary["table"] = crit
    if args.json:
        print(json.dumps(summary, default=_json_default), file=_report_stream(args))
        return 0
    _dropped_note(args, table, keep)
    if sweep:
        chosen = (model.covariance_type, model.n_components)
        _say(args, criterion_table(crit, args.criterion, chosen))
        _say(args)
    _say(
        args,
        f"{table.path}: {n} rows, columns {', '.join(names)}"
        + (" (standardised for the fit)" if standardize else ""),
    )
    _say(
        args,
        f"model: K={model.n_components}, covariance '{model.covariance_type}', "
        f"{model.n_iter_} iterations, converged {bool(model.converged_)}, "
        f"log-likelihood per row {np.mean(log_lik):.5f}",
    )
    _say(args, _component_table(model.weights_, means, names))
    _say(args, f"wrote {out}")
    return 0


def _component_table(weights, means, names) -> str:
    width = max(10, *(len(n) for n in names))
    lines = [f"{'component':>9} {'weight':>7}  " + " ".join(f"{n:>{width}}" for n in names)]
    for k, (w, m) in enumerate(zip(weights, means, strict=True)):
        lines.append(f"{k:>9} {w:7.4f}  " + " ".join(f"{v:>{width}.4g}" for v in m))
    return "\n".join(lines)


def cmd_predict(args) -> int:
    model, meta = _load_model(args.model)
    table = _read(args, args.data)
    x, keep = _model_rows(model, meta, table, args.dropna)
    _dropped_note(args, table, keep)
    names = list(table.names)
    columns = [c[keep] for c in table.columns]
    proba = model.predict_proba(_standardize(meta, x))
    names.append(_free("component", names))
    columns.append(np.argmax(proba, axis=1))
    if args.proba:
        for k in range(proba.shape[1]):
            names.append(_free(f"proba_{k}", names))
            columns.append(proba[:, k])
    _emit_table(args, names, columns)
    return 0


def _free(name: str, taken: list[str]) -> str:
    while name in taken:
        name = f"{name}_"
    return name


def cmd_score(args) -> int:
    model, meta = _load_model(args.model)
    table = _read(args, args.data)
    x, keep = _model_rows(model, meta, table, args.dropna)
    _dropped_note(args, table, keep)
    log_lik = model.score_samples(_standardize(meta, x)) - _log_det_scale(meta)
    names = list(table.names)
    columns = [c[keep] for c in table.columns]
    names.append(_free("log_likelihood", names))
    columns.append(log_lik)
    if args.outliers is not None:
        q = args.outliers
        if not 0 < q < 1:
            raise _Usage(f"--outliers {q}: give a quantile between 0 and 1, e.g. 0.01")
        quantiles = meta["extra"].get("train_log_lik_quantiles")
        if not quantiles:
            raise DataError(
                f"{args.model}: the model holds no training log-likelihoods (it was not "
                "fitted by 'jaxgmm fit'); --outliers needs them"
            )
        threshold = float(np.interp(q, _QUANTILES, quantiles))
        flag = log_lik < threshold
        names.append(_free("outlier", names))
        columns.append(flag.astype(int))
        if not args.quiet and not args.json:
            print(
                f"{int(flag.sum())} of {len(flag)} rows below the {q:g} quantile of the "
                f"training log-likelihood ({threshold:.4f})",
                file=sys.stderr,
            )
    _emit_table(args, names, columns)
    return 0


def cmd_sample(args) -> int:
    if args.n < 1:
        raise _Usage(f"-n {args.n}: give a positive number of samples")
    model, meta = _load_model(args.model)
    z, labels = model.sample(args.n, random_state=args.seed)
    x = _unstandardize(meta, z)
    names = list(meta["extra"].get("columns") or [f"x{j}" for j in range(x.shape[1])])
    names.append(_free("component", names))
    _emit_table(args, names, [*x.T, labels])
    return 0


def _figure(model, meta, x_data, args, title):
    """The scatter (and for a sweep the criterion panel) as a matplotlib figure."""
    from .plotting import plot_criterion, plot_mixture, pyplot

    plt = pyplot()
    names = list(meta["extra"].get("columns") or [f"x{j}" for j in range(x_data.shape[1])])
    means, covs = _original_units(model, meta)
    labels = model.predict(_standardize(meta, x_data))
    if args.pca:
        center = x_data.mean(0)
        _, _, vt = np.linalg.svd(x_data - center, full_matrices=False)
        v = vt[:2] if vt.shape[0] >= 2 else np.vstack([vt, np.zeros_like(vt)])
        x2, m2 = (x_data - center) @ v.T, (means - center) @ v.T
        c2 = v @ covs @ v.T
        xl, yl = "principal component 1", "principal component 2"
    else:
        if x_data.shape[1] < 2 and (args.x is None or args.y is None):
            raise DataError("the model has one column: nothing to plot in two dimensions")
        xi = names.index(args.x) if args.x else 0
        yi = names.index(args.y) if args.y else 1
        idx = [xi, yi]
        x2, m2 = x_data[:, idx], means[:, idx]
        c2 = covs[:, idx][:, :, idx]
        xl, yl = names[xi], names[yi]
    table = meta["extra"].get("table")
    width = 12.8 if table else 6.4
    fig, axes = plt.subplots(1, 2 if table else 1, figsize=(width, 4.8), dpi=args.dpi)
    ax = axes[0] if table else axes
    plot_mixture(ax, x2, labels, (model.weights_, m2, c2), (xl, yl, title))
    if table:
        plot_criterion(
            axes[1],
            table,
            meta["extra"].get("criterion", "bic"),
            (model.covariance_type, model.n_components),
        )
    fig.tight_layout()
    return fig


def _save_figure(fig, path) -> None:
    from .io import atomic_write

    path = Path(path)
    if str(path) != "-" and path.suffix.lower() != ".png":
        raise _Usage(f"-o {path}: the plot is written as PNG; give a name ending in .png")
    atomic_write(path, lambda f: fig.savefig(f, format="png"))


def _check_plot_columns(args, meta) -> None:
    names = list(meta["extra"].get("columns") or [])
    for flag in ("x", "y"):
        name = getattr(args, flag)
        if name is not None and name not in names:
            raise _Usage(
                f"--{flag} {name!r}: the model's columns are {', '.join(names) or '(unnamed)'}"
            )


def cmd_plot(args) -> int:
    from .plotting import pyplot

    pyplot()  # fail early, with the install hint, when matplotlib is missing
    model, meta = _load_model(args.model)
    _check_plot_columns(args, meta)
    table = _read(args, args.data)
    x_data, _ = _model_rows(model, meta, table, args.dropna)
    title = f"{Path(args.data).name}: K={model.n_components}, {model.covariance_type}"
    fig = _figure(model, meta, x_data, args, title)
    _save_figure(fig, args.output)
    if args.json:
        width, height = fig.canvas.get_width_height()
        report = {"output": str(args.output), "width": width, "height": height}
        print(json.dumps(report), file=_report_stream(args))
    elif not args.quiet:
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


def cmd_demo(args) -> int:
    from sklearn.metrics import adjusted_rand_score

    from .demo import run

    model, x, y = run(seed=args.seed, n_init=args.n_init, quiet=args.quiet or args.json)
    summary = {
        "n_components": int(model.n_components_),
        "covariance_type": model.covariance_type_,
        "adjusted_rand_index": float(adjusted_rand_score(y, model.predict(x))),
        # numbered as the printed table and the plot number them
        "weights": model.best_estimator_.weights_.tolist(),
        "means": model.best_estimator_.means_.tolist(),
        "png": None,
    }
    try:
        from .plotting import pyplot

        pyplot()
    except ImportError as e:
        print(f"jaxgmm demo: no plot: {e}", file=sys.stderr)
        if args.json:
            print(json.dumps(summary))
        return 0
    crit = _table_lists(model.criterion_)
    meta = {"extra": {"columns": ["x0", "x1"], "table": crit, "criterion": "bic"}}
    args.pca, args.x, args.y = False, None, None
    fig = _figure(model.best_estimator_, meta, x, args, "the seed's four blobs")
    _save_figure(fig, args.output)
    if args.json:
        print(json.dumps({**summary, "png": str(args.output)}))
    elif not args.quiet:
        print(f"wrote {args.output}")
    return 0


def cmd_info(args) -> int:
    model, meta = _load_model(args.model)
    extra = meta["extra"]
    info = {
        "file": str(args.model),
        "format_version": meta["format_version"],
        "class": meta["class"],
        "n_components": int(model.n_components),
        "covariance_type": model.covariance_type,
        "n_features": int(model.n_features_in_),
        "columns": extra.get("columns"),
        "standardized": bool(extra.get("standardize")),
        "converged": bool(model.converged_),
        "n_iter": int(model.n_iter_),
        # per row, in the data's units like every log-likelihood the command reports
        "lower_bound": float(model.lower_bound_) - _log_det_scale(meta),
        "weights": np.asarray(model.weights_).tolist(),
        "means": _original_units(model, meta)[0].tolist(),
        "data": extra.get("data"),
        "n_rows": extra.get("n_rows"),
        "params": {k: v for k, v in meta["params"].items() if not isinstance(v, dict)},
    }
    if extra.get("table"):
        info["criterion"] = extra.get("criterion")
    if args.json:
        print(json.dumps(info, default=_json_default))
        return 0
    print(f"{info['file']}: jaxgmm {info['class']} (format version {info['format_version']})")
    print(
        f"K={info['n_components']}, covariance '{info['covariance_type']}', "
        f"{info['n_features']} features: {', '.join(info['columns'] or [])}"
        + (" (standardised)" if info["standardized"] else "")
    )
    print(
        f"fit: converged {info['converged']} after {info['n_iter']} iterations, "
        f"lower bound {info['lower_bound']:.6f}"
        + (f"; data {info['data']} ({info['n_rows']} rows)" if info["data"] else "")
    )
    if info.get("criterion"):
        print(f"chosen by {info['criterion'].upper()} over a sweep")
    print(_component_table(info["weights"], np.asarray(info["means"]), info["columns"] or []))
    params = ", ".join(f"{k}={v!r}" for k, v in sorted(info["params"].items()))
    print(textwrap.fill(f"parameters: {params}", 100))
    return 0


# --- the parser ----------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="jaxgmm",
        description=__doc__.split("\n\n")[0],
        formatter_class=fmt,
        epilog="Run 'jaxgmm COMMAND --help' for a command's options and examples.",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"jaxgmm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name, help, examples, func):
        p = sub.add_parser(
            name,
            help=help,
            description=help,
            formatter_class=fmt,
            epilog="examples:\n" + textwrap.indent(examples.strip(), "  "),
        )
        p.set_defaults(func=func)
        p.add_argument("-q", "--quiet", action="store_true", help="no progress or messages")
        return p

    def read_args(p):
        p.add_argument("--dropna", action="store_true", help="drop rows with missing values")
        p.add_argument(
            "--no-header",
            action="store_true",
            help="the text file's first line is data, not column names (named x0, x1, ...)",
        )

    def data_args(p, with_output=True, out_help="output file (.csv, .tsv, .npy, .npz, .parquet)"):
        read_args(p)
        if with_output:
            p.add_argument("-o", "--output", help=f"{out_help}; stdout (CSV) if omitted")
            p.add_argument("--json", action="store_true", help="JSON records on stdout")

    p = command(
        "fit",
        "fit a mixture to a data file and save the model",
        """
jaxgmm fit data.csv -k 3 -o model.jgmm
jaxgmm fit data.csv -k auto --covariance all --criterion bic
jaxgmm fit data.parquet -k 1:6 --columns height,weight --standardize --seed 1
""",
        cmd_fit,
    )
    p.add_argument("data", help="CSV, TSV, .npy, .npz or Parquet file")
    p.add_argument(
        "-k",
        default="auto",
        help="components: a number, a range such as 1:10, or auto "
        "(1:10, chosen by the criterion; default)",
    )
    p.add_argument(
        "--covariance",
        choices=("full", "tied", "diag", "spherical", "all"),
        help="covariance type (default: full for a fixed K, all for a range)",
    )
    p.add_argument("--criterion", choices=("bic", "aic", "icl"), default="bic")
    p.add_argument("--n-init", type=int, default=5, help="restarts per model (default 5)")
    p.add_argument("--max-iter", type=int, default=100)
    p.add_argument("--tol", type=float, default=1e-3)
    p.add_argument("--columns", help="comma-separated columns to use (default: all)")
    p.add_argument("--standardize", action="store_true", help="scale columns to unit variance")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    read_args(p)
    p.add_argument("-o", "--output", help="model file to write (default: DATA's name + .jgmm)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")

    p = command(
        "predict",
        "label every row with its most likely component",
        """
jaxgmm predict model.jgmm data.csv -o labelled.csv
jaxgmm predict model.jgmm data.csv --proba --json
""",
        cmd_predict,
    )
    p.add_argument("model")
    p.add_argument("data")
    p.add_argument("--proba", action="store_true", help="also each component's probability")
    data_args(p)

    p = command(
        "score",
        "per-row log-likelihood, optionally flagging unusual rows",
        """
jaxgmm score model.jgmm data.csv -o scores.csv
jaxgmm score model.jgmm new.csv --outliers 0.01
""",
        cmd_score,
    )
    p.add_argument("model")
    p.add_argument("data")
    p.add_argument(
        "--outliers",
        type=float,
        metavar="Q",
        help="flag rows below the Q quantile of the training log-likelihood",
    )
    data_args(p)

    p = command(
        "sample",
        "draw samples from a model",
        """
jaxgmm sample model.jgmm -n 1000 --seed 3 -o samples.csv
""",
        cmd_sample,
    )
    p.add_argument("model")
    p.add_argument("-n", type=int, default=100, help="number of samples (default 100)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("-o", "--output", help="output file; stdout (CSV) if omitted")
    p.add_argument("--json", action="store_true", help="JSON records on stdout")

    p = command(
        "plot",
        "scatter the data by component with 1-, 2- and 3-sigma ellipses (PNG)",
        """
jaxgmm plot model.jgmm data.csv -o fig.png
jaxgmm plot model.jgmm data.csv --x height --y weight -o fig.png
jaxgmm plot model.jgmm data.csv --pca -o fig.png
""",
        cmd_plot,
    )
    p.add_argument("model")
    p.add_argument("data")
    p.add_argument("-o", "--output", required=True, help="the PNG file to write")
    p.add_argument("--x", help="column on the horizontal axis (default: the first)")
    p.add_argument("--y", help="column on the vertical axis (default: the second)")
    p.add_argument("--pca", action="store_true", help="project on two principal components")
    p.add_argument("--dpi", type=int, default=100, help="pixels per inch (default 100)")
    read_args(p)
    p.add_argument("--json", action="store_true", help="print the PNG's name and size as JSON")

    p = command(
        "demo",
        "the seed's problem end to end: four blobs, K unknown, chosen by BIC",
        """
jaxgmm demo
jaxgmm demo -o demo.png --seed 3
""",
        cmd_demo,
    )
    p.add_argument("-o", "--output", default="jaxgmm-demo.png", help="the PNG to write")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-init", type=int, default=5)
    p.add_argument("--dpi", type=int, default=100)
    p.add_argument("--json", action="store_true", help="print the outcome as JSON")

    p = command(
        "info",
        "describe a model file",
        """
jaxgmm info model.jgmm
jaxgmm info model.jgmm --json
""",
        cmd_info,
    )
    p.add_argument("model")
    p.add_argument("--json", action="store_true")
    return parser


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    text = str(message).strip().splitlines()[0] if str(message).strip() else category.__name__
    print(f"jaxgmm: warning: {text}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    # The command owns its process: compiled programs are kept on disk
    # (JAXGMM_CACHE_DIR=off switches it off). The library never does this itself.
    from . import enable_compilation_cache

    enable_compilation_cache()
    debug = os.environ.get("JAXGMM_DEBUG") == "1"
    previous = warnings.showwarning
    warnings.showwarning = _one_line_warning
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # feature-name notes
            from sklearn.exceptions import ConvergenceWarning

            warnings.simplefilter("always", ConvergenceWarning)
            return args.func(args)
    except KeyboardInterrupt:
        print("jaxgmm: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader (head, say) stopped early: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (DataError, ValueError, FileNotFoundError, ImportError, OSError) as e:
        if debug:
            raise
        msg = " ".join(str(e).split()) or type(e).__name__
        print(f"jaxgmm {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except Exception as e:
        if debug:
            raise
        print(
            f"jaxgmm {args.command}: internal error: {type(e).__name__}: {e} "
            "(run with JAXGMM_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return 1
    finally:
        warnings.showwarning = previous


if __name__ == "__main__":
    raise SystemExit(main())
