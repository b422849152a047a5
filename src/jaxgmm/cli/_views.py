"""What ``jaxgmm plot`` draws, as numbers (no matplotlib): the data and the fitted
mixture in the data's units and in the units the model was fitted in, their projection
on a plane (two columns or two principal components) or on a line (one column), and
the mixture's density there. The projection of a Gaussian mixture is a Gaussian
mixture: each component's mean and covariance projected, the weights unchanged."""

from __future__ import annotations

import dataclasses

import numpy as np

from ._common import Usage, column_list, full_covariances, in_data_units
from ._datafiles import DataError
from ._record import FitRecord

#: A pairs plot's most columns: beyond, the panels are too small to read.
MAX_PAIRS = 8


@dataclasses.dataclass(frozen=True)
class Fitted:
    """The data and the mixture a plot draws. ``x``, ``means`` and ``covs`` (full, K x d
    x d) are in the data's units; ``z``, ``z_means`` and ``z_covs`` in the model's own
    (standardised columns when ``scaled``); ``proba`` is each row's posterior
    probabilities."""

    names: list[str]
    weights: np.ndarray
    x: np.ndarray
    means: np.ndarray
    covs: np.ndarray
    z: np.ndarray
    z_means: np.ndarray
    z_covs: np.ndarray
    proba: np.ndarray
    scaled: bool = False

    @property
    def labels(self) -> np.ndarray:
        return self.proba.argmax(1)

    @property
    def uncertainty(self) -> np.ndarray:
        """mclust's uncertainty: 1 - the largest posterior probability of each row."""
        return 1.0 - self.proba.max(1)


def fitted(model, record: FitRecord, x: np.ndarray) -> Fitted:
    """The model and ``x`` (rows in the data's units) in both units, with ``x``'s
    posterior probabilities under the model."""
    z = record.standardization.apply(x)
    means, covs = in_data_units(model, record)
    return Fitted(
        names=record.column_names(x.shape[1]),
        weights=np.asarray(model.weights_, np.float64),
        x=x,
        means=means,
        covs=covs,
        z=z,
        z_means=np.asarray(model.means_, np.float64),
        z_covs=full_covariances(model),
        proba=np.asarray(model.predict_proba(z), np.float64),
        scaled=record.standardization.active,
    )


# --- which columns --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class View:
    """Which plane (or line) a plot shows: named columns (``x`` alone is a line for the
    density) or, with ``pca``, the first two principal components of the data as the
    model saw it."""

    x: str | None = None
    y: str | None = None
    pca: bool = False

    def check(self, names: list[str]) -> None:
        if self.pca and (self.x or self.y):
            raise Usage("--pca and --x/--y choose the axes two ways; give one of them")
        for flag in ("x", "y"):
            name = getattr(self, flag)
            if name is not None and name not in names:
                shown = ", ".join(names) or "(unnamed)"
                raise Usage(f"--{flag} {name!r}: the model's columns are {shown}")

    def pair(self, names: list[str]) -> tuple[int, int]:
        """The two columns' indices: the first two by default, ``y`` the first column
        that is not ``x``."""
        if len(names) < 2 and self.y is None:
            raise DataError("the model has one column: nothing to plot in two dimensions")
        xi = names.index(self.x) if self.x else 0
        yi = names.index(self.y) if self.y else next(j for j in range(len(names)) if j != xi)
        return xi, yi


def chosen_columns(text: str | None, names: list[str]) -> list[int]:
    """The indices of ``--columns a,b,c`` among the model's columns (all by default),
    at most :data:`MAX_PAIRS` of them."""
    wanted = column_list(text) or names
    unknown = [c for c in wanted if c not in names]
    if unknown:
        raise Usage(
            f"--columns: no column {unknown[0]!r}; the model's columns are {', '.join(names)}"
        )
    if len(wanted) < 2:
        raise Usage("a pairs plot needs two or more columns; for one, use --kind density")
    if len(wanted) > MAX_PAIRS:
        raise DataError(
            f"the model has {len(wanted)} columns and a pairs plot shows at most {MAX_PAIRS}: "
            "choose them with --columns a,b,c"
        )
    return [names.index(c) for c in wanted]


# --- projections ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Plane:
    """Points (n, 2), the components' means (K, 2) and covariances (K, 2, 2) in one
    plane, its axes' names and, for principal components, the axes as rows of
    loadings on the model's columns."""

    points: np.ndarray
    means: np.ndarray
    covs: np.ndarray
    xlabel: str
    ylabel: str
    loadings: np.ndarray | None = None


@dataclasses.dataclass(frozen=True)
class Line:
    """One column: the points (n,), the components' means (K,) and variances (K,)."""

    points: np.ndarray
    means: np.ndarray
    variances: np.ndarray
    label: str


def principal_axes(z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(centre, the first two principal axes as unit rows (2, d), the share of the
    variance each explains) of the rows ``z``. Called on the model's units: a column
    in large units would otherwise be the first axis alone."""
    center = z.mean(0)
    _, s, vt = np.linalg.svd(z - center, full_matrices=False)
    share = s**2 / max(float(np.sum(s**2)), np.finfo(float).tiny)
    # a sign convention: each axis's largest loading positive, so a plot is stable
    signs = np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(1)])
    return center, (vt * signs[:, None])[:2], share[:2]


def plane(a: Fitted, view: View) -> Plane:
    """The data and components on ``view``'s plane: named columns in the data's units,
    principal components of the model's units (standardised when it was fitted so)."""
    if not view.pca:
        return column_plane(a, *view.pair(a.names))
    if a.z.shape[1] < 2:
        raise DataError("the model has one column: no principal components to plot")
    center, axes, share = principal_axes(a.z)
    of = ", standardised columns" if a.scaled else ""
    xl, yl = (f"principal component {i + 1} ({100 * s:.0f}%{of})" for i, s in enumerate(share))
    return Plane(
        (a.z - center) @ axes.T,
        (a.z_means - center) @ axes.T,
        axes @ a.z_covs @ axes.T,
        xl,
        yl,
        axes,
    )


def column_plane(a: Fitted, i: int, j: int) -> Plane:
    """Columns ``i`` and ``j`` in the data's units."""
    idx = [i, j]
    covs = a.covs[:, idx][:, :, idx]
    return Plane(a.x[:, idx], a.means[:, idx], covs, a.names[i], a.names[j])


def line(a: Fitted, view: View) -> Line:
    """Column ``view.x`` (the first by default) in the data's units."""
    if view.pca:
        raise Usage("--pca: the model has one column, no principal components; leave it out")
    j = a.names.index(view.x) if view.x else 0
    return Line(a.x[:, j], a.means[:, j], a.covs[:, j, j], a.names[j])


# --- densities ----------------------------------------------------------------------------


def line_density(grid, means, variances, weights) -> tuple[np.ndarray, np.ndarray]:
    """(the mixture's density, each component's weighted density (K, len(grid))) at
    ``grid`` for one-dimensional components."""
    sd = np.sqrt(variances)[:, None]
    each = weights[:, None] * np.exp(-0.5 * ((grid[None, :] - means[:, None]) / sd) ** 2)
    each /= np.sqrt(2 * np.pi) * sd
    return each.sum(0), each


def plane_log_density(points, means, covs, weights) -> np.ndarray:
    """The log-density at ``points`` (m, 2) of a mixture of two-dimensional components."""
    diff = points[None, :, :] - means[:, None, :]  # (K, m, 2)
    solved = np.linalg.solve(covs[:, None], diff[..., None])[..., 0]
    maha = np.einsum("kmi,kmi->km", diff, solved)
    _, logdet = np.linalg.slogdet(covs)
    log_each = np.log(weights)[:, None] - 0.5 * (maha + logdet[:, None] + 2 * np.log(2 * np.pi))
    top = log_each.max(0)
    return top + np.log(np.exp(log_each - top).sum(0))
