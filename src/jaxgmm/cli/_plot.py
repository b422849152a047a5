"""``jaxgmm plot``: the data coloured by component with 1-, 2- and 3-sigma ellipses,
and a sweep's criterion against K, as a PNG."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ._common import add_command, add_read_options, load_model, model_rows, read, report_stream
from ._plots import View, figure, pyplot, save_png

EXAMPLES = """
jaxgmm plot model.jgmm data.csv -o fig.png
jaxgmm plot model.jgmm data.csv --x height --y weight -o fig.png
jaxgmm plot model.jgmm data.csv --pca -o fig.png
"""


def register(sub) -> None:
    help = "scatter the data by component with 1-, 2- and 3-sigma ellipses (PNG)"
    p = add_command(sub, "plot", help, EXAMPLES, run)
    p.add_argument("model")
    p.add_argument("data")
    p.add_argument("-o", "--output", required=True, help="the PNG file to write")
    p.add_argument("--x", help="column on the horizontal axis (default: the first)")
    p.add_argument("--y", help="column on the vertical axis (default: the second)")
    p.add_argument("--pca", action="store_true", help="project on two principal components")
    p.add_argument("--dpi", type=int, default=100, help="pixels per inch (default 100)")
    add_read_options(p)
    p.add_argument("--json", action="store_true", help="print the PNG's name and size as JSON")


def run(args) -> int:
    pyplot()  # fail early, with the install hint, when matplotlib is missing
    model, _, record = load_model(args.model)
    view = View(args.x, args.y, args.pca)
    view.check(list(record.columns or []))
    table = read(args, args.data)
    x_data, _ = model_rows(model, record, table, args.dropna)
    title = f"{Path(args.data).name}: K={model.n_components}, {model.covariance_type}"
    fig = figure(model, record, x_data, view, title, args.dpi)
    save_png(fig, args.output)
    if args.json:
        width, height = fig.canvas.get_width_height()
        report = {"output": str(args.output), "width": width, "height": height}
        print(json.dumps(report), file=report_stream(args))
    elif not args.quiet:
        print(f"wrote {args.output}", file=sys.stderr)
    return 0
