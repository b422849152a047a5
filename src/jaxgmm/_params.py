"""The parameters of a Gaussian mixture, as one pytree."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from ._covariance import Covariance
from ._pytree import pytree_dataclass
from ._stats import SuffStats
from ._typing import Array, Float

__all__ = ["GMMParams", "all_finite", "sample_mixture"]


def all_finite(tree) -> Array:
    """Whether every entry of every array in ``tree`` is finite (a bool scalar)."""
    leaves = jax.tree_util.tree_leaves(tree)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(a)) for a in leaves]))


@pytree_dataclass
class GMMParams:
    """Weights, means and covariance of a Gaussian mixture.

    Attributes
    ----------
    weights : array of shape (n_components,)
    means : array of shape (n_components, n_features)
    covariance : Covariance
        One of the four covariance classes; holds the covariances and the Cholesky
        factors of the precisions in scikit-learn's shapes.
    """

    weights: Float[Array, " k"]
    means: Float[Array, "k d"]
    covariance: Covariance

    @property
    def n_components(self) -> int:
        return self.means.shape[-2]

    @property
    def n_features(self) -> int:
        return self.means.shape[-1]

    @classmethod
    def from_stats(
        cls,
        stats: SuffStats,
        covariance_class: type[Covariance],
        reg_covar,
        total_weight=None,
        shift=None,
        active=None,
        previous=None,
    ) -> GMMParams:
        """The M-step: scikit-learn's ``_estimate_gaussian_parameters``.

        The weights are ``nk / sum(nk)``, or ``nk / total_weight`` when it is given
        (scikit-learn's initialization divides by ``n_samples``). ``shift`` is the
        centre (per component, or one for all) the statistics were taken about. Components
        whose ``active`` is False (the padding of a model-selection sweep) get weight
        0, mean 0 and identity covariance, and count for nothing. ``previous``: the last
        M-step's covariances, where an iterative M-step starts
        (:meth:`~jaxgmm._covariance.Covariance.estimate`).
        """
        eps = jnp.finfo(stats.sum_r.dtype).eps
        if active is None:
            active = jnp.ones(stats.sum_r.shape, bool)
        nk = stats.sum_r + 10 * eps
        means = stats.sum_rx / nk[:, None]
        args = (stats.sum_r, nk, means, stats.sum_rxx, reg_covar, active, previous)
        cov = covariance_class.from_stats(*args)
        means = means if shift is None else means + shift
        means = jnp.where(active[:, None], means, 0)
        nk = jnp.where(active, nk, 0)
        return cls(nk / (jnp.sum(nk) if total_weight is None else total_weight), means, cov)

    def cancellation_risk(self, reg_covar, center) -> Array:
        """Whether a covariance estimated from raw second moments about ``center``
        may be inexact.

        Raw moments lose about ``eps * (var + (mean - center)**2)`` to cancellation; a
        variance that is not 1024 times larger than that (a tight component far from
        the data's centre, a component on one point), or any non-finite value, needs
        the exact centred estimate. Components of weight 0 (padding) do not count.
        """
        eps = jnp.finfo(self.means.dtype).eps
        var = jnp.broadcast_to(self.covariance.variances(), self.means.shape)
        raw = jnp.max(var + (self.means - center) ** 2, axis=-1)
        tight = jnp.min(var - reg_covar, axis=-1) < 1024 * eps * raw
        return jnp.any(tight & (self.weights > 0)) | ~self.is_finite()

    def log_offset(self) -> Float[Array, " k"]:
        """What each component adds to its log-density in the log-joint: its
        log-weight (-inf for a zero weight, a masked component, which never wins)."""
        return jnp.log(self.weights)

    def shift(self, offset: Float[Array, " d"]) -> GMMParams:
        """The same mixture with the data moved by ``offset``."""
        return dataclasses.replace(self, means=self.means + offset)

    def padded(self, k_max: int) -> GMMParams:
        """Masked components appended up to ``k_max``: weight and mean 0, identity
        covariance, as the masked components of a fit are."""
        extra = k_max - self.weights.shape[0]
        xp = np if isinstance(self.weights, np.ndarray) else jnp  # host: no compiling
        zeros = lambda a: xp.concatenate([a, xp.zeros((extra, *a.shape[1:]), a.dtype)])
        return GMMParams(zeros(self.weights), zeros(self.means), self.covariance.padded(extra))

    def leading(self, k: int, batch_ndim: int = 0) -> GMMParams:
        """The first ``k`` components of a padded fit (whose component axis follows
        ``batch_ndim`` batch axes)."""
        cut = lambda a: a[(slice(None),) * batch_ndim + (slice(0, k),)]
        return GMMParams(cut(self.weights), cut(self.means), self.covariance.leading(k, batch_ndim))

    def is_finite(self) -> Array:
        return all_finite(self)

    def sample(self, key, n_samples: int) -> tuple[Float[Array, "n d"], Array]:
        """Draw ``n_samples`` rows; returned grouped by component, as scikit-learn's.

        Returns
        -------
        X : array of shape (n_samples, n_features)
        labels : int array of shape (n_samples,)
        """
        k_label, k_noise = jax.random.split(key)
        log_w = jnp.log(self.weights / jnp.sum(self.weights))
        labels = jnp.sort(jax.random.categorical(k_label, log_w, shape=(n_samples,)))
        z = jax.random.normal(k_noise, (n_samples, self.n_features), self.means.dtype)
        return self.means[labels] + self.covariance.scale_noise(z, labels), labels

    def n_parameters(self) -> int:
        """Number of free parameters, as scikit-learn's ``_n_parameters``."""
        k, d = self.n_components, self.n_features
        return type(self.covariance).n_parameters(k, d) + k * d + k - 1


@functools.partial(jax.jit, static_argnums=2)
def sample_mixture(params: GMMParams, key, n_samples: int):
    """:meth:`GMMParams.sample` as one program: run op by op, it compiled some twenty
    small programs in a new process (2 s)."""
    return params.sample(key, n_samples)
