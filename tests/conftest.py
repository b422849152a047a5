import os

# Tests never write compiled programs into the user's cache directory; the cache
# itself is tested in a subprocess (test_estimator.py::test_compilation_cache).
os.environ["JAXGMM_CACHE_DIR"] = "off"

import jax
import numpy as np
import pytest


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
