"""Where rows come from: host-side preparation and the blocks every pass runs over.

:func:`prepare_rows` casts the data (and weights) to the fit's dtype, chooses the
block size and pads the rows (zero weight) to a bucketed count, on the host; the
compiled program cuts them into :class:`Blocks` (:func:`make_blocks`) and every sum
over rows goes through :func:`sum_rows`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ._pytree import pytree_dataclass
from ._typing import Array, Float, Int

__all__ = [
    "Blocks",
    "RowPlan",
    "Rows",
    "block_rows_for",
    "make_blocks",
    "pad_rows",
    "padded_rows",
    "plan_rows",
    "prepare_rows",
    "sum_rows",
]


@pytree_dataclass
class Rows:
    """Prepared rows (:func:`prepare_rows`): padded data ``x``, weights ``w`` (0 on
    padding) and ``n_used``, the number of blocks that hold data."""

    x: Array
    w: Array
    n_used: Array


#: Target size of one block's feature matrix: 5 MiB gave the fastest iterations on
#: N=100k, D=16, K=16 on a 2-core EPYC (8192 rows in float32, 4096 in float64);
#: smaller blocks pay the loop's overhead, larger ones fall out of the caches.
_BLOCK_BYTES = 5 * 2**20


def block_rows_for(n_samples: int, n_phi: int, itemsize: int) -> int:
    """Rows per block: a power of two near ``_BLOCK_BYTES`` of features (of ``n_phi``
    values per row).

    Small data gets one block of the next power of two, so that data sets of similar
    size share one compiled program.
    """
    rows = 2 ** round(math.log2(max(_BLOCK_BYTES / (n_phi * itemsize), 1)))
    rows = min(max(rows, 64), 65536)
    return min(rows, 2 ** math.ceil(math.log2(max(n_samples, 16))))


def padded_rows(n_samples: int, block_rows: int) -> int:
    """Rows after padding: the block count rounded up to one of four steps per octave.

    Programs are compiled per padded size, so nearby sizes (cross-validation folds,
    say) reuse one program; the padding costs memory only, as passes stop at the
    last block that holds data.
    """
    n_blocks = -(-n_samples // block_rows)
    if n_blocks > 8:
        step = 2 ** (n_blocks.bit_length() - 3)
        n_blocks = -(-n_blocks // step) * step
    return n_blocks * block_rows


def pad_rows(x, w, n_rows: int):
    """``x`` and ``w`` with zero rows (zero weight) appended up to ``n_rows``."""
    pad = n_rows - x.shape[0]
    xp = np if isinstance(x, np.ndarray) else jnp
    x = xp.concatenate([x, xp.zeros((pad, x.shape[1]), x.dtype)])
    return x, xp.concatenate([w, xp.zeros((pad,), w.dtype)])


@dataclasses.dataclass(frozen=True)
class RowPlan:
    """How the rows will be laid out (:func:`plan_rows`), before anything is copied:
    the engine compiles its program from :meth:`abstract` first, and only then
    uploads the data (:meth:`upload`), so that compiling and the data's device copy
    do not take memory at the same time."""

    x: Any  # the caller's data, untouched: a host array or a device array (or tracer)
    w: Any  # its sample weights, or None
    dtype: Any
    n_rows: int  # after padding
    block_rows: int
    n_samples: int

    @property
    def on_device(self) -> bool:
        return isinstance(self.x, jax.Array)  # a device array, or a tracer under jit

    @property
    def small(self) -> bool:
        """Whether the fit's blocks will be :attr:`Blocks.small`."""
        return is_small(self.n_rows, self.block_rows)

    @property
    def nbytes(self) -> int:
        return self.n_rows * self.x.shape[1] * np.dtype(self.dtype).itemsize

    def _n_used(self):
        return jnp.asarray(-(-self.n_samples // self.block_rows), jnp.int32)

    def abstract(self) -> Rows:
        """The prepared rows' shapes and dtypes (what a program is compiled for)."""
        d = self.x.shape[1]
        return Rows(
            jax.ShapeDtypeStruct((self.n_rows, d), self.dtype),
            jax.ShapeDtypeStruct((self.n_rows,), self.dtype),
            jax.ShapeDtypeStruct((), jnp.int32),
        )

    def upload(self) -> Rows:
        """The rows cast, padded with zero-weight rows, on the device."""
        n = self.n_samples
        w = np.ones(n, self.dtype) if self.w is None else self.w
        if self.on_device:
            x, w = pad_rows(
                self.x.astype(self.dtype), jnp.asarray(w).astype(self.dtype), self.n_rows
            )
            return Rows(x, w, self._n_used())
        w_padded = np.zeros(self.n_rows, self.dtype)
        w_padded[:n] = np.asarray(w)
        return Rows(upload(self.x, self.n_rows, self.dtype), jnp.asarray(w_padded), self._n_used())


def plan_rows(X, sample_weight, covariance_class, dtype, block_rows=None, n_columns=0) -> RowPlan:
    """Host-side preparation shared by every entry point: the fit's dtype, the block
    size, and the rows after padding (zero weight) to a bucketed size so that nearby
    sizes share one compiled program.

    ``n_columns`` is the width of the per-row intermediates of one device's batch of
    fits (fits x components): the block is sized for the wider of it and the features,
    so that a batch of restarts or a sweep keeps its block in the caches too.
    """
    x = X if isinstance(X, jax.Array) else np.asarray(X)
    n_samples, n_features = x.shape
    if block_rows is None:
        if covariance_class.prefers_direct(n_features):  # (rows, K, D) differences
            width = max(1 + n_features, n_columns * n_features)
        else:  # the features phi(x), and (rows, fits x K) intermediates
            width = max(1 + n_features + covariance_class.n_second(n_features), n_columns)
        block_rows = block_rows_for(n_samples, width, np.dtype(dtype).itemsize)
    n_rows = padded_rows(n_samples, block_rows)
    return RowPlan(x, sample_weight, dtype, n_rows, block_rows, n_samples)


def prepare_rows(X, sample_weight, covariance_class, dtype, block_rows=None, n_columns=0):
    """:func:`plan_rows`, uploaded at once.

    Returns
    -------
    x, w : arrays of padded_rows(n_samples, block_rows) rows
    n_used : int array, the blocks that hold data
    block_rows : int
    n_samples : int
    """
    plan = plan_rows(X, sample_weight, covariance_class, dtype, block_rows, n_columns)
    rows = plan.upload()
    return rows.x, rows.w, rows.n_used, plan.block_rows, plan.n_samples


#: Host arrays larger than this go to the device in chunks of about this size.
_UPLOAD_CHUNK_BYTES = 8 * 2**20


def upload(x: np.ndarray, n_rows: int, dtype) -> Array:
    """``x`` cast to ``dtype`` and padded with zero rows to ``n_rows``, on the device.

    Small data goes in one copy. Large data is written chunk by chunk into one
    device buffer that each update donates back (updated in place), so the fit
    holds the data once beside the caller's array, not as a cast copy, a padded copy
    and a device copy (the host copies alone were 2x the data).
    """
    n, d = x.shape
    itemsize = np.dtype(dtype).itemsize
    step = max(1, _UPLOAD_CHUNK_BYTES // max(d * itemsize, 1))
    if n_rows * d * itemsize <= 2 * _UPLOAD_CHUNK_BYTES:
        padded = np.zeros((n_rows, d), dtype)
        padded[:n] = x
        return jnp.asarray(padded)
    step = min(step, n_rows)
    buffer = jnp.zeros((n_rows, d), dtype)
    for start in range(0, n, step):
        # dynamic_update_slice would move a chunk past the end back: the last one
        # starts at most n_rows - step, and re-writes rows already written
        at = min(start, n_rows - step)
        chunk = np.zeros((step, d), dtype)
        part = x[at : at + step]
        chunk[: part.shape[0]] = part
        buffer = _write_rows(buffer, chunk, at)
        # Dispatch is asynchronous: without waiting, every chunk (and its device
        # copy) would be queued at once, and the upload would hold the data twice.
        buffer.block_until_ready()
    return buffer


@functools.partial(jax.jit, donate_argnums=0)
def _write_rows(buffer, chunk, start):
    return lax.dynamic_update_slice(buffer, chunk, (start, 0))


#: Data of at most this many rows (padding included), in one block, is *small*: its
#: passes use the exact (centred) form alone, so that its program holds one form of
#: each pass instead of the fast form, the exact form and the switch between them
#: (a first fit of iris compiled 1.6x faster), and it is compiled with less
#: optimisation (the run time of such a fit is microseconds; its compile is seconds).
SMALL_ROWS = 4096


def is_small(n_rows: int, block_rows: int) -> bool:
    """Whether ``n_rows`` (padding included) cut in blocks of ``block_rows`` is small
    data: one block of at most :data:`SMALL_ROWS` rows."""
    return n_rows == block_rows and n_rows <= SMALL_ROWS


@pytree_dataclass
class Blocks:
    """The data cut into equal blocks of rows; padding rows have zero weight.

    Attributes
    ----------
    x : array of shape (n_blocks, block_rows, n_features)
    w : array of shape (n_blocks, block_rows)
    n_used : int array
        Blocks that hold data; passes over the data stop there.
    center : array of shape (n_features,)
        The point the fast, expanded forms (the E-step's ``phi(x) @ A``, the raw
        moments, k-means distances) are taken about: the data's mean for a fit, the
        mixture's mean for scoring. The rows themselves are kept as given, so that
        the exact forms see ``x - mu`` of the rows and means themselves.
    radius : float array
        The largest distance of a row from ``center``: how far the expanded form must
        stay exact (:class:`~jaxgmm._em.Natural`).
    total : float array
        The total weight of the rows.
    """

    x: Float[Array, "n_blocks block d"]
    w: Float[Array, "n_blocks block"]
    n_used: Int[Array, ""]
    center: Float[Array, " d"]
    radius: Float[Array, ""]
    total: Float[Array, ""]

    @property
    def n_features(self) -> int:
        return self.x.shape[-1]

    @property
    def small(self) -> bool:
        """One block of at most :data:`SMALL_ROWS` rows (static: from shapes)."""
        return is_small(self.x.shape[0] * self.x.shape[1], self.x.shape[1])

    def rows(self, centred: bool = True) -> tuple[Float[Array, "n d"], Float[Array, " n"]]:
        """All rows, padding included, as one (n_blocks * block, d) array, about
        ``center`` (or as given)."""
        x = self.x.reshape(-1, self.n_features)
        return (x - self.center if centred else x), self.w.reshape(-1)


def make_blocks(
    x: Float[Array, "n d"], w: Float[Array, " n"], block_rows: int, n_used=None, center=None
) -> Blocks:
    """Cut rows into blocks (padding the tail); ``n_used`` defaults to all blocks.
    ``center`` is a point, or ``"mean"`` for the rows' weighted mean (the default is
    the origin)."""
    n, d = x.shape
    n_blocks = -(-n // block_rows)
    if n_blocks * block_rows != n:
        x, w = pad_rows(x, w, n_blocks * block_rows)
    n_used = jnp.asarray(n_blocks if n_used is None else n_used, jnp.int32)
    zero = jnp.zeros((d,), x.dtype)
    blocks = Blocks(
        x.reshape(n_blocks, block_rows, d),
        w.reshape(n_blocks, block_rows),
        n_used,
        zero,
        jnp.zeros((), x.dtype),
        jnp.zeros((), x.dtype),
    )
    if isinstance(center, str):  # "mean": one pass for the total and the weighted sum
        total, weighted_sum = sum_rows(lambda xb, wb, _: (jnp.sum(wb), wb @ xb), blocks)
        center = weighted_sum / total
    else:  # the weights alone
        total = sum_rows(lambda xb, wb, _: jnp.sum(wb), blocks)
        center = zero if center is None else center
    # block by block (no centred copy of the data); padding rows count as at the centre
    far = lambda xb, wb: jnp.max(jnp.where(wb > 0, jnp.sum((xb - center) ** 2, axis=-1), 0))
    radius = jnp.sqrt(jnp.max(lax.map(lambda b: far(*b), (blocks.x, blocks.w))))
    return dataclasses.replace(blocks, center=center, radius=radius, total=total)


def sum_rows(fn: Callable[..., Any], blocks: Blocks) -> Any:
    """``sum_b fn(x_b, w_b, b)`` over the blocks that hold data (a pytree of sums).

    The one reduction over rows: sufficient statistics, log-likelihoods, the k-means
    statistics, the total weight and the centre all go through it, so that summing
    streamed chunks or across processes changes this function alone.
    """
    index = jnp.zeros((), jnp.int32)
    shapes = jax.eval_shape(fn, blocks.x[0], blocks.w[0], index)
    zeros = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

    def body(b, carry):
        x = lax.dynamic_index_in_dim(blocks.x, b, keepdims=False)
        w = lax.dynamic_index_in_dim(blocks.w, b, keepdims=False)
        return jax.tree_util.tree_map(jnp.add, carry, fn(x, w, b))

    return lax.fori_loop(0, blocks.n_used, body, zeros)
