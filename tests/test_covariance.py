"""The covariance classes: one compiled program per class, never another's."""

import jax
import jax.numpy as jnp
import numpy as np
from conftest import COV_TYPES
from sklearn.mixture import GaussianMixture as SkGM

import jaxgmm
from jaxgmm._pytree import pytree_dataclass


def random_params(covariance_type, k, d, seed=0):
    """Valid parameters in scikit-learn's shapes, as (weights, means, covariances)."""
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.full(k, 3.0))
    means = rng.normal(scale=3.0, size=(k, d))
    a = rng.normal(size=(k, d, d)) * 0.3 + np.eye(d)
    full = np.einsum("kde,kfe->kdf", a, a)
    cov = {
        "full": full,
        "tied": full[0],
        "diag": rng.uniform(0.5, 2.0, size=(k, d)),
        "spherical": rng.uniform(0.5, 2.0, size=k),
    }[covariance_type]
    return weights, means, cov


def sklearn_model(covariance_type, weights, means, cov):
    """scikit-learn's GaussianMixture holding exactly these parameters."""
    from sklearn.mixture._gaussian_mixture import _compute_precision_cholesky

    ref = SkGM(len(weights), covariance_type=covariance_type)
    ref.weights_, ref.means_, ref.covariances_ = weights, means, cov
    ref.precisions_cholesky_ = _compute_precision_cholesky(cov, covariance_type)
    return ref


def jax_params(covariance_type, weights, means, cov):
    cov_cls = jaxgmm.COVARIANCE_TYPES[covariance_type]
    with jax.enable_x64(True):
        return jaxgmm.GMMParams(
            jnp.asarray(weights), jnp.asarray(means), cov_cls.from_covariances(jnp.asarray(cov))
        )


def test_structures_of_different_classes_never_compare_equal():
    # K == D: tied (D, D) and full/diag/spherical arrays of the same shapes
    d = 3
    trees = {}
    for name, cls in jaxgmm.COVARIANCE_TYPES.items():
        a = jnp.zeros((d, d))
        trees[name] = jax.tree_util.tree_structure(cls(a, a))
    for a in COV_TYPES:
        for b in COV_TYPES:
            assert (trees[a] == trees[b]) == (a == b), (a, b)


def test_jit_never_runs_another_classes_program():
    """JAX 0.10.2's register_dataclass ran another class's program on ~15% of these
    calls (equal structures, different hashes); ours must never."""
    classes = []
    for i in range(300):
        ns = {"__annotations__": {"a": jax.Array}, "offset": lambda self, i=i: self.a + i}
        classes.append(pytree_dataclass(type(f"C{i}", (), ns)))
    run = jax.jit(lambda c: c.offset())
    wrong = [i for i, cls in enumerate(classes) if int(run(cls(jnp.zeros((), jnp.int32)))) != i]
    assert wrong == []


def test_all_four_types_scored_in_one_process_with_k_equal_d():
    """The defect users met: a diag model scored by the tied program when K == D."""
    rng = np.random.default_rng(0)
    for d in (2, 3, 4):
        for n in (7, 50, 300):
            x = rng.normal(scale=3.0, size=(n, d))
            for covariance_type in ("tied", "diag", "full", "spherical", "diag", "tied"):
                w, m, c = random_params(covariance_type, d, d, seed=n + d)
                ref = sklearn_model(covariance_type, w, m, c)
                log_prob, log_resp = jaxgmm.score_rows(jax_params(covariance_type, w, m, c), x)
                np.testing.assert_allclose(log_prob, ref.score_samples(x), rtol=1e-10)
                np.testing.assert_allclose(np.exp(log_resp), ref.predict_proba(x), atol=1e-10)
        jax.clear_caches()


def test_estimators_of_every_type_in_one_process_with_k_equal_d():
    """A GridSearchCV over covariance_type fits and scores each type in turn."""
    x = np.random.default_rng(1).normal(size=(120, 3))
    for cov in ("tied", "diag", "full", "spherical", "diag", "tied"):
        gm = jaxgmm.GaussianMixture(3, covariance_type=cov, random_state=0).fit(x)
        ref = sklearn_model(cov, gm.weights_, gm.means_, gm.covariances_)
        np.testing.assert_allclose(gm.score_samples(x), ref.score_samples(x), rtol=1e-10)
