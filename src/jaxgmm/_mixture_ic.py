"""``GaussianMixtureIC``: K and the covariance type chosen by an information
criterion over one compiled sweep; the chosen model is a fitted ``GaussianMixture``."""

from __future__ import annotations

import numbers
from typing import ClassVar

import numpy as np
from sklearn.base import BaseEstimator, DensityMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from ._base import (
    FLOAT32_HINT,
    ILL_DEFINED,
    check_sample_weight,
    key_from,
    mixture_attributes,
    validate_source,
    warn_not_converged,
)
from ._covariance import COVARIANCE_TYPES, covariance_names
from ._families import FAMILIES
from ._gaussian_mixture import GaussianMixture
from ._io import register, save
from ._selection import sweep
from .data import is_source

__all__ = ["GaussianMixtureIC"]


@register
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
    covariance_type : str or list of str, default='all'
        'all' tries mclust's 14 families (EII, VII, EEI, VEI, EVI, VVI, EEE, VEE, EVE,
        VVE, EEV, VEV, EVV, VVV: volume, shape and orientation each Equal, Variable
        or the Identity across components); 'sklearn' scikit-learn's four ('full',
        'tied', 'diag', 'spherical', which are VVV, EEE, VVI and VII). Or one name of
        either kind, or a list of them.
    criterion : {'bic', 'aic', 'icl'}, default='bic'
        scikit-learn's BIC and AIC; ICL is BIC plus twice the entropy of the
        responsibilities (mclust). Lower is better.
    n_init : int, default=5
        Restarts of every model, in parallel (and one more from the hierarchical
        start, below).
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
    hierarchical_start : bool, default=True
        Every candidate also starts once from mclust's default partition (model-based
        agglomerative clustering, built once on at most 2000 sampled rows), besides its
        ``n_init`` restarts: EM from it reaches the optima mclust reports. In-memory
        data only (a data source starts from the restarts alone).

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
            StrOptions(covariance_names() | {"all", "sklearn"}),
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
        "hierarchical_start": ["boolean"],
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
        hierarchical_start=True,
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
        self.hierarchical_start = hierarchical_start

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
        groups = {"all": list(FAMILIES), "sklearn": list(COVARIANCE_TYPES)}
        if isinstance(self.covariance_type, str):
            types = groups.get(self.covariance_type, [self.covariance_type])
        else:
            types = list(self.covariance_type)
            bad = [t for t in types if t not in covariance_names()]
            if bad or not types:
                raise ValueError(
                    f"covariance_type must be 'all', 'sklearn', one of "
                    f"{sorted(COVARIANCE_TYPES)} or mclust's families {list(FAMILIES)}, or a "
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
        ks, types = self._candidates()
        if is_source(X):
            X = validate_source(self, X, sample_weight, max(ks))
            sample_weight = None
        else:
            X = validate_data(self, X, dtype=[np.float64, np.float32], ensure_min_samples=2)
            if X.shape[0] < max(ks):
                raise ValueError(
                    "Expected n_samples >= n_components "
                    f"but got n_components = {max(ks)}, n_samples = {X.shape[0]}"
                )
            sample_weight = check_sample_weight(sample_weight, X, 1)
        best = GaussianMixture(
            1,
            tol=self.tol,
            reg_covar=self.reg_covar,
            max_iter=self.max_iter,
            n_init=self.n_init,
            init_params=self.init_params,
            random_state=self.random_state,
        )
        result = sweep(
            key_from(self.random_state),
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
            hierarchical_start=self.hierarchical_start,
        )
        row = result.best
        if not np.isfinite(result.table[self.criterion][row]):
            raise ValueError(ILL_DEFINED + (FLOAT32_HINT if X.dtype == np.float32 else ""))
        self.n_components_ = int(result.table["n_components"][row])
        self.covariance_type_ = str(result.table["covariance_type"][row])
        best.set_params(n_components=self.n_components_, covariance_type=self.covariance_type_)
        best.n_features_in_ = self.n_features_in_
        if hasattr(self, "feature_names_in_"):
            best.feature_names_in_ = self.feature_names_in_
        vars(best).update(mixture_attributes(result.results[row], X.dtype, self.max_iter))
        self.best_estimator_ = best
        self.criterion_ = result.to_records()
        if not best.converged_ and self.max_iter > 0:
            warn_not_converged(stacklevel=3)
        return self

    def fit_predict(self, X, y=None, sample_weight=None):
        """Fit, then predict the labels of X with the chosen model."""
        return self.fit(X, sample_weight=sample_weight).predict(X)

    def _best(self, X):
        check_is_fitted(self)
        if not is_source(X):
            validate_data(self, X, reset=False)
        return self.best_estimator_

    def predict(self, X, out=None):
        """Component labels of X under the chosen model."""
        return self._best(X).predict(X, out)

    def predict_proba(self, X, out=None):
        """Responsibilities of X under the chosen model."""
        return self._best(X).predict_proba(X, out)

    def score_samples(self, X, out=None):
        """Log-likelihood of each sample under the chosen model."""
        return self._best(X).score_samples(X, out)

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

    def to_sklearn(self):
        """scikit-learn's own fitted ``GaussianMixture`` of the chosen model (see
        ``GaussianMixture.to_sklearn``)."""
        check_is_fitted(self)
        return self.best_estimator_.to_sklearn()

    def save(self, path):
        """Write the selection to ``path``: its parameters, the chosen model and the
        criterion table, as numpy arrays and JSON metadata (no pickle). Read it back
        with :func:`jaxgmm.load`."""
        save(self, path)
