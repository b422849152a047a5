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
(see :mod:`jaxgmm._covariance`).

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

from . import _kernels, _progress
from ._covariance import Covariance, FullCovariance
from ._params import GMMParams, all_finite
from ._programs import compile_then_upload, compiles_ahead, rounded_components
from ._pytree import pytree_dataclass
from ._rows import Blocks, Rows, make_blocks, plan_rows, sum_rows
from ._stats import SuffStats
from ._typing import Array, Bool, Float, Int, Status, as_dtype, float_dtype, x64_scope

__all__ = [
    "EMResult",
    "Natural",
    "final_scores",
    "log_prob_resp",
    "run_em",
    "score_rows",
    "score_rows_padded",
]

#: Largest estimated rounding error of the expanded E-step, relative to a component's
#: log-density at its mode (plus one nat), that is accepted; past it the E-step uses
#: the centred form. float64 answers are then exact to ~1e-12 relative, float32 to
#: float32's own accuracy (tests/test_exactness.py proves both sides of the boundary).
_E_STEP_RTOL = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 1e-4}


@pytree_dataclass(meta_fields=("direct",))
class Natural:
    """A mixture's log-joint ``offset_k + log N(x | mu_k, Sigma_k)`` in two forms.

    The fast form is ``phi(x) @ A``: one matrix product per block of rows. It expands
    the quadratic form about the origin, so for a tight component far from the data's
    centre its terms cancel catastrophically. ``exact`` is set when the estimated
    rounding error (:meth:`Covariance.fast_form_error`) for rows within ``radius`` of
    the origin is too large; the E-step then uses the centred form ``x - mu_k``
    against the precision Cholesky factor, as scikit-learn does. Wide and small data
    (:func:`direct_form`, static ``direct``) always use the centred form, and ``A``
    is not formed.
    """

    A: Float[Array, "n_phi k"]
    offset: Float[Array, " k"]
    means: Float[Array, "k d"]
    covariance: Covariance
    center: Float[Array, " d"]
    exact: Bool[Array, ""]
    direct: bool = False

    @property
    def covariance_class(self) -> type[Covariance]:
        return type(self.covariance)

    @property
    def form(self) -> Bool[Array, ""] | bool:
        """Whether the passes use the exact (centred) form: ``True`` itself for wide
        data, so that the fast form is never traced."""
        return True if self.direct else self.exact

    @classmethod
    def build(cls, offset, means, covariance: Covariance, blocks: Blocks) -> Natural:
        """From the log-weights (or any per-component ``offset``), the means and the
        covariance, for the rows of ``blocks`` (the expanded form is taken about
        their centre)."""
        if direct_form(type(covariance), blocks):
            A = jnp.zeros((0, means.shape[0]), means.dtype)
            return cls(A, offset, means, covariance, blocks.center, jnp.ones((), bool), True)
        lin, quad, const = covariance.natural(means - blocks.center)
        # a shared quadratic form is added once per row (_log_joint), not K times
        parts = [(const + offset)[:, None], lin] + ([] if covariance.shared_second else [quad])
        A = jnp.concatenate(parts, axis=1).T
        mode = jnp.abs(covariance.log_prob_constant(means))
        rtol = _E_STEP_RTOL[np.dtype(means.dtype)]
        error = covariance.fast_form_error(means - blocks.center, blocks.radius)
        # components of weight 0 (a sweep's padding) never take part
        exact = jnp.any(jnp.isfinite(offset) & (error > rtol * (1 + mode)))
        return cls(A, offset, means, covariance, blocks.center, exact)

    @classmethod
    def of(cls, params, blocks: Blocks) -> Natural:
        """From a mixture's parameters (:class:`GMMParams`, or the variational
        posterior, whose ``log_offset`` adds its expectations to the log-weights)."""
        return cls.build(params.log_offset(), params.means, params.covariance, blocks)


def direct_form(covariance_class: type[Covariance], blocks: Blocks) -> bool:
    """Whether passes over ``blocks`` use the centred form alone (static, from shapes):
    for wide data (:meth:`Covariance.prefers_direct`: the features would be larger
    than the differences) and for small data (:attr:`Blocks.small`: one form compiles
    faster, and the centred one is exact)."""
    return covariance_class.prefers_direct(blocks.n_features) or blocks.small


# --- the seed's three per-sample functions ---------------------------------------


def _log_joint(x: Float[Array, " d"], model: Natural, phi=None) -> Float[Array, " k"]:
    """``log w_k + log N(x | mu_k, Sigma_k)`` for one sample, in the fast form
    (``phi``: its features about ``model.center``, when the caller has them)."""
    phi = model.covariance_class.features(x - model.center) if phi is None else phi
    if model.covariance_class.shared_second:
        return phi @ model.A + model.covariance.shared_quadratic(x - model.center)
    return phi @ model.A


def _log_joint_centred(x: Float[Array, " d"], model: Natural) -> Float[Array, " k"]:
    """The same in the centred form: exact, as scikit-learn's."""
    return model.offset + model.covariance.log_prob_centred(x, model.means)


def _normalise(log_joint: Float[Array, " k"]):
    """Responsibilities, log-responsibilities and log-likelihood from the log-joint.

    One ``exp`` serves both forms; callers take what they need and XLA drops the rest.
    """
    top = jnp.max(log_joint)
    top = jnp.where(jnp.isfinite(top), top, 0)
    e = jnp.exp(log_joint - top)
    total = jnp.sum(e)
    # one division per sample, not per component
    return e * (1 / total), log_joint - top - jnp.log(total), top + jnp.log(total)


def _e_step(
    x: Float[Array, " d"], model: Natural, phi=None
) -> tuple[Float[Array, " k"], Float[Array, " k"], Float[Array, ""]]:
    """Responsibilities, log-responsibilities and log-likelihood of one sample."""
    return _normalise(_log_joint(x, model, phi))


def _m_step(x: Float[Array, " d"], resp: Float[Array, " k"], model: Natural) -> SuffStats:
    """One sample's contribution to the sufficient statistics: ``outer(r, phi(x))``."""
    phi = model.covariance_class.features(x)
    return phi_stats(resp[None], phi[None], x[None], model.covariance_class)


def _log_lik(x: Float[Array, " d"], model: Natural) -> Float[Array, ""]:
    """Log-likelihood of one sample under the mixture."""
    return jax.nn.logsumexp(_log_joint(x, model))


# --- blocks ----------------------------------------------------------------------


#: The ``vmap`` axis of a batch of fits (restarts, a sweep's K): :func:`run_if` asks
#: the whole batch whether any member needs a branch.
FITS = "fits"


def batch_any(pred: Bool[Array, ""]) -> Bool[Array, ""]:
    """Whether ``pred`` holds for any fit of the batch (``pred`` itself outside one)."""
    try:
        return lax.psum(pred.astype(jnp.int32), FITS) > 0
    except NameError:  # not inside a vmap over fits
        return pred


def batch_max(value: Int[Array, ""]) -> Int[Array, ""]:
    """The largest ``value`` of the batch of fits (``value`` itself outside one): a
    trip count the whole batch shares, so that a loop is not batched."""
    value = jnp.asarray(value)
    try:
        return lax.pmax(value, FITS)
    except NameError:  # not inside a vmap over fits
        return value


def run_if(pred: Bool[Array, ""], fn: Callable[[], Any], otherwise: Any) -> Any:
    """``fn()`` if ``pred`` else ``otherwise``, computing ``fn`` only when needed.

    The branch is taken when any fit of the batch needs it (:func:`batch_any`), and
    each fit then keeps its own result. A predicate batched by ``vmap`` would turn a
    ``lax.cond`` into a select that runs both branches every time, and a while loop
    with a batched predicate, even one that never runs, slowed each EM iteration 4x
    (measured on XLA's CPU backend).
    """
    pred = jnp.asarray(pred, bool)
    taken = lax.cond(batch_any(pred), fn, lambda: otherwise)
    return jax.tree_util.tree_map(lambda a, b: jnp.where(pred, a, b), taken, otherwise)


def either(pred: Bool[Array, ""], if_true: Callable[[], Any], if_false: Callable[[], Any]):
    """``if_true()`` if ``pred`` else ``if_false()``, each computed only when some
    fit of the batch needs it (see :func:`run_if`). A Python bool (wide data's
    direct form, decided from shapes; an initialization's pass) takes its branch
    alone: the other is never traced."""
    if isinstance(pred, bool):
        return if_true() if pred else if_false()
    pred = jnp.asarray(pred, bool)  # ~False is -1 for a Python bool
    shapes = jax.eval_shape(if_false)
    zeros = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    a = run_if(pred, if_true, zeros)
    b = run_if(~pred, if_false, zeros)
    return jax.tree_util.tree_map(lambda u, v: jnp.where(pred, u, v), a, b)


def block_log_joint(
    x: Float[Array, "b d"], model: Natural, phi=None, centred: bool = False
) -> Float[Array, "b k"]:
    """The vmapped log-joint of a block, in the fast or (``centred``) the exact form."""
    if centred:
        return jax.vmap(_log_joint_centred, in_axes=(0, None))(x, model)
    return jax.vmap(_log_joint, in_axes=(0, None, None if phi is None else 0))(x, model, phi)


def block_e_step(x: Float[Array, "b d"], model: Natural, phi=None, centred: bool = False):
    """The vmapped E-step of a block: ``(resp, log_resp, log_norm)`` per row."""
    return jax.vmap(_normalise)(block_log_joint(x, model, phi, centred))


def scan_forms(fn: Callable[..., Any], blocks: Blocks, exact: Bool[Array, ""]) -> Any:
    """:func:`sum_rows` of ``fn(x_b, w_b, b, centred)``: every block in the
    E-step's exact (centred) form where ``exact``, in the fast form elsewhere.

    The form is chosen once per pass (:func:`either`), not per block: the loop over
    blocks keeps a trip count shared by a batch of restarts. A per-block choice, or a
    trip count that depends on ``exact``, is batched under ``vmap``, and each block
    is then gathered per restart (4x slower per iteration, measured).
    """
    in_form = lambda centred: lambda: sum_rows(functools.partial(fn, centred=centred), blocks)
    return either(exact, in_form(True), in_form(False))


def map_forms(fn: Callable[..., Any], blocks: Blocks, exact: Bool[Array, ""]) -> Any:
    """``fn(x_b, centred)`` of every block, stacked as ``lax.map`` stacks them, in
    the form ``exact`` asks for (chosen once, as in :func:`scan_forms`)."""
    in_form = lambda centred: lambda: blocks.map(lambda x, _w, _b: fn(x, centred))
    return either(exact, in_form(True), in_form(False))


@dataclasses.dataclass(frozen=True)
class EStep:
    """A mixture's E-step of a block, ``(x, w, b, phi, centred) -> (weighted
    responsibilities, summed log-likelihood)``, which keeps its ``model`` so that a
    pass may compute it fused with the statistics (:func:`fused_pass`)."""

    model: Natural

    def __call__(
        self, x: Float[Array, "b d"], w: Float[Array, " b"], _=None, phi=None, centred=False
    ):
        resp, _, log_norm = block_e_step(x, self.model, phi, centred)
        return resp * w[:, None], jnp.sum(w * log_norm)


def e_step_resp(model: Natural) -> EStep:
    """The E-step of a block as ``(weighted responsibilities, summed log-likelihood)``."""
    return EStep(model)


def fused_pass(resp_fn, covariance_class: type[Covariance], blocks: Blocks):
    """``(w_b, b) -> (stats, log_lik)``: the fast form's pass over block b as one
    fused CPU kernel (:mod:`jaxgmm._kernels`), where it applies: a mixture's E-step
    (:class:`EStep`; the variational fit's returns an entropy), a structure with
    features the kernel knows, and a shape and backend where it is faster. Else None.
    """
    features = covariance_class.fused_features
    if not isinstance(resp_fn, EStep) or features is None:
        return None
    A = resp_fn.model.A
    if not _kernels.usable(A.dtype, A.shape[-2], A.shape[-1]):
        return None
    shared = covariance_class.shared_second
    factor = resp_fn.model.covariance.precisions_cholesky if shared else None

    def fused(w, b):  # block b's rows are read in place, not sliced out (a copy)
        args = (blocks.x, b, w, blocks.center, A, features, factor, blocks.rows_with_data(b))
        s, log_lik, pooled = _kernels.fused_pass(*args)
        stats = SuffStats.from_matrix(s, blocks.n_features)
        if shared:  # as phi_stats: the rows' own second moments, one row
            stats = dataclasses.replace(stats, sum_rxx=pooled[None, :])
        return stats, log_lik

    return fused


def phi_stats(
    resp: Float[Array, "b k"],
    phi: Float[Array, "b n_phi"],
    x: Float[Array, "b d"],
    covariance_class: type[Covariance],
) -> SuffStats:
    """The statistics of a block from its features (``x``: the rows ``phi`` was
    made of): one product ``resp.T @ phi``, and for a shared quadratic form
    (:attr:`Covariance.shared_second`) the rows' pooled second moments."""
    stats = SuffStats.from_block(resp, phi, x.shape[-1])
    if covariance_class.shared_second:
        second = covariance_class.pooled_second_moments(resp, x)
        stats = dataclasses.replace(stats, sum_rxx=second)
    return stats


def block_stats(
    x: Float[Array, "b d"], w: Float[Array, " b"], model: Natural, centred: bool = False
) -> tuple[SuffStats, Float[Array, ""]]:
    """Statistics and weighted log-likelihood sum of a block.

    ``SuffStats.from_block`` is the sum over rows of ``vmap(_m_step)``, written as one
    matrix product (summing outer products over rows *is* a product).
    """
    phi = jax.vmap(model.covariance_class.features)(x)
    resp, log_lik = e_step_resp(model)(x, w, phi=phi, centred=centred)
    return phi_stats(resp, phi, x, model.covariance_class), log_lik


def resp_sums(resp_fn, blocks: Blocks) -> tuple[Float[Array, " k"], Float[Array, "k d"]]:
    """Each component's total responsibility and responsibility-weighted sum of the
    rows about ``blocks.center``, from ``resp_fn(x_b, w_b, b)`` (already weighted)."""

    def sums(x, w, b):
        resp = resp_fn(x, w, b)
        return jnp.sum(resp, 0), resp.T @ (x - blocks.center)

    return sum_rows(sums, blocks)


def centred_estimate(
    resp_fn: Callable[..., Array],
    blocks: Blocks,
    covariance_class: type[Covariance],
    reg_covar: Float[Array, ""],
    total_weight: Float[Array, ""] | None = None,
    active: Array | None = None,
    previous: Array | None = None,
    assign: Callable[..., tuple[Array, Array]] | None = None,
) -> tuple[GMMParams, SuffStats]:
    """The M-step from responsibilities ``resp_fn(x_b, w_b, b)`` (already weighted),
    as scikit-learn's ``_estimate_gaussian_parameters``: one pass for each
    component's mean, then the statistics about those means from the differences
    themselves. Exact, and smaller to compile than a pass of raw moments, a check for
    cancellation and a conditional second pass; with several blocks ``resp_fn`` is
    called twice per block, so it must give the same values each time. One block's
    responsibilities are computed once.

    Returns the parameters (see :meth:`GMMParams.from_stats` for ``total_weight``
    and ``active``) and the statistics, about the new means. An empty component sits
    at the rows' centre.

    ``assign(x_b, w_b, b)``, for hard assignments (``resp_fn`` one-hot), gives each
    row's component (-1 for none) and weight: the second pass then takes each row's
    difference to its own component's mean only (:meth:`SuffStats.from_block_labelled`;
    the same sums, as the other components' terms weigh nothing).
    """
    if blocks.single:  # sum_rows of one block is that block's value
        resp = sum_rows(resp_fn, blocks)
        resp_fn = lambda *_: resp
    count, total_x = resp_sums(resp_fn, blocks)
    shift = jnp.where(count[:, None] > 0, total_x / jnp.maximum(count, 1e-300)[:, None], 0)
    shift = shift + blocks.center
    if assign is None:
        moments = covariance_class.centered_second_moments
        block = lambda x, w, b: SuffStats.from_block_centered(resp_fn(x, w, b), x, shift, moments)
    else:
        moments = covariance_class.second_moments
        block = lambda x, w, b: SuffStats.from_block_labelled(*assign(x, w, b), x, shift, moments)
    stats = sum_rows(block, blocks)
    params = GMMParams.from_stats(
        stats, covariance_class, reg_covar, total_weight, shift, active, previous
    )
    return params, stats


def labelled_estimate(
    assign: Callable[..., tuple[Array, Array]],
    blocks: Blocks,
    covariance_class: type[Covariance],
    reg_covar: Float[Array, ""],
    n_components: int,
    total_weight: Float[Array, ""] | None = None,
    active: Array | None = None,
) -> GMMParams:
    """:func:`centred_estimate` for hard assignments: ``assign(x_b, w_b, b)`` gives
    each row's component (-1 for none) and weight. Exact and equal to it with
    one-hot responsibilities, but the second pass forms each row's difference to its
    own component's mean only (:meth:`SuffStats.from_block_labelled`: b x d
    differences and one product with the one-hot responsibilities, where the
    centred pass formed and transposed b x k x d of them for every fit of a batch;
    a 14-family sweep over 100k x 8 rows ran again in 5.0 s instead of 6.0-6.4 s)."""

    def one_hot(x, w, b):
        labels, weights = assign(x, w, b)
        return jax.nn.one_hot(labels, n_components, dtype=x.dtype) * weights[:, None]

    args = (covariance_class, reg_covar, total_weight, active)
    return centred_estimate(one_hot, blocks, *args, assign=assign)[0]


def fused_direct_pass(resp_fn, covariance_class: type[Covariance], blocks: Blocks, shift):
    """``(w_b, b) -> (stats, log_lik)``: the centred form's pass over block b (wide
    data: the E-step from ``x - mu_k`` against the precision Cholesky factors, the
    statistics about ``shift``) as one fused CPU kernel (:mod:`jaxgmm._kernels`),
    where it applies: a mixture's E-step (:class:`EStep`), a structure whose centred
    log-density is ``constant_k - |(x - mu_k) @ U_k|^2 / 2`` with a (D, D) factor per
    component (:attr:`Covariance.fused_direct`), and a backend and dtype the kernel
    serves. Else None."""
    if not isinstance(resp_fn, EStep) or not covariance_class.fused_direct or shift is None:
        return None
    model = resp_fn.model
    if not _kernels.direct_usable(model.means.dtype):
        return None
    constant = model.offset + model.covariance.log_prob_constant(model.means)
    U = model.covariance.precisions_cholesky

    def fused(w, b):  # block b's rows are read in place
        rows = blocks.rows_with_data(b)
        sums = _kernels.fused_direct_pass(blocks.x, b, w, model.means, U, constant, shift, rows)
        return SuffStats(*sums[:3]), sums[3]

    return fused


def pass_stats(
    resp_fn: Callable[..., tuple[Array, Array]],
    blocks: Blocks,
    covariance_class: type[Covariance],
    exact: Bool[Array, ""] | bool,
    shift: Float[Array, "k d"] | None,
) -> tuple[SuffStats, Float[Array, ""], Float[Array, "..."]]:
    """The statistics of one pass (see :func:`em_pass`) and the centre they are taken
    about: raw moments about ``blocks.center``, or, for the direct form, moments of
    the differences to ``shift`` (per component). Returns ``(stats, log_lik,
    center)``; summing the first two over parts of the rows (chunks, processes)
    gives the pass over all of them."""
    if direct_form(covariance_class, blocks):
        fused = fused_direct_pass(resp_fn, covariance_class, blocks, shift)

        def direct(x, w, b, centred):
            if fused is not None and centred:
                return fused(w, b)
            resp, log_lik = resp_fn(x, w, b, None, centred)
            moments = covariance_class.centered_second_moments
            return SuffStats.from_block_centered(resp, x, shift, moments), log_lik

        return (*scan_forms(direct, blocks, exact), shift)
    features = jax.vmap(covariance_class.features)
    fused = fused_pass(resp_fn, covariance_class, blocks)

    def fast(x, w, b, centred):
        if fused is not None and not centred:
            return fused(w, b)
        phi = features(x - blocks.center)
        resp, log_lik = resp_fn(x, w, b, phi, centred)
        return phi_stats(resp, phi, x - blocks.center, covariance_class), log_lik

    return (*scan_forms(fast, blocks, exact), blocks.center)


def centred_stats(
    resp_fn: Callable[..., tuple[Array, Array]],
    blocks: Blocks,
    covariance_class: type[Covariance],
    exact: Bool[Array, ""] | bool,
    shift: Float[Array, "k d"],
) -> SuffStats:
    """The exact second pass's statistics: the same responsibilities, moments of the
    differences to ``shift`` (the first pass's new means)."""

    def block(x, w, b, centred):
        resp = resp_fn(x, w, b, None, centred)[0]
        return SuffStats.from_block_centered(
            resp, x, shift, covariance_class.centered_second_moments
        )

    return scan_forms(block, blocks, exact)


def em_pass(
    resp_fn: Callable[..., tuple[Array, Array]],
    blocks: Blocks,
    covariance_class: type[Covariance],
    reg_covar: Float[Array, ""],
    total_weight: Float[Array, ""] | None = None,
    active: Array | None = None,
    exact: Bool[Array, ""] | bool = False,
    shift: Float[Array, "k d"] | None = None,
    previous: Array | None = None,
) -> tuple[GMMParams, SuffStats, Float[Array, ""]]:
    """One pass over the rows, then the M-step: the responsibilities
    ``resp_fn(x_b, w_b, b, phi_b, centred)`` of every block (its E-step; ``phi_b``:
    the block's features, computed once and shared; ``centred``: the E-step's exact
    form, as every pass uses where ``exact``), summed into sufficient statistics (the
    seed's per-sample :func:`_m_step`, summed over a block as one matrix product, as
    :func:`block_stats` shows), and the M-step proper, :meth:`GMMParams.from_stats`.

    One fast pass forms the raw moments with a matrix product per block. Where they
    may have cancelled (:meth:`GMMParams.cancellation_risk`: a tight component far
    from the data's centre, a component on a single point) a second pass recomputes
    the statistics about each component's new mean from explicit differences, as
    scikit-learn does, so the result stays exact and positive definite.

    Wide and small data (:func:`direct_form`) form no features: their statistics are taken
    from differences to ``shift`` (per component: the previous means), which cancel
    far less, and the same check follows. In one block they are
    :func:`centred_estimate`'s, exact at once.

    Returns
    -------
    params, stats (of the first pass), summed log-likelihood (from ``resp_fn``)
    """
    if blocks.single and direct_form(covariance_class, blocks):
        # One block in the centred form (small data): its responsibilities once, then
        # the exact centred M-step; nothing to check and no second pass to compile.
        resp, log_lik = sum_rows(lambda x, w, b: resp_fn(x, w, b, None, True), blocks)
        params, stats = centred_estimate(
            lambda *_: resp, blocks, covariance_class, reg_covar, total_weight, active, previous
        )
        return params, stats, log_lik
    stats, log_lik, center = pass_stats(resp_fn, blocks, covariance_class, exact, shift)
    m_step = lambda stats, shift: GMMParams.from_stats(
        stats, covariance_class, reg_covar, total_weight, shift, active, previous
    )
    params = m_step(stats, center)

    def centred_pass(fast_params):
        shift = fast_params.means
        return m_step(centred_stats(resp_fn, blocks, covariance_class, exact, shift), shift)

    risky = params.cancellation_risk(reg_covar, center)
    params = run_if(risky, lambda: centred_pass(params), params)
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

    def result(self) -> EMResult:
        """The loop's outcome as a result, with its status (``flag``: a collapsed
        component)."""
        status = jnp.select(
            [self.failed, self.flag, self.converged],
            [Status.NON_FINITE, Status.COLLAPSED, Status.CONVERGED],
            Status.MAX_ITER,
        ).astype(jnp.int32)
        return EMResult(
            self.params, self.n_iter, self.lower_bound, self.trace, self.converged, status
        )


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
    cov_cls = params.covariance.structure()
    total_weight = blocks.total
    collapse_floor = 10 * jnp.finfo(dtype).eps * total_weight
    if active is None:
        active = jnp.ones(params.weights.shape, bool)

    def step(params: GMMParams, n_iter):
        model = Natural.of(params, blocks)
        new, stats, log_lik = em_pass(
            e_step_resp(model),
            blocks,
            cov_cls,
            reg_covar,
            active=active,
            exact=model.form,
            shift=params.means,
            previous=params.covariance.covariances,
        )
        lb = log_lik / total_weight
        if report:
            jax.debug.callback(_progress.iteration, n_iter + 1, lb)
        collapsed = jnp.min(jnp.where(active, stats.sum_r, jnp.inf)) < collapse_floor
        return new, lb, collapsed

    # An initialization that is already non-finite (a singular starting covariance)
    # is reported at once, with n_iter 0.
    s = iterate(step, params, tol=tol, max_iter=max_iter, lower_bound=lower_bound, dtype=dtype)
    return s.result()


def final_scores(params: GMMParams, blocks: Blocks) -> tuple[Array, Array]:
    """Summed (weighted) log-likelihood and entropy of the responsibilities.

    The entropy ``-sum_i w_i sum_k r_ik log r_ik`` is what ICL adds to BIC (twice).
    """
    model = Natural.of(params, blocks)

    def block(x, w, _, centred):
        resp, log_resp, log_norm = block_e_step(x, model, centred=centred)
        entropy = -jnp.sum(jnp.where(resp > 0, resp * log_resp, 0), axis=1)
        return jnp.sum(w * log_norm), jnp.sum(w * entropy)

    return scan_forms(block, blocks, model.form)


def log_prob_resp(
    params: GMMParams, blocks: Blocks
) -> tuple[Float[Array, "n_blocks block"], Float[Array, "n_blocks block k"]]:
    """Per-row log-likelihood and log-responsibilities, block by block."""
    model = Natural.of(params, blocks)
    e_step = lambda x, centred: block_e_step(x, model, centred=centred)[1:]
    log_resp, log_norm = map_forms(e_step, blocks, model.form)
    return log_norm, log_resp


def labels(params: GMMParams, blocks: Blocks) -> Int[Array, "n_blocks block"]:
    """Each row's most likely component: the log-joint's argmax, as scikit-learn's
    ``predict`` takes it (not the log-responsibilities', which subtract a rounded
    per-row constant), block by block."""
    model = Natural.of(params, blocks)
    label = lambda x, centred: jnp.argmax(block_log_joint(x, model, None, centred), axis=1)
    return map_forms(label, blocks, model.form)


def _scoring_blocks(block_rows: int, params: GMMParams, rows: Rows) -> Blocks:
    # The expanded form is taken about the mixture's mean (less cancellation); the
    # exact form, where it is needed, sees the rows and means as given.
    center = params.weights @ params.means
    return make_blocks(rows.x, rows.w, block_rows, rows.n_samples, center=center)


@functools.partial(jax.jit, static_argnums=0)
def _score_rows(block_rows: int, params: GMMParams, rows: Rows):
    log_norm, log_resp = log_prob_resp(params, _scoring_blocks(block_rows, params, rows))
    return log_norm.reshape(-1), log_resp.reshape(-1, params.n_components)


@functools.partial(jax.jit, static_argnums=0)
def _label_rows(block_rows: int, params: GMMParams, rows: Rows):
    return (labels(params, _scoring_blocks(block_rows, params, rows)).reshape(-1),)


def score_rows_padded(params: GMMParams, X) -> tuple[Array, Array, int, int]:
    """:func:`score_rows` before the padding is cut off: ``(log_prob, log_resp,
    n_samples, n_components)``; slicing on the host avoids compiling a slice per
    size. Small data is scored with the components rounded up as a small fit rounds
    them (:func:`~jaxgmm._programs.rounded_components`; the extra ones have weight 0)
    and its covariances as full matrices, so that models of nearby K and of every
    covariance type share one program."""
    log_prob, log_resp, n = _on_rows(_score_rows, params, X)
    return log_prob, log_resp, n, params.n_components


def label_rows_padded(params: GMMParams, X) -> tuple[Array, int]:
    """``(labels, n_samples)``: :func:`labels` of the rows of ``X``, padded as
    :func:`score_rows_padded`'s. ``predict`` takes these rather than the
    log-responsibilities' argmax on the host: K times less to copy back, and no
    normalising (100k rows, D=2, K=3: 7.8 -> 4.6 ms; scikit-learn 9.2 ms)."""
    return _on_rows(_label_rows, params, X)


def _on_rows(program, params: GMMParams, X):
    """``(*program(block_rows, params, rows), n_samples)`` (``program`` returns a
    tuple), the rows planned and ``params`` padded as :func:`score_rows_padded` says."""
    dtype = float_dtype(params.means)
    k = params.n_components
    with x64_scope(dtype):
        plan = plan_rows(X, None, type(params.covariance), dtype)
        # a variational model's K is part of the model: its components are never padded
        maskable = isinstance(params, GMMParams)
        if plan.small and maskable and compiles_ahead(plan, params):
            full_plan = plan_rows(X, None, FullCovariance, dtype)
            if full_plan.small:  # one program for nearby K and every covariance type
                plan, params = full_plan, params.padded(rounded_components(k))
                covariance = params.covariance.as_full(params.n_components, params.n_features)
                params = dataclasses.replace(params, covariance=covariance)
        params = jax.tree_util.tree_map(lambda a: as_dtype(a, dtype), params)
        return (*compile_then_upload(program, (plan.block_rows,), params, plan), plan.n_samples)


#: Inputs up to this much work (rows x K x D^2) are scored on the host with numpy:
#: below it a compiled program's call costs more than the arithmetic (1,000 rows,
#: D=2, K=3: 0.6 ms against scikit-learn's 0.2 ms, benchmarks/bench_shapes.py).
HOST_SCORING_WORK = 2**18


def scores_on_host(params, n_samples: int) -> bool:
    """Whether :func:`score_rows_host` scores ``n_samples`` rows of ``params`` (a
    :class:`GMMParams` whose arrays are on the host, numpy)."""
    k, d = params.means.shape[-2:]
    return (
        isinstance(params, GMMParams)
        and isinstance(params.means, np.ndarray)
        and n_samples * k * d * d <= HOST_SCORING_WORK
    )


def log_joint_host(params: GMMParams, X: np.ndarray) -> np.ndarray:
    """``log w_k + log N(x | k)`` of every row (rows x K) in numpy, for small inputs
    (:func:`scores_on_host`): the centred (exact) form, ``(x - mu_k)`` against the
    precision Cholesky factor, as the E-step's exact form, in the arrays' dtype."""
    k, d = params.means.shape
    dtype = params.means.dtype
    chol = params.covariance.dense(params.covariance.precisions_cholesky, k, d, np)
    y = (np.asarray(X, dtype)[None, :, :] - params.means[:, None, :]) @ chol.astype(dtype)
    # a weight of 0 is a log-weight of -inf, as in the compiled passes (no warning)
    with np.errstate(divide="ignore"):
        log_det = np.sum(np.log(np.diagonal(chol, axis1=-2, axis2=-1)), -1)
        offset = np.log(params.weights) + log_det - 0.5 * d * math.log(2 * math.pi)
    return (offset.astype(dtype)[:, None] - 0.5 * np.einsum("knd,knd->kn", y, y)).T


def score_rows_host(params: GMMParams, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`score_rows` in numpy (:func:`log_joint_host`, normalised as
    :func:`_normalise` does)."""
    log_joint = log_joint_host(params, X)
    # by hand: scipy's logsumexp took 0.1 ms more at 1,000 rows (predict_proba 1.7x
    # scikit-learn's speed -> 1.1x)
    with np.errstate(divide="ignore", invalid="ignore"):  # rows of -inf give NaN, as there
        top = np.max(log_joint, axis=1, keepdims=True)
        top = np.where(np.isfinite(top), top, 0)
        log_norm = top + np.log(np.sum(np.exp(log_joint - top), axis=1, keepdims=True))
        return log_norm[:, 0], log_joint - log_norm


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
    log_prob, log_resp, n, k = score_rows_padded(params, X)
    with x64_scope(log_prob.dtype):
        return log_prob[:n], log_resp[:n, :k]
