"""jaxgmm: Gaussian mixture models fitted by EM in JAX.

Public names are loaded on first use (PEP 562): ``import jaxgmm`` imports neither JAX
nor scikit-learn, and ``from jaxgmm import GaussianMixture`` loads what that class
needs. Each name has one home module, listed in ``_HOMES``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

#: Every public name and the private module that defines it.
_HOMES = {
    "enable_compilation_cache": "_base",
    "VBParams": "_bayesian",
    "VBPriors": "_bayesian",
    "fit_vb_restarts": "_bayesian",
    "BayesianGaussianMixture": "_bayesian_mixture",
    "COVARIANCE_TYPES": "_covariance",
    "DiagCovariance": "_covariance",
    "FullCovariance": "_covariance",
    "SphericalCovariance": "_covariance",
    "TiedCovariance": "_covariance",
    "make_seed_blobs": "_datasets",
    "EMResult": "_em",
    "run_em": "_em",
    "score_rows": "_em",
    "GaussianMixture": "_gaussian_mixture",
    "INIT_METHODS": "_init",
    "load": "_loading",  # with every estimator class registered
    "GaussianMixtureIC": "_mixture_ic",
    "best_index": "_multistart",
    "fit": "_multistart",
    "fit_restarts": "_multistart",
    "GMMParams": "_params",
    "SweepResult": "_selection",
    "sweep": "_selection",
    "SuffStats": "_stats",
    "Status": "_typing",
}

__all__ = sorted(_HOMES)


#: Public submodules, also loaded on first use (``jaxgmm.data``).
_SUBMODULES = ("data", "distributed")


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'jaxgmm' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES) | set(_SUBMODULES))


if TYPE_CHECKING:  # what type checkers and IDEs see
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
    from ._loading import load as load
    from ._mixture_ic import GaussianMixtureIC as GaussianMixtureIC
    from ._multistart import best_index as best_index
    from ._multistart import fit as fit
    from ._multistart import fit_restarts as fit_restarts
    from ._params import GMMParams as GMMParams
    from ._selection import SweepResult as SweepResult
    from ._selection import sweep as sweep
    from ._stats import SuffStats as SuffStats
    from ._typing import Status as Status
