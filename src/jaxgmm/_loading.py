"""``load`` with every estimator class registered: a model file can name any of them,
and each joins :mod:`jaxgmm._io`'s registry when its module is imported (``_io``
imports none of them). With ``jaxgmm``'s names loaded on first use, this module is what
makes sure all three are."""

from ._bayesian_mixture import BayesianGaussianMixture
from ._gaussian_mixture import GaussianMixture
from ._io import load
from ._mixture_ic import GaussianMixtureIC

__all__ = ["BayesianGaussianMixture", "GaussianMixture", "GaussianMixtureIC", "load"]
