"""Several processes: one fit over the rows of every process, on JAX's own
multi-process runtime (:func:`jax.distributed.initialize`).

Start every process of the run with :func:`initialize`, then call the same fit in
each. A data source or a path (:mod:`jaxgmm.data`) names the whole data set, and each
process streams its own share of its rows (:func:`jaxgmm.data.share`), the processes'
sufficient statistics summed on the host after each pass. An array in memory is taken
as the process's own rows, and the fit is one program on every device of the run
(:mod:`jaxgmm._spmd`), its sums gathered inside it. Either way every process holds the
same sums, takes the same decisions (centre, convergence, the exact pass) and ends
with the same model, bit for bit. On CPUs the collectives run over TCP (gloo, JAX's
default); on GPUs over NCCL.

Where the coordinator is, how many processes there are and which one this is come
from the arguments, else the environment variables ``JAXGMM_COORDINATOR``
(``host:port``), ``JAXGMM_NUM_PROCESSES`` and ``JAXGMM_PROCESS_ID``, else from what
the launcher sets (``srun`` under SLURM, Open MPI's ``mpirun``, Kubernetes), as JAX
detects them.

A process that dies makes the others fail at their next collective with
:class:`ProcessFailed`, not hang.
"""

from __future__ import annotations

import os

import jax
import numpy as np

__all__ = [
    "ProcessFailed",
    "initialize",
    "is_initialized",
    "process_count",
    "process_index",
    "shutdown",
]

_ENV = ("JAXGMM_COORDINATOR", "JAXGMM_NUM_PROCESSES", "JAXGMM_PROCESS_ID")


class ProcessFailed(RuntimeError):
    """Another process of a multi-process fit stopped or failed."""


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    local_device_ids=None,
    heartbeat_timeout_seconds: int = 30,
    initialization_timeout: int = 300,
) -> None:
    """Join a multi-process run (see the module's description for where the three
    values come from). Call it once per process, before any fit.

    ``heartbeat_timeout_seconds``: how long the coordinator waits for a silent
    process before it ends the run (JAX's default is 100 s).
    """
    env = [os.environ.get(name) for name in _ENV]
    address = coordinator_address or env[0]
    count = num_processes if num_processes is not None else _int(_ENV[1], env[1])
    index = process_id if process_id is not None else _int(_ENV[2], env[2])
    if address is None and not _launcher_detected():
        raise ValueError(
            "No coordinator: pass coordinator_address='host:port', num_processes and "
            "process_id, set JAXGMM_COORDINATOR, JAXGMM_NUM_PROCESSES and "
            "JAXGMM_PROCESS_ID, or start the processes with srun or mpirun"
        )
    if address is not None and (count is None or index is None):
        raise ValueError(
            f"A coordinator ({address}) needs num_processes and process_id too "
            "(or JAXGMM_NUM_PROCESSES and JAXGMM_PROCESS_ID)"
        )
    jax.distributed.initialize(
        address,
        count,
        index,
        local_device_ids=local_device_ids,
        heartbeat_timeout_seconds=heartbeat_timeout_seconds,
        initialization_timeout=initialization_timeout,
    )


def shutdown() -> None:
    """Leave the run (:func:`jax.distributed.shutdown`); also done at exit."""
    jax.distributed.shutdown()


def is_initialized() -> bool:
    return jax.distributed.is_initialized()


def process_index() -> int:
    """This process's index in the run (0 alone)."""
    return jax.process_index()


def process_count() -> int:
    """The number of processes in the run (1 alone)."""
    return jax.process_count()


def _int(name: str, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None


def _launcher_detected() -> bool:
    from jax._src import clusters

    return any(c.is_env_present() for c in clusters.ClusterEnv._cluster_types)


# --- collectives on host values: identity in a single process -------------------


def all_sum(tree):
    """Every process's ``tree`` (NumPy leaves) summed, the same bits on every
    process (each sums the gathered values in process order)."""
    if process_count() == 1:
        return tree
    return jax.tree_util.tree_map(lambda a: np.sum(a, axis=0), _gather(tree))


def all_max(value: float) -> float:
    """The largest of every process's ``value``."""
    if process_count() == 1:
        return value
    return float(np.max(_gather(np.asarray(value, np.float64))))


def all_rows(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Every process's rows of ``arrays`` (each with this process's row count, which
    may differ between processes), in process order."""
    if process_count() == 1:
        return arrays
    counts = _gather(np.asarray(len(arrays[0]), np.int64))
    most = int(counts.max())
    padded = tuple(
        np.concatenate([a, np.zeros((most - len(a), *a.shape[1:]), a.dtype)]) for a in arrays
    )
    gathered = _gather(padded)
    return tuple(
        np.concatenate([g[:c] for g, c in zip(every, counts, strict=True)]) for every in gathered
    )


def all_counts(n: int) -> np.ndarray:
    """Every process's ``n``, in process order."""
    if process_count() == 1:
        return np.asarray([n])
    return _gather(np.asarray(n, np.int64))


def agree(error: Exception | None) -> None:
    """Raise on every process if any process met an error (its own where it met one),
    so that no process goes on to a collective the others never reach."""
    if process_count() > 1:
        failed = _gather(np.asarray(error is not None, np.int32))
        if error is None and failed.any():
            first = int(np.flatnonzero(failed)[0])
            raise ProcessFailed(f"Process {first} failed (see its error); this fit stops too")
    if error is not None:
        raise error


def _gather(tree):
    from jax.experimental import multihost_utils

    try:
        with jax.enable_x64(True):  # 64-bit values stay 64-bit
            return jax.device_get(multihost_utils.process_allgather(tree))
    except Exception as e:  # a collective fails when a peer has gone
        raise ProcessFailed(
            f"Process {process_index()} of {process_count()}: another process stopped "
            f"during the fit (see its log): {str(e).splitlines()[0]}"
        ) from None
