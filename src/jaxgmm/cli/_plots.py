"""Plots of a fitted mixture (needs matplotlib): the data coloured by component with
1-, 2- and 3-sigma ellipses in two dimensions, and a sweep's criterion against K."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from .._io import atomic_write
from ._common import Usage, in_data_units
from ._datafiles import DataError
from ._record import FitRecord

__all__ = ["MATPLOTLIB_HINT", "figure", "plot_criterion", "plot_mixture", "pyplot", "save_png"]

MATPLOTLIB_HINT = "plots need matplotlib: pip install 'jaxgmm[plot]' (or pip install matplotlib)"


def pyplot():
    """matplotlib's pyplot on the non-interactive Agg backend; ImportError with
    :data:`MATPLOTLIB_HINT` when matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError(MATPLOTLIB_HINT) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _ellipse(ax, mean, cov, n_sigma, color):
    from matplotlib.patches import Ellipse

    vals, vecs = np.linalg.eigh(cov)
    vals = np.maximum(vals, 0)
    angle = np.degrees(np.arctan2(vecs[1, -1], vecs[0, -1]))
    width, height = 2 * n_sigma * np.sqrt(vals[::-1])
    ax.add_patch(
        Ellipse(
            mean,
            width,
            height,
            angle=angle,
            fill=False,
            color=color,
            lw=1.2,
            alpha=0.9 - 0.2 * n_sigma,
        )
    )


def plot_mixture(ax, x2, labels, components, axes_text=("", "", "")):
    """Scatter ``x2`` (n, 2) coloured by ``labels``; each component's mean and its
    1-, 2- and 3-sigma ellipses. ``components`` is ``(weights, means2, covs2)`` with
    means (k, 2) and covariances (k, 2, 2); ``axes_text`` the x label, y label and
    title."""
    weights, means2, covs2 = components
    xlabel, ylabel, title = axes_text
    colors = [f"C{i % 10}" for i in range(len(means2))]
    ax.scatter(x2[:, 0], x2[:, 1], c=[colors[i] for i in labels], s=10, alpha=0.7, lw=0)
    for k, (m, c) in enumerate(zip(means2, covs2, strict=True)):
        for n_sigma in (1, 2, 3):
            _ellipse(ax, m, c, n_sigma, colors[k])
        ax.plot(*m, marker="x", color="black", ms=7, mew=2)
        ax.annotate(f"{k} ({weights[k]:.2f})", m, textcoords="offset points", xytext=(5, 5))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.autoscale_view()


_MARKERS = "os^vD<>pPhX*d8"


def plot_criterion(ax, table: dict, criterion: str, chosen: tuple[str, int] | None = None):
    """The criterion against K, one line per covariance type (each with its own colour
    and marker: mclust's 14 families are more than a colour cycle); the chosen model
    ringed."""
    from matplotlib import colormaps

    types = list(dict.fromkeys(np.asarray(table["covariance_type"]).tolist()))
    ks = np.asarray(table["n_components"])
    values = np.asarray(table[criterion], np.float64)
    colors = colormaps["tab20"].colors
    for i, t in enumerate(types):
        rows = np.asarray(table["covariance_type"]) == t
        order = np.argsort(ks[rows])
        style = dict(marker=_MARKERS[i % len(_MARKERS)], color=colors[(2 * i) % 20 + i // 10])
        ax.plot(ks[rows][order], values[rows][order], label=t, ms=5, **style)
    if chosen is not None:
        rows = (np.asarray(table["covariance_type"]) == chosen[0]) & (ks == chosen[1])
        ax.plot(
            ks[rows],
            values[rows],
            "o",
            ms=14,
            mfc="none",
            mec="red",
            mew=2,
            label=f"chosen: {chosen[0]}, K={chosen[1]}",
        )
    ax.set_xlabel("number of components K")
    ax.set_ylabel(f"{criterion.upper()} (lower is better)")
    ax.legend(ncol=2 if len(types) > 6 else 1, fontsize="small")
    ax.set_title(f"{criterion.upper()} against K")


@dataclasses.dataclass(frozen=True)
class View:
    """Which plane the scatter shows: two named columns (the first two by default) or,
    with ``pca``, the data's first two principal components."""

    x: str | None = None
    y: str | None = None
    pca: bool = False

    def check(self, names: list[str]) -> None:
        for flag in ("x", "y"):
            name = getattr(self, flag)
            if name is not None and name not in names:
                shown = ", ".join(names) or "(unnamed)"
                raise Usage(f"--{flag} {name!r}: the model's columns are {shown}")

    def project(self, x_data, means, covs, names):
        """(points, means, covariances, x label, y label) in the plane."""
        if self.pca:
            center = x_data.mean(0)
            _, _, vt = np.linalg.svd(x_data - center, full_matrices=False)
            v = vt[:2] if vt.shape[0] >= 2 else np.vstack([vt, np.zeros_like(vt)])
            x2, m2 = (x_data - center) @ v.T, (means - center) @ v.T
            return x2, m2, v @ covs @ v.T, "principal component 1", "principal component 2"
        if x_data.shape[1] < 2 and (self.x is None or self.y is None):
            raise DataError("the model has one column: nothing to plot in two dimensions")
        xi = names.index(self.x) if self.x else 0
        yi = names.index(self.y) if self.y else 1
        idx = [xi, yi]
        return x_data[:, idx], means[:, idx], covs[:, idx][:, :, idx], names[xi], names[yi]


def figure(model, record: FitRecord, x_data, view: View, title: str, dpi: int = 100):
    """The scatter (and, for a sweep, the criterion panel) as a matplotlib figure;
    ``x_data`` in the data's units."""
    plt = pyplot()
    names = record.column_names(x_data.shape[1])
    means, covs = in_data_units(model, record)
    labels = model.predict(record.standardization.apply(x_data))
    x2, m2, c2, xl, yl = view.project(x_data, means, covs, names)
    table = record.table
    width = 12.8 if table else 6.4
    fig, axes = plt.subplots(1, 2 if table else 1, figsize=(width, 4.8), dpi=dpi)
    ax = axes[0] if table else axes
    plot_mixture(ax, x2, labels, (model.weights_, m2, c2), (xl, yl, title))
    if table:
        chosen = (model.covariance_type, model.n_components)
        plot_criterion(axes[1], table, record.criterion or "bic", chosen)
    fig.tight_layout()
    return fig


def save_png(fig, path) -> None:
    path = Path(path)
    if str(path) != "-" and path.suffix.lower() != ".png":
        raise Usage(f"-o {path}: the plot is written as PNG; give a name ending in .png")
    atomic_write(path, lambda f: fig.savefig(f, format="png"))
