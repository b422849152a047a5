"""Drawing a fitted mixture with matplotlib (the ``plot`` extra): the pieces each of
``jaxgmm plot``'s kinds is made of (points by component, sigma ellipses, the component
legend, the criterion against K) and writing a figure as PNG, SVG or PDF."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._io import atomic_write
from ._common import Usage

__all__ = [
    "FORMATS",
    "MATPLOTLIB_HINT",
    "component_colors",
    "component_legend",
    "draw_ellipses",
    "output_format",
    "plot_criterion",
    "plot_mixture",
    "pyplot",
    "save_figure",
]

MATPLOTLIB_HINT = "plots need matplotlib: pip install 'jaxgmm[plot]' (or pip install matplotlib)"

#: The formats a plot is written in, by the output's extension.
FORMATS = ("png", "svg", "pdf")

# No creation date in SVG and PDF files: the same plot is the same file.
_METADATA = {"png": {}, "svg": {"Date": None}, "pdf": {"CreationDate": None}}


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


def output_format(path) -> str:
    """The format ``-o path`` asks for by its extension (PNG for ``-``, stdout)."""
    if str(path) == "-":
        return "png"
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        shown = ", ".join(f".{f}" for f in FORMATS)
        raise Usage(f"-o {path}: a plot is written as {shown}; give a name ending in one of them")
    return suffix


def save_figure(fig, path) -> None:
    """Write ``fig`` in the format of ``path``'s extension, atomically."""
    fmt = output_format(path)
    atomic_write(path, lambda f: fig.savefig(f, format=fmt, metadata=_METADATA[fmt]))


# --- components ------------------------------------------------------------------------


def component_colors(k: int) -> list:
    """One colour per component: matplotlib's ten, then tab20's twenty."""
    if k <= 10:
        return [f"C{i}" for i in range(k)]
    from matplotlib import colormaps

    return [colormaps["tab20"].colors[i % 20] for i in range(k)]


def draw_ellipses(ax, means, covs, colors, sigmas=(1, 2, 3), lw=1.2) -> None:
    """Each component's ``sigmas``-sigma ellipses (its covariance's level sets), fainter
    farther out."""
    from matplotlib.patches import Ellipse

    for mean, cov, color in zip(means, covs, colors, strict=True):
        vals, vecs = np.linalg.eigh(cov)
        vals = np.maximum(vals, 0)
        angle = np.degrees(np.arctan2(vecs[1, -1], vecs[0, -1]))
        for n_sigma in sigmas:
            width, height = 2 * n_sigma * np.sqrt(vals[::-1])
            alpha = 0.9 - 0.2 * n_sigma
            ellipse = Ellipse(mean, width, height, angle=angle, fill=False, color=color, lw=lw)
            ellipse.set_alpha(alpha)
            ax.add_patch(ellipse)


def draw_means(ax, means, colors, ms=8) -> None:
    for mean, color in zip(means, colors, strict=True):
        ax.plot(*mean, marker="X", color=color, mec="black", mew=1, ms=ms, zorder=3)


def component_legend(target, weights, colors, **where):
    """The components' legend ("k: weight w", one coloured marker each) on an axes or a
    figure: numbered here rather than beside each mean, where labels of near
    components would overlap."""
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], ls="", marker="o", ms=7, color=c, label=f"{k}: weight {w:.2f}")
        for k, (w, c) in enumerate(zip(weights, colors, strict=True))
    ]
    kw = dict(title="component", fontsize="small", title_fontsize="small", framealpha=0.85)
    return target.legend(handles=handles, **(kw | where))


def outside_right(n_entries: int) -> dict:
    """Legend placement beside an axes, on its right: never over the data."""
    return dict(loc="upper left", bbox_to_anchor=(1.01, 1), ncol=1 if n_entries <= 16 else 2)


def plot_mixture(ax, x2, labels, components, axes_text=("", "", ""), legend=True):
    """Scatter ``x2`` (n, 2) coloured by ``labels``; each component's mean and its
    1-, 2- and 3-sigma ellipses. ``components`` is ``(weights, means2, covs2)`` with
    means (k, 2) and covariances (k, 2, 2); ``axes_text`` the x label, y label and
    title."""
    weights, means2, covs2 = components
    xlabel, ylabel, title = axes_text
    colors = component_colors(len(means2))
    ax.scatter(x2[:, 0], x2[:, 1], c=[colors[i] for i in labels], s=10, alpha=0.7, lw=0)
    draw_ellipses(ax, means2, covs2, colors)
    draw_means(ax, means2, colors)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.autoscale_view()
    if legend:
        component_legend(ax, weights, colors, **outside_right(len(weights)))


# --- a sweep ------------------------------------------------------------------------------

_MARKERS = "os^vD<>pPhX*d8"


def plot_criterion(
    ax, table: dict, criterion: str, chosen: tuple[str, int] | None = None, chosen_by=None
):
    """The criterion against K, one line per covariance type (each with its own colour
    and marker: mclust's 14 families are more than a colour cycle), whole K on the
    axis; the chosen model ringed (``chosen_by``: the criterion that chose it, when
    another). The legend is beside the axes: inside, 14 entries cover the lines."""
    from matplotlib import colormaps
    from matplotlib.ticker import MaxNLocator

    types = list(dict.fromkeys(np.asarray(table["covariance_type"]).tolist()))
    ks = np.asarray(table["n_components"])
    values = np.asarray(table[criterion], np.float64)
    colors = colormaps["tab20"].colors
    # Degenerate fits (a component on too few rows, never chosen) are drawn hollow and
    # off the line: a spike's BIC can be below the chosen model's.
    degenerate = np.asarray(table.get("degenerate", np.zeros(len(ks), bool)), bool)
    for i, t in enumerate(types):
        rows = np.asarray(table["covariance_type"]) == t
        order = np.argsort(ks[rows])
        k, v, bad = ks[rows][order], values[rows][order], degenerate[rows][order]
        style = dict(marker=_MARKERS[i % len(_MARKERS)], color=colors[(2 * i) % 20 + i // 10])
        ax.plot(k, np.where(bad, np.nan, v), label=t, ms=5, lw=1.2, **style)
        if bad.any():
            ax.plot(k[bad], v[bad], ls="none", ms=5, mfc="none", **style)
    if degenerate.any():
        ax.plot(
            [], [], "o", color="grey", mfc="none", ms=5, label="hollow: degenerate\n(not chosen)"
        )
    if chosen is not None:
        by = f" by {chosen_by.upper()}" if chosen_by and chosen_by != criterion else ""
        rows = (np.asarray(table["covariance_type"]) == chosen[0]) & (ks == chosen[1])
        ax.plot(
            ks[rows],
            values[rows],
            "o",
            ms=14,
            mfc="none",
            mec="red",
            mew=2,
            label=f"chosen{by}:\n{chosen[0]}, K={chosen[1]}",
        )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("number of components K")
    ax.set_ylabel(f"{criterion.upper()} (lower is better)")
    ax.set_title(f"{criterion.upper()} against K")
    ax.grid(alpha=0.3)
    n = len(types) + (chosen is not None) + bool(degenerate.any())
    ax.legend(fontsize="small", title="covariance", title_fontsize="small", **outside_right(n))
