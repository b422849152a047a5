import os
import shutil
import tempfile

# Tests never write compiled programs into the user's cache directory. The run's
# processes (pytest-xdist's workers inherit the environment of the process that starts
# them) share one program cache of their own instead, removed at the end: a program
# one worker compiled, the other loads. Tests of the cache itself set their own.
if "PYTEST_XDIST_WORKER" not in os.environ:
    _TEST_CACHE = tempfile.mkdtemp(prefix="jaxgmm-test-programs-")
    os.environ["JAXGMM_CACHE_DIR"] = _TEST_CACHE

import jax
import numpy as np
import pytest

import jaxgmm
from jaxgmm import _programs

#: The covariance types every test runs over: the library's own list, defined once.
COV_TYPES = list(jaxgmm.COVARIANCE_TYPES)

#: Why scikit-learn's check_sample_weight_equivalence_on_dense_data is expected to fail
#: for estimators that fit two or more components from a random initialization.
SHUFFLED_WEIGHTS = (
    "The check shuffles the weighted rows against the repeated ones; k-means++ "
    "seeding draws rows by position, so it starts K=2 elsewhere and reaches another "
    "local optimum. Integer weights equal repeated rows in the same order "
    "(test_estimator.py::test_integer_weights_equal_repeated_rows)."
)


@pytest.fixture(autouse=True)
def _release_compiled_programs():
    """Every compiled XLA CPU program holds ~150 memory maps; a suite compiling
    hundreds of shapes would pass Linux's default limit of 65530 maps and crash
    inside LLVM. Drop JAX's caches when the process holds many maps."""
    yield
    if _programs._n_memory_maps() > 20_000:
        jax.clear_caches()
        _programs.clear_programs()


def pytest_unconfigure(config):
    if "PYTEST_XDIST_WORKER" not in os.environ:
        shutil.rmtree(_TEST_CACHE, ignore_errors=True)


@pytest.fixture
def key():
    return jax.random.key(0)


def blobs(n=300, d=3, k=3, seed=0, dtype=np.float64, scale=1.0):
    """Well-separated, well-conditioned clusters."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=6.0, size=(k, d))
    labels = rng.integers(0, k, n)
    mix = rng.normal(size=(k, d, d)) * 0.3 + np.eye(d)
    x = centers[labels] + np.einsum("nd,nde->ne", rng.normal(size=(n, d)), mix[labels])
    return (x * scale).astype(dtype), labels


def sklearn_init(x, k, covariance_type, seed=1):
    """Starting weights, means and precisions (scikit-learn's shapes), not fitted."""
    rng = np.random.default_rng(seed)
    n, d = x.shape
    weights = rng.dirichlet(np.full(k, 5.0))
    means = x[rng.choice(n, k, replace=False)] + rng.normal(scale=0.1, size=(k, d))
    a = rng.normal(size=(k, d, d)) * 0.2 + np.eye(d)
    full = np.einsum("kde,kfe->kdf", a, a)
    precisions = {
        "full": full,
        "tied": full[0],
        "diag": rng.uniform(0.5, 2.0, size=(k, d)),
        "spherical": rng.uniform(0.5, 2.0, size=k),
    }[covariance_type]
    return weights, means, precisions
