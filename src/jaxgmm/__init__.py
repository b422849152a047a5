"""jaxgmm: Gaussian mixture models fitted by EM in JAX."""

from ._base import enable_compilation_cache as enable_compilation_cache
from ._bayesian import VBParams as VBParams
from ._bayesian import VBPriors as VBPriors
from ._bayesian import fit_vb_restarts as fit_vb_restarts
from ._bayesian_mixture import BayesianGaussianMixture as BayesianGaussianMixture
from ._covariance import COVARIANCE_TYPES as COVARIANCE_TYPES
from ._covariance import DiagCovariance as DiagCovariance
from ._covariance import FullCovariance as FullCovariance
from ._covariance import SphericalCovariance as SphericalCovariance
from ._covariance import TiedCovariance as TiedCovariance
from ._datasets import make_seed_blobs as make_seed_blobs
from ._em import EMResult as EMResult
from ._em import run_em as run_em
from ._em import score_rows as score_rows
from ._gaussian_mixture import GaussianMixture as GaussianMixture
from ._init import INIT_METHODS as INIT_METHODS
from ._io import load as load
from ._mixture_ic import GaussianMixtureIC as GaussianMixtureIC
from ._multistart import best_index as best_index
from ._multistart import fit as fit
from ._multistart import fit_restarts as fit_restarts
from ._params import GMMParams as GMMParams
from ._selection import SweepResult as SweepResult
from ._selection import sweep as sweep
from ._stats import SuffStats as SuffStats
from ._typing import Status as Status

__version__ = "0.1.0"
