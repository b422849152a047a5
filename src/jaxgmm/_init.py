"""Initial parameters from a ``jax.random`` key, all jittable.

Each method builds responsibilities exactly as scikit-learn's ``BaseMixture`` does and
turns them into parameters with the M-step (``reg_covar`` included):

* ``'kmeans'`` -- k-means++ seeding then Lloyd iterations; one-hot labels;
* ``'k-means++'`` -- the k-means++ centres only; one-hot at the chosen rows;
* ``'random'`` -- uniform random responsibilities, normalised per row;
* ``'random_from_data'`` -- K distinct rows drawn at random; one-hot at those rows.

Rows are drawn with probability proportional to their sample weight, so a zero-weight
row is never a centre. As in scikit-learn, the initial weights are ``nk / n_samples``.

Every draw is independent of padding: a model of K components padded to K_max (the
model-selection sweep) draws exactly what the plain K-component model draws.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

from ._covariance import Covariance
from ._em import batch_max, centred_estimate, labelled_estimate, resp_sums
from ._params import GMMParams
from ._rows import Blocks, make_blocks, sum_rows
from ._stats import SuffStats
from ._typing import Array, Float, Int, PRNGKeyArray

__all__ = [
    "INIT_METHODS",
    "initialize",
    "kmeans",
    "kmeans_centers",
    "kmeans_plusplus",
    "params_from_centers",
    "params_from_labels",
]


def _params_from_resp(resp_fn, blocks: Blocks, cov_cls, reg_covar, active) -> GMMParams:
    """Parameters from responsibilities ``resp_fn(x_b, w_b, b)`` (already weighted),
    by the exact centred M-step; the weights are ``nk / n_samples``, as scikit-learn's
    initialization divides them."""
    return centred_estimate(resp_fn, blocks, cov_cls, reg_covar, blocks.total, active)[0]


def nearest_labels(centers: Float[Array, "k d"], c_sq: Float[Array, " k"], blocks: Blocks):
    """``assign(x_b, w_b, b)``: each row's nearest of ``centers`` (about
    ``blocks.center``; ``c_sq``: their squared norms, +inf for clusters not in use)
    and its weight."""

    def assign(xb, wb, _):
        return jnp.argmin(c_sq - 2 * (xb - blocks.center) @ centers.T, 1), wb

    return assign


def nearest(centers: Float[Array, "k d"], c_sq: Float[Array, " k"], blocks: Blocks):
    """The responsibilities ``resp_fn(x_b, w_b, b)`` of hard assignment to the nearest
    of ``centers`` (:func:`nearest_labels`), weighted."""
    assign = nearest_labels(centers, c_sq, blocks)

    def labels(xb, wb, b):
        lab, w = assign(xb, wb, b)
        return jax.nn.one_hot(lab, centers.shape[0], dtype=xb.dtype) * w[:, None]

    return labels


def _params_from_rows(
    idx: Int[Array, " k"], blocks: Blocks, cov_cls, reg_covar, active
) -> GMMParams:
    """One-hot responsibilities at rows ``idx``: component k starts at row ``idx[k]``.

    The statistics are taken about the rows themselves, so each covariance is exactly
    ``reg_covar`` times the identity (raw moments would cancel to noise here).
    """
    x_sel = blocks.rows_of(idx, centred=False)  # about themselves: exact as given
    w_sel = blocks.weights_of(idx)
    stats = SuffStats.from_block_centered(
        jnp.diag(w_sel), x_sel, x_sel, cov_cls.centered_second_moments
    )
    return GMMParams.from_stats(stats, cov_cls, reg_covar, blocks.total, x_sel, active)


def _sample_rows(
    key: PRNGKeyArray, p_of: Callable[[Array], Array], blocks: Blocks, n_draws: int
) -> Int[Array, " t"]:
    """Rows drawn with replacement with probability proportional to ``p >= 0``, given
    block by block (``p_of(b)``, never held for all rows at once); draw t depends on
    t alone, not on ``n_draws``.

    Each draw picks a block by the blocks' sums, then a row within it by that block's
    cumulative sums; only rows with ``p > 0`` are ever drawn.
    """
    n_blocks, block = blocks.x.shape[:2]
    uniform = lambda t: jax.random.uniform(jax.random.fold_in(key, t), (), blocks.x.dtype)
    draws = jax.vmap(uniform)(jnp.arange(n_draws))

    def within(p, u):
        # searches without loops (compare_all): one comparison per row
        i = jnp.searchsorted(jnp.cumsum(p), u, side="right", method="compare_all")
        # rounding between the blocks' sums and the block's own cumulative sums can
        # carry u past the block's last row of positive p: take that row instead
        last = block - 1 - jnp.argmax((p > 0)[::-1])
        return jnp.minimum(i, last).astype(jnp.int32)

    if blocks.single:  # the same draws, with the block's p made once
        p = p_of(jnp.zeros((), jnp.int32))
        return within(p, draws * jnp.sum(p))
    cum = jnp.cumsum(blocks.map(lambda _x, _w, b: jnp.sum(p_of(b))))
    u = draws * cum[-1]
    b = jnp.searchsorted(cum, u, side="right", method="compare_all")
    b = jnp.clip(b, 0, n_blocks - 1)
    u = jnp.maximum(u - jnp.where(b > 0, cum[jnp.maximum(b - 1, 0)], 0), 0)
    return b * block + jax.vmap(lambda b, u: within(p_of(b), u))(b, u)


def _sq_dist(x: Float[Array, "n d"], x_sq: Float[Array, " n"], c: Float[Array, "t d"]):
    """Squared distances (t, n) between centres ``c`` and rows ``x``."""
    return jnp.maximum(x_sq[None, :] - 2 * c @ x.T + jnp.sum(c * c, 1)[:, None], 0)


def kmeans_plusplus(
    key: PRNGKeyArray, blocks: Blocks, n_clusters: int, n_active=None
) -> Int[Array, " k"]:
    """Greedy k-means++ seeding, as scikit-learn's ``kmeans_plusplus``; returns rows
    (indices into the blocks' rows, padding included, which is never drawn).

    Each new centre is the best of ``2 + int(log(k))`` candidates drawn with
    probability proportional to ``w * D(x)^2``. With ``n_active < n_clusters`` only
    the first ``n_active`` centres are chosen (with that k's number of candidates).
    Distances are taken block by block about ``blocks.center``: no centred copy of
    the data is made, and no cancellation for data far from the origin. The one
    per-row array held is each row's distance to its closest centre so far (updated
    in place); the draws' probabilities are made block by block from it.
    """
    n_active = n_clusters if n_active is None else n_active
    max_trials = 2 + int(math.log(n_clusters))
    n_trials = 2 + jnp.floor(jnp.log(jnp.asarray(n_active, jnp.float32))).astype(jnp.int32)

    def block_dist(xb, c):
        xb = xb - blocks.center
        return _sq_dist(xb, jnp.sum(xb * xb, 1), c)

    def nearer(closest, c: Float[Array, " d"], live):
        """``closest`` lowered to the distances to ``c`` where ``live``, block by
        block, in place."""

        def update(b, closest):
            new = jnp.minimum(closest[b], block_dist(blocks.block(b)[0], c[None])[0])
            new = jnp.where(live, new, closest[b])
            return lax.dynamic_update_index_in_dim(closest, new, b, 0)

        return blocks.fold(update, closest)

    def potentials(c: Float[Array, "t d"], closest) -> Float[Array, " t"]:
        """``sum w min(closest, D(x, c_t)^2)`` of each candidate, block by block: the
        (candidates x rows) distances are never held at once."""
        block = lambda xb, wb, b: jnp.minimum(closest[b][None, :], block_dist(xb, c)) @ wb
        return sum_rows(block, blocks)

    def body(c, carry):
        idx, closest, key = carry
        key, sub = jax.random.split(key)
        first = c == 0
        # not at the first centre, where every row is infinitely far
        anywhere = ~first & (sum_rows(lambda _, wb, b: jnp.sum(wb * closest[b]), blocks) > 0)

        def p_of(b):
            wb = blocks.block(b)[1]
            # The first centre, or all rows already coincide with a centre: draw
            # among the rows by weight. Blocks past the data (rows padded to a shared
            # program's size) keep ``closest`` at +inf, and 0 * inf is NaN: a NaN sum
            # drew padding rows (zeros) as centres.
            return jnp.where(anywhere, jnp.where(wb > 0, wb * closest[b], 0), wb)

        cand = _sample_rows(sub, p_of, blocks, max_trials)
        pots = potentials(blocks.rows_of(cand), closest)
        pots = jnp.where(jnp.arange(max_trials) < jnp.where(first, 1, n_trials), pots, jnp.inf)
        best = cand[jnp.argmin(pots)]
        live = c < n_active
        closest = nearer(closest, blocks.rows_of(best[None])[0], live)
        return idx.at[c].set(jnp.where(live, best, 0)), closest, key

    # The first centre is drawn by the loop too (one trial, by weight): the draws are
    # those of a first draw written apart, with one copy of the sampling to compile.
    closest = jnp.full(blocks.x.shape[:2], jnp.inf, blocks.x.dtype)
    idx = jnp.zeros((n_clusters,), jnp.int32)
    # The loop runs to the batch's largest n_active, not to each fit's: n_active
    # differs between the fits of a batch, and a loop whose trip count is batched
    # (vmap) selects between old and new carries, which holds a second copy of
    # ``closest``. A model of K padded to more components runs K steps, not all.
    n_steps = batch_max(n_active)
    return lax.fori_loop(0, n_steps, body, (idx, closest, key))[0]


def kmeans(
    centers: Float[Array, "k d"],
    blocks: Blocks,
    *,
    max_iter: int = 300,
    tol: float = 1e-4,
    active=None,
) -> Float[Array, "k d"]:
    """Lloyd iterations from ``centers``, as scikit-learn's ``KMeans`` (weighted).

    Stops when the total squared centre shift is at most ``tol`` times the mean
    per-feature variance of the data, or after ``max_iter`` iterations. A cluster that
    loses all its rows keeps its centre; clusters whose ``active`` is False take none.
    Centres are about ``blocks.center``, as :meth:`Blocks.rows` gives the rows.
    """
    dtype = centers.dtype
    far = _inactive_penalty(centers.shape[0], active, dtype)
    # the rows' mean and variance about blocks.center, as the rows are centred below
    mean = sum_rows(lambda xb, wb, _: wb @ (xb - blocks.center), blocks) / blocks.total
    spread = sum_rows(lambda xb, wb, _: wb @ (xb - blocks.center - mean) ** 2, blocks)
    tol_scaled = tol * jnp.mean(spread / blocks.total)

    def sums(c):
        return resp_sums(nearest(c, jnp.sum(c * c, 1) + far, blocks), blocks)

    def cond(s):
        i, _, shift = s
        return (i < max_iter) & (shift > tol_scaled)

    def body(s):
        i, c, _ = s
        counts, total_x = sums(c)
        new = jnp.where(counts[:, None] > 0, total_x / jnp.maximum(counts, 1e-30)[:, None], c)
        return i + 1, new, jnp.sum((new - c) ** 2)

    inf = jnp.asarray(jnp.inf, dtype)
    return lax.while_loop(cond, body, (jnp.zeros((), jnp.int32), centers, inf))[1]


def _inactive_penalty(k, active, dtype):
    """+inf for clusters not in use, so that no row is assigned to them."""
    return jnp.zeros((k,), dtype) if active is None else jnp.where(active, 0, jnp.inf).astype(dtype)


def kmeans_centers(key, blocks: Blocks, k: int, active) -> Float[Array, "k d"]:
    """The ``'kmeans'`` initialization's centres: k-means++ seeding, then Lloyd."""
    seeds = blocks.rows_of(kmeans_plusplus(key, blocks, k, jnp.sum(active)))
    centers = kmeans(seeds, blocks, active=active)
    return centers + blocks.center


def params_from_centers(centers, blocks: Blocks, cov_cls, reg_covar, active) -> GMMParams:
    """Parameters from one-hot responsibilities at each row's nearest centre."""
    k = centers.shape[0]
    centers = centers - blocks.center  # distances about the data's centre: less cancellation
    c_sq = jnp.sum(centers * centers, 1) + _inactive_penalty(k, active, centers.dtype)
    assign = nearest_labels(centers, c_sq, blocks)
    return labelled_estimate(assign, blocks, cov_cls, reg_covar, k, blocks.total, active)


def params_from_labels(
    rows: Int[Array, " t"], labels: Int[Array, " t"], blocks: Blocks, cov_cls, reg_covar, active
) -> GMMParams:
    """Parameters from a partition of some rows (indices into the blocks' rows):
    row ``rows[i]`` in component ``labels[i]``; the M-step of those rows alone (the
    weights are each component's share of them), as mclust starts EM from a
    partition of a sample. Rows labelled -1 (padding) weigh nothing."""
    x = blocks.rows_of(rows, centred=False)
    w = jnp.where(labels >= 0, blocks.weights_of(rows), 0)
    part = make_blocks(x, w, x.shape[0], center=blocks.center)
    assign = lambda _x, wb, _b: (labels, wb)
    return labelled_estimate(assign, part, cov_cls, reg_covar, active.shape[0], part.total, active)


def _init_kmeans(key, blocks, k, cov_cls, reg_covar, active):
    centers = kmeans_centers(key, blocks, k, active)
    return params_from_centers(centers, blocks, cov_cls, reg_covar, active)


def _init_kmeans_plusplus(key, blocks, k, cov_cls, reg_covar, active):
    idx = kmeans_plusplus(key, blocks, k, jnp.sum(active))
    return _params_from_rows(idx, blocks, cov_cls, reg_covar, active)


def _init_random(key, blocks, k, cov_cls, reg_covar, active):
    def resp(xb, wb, b):
        block_key = jax.random.fold_in(key, b)
        column = lambda j: jax.random.uniform(
            jax.random.fold_in(block_key, j), (xb.shape[0],), xb.dtype
        )
        r = jax.vmap(column, out_axes=1)(jnp.arange(k)) * active
        return r / jnp.sum(r, 1, keepdims=True) * wb[:, None]

    return _params_from_resp(resp, blocks, cov_cls, reg_covar, active)


def _init_random_from_data(key, blocks, k, cov_cls, reg_covar, active):
    w = blocks.weights_of(jnp.arange(blocks.x.shape[0] * blocks.block_rows))
    # Gumbel top-k: the first j rows drawn for k_max are the rows drawn for j.
    idx = jax.random.choice(key, w.shape[0], (k,), replace=False, p=w / blocks.total)
    return _params_from_rows(idx, blocks, cov_cls, reg_covar, active)


INIT_METHODS: dict[str, Callable[..., GMMParams]] = {
    "kmeans": _init_kmeans,
    "k-means++": _init_kmeans_plusplus,
    "random": _init_random,
    "random_from_data": _init_random_from_data,
}


def initialize(
    key: PRNGKeyArray,
    blocks: Blocks,
    n_components: int,
    covariance_class: type[Covariance],
    method: str,
    reg_covar: Float[Array, ""],
    active=None,
) -> GMMParams:
    """Initial parameters by ``method`` (one of :data:`INIT_METHODS`).

    ``active`` (bool, per component) marks the components in use; by default all.
    """
    if active is None:
        active = jnp.ones((n_components,), bool)
    try:
        init = INIT_METHODS[method]
    except KeyError:
        raise ValueError(
            f"init_params must be one of {sorted(INIT_METHODS)}, got {method!r}"
        ) from None
    return init(key, blocks, n_components, covariance_class, reg_covar, active)
