"""mclust's covariance families: each covariance as volume x shape x orientation,
``Sigma_k = lambda_k D_k A_k D_k^T`` (``det A_k = 1``), with each part Equal across
components, Variable, or the Identity (Banfield & Raftery 1993; Celeux & Govaert,
"Gaussian parsimonious clustering models", Pattern Recognition 28, 1995; the mclust
manual, Scrucca et al. 2016 and 2023). scikit-learn's four types are four of them:
VVV (full), EEE (tied), VVI (diag) and VII (spherical).

Each family is a class of the structure that holds its covariances (spherical, diag
or full: the E-step and everything after the M-step are that structure's), whose
M-step (:meth:`~jaxgmm._covariance.Covariance.estimate`) constrains scikit-learn's
per-component estimates ``S_k = W_k / n_k + reg_covar I`` (``W_k``: the weighted
scatter about the component's mean) to the family, maximising the expected
log-likelihood ``-sum_k n_k (log det Sigma_k + tr(S_k Sigma_k^-1)) / 2`` over it.
Adding ``reg_covar`` to ``S_k`` (that is, ``n_k reg_covar I`` to each scatter) before
constraining keeps scikit-learn's regularisation exactly for the four it has.

The closed forms are Celeux & Govaert's (section 3 and their table 1). Families with a
common part the closed forms cannot give alternate between the parts in a bounded
loop inside the compiled M-step, until the expected log-likelihood stops changing
(VEI, VEE, VEV: volumes and the common shape or matrix, as mclust does); EVE and VVE
update their common orientation by the majorisation-minimisation steps of Browne &
McNicholas ("Estimating common principal components in high dimensions", ADAC 8,
2014), as mclust's ``msvve``/``mseve`` do, from the principal axes of the pooled
scatter.
"""

from __future__ import annotations

from typing import ClassVar

import jax.numpy as jnp
from jax import lax

from ._covariance import (
    Covariance,
    DiagCovariance,
    FullCovariance,
    SphericalCovariance,
    SwitchedCovariance,
    TiedCovariance,
)
from ._pytree import pytree_dataclass

__all__ = ["FAMILIES", "SwitchedFamilies"]

#: The inner loops of the iterative M-steps stop when their parameters change by less
#: than this (relative), or after this many steps.
_INNER_TOL, _INNER_MAX = 1e-11, 500
#: Orientation steps per M-step after the first: each lowers the objective from the
#: last iteration's axes (a generalised EM step), and the next EM iteration goes on
#: from there; converging every M-step (hundreds of slow majorisation steps) made a
#: fit of wine with VVE 3x slower.
_ORIENTATION_STEPS = 20


def _shares(nk, active):
    """Each component's share of the rows (0 for padding), for the common parts."""
    w = jnp.where(active, nk, 0)
    return w / jnp.sum(w)


def _geomean(v):
    """``det(diag(v))^(1/d)`` along the last axis."""
    return jnp.exp(jnp.mean(jnp.log(v), -1))


def _det_root(m):
    """``det(m)^(1/d)`` of positive definite matrices (via Cholesky)."""
    chol = jnp.linalg.cholesky(m)
    return jnp.exp(2 * jnp.mean(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), -1))


def _trace(a):
    return jnp.trace(a, axis1=-2, axis2=-1)


def _alternate(step, state, most=_INNER_MAX):
    """``state = step(state)`` until the state changes by less than
    :data:`_INNER_TOL` relative to its size, at most ``most`` times. Each
    step lowers the M-step's objective (each is an exact minimisation over one part,
    or a majorisation step), so the loop converges; it stops on the parameters, not on
    the objective, whose change is the square of theirs near the optimum."""

    def cond(s):
        i, state, change = s
        return (i < most) & (change > _INNER_TOL * jnp.max(jnp.abs(state)))

    def body(s):
        i, state, _ = s
        new = step(state)
        return i + 1, new, jnp.max(jnp.abs(new - state))

    inf = jnp.asarray(jnp.inf, state.dtype)
    return lax.while_loop(cond, body, (0, state, inf))[1]


# --- diagonal families: the rows' axes (I), shapes on the diagonal ------------------


@pytree_dataclass
class EII(SphericalCovariance):
    """Equal volume, spherical: ``lambda I``."""

    name: ClassVar[str] = "EII"
    family: ClassVar[str] = "EII"

    @staticmethod
    def estimate(sum_r, nk, means, sum_rxx, reg_covar, active, previous=None):
        s = SphericalCovariance.estimate(sum_r, nk, means, sum_rxx, reg_covar, active)
        lam = jnp.sum(_shares(nk, active) * s)
        return jnp.where(active, lam, 1)

    @staticmethod
    def n_parameters(n_components, n_features):
        return 1


@pytree_dataclass
class EEI(DiagCovariance):
    """Equal volume and shape, on the axes: one diagonal ``lambda A``."""

    name: ClassVar[str] = "EEI"
    family: ClassVar[str] = "EEI"

    @staticmethod
    def estimate(sum_r, nk, means, sum_rxx, reg_covar, active, previous=None):
        s = DiagCovariance.estimate(sum_r, nk, means, sum_rxx, reg_covar, active)
        common = jnp.sum(_shares(nk, active)[:, None] * s, 0)
        return jnp.where(active[:, None], common, 1)

    @staticmethod
    def n_parameters(n_components, n_features):
        return n_features


@pytree_dataclass
class VEI(DiagCovariance):
    """Variable volume, equal shape, on the axes: ``lambda_k A``."""

    name: ClassVar[str] = "VEI"
    family: ClassVar[str] = "VEI"

    @staticmethod
    def estimate(sum_r, nk, means, sum_rxx, reg_covar, active, previous=None):
        s = DiagCovariance.estimate(sum_r, nk, means, sum_rxx, reg_covar, active)
        share = _shares(nk, active)

        def shape_given(lam):  # the common shape given the volumes
            a = jnp.sum((share / lam)[:, None] * s, 0)
            return a / _geomean(a)

        step = lambda lam: jnp.mean(s / shape_given(lam), -1)  # the volumes given it
        sigma = lambda lam: lam[:, None] * shape_given(lam)
        lam = _alternate(step, jnp.mean(s, -1))
        return jnp.where(active[:, None], sigma(lam), 1)

    @staticmethod
    def n_parameters(n_components, n_features):
        return n_components + n_features - 1


@pytree_dataclass
class EVI(DiagCovariance):
    """Equal volume, variable shape, on the axes: ``lambda A_k``."""

    name: ClassVar[str] = "EVI"
    family: ClassVar[str] = "EVI"

    @staticmethod
    def estimate(sum_r, nk, means, sum_rxx, reg_covar, active, previous=None):
        s = DiagCovariance.estimate(sum_r, nk, means, sum_rxx, reg_covar, active)
        volume = _geomean(s)
        lam = jnp.sum(_shares(nk, active) * volume)
        return jnp.where(active[:, None], lam * s / volume[:, None], 1)

    @staticmethod
    def n_parameters(n_components, n_features):
        return 1 + n_components * (n_features - 1)


# --- families with matrices --------------------------------------------------------


def _full(sum_r, nk, means, sum_rxx, reg_covar, active):
    """scikit-learn's full estimates ``S_k`` (identity for padding)."""
    return FullCovariance.estimate(sum_r, nk, means, sum_rxx, reg_covar, active)


def _symmetric(m):
    return (m + jnp.swapaxes(m, -1, -2)) / 2


def _masked(sigma, active):
    eye = jnp.eye(sigma.shape[-1], dtype=sigma.dtype)
    return jnp.where(active[:, None, None], _symmetric(sigma), eye)


def _rotate(axes, values):
    """``axes diag(values) axes^T`` (batched over the leading axes)."""
    return jnp.einsum("...ij,...j,...kj->...ik", axes, values, axes)


@pytree_dataclass
class VEE(FullCovariance):
    """Variable volume, equal shape and orientation: ``lambda_k C`` (``det C = 1``)."""

    name: ClassVar[str] = "VEE"
    family: ClassVar[str] = "VEE"

    @staticmethod
    def estimate(sum_r, nk, means, sum_rxx, reg_covar, active, previous=None):
        s = _full(sum_r, nk, means, sum_rxx, reg_covar, active)
        share = _shares(nk, active)
        d = s.shape[-1]

        def common(lam):
            c = jnp.sum((share / lam)[:, None, None] * s, 0)
            return c / _det_root(c)

        def step(lam):
            return _trace(jnp.linalg.solve(common(lam), s)) / d

        sigma = lambda lam: lam[:, None, None] * common(lam)
        lam = _alternate(step, _trace(s) / d)
        return _masked(sigma(lam), active)

    @staticmethod
    def n_parameters(n_components, n_features):
        return n_components + (n_features - 1) + n_features * (n_features - 1) // 2


@pytree_dataclass
class EEV(FullCovariance):
    """Equal volume and shape, variable orientation: ``lambda D_k A D_k^T``."""

    name: ClassVar[str] = "EEV"
    family: ClassVar[str] = "EEV"

    @staticmethod
    def estimate(sum_r, nk, means, sum_rxx, reg_covar, active, previous=None):
        s = _full(sum_r, nk, means, sum_rxx, reg_covar, active)
        values, axes = jnp.linalg.eigh(s)  # ascending in every component
        common = jnp.sum(_shares(nk, active)[:, None] * values, 0)
        return _masked(_rotate(axes, jnp.broadcast_to(common, values.shape)), active)

    @staticmethod
    def n_parameters(n_components, n_features):
        return 1 + (n_features - 1) + n_components * n_features * (n_features - 1) // 2


@pytree_dataclass
class VEV(FullCovariance):
    """Variable volume, equal shape, variable orientation: ``lambda_k D_k A D_k^T``."""

    name: ClassVar[str] = "VEV"
    family: ClassVar[str] = "VEV"

    @staticmethod
    def estimate(sum_r, nk, means, sum_rxx, reg_covar, active, previous=None):
        s = _full(sum_r, nk, means, sum_rxx, reg_covar, active)
        values, axes = jnp.linalg.eigh(s)
        share = _shares(nk, active)

        def shape(lam):
            a = jnp.sum((share / lam)[:, None] * values, 0)
            return a / _geomean(a)

        step = lambda lam: jnp.mean(values / shape(lam), -1)
        sigma_values = lambda lam: lam[:, None] * shape(lam)
        lam = _alternate(step, jnp.mean(values, -1))
        return _masked(_rotate(axes, sigma_values(lam)), active)

    @staticmethod
    def n_parameters(n_components, n_features):
        return n_components + (n_features - 1) + n_components * n_features * (n_features - 1) // 2


@pytree_dataclass
class EVV(FullCovariance):
    """Equal volume, variable shape and orientation: ``lambda C_k`` (``det C_k = 1``)."""

    name: ClassVar[str] = "EVV"
    family: ClassVar[str] = "EVV"

    @staticmethod
    def estimate(sum_r, nk, means, sum_rxx, reg_covar, active, previous=None):
        s = _full(sum_r, nk, means, sum_rxx, reg_covar, active)
        volume = _det_root(s)
        lam = jnp.sum(_shares(nk, active) * volume)
        return _masked(lam * s / volume[:, None, None], active)

    @staticmethod
    def n_parameters(n_components, n_features):
        return 1 - n_components + n_components * n_features * (n_features + 1) // 2


def _common_orientation(s, share, values_given, previous):
    """The common orientation ``D`` and each component's variances along it,
    ``values_given(D) -> (K, d)``, that minimise ``sum_k share_k (log det Sigma_k +
    tr(S_k Sigma_k^-1))`` with ``Sigma_k = D diag(v_k) D^T``: alternating the
    variances given ``D`` and Browne & McNicholas's two majorisation steps for ``D``
    given the variances. It starts from the axes of the ``previous`` covariances (the
    last M-step's, which share them), so that every step of it, and so every EM
    iteration, improves on the last, as mclust keeps its orientation from one
    iteration to the next; at the first M-step, from the principal axes of the pooled
    ``S``."""
    d = s.shape[-1]
    eye = jnp.eye(d, dtype=s.dtype)
    pooled = jnp.sum(share[:, None, None] * (s if previous is None else previous), 0)
    # One batched eigendecomposition for both: each S_k's largest eigenvalue, and the
    # start's axes. Two independent ones could run at once, and jaxlib 0.10's CPU
    # kernels then deadlock (see ARCHITECTURE.md, "LAPACK calls in one program").
    values, vectors = jnp.linalg.eigh(jnp.concatenate([s, pooled[None]]))
    top, start = values[:-1, -1], vectors[-1]

    def polar(g):  # the orthogonal matrix nearest g: U V^T of its SVD
        u, _, vt = jnp.linalg.svd(g)
        return u @ vt

    def step(axes):
        m = 1 / values_given(axes)  # (K, d): the precisions along the axes
        # MM 1: S_k - top_k I is negative semi-definite
        g = jnp.einsum("k,kij,jl,kl->il", share, s - top[:, None, None] * eye, axes, m)
        axes = polar(g)
        # MM 2: diag(m_k) - max(m_k) I is negative semi-definite
        m = 1 / values_given(axes)
        shifted = m - jnp.max(m, -1, keepdims=True)
        return polar(jnp.einsum("k,kij,jl,kl->il", share, s, axes, shifted))

    axes = _alternate(step, start, _INNER_MAX if previous is None else _ORIENTATION_STEPS)
    return axes, values_given(axes)


def _along(axes, s):
    """Each ``S_k``'s variances along ``axes``: ``diag(D^T S_k D)``."""
    return jnp.einsum("ji,kjl,li->ki", axes, s, axes)


@pytree_dataclass
class EVE(FullCovariance):
    """Equal volume and orientation, variable shape: ``lambda D A_k D^T``."""

    name: ClassVar[str] = "EVE"
    family: ClassVar[str] = "EVE"

    @staticmethod
    def estimate(sum_r, nk, means, sum_rxx, reg_covar, active, previous=None):
        s = _full(sum_r, nk, means, sum_rxx, reg_covar, active)
        share = _shares(nk, active)

        def values_given(axes):
            v = _along(axes, s)
            volume = _geomean(v)
            return jnp.sum(share * volume) * v / volume[:, None]

        axes, values = _common_orientation(s, share, values_given, previous)
        return _masked(_rotate(axes, values), active)

    @staticmethod
    def n_parameters(n_components, n_features):
        return 1 + n_components * (n_features - 1) + n_features * (n_features - 1) // 2


@pytree_dataclass
class VVE(FullCovariance):
    """Variable volume and shape, equal orientation: ``lambda_k D A_k D^T``."""

    name: ClassVar[str] = "VVE"
    family: ClassVar[str] = "VVE"

    @staticmethod
    def estimate(sum_r, nk, means, sum_rxx, reg_covar, active, previous=None):
        s = _full(sum_r, nk, means, sum_rxx, reg_covar, active)
        share = _shares(nk, active)
        axes, values = _common_orientation(s, share, lambda axes: _along(axes, s), previous)
        return _masked(_rotate(axes, values), active)

    @staticmethod
    def n_parameters(n_components, n_features):
        return n_components * n_features + n_features * (n_features - 1) // 2


#: mclust's 14 families, in mclust's order, by name.
FAMILIES: dict[str, type[Covariance]] = {
    c.family: c
    for c in (
        EII, SphericalCovariance, EEI, VEI, EVI, DiagCovariance, TiedCovariance,
        VEE, EVE, VVE, EEV, VEV, EVV, FullCovariance,
    )
}  # fmt: skip


@pytree_dataclass
class SwitchedFamilies(SwitchedCovariance):
    """Any of the 14 families in one small-data program (a sweep over them compiles
    one program, not 14): :class:`~jaxgmm._covariance.SwitchedCovariance` whose
    M-step branches to the chosen family's (``lax.switch``: only that one runs)."""

    name: ClassVar[str] = "all families"
    choices: ClassVar[tuple[type[Covariance], ...]] = tuple(FAMILIES.values())
