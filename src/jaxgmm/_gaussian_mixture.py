"""``GaussianMixture``: maximum-likelihood EM, a drop-in for scikit-learn's.

``from jaxgmm import GaussianMixture`` has the same constructor, attributes, methods,
errors and warnings as ``sklearn.mixture.GaussianMixture``. The ``n_init`` restarts
run in parallel (one vmapped program, sharded over local devices), and ``fit`` also
takes ``sample_weight``; ``to_sklearn()`` gives scikit-learn's own fitted estimator,
for scikit-learn's tooling.
"""

from __future__ import annotations

import math
import numbers
from typing import ClassVar

from sklearn.utils._param_validation import Interval, StrOptions

from ._base import (
    BaseMixture,
    check_means,
    check_precisions,
    check_weights,
    mixture_attributes,
    n_rows,
)
from ._covariance import covariance_class, covariance_names
from ._io import register
from ._multistart import fit_restarts
from ._params import GMMParams

__all__ = ["GaussianMixture"]


@register
class GaussianMixture(BaseMixture):
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

    _sklearn_class: ClassVar[str] = "GaussianMixture"
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
        "covariance_type": [StrOptions(covariance_names())],
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
    def _check_parameters(self, X) -> dict:
        """The user's initial parameters, checked (the engine's ``*_init``)."""
        n_features = self.n_features_in_
        init = {}
        if self.weights_init is not None:
            init["weights_init"] = check_weights(self.weights_init, self.n_components)
        if self.means_init is not None:
            init["means_init"] = check_means(self.means_init, self.n_components, n_features)
        if self.precisions_init is not None:
            init["precisions_init"] = check_precisions(
                self.precisions_init, self.covariance_type, self.n_components, n_features
            )
        return init

    def _run(self, key, X, sample_weight, checked, do_init):
        kwargs = self._engine_kwargs(sample_weight, do_init)
        # verbose output reports every restart
        kwargs["best_only"] = not self.verbose
        kwargs["host"] = True  # the attributes are NumPy arrays
        return fit_restarts(key, X, self.n_components, **kwargs, **(checked if do_init else {}))

    def _set_result(self, result, dtype):
        vars(self).update(mixture_attributes(result, dtype, self.max_iter))

    def _params(self) -> GMMParams:
        """What the engine continues from and scores with (the mixture, here)."""
        return self._mixture()

    def _n_parameters(self):
        """Return the number of free parameters in the model."""
        _, n_features = self.means_.shape
        cov_cls = covariance_class(self.covariance_type)
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
        n = n_rows(X)
        return -2 * self.score(X) * n + self._n_parameters() * math.log(n)

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
        return -2 * self.score(X) * n_rows(X) + 2 * self._n_parameters()
