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

    @classmethod
    def from_block_labelled(
        cls,
        labels,
        w: Float[Array, " b"],
        x: Float[Array, "b d"],
        shift: Float[Array, "k d"],
        second_moments,
    ) -> SuffStats:
        """:meth:`from_block_centered` for rows that each belong to one component
        (``labels``, weighted by ``w``; -1 for none): the same sums, with each row's
        differences taken to its own component's centre alone, ``b x d`` of them
        instead of ``b x k x d`` (the other components' terms weigh nothing).
        ``second_moments``: one row's second-order terms."""
        resp = jax.nn.one_hot(labels, shift.shape[0], dtype=x.dtype) * w[:, None]
        diff = x - shift[jnp.maximum(labels, 0)]
        return cls(jnp.sum(resp, 0), resp.T @ diff, resp.T @ jax.vmap(second_moments)(diff))

    def add(self, other: SuffStats) -> SuffStats:
        return jax.tree_util.tree_map(jnp.add, self, other)
