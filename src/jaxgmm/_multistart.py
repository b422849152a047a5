"""Restarts in parallel: the functional GMM front door onto the engine.

The seed spread its initializations over devices with ``pmap``. Here one restart is a
single-problem function; :mod:`jaxgmm._engine` batches it with ``jax.vmap`` over
``jax.random.split(key, n_init)`` and, with several local devices, splits that
restart axis over them with ``jax.shard_map``. Restart i always uses key i, so the
chosen model does not depend on the device count.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from . import distributed
from ._covariance import covariance_class
from ._em import EMResult
from ._engine import Batch, GivenInit, Inputs, Options, check_key, run
from ._init import INIT_METHODS
from ._params import GMMParams
from ._typing import Array, Float, PRNGKeyArray, Status, x64_scope
from .data import ArraySource, as_source, is_source, share

__all__ = ["best_index", "fit", "fit_restarts", "select"]


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
    best_only: bool = False,
    host: bool = False,
) -> EMResult:
    """Fit ``n_init`` restarts, in parallel (``vmap``); every field gets a leading
    restart axis (of one, for small data with ``best_only``).

    Parameters
    ----------
    key : jax.random key
        Restart i is initialized from ``jax.random.split(key, n_init)[i]``.
    X : array-like of shape (n_samples, n_features), data source or path
        float32 data gives float32 results, anything else float64 (64-bit JAX types
        are enabled for the call only). A data source (:mod:`jaxgmm.data`), or the
        path of a ``.npy`` file, a Parquet file or a directory of them, is read in
        chunks, one pass per iteration, never whole (see :mod:`jaxgmm._stream` for
        how its initialization differs).
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
    best_only : bool, default=False
        Only the best restart (:func:`best_index`) is wanted. Small data may then
        run its restarts one after another in a program that every ``n_init`` up to
        16 shares, and return that restart alone.
    host : bool, default=False
        Return NumPy arrays instead of device arrays (what scikit-learn's estimators
        keep): small data's results are then never copied back to the device.

    Returns
    -------
    EMResult
        With a leading axis of length ``n_init`` (or 1, with ``best_only``).
    """
    if init_params not in INIT_METHODS:
        raise ValueError(f"init_params must be one of {sorted(INIT_METHODS)}, got {init_params!r}")
    if streams(X) or across_processes(X):  # not one process's array in memory
        road = _fit_across if across_processes(X) else _fit_source
        result = road(
            key,
            X,
            n_components,
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
        )
        return jax.device_get(result) if host else result
    options = Options(covariance_class(covariance_type), init=init_params, max_iter=max_iter)
    batch = Batch((int(n_components),), n_init, n_devices, block_rows, best_only=best_only)
    inputs = Inputs(
        tol=tol,
        reg_covar=reg_covar,
        lower_bound0=lower_bound0,
        given=GivenInit(weights_init, means_init, precisions_init),
        params0=params0,
    )
    return run(key, X, sample_weight, options, batch, inputs, host)[0]


def _fit_source(key, X, n_components, *, covariance_type, sample_weight, **kw):
    """:func:`fit_restarts` over a data source (:mod:`jaxgmm.data`), streamed."""
    from ._stream import fit_source

    check_key(key)
    source = local_source(X, sample_weight)
    cov_cls = covariance_class(covariance_type)
    return fit_source(key, source, n_components, covariance_class=cov_cls, **kw)


def _fit_across(key, X, n_components, *, covariance_type, n_init, init_params, sample_weight, **kw):
    """:func:`fit_restarts` over the rows of every process (``X``: this process's), as
    one program on every device of the run (:mod:`jaxgmm._spmd`)."""
    from . import _spmd
    from ._stream import sample_starts

    check_key(key)
    cov_cls = covariance_class(covariance_type)
    given = (kw.pop("weights_init"), kw.pop("means_init"), kw.pop("precisions_init"))
    options = Options(cov_cls, init=init_params, max_iter=kw.pop("max_iter"))
    inputs = Inputs(**kw, given=GivenInit(*given))  # tol, reg_covar, lower_bound0, params0
    starts, centers = sample_starts(
        key,
        ArraySource(X, sample_weight),
        [(cov_cls, n_components)],
        n_init=n_init,
        init_params=init_params,
        given=given,
        params0=inputs.params0,
        reg_covar=inputs.reg_covar,
    )
    options, inputs = _spmd.starting(options, inputs, starts, centers, 0)
    batch = Batch((int(n_components),), n_init)
    return _spmd.run(key, X, sample_weight, options, batch, inputs)[0]


def streams(X) -> bool:
    """Whether a fit on ``X`` is streamed: a data source or path."""
    return is_source(X)


def across_processes(X) -> bool:
    """Whether a fit on ``X`` is one program over the rows of every process: an array
    (this process's rows) in a multi-process run (:mod:`jaxgmm.distributed`)."""
    return not is_source(X) and distributed.process_count() > 1


def local_source(X, sample_weight=None):
    """The source this process reads. In a multi-process run
    (:mod:`jaxgmm.distributed`) a source or path is the whole data, of which this
    process reads its share, and an array is this process's rows."""
    if not is_source(X):
        return ArraySource(X, sample_weight)
    source = as_source(X, sample_weight)
    if distributed.process_count() > 1:
        source = share(source, distributed.process_index(), distributed.process_count())
    return source


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
    results = fit_restarts(key, X, n_components, **{"best_only": True, **kwargs})
    with x64_scope(results.lower_bound.dtype):
        return select(results, best_index(results))
