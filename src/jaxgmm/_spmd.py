"""One program over every process's rows: a multi-process fit of data in memory.

In a multi-process run (:mod:`jaxgmm.distributed`) each process holds its own rows (an
array). Together they form one global array split over a mesh of every device of the
run (axis :data:`ROWS`), and one compiled program runs on every device at once (SPMD):
the engine's fit (:func:`~jaxgmm._engine.fit_blocks`) inside ``jax.shard_map``, each
device on its part of the rows. Every sum over rows (:func:`~jaxgmm._rows.sum_rows`)
and the rows' radius are gathered over the mesh inside the program, over gloo on CPUs
or NCCL on GPUs, so the whole EM loop runs without coming back to the host between
iterations, and every device holds the same sums and takes the same decisions.

Where the rows do not fit in memory, the processes stream them instead
(:mod:`jaxgmm._stream`, a source). Both start from the same initialization: the
streamed fit's, on a sample of the whole data drawn by each row's index
(:func:`~jaxgmm._stream.sample_starts`), the same on every process. So the two reach
the same model (to rounding) from the same rows, however they are split.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from . import _progress, distributed
from ._engine import Batch, Inputs, Options, check_key, fit_blocks, inputs_as, unit_weights
from ._programs import program_for
from ._rows import make_blocks, upload
from ._typing import float_dtype, x64_scope

__all__ = ["ROWS", "run", "starting"]

#: The mesh axis the rows are split over.
ROWS = "rows"


def run(key, X, sample_weight, options: Options, batch: Batch, inputs: Inputs, host=False):
    """The engine's :func:`~jaxgmm._engine.run` over every process's rows (``X``: this
    process's): ``(results, scores)``, the same on every process. Every fit starts from
    ``inputs.starts``."""
    check_key(key)
    dtype = float_dtype(X)
    with x64_scope(dtype):
        x = np.asarray(X)
        sample_weight, scale = _unit_weights(sample_weight)
        mesh = Mesh(np.asarray(jax.devices()), (ROWS,))
        per_device = -(-int(distributed.all_counts(len(x)).max()) // jax.local_device_count())
        view = np.broadcast_to(np.zeros((), dtype), (max(per_device, 1), x.shape[1]))
        plan, batch = dataclasses.replace(batch, n_devices=1).resolved(
            view, sample_weight, options.covariance, dtype
        )
        rows = _global_rows(mesh, x, sample_weight, plan.n_rows, dtype)
        inputs = inputs_as(inputs, dtype)
        replicated = _replicated(mesh, (jax.random.key_data(key), inputs))
        options = dataclasses.replace(options, report=_progress.active())
        args = (*replicated, *rows)
        # compiled as the engine's programs are (small data with cheaper settings),
        # but never stored on disk: a program of several processes is theirs alone
        program = program_for(_fit_across, (options, batch, mesh), args, plan.small, False)
        out = program(*args)
        out, scores = multihost_utils.global_array_to_host_local_array(out, mesh, P())
        if host:
            out, scores = jax.device_get((out, scores))
        if scores is not None:
            scores = jax.tree_util.tree_map(lambda a: a * scale, scores)
        return out, scores


def starting(options: Options, inputs: Inputs, starts, centers, group: int):
    """The options and inputs of group ``group`` of :func:`~jaxgmm._stream.sample_starts`'s
    ``(starts, centers)``: its starting parameters, or its sample's k-means centres,
    refined by Lloyd steps over every process's rows in the program."""
    if centers is None:
        return options, dataclasses.replace(inputs, starts=starts[group])
    options = dataclasses.replace(options, refine_centers=True)
    return options, dataclasses.replace(inputs, centers=centers[group])


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _fit_across(options: Options, batch: Batch, mesh: Mesh, key_data, inputs, x, w, n):
    """:func:`~jaxgmm._engine.fit_blocks` on every device's part of the rows, the
    sums over rows taken over the whole mesh."""

    def part(key_data, inputs, x, w, n):
        key = jax.random.wrap_key_data(key_data)
        blocks = make_blocks(x, w, batch.block_rows, n[0], center="mean", axis=ROWS)
        return fit_blocks(options, batch, key, blocks, inputs)

    return jax.shard_map(
        part,
        mesh=mesh,
        in_specs=(P(), P(), P(ROWS), P(ROWS), P(ROWS)),
        # every device ends with the same bits (the sums are gathered in mesh order)
        out_specs=P(),
        check_vma=False,
    )(key_data, inputs, x, w, n)


def _unit_weights(sample_weight):
    """:func:`~jaxgmm._engine.unit_weights` with the largest weight of every process."""
    if sample_weight is None:
        return None, 1.0
    w = np.asarray(sample_weight, np.float64)
    w, scale = unit_weights(w, distributed.all_max(float(w.max()) if len(w) else 0.0))
    return w, float(scale)


def _global_rows(mesh: Mesh, x, w, n_rows: int, dtype):
    """This process's rows split evenly over its devices, each part padded to
    ``n_rows`` (zero weight), as the parts of global arrays over ``mesh``: rows,
    weights (None for unit weights) and each part's count of rows."""
    devices = mesh.local_devices
    step = -(-len(x) // len(devices))
    parts, weights, counts = [], [], []
    for i, device in enumerate(devices):
        part = x[i * step : (i + 1) * step]
        with jax.default_device(device):
            parts.append(jax.device_put(upload(part, n_rows, dtype), device))
        counts.append(jax.device_put(np.asarray([len(part)], np.int32), device))
        if w is not None:
            padded = np.zeros(n_rows, dtype)
            padded[: len(part)] = w[i * step : (i + 1) * step]
            weights.append(jax.device_put(padded, device))
    n_parts = mesh.devices.size
    sharding = NamedSharding(mesh, P(ROWS))
    make = jax.make_array_from_single_device_arrays
    rows = make((n_parts * n_rows, x.shape[1]), sharding, parts)
    w = None if w is None else make((n_parts * n_rows,), sharding, weights)
    return rows, w, make((n_parts,), sharding, counts)


def _replicated(mesh: Mesh, tree):
    """Host values (the same on every process) as global arrays, whole on every device."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    leaves = multihost_utils.host_local_array_to_global_array(
        [np.asarray(a) for a in leaves], mesh, P()
    )
    return jax.tree_util.tree_unflatten(treedef, leaves)
