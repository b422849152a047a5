"""What the scikit-learn estimators share: the fit template, validation, seeds,
errors and warnings, and the methods that use a fitted mixture.

The estimators are siblings, as in ``sklearn.mixture``: :class:`BaseMixture` here,
:class:`~jaxgmm.GaussianMixture` and :class:`~jaxgmm.BayesianGaussianMixture` on it,
and :class:`~jaxgmm.GaussianMixtureIC` (a model selection that owns a fitted
``GaussianMixture``). They are the only place with seeds, numpy and errors; the core
they call is pure JAX.
"""

from __future__ import annotations

import copy
import numbers
import os
import time
import warnings
from pathlib import Path
from typing import ClassVar

import jax
import numpy as np
import sklearn
from sklearn.base import BaseEstimator, DensityMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.fixes import parse_version
from sklearn.utils.validation import (
    _check_sample_weight,
    check_array,
    check_is_fitted,
    validate_data,
)

from ._covariance import COVARIANCE_TYPES, STRUCTURES, covariance_class
from ._em import (
    label_rows_padded,
    log_joint_host,
    score_rows_host,
    score_rows_padded,
    scores_on_host,
)
from ._io import save
from ._multistart import best_index, select
from ._params import GMMParams, sample_mixture
from ._stream import CHUNK_BYTES
from ._typing import Status, x64_scope
from .data import as_source, chunks, is_source, write_rows

__all__ = [
    "BaseMixture",
    "check_means",
    "check_precisions",
    "check_sample_weight",
    "check_shape",
    "check_weights",
    "enable_compilation_cache",
    "key_from",
    "mixture_attributes",
    "n_rows",
    "sklearn_covariance_type",
    "validate_source",
    "warn_not_converged",
]

ILL_DEFINED = (
    "Fitting the mixture model failed because some components have "
    "ill-defined empirical covariance (for instance caused by singleton "
    "or collapsed samples). Try to decrease the number of components, "
    "increase reg_covar, or scale the input data."
)
FLOAT32_HINT = (
    " The numerical accuracy can also be improved by passing float64 data instead of float32."
)
#: The fitted attributes of scikit-learn's mixtures that :meth:`BaseMixture.to_sklearn`
#: copies (``feature_names_in_`` where set); ``lower_bounds_`` is scikit-learn 1.7's.
SKLEARN_ATTRIBUTES = (
    "weights_",
    "means_",
    "covariances_",
    "precisions_",
    "precisions_cholesky_",
    "converged_",
    "n_iter_",
    "lower_bound_",
    *(("lower_bounds_",) if parse_version(sklearn.__version__) >= parse_version("1.7") else ()),
    "n_features_in_",
    "feature_names_in_",
)


def enable_compilation_cache(path: str | os.PathLike | None = None) -> str | None:
    """Keep compiled programs on disk so that a new process need not recompile.

    jaxgmm's own programs (fitting, scoring) are kept in its program cache whether or
    not this is called; this sets JAX's process-wide ``jax_compilation_cache_dir``,
    so it caches your other JAX programs too: neither the library nor the ``jaxgmm``
    command calls it. Uses ``path``, else ``$JAXGMM_CACHE_DIR``,
    else ``~/.cache/jaxgmm/xla``; ``JAXGMM_CACHE_DIR=off`` switches it off. A cache
    directory the user already gave JAX is left alone.

    Returns
    -------
    str or None
        The directory in use, or None when off.
    """
    current = jax.config.jax_compilation_cache_dir
    if current:
        return current
    env = os.environ.get("JAXGMM_CACHE_DIR", "")
    if path is None and env.lower() in ("off", "0", "none", "false"):
        return None
    if path is None:
        path = (
            env or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "jaxgmm" / "xla"
        )
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    return str(path)


def warn_not_converged(stacklevel: int) -> None:
    warnings.warn(
        "Best performing initialization did not converge. "
        "Try different init parameters, or increase max_iter, "
        "tol, or check for degenerate data.",
        ConvergenceWarning,
        stacklevel=stacklevel,
    )


def seed_from(random_state) -> int:
    """An int seed from scikit-learn's ``random_state`` (None, int or RandomState)."""
    if isinstance(random_state, numbers.Integral):
        return int(random_state)
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


def key_from(random_state) -> jax.Array:
    if isinstance(random_state, jax.Array) and jax.dtypes.issubdtype(
        random_state.dtype, jax.dtypes.prng_key
    ):
        return random_state
    seed = seed_from(random_state)
    if jax.config.jax_default_prng_impl == "threefry2x32" and 0 <= seed < 2**31:
        # jax.random.key(seed)'s data, made on the host: jax.random.key compiles its
        # seeding in each new process (0.12 s of a first fit)
        return jax.random.wrap_key_data(np.asarray([0, seed], np.uint32))
    return jax.random.key(seed)


def check_shape(param, shape, name):
    if param.shape != shape:
        raise ValueError(
            f"The parameter '{name}' should have the shape of {shape}, but got {param.shape}"
        )


def check_weights(weights, n_components):
    weights = check_array(weights, dtype=[np.float64, np.float32], ensure_2d=False)
    check_shape(weights, (n_components,), "weights")
    if np.any(weights < 0.0) or np.any(weights > 1.0):
        raise ValueError(
            "The parameter 'weights' should be in the range [0, 1], but got max value "
            f"{np.min(weights):.5f}, min value {np.max(weights):.5f}"
        )
    atol = 1e-6 if weights.dtype == np.float32 else 1e-8
    if not np.allclose(np.abs(1.0 - np.sum(weights)), 0.0, atol=atol):
        raise ValueError(
            "The parameter 'weights' should be normalized, but got sum(weights) = "
            f"{np.sum(weights):.5f}"
        )
    return weights


def check_means(means, n_components, n_features):
    means = check_array(means, dtype=[np.float64, np.float32], ensure_2d=False)
    check_shape(means, (n_components, n_features), "means")
    return means


def check_precisions(precisions, covariance_type, n_components, n_features):
    cov_cls = covariance_class(covariance_type)
    shape = cov_cls.shape(n_components, n_features)
    precisions = check_array(
        precisions, dtype=[np.float64, np.float32], ensure_2d=False, allow_nd=len(shape) > 2
    )
    check_shape(precisions, shape, f"{covariance_type} precision")
    if not cov_cls.matrices:
        if np.any(precisions <= 0.0):
            raise ValueError(f"'{covariance_type} precision' should be positive")
    else:
        for p in precisions.reshape((-1, n_features, n_features)):
            if not (np.allclose(p, p.T) and np.all(np.linalg.eigvalsh(p) > 0.0)):
                raise ValueError(
                    f"'{covariance_type} precision' should be symmetric, positive-definite"
                )
    return precisions


def check_sample_weight(sample_weight, X, n_components: int):
    """scikit-learn's checks of ``sample_weight`` (None passes), and at least
    ``n_components`` positive weights."""
    if sample_weight is None:
        return None
    sample_weight = _check_sample_weight(sample_weight, X, dtype=X.dtype, ensure_non_negative=True)
    if not np.all(np.isfinite(sample_weight)):
        raise ValueError("sample_weight must be finite, got NaN or infinity.")
    n_positive = int(np.count_nonzero(sample_weight))
    if n_positive < n_components:
        raise ValueError(
            f"sample_weight has {n_positive} positive values; at least "
            f"n_components = {n_components} samples must have a positive weight."
        )
    return sample_weight


def mixture_attributes(result, dtype, max_iter: int) -> dict:
    """scikit-learn's fitted attributes of a Gaussian mixture from an engine result
    (one restart, numpy arrays), in ``dtype``."""
    p = result.params
    cov = p.covariance
    as_np = lambda a: np.asarray(a, dtype=dtype)
    n_iter = int(result.n_iter)
    chol = as_np(cov.precisions_cholesky)
    return {
        "weights_": as_np(p.weights),
        "means_": as_np(p.means),
        "covariances_": as_np(cov.covariances),
        "precisions_cholesky_": chol,
        "precisions_": type(cov).precisions_from_cholesky(chol),
        "n_iter_": n_iter,
        "converged_": bool(result.converged),
        "lower_bounds_": [float(v) for v in np.asarray(result.lower_bounds)[:n_iter]],
        "lower_bound_": float(result.lower_bound) if max_iter > 0 else -np.inf,
        "status_": Status(int(result.status)).name.lower(),
    }


def sklearn_covariance_type(covariance_type: str) -> str:
    """scikit-learn's ``covariance_type`` for one of jaxgmm's: the structure that holds
    the covariances ('EII' -> 'spherical', 'VEI' -> 'diag', 'VEV' -> 'full', ...)."""
    cls = covariance_class(covariance_type)
    return next(c.name for c in cls.__mro__ if c in STRUCTURES)


def n_rows(X) -> int:
    """The number of rows of an array or a data source."""
    return as_source(X).n_rows if is_source(X) else np.shape(X)[0]


def validate_source(estimator, X, sample_weight, min_rows: int):
    """A data source's checks before a fit (its values are checked as it is read):
    sets ``n_features_in_``, and ``feature_names_in_`` from a source's ``columns``."""
    source = as_source(X, sample_weight)
    if source.n_rows < max(min_rows, 2):
        raise ValueError(
            f"Expected n_samples >= {max(min_rows, 2)} (n_components and at least 2), "
            f"but the source has {source.n_rows} rows"
        )
    estimator.n_features_in_ = source.n_features
    columns = getattr(source, "columns", None)
    if columns is not None:
        estimator.feature_names_in_ = np.asarray(columns, dtype=object)
    elif hasattr(estimator, "feature_names_in_"):
        del estimator.feature_names_in_
    return source


class BaseMixture(DensityMixin, BaseEstimator):
    """The fit template and the methods of a fitted Gaussian mixture (abstract).

    A subclass gives its parameters and constraints, :meth:`_check_parameters`,
    :meth:`_run` (the engine's front door it fits with), :meth:`_set_result` and
    :meth:`_params` (what the engine continues from and scores with).
    """

    # -- fitting -------------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, sample_weight=None):
        """Estimate model parameters with the EM algorithm.

        The method fits the model ``n_init`` times (in parallel) and sets the
        parameters with which the model has the largest likelihood or lower bound.
        Within each trial, the method iterates between E-step and M-step for
        ``max_iter`` times until the change of likelihood or lower bound is less than
        ``tol``, otherwise, a ``ConvergenceWarning`` is raised. If ``warm_start`` is
        ``True``, then ``n_init`` is ignored and a single initialization is performed
        upon the first call. Upon consecutive calls, training starts where it left off.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            List of n_features-dimensional data points. Each row corresponds to a
            single data point.
        y : Ignored
            Not used, present for API consistency by convention.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights of the samples; an integer weight counts as that
            many copies of the row, a zero weight as no row at all.

        Returns
        -------
        self : object
            The fitted mixture.
        """
        self._fit(X, sample_weight)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_predict(self, X, y=None, sample_weight=None):
        """Estimate model parameters using X and predict the labels for X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            List of n_features-dimensional data points.
        y : Ignored
            Not used, present for API consistency by convention.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights of the samples.

        Returns
        -------
        labels : array, shape (n_samples,)
            Component labels.
        """
        X = self._fit(X, sample_weight)
        # A final E-step, so that fit_predict(X) always equals fit(X).predict(X).
        return self._log_prob_resp(X)[1].argmax(axis=1)

    def _validate_fit_input(self, X, sample_weight):
        """scikit-learn's checks of X and of the sample weights, for every fit (a data
        source's are made as it is read)."""
        if is_source(X):
            return validate_source(self, X, sample_weight, self.n_components), None
        X = validate_data(self, X, dtype=[np.float64, np.float32], ensure_min_samples=2)
        if X.shape[0] < self.n_components:
            raise ValueError(
                "Expected n_samples >= n_components "
                f"but got n_components = {self.n_components}, "
                f"n_samples = {X.shape[0]}"
            )
        sample_weight = self._check_sample_weight(sample_weight, X)
        return X, sample_weight

    def _fit(self, X, sample_weight):
        """The template every mixture fits by: validate once, run the engine, pick the
        best restart, convert to numpy once, set the attributes, warn; returns the
        validated X."""
        X, sample_weight = self._validate_fit_input(X, sample_weight)
        checked = self._check_parameters(X)
        do_init = not (self.warm_start and hasattr(self, "converged_"))
        if not do_init:
            self._check_warm_start()
        start = time.perf_counter()
        results = self._run(key_from(self.random_state), X, sample_weight, checked, do_init)
        with x64_scope(X.dtype):
            results = jax.tree_util.tree_map(np.asarray, results)
        if self.verbose:
            self._print_verbose(results, time.perf_counter() - start)
        result = select(results, best_index(results))
        if result.status == Status.NON_FINITE:
            raise ValueError(ILL_DEFINED + (FLOAT32_HINT if X.dtype == np.float32 else ""))
        self._set_result(result, X.dtype)
        if not self.converged_ and self.max_iter > 0:
            warn_not_converged(stacklevel=4)
        return X

    def _check_parameters(self, X):
        """Check the parameters that depend on X; what it returns reaches :meth:`_run`."""
        return None

    def _run(self, key, X, sample_weight, checked, do_init):
        """The engine's results of every restart (a leading restart axis)."""
        raise NotImplementedError

    def _set_result(self, result, dtype):
        """Set the fitted attributes from the chosen restart (numpy arrays)."""
        raise NotImplementedError

    def _engine_kwargs(self, sample_weight, do_init) -> dict:
        """The front door's keyword arguments both mixtures share: a fresh start
        (``n_init`` restarts) or a warm one (from the fitted parameters)."""
        kwargs = dict(
            covariance_type=self.covariance_type,
            tol=self.tol,
            reg_covar=self.reg_covar,
            max_iter=self.max_iter,
            sample_weight=sample_weight,
        )
        if do_init:
            return kwargs | dict(n_init=self.n_init, init_params=self.init_params)
        return kwargs | dict(params0=self._params(), lower_bound0=self.lower_bound_)

    def _check_warm_start(self):
        """A warm start continues the fitted model: the parameters that shape it
        must not have changed since."""
        fitted = {"n_components": self.means_.shape[0], "covariance_type": self._fitted_type()}
        for name, value in fitted.items():
            if getattr(self, name) != value:
                raise ValueError(
                    f"warm_start=True continues the fitted model, which has {name}={value!r}, "
                    f"but {name} is now {getattr(self, name)!r}; set warm_start=False to fit "
                    "a new model"
                )

    def _fitted_type(self) -> str:
        k, d = self.means_.shape
        fits = lambda cls: cls.shape(k, d) == np.shape(self.covariances_)
        if fits(covariance_class(self.covariance_type)):
            return self.covariance_type
        return next(name for name, cls in COVARIANCE_TYPES.items() if fits(cls))

    def _check_sample_weight(self, sample_weight, X):
        return check_sample_weight(sample_weight, X, self.n_components)

    def _precisions_from_cholesky(self, chol):
        return covariance_class(self.covariance_type).precisions_from_cholesky(chol)

    def _mixture(self) -> GMMParams:
        """The fitted mixture: weights, means and covariances."""
        cov_cls = covariance_class(self.covariance_type)
        return GMMParams(
            self.weights_, self.means_, cov_cls(self.covariances_, self.precisions_cholesky_)
        )

    def _print_verbose(self, results, elapsed):
        for i in range(len(results.n_iter)):
            print(f"Initialization {i}")
            n_iter = int(results.n_iter[i])
            trace = np.asarray(results.lower_bounds[i])
            per_iter = elapsed / max(int(np.max(results.n_iter)), 1)
            for it in range(self.verbose_interval, n_iter + 1, self.verbose_interval):
                if self.verbose == 1:
                    print(f"  Iteration {it}")
                else:
                    prev = trace[it - 2] if it >= 2 else -np.inf
                    print(
                        f"  Iteration {it}\t time lapse {per_iter * self.verbose_interval:.5f}s"
                        f"\t ll change {trace[it - 1] - prev:.5f}"
                    )
            msg = "converged" if results.converged[i] else "did not converge"
            if self.verbose == 1:
                print(f"Initialization {msg}.")
            else:
                print(
                    f"Initialization {msg}. time lapse {elapsed:.5f}s\t lower bound"
                    f" {float(results.lower_bound[i]):.5f}."
                )

    # -- using the model ---------------------------------------------------------
    def _log_prob_resp(self, X):
        if is_source(X):  # in memory: (n_samples,) and (n_samples, n_components)
            parts = list(self._source_outputs(X))
            return tuple(np.concatenate(p) for p in zip(*parts, strict=True))
        return self._log_prob_resp_rows(X)

    def _scoring_params(self, X):
        """The model's parameters on the host, in the dtype scoring ``X`` takes."""
        dtype = (
            np.float32 if X.dtype == np.float32 and self.means_.dtype == np.float32 else np.float64
        )
        return jax.tree_util.tree_map(lambda a: np.asarray(a, dtype), self._params())

    def _log_prob_resp_rows(self, X, params=None):
        """``(log_prob, log_resp)`` of in-memory rows (``params``: their
        :meth:`_scoring_params`, when the caller has them)."""
        params = self._scoring_params(X) if params is None else params
        if scores_on_host(params, len(X)):
            return score_rows_host(params, X)
        log_prob, log_resp, n, k = score_rows_padded(params, np.asarray(X, params.means.dtype))
        return np.asarray(log_prob)[:n], np.asarray(log_resp)[:n, :k]

    def _validate(self, X):
        check_is_fitted(self)
        if is_source(X):
            source = as_source(X)
            if source.n_features != self.n_features_in_:
                raise ValueError(
                    f"X has {source.n_features} features, but {type(self).__name__} is "
                    f"expecting {self.n_features_in_} features as input."
                )
            return source
        return validate_data(self, X, reset=False)

    def _source_outputs(self, source):
        """``(log_prob, log_resp)`` of each chunk of a source, in order."""
        rows = max(1024, CHUNK_BYTES // (8 * source.n_features))
        for _, x, _ in chunks(source, rows):
            yield self._log_prob_resp_rows(np.asarray(x))

    def _outputs(self, X, out, column: str, fn):
        """``fn(log_prob, log_resp)`` of the rows of X: in memory, or, with ``out`` (a
        ``.npy`` or Parquet path), written there chunk by chunk (a source's rows are
        never all in memory) and ``out`` returned."""
        X = self._validate(X)
        if out is None:
            return fn(*self._log_prob_resp(X))
        parts = self._source_outputs(X) if is_source(X) else [self._log_prob_resp_rows(X)]
        write_rows(out, column, n_rows(X), (fn(*p) for p in parts))
        return out

    def score_samples(self, X, out=None):
        """Compute the log-likelihood of each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            List of n_features-dimensional data points.
        out : str or path, default=None
            Write the result to this ``.npy`` or Parquet file, chunk by chunk, and
            return the path (for a data source larger than memory).

        Returns
        -------
        log_prob : array, shape (n_samples,)
            Log-likelihood of each sample in `X` under the current model.
        """
        return self._outputs(X, out, "log_likelihood", lambda log_prob, _: log_prob)

    def score(self, X, y=None):
        """Compute the per-sample average log-likelihood of the given data X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_dimensions)
            List of n_features-dimensional data points.
        y : Ignored
            Not used, present for API consistency by convention.

        Returns
        -------
        log_likelihood : float
            Log-likelihood of `X` under the Gaussian mixture model.
        """
        X = self._validate(X)
        if not is_source(X):
            return float(np.mean(self._log_prob_resp(X)[0]))
        parts = self._source_outputs(X)
        return float(sum(np.sum(log_prob, dtype=np.float64) for log_prob, _ in parts) / X.n_rows)

    def predict(self, X, out=None):
        """Predict the labels for the data samples in X using trained model.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            List of n_features-dimensional data points.
        out : str or path, default=None
            Write the result to this ``.npy`` or Parquet file, chunk by chunk, and
            return the path (for a data source larger than memory).

        Returns
        -------
        labels : array, shape (n_samples,)
            Component labels.
        """
        if out is None and not is_source(X):
            X = self._validate(X)
            params = self._scoring_params(X)
            if scores_on_host(params, len(X)):  # small inputs: no normalising
                return log_joint_host(params, X).argmax(axis=1)
            labels, n = label_rows_padded(params, np.asarray(X, params.means.dtype))
            return np.asarray(labels)[:n].astype(np.intp)
        return self._outputs(X, out, "label", lambda _, log_resp: log_resp.argmax(axis=1))

    def predict_proba(self, X, out=None):
        """Evaluate the components' density for each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            List of n_features-dimensional data points.
        out : str or path, default=None
            Write the result to this ``.npy`` or Parquet file, chunk by chunk, and
            return the path (for a data source larger than memory).

        Returns
        -------
        resp : array, shape (n_samples, n_components)
            Density of each Gaussian component for each sample in X.
        """
        return self._outputs(X, out, "probability", lambda _, log_resp: np.exp(log_resp))

    def sample(self, n_samples=1, random_state=None):
        """Generate random samples from the fitted Gaussian distribution.

        Parameters
        ----------
        n_samples : int, default=1
            Number of samples to generate.
        random_state : int, RandomState instance, jax.random key or None, default=None
            Seed of this draw; None uses the estimator's ``random_state``, as
            scikit-learn does.

        Returns
        -------
        X : array, shape (n_samples, n_features)
            Randomly generated sample, grouped by component.
        y : array, shape (nsamples,)
            Component labels.
        """
        check_is_fitted(self)
        if n_samples < 1:
            raise ValueError(
                f"Invalid value for 'n_samples': {n_samples} . The sampling requires at "
                "least one sample."
            )
        key = key_from(self.random_state if random_state is None else random_state)
        with x64_scope(self.means_.dtype):
            X, y = sample_mixture(self._mixture(), key, int(n_samples))
            return np.asarray(X), np.asarray(y, dtype=np.int64)

    def save(self, path):
        """Write the model to ``path``: numpy arrays and JSON metadata, no pickle.

        Read it back with :func:`jaxgmm.load`.
        """
        save(self, path)

    # -- scikit-learn's own estimator ----------------------------------------------
    #: The ``sklearn.mixture`` class that :meth:`to_sklearn` makes, and the fitted
    #: attributes it copies besides :data:`SKLEARN_ATTRIBUTES`.
    _sklearn_class: ClassVar[str]
    _sklearn_attributes: ClassVar[tuple[str, ...]] = ()

    def to_sklearn(self):
        """scikit-learn's own estimator of this fitted mixture, for scikit-learn's
        tooling (skl2onnx's ONNX export, for one).

        A fitted :class:`sklearn.mixture.GaussianMixture` (from a ``GaussianMixture``)
        or :class:`sklearn.mixture.BayesianGaussianMixture` (from a
        ``BayesianGaussianMixture``): the same constructor parameters and fitted
        attributes (``weights_``, ``means_``, ``covariances_``, ``precisions_``,
        ``precisions_cholesky_``, ``converged_``, ``n_iter_``, ``lower_bound_``,
        ``lower_bounds_`` from scikit-learn 1.7, ``n_features_in_``,
        ``feature_names_in_`` where set, and the variational mixture's posterior and
        priors), so its ``predict``, ``predict_proba``, ``score_samples`` and ``score``
        agree with this model's to float64 rounding. ``status_`` has no counterpart in
        scikit-learn.

        mclust's families other than scikit-learn's four become scikit-learn's type
        of the structure that holds their covariances: EII 'spherical'; EEI, VEI and
        EVI 'diag'; VEE, EVE, VVE, EEV, VEV and EVV 'full'. The mixture is the same,
        but scikit-learn's ``bic`` and ``aic`` count that type's free parameters,
        which are more than the family's (EII has one variance, 'spherical' one per
        component), so they are larger than this model's; and refitting the returned
        estimator fits scikit-learn's type, not the family.

        Returns
        -------
        estimator : sklearn.mixture.GaussianMixture or BayesianGaussianMixture
            Fitted, with copies of this model's parameters and arrays: changing one
            changes nothing in the other. The arrays are writable, as scikit-learn's
            are (this model's are read-only views of JAX's buffers), and in this
            model's dtype, as scikit-learn's own fit of the same data gives them
            (float32 from float32 data).

        Raises
        ------
        NotFittedError
            If the model is not fitted yet.

        Examples
        --------
        >>> import numpy as np
        >>> from jaxgmm import GaussianMixture
        >>> X = np.array([[1, 2], [1, 4], [1, 0], [10, 2], [10, 4], [10, 0]])
        >>> gm = GaussianMixture(n_components=2, random_state=0).fit(X)
        >>> sk = gm.to_sklearn()  # a fitted sklearn.mixture.GaussianMixture
        >>> bool(np.all(sk.predict(X) == gm.predict(X)))
        True
        """
        check_is_fitted(self)
        # imported when asked for: sklearn.mixture imports sklearn.cluster, which the
        # estimators do not need
        from sklearn import mixture

        params = copy.deepcopy(self.get_params(deep=False))
        # the fitted model's, should set_params have changed them since the fit
        params["n_components"] = self.means_.shape[0]
        params["covariance_type"] = sklearn_covariance_type(self._fitted_type())
        estimator = getattr(mixture, self._sklearn_class)(**params)
        for name in (*SKLEARN_ATTRIBUTES, *self._sklearn_attributes):
            if hasattr(self, name):
                setattr(estimator, name, copy.deepcopy(getattr(self, name)))
        return estimator
