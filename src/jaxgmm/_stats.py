"""Sufficient statistics: the seam between the E-step and the M-step.

The E-step of any block of rows returns a :class:`SuffStats`; the M-step reads nothing
else. Streaming is :meth:`SuffStats.add`, several devices are a ``psum``, sample
weights are a factor on the responsibilities, and nothing of size N x K is kept.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._pytree import pytree_dataclass
from ._typing import Array, Float

__all__ = ["SuffStats"]


@pytree_dataclass
class SuffStats:
    """Responsibility-weighted sums over rows.

    Attributes
    ----------
    sum_r : array of shape (n_components,)
        ``sum_i w_i r_ik``.
    sum_rx : array of shape (n_components, n_features)
        ``sum_i w_i r_ik x_i``.
    sum_rxx : array of shape (n_components, n_second)
        ``sum_i w_i r_ik q(x_i)``, with ``q`` the covariance type's second-order terms.
    """

    sum_r: Float[Array, " k"]
    sum_rx: Float[Array, "k d"]
    sum_rxx: Float[Array, "k n_second"]

    @classmethod
    def from_matrix(cls, s: Float[Array, "k n_phi"], n_features: int) -> SuffStats:
        """Split ``resp.T @ phi`` (``phi = [1, x, q(x)]``) into the three sums."""
        return cls(s[:, 0], s[:, 1 : 1 + n_features], s[:, 1 + n_features :])

    @classmethod
    def from_block(
        cls, resp: Float[Array, "b k"], phi: Float[Array, "b n_phi"], n_features: int
    ) -> SuffStats:
        """Statistics of a block of rows: the sum over rows of ``outer(r_i, phi_i)``."""
        return cls.from_matrix(resp.T @ phi, n_features)

    @classmethod
    def from_block_centered(
        cls,
        resp: Float[Array, "b k"],
        x: Float[Array, "b d"],
        shift: Float[Array, "k d"],
        second_moments,
    ) -> SuffStats:
        """Statistics of a block about per-component centres ``shift``.

        ``sum_rx`` and ``sum_rxx`` are sums of ``x - shift[k]`` and of its second
        moments, formed from the differences themselves: exact where the raw moments
        would cancel (a tight component far from the data's centre).
        """
        diff = x[:, None, :] - shift[None, :, :]
        return cls(
            jnp.sum(resp, 0),
            jnp.einsum("bk,bkd->kd", resp, diff),
            second_moments(resp, diff),
        )

    def add(self, other: SuffStats) -> SuffStats:
        return jax.tree_util.tree_map(jnp.add, self, other)
