"""Plots of a fitted mixture (needs matplotlib): the data coloured by component with
1-, 2- and 3-sigma ellipses in two dimensions, and a sweep's criterion against K."""

from __future__ import annotations

import numpy as np

__all__ = ["MATPLOTLIB_HINT", "full_covariances", "plot_criterion", "plot_mixture", "pyplot"]

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


def full_covariances(covariance_type: str, covariances, n_components: int, n_features: int):
    """Any covariance type's ``covariances_`` as (n_components, d, d) matrices."""
    from .covariance import covariance_class

    c = np.asarray(covariances, np.float64)
    return covariance_class(covariance_type).dense(c, n_components, n_features)


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


def plot_criterion(ax, table: dict, criterion: str, chosen: tuple[str, int] | None = None):
    """The criterion against K, one line per covariance type; the chosen model ringed."""
    types = list(dict.fromkeys(np.asarray(table["covariance_type"]).tolist()))
    ks = np.asarray(table["n_components"])
    values = np.asarray(table[criterion], np.float64)
    for t in types:
        rows = np.asarray(table["covariance_type"]) == t
        order = np.argsort(ks[rows])
        ax.plot(ks[rows][order], values[rows][order], marker="o", label=t)
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
    ax.legend()
    ax.set_title(f"{criterion.upper()} against K")
