"""jaxgmm: Gaussian mixture models fitted by EM in JAX."""

from ._base import enable_compilation_cache as enable_compilation_cache
from ._bayesian_mixture import BayesianGaussianMixture as BayesianGaussianMixture
from ._gaussian_mixture import GaussianMixture as GaussianMixture
from ._mixture_ic import GaussianMixtureIC as GaussianMixtureIC
from ._typing import Status as Status
from .covariance import COVARIANCE_TYPES as COVARIANCE_TYPES
from .covariance import DiagCovariance as DiagCovariance
from .covariance import FullCovariance as FullCovariance
from .covariance import SphericalCovariance as SphericalCovariance
from .covariance import TiedCovariance as TiedCovariance
from .datasets import make_seed_blobs as make_seed_blobs
from .em import EMResult as EMResult
from .em import run_em as run_em
from .em import score_rows as score_rows
from .init import INIT_METHODS as INIT_METHODS
from .io import load as load
from .multistart import best_index as best_index
from .multistart import fit as fit
from .multistart import fit_restarts as fit_restarts
from .params import GMMParams as GMMParams
from .selection import SweepResult as SweepResult
from .selection import sweep as sweep
from .stats import SuffStats as SuffStats

__version__ = "0.1.0"
