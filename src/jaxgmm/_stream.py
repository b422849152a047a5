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

Initialization starts on a sample of at most :data:`SAMPLE_ROWS` rows, each row kept
or not by a hash of the key and its index in the whole data (so the sample depends
neither on the chunking nor on the processes), weighted by the inverse of the rate.
The default ``'kmeans'`` runs the in-memory k-means (k-means++ and Lloyd steps) on the
sample, then Lloyd passes over all rows (stopping as scikit-learn's ``KMeans`` stops),
and takes the parameters from every row's label, as the in-memory start does; the
other methods run on the sample alone. Where the data has no more rows than the
sample, the sample is all of them. Where so few rows carry weight that the
draw keeps none of them, the sample is the first rows that do. Given starting
parameters (``weights_init``, ``means_init``, ``precisions_init``) are used as they are.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import queue
import sys
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
    resp_sums,
)
from ._engine import GivenInit, Inputs, MaximumLikelihood, Options
from ._init import kmeans_centers, nearest, nearest_labels
from ._params import GMMParams, all_finite
from ._rows import Blocks, block_rows_for, make_blocks, pad_rows, padded_rows, sum_rows
from ._stats import SuffStats
from ._typing import x64_scope
from .data import Source, chunks

__all__ = ["SAMPLE_ROWS", "fit_groups", "fit_source", "sample_starts"]

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


def fit_source(key, source: Source, n_components, *, covariance_class, **kwargs):
    """EM over ``source`` for every K of ``n_components`` (an int or a tuple) with
    ``n_init`` restarts each: :func:`fit_groups` for one covariance class."""
    return fit_groups(key, source, [(covariance_class, n_components)], **kwargs)[0]


@dataclasses.dataclass(frozen=True)
class _Group:
    """One covariance class's fits: every K of a sweep (padded to the largest, past
    ``active`` components) times every restart, K-major, with its own block size."""

    cov_cls: type
    active: np.ndarray  # (fits, largest K)
    block: int


def fit_groups(
    key,
    source: Source,
    groups,
    *,
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
    """EM over ``source`` for ``groups``, pairs ``(covariance class, K or Ks)``, with
    ``n_init`` restarts each, all in the same passes over the rows; returns one
    :class:`EMResult` per group with a leading (K, restart) axis, K-major, its
    components padded to the largest K, as the in-memory batch does. Fit (K, i) starts
    from restart key i.

    ``params0`` (one model, one K) is a warm start of every restart from
    ``lower_bound0``. With ``with_scores``, each group's result comes with the
    ``(log_lik, entropy)`` of every fit's final model (one more pass) and the rows'
    total weight."""
    dtype = source.dtype
    plans = [_plan(cov_cls, ks, n_init, source) for cov_cls, ks in groups]
    chunk_rows = _chunk_rows(source, plans, chunk_rows)
    given = (weights_init, means_init, precisions_init)
    with x64_scope(dtype):
        frame, x, w = _survey(key, source, chunk_rows, dtype)
        frame = _with_radius(frame, source, chunk_rows)
        if refines(init_params, given, params0):  # Lloyd passes over all rows
            seeds = _seeds(key, x, w, plans, n_init)
            centers = _lloyd(source, plans, frame, chunk_rows, seeds)
            params = _from_centers(source, plans, frame, chunk_rows, reg_covar, centers)
        else:
            params = _starts(key, x, w, plans, n_init, init_params, given, params0, reg_covar)
        step = functools.partial(_step, source, plans, frame, chunk_rows, reg_covar)
        results = _iterate(step, params, lower_bound0, tol=tol, max_iter=max_iter, dtype=dtype)
        if not with_scores:
            return results
        fns = {
            g: functools.partial(_chunk_scores, plan.cov_cls, plan.block)
            for g, plan in enumerate(plans)
        }
        final = {g: r.params for g, r in enumerate(results)}
        scores = _pass(_each(fns), source, chunk_rows, frame, final)
        return [(r, scores[g], float(frame.total)) for g, r in enumerate(results)]


def refines(init_params: str, given, params0) -> bool:
    """Whether a fit over a source starts from k-means centres refined by Lloyd passes
    over all rows: the ``'kmeans'`` initialization, with no starting parameters given."""
    return init_params == "kmeans" and params0 is None and all(a is None for a in given)


def sample_starts(
    key, source: Source, groups, *, n_init: int, init_params: str, given, params0, reg_covar
) -> tuple[list | None, list | None]:
    """What :func:`fit_groups` starts from, from the sample of the whole data (one pass
    over ``source``, which also checks its rows): ``(params, None)``, every group's
    starting parameters (leading (K, restart) axis, K-major), or, where the start
    :func:`refines`, ``(None, centers)``: every group's k-means centres on the sample,
    for Lloyd passes over all rows. A multi-process fit of rows in memory
    (:mod:`jaxgmm._spmd`) starts here, so it starts where the streamed fit of the
    same rows does. ``given``: ``(weights_init, means_init, precisions_init)``."""
    plans = [_plan(cov_cls, ks, n_init, source) for cov_cls, ks in groups]
    chunk_rows = _chunk_rows(source, plans, None)
    with x64_scope(source.dtype):
        _, x, w = _survey(key, source, chunk_rows, source.dtype)
        if refines(init_params, given, params0):
            seeds = _seeds(key, x, w, plans, n_init)
            return None, [np.asarray(seeds[g][0]) + seeds[g][1] for g in range(len(plans))]
        params = _starts(key, x, w, plans, n_init, init_params, given, params0, reg_covar)
    return [params[g] for g in range(len(plans))], None


def _chunk_rows(source: Source, plans: list[_Group], chunk_rows: int | None) -> int:
    """Rows per chunk: whole blocks of every group (at least two), about
    :data:`CHUNK_BYTES` (or ``chunk_rows``), no more than the rows."""
    block = max(plan.block for plan in plans)  # all powers of two: a multiple of each
    if chunk_rows is None:
        per_chunk = CHUNK_BYTES // (source.n_features * source.dtype.itemsize)
        chunk_rows = min(per_chunk, source.n_rows)
    return max(2, -(-chunk_rows // block)) * block


def _starts(key, x, w, plans, n_init, init_params, given, params0, reg_covar) -> dict:
    """Group index -> every fit's starting parameters: ``params0`` for each, or the
    initialization on the sample ``x``, ``w``."""
    params = {}
    for g, plan in enumerate(plans):
        n_fits = len(plan.active)
        if params0 is not None:
            tile = lambda a, n=n_fits: jnp.broadcast_to(jnp.asarray(a, x.dtype), (n, *np.shape(a)))
            params[g] = jax.tree_util.tree_map(tile, params0)
        else:
            keys = jnp.tile(jax.random.split(key, n_init), n_fits // n_init)
            cls, active = plan.cov_cls, plan.active
            params[g] = _initial(keys, x, w, active, cls, init_params, reg_covar, given)
    return params


def _plan(cov_cls, n_components, n_init: int, source: Source) -> _Group:
    """A group's fits and block: the in-memory block for its width, no more than half
    the rows (so that a chunk is never small data) nor half a chunk."""
    ks = (int(n_components),) if np.ndim(n_components) == 0 else tuple(n_components)
    d, k_top = source.n_features, max(ks)
    width = max(cov_cls.n_phi(d), len(ks) * n_init * k_top)
    block = block_rows_for(source.n_rows, width, source.dtype.itemsize)
    block = min(block, max(64, 1 << (max(source.n_rows, 2) - 1).bit_length()) // 2)
    half_chunk = CHUNK_BYTES // (2 * d * source.dtype.itemsize)  # two blocks a chunk
    block = min(block, max(64, 1 << (max(half_chunk, 1).bit_length() - 1)))
    active = np.repeat(np.arange(k_top)[None] < np.asarray(ks)[:, None], n_init, axis=0)
    return _Group(cov_cls, active, block)


@dataclasses.dataclass(frozen=True)
class _Frame:
    """What every pass shares, from the whole source: the rows' centre and radius
    (about which the fast forms are taken, and whose size decides the exact form),
    and the total weight."""

    center: np.ndarray
    radius: np.ndarray
    total: np.ndarray
    variance: np.ndarray | None = None  # the mean per-feature variance (Lloyd's tolerance)


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
    x = np.concatenate(xs) if xs else np.empty((0, source.n_features), dtype)
    x, w = distributed.all_rows(x, np.concatenate(ws) if ws else np.empty(0, dtype))
    if not np.any(w > 0):  # so few rows carry weight that the draw missed them all
        x, w = distributed.all_rows(*_weighted_head(source, rows, dtype))
        x, w = x[:SAMPLE_ROWS], w[:SAMPLE_ROWS]
    center = (weighted / total).astype(dtype)
    return _Frame(center, None, np.asarray(total, dtype)), x, w


def _with_radius(frame: _Frame, source: Source, rows: int) -> _Frame:
    """The second pass: the largest distance of a weighted row from the centre, and
    the rows' mean per-feature variance (about the centre: no cancellation)."""
    far, spread = 0.0, np.zeros(source.n_features)
    for _, x, w in chunks(source, rows):
        d2 = (np.asarray(x, np.float64) - frame.center) ** 2
        spread += d2.sum(0) if w is None else np.asarray(w, np.float64) @ d2
        kept = d2 if w is None else d2[np.asarray(w) > 0]
        if len(kept):
            far = max(far, float(np.max(np.sum(kept, axis=1))))
    far, spread = distributed.all_max(far), distributed.all_sum(spread)
    dtype = frame.center.dtype
    variance = np.asarray(np.mean(spread / frame.total), dtype)
    return dataclasses.replace(frame, radius=np.asarray(np.sqrt(far), dtype), variance=variance)


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


def _seeds(key, x, w, plans, n_init) -> dict:
    """Group index -> ``(centres about the sample's mean, that mean)``: every fit's
    k-means (k-means++ seeding and Lloyd steps) on the sample ``x``, ``w``."""
    x, w = pad_rows(x, w, padded_rows(len(x), 1024))
    out = {}
    for g, plan in enumerate(plans):
        keys = jnp.tile(jax.random.split(key, n_init), len(plan.active) // n_init)
        out[g] = _sample_kmeans(keys, jnp.asarray(x), jnp.asarray(w), jnp.asarray(plan.active))
    return out


@jax.jit
def _sample_kmeans(keys, x, w, active):
    blocks = make_blocks(x, w, max(16, x.shape[0]), center="mean")
    k = active.shape[1]
    one = lambda key, a: kmeans_centers(key, blocks, k, a) - blocks.center
    return jax.vmap(one, axis_name=FITS)(keys, active), blocks.center


#: Lloyd passes over a source stop as scikit-learn's ``KMeans`` does (:func:`_init.kmeans`).
_LLOYD_MAX_ITER, _LLOYD_TOL = 300, 1e-4


def _lloyd(source, plans, frame: _Frame, chunk_rows, seeds: dict) -> dict:
    """Lloyd passes over all rows from every fit's ``seeds`` (group index ->
    ``(centres, their origin)``), all groups in the same passes, each fit until its
    centres move by at most ``tol`` times the rows' mean variance (squared, summed),
    as :func:`_init.kmeans` stops: group index -> final centres about ``frame.center``."""
    shift = lambda o: np.asarray(o) - frame.center  # one origin to the other, then add
    centers = {g: np.asarray(c) + shift(o) for g, (c, o) in seeds.items()}
    running = {g: np.ones(len(c), bool) for g, c in centers.items()}
    tol = _LLOYD_TOL * frame.variance
    for _ in range(_LLOYD_MAX_ITER):
        live = [g for g in centers if running[g].any()]
        if not live:
            break
        fns = {g: functools.partial(_chunk_sums, plans[g].block) for g in live}
        inputs = {g: (centers[g], plans[g].active) for g in live}
        for g, (counts, sums) in _pass(_each(fns), source, chunk_rows, frame, inputs).items():
            c = centers[g]
            new = np.where(counts[..., None] > 0, sums / np.maximum(counts, 1e-30)[..., None], c)
            new = np.where(running[g][:, None, None], new, c)
            running[g] &= np.sum((new - c) ** 2, axis=(1, 2)) > tol
            centers[g] = new.astype(c.dtype)
    return centers


def _from_centers(source, plans, frame: _Frame, chunk_rows, reg_covar, centers: dict) -> dict:
    """Every fit's parameters from one-hot responsibilities at each row's nearest
    centre (about ``frame.center``), as :func:`_init.params_from_centers`: one pass for
    the means, one for the moments about them (exact)."""
    inputs = {g: (c, plans[g].active) for g, c in centers.items()}
    fns = {g: functools.partial(_chunk_sums, plans[g].block) for g in centers}
    shifts = {}
    for g, (counts, sums) in _pass(_each(fns), source, chunk_rows, frame, inputs).items():
        mean = np.where(counts[..., None] > 0, sums / np.maximum(counts, 1e-300)[..., None], 0)
        shifts[g] = (mean + frame.center).astype(frame.center.dtype)
    fns = {
        g: functools.partial(_chunk_label_stats, plans[g].cov_cls, plans[g].block, shifts[g])
        for g in centers
    }
    stats = _pass(_each(fns), source, chunk_rows, frame, inputs)
    reg = jnp.asarray(reg_covar, frame.center.dtype)
    out = {}
    for g, plan in enumerate(plans):
        out[g] = _from_label_stats(plan.cov_cls, stats[g], shifts[g], reg, frame.total, plan.active)
    return out


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
    x, w = pad_rows(x, w, padded_rows(len(x), 1024))
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


def _step(source, plans: list[_Group], frame: _Frame, chunk_rows, reg_covar, params: dict):
    """One EM iteration of every fit of the groups in ``params`` (group index ->
    parameters), in one pass (two where some fit needs the exact one): group index ->
    ``(new params, lower bound, collapsed)``."""
    dtype = frame.center.dtype
    reg = jnp.asarray(reg_covar, dtype)
    fns = {g: functools.partial(_chunk_stats, plans[g].cov_cls, plans[g].block) for g in params}
    sums = _pass(_each(fns), source, chunk_rows, frame, params)
    out, risky = {}, {}
    for g, (stats, log_lik) in sums.items():
        plan, p = plans[g], params[g]
        direct = plan.cov_cls.prefers_direct(source.n_features)
        center = p.means if direct else jnp.broadcast_to(frame.center, p.means.shape)
        new, risk = _m_step(plan.cov_cls, stats, center, reg, plan.active, p.covariance)
        if bool(np.any(risk)):
            risky[g] = np.asarray(risk)
        floor = 10 * np.finfo(dtype).eps * frame.total
        sum_r = np.where(plan.active, np.asarray(stats.sum_r), np.inf)
        out[g] = (new, np.asarray(log_lik) / frame.total, np.min(sum_r, axis=1) < floor)
    if risky:  # the exact second pass, for the fits that need it
        shifts = {g: np.asarray(out[g][0].means) for g in risky}  # on the host
        fns = {
            g: functools.partial(_chunk_centred, plans[g].cov_cls, plans[g].block, shifts[g])
            for g in risky
        }
        centred = _pass(_each(fns), source, chunk_rows, frame, {g: params[g] for g in risky})
        for g, (stats, _) in centred.items():
            previous = params[g].covariance
            exact, _ = _m_step(plans[g].cov_cls, stats, shifts[g], reg, plans[g].active, previous)
            out[g] = (_where(risky[g], exact, out[g][0]), *out[g][1:])
    return out


def _each(fns: dict):
    """One chunk function for several groups: group index -> its function's sums."""

    def chunk_fn(params: dict, *chunk):
        return {g: fn(params[g], *chunk) for g, fn in fns.items()}

    return chunk_fn


def _pass(chunk_fn, source, chunk_rows, frame: _Frame, params):
    """The sums of ``chunk_fn`` over the source's chunks, and over every process's:
    NumPy arrays, the same on every process. Chunks are read ahead in a thread and
    dealt to the process's local devices in turn (each sums its own; the sums are added
    in device order), at most :data:`_IN_FLIGHT` per device dispatched and not yet
    summed."""
    devices = jax.local_devices()
    shared = (params, frame.center, frame.radius, frame.total)
    on = [jax.device_put(shared, d) for d in devices] if len(devices) > 1 else [shared]
    accs, pending = [None] * len(on), collections.deque()
    dtype = frame.center.dtype
    ones = np.ones(chunk_rows, dtype)
    for i, (_, x, w) in enumerate(_read_ahead(source, chunk_rows)):
        j = i % len(on)
        x, w = _padded(x, ones if w is None else w, chunk_rows, dtype)
        if len(on) > 1:
            x, w = jax.device_put((x, w), devices[j])
        p, center, radius, total = on[j]
        out = chunk_fn(p, x, w, center, radius, total)
        accs[j] = out if accs[j] is None else _add(accs[j], out)
        pending.append(accs[j])
        if len(pending) > _IN_FLIGHT * len(on):
            jax.block_until_ready(pending.popleft())
    sums = [jax.device_get(a) for a in accs if a is not None]
    if not sums:  # a process without rows adds zeros
        x, w = _padded(np.zeros((0, source.n_features)), ones[:0], chunk_rows, dtype)
        sums = [jax.device_get(chunk_fn(*shared[:1], x, w, *shared[1:]))]
    return distributed.all_sum(functools.reduce(_host_add, sums))


def _host_add(a, b):
    return jax.tree_util.tree_map(np.add, a, b)


def _padded(x, w, rows: int, dtype):
    """A chunk as ``rows`` rows of ``dtype``: the last chunk padded with rows of weight
    0; a full chunk as it is (no copy)."""
    n = len(x)
    x, w = np.asarray(x, dtype), np.asarray(w[:n], dtype)
    return (x, w) if n == rows else pad_rows(x, w, rows)


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
    :data:`_IN_FLIGHT` chunks ahead. The thread has ended when this generator has: a
    reader left inside pyarrow at interpreter exit can abort the process."""
    q: queue.Queue = queue.Queue(maxsize=_IN_FLIGHT)
    done, stop = object(), threading.Event()

    def reader():
        try:
            for item in chunks(source, rows):
                if stop.is_set():
                    return
                q.put(item)
                if stop.is_set():  # (not one more chunk read for nobody)
                    return
            q.put(done)
        except BaseException as e:  # handed to the consumer
            q.put(e)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        while (item := q.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:  # the consumer stopped early (an error, an interrupt): end the reader
        stop.set()
        # (not when closed by the reader's own garbage collection, or at exit, where
        # daemon threads no longer run)
        waits = thread is not threading.current_thread() and not sys.is_finalizing()
        while waits and thread.is_alive():
            try:  # make room for a put the reader waits on
                q.get(timeout=0.01)
            except queue.Empty:
                pass


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


def _labels(centers, active, blocks: Blocks, hard=False):
    """``resp_fn`` of one-hot responsibilities at each row's nearest centre (about
    ``blocks.center``), weighted; with ``hard``, ``assign`` giving the centre's index
    and the weight (:func:`~jaxgmm._init.nearest_labels`)."""
    c_sq = jnp.sum(centers * centers, 1) + jnp.where(active, 0, jnp.inf).astype(centers.dtype)
    return (nearest_labels if hard else nearest)(centers, c_sq, blocks)


@functools.partial(jax.jit, static_argnums=0)
def _chunk_sums(block, inputs, x, w, center, radius, total):
    """Every fit's count and sum (about the centre) of the rows nearest each centre,
    over one chunk (a Lloyd step's statistics)."""
    blocks = _chunk_blocks(x, w, block, center, radius, total)
    one = lambda c, a: resp_sums(_labels(c, a, blocks), blocks)
    return jax.vmap(one, axis_name=FITS)(*inputs)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _chunk_label_stats(cov_cls, block, shift, inputs, x, w, center, radius, total):
    """Every fit's moments about ``shift`` of the rows nearest each centre, over one chunk."""
    blocks = _chunk_blocks(x, w, block, center, radius, total)
    moments = cov_cls.second_moments

    def one(c, a, s):
        assign = _labels(c, a, blocks, hard=True)
        stats = lambda xb, wb, b: SuffStats.from_block_labelled(*assign(xb, wb, b), xb, s, moments)
        return sum_rows(stats, blocks)

    return jax.vmap(one, axis_name=FITS)(*inputs, shift)


@functools.partial(jax.jit, static_argnums=0)
def _from_label_stats(cov_cls, stats: SuffStats, shift, reg_covar, total, active):
    """Every fit's parameters from its labels' moments (weights over the total)."""
    one = lambda s, c, a: GMMParams.from_stats(s, cov_cls, reg_covar, total, c, a)
    return jax.vmap(one)(stats, shift, active)


@functools.partial(jax.jit, static_argnums=0)
def _m_step(cov_cls, stats: SuffStats, center, reg_covar, active, previous):
    """Every fit's M-step from summed statistics taken about ``center`` (from its
    ``previous`` covariance), and whether it may have cancelled
    (:meth:`GMMParams.cancellation_risk`)."""

    def one(s, c, a, p):
        new = GMMParams.from_stats(s, cov_cls, reg_covar, None, c, a, p.covariances)
        return new, new.cancellation_risk(reg_covar, c)

    return jax.vmap(one)(stats, center, active, previous)


_finite = jax.jit(jax.vmap(all_finite))


def _iterate(step, params: dict, lower_bound0, *, tol, max_iter: int, dtype) -> list:
    """:func:`jaxgmm._em.iterate`'s loop on the host, for every group's batch of fits
    (from ``lower_bound0``): each fit stops on its own (converged, failed, max_iter)
    and keeps its last finite parameters; a pass computes only the groups that still
    have a fit running."""
    loops = {g: _Loop.start(p, lower_bound0, max_iter, dtype) for g, p in params.items()}
    while live := {g: loop for g, loop in loops.items() if loop.running(max_iter).any()}:
        out = step({g: loop.params for g, loop in live.items()})
        for g, loop in live.items():
            loop.update(*out[g], max_iter=max_iter, tol=tol)
    return [loops[g].result(max_iter) for g in sorted(loops)]


@dataclasses.dataclass
class _Loop:
    """One group's loop state on the host (:class:`_em.LoopState`'s fields)."""

    params: GMMParams
    lower_bound: np.ndarray
    n_iter: np.ndarray
    trace: np.ndarray
    converged: np.ndarray
    failed: np.ndarray
    flag: np.ndarray

    @classmethod
    def start(cls, params, lower_bound0, max_iter: int, dtype) -> _Loop:
        n = params.weights.shape[0]
        return cls(
            params,
            np.full(n, lower_bound0, dtype),
            np.zeros(n, np.int32),
            np.full((n, max(max_iter, 1)), np.nan, dtype),
            np.zeros(n, bool),
            ~np.asarray(_finite(params)),
            np.zeros(n, bool),
        )

    def running(self, max_iter: int) -> np.ndarray:
        return (self.n_iter < max_iter) & ~self.converged & ~self.failed

    def update(self, new, lb, collapsed, *, max_iter: int, tol) -> None:
        running = self.running(max_iter)
        ok = np.asarray(_finite(new)) & np.isfinite(lb) & running
        self.params = _where(ok, new, self.params)
        rows = np.flatnonzero(running)
        self.trace[rows, self.n_iter[rows]] = lb[rows]
        change = np.abs(lb - self.lower_bound) < tol
        self.converged = np.where(running, ok & change, self.converged)
        self.failed = np.where(running, ~ok, self.failed)
        self.flag = np.where(running, collapsed, self.flag)
        self.lower_bound = np.where(running, lb, self.lower_bound).astype(self.lower_bound.dtype)
        self.n_iter = self.n_iter + running

    def result(self, max_iter: int):
        trace = self.trace[:, :max_iter]
        state = LoopState(
            self.params, self.lower_bound, self.n_iter, trace, self.converged, self.failed,
            self.flag,
        )  # fmt: skip
        return jax.device_put(jax.vmap(LoopState.result)(state))
