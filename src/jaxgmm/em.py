"""Expectation-maximisation for a Gaussian mixture: the seed notebook's EM, for real.

The seed wrote three functions of *one* sample and lifted them over the data with
``jax.vmap``; so do we:

* :func:`_e_step` -- log-responsibilities and log-likelihood of one sample,
* :func:`_m_step` -- one sample's contribution to the sufficient statistics,
* :func:`_log_lik` -- log-likelihood of one sample.

Rows are processed in fixed-size blocks (``lax.scan``; the ragged tail is padded with
zero-weight rows), so memory is O(block x K x D + N x D) and nothing of size N x K x D
is ever formed. Within a block the vmapped E-step is one matrix product
``phi @ A`` and the sum over rows of the vmapped M-step is one product ``resp.T @ phi``
(see :mod:`jaxgmm.covariance`).

:func:`run_em` is one bounded ``lax.while_loop`` that stops when the *change* of the
mean log-likelihood falls below ``tol`` (the seed's ``while ll > tol`` compared the
likelihood itself) or after ``max_iter`` iterations. It never raises: it reports a
:class:`~jaxgmm._typing.Status` in its :class:`EMResult`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from . import _progress
from ._pytree import pytree_dataclass
from ._typing import Array, Bool, Float, Int, Status, float_dtype, x64_scope
from .covariance import Covariance
from .params import GMMParams, all_finite
from .stats import SuffStats

__all__ = [
    "Blocks",
    "EMResult",
    "Natural",
    "block_rows_for",
    "final_scores",
    "log_prob_resp",
    "make_blocks",
    "pad_rows",
    "padded_rows",
    "prepare_rows",
    "run_em",
    "score_rows",
    "score_rows_padded",
]

#: Target size of one block's feature matrix: 5 MiB gave the fastest iterations on
#: N=100k, D=16, K=16 on a 2-core EPYC (8192 rows in float32, 4096 in float64);
#: smaller blocks pay the loop's overhead, larger ones fall out of the caches.
_BLOCK_BYTES = 5 * 2**20


def block_rows_for(n_samples: int, n_phi: int, itemsize: int) -> int:
    """Rows per block: a power of two near ``_BLOCK_BYTES`` of features (of ``n_phi``
    values per row).

    Small data gets one block of the next power of two, so that data sets of similar
    size share one compiled program.
    """
    rows = 2 ** round(math.log2(max(_BLOCK_BYTES / (n_phi * itemsize), 1)))
    rows = min(max(rows, 64), 65536)
    return min(rows, 2 ** math.ceil(math.log2(max(n_samples, 16))))


def padded_rows(n_samples: int, block_rows: int) -> int:
    """Rows after padding: the block count rounded up to one of four steps per octave.

    Programs are compiled per padded size, so nearby sizes (cross-validation folds,
    say) reuse one program; the padding costs memory only, as passes stop at the
    last block that holds data.
    """
    n_blocks = -(-n_samples // block_rows)
    if n_blocks > 8:
        step = 2 ** (n_blocks.bit_length() - 3)
        n_blocks = -(-n_blocks // step) * step
    return n_blocks * block_rows


def pad_rows(x, w, n_rows: int):
    """``x`` and ``w`` with zero rows (zero weight) appended up to ``n_rows``."""
    pad = n_rows - x.shape[0]
    xp = np if isinstance(x, np.ndarray) else jnp
    x = xp.concatenate([x, xp.zeros((pad, x.shape[1]), x.dtype)])
    return x, xp.concatenate([w, xp.zeros((pad,), w.dtype)])


def prepare_rows(X, sample_weight, covariance_class, dtype, block_rows=None, n_columns=0):
    """Host-side preparation shared by every entry point: cast to ``dtype``, choose
    the block size, pad rows (zero weight) to a bucketed size so that nearby sizes
    share one compiled program.

    ``n_columns`` is the width of the per-row intermediates of one device's batch of
    fits (fits x components): the block is sized for the wider of it and the features,
    so that a batch of restarts or a sweep keeps its block in the caches too.

    Returns
    -------
    x, w : arrays of padded_rows(n_samples, block_rows) rows
    n_used : int array, the blocks that hold data
    block_rows : int
    n_samples : int
    """
    # Host arrays stay on the host until the padded copy goes to the device.
    host = lambda a: a if isinstance(a, jax.Array) else np.asarray(a)
    x = host(X).astype(dtype)
    n_samples, n_features = x.shape
    w = np.ones(n_samples, dtype) if sample_weight is None else host(sample_weight)
    w = w.astype(dtype)
    if block_rows is None:
        n_phi = 1 + n_features + covariance_class.n_second(n_features)
        width = max(n_phi, n_columns)
        block_rows = block_rows_for(n_samples, width, np.dtype(dtype).itemsize)
    x, w = pad_rows(x, w, padded_rows(n_samples, block_rows))
    n_used = jnp.asarray(-(-n_samples // block_rows), jnp.int32)
    return x, w, n_used, block_rows, n_samples


@pytree_dataclass
class Blocks:
    """The data cut into equal blocks of rows; padding rows have zero weight.

    Attributes
    ----------
    x : array of shape (n_blocks, block_rows, n_features)
    w : array of shape (n_blocks, block_rows)
    n_used : int array
        Blocks that hold data; passes over the data stop there.
    """

    x: Float[Array, "n_blocks block d"]
    w: Float[Array, "n_blocks block"]
    n_used: Int[Array, ""]

    @property
    def n_features(self) -> int:
        return self.x.shape[-1]

    def rows(self) -> tuple[Float[Array, "n d"], Float[Array, " n"]]:
        """All rows, padding included, as one (n_blocks * block, d) array."""
        return self.x.reshape(-1, self.n_features), self.w.reshape(-1)


def make_blocks(
    x: Float[Array, "n d"], w: Float[Array, " n"], block_rows: int, n_used=None
) -> Blocks:
    """Cut rows into blocks (padding the tail); ``n_used`` defaults to all blocks."""
    n, d = x.shape
    n_blocks = -(-n // block_rows)
    if n_blocks * block_rows != n:
        x, w = pad_rows(x, w, n_blocks * block_rows)
    n_used = n_blocks if n_used is None else n_used
    return Blocks(
        x.reshape(n_blocks, block_rows, d),
        w.reshape(n_blocks, block_rows),
        jnp.asarray(n_used, jnp.int32),
    )


def scan_blocks(fn: Callable[..., Any], blocks: Blocks) -> Any:
    """``sum_b fn(x_b, w_b, b)`` over the blocks that hold data."""
    index = jnp.zeros((), jnp.int32)
    shapes = jax.eval_shape(fn, blocks.x[0], blocks.w[0], index)
    zeros = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

    def body(b, carry):
        x = lax.dynamic_index_in_dim(blocks.x, b, keepdims=False)
        w = lax.dynamic_index_in_dim(blocks.w, b, keepdims=False)
        return jax.tree_util.tree_map(jnp.add, carry, fn(x, w, b))

    return lax.fori_loop(0, blocks.n_used, body, zeros)


@pytree_dataclass(meta_fields=("covariance_class",))
class Natural:
    """Parameters prepared for the E-step: ``phi(x) @ A = log w_k + log N(x | k)``."""

    A: Float[Array, "n_phi k"]
    covariance_class: type[Covariance]

    @classmethod
    def of(cls, params: GMMParams) -> Natural:
        return cls(params.natural(), type(params.covariance))


# --- the seed's three per-sample functions ---------------------------------------


def _log_joint(x: Float[Array, " d"], model: Natural, phi=None) -> Float[Array, " k"]:
    """``log w_k + log N(x | mu_k, Sigma_k)`` for one sample (``phi``: its features,
    when the caller has them already)."""
    phi = model.covariance_class.features(x) if phi is None else phi
    return phi @ model.A


def _e_step(
    x: Float[Array, " d"], model: Natural, phi=None
) -> tuple[Float[Array, " k"], Float[Array, " k"], Float[Array, ""]]:
    """Responsibilities, log-responsibilities and log-likelihood of one sample.

    One ``exp`` serves both forms; callers take what they need and XLA drops the rest.
    """
    log_joint = _log_joint(x, model, phi)
    top = jnp.max(log_joint)
    top = jnp.where(jnp.isfinite(top), top, 0)
    e = jnp.exp(log_joint - top)
    total = jnp.sum(e)
    # one division per sample, not per component
    return e * (1 / total), log_joint - top - jnp.log(total), top + jnp.log(total)


def _m_step(x: Float[Array, " d"], resp: Float[Array, " k"], model: Natural) -> SuffStats:
    """One sample's contribution to the sufficient statistics: ``outer(r, phi(x))``."""
    phi = model.covariance_class.features(x)
    return SuffStats.from_matrix(jnp.outer(resp, phi), x.shape[-1])


def _log_lik(x: Float[Array, " d"], model: Natural) -> Float[Array, ""]:
    """Log-likelihood of one sample under the mixture."""
    return jax.nn.logsumexp(_log_joint(x, model))


# --- blocks ----------------------------------------------------------------------


def e_step_resp(model: Natural):
    """The E-step of a block as ``(weighted responsibilities, summed log-likelihood)``."""

    def resp_fn(x: Float[Array, "b d"], w: Float[Array, " b"], _=None, phi=None):
        in_axes = (0, None, None if phi is None else 0)
        resp, _, log_norm = jax.vmap(_e_step, in_axes=in_axes)(x, model, phi)
        return resp * w[:, None], jnp.sum(w * log_norm)

    return resp_fn


def block_e_step(
    x: Float[Array, "b d"], w: Float[Array, " b"], model: Natural
) -> tuple[SuffStats, Float[Array, ""]]:
    """Statistics and weighted log-likelihood sum of a block.

    ``SuffStats.from_block`` is the sum over rows of ``vmap(_m_step)``, written as one
    matrix product (summing outer products over rows *is* a product).
    """
    phi = jax.vmap(model.covariance_class.features)(x)
    resp, log_lik = e_step_resp(model)(x, w, phi=phi)
    return SuffStats.from_block(resp, phi, x.shape[-1]), log_lik


def m_step(
    resp_fn: Callable[..., tuple[Array, Array]],
    blocks: Blocks,
    covariance_class: type[Covariance],
    reg_covar: Float[Array, ""],
    total_weight: Float[Array, ""] | None = None,
    active: Array | None = None,
) -> tuple[GMMParams, SuffStats, Float[Array, ""]]:
    """Parameters from the responsibilities ``resp_fn(x_b, w_b, b, phi_b)`` of every
    block (``phi_b``: the block's features, computed once and shared).

    One fast pass forms the raw moments with a matrix product per block. Where they
    may have cancelled (:meth:`GMMParams.cancellation_risk`: a tight component far
    from the data's centre, a component on a single point) a second pass recomputes
    the statistics about each component's new mean from explicit differences, as
    scikit-learn does, so the result stays exact and positive definite.

    Returns
    -------
    params, stats (of the fast pass), summed log-likelihood (from ``resp_fn``)
    """
    d = blocks.n_features
    features = jax.vmap(covariance_class.features)

    def fast(x, w, b):
        phi = features(x)
        resp, log_lik = resp_fn(x, w, b, phi)
        return SuffStats.from_block(resp, phi, d), log_lik

    stats, log_lik = scan_blocks(fast, blocks)
    params = GMMParams.from_stats(stats, covariance_class, reg_covar, total_weight, None, active)

    def exact(carry):
        shift = carry[1].means

        def block(x, w, b):
            resp = resp_fn(x, w, b, None)[0]
            return SuffStats.from_block_centered(
                resp, x, shift, covariance_class.centered_second_moments
            )

        centered = scan_blocks(block, blocks)
        new = GMMParams.from_stats(
            centered, covariance_class, reg_covar, total_weight, shift, active
        )
        return jnp.zeros((), bool), new

    # A loop of at most one step, not lax.cond: under vmap (restarts) a cond would run
    # both branches every time; the loop runs the exact pass only when one needs it.
    risky = params.cancellation_risk(reg_covar)
    params = lax.while_loop(lambda c: c[0], exact, (risky, params))[1]
    return params, stats, log_lik


@pytree_dataclass
class EMResult:
    """What an EM run returns.

    Attributes
    ----------
    params : GMMParams
        The final parameters (the last finite ones if an M-step failed).
    n_iter : int array
        Number of E/M iterations run.
    lower_bound : float array
        Mean (weighted) log-likelihood computed by the last E-step, as scikit-learn's
        ``lower_bound_``.
    lower_bounds : float array of shape (max_iter,)
        The lower bound after every iteration; entries past ``n_iter`` are NaN.
    converged : bool array
    status : int array
        A :class:`~jaxgmm._typing.Status` code.
    """

    params: GMMParams
    n_iter: Int[Array, ""]
    lower_bound: Float[Array, ""]
    lower_bounds: Float[Array, " max_iter"]
    converged: Bool[Array, ""]
    status: Int[Array, ""]


@pytree_dataclass
class LoopState:
    """The state of :func:`iterate`: the parameters (the last finite ones), the last
    lower bound and its trace, and why the loop stopped."""

    params: Any
    lower_bound: Float[Array, ""]
    n_iter: Int[Array, ""]
    trace: Float[Array, " max_iter"]
    converged: Bool[Array, ""]
    failed: Bool[Array, ""]
    flag: Bool[Array, ""]


def iterate(step, params, *, tol, max_iter: int, lower_bound, dtype) -> LoopState:
    """The bounded loop shared by EM and variational EM.

    ``step(params, n_iter) -> (new_params, lower_bound, flag)`` is iteration
    ``n_iter`` (from 0). The loop
    stops when the lower bound changes by less than ``tol``, after ``max_iter``
    iterations, or when a step gives a non-finite result; it then keeps the last
    finite parameters. ``flag`` (a bool the step reports, such as a collapsed
    component) is kept from the last step. Parameters that are not finite to begin
    with stop the loop at once, with ``n_iter`` 0.
    """

    def cond(s: LoopState):
        return (s.n_iter < max_iter) & ~s.converged & ~s.failed

    def body(s: LoopState) -> LoopState:
        new, lb, flag = step(s.params, s.n_iter)
        ok = all_finite(new) & jnp.isfinite(lb)
        return LoopState(
            params=jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), new, s.params),
            lower_bound=lb,
            n_iter=s.n_iter + 1,
            trace=s.trace.at[s.n_iter].set(lb),
            converged=ok & (jnp.abs(lb - s.lower_bound) < tol),
            failed=~ok,
            flag=flag,
        )

    false = jnp.zeros((), bool)
    init = LoopState(
        params=params,
        lower_bound=jnp.asarray(lower_bound, dtype).reshape(()),
        n_iter=jnp.zeros((), jnp.int32),
        trace=jnp.full((max(max_iter, 1),), jnp.nan, dtype),  # at[] needs one slot
        converged=false,
        failed=~all_finite(params),
        flag=false,
    )
    s = lax.while_loop(cond, body, init)
    return dataclasses.replace(s, trace=s.trace[:max_iter])


def run_em(
    params: GMMParams,
    blocks: Blocks,
    *,
    tol: Float[Array, ""],
    reg_covar: Float[Array, ""],
    max_iter: int,
    lower_bound: Float[Array, ""] | float = -jnp.inf,
    active: Array | None = None,
    report: bool = False,
) -> EMResult:
    """EM from ``params`` until the lower bound changes by less than ``tol``.

    Parameters
    ----------
    params : GMMParams
        Starting parameters.
    blocks : Blocks
        The data, from :func:`make_blocks`.
    tol : float
        Convergence threshold on the change of the mean log-likelihood.
    reg_covar : float
        Non-negative regularization added to the diagonal of covariances.
    max_iter : int
        Number of EM iterations at most (static).
    lower_bound : float
        The lower bound the first change is measured from (a warm start passes the
        previous fit's; default ``-inf``).
    active : bool array of shape (n_components,), optional
        Components in use; the others (padding, so that fits with different numbers
        of components share one program) keep weight 0 and count for nothing.
    report : bool
        Send each iteration's count and lower bound to :mod:`jaxgmm._progress` (a
        host callback; static).

    Returns
    -------
    EMResult
    """
    dtype = blocks.x.dtype
    cov_cls = type(params.covariance)
    total_weight = jnp.sum(blocks.w)
    collapse_floor = 10 * jnp.finfo(dtype).eps * total_weight
    if active is None:
        active = jnp.ones(params.weights.shape, bool)

    def step(params: GMMParams, n_iter):
        resp_fn = e_step_resp(Natural.of(params))
        new, stats, log_lik = m_step(resp_fn, blocks, cov_cls, reg_covar, active=active)
        lb = log_lik / total_weight
        if report:
            jax.debug.callback(_progress.iteration, n_iter + 1, lb)
        collapsed = jnp.min(jnp.where(active, stats.sum_r, jnp.inf)) < collapse_floor
        return new, lb, collapsed

    # An initialization that is already non-finite (a singular starting covariance)
    # is reported at once, with n_iter 0.
    s = iterate(step, params, tol=tol, max_iter=max_iter, lower_bound=lower_bound, dtype=dtype)
    status = jnp.select(
        [s.failed, s.flag, s.converged],
        [Status.NON_FINITE, Status.COLLAPSED, Status.CONVERGED],
        Status.MAX_ITER,
    ).astype(jnp.int32)
    return EMResult(s.params, s.n_iter, s.lower_bound, s.trace, s.converged, status)


def final_scores(params: GMMParams, blocks: Blocks) -> tuple[Array, Array]:
    """Summed (weighted) log-likelihood and entropy of the responsibilities.

    The entropy ``-sum_i w_i sum_k r_ik log r_ik`` is what ICL adds to BIC (twice).
    """
    model = Natural.of(params)

    def block(x, w, _):
        resp, log_resp, log_norm = jax.vmap(_e_step, in_axes=(0, None))(x, model)
        entropy = -jnp.sum(jnp.where(resp > 0, resp * log_resp, 0), axis=1)
        return jnp.sum(w * log_norm), jnp.sum(w * entropy)

    return scan_blocks(block, blocks)


def log_prob_resp(
    params: GMMParams, blocks: Blocks
) -> tuple[Float[Array, "n_blocks block"], Float[Array, "n_blocks block k"]]:
    """Per-row log-likelihood and log-responsibilities, block by block."""
    model = Natural.of(params)
    per_block = jax.vmap(_e_step, in_axes=(0, None))
    _, log_resp, log_norm = lax.map(lambda x: per_block(x, model), blocks.x)
    return log_norm, log_resp


@functools.partial(jax.jit, static_argnames="block_rows")
def _score_rows(params: GMMParams, x, block_rows: int):
    # Centre on the mixture's mean, as the fit centres on the data's: less cancellation.
    center = params.weights @ params.means
    blocks = make_blocks(x - center, jnp.ones(x.shape[0], x.dtype), block_rows)
    log_norm, log_resp = log_prob_resp(params.shift(-center), blocks)
    return log_norm.reshape(-1), log_resp.reshape(-1, params.n_components)


def score_rows_padded(params: GMMParams, X) -> tuple[Array, Array, int]:
    """:func:`score_rows` before the padding rows are cut off: ``(log_prob,
    log_resp, n_samples)``; slicing on the host avoids compiling a slice per size."""
    dtype = float_dtype(params.means)
    with x64_scope(dtype):
        x, _, _, block_rows, n = prepare_rows(X, None, type(params.covariance), dtype)
        params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), params)
        log_prob, log_resp = _score_rows(params, x, block_rows)
        return log_prob, log_resp, n


def score_rows(
    params: GMMParams, X: Float[Array, "n_samples n_features"]
) -> tuple[Float[Array, " n_samples"], Float[Array, "n_samples n_components"]]:
    """Log-likelihood of each row and its log-responsibilities, in blocks.

    Parameters
    ----------
    params : GMMParams
    X : array-like of shape (n_samples, n_features)

    Returns
    -------
    log_prob : array of shape (n_samples,)
        ``log p(x)`` of each row (scikit-learn's ``score_samples``).
    log_resp : array of shape (n_samples, n_components)
        ``log p(k | x)`` (the log of scikit-learn's ``predict_proba``).
    """
    log_prob, log_resp, n = score_rows_padded(params, X)
    with x64_scope(log_prob.dtype):
        return log_prob[:n], log_resp[:n]
