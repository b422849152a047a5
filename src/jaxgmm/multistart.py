"""Restarts in parallel: ``vmap`` over split keys on one device, sharded over several.

The seed spread its initializations over devices with ``pmap``. Here one restart is a
single-problem function; ``jax.vmap`` batches it over ``jax.random.split(key, n_init)``
and, with several local devices, ``jax.shard_map`` splits that restart axis over them.
Restart i always uses key i, so the chosen model does not depend on the device count.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from . import _progress
from ._pytree import pytree_dataclass
from ._typing import Array, Float, PRNGKeyArray, Status, float_dtype, x64_scope
from .covariance import covariance_class
from .em import FITS, EMResult, final_scores, make_blocks, prepare_rows, run_em
from .init import INIT_METHODS, initialize, kmeans_centers, params_from_centers
from .params import GMMParams

__all__ = ["best_index", "fit", "fit_restarts", "select"]


@pytree_dataclass
class _GivenInit:
    """User-given initial parameters in scikit-learn's form (any may be None)."""

    weights: Array | None
    means: Array | None
    precisions: Array | None


def _one_restart(
    key, n_active, centers, blocks, tol, reg_covar, given, params0, lower_bound0, *, static
):
    n_components, cov_cls, method, max_iter, with_scores, report = static
    # Components past n_active are padding (a sweep over K): weight 0, no data.
    active = jnp.arange(n_components) < n_active
    if centers is not None:  # the 'kmeans' centres, computed once for several types
        params = params_from_centers(centers, blocks, cov_cls, reg_covar, active)
    elif params0 is None:
        if given.weights is None or given.means is None or given.precisions is None:
            params = initialize(key, blocks, n_components, cov_cls, method, reg_covar, active)
        else:  # scikit-learn skips the initialization when all three are given
            params = GMMParams(
                given.weights, given.means, cov_cls.from_precisions(given.precisions)
            )
        params = GMMParams(
            params.weights if given.weights is None else given.weights,
            params.means if given.means is None else given.means,
            params.covariance
            if given.precisions is None
            else cov_cls.from_precisions(given.precisions),
        )
    else:
        params = params0
    result = run_em(
        params,
        blocks,
        tol=tol,
        reg_covar=reg_covar,
        max_iter=max_iter,
        lower_bound=lower_bound0,
        active=active,
        report=report,
    )
    return result, (final_scores(result.params, blocks) if with_scores else None)


def _fit_keys(key, ks, n_init):
    """Key and active component count of every fit (k-major): fit (k, i) has key i."""
    keys = jnp.tile(jax.random.split(key, n_init), len(ks))
    return keys, jnp.repeat(jnp.asarray(ks, jnp.int32), n_init)


def _k_groups(ks: tuple[int, ...]) -> list[tuple[int, ...]]:
    """A sweep's K split in two batches, each padded to its own largest K: K up to
    half the largest, and the rest. A batch costs as many components as its largest
    K and runs until its slowest fit stops, so small models no longer pay for large
    ones (about 1.5x less work for K = 1..8)."""
    small = tuple(k for k in ks if k <= max(ks) // 2)
    return [small, ks[len(small) :]] if len(ks) >= 4 and small else [ks]


def _pad_components(params: GMMParams, k_max: int) -> GMMParams:
    """``params`` (one fit) with masked components appended up to ``k_max``: weight
    and mean 0, identity covariance, as the masked components of a fit are."""
    extra = k_max - params.weights.shape[0]
    cov = params.covariance
    cov_cls = type(cov)
    zeros = lambda a: jnp.concatenate([a, jnp.zeros((extra, *a.shape[1:]), a.dtype)])
    if cov_cls.shape(2, 1)[0] != 2:  # tied: one covariance for all components
        return GMMParams(zeros(params.weights), zeros(params.means), cov)
    shape = cov_cls.shape(extra, params.means.shape[1])
    dtype = cov.covariances.dtype
    ident = (
        jnp.broadcast_to(jnp.eye(shape[-1], dtype=dtype), shape)
        if len(shape) == 3
        else jnp.ones(shape, dtype)
    )
    join = lambda a: jnp.concatenate([a, ident])
    covariance = cov_cls(join(cov.covariances), join(cov.precisions_cholesky))
    return GMMParams(zeros(params.weights), zeros(params.means), covariance)


def _over_fits(fn, batched, shared, n_devices):
    """``vmap(fn)`` over the leading axis of ``batched`` (None entries stay None),
    with ``shared`` arguments broadcast; over several devices, ``shard_map`` splits
    the fits (padded to a multiple of the device count, then trimmed)."""
    axes = tuple(None if a is None else 0 for a in batched)
    run = jax.vmap(fn, in_axes=axes + (None,) * len(shared), axis_name=FITS)
    n_fits = batched[0].shape[0]
    if n_devices > 1:
        mesh = Mesh(np.asarray(jax.local_devices()[:n_devices]), ("restart",))
        pad = -(-n_fits // n_devices) * n_devices - n_fits
        batched = tuple(
            None if a is None else jnp.concatenate([a, jnp.repeat(a[:1], pad, 0)]) for a in batched
        )
        run = jax.shard_map(
            run,
            mesh=mesh,
            in_specs=tuple(P() if a is None else P("restart") for a in batched)
            + (P(),) * len(shared),
            out_specs=P("restart"),
            # Each device runs its fits independently; no collective is involved, so
            # the replicated-vs-varying type check only gets in the way of the
            # zero-initialised scan carries.
            check_vma=False,
        )
    return jax.tree_util.tree_map(lambda a: a[:n_fits], run(*batched, *shared))


@functools.partial(jax.jit, static_argnames=("ks", "block_rows", "n_devices", "n_init"))
def _kmeans_centers(key, x, w, n_used, *, ks, block_rows, n_devices, n_init):
    """The 'kmeans' initialization's centres of every fit of :func:`_fit_restarts`
    (uncentred), so that several covariance types can share them."""
    blocks = make_blocks(x, w, block_rows, n_used, center=(w @ x) / jnp.sum(w))
    parts = []
    for group in _k_groups(ks):
        k_max = max(group)

        def one(key, n_active, blocks, k_max=k_max):
            return kmeans_centers(key, blocks, k_max, jnp.arange(k_max) < n_active)

        c = _over_fits(one, _fit_keys(key, group, n_init), (blocks,), n_devices)
        parts.append(jnp.pad(c, ((0, 0), (0, max(ks) - k_max), (0, 0))))
    return jnp.concatenate(parts)


@functools.partial(
    jax.jit,
    static_argnames=(
        "ks",
        "cov_cls",
        "method",
        "max_iter",
        "block_rows",
        "n_devices",
        "n_init",
        "with_scores",
        "report",
    ),
)
def _fit_restarts(
    key,
    x,
    w,
    n_used,
    tol,
    reg_covar,
    given,
    params0,
    lower_bound0,
    centers=None,
    *,
    ks,
    cov_cls,
    method,
    max_iter,
    block_rows,
    n_devices,
    n_init,
    with_scores=False,
    report=False,
):
    """Fits of ``k in ks`` components x ``n_init`` restarts, as one batch (k-major).

    Every fit is padded to ``max(ks)`` components; fit (k, i) uses restart key i
    whatever k, so it equals the plain k-component fit from the same key.
    """
    x, w = jnp.asarray(x), jnp.asarray(w)  # host arrays under jax.disable_jit()
    # The fast forms work about the data's centre: far less cancellation.
    blocks = make_blocks(x, w, block_rows, n_used, center=(w @ x) / jnp.sum(w))
    args = (blocks, tol, reg_covar, given, params0, lower_bound0)
    parts, start = [], 0
    for group in _k_groups(ks):
        static = (max(group), cov_cls, method, max_iter, with_scores, report)
        one = functools.partial(_one_restart, static=static)
        stop = start + len(group) * n_init
        c = None if centers is None else centers[start:stop, : max(group)]
        out, scores = _over_fits(one, (*_fit_keys(key, group, n_init), c), args, n_devices)
        params = jax.vmap(functools.partial(_pad_components, k_max=max(ks)))(out.params)
        parts.append((dataclasses.replace(out, params=params), scores))
        start = stop
    out, scores = jax.tree_util.tree_map(lambda *a: jnp.concatenate(a), *parts)
    return (out, scores) if with_scores else out


def fit_restarts(
    key: PRNGKeyArray,
    X: Float[Array, "n_samples n_features"],
    n_components: int,
    *,
    covariance_type: str = "full",
    n_init: int = 1,
    init_params: str = "kmeans",
    sample_weight: Float[Array, " n_samples"] | None = None,
    weights_init: Float[Array, " n_components"] | None = None,
    means_init: Float[Array, "n_components n_features"] | None = None,
    precisions_init: Array | None = None,
    params0: GMMParams | None = None,
    lower_bound0: float = -np.inf,
    tol: float = 1e-3,
    reg_covar: float = 1e-6,
    max_iter: int = 100,
    block_rows: int | None = None,
    n_devices: int | None = None,
) -> EMResult:
    """Fit ``n_init`` restarts in parallel; every field gets a leading restart axis.

    Parameters
    ----------
    key : jax.random key
        Restart i is initialized from ``jax.random.split(key, n_init)[i]``.
    X : array-like of shape (n_samples, n_features)
        float32 data gives float32 results, anything else float64 (64-bit JAX types
        are enabled for the call only).
    n_components : int
        The number of mixture components.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}, default='full'
    n_init : int, default=1
        The number of initializations to perform.
    init_params : {'kmeans', 'k-means++', 'random', 'random_from_data'}, default='kmeans'
        The method used to initialize the weights, the means and the precisions.
    sample_weight : array-like of shape (n_samples,), default=None
        Non-negative weights; an integer weight counts as that many copies of the row.
    weights_init, means_init, precisions_init : array-like, default=None
        User-provided initial weights, means and precisions (scikit-learn's shapes);
        each replaces the corresponding part of the initialization.
    params0 : GMMParams, default=None
        Start every restart from these parameters (a warm start).
    lower_bound0 : float, default=-inf
        Lower bound the first change is measured from (a warm start's previous one).
    tol : float, default=1e-3
        Convergence threshold on the change of the mean log-likelihood.
    reg_covar : float, default=1e-6
        Non-negative regularization added to the diagonal of covariances.
    max_iter : int, default=100
        The number of EM iterations to perform at most.
    block_rows : int, default=None
        Rows per block; chosen from the data's shape and dtype when None.
    n_devices : int, default=None
        Local devices to shard the restarts over; all of them when None.

    Returns
    -------
    EMResult
        With a leading axis of length ``n_init``.
    """
    return _run(
        key,
        X,
        (n_components,),
        covariance_type=covariance_type,
        n_init=n_init,
        init_params=init_params,
        sample_weight=sample_weight,
        weights_init=weights_init,
        means_init=means_init,
        precisions_init=precisions_init,
        params0=params0,
        lower_bound0=lower_bound0,
        tol=tol,
        reg_covar=reg_covar,
        max_iter=max_iter,
        block_rows=block_rows,
        n_devices=n_devices,
    )


def _check_key(key) -> None:
    if not isinstance(key, jax.Array):
        raise TypeError(
            f"key must be a jax.random key, got {type(key).__name__}; "
            "use jax.random.key(seed) to make one from an integer seed"
        )


def _device_count(n_devices: int | None, n_fits: int) -> int:
    """Local devices to shard ``n_fits`` fits over: all of them (or ``n_devices``), at
    most one per fit."""
    return min(jax.local_device_count() if n_devices is None else n_devices, n_fits)


def _batch_columns(ks: tuple[int, ...], n_init: int, n_devices: int) -> int:
    """Per-row width (fits x components) of the widest batch one device runs, which
    :func:`~jaxgmm.em.prepare_rows` sizes the blocks for."""
    return max(-(-len(g) * n_init // n_devices) * max(g) for g in _k_groups(ks))


def shared_kmeans_centers(
    key, X, ks, *, n_init=1, covariance_type="full", sample_weight=None, n_devices=None
):
    """The 'kmeans' initial centres of every fit of :func:`_run` with the same
    arguments, uncentred. They do not depend on the covariance type, so a sweep
    computes them once for all its types (``covariance_type`` only sizes the blocks,
    as :func:`_run` sizes them for that type)."""
    _check_key(key)
    cov_cls = covariance_class(covariance_type)
    ks = tuple(int(k) for k in ks)
    dtype = float_dtype(X)
    with x64_scope(dtype):
        n_dev = _device_count(n_devices, n_init * len(ks))
        x, w, n_used, block_rows, _ = prepare_rows(
            X, sample_weight, cov_cls, dtype, None, _batch_columns(ks, n_init, n_dev)
        )
        return _kmeans_centers(
            key, x, w, n_used, ks=ks, block_rows=block_rows, n_devices=n_dev, n_init=n_init
        )


def _run(
    key,
    X,
    ks: tuple[int, ...],
    *,
    covariance_type="full",
    n_init=1,
    init_params="kmeans",
    sample_weight=None,
    weights_init=None,
    means_init=None,
    precisions_init=None,
    params0=None,
    lower_bound0=-np.inf,
    tol=1e-3,
    reg_covar=1e-6,
    max_iter=100,
    block_rows=None,
    n_devices=None,
    with_scores=False,
    centers=None,
):
    """Validate the core's arguments, pad the data and run the compiled batch of fits
    (``ks`` x ``n_init``); with ``with_scores`` also the final log-likelihood and
    responsibility entropy of each fit.

    ``centers`` (from :func:`shared_kmeans_centers`) replaces the 'kmeans' initialization's
    own k-means, so that a sweep's covariance types share one.
    """
    _check_key(key)
    cov_cls = covariance_class(covariance_type)
    if init_params not in INIT_METHODS:
        raise ValueError(f"init_params must be one of {sorted(INIT_METHODS)}, got {init_params!r}")
    dtype = float_dtype(X)
    with x64_scope(dtype):
        ks = tuple(int(k) for k in ks)
        sample_weight, scale = _unit_weights(sample_weight)
        n_dev = _device_count(n_devices, n_init * len(ks))
        x, w, n_used, block_rows, _ = prepare_rows(
            X, sample_weight, cov_cls, dtype, block_rows, _batch_columns(ks, n_init, n_dev)
        )
        cast = lambda a: None if a is None else jnp.asarray(a, dtype)
        given = _GivenInit(cast(weights_init), cast(means_init), cast(precisions_init))
        if params0 is not None:
            params0 = jax.tree_util.tree_map(cast, params0)
        out = _fit_restarts(
            key,
            x,
            w,
            n_used,
            jnp.asarray(tol, dtype),
            jnp.asarray(reg_covar, dtype),
            given,
            params0,
            jnp.asarray(lower_bound0, dtype),
            centers,
            cov_cls=cov_cls,
            method=init_params,
            max_iter=max_iter,
            block_rows=block_rows,
            n_devices=n_dev,
            n_init=n_init,
            ks=ks,
            with_scores=with_scores,
            report=_progress.active(),
        )
        if not with_scores:
            return out
        out, scores = out  # weighted sums, back in the caller's weights
        return out, jax.tree_util.tree_map(lambda a: a * scale, scores)


def _unit_weights(sample_weight):
    """Sample weights scaled by a power of two (exactly) so that the largest is in
    [0.5, 1), and that power. A fit depends on the weights' ratios alone, but its
    guards (``nk + 10 eps``, the collapse floor) assume weights near one: weights of
    1e-300 gave a lower bound of -9.4e6 against -3.5."""
    if sample_weight is None:
        return None, 1.0
    xp = np if isinstance(sample_weight, np.ndarray) else jnp
    _, exponent = xp.frexp(xp.max(sample_weight))
    return xp.ldexp(sample_weight, -exponent), xp.ldexp(1.0, exponent)


def best_index(results: EMResult, among: np.ndarray | None = None) -> int | Array:
    """The restart with the highest lower bound; the first one on ties.

    Restarts that failed (``Status.NON_FINITE``) are chosen only if all failed;
    with ``among`` (a boolean mask), only those restarts are considered.
    """
    traced = isinstance(results.lower_bound, jax.core.Tracer)
    xp = jnp if traced else np  # inside jit or vmap, the index stays an array
    lb = xp.asarray(results.lower_bound)
    ok = (xp.asarray(results.status) != Status.NON_FINITE) & xp.isfinite(lb)
    if among is not None:
        ok = xp.where(xp.any(ok & among), ok & among, ok)
    index = xp.argmax(xp.where(ok, lb, -xp.inf))
    return index if traced else int(index)


def select(results: EMResult, index: int) -> EMResult:
    """Restart ``index`` of a batched result."""
    return jax.tree_util.tree_map(lambda a: a[index], results)


def fit(key: PRNGKeyArray, X, n_components: int, **kwargs) -> EMResult:
    """Fit a Gaussian mixture by EM with ``n_init`` parallel restarts; keep the best.

    Takes the same arguments as :func:`fit_restarts` and returns the restart with the
    highest lower bound (the first one on ties, as scikit-learn).

    Examples
    --------
    >>> import jax, numpy as np
    >>> from jaxgmm import fit
    >>> X = np.random.default_rng(0).normal(size=(200, 2))
    >>> result = fit(jax.random.key(0), X, 2, n_init=4)
    >>> result.params.means.shape
    (2, 2)
    """
    results = fit_restarts(key, X, n_components, **kwargs)
    with x64_scope(results.lower_bound.dtype):
        return select(results, best_index(results))
