"""``BayesianGaussianMixture``: variational EM, a drop-in for scikit-learn's."""

from __future__ import annotations

import numbers
from typing import ClassVar

import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_array

from . import distributed
from ._base import BaseMixture, check_shape, mixture_attributes
from ._bayesian import VBParams, VBPriors, fit_vb_restarts
from ._covariance import COVARIANCE_TYPES
from ._gaussian_mixture import GaussianMixture
from ._io import register
from ._typing import x64_scope
from .data import is_source

__all__ = ["BayesianGaussianMixture"]


@register
class BayesianGaussianMixture(BaseMixture):
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

    _sklearn_class: ClassVar[str] = "BayesianGaussianMixture"
    _sklearn_attributes: ClassVar[tuple[str, ...]] = (
        "weight_concentration_prior_",
        "weight_concentration_",
        "mean_precision_prior_",
        "mean_precision_",
        "mean_prior_",
        "degrees_of_freedom_prior_",
        "degrees_of_freedom_",
        "covariance_prior_",
    )
    _parameter_constraints: ClassVar[dict] = {
        **{
            k: v
            for k, v in GaussianMixture._parameter_constraints.items()
            if k not in ("weights_init", "means_init", "precisions_init")
        },
        # the variational M-step exists for scikit-learn's four structures only
        "covariance_type": [StrOptions(set(COVARIANCE_TYPES))],
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

    def _validate_fit_input(self, X, sample_weight):
        if is_source(X):
            raise ValueError(
                "BayesianGaussianMixture fits an array in memory; fit a data source with "
                "GaussianMixture or GaussianMixtureIC, or load its rows first"
            )
        if distributed.process_count() > 1:  # each process would fit its rows alone
            raise ValueError(
                "BayesianGaussianMixture fits in one process; in a multi-process run fit "
                "GaussianMixture or GaussianMixtureIC (one fit over every process's rows)"
            )
        return super()._validate_fit_input(X, sample_weight)

    def _check_parameters(self, X):
        """The priors, as scikit-learn's ``*_prior_`` attributes."""
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
            check_shape(self.mean_prior_, (n_features,), "means")
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
        cov, cov_cls = self.covariance_type, COVARIANCE_TYPES[self.covariance_type]
        if self.covariance_prior is None:
            self.covariance_prior_ = cov_cls.empirical_prior(X)
        elif cov_cls.prior_ndim == 0:
            self.covariance_prior_ = self.covariance_prior
        else:
            prior = check_array(
                self.covariance_prior, dtype=[np.float64, np.float32], ensure_2d=False
            )
            check_shape(prior, (n_features,) * cov_cls.prior_ndim, f"{cov} covariance_prior")
            if cov_cls.matrices:
                if not (np.allclose(prior, prior.T) and np.all(np.linalg.eigvalsh(prior) > 0.0)):
                    raise ValueError(f"'{cov} precision' should be symmetric, positive-definite")
            elif np.any(prior <= 0.0):
                raise ValueError(f"'{cov} precision' should be positive")
            self.covariance_prior_ = prior

    def _priors(self):
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
        return VBParams(
            np.asarray(self.weight_concentration_),
            self.mean_precision_,
            self.means_,
            np.asarray(self.degrees_of_freedom_),
            COVARIANCE_TYPES[self.covariance_type](self.covariances_, self.precisions_cholesky_),
            self._process(),
        )

    def _run(self, key, X, sample_weight, checked, do_init):
        kwargs = self._engine_kwargs(sample_weight, do_init)
        return fit_vb_restarts(
            key, X, self.n_components, self._priors(), process=self._process(), **kwargs
        )

    def _set_result(self, result, dtype):
        with x64_scope(dtype):  # the weights are computed from the posterior
            fitted = mixture_attributes(result, dtype, self.max_iter)
        del fitted["status_"]  # scikit-learn's variational mixture has none
        vars(self).update(fitted)
        p = result.params
        as_np = lambda a: np.asarray(a, dtype=dtype)
        wc = as_np(p.weight_concentration)
        self.weight_concentration_ = (wc[0], wc[1]) if self._process() else wc
        self.mean_precision_ = as_np(p.mean_precision)
        self.degrees_of_freedom_ = as_np(p.degrees_of_freedom)
