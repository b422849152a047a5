"""Exact EM over a data source (:mod:`jaxgmm.data`): rows that are never all in memory.

Each EM iteration is one pass over the source in chunks of whole blocks. A chunk's
program (:func:`_chunk_stats`) is the in-memory pass itself (:func:`_em.pass_stats`,
the same E-step and statistics) for every fit of the batch at once (every restart,
and every K of a sweep, padded to the largest as in memory), and adds its sums to the
running ones, so one pass serves all fits. The M-step, the cancellation check and,
where it asks for it, the exact centred second pass (:func:`_em.centred_stats`)
follow on the summed statistics, as :func:`_em.em_pass` does them in memory; the loop
and its stopping rules are :func:`_em.iterate`'s, run on the host.

Everything a decision depends on (the rows' centre and radius, the total weight) is
computed from the whole source first, so the passes take the forms the in-memory fit
takes. Results equal the in-memory fit's to rounding (the sums are added in another
order), not bit for bit. In a multi-process run (:mod:`jaxgmm.distributed`) the source
is this process's share, and every sum (the survey's, each pass's) is gathered from all
processes and added in process order, so every process holds the same bits.

Initialization differs from the in-memory one: it runs on a sample of at most
:data:`SAMPLE_ROWS` rows, each row kept or not by a hash of the key and its index in
the whole data (so the sample depends neither on the chunking nor on the processes),
weighted by the inverse of the rate: the in-memory initialization (k-means++ and Lloyd
steps) on the sample, not Lloyd passes over all rows. Where the data has no more rows
than the sample, the sample is all of them. Where so few rows carry weight that the
draw keeps none of them, the sample is the first rows that do. Given starting
parameters (``weights_init``, ``means_init``, ``precisions_init``) are used as they are.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import queue
import threading

import jax
import jax.numpy as jnp
import numpy as np

from . import distributed
from ._em import (
    FITS,
    LoopState,
    Natural,
    centred_stats,
    e_step_resp,
    final_scores,
    pass_stats,
)
from ._engine import GivenInit, Inputs, MaximumLikelihood, Options
from ._params import GMMParams, all_finite
from ._rows import Blocks, block_rows_for, make_blocks, padded_rows
from ._stats import SuffStats
from ._typing import x64_scope
from .data import Source, chunks

__all__ = ["SAMPLE_ROWS", "fit_source"]

#: The initialization's sample holds about this many rows at most.
SAMPLE_ROWS = 65536
#: Bytes of rows per chunk: a chunk is a whole number of blocks, at least 2 (so that it
#: is never "small data", whose passes take another form). About 9 chunks are alive
#: at once (read ahead, dispatched, being copied), so this bounds the memory a
#: streamed fit adds; 4 MiB kept peak RSS within a few percent from 250k to 4M rows
#: at a per-chunk overhead of about 1 ms.
CHUNK_BYTES = 4 * 2**20
#: Chunks read ahead of the one being computed, and chunks dispatched at once.
_IN_FLIGHT = 2


def fit_source(
    key,
    source: Source,
    n_components: int | tuple[int, ...],
    *,
    covariance_class,
    n_init: int = 1,
    init_params: str = "kmeans",
    weights_init=None,
    means_init=None,
    precisions_init=None,
    params0=None,
    lower_bound0=-np.inf,
    tol: float = 1e-3,
    reg_covar: float = 1e-6,
    max_iter: int = 100,
    chunk_rows: int | None = None,
    with_scores: bool = False,
):
    """EM over ``source`` for every K of ``n_components`` (an int or a tuple) with
    ``n_init`` restarts each, all in the same passes; returns an :class:`EMResult`
    with a leading (K, restart) axis, K-major, its components padded to the largest K,
    as the in-memory batch does. Fit (K, i) starts from restart key i.

    ``params0`` (one model, one K) is a warm start of every restart from
    ``lower_bound0``. With ``with_scores``, also returns ``(log_lik, entropy)`` of
    every fit's final model (one more pass) and the rows' total weight."""
    ks = (int(n_components),) if np.ndim(n_components) == 0 else tuple(n_components)
    dtype = source.dtype
    d, k_top, n_fits = source.n_features, max(ks), len(ks) * n_init
    width = max(1 + d + covariance_class.n_second(d), n_fits * k_top)
    block = block_rows_for(source.n_rows, width, dtype.itemsize)
    block = min(block, max(64, 1 << (max(source.n_rows, 2) - 1).bit_length()) // 2)
    if chunk_rows is None:  # no larger than the rows
        chunk_rows = min(CHUNK_BYTES // (d * dtype.itemsize), source.n_rows)
    chunk_rows = max(2, -(-chunk_rows // block)) * block
    active = np.repeat(np.arange(k_top)[None] < np.asarray(ks)[:, None], n_init, axis=0)
    with x64_scope(dtype):
        frame, x, w = _survey(key, source, chunk_rows, dtype)
        frame = _with_radius(frame, source, chunk_rows)
        if params0 is not None:
            tile = lambda a: jnp.broadcast_to(jnp.asarray(a, dtype), (n_fits, *np.shape(a)))
            params = jax.tree_util.tree_map(tile, params0)
        else:
            keys = jnp.tile(jax.random.split(key, n_init), len(ks))
            given = (weights_init, means_init, precisions_init)
            params = _initial(keys, x, w, active, covariance_class, init_params, reg_covar, given)
        step = functools.partial(
            _step, source, covariance_class, frame, block, chunk_rows, reg_covar, active
        )
        lb0 = np.full(n_fits, lower_bound0, dtype)
        result = _iterate(step, params, lb0, tol=tol, max_iter=max_iter, dtype=dtype)
        if not with_scores:
            return result
        chunk_fn = functools.partial(_chunk_scores, covariance_class, block)
        scores = _pass(chunk_fn, source, chunk_rows, frame, result.params)
        return result, scores, float(frame.total)


@dataclasses.dataclass(frozen=True)
class _Frame:
    """What every pass shares, from the whole source: the rows' centre and radius
    (about which the fast forms are taken, and whose size decides the exact form),
    and the total weight."""

    center: np.ndarray
    radius: np.ndarray
    total: np.ndarray


def _survey(key, source: Source, rows: int, dtype):
    """The first pass: the rows checked, the frame's centre and total weight, and the
    initialization's sample (rows kept with probability ``rate`` by a hash of the key
    and the row's index in the whole data, their weights divided by ``rate``), over
    every process's rows. Returns ``(frame without its radius, sample rows, their
    weights)``."""
    counts = distributed.all_counts(source.n_rows)
    offset = int(counts[: distributed.process_index()].sum())
    rate = min(1.0, SAMPLE_ROWS / max(int(counts.sum()), 1))
    seed = np.uint64(int.from_bytes(np.asarray(jax.random.key_data(key)).tobytes()[:8], "little"))
    total, weighted, xs, ws = 0.0, np.zeros(source.n_features), [], []
    error = None
    try:
        for start, x, w in chunks(source, rows):
            w = np.ones(len(x)) if w is None else _check_weights(w)
            _check_rows(x)
            total += w.sum()
            weighted += w @ x
            index = np.arange(offset + start, offset + start + len(x), dtype=np.uint64)
            keep = _uniform(seed, index) < rate
            xs.append(x[keep].astype(dtype))
            ws.append((w[keep] / rate).astype(dtype))
    except (OSError, ValueError) as e:
        error = e
    distributed.agree(error)
    total, weighted = distributed.all_sum((np.asarray(total), weighted))
    if not total > 0:
        raise ValueError("The source's rows have no weight (no rows, or all weights zero)")
    x = distributed.all_rows(np.concatenate(xs) if xs else np.empty((0, source.n_features), dtype))
    w = distributed.all_rows(np.concatenate(ws) if ws else np.empty(0, dtype))
    if not np.any(w > 0):  # so few rows carry weight that the draw missed them all
        x, w = map(distributed.all_rows, _weighted_head(source, rows, dtype))
        x, w = x[:SAMPLE_ROWS], w[:SAMPLE_ROWS]
    center = (weighted / total).astype(dtype)
    return _Frame(center, None, np.asarray(total, dtype)), x, w


def _with_radius(frame: _Frame, source: Source, rows: int) -> _Frame:
    """The second pass: the largest distance of a weighted row from the centre."""
    far = 0.0
    for _, x, w in chunks(source, rows):
        kept = x if w is None else x[w > 0]
        if len(kept):
            far = max(far, float(np.max(np.sum((kept - frame.center) ** 2, axis=1))))
    far = distributed.all_max(far)
    return dataclasses.replace(frame, radius=np.asarray(np.sqrt(far), frame.center.dtype))


def _check_rows(x) -> None:
    if not np.all(np.isfinite(x)):
        raise ValueError("Input X contains NaN or infinity; remove or impute those rows first")


def _check_weights(w) -> np.ndarray:
    w = np.asarray(w, np.float64)
    if np.any(w < 0) or not np.all(np.isfinite(w)):
        raise ValueError("Sample weights must be finite and non-negative")
    return w


# --- the initialization, on a sample -------------------------------------------


def _weighted_head(source: Source, rows: int, dtype):
    """The first :data:`SAMPLE_ROWS` rows that carry weight, with their weights."""
    xs, ws, kept = [], [], 0
    for _, x, w in chunks(source, rows):
        w = np.ones(len(x)) if w is None else np.asarray(w)
        xs.append(x[w > 0])
        ws.append(w[w > 0])
        kept += len(ws[-1])
        if kept >= SAMPLE_ROWS:
            break
    x, w = np.concatenate(xs)[:SAMPLE_ROWS], np.concatenate(ws)[:SAMPLE_ROWS]
    return x.astype(dtype), w.astype(dtype)


def _uniform(seed: np.uint64, index: np.ndarray) -> np.ndarray:
    """A uniform number in [0, 1) per index (splitmix64 of ``seed + index``)."""
    with np.errstate(over="ignore"):
        z = index * np.uint64(0x9E3779B97F4A7C15) + seed
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / 2.0**53


def _initial(keys, x, w, active, cov_cls, init_params, reg_covar, given):
    """Every fit's starting parameters (its components past ``active`` padding), from
    the sample ``x``, ``w`` (or as given). The sample is padded with rows of weight 0
    to a rounded size, so that samples of about the same size share one program."""
    dtype = x.dtype
    pad = padded_rows(len(x), 1024) - len(x)
    x, w = np.pad(x, ((0, pad), (0, 0))), np.pad(w, (0, pad))
    options = Options(cov_cls, init=init_params)
    as_array = lambda a: None if a is None else jnp.asarray(a, dtype)
    inputs = Inputs(
        tol=jnp.zeros((), dtype),
        reg_covar=jnp.asarray(reg_covar, dtype),
        lower_bound0=jnp.zeros((), dtype),
        given=GivenInit(*map(as_array, given)),
    )
    return _start(options, keys, jnp.asarray(x), jnp.asarray(w), inputs, jnp.asarray(active))


@functools.partial(jax.jit, static_argnums=0)
def _start(options: Options, keys, x, w, inputs: Inputs, active):
    """Every restart's initialization on the sample ``x`` (weights ``w``)."""
    blocks = make_blocks(x, w, max(16, x.shape[0]), center="mean")
    start = lambda key, a: MaximumLikelihood().start(options, key, blocks, inputs, a)
    return jax.vmap(start, axis_name=FITS)(keys, active)


# --- one iteration: passes of chunks --------------------------------------------


def _step(source, cov_cls, frame: _Frame, block, chunk_rows, reg_covar, active, params):
    """One EM iteration of every fit: ``(new params, lower bound, collapsed)``."""
    dtype = frame.center.dtype
    direct = cov_cls.prefers_direct(source.n_features)
    stats, log_lik = _pass(
        functools.partial(_chunk_stats, cov_cls, block), source, chunk_rows, frame, params
    )
    center = params.means if direct else jnp.broadcast_to(frame.center, params.means.shape)
    reg = jnp.asarray(reg_covar, dtype)
    new, risky = _m_step(cov_cls, stats, center, reg, active)
    if bool(np.any(risky)):  # the exact second pass, for the fits that need it
        shift = new.means
        chunk_fn = functools.partial(_chunk_centred, cov_cls, block, shift)
        centred, _ = _pass(chunk_fn, source, chunk_rows, frame, params)
        exact, _ = _m_step(cov_cls, centred, shift, reg, active)
        new = _where(np.asarray(risky), exact, new)
    floor = 10 * np.finfo(dtype).eps * frame.total
    collapsed = np.min(np.where(active, np.asarray(stats.sum_r), np.inf), axis=1) < floor
    return new, np.asarray(log_lik) / frame.total, collapsed


def _pass(chunk_fn, source, chunk_rows, frame: _Frame, params):
    """The sums of ``chunk_fn`` over the source's chunks (read ahead in a thread, at
    most :data:`_IN_FLIGHT` chunks dispatched and not yet summed), and over every
    process's: NumPy arrays, the same on every process."""
    acc, pending = None, collections.deque()
    dtype = frame.center.dtype
    ones = np.ones(chunk_rows, dtype)
    for _, x, w in _read_ahead(source, chunk_rows):
        x, w = _padded(x, ones if w is None else w, chunk_rows, dtype)
        out = chunk_fn(params, x, w, frame.center, frame.radius, frame.total)
        acc = out if acc is None else _add(acc, out)
        pending.append(acc)
        if len(pending) > _IN_FLIGHT:
            jax.block_until_ready(pending.popleft())
    if acc is None:  # a process without rows adds zeros
        x, w = _padded(np.zeros((0, source.n_features)), ones[:0], chunk_rows, dtype)
        acc = chunk_fn(params, x, w, frame.center, frame.radius, frame.total)
    return distributed.all_sum(jax.device_get(acc))


def _padded(x, w, rows: int, dtype):
    """A chunk as ``rows`` rows of ``dtype``: the last chunk padded with rows of weight
    0; a full chunk as it is (no copy)."""
    n = len(x)
    x, w = np.asarray(x, dtype), np.asarray(w[:n], dtype)
    if n == rows:
        return x, w
    return np.pad(x, ((0, rows - n), (0, 0))), np.pad(w, (0, rows - n))


@jax.jit
def _where(pick: np.ndarray, a, b):
    """Restart by restart, ``a`` where ``pick``, else ``b``."""
    pick = jnp.asarray(pick)
    return jax.tree_util.tree_map(
        lambda u, v: jnp.where(pick.reshape((-1,) + (1,) * (u.ndim - 1)), u, v), a, b
    )


@jax.jit
def _add(a, b):
    return jax.tree_util.tree_map(jnp.add, a, b)


def _read_ahead(source, rows):
    """:func:`jaxgmm.data.chunks`, read by a background thread at most
    :data:`_IN_FLIGHT` chunks ahead."""
    q: queue.Queue = queue.Queue(maxsize=_IN_FLIGHT)
    done = object()

    def reader():
        try:
            for item in chunks(source, rows):
                q.put(item)
            q.put(done)
        except BaseException as e:  # handed to the consumer
            q.put(e)

    threading.Thread(target=reader, daemon=True).start()
    while (item := q.get()) is not done:
        if isinstance(item, BaseException):
            raise item
        yield item


def _chunk_blocks(x, w, block, center, radius, total) -> Blocks:
    """A chunk's rows as blocks, with the whole source's centre, radius and total."""
    n_blocks = x.shape[0] // block
    n_used = jnp.asarray(n_blocks, jnp.int32)
    return Blocks(
        x.reshape(n_blocks, block, -1),
        w.reshape(n_blocks, block),
        jnp.asarray(x.shape[0], jnp.int32),
        n_used,
        center,
        radius,
        total,
    )


@functools.partial(jax.jit, static_argnums=(0, 1))
def _chunk_stats(cov_cls, block, params, x, w, center, radius, total):
    """Every restart's statistics and log-likelihood over one chunk (the in-memory
    pass's own: the same forms, decided from the whole source)."""
    blocks = _chunk_blocks(x, w, block, center, radius, total)

    def one(p):
        model = Natural.of(p, blocks)
        stats, log_lik, _ = pass_stats(e_step_resp(model), blocks, cov_cls, model.form, p.means)
        return stats, log_lik

    return jax.vmap(one, axis_name=FITS)(params)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _chunk_centred(cov_cls, block, shift, params, x, w, center, radius, total):
    """The exact second pass over one chunk: moments about ``shift`` (per restart)."""
    blocks = _chunk_blocks(x, w, block, center, radius, total)

    def one(p, s):
        model = Natural.of(p, blocks)
        return centred_stats(e_step_resp(model), blocks, cov_cls, model.form, s)

    return jax.vmap(one, axis_name=FITS)(params, shift), jnp.zeros((shift.shape[0],), x.dtype)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _chunk_scores(cov_cls, block, params, x, w, center, radius, total):
    """Every fit's summed log-likelihood and entropy over one chunk
    (:func:`_em.final_scores`)."""
    blocks = _chunk_blocks(x, w, block, center, radius, total)
    return jax.vmap(lambda p: final_scores(p, blocks), axis_name=FITS)(params)


@functools.partial(jax.jit, static_argnums=0)
def _m_step(cov_cls, stats: SuffStats, center, reg_covar, active):
    """Every fit's M-step from summed statistics taken about ``center``, and whether
    it may have cancelled (:meth:`GMMParams.cancellation_risk`)."""

    def one(s, c, a):
        new = GMMParams.from_stats(s, cov_cls, reg_covar, None, c, a)
        return new, new.cancellation_risk(reg_covar, c)

    return jax.vmap(one)(stats, center, active)


_finite = jax.jit(jax.vmap(all_finite))


def _iterate(step, params, lower_bound, *, tol, max_iter: int, dtype):
    """:func:`jaxgmm._em.iterate`'s loop on the host, for a batch of fits (from
    ``lower_bound``, one each): each stops on its own (converged, failed, max_iter)
    and keeps its last finite parameters."""
    n = params.weights.shape[0]
    n_iter = np.zeros(n, np.int32)
    trace = np.full((n, max(max_iter, 1)), np.nan, dtype)
    converged = np.zeros(n, bool)
    failed = ~np.asarray(_finite(params))
    flag = np.zeros(n, bool)
    while True:
        running = (n_iter < max_iter) & ~converged & ~failed
        if not running.any():
            break
        new, lb, collapsed = step(params)
        ok = np.asarray(_finite(new)) & np.isfinite(lb) & running
        params = _where(ok, new, params)
        rows = np.flatnonzero(running)
        trace[rows, n_iter[rows]] = lb[rows]
        converged = np.where(running, ok & (np.abs(lb - lower_bound) < tol), converged)
        failed = np.where(running, ~ok, failed)
        flag = np.where(running, collapsed, flag)
        lower_bound = np.where(running, lb, lower_bound).astype(dtype)
        n_iter = n_iter + running
    state = LoopState(params, lower_bound, n_iter, trace[:, :max_iter], converged, failed, flag)
    return jax.device_put(jax.vmap(LoopState.result)(state))
