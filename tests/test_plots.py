"""``jaxgmm plot``'s kinds end to end (the installed command on iris and wine), and the
numbers behind them: whole K on the criterion's axis, principal components of the
columns as the model saw them."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jaxgmm.cli import main
from jaxgmm.cli._common import load_model
from jaxgmm.cli._datafiles import read_table

pytest.importorskip("matplotlib")

SCRIPT = Path(sys.executable).parent / "jaxgmm"
ENV = dict(os.environ, JAX_PLATFORMS="cpu")  # the run's program cache (conftest.py)


def run(*args):
    proc = subprocess.run(
        [str(SCRIPT), *map(str, args)], capture_output=True, text=True, env=ENV, timeout=300
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def fit(*args) -> None:
    """``jaxgmm fit`` in this process: the models are the tests' inputs, not their
    subject, and a process of its own would import JAX again."""
    assert main(["fit", *map(str, args), "--n-init", "1", "-q"]) == 0


def one_line_error(capsys, *args) -> str:
    """The command's error for ``args`` (run here): exit code 2 and one line on stderr."""
    capsys.readouterr()
    assert main([str(a) for a in args]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """iris (four columns) and wine (thirteen, proline in the hundreds) as CSV, and the
    models the tests draw: an iris sweep over K = 1..3 and the 14 families, wine at K=3
    on standardised columns, and iris's petal length alone (one column)."""
    from sklearn.datasets import load_iris, load_wine

    d = tmp_path_factory.mktemp("plots")
    for name, load in (("iris", load_iris), ("wine", load_wine)):
        bunch = load()
        names = [
            n.replace(" (cm)", "").replace(" ", "_").replace("/", "_") for n in bunch.feature_names
        ]
        with open(d / f"{name}.csv", "w", newline="") as f:
            csv.writer(f).writerows([names, *bunch.data.tolist()])
    fit(d / "iris.csv", "-k", "1:3", "-o", d / "iris.jgmm")
    fit(d / "wine.csv", "-k", "3", "--standardize", "-o", d / "wine.jgmm")
    fit(d / "iris.csv", "--columns", "petal_length", "-k", "2", "-o", d / "petal.jgmm")
    return d


def written_as(path: Path, fmt: str) -> None:
    head = path.read_bytes()[:400]
    if fmt == "svg":
        assert head.startswith(b"<?xml") and b"<svg" in head
    elif fmt == "pdf":
        assert head.startswith(b"%PDF")
    else:
        assert head.startswith(b"\x89PNG")


CASES = [
    # kind, model, data, output, options
    ("bic", "iris", None, "bic.svg", []),
    ("classification", "petal", "iris", "strip.pdf", []),  # one column: a strip by component
    ("uncertainty", "wine", "wine", "uncertainty.png", ["--pca"]),
    ("density", "petal", "iris", "histogram.png", []),  # one column: histogram and density
    ("density", "iris", "iris", "contours.svg", ["--x", "petal_length", "--y", "sepal_width"]),
    ("pairs", "wine", "wine", "pairs.pdf", ["--columns", "alcohol,flavanoids,hue,proline"]),
]


@pytest.mark.parametrize(("kind", "model", "data", "output", "options"), CASES)
def test_each_kind_writes_its_format(files, tmp_path, kind, model, data, output, options):
    out = tmp_path / output
    data_file = [files / f"{data}.csv"] if data else []
    proc = run(
        "plot", files / f"{model}.jgmm", *data_file, "--kind", kind, "-o", out, "--json", *options
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    fmt = out.suffix[1:]
    assert report["output"] == str(out) and report["kind"] == kind and report["format"] == fmt
    written_as(out, fmt)
    if fmt == "png":
        from matplotlib.image import imread

        assert imread(out).shape[:2] == (report["height"], report["width"])
    else:
        assert "width" not in report


def test_bic_axis_has_whole_k_and_a_style_per_family(files):
    from jaxgmm.cli._figures import Request, sweep_figure

    model, _, record = load_model(files / "iris.jgmm")
    chosen = (model.covariance_type, model.n_components)
    fig = sweep_figure(record.table, "bic", chosen, Request())
    ax = fig.axes[0]
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert ticks == [1, 2, 3]
    families = [
        line for line in ax.get_lines() if line.get_label() in set(record.table["covariance_type"])
    ]
    assert len(families) == 14
    assert len({(line.get_color(), line.get_marker()) for line in families}) == 14


def test_degenerate_fits_are_hollow_and_off_the_line(files):
    # a degenerate fit's BIC can be below the chosen model's: it must not read as a
    # point of its family's line
    from jaxgmm.cli._figures import Request, sweep_figure

    model, _, record = load_model(files / "iris.jgmm")
    table = {name: np.asarray(values) for name, values in record.table.items()}
    name = "full" if "full" in set(table["covariance_type"]) else "VVV"
    table["degenerate"] = (table["covariance_type"] == name) & (table["n_components"] == 3)
    table["bic"] = np.where(table["degenerate"], table["bic"].min() - 100, table["bic"])
    fig = sweep_figure(table, "bic", (model.covariance_type, model.n_components), Request())
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    k, y = lines[name].get_data()
    assert np.isnan(y[list(k).index(3)]) and np.isfinite(y[list(k).index(1)])
    hollow = [
        line
        for line in fig.axes[0].get_lines()
        if line.get_markerfacecolor() == "none" and list(line.get_xdata()) == [3]
    ]
    assert len(hollow) == 1 and hollow[0].get_ydata()[0] == table["bic"].min()
    assert "hollow: degenerate\n(not chosen)" in lines


def test_principal_components_of_standardised_columns(files):
    """wine's proline (hundreds) against the other columns (units): the raw data's
    first principal axis is proline alone; the model, fitted on standardised columns,
    is drawn on the standardised columns' axes."""
    from jaxgmm.cli._views import View, fitted, plane, principal_axes

    model, _, record = load_model(files / "wine.jgmm")
    x, _ = read_table(files / "wine.csv").numeric()
    proline = record.columns.index("proline")
    _, raw_axes, _ = principal_axes(x)
    assert abs(raw_axes[0, proline]) > 0.99  # what a plot of the raw columns shows
    p = plane(fitted(model, record, x), View(pca=True))
    assert abs(p.loadings[0, proline]) < 0.5 and "standardised" in p.xlabel
    z = record.standardization.apply(x)
    np.testing.assert_allclose(p.points, (z - z.mean(0)) @ p.loadings.T, atol=1e-12)
    np.testing.assert_allclose(p.means, (model.means_ - z.mean(0)) @ p.loadings.T, atol=1e-12)


def test_errors_name_the_fix(files, tmp_path, capsys):
    out = tmp_path / "f.png"
    wine, data = files / "wine.jgmm", files / "wine.csv"
    line = one_line_error(capsys, "plot", wine, "--kind", "bic", "-o", out)
    assert "one K" in line and "-k 1:9" in line
    line = one_line_error(capsys, "plot", wine, data, "--kind", "pairs", "-o", out)
    assert "13 columns" in line and "--columns" in line
    line = one_line_error(capsys, "plot", wine, data, "--columns", "hue,proline", "-o", out)
    assert "--kind pairs" in line
    line = one_line_error(capsys, "plot", wine, data, "--pca", "--x", "hue", "-o", out)
    assert "--pca" in line
    assert not list(tmp_path.iterdir())  # nothing written
    # through the installed command: the format is checked before anything is read
    proc = run("plot", wine, data, "-o", tmp_path / "f.jpg")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert ".png, .svg, .pdf" in proc.stderr and "f.jpg" in proc.stderr
