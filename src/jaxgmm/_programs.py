"""Compiled programs: compiling before the data is uploaded, with less optimisation
for small data, kept in memory and on disk.

The engine's programs are compiled ahead of time from the rows' shapes
(:func:`compile_then_upload`). That lets jaxgmm

* compile before the data's device copy exists (compiling takes ~0.3 GB that would
  otherwise sit beside the data);
* compile small problems with XLA's cheaper settings (their run time is microseconds,
  their compile time seconds);
* keep the compiled programs in its own cache directory, keyed by what determines
  the program (jaxgmm's source, JAX's version, the device, the static arguments and
  the argument shapes), so that a new process loads a program without tracing it.
  JAX's global ``jax_compilation_cache_dir`` is never touched.

``JAXGMM_CACHE_DIR`` names the cache directory (default ``~/.cache/jaxgmm``, under
``$XDG_CACHE_HOME`` when set); ``JAXGMM_CACHE_DIR=off`` keeps programs in memory only.
The directory holds at most ``_CACHE_BYTES``; the programs used longest ago are removed
first.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import hashlib
import os
import pickle
import sys
import tempfile
import threading
from pathlib import Path

import jax

from . import _kernels, _progress
from ._rows import RowPlan, release_free_memory

__all__ = ["cache_dir", "clear_programs", "compile_then_upload"]

#: Compiled programs of this process, newest last.
_PROGRAMS: collections.OrderedDict = collections.OrderedDict()
_MAX_PROGRAMS = 64
#: Data above this size has the allocator's free memory returned to the system after
#: compiling, before the upload.
_TRIM_ABOVE_BYTES = 64 * 2**20
#: XLA's settings for small data: optimisation level 0 (a first fit of iris compiled
#: in 0.6x the time), and the older loop emitters instead of the MLIR fusion emitters
#: (XLA's backend compile of that fit 4.2 s -> 2.0 s; no change on large data, where
#: they are left on).
_SMALL_DATA_COMPILER_OPTIONS = {
    "xla_backend_optimization_level": 0,
    "xla_cpu_use_fusion_emitters": False,
}
#: The program cache keeps at most this much; the programs used longest ago go first.
_CACHE_BYTES = 512 * 2**20
#: Every XLA:CPU program holds memory maps until JAX's caches let it go (a large-data
#: fit ~600, a small one ~150), and JAX keeps every program it compiled; past Linux's
#: ``vm.max_map_count`` (65,530 by default) LLVM aborts the process ("Unable to
#: allocate section memory": a loop of 70 fits of 20k rows, one per family and K, did).
#: Before compiling, a process holding more than this share of its limit drops the
#: compiled programs (:func:`_make_room`).
_MAPS_SHARE = 0.6


def cache_dir() -> Path | None:
    """Where compiled programs are kept between processes (None: nowhere)."""
    root = _kernels.cache_root()
    return None if root is None else root / "programs"


def clear_programs() -> None:
    """Forget the programs compiled in this process (the disk cache stays)."""
    _PROGRAMS.clear()


def rounded_components(k: int) -> int:
    """The components a small-data program holds for a model of ``k``: a power of
    two, at least 8, so that nearby K (a grid search, a new K in a notebook) share a
    program; the extra components are masked (weight 0)."""
    return max(8, 1 << (k - 1).bit_length())


def compile_then_upload(fn, static: tuple, key, plan: RowPlan, *rest):
    """``fn(*static, key, rows, *rest)`` for a jitted ``fn`` whose first arguments are
    static, on ``plan``'s rows (``key`` is whatever comes before the rows: a fit's
    key, a model's parameters). Host data is uploaded only after the program is
    compiled from the rows' shapes, so that compiling and the data's device copy never
    hold memory together (a first fit of 4M x 8 float64 peaked at 3.4x the data the
    other way round, 2.4x this way). Data already on the device, or a call being
    traced (or run with ``jax.disable_jit``), goes through ``fn`` itself."""
    dynamic = (key, plan.abstract(), *rest)
    if not compiles_ahead(plan, *dynamic):
        return fn(*static, key, plan.upload(), *rest)
    large = plan.nbytes > _TRIM_ABOVE_BYTES
    program = program_for(fn, static, dynamic, plan.small, trim=large)
    rows = plan.upload()
    if plan.small or jax.default_backend() != "cpu":
        return program(key, rows, *rest)
    with _one_blas_thread():  # until the program is done
        return jax.block_until_ready(program(key, rows, *rest))


@contextlib.contextmanager
def _one_blas_thread():
    """OpenBLAS on one thread while a program runs on the CPU. jaxlib's LAPACK
    kernels (the M-step's Cholesky factorisations and triangular solves) call scipy's
    OpenBLAS, whose threads then spin for a while waiting for more work, on the cores
    that XLA and the fused pass compute on: a full fit of 20k x 64 rows took 36 ms per
    iteration instead of 20 (OPENBLAS_NUM_THREADS=1 alike). Those factorisations are
    small (K matrices of D x D); one thread does them. threadpoolctl (a dependency of
    scikit-learn) limits and restores it, as scikit-learn's k-means does."""
    controller = _blas_controller()
    if controller is None:
        yield
        return
    # fits in several threads: the first to enter limits, the last to leave restores
    # (threadpoolctl restores what it saw on entry, so overlapping limits would not)
    global _blas_depth, _blas_limit
    with _blas_lock:
        if _blas_depth == 0:
            _blas_limit = controller.limit(limits=1, user_api="blas")
        _blas_depth += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_depth -= 1
            if _blas_depth == 0:
                _blas_limit.restore_original_limits()
                _blas_limit = None


_blas_lock = threading.Lock()
_blas_depth = 0
_blas_limit = None


@functools.cache
def _blas_controller():
    """threadpoolctl's controller of the BLAS libraries loaded once jaxlib's LAPACK
    kernels are (None without threadpoolctl)."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    _prepare_lapack()
    return ThreadpoolController()


def program_for(fn, static: tuple, dynamic: tuple, small: bool, on_disk=True, trim=False):
    """The compiled ``fn(*static, *dynamic)`` (``dynamic``: arrays or their shapes), from
    this process's programs, else the disk cache (where ``on_disk``), else compiled
    (with small data's settings where ``small``; then, with ``trim``, the allocator's
    free memory is returned to the system)."""
    signature = _signature(fn, static, dynamic, small)
    program = _PROGRAMS.get(signature)
    if program is not None:
        _PROGRAMS.move_to_end(signature)
        return program
    _make_room()
    program = _load_or_compile(fn, static, dynamic, signature, small, on_disk)
    _PROGRAMS[signature] = program
    if len(_PROGRAMS) > _MAX_PROGRAMS:
        _PROGRAMS.popitem(last=False)
    if trim:
        release_free_memory()
    return program


def compiles_ahead(plan: RowPlan, *args) -> bool:
    """Whether :func:`compile_then_upload` compiles its own program for these
    arguments: host data, nothing traced (under the user's ``jit`` or ``vmap``), JIT
    not disabled. Otherwise the call is traced into the caller's program."""
    traced = any(isinstance(a, jax.core.Tracer) for a in jax.tree_util.tree_leaves(args))
    return not (plan.on_device or traced or jax.config.jax_disable_jit)


def _signature(fn, static, dynamic, small: bool) -> tuple:
    leaves, tree = jax.tree_util.tree_flatten(dynamic)
    avals = tuple((a.shape, str(a.dtype), bool(getattr(a, "weak_type", False))) for a in leaves)
    device = jax.devices()[0]
    return (
        f"{fn.__module__}.{fn.__qualname__}",
        static,
        str(tree),
        avals,
        bool(jax.config.read("jax_enable_x64")),
        (device.platform, device.device_kind, jax.device_count()),
        small,
        # a program may call the fused CPU pass (never small data's: no such pass)
        not small and _kernels.wanted() and jax.default_backend() == "cpu",
    )


def _make_room() -> None:
    """Drop this process's compiled programs, jaxgmm's and JAX's (``jax.clear_caches``:
    the next call of any jitted function compiles it again, or loads it from a
    persistent cache) when the process holds more than :data:`_MAPS_SHARE` of the
    memory maps Linux allows it; one more program could then abort the process."""
    limit = _max_map_count()
    if limit and _n_memory_maps() > _MAPS_SHARE * limit:
        clear_programs()
        jax.clear_caches()


def _max_map_count() -> int:
    """Linux's limit on a process's memory maps (0 where unknown)."""
    try:
        return int(Path("/proc/sys/vm/max_map_count").read_text())
    except (OSError, ValueError):
        return 0


def _n_memory_maps() -> int:
    """The memory maps this process holds (0 where unknown)."""
    try:
        with open("/proc/self/maps", "rb") as f:
            return sum(1 for _ in f)
    except OSError:
        return 0


def _load_or_compile(fn, static, dynamic, signature, small: bool, on_disk: bool):
    path = _cache_path(signature) if on_disk else None
    if path is not None and path.exists():
        program = _load(path, signature)
        if program is not None:
            return program
    options = _SMALL_DATA_COMPILER_OPTIONS if small else None
    _progress.compiling(_label(fn, static))
    program = fn.lower(*static, *dynamic).compile(compiler_options=options)
    if path is not None:
        _store(path, program)
    return program


def _label(fn, static: tuple) -> str:
    """What a progress report calls a program: a fit's covariance type, else what
    the function does."""
    covariance = getattr(static[0], "covariance", None) if static else None
    if covariance is not None:
        return covariance.name
    return _LABELS.get(fn.__name__, fn.__name__.strip("_"))


_LABELS = {"kmeans_batch": "k-means starts", "_score_rows": "scoring"}


def _cache_path(signature) -> Path | None:
    directory = cache_dir()
    text = repr(signature)
    if directory is None or " at 0x" in text:  # an object without a stable repr
        return None
    digest = hashlib.sha256(f"{_versions()}\n{text}".encode()).hexdigest()
    return directory / f"{digest[:40]}.xla"


@functools.cache
def _versions() -> str:
    """jaxgmm's source (every module and the fused pass's C++: a program depends on
    all of them), and the versions of JAX, jaxlib and Python."""
    digest = hashlib.sha256()
    package = Path(__file__).parent
    for source in sorted([*package.glob("*.py"), *package.glob("*.cc")]):
        digest.update(source.name.encode())
        digest.update(source.read_bytes())
    import jaxlib

    return f"{digest.hexdigest()} jax {jax.__version__} jaxlib {jaxlib.__version__} {sys.version}"


def _load(path: Path, signature: tuple):
    """The program stored at ``path``, or None if it cannot be loaded (a file from
    another build, cut short, or unreadable: it is then compiled again)."""
    from jax.experimental.serialize_executable import deserialize_and_load

    try:
        serialized, in_tree, out_tree = pickle.loads(path.read_bytes())
        _prepare_lapack()
        if signature[-1]:  # it may call the fused pass: register it (if it cannot be
            _kernels.prepare()  # built, a program that calls it fails to load: compiled)
        program = deserialize_and_load(serialized, in_tree, out_tree)
        os.utime(path)  # used now: the last to be removed
        return program
    except Exception:
        return None


@functools.cache
def _prepare_lapack() -> None:
    """Load jaxlib's LAPACK kernels (Cholesky, triangular solves) before running a
    stored program: JAX loads them only when it lowers a program that needs them, and
    a stored program run in a process that has not yet done so crashes."""
    try:
        from jax._src.lib import lapack

        lapack._lapack.initialize()
    except (ImportError, AttributeError):  # another jaxlib: lowering one loads them
        import jax.numpy as jnp

        jax.jit(jnp.linalg.cholesky).lower(jax.ShapeDtypeStruct((1, 1), jnp.float32))


def _store(path: Path, program) -> None:
    """Write ``program`` to ``path`` atomically; a program that cannot be serialised
    (one with a host callback, for progress) or a cache that cannot be written is
    skipped: the cache is an optimisation, never an error."""
    from jax.experimental.serialize_executable import serialize

    try:
        blob = pickle.dumps(serialize(program))
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(blob)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _trim_cache(path.parent)
    except Exception:
        return


def _trim_cache(directory: Path, limit: int = _CACHE_BYTES) -> None:
    """Remove the programs used longest ago until the directory holds at most
    ``limit`` bytes."""
    entries = []
    for p in directory.glob("*.xla"):
        try:
            st = p.stat()
        except OSError:  # removed by another process meanwhile
            continue
        entries.append((st.st_mtime, st.st_size, p))
    total = sum(size for _, size, _ in entries)
    for _, size, p in sorted(entries, key=lambda e: e[0]):
        if total <= limit:
            break
        p.unlink(missing_ok=True)
        total -= size
