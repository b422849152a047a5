"""The fused pass: the E-step of a block of rows and its statistics in one loop over
the rows, in C++ (``_phi_pass.cc``), for XLA's CPU backend.

XLA:CPU computes a block's pass as separate operations: the features ``phi`` written
out, ``phi @ A``, the exponentials, a transposed copy of the responsibilities and
``resp.T @ phi``, each reading and writing the whole block, the element-wise ones on
one core. The fused pass builds each row's features in registers, normalises eight
rows at a time and adds them to the statistics at once, on two threads; it computes
the same fast form (the same ``A``, the same exactness checks around it) in another
order of summation (measured in ``benchmarks/bench_shapes.py``).

It is compiled on first use with the machine's C++ compiler (``-march=native``) and
kept beside the compiled programs (``<cache>/kernels``; a temporary directory when the
cache is off), keyed by its source, the compiler, jaxlib and the processor. Without a
compiler, on other backends, or with ``JAXGMM_KERNELS=off``, passes are XLA's.
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import hashlib
import logging
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["fused_pass", "prepare", "wanted"]

_LOG = logging.getLogger("jaxgmm")
_SOURCE = Path(__file__).with_name("_phi_pass.cc")
_OFF = ("off", "0", "none", "false", "no")
#: The C++ symbols and the names XLA knows them by, per dtype: the fast form's pass
#: and the centred (direct) form's.
_TARGETS = {
    np.dtype(np.float64): ("JaxgmmPhiPassF64", "jaxgmm_phi_pass_f64"),
    np.dtype(np.float32): ("JaxgmmPhiPassF32", "jaxgmm_phi_pass_f32"),
}
_DIRECT_TARGETS = {
    np.dtype(np.float64): ("JaxgmmDirectPassF64", "jaxgmm_direct_pass_f64"),
    np.dtype(np.float32): ("JaxgmmDirectPassF32", "jaxgmm_direct_pass_f32"),
}
#: ``Covariance.fused_features`` -> the kernel's ``mode``.
_MODES = {"squares": 0, "norm": 1, "triangle": 2, "shared": 3}
_FLAGS = ("-O3", "-march=native", "-std=c++17", "-shared", "-fPIC", "-w")
#: Bytes per vector in the kernel: components are padded to a multiple of its lanes.
_VECTOR_BYTES = 64


def wanted() -> bool:
    """Whether programs may use the fused pass (``JAXGMM_KERNELS`` is not off, a C++
    compiler is on the path): cheap, for program signatures; it builds nothing."""
    return os.environ.get("JAXGMM_KERNELS", "").lower() not in _OFF and _compiler() is not None


def usable(dtype, n_phi: int, n_components: int) -> bool:
    """Whether a pass of this shape takes the fused kernel: on the CPU backend, in
    float32 or float64, where it was measured faster than XLA's pass (8 or more
    components; phi of 16 or more columns unless 16 or more components: with fewer,
    each row's normalisation costs more than its products), once built."""
    if np.dtype(dtype) not in _TARGETS or jax.default_backend() != "cpu":
        return False
    if n_components < 8 or (n_phi < 16 and n_components < 16):
        return False
    return wanted() and prepare()


def fused_pass(x, index, w, center, A, features: str, shared_factor=None, rows=None):
    """``(resp.T @ phi, sum_i w_i log_norm_i, pooled)`` of block ``index`` of ``x``
    (all the blocks, ``(n_blocks, rows, d)``: the kernel reads the block in place)
    over its first ``rows`` rows (all by default; the rest must weigh 0: padding),
    with weights ``w``, ``phi = [1, x - center, q(x - center)]`` (``q`` by
    ``features``) and ``resp`` the weighted responsibilities of the log-joint
    ``phi @ A``: what ``_em.pass_stats`` computes in its fast form. Any leading
    (``vmap``) axes.

    ``features='shared'`` (tied): ``phi = [1, x - center]``, the log-joint adds each
    row's ``-|(x - center) @ shared_factor|^2 / 2``, and ``pooled`` is the rows'
    second moments weighted by their total responsibility, the upper triangle of
    ``sum_i (sum_k resp_ik) xc_i xc_i^T`` (``Covariance.pooled_second_moments``);
    elsewhere it is empty."""
    k, d = A.shape[-1], x.shape[-1]
    # components of log-joint -inf (constant row -inf): responsibility 0
    A = _padded(A, lambda z: z.at[..., 0, :].set(-jnp.inf))
    lanes = _VECTOR_BYTES // A.dtype.itemsize
    if shared_factor is None:
        U, n_pooled = jnp.zeros((0, lanes), A.dtype), 0
    else:
        U = _padded(shared_factor)  # zero columns: they add nothing to |y|^2
        n_pooled = d * (d + 1) // 2
    target = _TARGETS[np.dtype(A.dtype)][1]
    shapes = (
        jax.ShapeDtypeStruct(A.shape[-2:], A.dtype),
        jax.ShapeDtypeStruct((), A.dtype),
        jax.ShapeDtypeStruct((n_pooled,), A.dtype),
    )
    call = jax.ffi.ffi_call(target, shapes, vmap_method="expand_dims")
    index = _block_index(index, rows, x.shape[-2])
    s, log_lik, pooled = call(x, index, w, center, A, U, mode=np.int32(_MODES[features]))
    return jnp.swapaxes(s[..., :k], -1, -2), log_lik, pooled


def direct_usable(dtype) -> bool:
    """Whether the centred form's pass (wide data) takes the fused kernel: on the
    CPU backend, in float32 or float64, once built."""
    if np.dtype(dtype) not in _DIRECT_TARGETS or jax.default_backend() != "cpu":
        return False
    return wanted() and prepare()


def fused_direct_pass(x, index, w, means, precisions_cholesky, constant, shift, rows=None):
    """The centred form's pass over block ``index`` of ``x`` (read in place; its
    first ``rows`` rows, as in :func:`fused_pass`): with
    ``y = (x_i - mu_k) @ U_k``, the log-joint ``constant_k - |y|^2 / 2``, the weighted
    responsibilities ``r``, and their sums about ``shift`` (per component):
    ``(sum r, sum r e, triu(sum r e e^T), sum w log_norm)``, ``e = x_i - shift_k``;
    what ``_em.pass_stats`` computes for wide data. Any leading (``vmap``) axes."""
    k, d = means.shape[-2:]
    dtype = np.dtype(means.dtype)
    U = _padded(precisions_cholesky)  # zero columns: they add nothing to |y|^2
    shapes = (
        jax.ShapeDtypeStruct((k,), dtype),
        jax.ShapeDtypeStruct((k, d), dtype),
        jax.ShapeDtypeStruct((k, d * (d + 1) // 2), dtype),
        jax.ShapeDtypeStruct((), dtype),
    )
    call = jax.ffi.ffi_call(_DIRECT_TARGETS[dtype][1], shapes, vmap_method="expand_dims")
    index = _block_index(index, rows, x.shape[-2])
    return call(x, index, w, means, U, constant, shift)


def _block_index(index, rows, block_rows: int):
    """The kernel's ``[block, rows with data]`` operand."""
    rows = block_rows if rows is None else rows
    return jnp.stack([jnp.asarray(index, jnp.int32), jnp.asarray(rows, jnp.int32)])


def _padded(a, fill=lambda z: z):
    """``a`` with columns added to take its last axis to a multiple of the kernel's
    vector lanes (zeros, then ``fill``)."""
    lanes = _VECTOR_BYTES // a.dtype.itemsize
    extra = -a.shape[-1] % lanes
    if extra == 0:
        return a
    return jnp.concatenate([a, fill(jnp.zeros((*a.shape[:-1], extra), a.dtype))], axis=-1)


@functools.cache
def prepare() -> bool:
    """Build the kernel (once per machine) and register it with XLA (once per
    process); False, with the reason logged, where it cannot be."""
    try:
        library = ctypes.cdll.LoadLibrary(str(_build()))
        for symbol, target in [*_TARGETS.values(), *_DIRECT_TARGETS.values()]:
            capsule = jax.ffi.pycapsule(getattr(library, symbol))
            jax.ffi.register_ffi_target(target, capsule, platform="cpu")
    except (OSError, subprocess.SubprocessError, AttributeError) as error:
        _LOG.info("jaxgmm: the fused CPU pass is not available (%s); using XLA's", error)
        return False
    return True


@functools.cache
def _compiler() -> list[str] | None:
    """The C++ compiler's command: ``CXX`` where set (split as a shell would:
    "ccache g++"), else ``c++`` or ``g++``; None where it is not on the path."""
    try:
        command = shlex.split(os.environ.get("CXX", ""))
    except ValueError as error:  # unbalanced quotes: no kernel, not a failed fit
        _LOG.info("jaxgmm: CXX cannot be split (%s); using XLA's passes", error)
        return None
    if command:
        return command if shutil.which(command[0]) else None
    found = shutil.which("c++") or shutil.which("g++")
    return None if found is None else [found]


def _build() -> Path:
    """The kernel's shared library, compiled now unless already there."""
    compiler = _compiler()
    if compiler is None:
        raise OSError("no C++ compiler on the path")
    include = jax.ffi.include_dir()
    command = [*compiler, *_FLAGS, f"-I{include}"]
    path = _directory() / f"phi_pass-{_key(command)}.so"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        subprocess.run(
            [*command, str(_SOURCE), "-o", tmp],
            check=True,
            capture_output=True,
            timeout=300,
        )
        # as compilers make their outputs (mkstemp's file is the owner's alone): the
        # umask decides who else may load it from a shared cache directory
        os.chmod(tmp, 0o777 & ~_umask())
        os.replace(tmp, path)  # atomic: another process may be building the same
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def _key(command: list[str]) -> str:
    """What the library depends on: its source, the command (compiler and flags),
    jaxlib (the FFI headers) and the processor (``-march=native``: a cache directory
    shared by machines of several kinds keeps one library per kind)."""
    import jaxlib

    digest = hashlib.sha256(_SOURCE.read_bytes())
    for part in (*command, jaxlib.__version__, platform.machine(), _cpu_flags()):
        digest.update(part.encode())
    return digest.hexdigest()[:24]


def _cpu_flags() -> str:
    """The processor's model and instruction sets (Linux), else what Python knows."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor()
    wanted = ("model name", "flags", "Features", "CPU part")
    return "\n".join(sorted({line for line in lines if line.startswith(wanted)}))


def cache_root() -> Path | None:
    """jaxgmm's cache directory (``JAXGMM_CACHE_DIR``; default ``~/.cache/jaxgmm``,
    under ``$XDG_CACHE_HOME`` when set); None where it is off."""
    env = os.environ.get("JAXGMM_CACHE_DIR", "")
    if env.lower() in _OFF:
        return None
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "jaxgmm"


@functools.cache
def _directory() -> Path:
    root = cache_root()
    if root is None:  # this process's own, removed at exit (a loaded library stays
        path = tempfile.mkdtemp(prefix="jaxgmm-kernels-")  # mapped until then)
        atexit.register(_remove_if_mine, path, os.getpid())
        return Path(path)
    return root / "kernels"


def _remove_if_mine(path: str, pid: int) -> None:
    """Remove this process's temporary kernel directory at exit (a forked child
    inherits the exit handler, not the directory)."""
    if os.getpid() == pid:
        shutil.rmtree(path, ignore_errors=True)


def _umask() -> int:
    """The process's umask (reading it means setting it; set back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
