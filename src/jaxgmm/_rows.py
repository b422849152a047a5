"""Where rows come from: host-side preparation and the blocks every pass runs over.

:func:`plan_rows` chooses the fit's dtype, the block size and a bucketed padded row
count on the host, from shapes alone; :meth:`RowPlan.upload` then casts and pads the
rows (zero weight) on the device, after the program is compiled; the
compiled program cuts them into :class:`Blocks` (:func:`make_blocks`) and every sum
over rows goes through :func:`sum_rows`.
"""

from __future__ import annotations

import ctypes
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
    "sum_rows",
]


@pytree_dataclass
class Rows:
    """Prepared rows (:meth:`RowPlan.upload`): padded data ``x``, weights ``w`` (0 on
    padding; None for unit weights, which are then never stored: the first
    ``n_samples`` rows weigh 1, the padding 0) and ``n_samples``, the rows before
    padding."""

    x: Array
    w: Array | None
    n_samples: Array


#: Target size of one block's feature matrix, and the most rows a block holds, per
#: backend. On a CPU 5 MiB gave the fastest iterations on N=100k, D=16, K=16 on a
#: 2-core EPYC (8192 rows in float32, 4096 in float64): smaller blocks pay the
#: loop's overhead, larger ones fall out of the caches. A GPU has no such caches to
#: fit and thousands of cores to fill, so its blocks are larger (not yet measured
#: here: benchmarks/gpu_check.py times several sizes on a machine with a GPU).
_BLOCK_BYTES = {"cpu": 5 * 2**20, "gpu": 128 * 2**20}
_BLOCK_MAX_ROWS = {"cpu": 65536, "gpu": 2**20}


def _backend() -> str:
    platform = jax.default_backend()
    return "cpu" if platform == "cpu" else "gpu"  # TPUs and GPUs alike


def block_rows_for(n_samples: int, n_phi: int, itemsize: int) -> int:
    """Rows per block: a power of two near ``_BLOCK_BYTES`` of features (of ``n_phi``
    values per row) for the default backend.

    Small data gets one block of the next power of two, so that data sets of similar
    size share one compiled program; up to :data:`SMALL_ROWS`, of the next power of
    four, so that a cross-validation's folds and its refit on all rows (120 and 150
    rows of iris) share one too: a small program takes seconds to compile and
    microseconds a pass to run.
    """
    backend = _backend()
    rows = 2 ** round(math.log2(max(_BLOCK_BYTES[backend] / (n_phi * itemsize), 1)))
    rows = min(max(rows, 64), _BLOCK_MAX_ROWS[backend])
    one_block = 2 ** math.ceil(math.log2(max(n_samples, 16)))
    coarse = 4 ** math.ceil(math.log(max(n_samples, 16), 4) - 1e-9)
    return min(rows, coarse if coarse <= SMALL_ROWS else one_block)


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
    """``x`` and ``w`` (None for unit weights) with zero rows (zero weight) appended
    up to ``n_rows``."""
    pad = n_rows - x.shape[0]
    xp = np if isinstance(x, np.ndarray) else jnp
    x = xp.concatenate([x, xp.zeros((pad, x.shape[1]), x.dtype)])
    if w is not None:
        w = xp.asarray(w)
        w = xp.concatenate([w, xp.zeros((pad,), w.dtype)])
    return x, w


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

    def abstract(self) -> Rows:
        """The prepared rows' shapes and dtypes (what a program is compiled for)."""
        d = self.x.shape[1]
        count = jax.ShapeDtypeStruct((), jnp.int32)
        w = None if self.w is None else jax.ShapeDtypeStruct((self.n_rows,), self.dtype)
        return Rows(jax.ShapeDtypeStruct((self.n_rows, d), self.dtype), w, count)

    def upload(self) -> Rows:
        """The rows cast, padded with zero rows, on the device; the weights (if any)
        padded with zeros."""
        n_samples = np.asarray(self.n_samples, np.int32)  # jnp would compile a copy
        if self.on_device:
            x, w = pad_rows(self.x.astype(self.dtype), self.w, self.n_rows)
            w = None if w is None else w.astype(self.dtype)
        else:
            x, w = upload(self.x, self.n_rows, self.dtype), None
            if self.w is not None:
                w = np.zeros(self.n_rows, self.dtype)
                w[: self.n_samples] = np.asarray(self.w)
                w = jax.device_put(w)
        return Rows(x, w, n_samples)


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
            width = max(covariance_class.n_phi(n_features), n_columns)
        block_rows = block_rows_for(n_samples, width, np.dtype(dtype).itemsize)
    n_rows = padded_rows(n_samples, block_rows)
    return RowPlan(x, sample_weight, dtype, n_rows, block_rows, n_samples)


#: Host arrays larger than this go to the device in chunks of about this size.
_UPLOAD_CHUNK_BYTES = 2 * 2**20


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
        # the host array itself: a compiled program's call copies it to the device
        # (25 us; jax.device_put first took 120 us more, a fifth of a small fit's
        # overhead), and jnp.asarray would compile a copy per shape
        return padded
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
    del chunk
    # glibc keeps the freed chunks for reuse (30-40 MB after 4M x 8 rows): give
    # them back before the fit needs its own memory
    release_free_memory()
    return buffer


def release_free_memory() -> None:
    """Return the C heap's free pages to the system (glibc's ``malloc_trim``); a no-op
    where there is no such function."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


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


@pytree_dataclass(meta_fields=("axis",))
class Blocks:
    """The data cut into equal blocks of rows; padding rows have zero weight.

    Attributes
    ----------
    x : array of shape (n_blocks, block_rows, n_features)
    w : array of shape (n_blocks, block_rows), or None
        The rows' weights (0 on padding); None for unit weights (:meth:`block`).
    n_samples : int array
        The rows before padding.
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
    axis : str or None
        The mesh axis the rows are split over, in a program that runs on each part
        (one SPMD program over every process's rows, :mod:`jaxgmm._spmd`): sums over
        rows (:func:`sum_rows`) and the radius are then taken over every part.
        ``center``, ``radius`` and ``total`` are the whole data's. None: all rows are here.
    """

    x: Float[Array, "n_blocks block d"]
    w: Float[Array, "n_blocks block"] | None
    n_samples: Int[Array, ""]
    n_used: Int[Array, ""]
    center: Float[Array, " d"]
    radius: Float[Array, ""]
    total: Float[Array, ""]
    axis: str | None = None

    @property
    def n_features(self) -> int:
        return self.x.shape[-1]

    @property
    def block_rows(self) -> int:
        return self.x.shape[1]

    @property
    def small(self) -> bool:
        """One block of at most :data:`SMALL_ROWS` rows (static: from shapes)."""
        return is_small(self.x.shape[0] * self.block_rows, self.block_rows)

    def block(self, b: Int[Array, ""]) -> tuple[Float[Array, "block d"], Float[Array, " block"]]:
        """Rows and weights of block ``b``. Unit weights are made here, block by
        block, never stored: 1 on the first ``n_samples`` rows, 0 on the padding."""
        x = lax.dynamic_index_in_dim(self.x, b, keepdims=False)
        if self.w is not None:
            return x, lax.dynamic_index_in_dim(self.w, b, keepdims=False)
        return x, self.weights_of(b * self.block_rows + jnp.arange(self.block_rows))

    def rows_with_data(self, b: Int[Array, ""]) -> Int[Array, ""]:
        """How many of block b's rows are data: the rest, past ``n_samples``, are
        padding of weight 0 (which the fused kernels skip)."""
        return jnp.clip(self.n_samples - b * self.block_rows, 0, self.block_rows)

    def weights_of(self, idx: Int[Array, "..."]) -> Float[Array, "..."]:
        """The weights of rows ``idx`` (indices into all rows, padding included)."""
        if self.w is not None:
            return self.w.reshape(-1)[idx]
        return (idx < self.n_samples).astype(self.x.dtype)

    def rows_of(self, idx: Int[Array, " t"], centred: bool = True) -> Float[Array, "t d"]:
        """Rows ``idx`` (indices into all rows, padding included), about ``center``
        (or as given)."""
        x = self.x.reshape(-1, self.n_features)[idx]
        return x - self.center if centred else x

    @property
    def single(self) -> bool:
        """One block, and all rows here (static): loops over blocks are then written
        out as one call, and a "sum" over rows may be the block's per-row values. A
        loop of one trip still costs its code and a while loop to compile (small
        data's programs are most of their cost)."""
        return self.x.shape[0] == 1 and self.axis is None

    def map(self, fn: Callable[..., Any]) -> Any:
        """``fn(x_b, w_b, b)`` of every block, stacked as ``lax.map`` stacks them."""
        if self.single:
            b = jnp.zeros((), jnp.int32)
            return jax.tree_util.tree_map(lambda a: a[None], fn(*self.block(b), b))
        return lax.map(lambda b: fn(*self.block(b), b), jnp.arange(self.x.shape[0]))

    def fold(self, fn: Callable[[Int[Array, ""], Any], Any], init: Any) -> Any:
        """``fn(b, carry)`` over the blocks that hold data, in order (a ``fori_loop``)."""
        if self.single:
            return fn(jnp.zeros((), jnp.int32), init)
        return lax.fori_loop(0, self.n_used, fn, init)


def make_blocks(
    x: Float[Array, "n d"],
    w: Float[Array, " n"] | None,
    block_rows: int,
    n_samples=None,
    center=None,
    axis: str | None = None,
) -> Blocks:
    """Cut rows into blocks (padding the tail). ``w`` None means unit weights on the
    first ``n_samples`` rows (by default all), the rest being padding. ``center`` is a
    point, or ``"mean"`` for the rows' weighted mean (the default is the origin).
    ``axis``: these rows are one part of the data, split over that mesh axis
    (:attr:`Blocks.axis`)."""
    n, d = x.shape
    n_blocks = -(-n // block_rows)
    if n_blocks * block_rows != n:
        x, w = pad_rows(x, w, n_blocks * block_rows)
    n_samples = jnp.asarray(n if n_samples is None else n_samples, jnp.int32)
    # with weights, the padding's blocks hold no data either; a zero-weight row inside
    # the first n_samples is skipped by its weight
    n_used = (n_samples + block_rows - 1) // block_rows
    zero = jnp.zeros((d,), x.dtype)
    blocks = Blocks(
        x.reshape(n_blocks, block_rows, d),
        None if w is None else w.reshape(n_blocks, block_rows),
        n_samples,
        n_used,
        zero,
        jnp.zeros((), x.dtype),
        jnp.zeros((), x.dtype),
        axis,
    )
    if isinstance(center, str):  # "mean": one pass for the total and the weighted sum
        total, weighted_sum = sum_rows(lambda xb, wb, _: (jnp.sum(wb), wb @ xb), blocks)
        center = weighted_sum / total
    else:  # the weights alone
        total = sum_rows(lambda xb, wb, _: jnp.sum(wb), blocks)
        center = zero if center is None else center
    # block by block (no centred copy of the data); padding rows count as at the centre
    far = lambda xb, wb, _: jnp.max(jnp.where(wb > 0, jnp.sum((xb - center) ** 2, axis=-1), 0))
    radius = jnp.max(blocks.map(far))
    radius = jnp.sqrt(radius if axis is None else lax.pmax(radius, axis))
    return dataclasses.replace(blocks, center=center, radius=radius, total=total)


def sum_rows(fn: Callable[..., Any], blocks: Blocks) -> Any:
    """``sum_b fn(x_b, w_b, b)`` over the blocks that hold data (a pytree of sums).

    The one reduction over rows: sufficient statistics, log-likelihoods, the k-means
    statistics, the total weight and the centre all go through it, so that summing
    across the parts of rows split over a mesh axis (:attr:`Blocks.axis`) is done here
    alone: every part's sums are gathered and added in the axis's order, so every
    part holds the same bits (an all-reduce may add in another order per device).
    """
    index = jnp.zeros((), jnp.int32)
    if blocks.single:
        return fn(*blocks.block(index), index)
    shapes = jax.eval_shape(lambda b: fn(*blocks.block(b), b), index)
    zeros = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

    def body(b, carry):
        return jax.tree_util.tree_map(jnp.add, carry, fn(*blocks.block(b), b))

    sums = blocks.fold(body, zeros)
    if blocks.axis is None:
        return sums
    return jax.tree_util.tree_map(lambda a: jnp.sum(lax.all_gather(a, blocks.axis), 0), sums)
