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

from ._typing import Array, Float, PRNGKeyArray, Status, float_dtype, x64_scope
from .covariance import covariance_class
from .em import EMResult, final_scores, make_blocks, prepare_rows, run_em
from .init import INIT_METHODS, initialize
from .params import GMMParams

__all__ = ["best_index", "fit", "fit_restarts", "select"]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class _GivenInit:
    """User-given initial parameters in scikit-learn's form (any may be None)."""

    weights: Array | None
    means: Array | None
    precisions: Array | None


def _one_restart(key, n_active, blocks, tol, reg_covar, given, params0, lower_bound0, *, static):
    n_components, cov_cls, method, max_iter, with_scores = static
    # Components past n_active are padding (a sweep over K): weight 0, no data.
    active = jnp.arange(n_components) < n_active
    if params0 is None:
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
    )
    return result, (final_scores(result.params, blocks) if with_scores else None)


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
    *,
    ks,
    cov_cls,
    method,
    max_iter,
    block_rows,
    n_devices,
    n_init,
    with_scores=False,
):
    """Fits of ``k in ks`` components x ``n_init`` restarts, as one batch (k-major).

    Every fit is padded to ``max(ks)`` components; fit (k, i) uses restart key i
    whatever k, so it equals the plain k-component fit from the same key.
    """
    x, w = jnp.asarray(x), jnp.asarray(w)  # host arrays under jax.disable_jit()
    # Work on centred data: the second moments then lose far less to cancellation.
    center = (w @ x) / jnp.sum(w)
    blocks = make_blocks(x - center, w, block_rows, n_used)
    given = dataclasses.replace(given, means=None if given.means is None else given.means - center)
    params0 = None if params0 is None else params0.shift(-center)
    static = (max(ks), cov_cls, method, max_iter, with_scores)
    one = functools.partial(_one_restart, static=static)
    args = (blocks, tol, reg_covar, given, params0, lower_bound0)
    batched = jax.vmap(one, in_axes=(0, 0) + (None,) * len(args))
    keys = jnp.tile(jax.random.split(key, n_init), len(ks))
    n_active = jnp.repeat(jnp.asarray(ks, jnp.int32), n_init)
    n_fits = len(ks) * n_init
    if n_devices > 1:
        mesh = Mesh(np.asarray(jax.local_devices()[:n_devices]), ("restart",))
        pad = -(-n_fits // n_devices) * n_devices - n_fits
        keys = jnp.concatenate([keys, jnp.repeat(keys[:1], pad, 0)])
        n_active = jnp.concatenate([n_active, jnp.repeat(n_active[:1], pad, 0)])
        batched = jax.shard_map(
            batched,
            mesh=mesh,
            in_specs=(P("restart"), P("restart")) + (P(),) * len(args),
            out_specs=P("restart"),
            # Each device runs its restarts independently; no collective is involved,
            # so the replicated-vs-varying type check only gets in the way of the
            # zero-initialised scan carries.
            check_vma=False,
        )
    out, scores = jax.tree_util.tree_map(lambda a: a[:n_fits], batched(keys, n_active, *args))
    out = dataclasses.replace(out, params=out.params.shift(center))
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
):
    """Validate the core's arguments, pad the data and run the compiled batch of fits
    (``ks`` x ``n_init``); with ``with_scores`` also the final log-likelihood and
    responsibility entropy of each fit."""
    if not isinstance(key, jax.Array):
        raise TypeError(
            f"key must be a jax.random key, got {type(key).__name__}; "
            "use jax.random.key(seed) to make one from an integer seed"
        )
    cov_cls = covariance_class(covariance_type)
    if init_params not in INIT_METHODS:
        raise ValueError(f"init_params must be one of {sorted(INIT_METHODS)}, got {init_params!r}")
    dtype = float_dtype(X)
    with x64_scope(dtype):
        x, w, n_used, block_rows, _ = prepare_rows(X, sample_weight, cov_cls, dtype, block_rows)
        cast = lambda a: None if a is None else jnp.asarray(a, dtype)
        given = _GivenInit(cast(weights_init), cast(means_init), cast(precisions_init))
        if params0 is not None:
            params0 = jax.tree_util.tree_map(cast, params0)
        n_dev = jax.local_device_count() if n_devices is None else n_devices
        return _fit_restarts(
            key,
            x,
            w,
            n_used,
            jnp.asarray(tol, dtype),
            jnp.asarray(reg_covar, dtype),
            given,
            params0,
            jnp.asarray(lower_bound0, dtype),
            cov_cls=cov_cls,
            method=init_params,
            max_iter=max_iter,
            block_rows=block_rows,
            n_devices=min(n_dev, n_init * len(ks)),
            n_init=n_init,
            ks=tuple(int(k) for k in ks),
            with_scores=with_scores,
        )


def best_index(results: EMResult, among: np.ndarray | None = None) -> int:
    """The restart with the highest lower bound; the first one on ties.

    Restarts that failed (``Status.NON_FINITE``) are chosen only if all failed;
    with ``among`` (a boolean mask), only those restarts are considered.
    """
    lb = np.asarray(results.lower_bound)
    ok = (np.asarray(results.status) != Status.NON_FINITE) & np.isfinite(lb)
    if among is not None and (ok & among).any():
        ok &= among
    return int(np.argmax(np.where(ok, lb, -np.inf)))


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
