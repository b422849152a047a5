"""``jaxgmm plot``: pictures of a fitted mixture after mclust's (the sweep's criterion
against K, the data by component with sigma ellipses, each row's uncertainty, the
fitted density, a scatter matrix) as PNG, SVG or PDF."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ._common import (
    Usage,
    add_command,
    add_read_options,
    load_model,
    model_rows,
    read,
    report_stream,
)
from ._datafiles import DataError
from ._figures import KINDS, Request, draw, sweep_figure
from ._plots import output_format, pyplot, save_figure
from ._views import MAX_PAIRS, View, chosen_columns, fitted

EXAMPLES = """
jaxgmm plot model.jgmm data.csv -o fig.png        # by component (+ BIC vs K for a sweep)
jaxgmm plot model.jgmm --kind bic -o bic.svg      # the sweep's BIC against K (fit -k 1:9)
jaxgmm plot model.jgmm data.csv --x height --y weight -o fig.pdf
jaxgmm plot model.jgmm data.csv --pca --kind uncertainty -o unc.png
jaxgmm plot model.jgmm data.csv --kind density --x height -o height.png
jaxgmm plot model.jgmm data.csv --kind pairs --columns a,b,c,d -o pairs.png
"""

KINDS_HELP = (
    "classification: rows by component with 1-, 2-, 3-sigma ellipses (default; with the "
    "criterion panel beside it for a sweep); uncertainty: rows sized and shaded by 1 - "
    "their largest component probability; density: a histogram with the fitted density "
    "(one column, or --x alone) or its contours (two columns); pairs: a scatter matrix "
    "(--columns); bic: the sweep's criterion against K"
)


def register(sub) -> None:
    help = "plot a fitted mixture: by component, uncertainty, density, pairs, BIC vs K"
    p = add_command(sub, "plot", help, EXAMPLES, run)
    p.add_argument("model")
    p.add_argument("data", nargs="?", help="the data to draw (not needed for --kind bic)")
    p.add_argument("-o", "--output", required=True, help="the file to write: .png, .svg or .pdf")
    p.add_argument("--kind", choices=KINDS, help=KINDS_HELP)
    p.add_argument("--x", help="column on the horizontal axis (default: the first)")
    p.add_argument("--y", help="column on the vertical axis (default: the first other one)")
    p.add_argument(
        "--pca",
        action="store_true",
        help="project on two principal components of the columns as the model saw them "
        "(standardised when it was fitted with --standardize)",
    )
    p.add_argument(
        "--columns", help=f"the pairs plot's columns, a,b,c (at most {MAX_PAIRS}; default: all)"
    )
    p.add_argument(
        "--criterion",
        choices=("bic", "aic", "icl"),
        help="the criterion against K (default: the one the sweep chose by)",
    )
    p.add_argument("--dpi", type=int, default=100, help="pixels per inch (default 100)")
    add_read_options(p)
    p.add_argument(
        "--json",
        action="store_true",
        help="print the file's name, kind and format (and size) as JSON",
    )


def _check_options(args, kind: str) -> None:
    """Options that the kind would ignore are mistakes: say so before any work."""
    axes = [f for f in ("x", "y") if getattr(args, f)] + (["pca"] if args.pca else [])
    if kind in ("bic", "pairs") and axes:
        raise Usage(f"--{axes[0]} has no effect on --kind {kind}; leave it out")
    if args.columns is not None and kind != "pairs":
        raise Usage("--columns chooses a pairs plot's columns: add --kind pairs, or use --x/--y")
    if args.criterion is not None and kind != "bic":
        raise Usage("--criterion is for --kind bic")
    if kind != "bic" and args.data is None:
        raise Usage(f"--kind {kind} draws the data: give the data file after the model")


def run(args) -> int:
    kind = args.kind or "classification"
    _check_options(args, kind)
    fmt = output_format(args.output)
    pyplot()  # fail early, with the install hint, when matplotlib is missing
    model, _, record = load_model(args.model)
    if kind == "bic":
        fig, panels = _sweep_plot(args, model, record), ["bic"]
    else:
        fig, panels = _data_plot(args, kind, model, record)
    save_figure(fig, args.output)
    if args.json:
        report = {"output": str(args.output), "kind": kind, "panels": panels, "format": fmt}
        if fmt == "png":
            width, height = fig.canvas.get_width_height()
            report |= {"width": width, "height": height}
        print(json.dumps(report), file=report_stream(args))
    elif not args.quiet:
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


def _sweep_plot(args, model, record):
    """The sweep's criterion against K, titled with the data it was fitted on."""
    if not record.table:
        raise DataError(
            f"{args.model}: no criterion against K to plot, the model was fitted at one K; "
            "fit a range of K, e.g. jaxgmm fit data.csv -k 1:9"
        )
    criterion = args.criterion or record.criterion or "bic"
    chosen = (model.covariance_type, model.n_components)
    title = Path(record.data or args.model).name
    request = Request(title=title, dpi=args.dpi)
    return sweep_figure(record.table, criterion, chosen, request, record.criterion)


def _data_plot(args, kind: str, model, record):
    """(figure, the kinds drawn) of a kind that draws the data: without --kind, a
    sweep's criterion panel beside the classification."""
    names = record.column_names(model.n_features_in_)
    view = View(args.x, args.y, args.pca)
    view.check(names)
    columns = chosen_columns(args.columns, names) if kind == "pairs" else None
    x_data, _ = model_rows(model, record, read(args, args.data), args.dropna)
    chosen = (model.covariance_type, model.n_components)
    beside = args.kind is None and record.table is not None
    sweep = (record.table, record.criterion or "bic", chosen) if beside else None
    title = f"{Path(args.data).name}: K={model.n_components}, {model.covariance_type}"
    request = Request(view, columns, title, args.dpi, sweep)
    return draw(kind, fitted(model, record, x_data), request), [kind, "bic"] if beside else [kind]
