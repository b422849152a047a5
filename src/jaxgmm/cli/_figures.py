"""``jaxgmm plot``'s kinds, one function each, after mclust's plots of a fitted
mixture: the sweep's criterion against K (``bic``), the data by component with sigma
ellipses (``classification``), each row's uncertainty (``uncertainty``), the fitted
density over the data (``density``) and a scatter matrix (``pairs``). Each returns a
matplotlib figure; the numbers come from :mod:`._views`."""

from __future__ import annotations

import dataclasses

import numpy as np

from ._datafiles import DataError
from ._plots import (
    component_colors,
    component_legend,
    draw_ellipses,
    draw_means,
    outside_right,
    plot_criterion,
    plot_mixture,
    pyplot,
)
from ._views import Fitted, View, column_plane, line, line_density, plane, plane_log_density

__all__ = ["KINDS", "Request", "classification", "draw", "sweep_figure"]

#: The kinds, in the order the help lists them.
KINDS = ("classification", "uncertainty", "density", "pairs", "bic")

#: A panel's size in inches: matplotlib's default figure.
PANEL = (6.4, 4.8)


@dataclasses.dataclass(frozen=True)
class Request:
    """What to draw besides the data: the axes (``view``), the pairs plot's columns (as
    indices), the title, pixels per inch, and a sweep's (table, criterion, chosen
    (covariance type, K)) for a criterion panel beside the classification."""

    view: View = dataclasses.field(default_factory=View)
    columns: list[int] | None = None
    title: str = ""
    dpi: int = 100
    sweep: tuple | None = None


def draw(kind: str, a: Fitted, request: Request):
    """The figure of one kind but ``bic`` (:func:`sweep_figure`, which needs no data)."""
    return {
        "classification": classification,
        "uncertainty": uncertainty,
        "density": density,
        "pairs": pairs,
    }[kind](a, request)


def _figure(request: Request, n_panels: int = 1):
    """A figure of ``n_panels`` side by side, laid out so that legends and colour bars
    beside an axes fit in (matplotlib's constrained layout)."""
    size = (PANEL[0] * n_panels, PANEL[1])
    return pyplot().subplots(1, n_panels, figsize=size, dpi=request.dpi, layout="constrained")


def sweep_figure(table: dict, criterion: str, chosen: tuple, request: Request, chosen_by=None):
    """The criterion against K, one line per covariance family; ``chosen`` (covariance
    type, K) ringed, chosen by ``chosen_by`` (the criterion plotted by default)."""
    fig, ax = _figure(request)
    plot_criterion(ax, table, criterion, chosen, chosen_by)
    if request.title:
        ax.set_title(f"{request.title}: {criterion.upper()} against K")
    return fig


def classification(a: Fitted, request: Request):
    """The rows by their most probable component with each component's 1-, 2- and
    3-sigma ellipses (a strip by component for one column), and a sweep's criterion
    panel beside it when the request has one (``jaxgmm demo``'s picture, and ``jaxgmm
    plot``'s without ``--kind``)."""
    fig, axes = _figure(request, 2 if request.sweep else 1)
    ax = axes[0] if request.sweep else axes
    if a.x.shape[1] == 1:
        _strips(ax, a, request.view)
        ax.set_title(request.title)
    else:
        p = plane(a, request.view)
        plot_mixture(
            ax,
            p.points,
            a.labels,
            (a.weights, p.means, p.covs),
            (p.xlabel, p.ylabel, request.title),
        )
    if request.sweep:
        plot_criterion(axes[1], *request.sweep)
    return fig


def _strips(ax, a: Fitted, view: View) -> None:
    """One column: each component's rows as a strip of jittered points on its own row,
    over its mean and 1-, 2- and 3-sigma intervals (shaded, fainter farther out); the
    rows named by component and weight, so no label sits on the data."""
    ln = line(a, view)
    k = len(a.weights)
    colors = component_colors(k)
    jitter = np.random.default_rng(0).uniform(-0.25, 0.25, len(ln.points))
    sd = np.sqrt(ln.variances)
    for j, (m, s, c) in enumerate(zip(ln.means, sd, colors, strict=True)):
        for n_sigma in (3, 2, 1):
            ax.fill_betweenx(
                [j - 0.35, j + 0.35], m - n_sigma * s, m + n_sigma * s, color=c, alpha=0.1, lw=0
            )
        ax.plot(m, j, marker="X", color=c, mec="black", ms=8, zorder=3)
    ax.scatter(ln.points, a.labels + jitter, c=[colors[i] for i in a.labels], s=10, alpha=0.7, lw=0)
    ax.set_yticks(range(k), [f"{j}: weight {w:.2f}" for j, w in enumerate(a.weights)])
    ax.set_ylim(k - 0.5, -0.5)  # component 0 on top, as a legend would list it
    ax.set_ylabel("component")
    ax.set_xlabel(ln.label)


def uncertainty(a: Fitted, request: Request):
    """mclust's uncertainty plot: each row sized and shaded by 1 - its largest posterior
    probability, over the components' ellipses (against one column for one column)."""
    fig, ax = _figure(request)
    colors = component_colors(len(a.weights))
    if a.x.shape[1] == 1:
        _uncertainty_on_line(ax, a, request.view, colors)
    else:
        _uncertainty_on_plane(fig, ax, a, request.view, colors)
    component_legend(ax, a.weights, colors, **outside_right(len(a.weights)))
    ax.set_title(request.title)
    return fig


def _most_uncertain(a: Fitted) -> float:
    """The largest uncertainty a row can have: 1 - 1/K (all components alike)."""
    return max(1.0 - 1.0 / len(a.weights), 1e-12)


def _uncertainty_on_line(ax, a: Fitted, view: View, colors) -> None:
    ln = line(a, view)
    ax.scatter(ln.points, a.uncertainty, c=[colors[i] for i in a.labels], s=12, alpha=0.8, lw=0)
    top = _most_uncertain(a)
    ax.set_ylim(-0.03 * top, 1.05 * top)
    ax.set(xlabel=ln.label, ylabel="uncertainty: 1 - max P(component)")


def _uncertainty_on_plane(fig, ax, a: Fitted, view: View, colors) -> None:
    from matplotlib.colors import LinearSegmentedColormap

    p = plane(a, view)
    u, top = a.uncertainty, _most_uncertain(a)
    order = np.argsort(u)  # the most uncertain drawn last, on top
    # light grey (certain) to black: white points would vanish on the white axes
    shades = LinearSegmentedColormap.from_list("uncertainty", ["0.72", "black"])
    size = 6 + 90 * u[order] / top
    shown = ax.scatter(*p.points[order].T, c=u[order], s=size, cmap=shades, vmin=0, vmax=top, lw=0)
    draw_ellipses(ax, p.means, p.covs, colors, sigmas=(1, 2))
    draw_means(ax, p.means, colors)
    ax.set(xlabel=p.xlabel, ylabel=p.ylabel)
    bar = fig.colorbar(shown, ax=ax, location="bottom", shrink=0.6, aspect=40)
    bar.set_label("uncertainty: 1 - max P(component)")


def density(a: Fitted, request: Request):
    """The fitted density: for one column (or ``--x`` alone) a histogram of the data
    with the mixture's marginal density and each weighted component, in the data's
    units; on a plane, the density's contours over the data."""
    fig, ax = _figure(request)
    view = request.view
    if a.x.shape[1] == 1 or (view.x is not None and view.y is None):
        _histogram(ax, a, view)
    else:
        _contours(fig, ax, a, view)
    ax.set_title(request.title)
    return fig


def _histogram(ax, a: Fitted, view: View) -> None:
    ln = line(a, view)
    colors = component_colors(len(a.weights))
    # numpy's choice, but at least 20 bins: its few wide bins flatten a narrow component
    bins = int(np.clip(len(np.histogram_bin_edges(ln.points, "auto")) - 1, 20, 60))
    ax.hist(ln.points, bins=bins, density=True, color="0.85", ec="0.6", lw=0.5, label="data")
    lo, hi = ln.points.min(), ln.points.max()
    grid = np.linspace(lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo), 400)
    total, each = line_density(grid, ln.means, ln.variances, a.weights)
    # each weighted component shaded under the mixture's line: where the components
    # are apart, a line of each would hide under the mixture's
    for j, (curve, c) in enumerate(zip(each, colors, strict=True)):
        label = f"{j}: weight {a.weights[j]:.2f}"
        ax.fill_between(grid, curve, color=c, alpha=0.3, lw=1.2, ec=c, label=label)
    ax.plot(grid, total, color="black", lw=1.8, label="mixture")
    ax.set(xlabel=ln.label, ylabel="density")
    ax.legend(fontsize="small", **outside_right(len(a.weights) + 2))


def _contours(fig, ax, a: Fitted, view: View) -> None:
    p = plane(a, view)
    lo, hi = p.points.min(0), p.points.max(0)
    pad = 0.1 * (hi - lo)
    gx, gy = (np.linspace(lo[i] - pad[i], hi[i] + pad[i], 160) for i in (0, 1))
    mesh = np.stack(np.meshgrid(gx, gy), -1).reshape(-1, 2)
    log_p = plane_log_density(mesh, p.means, p.covs, a.weights).reshape(len(gy), len(gx))
    # levels in log density from the sparsest data to the peak: linear levels would
    # all crowd round the highest component
    floor = np.quantile(plane_log_density(p.points, p.means, p.covs, a.weights), 0.02)
    levels = np.linspace(floor, log_p.max(), 12)[:-1]
    ax.scatter(p.points[:, 0], p.points[:, 1], s=6, color="0.45", alpha=0.6, lw=0)
    shown = ax.contour(gx, gy, log_p, levels=levels, cmap="viridis", linewidths=1.1)
    fig.colorbar(shown, ax=ax, label="log density", format="%.1f")
    ax.set(xlabel=p.xlabel, ylabel=p.ylabel)


def pairs(a: Fitted, request: Request):
    """A scatter matrix of the chosen columns (data's units): rows by component with
    1- and 2-sigma ellipses off the diagonal, each column's histogram by component on
    it."""
    cols = request.columns if request.columns is not None else list(range(a.x.shape[1]))
    if len(cols) < 2:
        raise DataError("the model has one column: a pairs plot needs two; use --kind density")
    n = len(cols)
    side = max(1.6, 9.0 / n)  # inches a panel: about 9 in all, 1.6 at the least
    size = (side * n + 1.6, side * n)  # and the legend's width
    fig, axes = pyplot().subplots(
        n, n, figsize=size, dpi=request.dpi, layout="constrained", squeeze=False
    )
    colors = component_colors(len(a.weights))
    lo, hi = a.x.min(0), a.x.max(0)
    pad = 0.05 * (hi - lo)
    for r, i in enumerate(cols):
        for c, j in enumerate(cols):
            ax = axes[r, c]
            if r == c:
                _stacked_histogram(ax.twinx(), a.x[:, j], a.labels, colors)
            else:
                _pair_panel(ax, column_plane(a, j, i), a.labels, colors)
            # every panel of a column (row) the same range: the matrix reads across
            ax.set_xlim(lo[j] - pad[j], hi[j] + pad[j])
            ax.set_ylim(lo[i] - pad[i], hi[i] + pad[i])
            ax.tick_params(labelsize="x-small")
            ax.set_xlabel(a.names[j], fontsize="small")
            ax.set_ylabel(a.names[i], fontsize="small")
            ax.label_outer()
    component_legend(fig, a.weights, colors, loc="outside right upper")
    fig.suptitle(request.title)
    return fig


def _pair_panel(ax, p, labels, colors) -> None:
    ax.scatter(*p.points.T, c=[colors[k] for k in labels], s=5, alpha=0.7, lw=0)
    draw_ellipses(ax, p.means, p.covs, colors, sigmas=(1, 2), lw=0.9)


def _stacked_histogram(ax, values, labels, colors) -> None:
    """``values`` split by component, stacked; the counts' axis unlabelled (its scale is
    the panel's own)."""
    k = len(colors)
    ax.hist([values[labels == j] for j in range(k)], bins=20, stacked=True, color=colors)
    ax.set_yticks([])
