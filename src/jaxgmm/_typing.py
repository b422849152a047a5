"""Array shape aliases and the status codes the core reports instead of raising."""

from __future__ import annotations

import contextlib
import enum

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

__all__ = [
    "Array",
    "Bool",
    "Float",
    "Int",
    "PRNGKeyArray",
    "Status",
    "as_dtype",
    "float_dtype",
    "x64_scope",
]


class Status(enum.IntEnum):
    """Why an EM run stopped; the core reports it, the shells turn it into errors.

    The order is a priority: a run that hit a non-finite value reports NON_FINITE even
    if a component had collapsed before.
    """

    CONVERGED = 0
    """The change of the mean log-likelihood fell below ``tol``."""
    MAX_ITER = 1
    """``max_iter`` iterations ran without converging."""
    COLLAPSED = 2
    """A component's weight fell below 10 machine epsilons: it holds no data."""
    NON_FINITE = 3
    """An M-step gave a covariance that is not positive definite (or the likelihood was
    not finite); the parameters returned are the last finite ones."""


def float_dtype(x) -> np.dtype:
    """The floating dtype results keep: float32 stays float32, all else is float64
    (``x`` an array, or a dtype)."""
    dtype = x if isinstance(x, np.dtype) else getattr(x, "dtype", None)
    dtype = np.asarray(x).dtype if dtype is None else np.dtype(dtype)
    return np.dtype(np.float32) if dtype in (np.float32, np.float16) else np.dtype(np.float64)


def x64_scope(dtype) -> contextlib.AbstractContextManager:
    """The scope of a fit in ``dtype``, without global flags: 64-bit JAX types for a
    float64 computation; full float32 matrix products for a float32 one (GPUs
    otherwise use TF32, whose 10-bit mantissa put float32 log-likelihoods 1e-3 off
    on an H200)."""
    if np.dtype(dtype) == np.float64:
        return jax.enable_x64(True)
    return jax.default_matmul_precision("highest")


def as_dtype(a, dtype):
    """``a`` as an array of ``dtype``: a numpy array where it is on the host (a
    program takes it as it is; ``jnp.asarray`` would compile a conversion per dtype
    and shape, tens of milliseconds each in a new process), else a JAX array."""
    return jnp.asarray(a, dtype) if isinstance(a, jax.Array) else np.asarray(a, dtype)
