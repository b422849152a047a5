"""scikit-learn estimators over the core: the only place with seeds, numpy and errors.

``from jaxgmm import GaussianMixture`` is a drop-in replacement for
``sklearn.mixture.GaussianMixture``: the same constructor, attributes, methods, errors
and warnings. The ``n_init`` restarts run in parallel (one vmapped program, sharded
over local devices), and ``fit`` also takes ``sample_weight``.
"""

from __future__ import annotations

import math
import numbers
import os
import time
import warnings
from pathlib import Path
from typing import ClassVar

import jax
import numpy as np
from sklearn.base import BaseEstimator, DensityMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import (
    _check_sample_weight,
    check_array,
    check_is_fitted,
    validate_data,
)

from ._typing import Status, x64_scope
from .covariance import COVARIANCE_TYPES
from .em import score_rows_padded
from .multistart import best_index, fit_restarts, select
from .params import GMMParams

__all__ = [
    "BayesianGaussianMixture",
    "GaussianMixture",
    "GaussianMixtureIC",
    "enable_compilation_cache",
]

_ILL_DEFINED = (
    "Fitting the mixture model failed because some components have "
    "ill-defined empirical covariance (for instance caused by singleton "
    "or collapsed samples). Try to decrease the number of components, "
    "increase reg_covar, or scale the input data."
)
_FLOAT32_HINT = (
    " The numerical accuracy can also be improved by passing float64 data instead of float32."
)


def enable_compilation_cache(path: str | os.PathLike | None = None) -> str | None:
    """Keep compiled programs on disk so that a new process need not recompile.

    This sets JAX's process-wide ``jax_compilation_cache_dir``, so it also caches
    your own JAX programs: the library never calls it by itself (the ``jaxgmm``
    command does, for its own process). Uses ``path``, else ``$JAXGMM_CACHE_DIR``,
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


def _warn_not_converged(stacklevel: int) -> None:
    warnings.warn(
        "Best performing initialization did not converge. "
        "Try different init parameters, or increase max_iter, "
        "tol, or check for degenerate data.",
        ConvergenceWarning,
        stacklevel=stacklevel,
    )


def _seed(random_state) -> int:
    """An int seed from scikit-learn's ``random_state`` (None, int or RandomState)."""
    if isinstance(random_state, numbers.Integral):
        return int(random_state)
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


def _key(random_state) -> jax.Array:
    if isinstance(random_state, jax.Array) and jax.dtypes.issubdtype(
        random_state.dtype, jax.dtypes.prng_key
    ):
        return random_state
    return jax.random.key(_seed(random_state))


def _check_shape(param, shape, name):
    if param.shape != shape:
        raise ValueError(
            f"The parameter '{name}' should have the shape of {shape}, but got {param.shape}"
        )


def _check_weights(weights, n_components):
    weights = check_array(weights, dtype=[np.float64, np.float32], ensure_2d=False)
    _check_shape(weights, (n_components,), "weights")
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


def _check_means(means, n_components, n_features):
    means = check_array(means, dtype=[np.float64, np.float32], ensure_2d=False)
    _check_shape(means, (n_components, n_features), "means")
    return means


def _check_precisions(precisions, covariance_type, n_components, n_features):
    precisions = check_array(
        precisions,
        dtype=[np.float64, np.float32],
        ensure_2d=False,
        allow_nd=covariance_type == "full",
    )
    shape = COVARIANCE_TYPES[covariance_type].shape(n_components, n_features)
    _check_shape(precisions, shape, f"{covariance_type} precision")
    if covariance_type in ("diag", "spherical"):
        if np.any(precisions <= 0.0):
            raise ValueError(f"'{covariance_type} precision' should be positive")
    else:
        for p in precisions.reshape((-1, n_features, n_features)):
            if not (np.allclose(p, p.T) and np.all(np.linalg.eigvalsh(p) > 0.0)):
                raise ValueError(
                    f"'{covariance_type} precision' should be symmetric, positive-definite"
                )
    return precisions


class GaussianMixture(DensityMixin, BaseEstimator):
    """Gaussian Mixture, fitted by EM in JAX (scikit-learn compatible).

    Representation of a Gaussian mixture model probability distribution. This class
    allows to estimate the parameters of a Gaussian mixture distribution. It takes the
    same parameters as :class:`sklearn.mixture.GaussianMixture` and sets the same
    attributes; the ``n_init`` initializations run in parallel.

    Parameters
    ----------
    n_components : int, default=1
        The number of mixture components.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}, default='full'
        String describing the type of covariance parameters to use.
    tol : float, default=1e-3
        The convergence threshold. EM iterations will stop when the lower bound
        average gain is below this threshold.
    reg_covar : float, default=1e-6
        Non-negative regularization added to the diagonal of covariance.
    max_iter : int, default=100
        The number of EM iterations to perform.
    n_init : int, default=1
        The number of initializations to perform; the best results are kept.
        They run in parallel; initialization i uses key ``split(key, n_init)[i]``.
    init_params : {'kmeans', 'k-means++', 'random', 'random_from_data'}, default='kmeans'
        The method used to initialize the weights, the means and the precisions.
    weights_init : array-like of shape (n_components,), default=None
        The user-provided initial weights.
    means_init : array-like of shape (n_components, n_features), default=None
        The user-provided initial means.
    precisions_init : array-like, default=None
        The user-provided initial precisions (inverse of the covariance matrices),
        in scikit-learn's shape for ``covariance_type``.
    random_state : int, RandomState instance or None, default=None
        Controls the random seed given to the method chosen to initialize the
        parameters; an int seed becomes ``jax.random.key(seed)``.
    warm_start : bool, default=False
        If True, the solution of the last fitting is used as initialization for the
        next call of fit(); ``n_init`` is then ignored.
    verbose : int, default=0
        Enable verbose output (1: the current initialization and iteration; >1: also
        the log-likelihood change and timing). Printed when each fit ends.
    verbose_interval : int, default=10
        Number of iterations done before the next print.

    Attributes
    ----------
    weights_, means_, covariances_, precisions_, precisions_cholesky_ : ndarray
        The fitted parameters, in scikit-learn's shapes and the data's dtype.
    converged_ : bool
    n_iter_ : int
    lower_bound_ : float
    lower_bounds_ : list of float
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Defined only when ``X`` has feature names that are all strings.
    status_ : str
        Why the best initialization stopped: 'converged', 'max_iter' or 'collapsed'
        (a component's weight fell below 10 machine epsilons).

    Examples
    --------
    >>> import numpy as np
    >>> from jaxgmm import GaussianMixture
    >>> X = np.array([[1, 2], [1, 4], [1, 0], [10, 2], [10, 4], [10, 0]])
    >>> gm = GaussianMixture(n_components=2, random_state=0).fit(X)
    >>> np.sort(gm.means_[:, 0])
    array([ 1., 10.])
    """

    _parameter_constraints: ClassVar[dict] = {
        "n_components": [Interval(numbers.Integral, 1, None, closed="left")],
        "tol": [Interval(numbers.Real, 0.0, None, closed="left")],
        "reg_covar": [Interval(numbers.Real, 0.0, None, closed="left")],
        "max_iter": [Interval(numbers.Integral, 0, None, closed="left")],
        "n_init": [Interval(numbers.Integral, 1, None, closed="left")],
        "init_params": [StrOptions({"kmeans", "random", "random_from_data", "k-means++"})],
        "random_state": ["random_state"],
        "warm_start": ["boolean"],
        "verbose": ["verbose"],
        "verbose_interval": [Interval(numbers.Integral, 1, None, closed="left")],
        "covariance_type": [StrOptions({"full", "tied", "diag", "spherical"})],
        "weights_init": ["array-like", None],
        "means_init": ["array-like", None],
        "precisions_init": ["array-like", None],
    }

    def __init__(
        self,
        n_components=1,
        *,
        covariance_type="full",
        tol=1e-3,
        reg_covar=1e-6,
        max_iter=100,
        n_init=1,
        init_params="kmeans",
        weights_init=None,
        means_init=None,
        precisions_init=None,
        random_state=None,
        warm_start=False,
        verbose=0,
        verbose_interval=10,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval

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
        """scikit-learn's checks of X and of the sample weights, for every fit."""
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
        """Validate, fit and set the attributes; returns the validated X."""
        X, sample_weight = self._validate_fit_input(X, sample_weight)
        init = self._check_initial_parameters(X)

        do_init = not (self.warm_start and hasattr(self, "converged_"))
        if not do_init:
            self._check_warm_start()
        n_init = self.n_init if do_init else 1
        kwargs = dict(
            covariance_type=self.covariance_type,
            tol=self.tol,
            reg_covar=self.reg_covar,
            max_iter=self.max_iter,
            sample_weight=sample_weight,
        )
        if do_init:
            kwargs.update(n_init=n_init, init_params=self.init_params, **init)
        else:
            kwargs.update(params0=self._params(), lower_bound0=self.lower_bound_)
        start = time.perf_counter()
        results = fit_restarts(_key(self.random_state), X, self.n_components, **kwargs)
        with x64_scope(X.dtype):
            results = jax.tree_util.tree_map(np.asarray, results)
        elapsed = time.perf_counter() - start
        best = best_index(results)
        if self.verbose:
            self._print_verbose(results, elapsed)
        result = select(results, best)
        if result.status == Status.NON_FINITE:
            raise ValueError(_ILL_DEFINED + (_FLOAT32_HINT if X.dtype == np.float32 else ""))
        self._set_result(result, X.dtype)
        if not self.converged_ and self.max_iter > 0:
            _warn_not_converged(stacklevel=4)
        return X

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
        shapes = {
            name: cls.shape(self.means_.shape[0], self.means_.shape[1])
            for name, cls in COVARIANCE_TYPES.items()
        }
        matching = [n for n, s in shapes.items() if s == np.shape(self.covariances_)]
        return self.covariance_type if self.covariance_type in matching else matching[0]

    def _check_sample_weight(self, sample_weight, X):
        if sample_weight is None:
            return None
        sample_weight = _check_sample_weight(
            sample_weight, X, dtype=X.dtype, ensure_non_negative=True
        )
        if not np.all(np.isfinite(sample_weight)):
            raise ValueError("sample_weight must be finite, got NaN or infinity.")
        n_positive = int(np.count_nonzero(sample_weight))
        if n_positive < self.n_components:
            raise ValueError(
                f"sample_weight has {n_positive} positive values; at least "
                f"n_components = {self.n_components} samples must have a positive weight."
            )
        return sample_weight

    def _check_initial_parameters(self, X) -> dict:
        n_features = X.shape[1]
        init = {}
        if self.weights_init is not None:
            init["weights_init"] = _check_weights(self.weights_init, self.n_components)
        if self.means_init is not None:
            init["means_init"] = _check_means(self.means_init, self.n_components, n_features)
        if self.precisions_init is not None:
            init["precisions_init"] = _check_precisions(
                self.precisions_init, self.covariance_type, self.n_components, n_features
            )
        return init

    def _set_result(self, result, dtype):
        p = result.params
        cov = p.covariance
        as_np = lambda a: np.asarray(a, dtype=dtype)
        self.weights_ = as_np(p.weights)
        self.means_ = as_np(p.means)
        self.covariances_ = as_np(cov.covariances)
        self.precisions_cholesky_ = as_np(cov.precisions_cholesky)
        self.precisions_ = self._precisions_from_cholesky(self.precisions_cholesky_)
        self.n_iter_ = int(result.n_iter)
        self.converged_ = bool(result.converged)
        self.lower_bounds_ = [float(v) for v in np.asarray(result.lower_bounds)[: self.n_iter_]]
        self.lower_bound_ = float(result.lower_bound) if self.max_iter > 0 else -np.inf
        self.status_ = Status(int(result.status)).name.lower()

    def _precisions_from_cholesky(self, chol):
        if self.covariance_type == "full":
            return np.einsum("kij,klj->kil", chol, chol)
        if self.covariance_type == "tied":
            return chol @ chol.T
        return chol**2

    def _mixture(self) -> GMMParams:
        """The fitted mixture: weights, means and covariances."""
        cov_cls = COVARIANCE_TYPES[self.covariance_type]
        return GMMParams(
            self.weights_, self.means_, cov_cls(self.covariances_, self.precisions_cholesky_)
        )

    def _params(self) -> GMMParams:
        """What the engine continues from and scores with (the mixture, here)."""
        return self._mixture()

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
        dtype = (
            np.float32 if X.dtype == np.float32 and self.means_.dtype == np.float32 else np.float64
        )
        params = jax.tree_util.tree_map(lambda a: np.asarray(a, dtype), self._params())
        log_prob, log_resp, n = score_rows_padded(params, np.asarray(X, dtype))
        return np.asarray(log_prob)[:n], np.asarray(log_resp)[:n]

    def _validate(self, X):
        check_is_fitted(self)
        return validate_data(self, X, reset=False)

    def score_samples(self, X):
        """Compute the log-likelihood of each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            List of n_features-dimensional data points.

        Returns
        -------
        log_prob : array, shape (n_samples,)
            Log-likelihood of each sample in `X` under the current model.
        """
        return self._log_prob_resp(self._validate(X))[0]

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
        return float(np.mean(self.score_samples(X)))

    def predict(self, X):
        """Predict the labels for the data samples in X using trained model.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            List of n_features-dimensional data points.

        Returns
        -------
        labels : array, shape (n_samples,)
            Component labels.
        """
        return self._log_prob_resp(self._validate(X))[1].argmax(axis=1)

    def predict_proba(self, X):
        """Evaluate the components' density for each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            List of n_features-dimensional data points.

        Returns
        -------
        resp : array, shape (n_samples, n_components)
            Density of each Gaussian component for each sample in X.
        """
        return np.exp(self._log_prob_resp(self._validate(X))[1])

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
        key = _key(self.random_state if random_state is None else random_state)
        with x64_scope(self.means_.dtype):
            X, y = self._mixture().sample(key, int(n_samples))
            return np.asarray(X), np.asarray(y, dtype=np.int64)

    def save(self, path):
        """Write the model to ``path``: numpy arrays and JSON metadata, no pickle.

        Read it back with :func:`jaxgmm.load`.
        """
        from .io import save

        save(self, path)

    def _n_parameters(self):
        """Return the number of free parameters in the model."""
        _, n_features = self.means_.shape
        cov_cls = COVARIANCE_TYPES[self.covariance_type]
        k = self.n_components
        return int(cov_cls.n_parameters(k, n_features) + k * n_features + k - 1)

    def bic(self, X):
        """Bayesian information criterion for the current model on the input X.

        Parameters
        ----------
        X : array of shape (n_samples, n_dimensions)
            The input samples.

        Returns
        -------
        bic : float
            The lower the better.
        """
        return -2 * self.score(X) * X.shape[0] + self._n_parameters() * math.log(X.shape[0])

    def aic(self, X):
        """Akaike information criterion for the current model on the input X.

        Parameters
        ----------
        X : array of shape (n_samples, n_dimensions)
            The input samples.

        Returns
        -------
        aic : float
            The lower the better.
        """
        return -2 * self.score(X) * X.shape[0] + 2 * self._n_parameters()


class GaussianMixtureIC(DensityMixin, BaseEstimator):
    """Gaussian mixture with the number of components (and covariance type) chosen by
    an information criterion, over one compiled sweep.

    For each covariance type, every K and every restart is fitted by one compiled
    program (components padded to the largest K and masked); the model with the lowest
    criterion is kept as ``best_estimator_``.

    Parameters
    ----------
    n_components : int or list of int, default=8
        An int is an upper bound (K = 1 .. n_components); a list gives the K to try.
    covariance_type : {'full', 'tied', 'diag', 'spherical', 'all'} or list, default='all'
    criterion : {'bic', 'aic', 'icl'}, default='bic'
        scikit-learn's BIC and AIC; ICL is BIC plus twice the entropy of the
        responsibilities (mclust). Lower is better.
    n_init : int, default=5
        Restarts of every model, in parallel.
    init_params : {'kmeans', 'k-means++', 'random', 'random_from_data'}, default='kmeans'
    max_iter : int, default=100
    tol : float, default=1e-3
    reg_covar : float, default=1e-6
    random_state : int, RandomState instance or None, default=None
    min_component_samples : float or 'auto', default='auto'
        Fits with a component of fewer effective samples are degenerate (a spike on
        one or two points, held finite only by ``reg_covar``): each candidate keeps
        its best non-degenerate restart and degenerate candidates are not chosen
        while any other is left. 'auto' is ``n_features + 1``; 0 turns this off.

    Attributes
    ----------
    n_components_ : int
        The chosen number of components.
    covariance_type_ : str
        The chosen covariance type.
    criterion_ : numpy structured array
        One row per (covariance type, K), one field per column: covariance_type,
        n_components, bic, aic, icl, log_likelihood, n_parameters, converged,
        n_iter, lower_bound, status, smallest_component, degenerate. Always this
        type: ``pandas.DataFrame(model.criterion_)`` makes a DataFrame of it.
    best_estimator_ : GaussianMixture
        The chosen model, fitted.
    n_features_in_ : int
    feature_names_in_ : ndarray
        Defined only when ``X`` has feature names that are all strings.

    Examples
    --------
    >>> import jaxgmm
    >>> X, _ = jaxgmm.make_seed_blobs()
    >>> jaxgmm.GaussianMixtureIC(random_state=0).fit(X).n_components_
    4
    """

    _parameter_constraints: ClassVar[dict] = {
        "n_components": [Interval(numbers.Integral, 1, None, closed="left"), "array-like"],
        "covariance_type": [
            StrOptions({"full", "tied", "diag", "spherical", "all"}),
            list,
            tuple,
        ],
        "criterion": [StrOptions({"bic", "aic", "icl"})],
        "n_init": [Interval(numbers.Integral, 1, None, closed="left")],
        "init_params": [StrOptions({"kmeans", "random", "random_from_data", "k-means++"})],
        "max_iter": [Interval(numbers.Integral, 0, None, closed="left")],
        "tol": [Interval(numbers.Real, 0.0, None, closed="left")],
        "reg_covar": [Interval(numbers.Real, 0.0, None, closed="left")],
        "random_state": ["random_state"],
        "min_component_samples": [
            StrOptions({"auto"}),
            Interval(numbers.Real, 0.0, None, closed="left"),
        ],
    }

    def __init__(
        self,
        n_components=8,
        *,
        covariance_type="all",
        criterion="bic",
        n_init=5,
        init_params="kmeans",
        max_iter=100,
        tol=1e-3,
        reg_covar=1e-6,
        random_state=None,
        min_component_samples="auto",
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.criterion = criterion
        self.n_init = n_init
        self.init_params = init_params
        self.max_iter = max_iter
        self.tol = tol
        self.reg_covar = reg_covar
        self.random_state = random_state
        self.min_component_samples = min_component_samples

    def _candidates(self):
        def positive_int(k) -> bool:
            return (
                isinstance(k, numbers.Integral) and not isinstance(k, (bool, np.bool_)) and k >= 1
            )

        if np.ndim(self.n_components) == 0:
            values = [self.n_components]
        else:
            values = list(np.asarray(self.n_components, dtype=object).ravel())
        if not values or not all(positive_int(k) for k in values):
            raise ValueError(
                "n_components must be a positive int (K = 1 .. n_components) or a list of "
                f"positive ints, got {self.n_components!r}"
            )
        if np.ndim(self.n_components) == 0:
            ks = list(range(1, int(self.n_components) + 1))
        else:
            ks = sorted({int(k) for k in values})
        if isinstance(self.covariance_type, str):
            types = (
                list(COVARIANCE_TYPES) if self.covariance_type == "all" else [self.covariance_type]
            )
        else:
            types = list(self.covariance_type)
            bad = [t for t in types if t not in COVARIANCE_TYPES]
            if bad or not types:
                raise ValueError(
                    f"covariance_type must be 'all', one of {sorted(COVARIANCE_TYPES)} or a "
                    f"list of them, got {self.covariance_type!r}"
                )
        return ks, types

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, sample_weight=None):
        """Fit every candidate model and keep the one with the lowest criterion.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : Ignored
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : object
        """
        from .selection import sweep

        X = validate_data(self, X, dtype=[np.float64, np.float32], ensure_min_samples=2)
        ks, types = self._candidates()
        if X.shape[0] < max(ks):
            raise ValueError(
                "Expected n_samples >= n_components "
                f"but got n_components = {max(ks)}, n_samples = {X.shape[0]}"
            )
        best = GaussianMixture(
            1,
            tol=self.tol,
            reg_covar=self.reg_covar,
            max_iter=self.max_iter,
            n_init=self.n_init,
            init_params=self.init_params,
            random_state=self.random_state,
        )
        sample_weight = best._check_sample_weight(sample_weight, X)
        result = sweep(
            _key(self.random_state),
            X,
            ks,
            types,
            n_init=self.n_init,
            criterion=self.criterion,
            init_params=self.init_params,
            sample_weight=sample_weight,
            tol=self.tol,
            reg_covar=self.reg_covar,
            max_iter=self.max_iter,
            min_component_samples=self.min_component_samples,
        )
        row = result.best
        if not np.isfinite(result.table[self.criterion][row]):
            raise ValueError(_ILL_DEFINED + (_FLOAT32_HINT if X.dtype == np.float32 else ""))
        self.n_components_ = int(result.table["n_components"][row])
        self.covariance_type_ = str(result.table["covariance_type"][row])
        best.set_params(n_components=self.n_components_, covariance_type=self.covariance_type_)
        best.n_features_in_ = self.n_features_in_
        if hasattr(self, "feature_names_in_"):
            best.feature_names_in_ = self.feature_names_in_
        best._set_result(result.results[row], X.dtype)
        self.best_estimator_ = best
        self.criterion_ = result.to_records()
        if not best.converged_ and self.max_iter > 0:
            _warn_not_converged(stacklevel=3)
        return self

    def fit_predict(self, X, y=None, sample_weight=None):
        """Fit, then predict the labels of X with the chosen model."""
        return self.fit(X, sample_weight=sample_weight).predict(X)

    def _best(self, X):
        check_is_fitted(self)
        validate_data(self, X, reset=False)
        return self.best_estimator_

    def predict(self, X):
        """Component labels of X under the chosen model."""
        return self._best(X).predict(X)

    def predict_proba(self, X):
        """Responsibilities of X under the chosen model."""
        return self._best(X).predict_proba(X)

    def score_samples(self, X):
        """Log-likelihood of each sample under the chosen model."""
        return self._best(X).score_samples(X)

    def score(self, X, y=None):
        """Mean log-likelihood of X under the chosen model."""
        return self._best(X).score(X)

    def bic(self, X):
        """BIC of the chosen model on X."""
        return self._best(X).bic(X)

    def aic(self, X):
        """AIC of the chosen model on X."""
        return self._best(X).aic(X)

    def sample(self, n_samples=1, random_state=None):
        """Draw samples from the chosen model (see ``GaussianMixture.sample``)."""
        check_is_fitted(self)
        return self.best_estimator_.sample(n_samples, random_state=random_state)

    def save(self, path):
        """Write the selection to ``path``: its parameters, the chosen model and the
        criterion table, as numpy arrays and JSON metadata (no pickle). Read it back
        with :func:`jaxgmm.load`."""
        from .io import save

        save(self, path)


class BayesianGaussianMixture(GaussianMixture):
    """Variational Bayesian Gaussian mixture, fitted in JAX (scikit-learn compatible).

    The same parameters, attributes, methods and errors as
    :class:`sklearn.mixture.BayesianGaussianMixture`, on jaxgmm's blocked engine: the
    ``n_init`` initializations run in parallel, and ``fit`` takes ``sample_weight``.
    With the Dirichlet-process prior (the default), components the data do not need
    get weights near zero, so ``n_components`` is an upper bound.

    Parameters
    ----------
    n_components : int, default=1
    covariance_type : {'full', 'tied', 'diag', 'spherical'}, default='full'
    tol, reg_covar, max_iter, n_init, init_params, random_state, warm_start, verbose,
    verbose_interval
        As in :class:`GaussianMixture`.
    weight_concentration_prior_type : {'dirichlet_process', 'dirichlet_distribution'}
    weight_concentration_prior : float, default=None (1 / n_components)
    mean_precision_prior : float, default=None (1)
    mean_prior : array-like of shape (n_features,), default=None (the mean of X)
    degrees_of_freedom_prior : float, default=None (n_features)
    covariance_prior : float or array-like, default=None (the covariance of X)

    Attributes
    ----------
    weights_, means_, covariances_, precisions_, precisions_cholesky_,
    weight_concentration_, weight_concentration_prior_, mean_precision_,
    mean_precision_prior_, mean_prior_, degrees_of_freedom_, degrees_of_freedom_prior_,
    covariance_prior_, converged_, n_iter_, lower_bound_, lower_bounds_,
    n_features_in_, feature_names_in_
        As scikit-learn's.
    """

    _parameter_constraints: ClassVar[dict] = {
        **{
            k: v
            for k, v in GaussianMixture._parameter_constraints.items()
            if k not in ("weights_init", "means_init", "precisions_init")
        },
        "weight_concentration_prior_type": [
            StrOptions({"dirichlet_process", "dirichlet_distribution"})
        ],
        "weight_concentration_prior": [None, Interval(numbers.Real, 0.0, None, closed="neither")],
        "mean_precision_prior": [None, Interval(numbers.Real, 0.0, None, closed="neither")],
        "mean_prior": [None, "array-like"],
        "degrees_of_freedom_prior": [None, Interval(numbers.Real, 0.0, None, closed="neither")],
        "covariance_prior": [
            None,
            "array-like",
            Interval(numbers.Real, 0.0, None, closed="neither"),
        ],
    }

    def __init__(
        self,
        *,
        n_components=1,
        covariance_type="full",
        tol=1e-3,
        reg_covar=1e-6,
        max_iter=100,
        n_init=1,
        init_params="kmeans",
        weight_concentration_prior_type="dirichlet_process",
        weight_concentration_prior=None,
        mean_precision_prior=None,
        mean_prior=None,
        degrees_of_freedom_prior=None,
        covariance_prior=None,
        random_state=None,
        warm_start=False,
        verbose=0,
        verbose_interval=10,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weight_concentration_prior_type = weight_concentration_prior_type
        self.weight_concentration_prior = weight_concentration_prior
        self.mean_precision_prior = mean_precision_prior
        self.mean_prior = mean_prior
        self.degrees_of_freedom_prior = degrees_of_freedom_prior
        self.covariance_prior = covariance_prior
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval

    # scikit-learn's BayesianGaussianMixture has no information criteria
    bic = property(doc="Not defined for the variational mixture.")
    aic = property(doc="Not defined for the variational mixture.")

    def _check_priors(self, X):
        n_features = X.shape[1]
        self.weight_concentration_prior_ = (
            1.0 / self.n_components
            if self.weight_concentration_prior is None
            else self.weight_concentration_prior
        )
        self.mean_precision_prior_ = (
            1.0 if self.mean_precision_prior is None else self.mean_precision_prior
        )
        if self.mean_prior is None:
            self.mean_prior_ = X.mean(axis=0)
        else:
            self.mean_prior_ = check_array(
                self.mean_prior, dtype=[np.float64, np.float32], ensure_2d=False
            )
            _check_shape(self.mean_prior_, (n_features,), "means")
        if self.degrees_of_freedom_prior is None:
            self.degrees_of_freedom_prior_ = n_features
        elif self.degrees_of_freedom_prior > n_features - 1.0:
            self.degrees_of_freedom_prior_ = self.degrees_of_freedom_prior
        else:
            raise ValueError(
                "The parameter 'degrees_of_freedom_prior' "
                f"should be greater than {n_features - 1}, but got "
                f"{self.degrees_of_freedom_prior:.3f}."
            )
        cov = self.covariance_type
        if self.covariance_prior is None:
            self.covariance_prior_ = {
                "full": np.atleast_2d(np.cov(X.T)),
                "tied": np.atleast_2d(np.cov(X.T)),
                "diag": np.var(X, axis=0, ddof=1),
                "spherical": np.var(X, axis=0, ddof=1).mean(),
            }[cov]
        elif cov in ("full", "tied"):
            prior = check_array(
                self.covariance_prior, dtype=[np.float64, np.float32], ensure_2d=False
            )
            _check_shape(prior, (n_features, n_features), f"{cov} covariance_prior")
            if not (np.allclose(prior, prior.T) and np.all(np.linalg.eigvalsh(prior) > 0.0)):
                raise ValueError(f"'{cov} precision' should be symmetric, positive-definite")
            self.covariance_prior_ = prior
        elif cov == "diag":
            prior = check_array(
                self.covariance_prior, dtype=[np.float64, np.float32], ensure_2d=False
            )
            _check_shape(prior, (n_features,), f"{cov} covariance_prior")
            if np.any(prior <= 0.0):
                raise ValueError(f"'{cov} precision' should be positive")
            self.covariance_prior_ = prior
        else:
            self.covariance_prior_ = self.covariance_prior

    def _priors(self):
        from .bayesian import VBPriors

        return VBPriors(
            np.asarray(self.weight_concentration_prior_, np.float64),
            np.asarray(self.mean_precision_prior_, np.float64),
            np.asarray(self.mean_prior_, np.float64),
            np.asarray(self.degrees_of_freedom_prior_, np.float64),
            np.asarray(self.covariance_prior_, np.float64),
        )

    def _process(self):
        return self.weight_concentration_prior_type == "dirichlet_process"

    def _params(self):
        from .bayesian import VBParams

        return VBParams(
            np.asarray(self.weight_concentration_),
            self.mean_precision_,
            self.means_,
            np.asarray(self.degrees_of_freedom_),
            COVARIANCE_TYPES[self.covariance_type](self.covariances_, self.precisions_cholesky_),
            self._process(),
        )

    def _fit(self, X, sample_weight):
        from .bayesian import fit_vb_restarts

        X, sample_weight = self._validate_fit_input(X, sample_weight)
        self._check_priors(X)
        do_init = not (self.warm_start and hasattr(self, "converged_"))
        if not do_init:
            self._check_warm_start()
        kwargs = dict(
            covariance_type=self.covariance_type,
            process=self._process(),
            tol=self.tol,
            reg_covar=self.reg_covar,
            max_iter=self.max_iter,
            sample_weight=sample_weight,
        )
        if do_init:
            kwargs.update(n_init=self.n_init, init_params=self.init_params)
        else:
            kwargs.update(params0=self._params(), lower_bound0=self.lower_bound_)
        start = time.perf_counter()
        results = fit_vb_restarts(
            _key(self.random_state), X, self.n_components, self._priors(), **kwargs
        )
        with x64_scope(X.dtype):
            results = jax.tree_util.tree_map(np.asarray, results)
        if self.verbose:
            self._print_verbose(results, time.perf_counter() - start)
        result = select(results, best_index(results))
        if result.status == Status.NON_FINITE:
            raise ValueError(_ILL_DEFINED + (_FLOAT32_HINT if X.dtype == np.float32 else ""))
        p = result.params
        as_np = lambda a: np.asarray(a, dtype=X.dtype)
        wc = as_np(p.weight_concentration)
        self.weight_concentration_ = (wc[0], wc[1]) if self._process() else wc
        self.mean_precision_ = as_np(p.mean_precision)
        self.degrees_of_freedom_ = as_np(p.degrees_of_freedom)
        self.means_ = as_np(p.means)
        self.covariances_ = as_np(p.covariance.covariances)
        self.precisions_cholesky_ = as_np(p.covariance.precisions_cholesky)
        self.precisions_ = self._precisions_from_cholesky(self.precisions_cholesky_)
        with x64_scope(X.dtype):
            self.weights_ = as_np(self._params().weights)
        self.n_iter_ = int(result.n_iter)
        self.converged_ = bool(result.converged)
        self.lower_bounds_ = [float(v) for v in np.asarray(result.lower_bounds)[: self.n_iter_]]
        self.lower_bound_ = float(result.lower_bound) if self.max_iter > 0 else -np.inf
        if not self.converged_ and self.max_iter > 0:
            _warn_not_converged(stacklevel=4)
        return X

    def _n_parameters(self):  # pragma: no cover - not part of the variational API
        raise AttributeError("BayesianGaussianMixture has no information criteria")
