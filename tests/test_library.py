"""The library as a JAX user and a scikit-learn user meet it: composition with jit and
vmap, no global side effects, scale invariance, parameters checked where set."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgmm

X, _ = jaxgmm.make_seed_blobs(0)


def test_functional_fit_composes_with_jit():
    x = X.astype(np.float32)
    fit = jax.jit(lambda key, x: jaxgmm.fit(key, x, 3, n_init=2).lower_bound)
    eager = jaxgmm.fit(jax.random.key(0), x, 3, n_init=2).lower_bound
    np.testing.assert_allclose(fit(jax.random.key(0), x), eager, rtol=1e-6)


def test_functional_fit_vmaps_over_data_sets():
    batch = np.random.default_rng(1).normal(size=(4, 80, 2)).astype(np.float32)
    batch[:, :40] += 5.0
    fit = jax.vmap(lambda x: jaxgmm.fit(jax.random.key(0), x, 2).params.means)
    means = fit(batch)
    assert means.shape == (4, 2, 2)
    for x, m in zip(batch, means, strict=True):
        alone = jaxgmm.fit(jax.random.key(0), x, 2).params.means
        np.testing.assert_allclose(m, alone, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n_rows", [150, 5000])  # a shared small-data program; one of its own
def test_fit_restarts_host_returns_the_same_results_as_numpy(n_rows):
    x = np.random.default_rng(3).normal(size=(n_rows, 3))
    kw = dict(n_init=2, covariance_type="diag", max_iter=20)
    on_device = jaxgmm.fit_restarts(jax.random.key(4), x, 3, **kw)
    on_host = jaxgmm.fit_restarts(jax.random.key(4), x, 3, host=True, **kw)
    assert all(isinstance(a, jax.Array) for a in jax.tree_util.tree_leaves(on_device))
    assert all(isinstance(a, np.ndarray) for a in jax.tree_util.tree_leaves(on_host))
    leaves = jax.tree_util.tree_leaves
    for a, b in zip(leaves(on_host), leaves(on_device), strict=True):
        np.testing.assert_array_equal(a, np.asarray(b))


def test_fit_leaves_jax_configuration_alone(monkeypatch, tmp_path):
    monkeypatch.delenv("JAXGMM_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    before = jax.config.jax_compilation_cache_dir
    jaxgmm.GaussianMixture(2, random_state=0).fit(X)
    jaxgmm.GaussianMixtureIC(2, covariance_type="diag", n_init=1, random_state=0).fit(X)
    assert jax.config.jax_compilation_cache_dir == before
    # jaxgmm keeps its own programs, in its own directory only (JAXGMM_CACHE_DIR=off: none)
    assert [p.name for p in (tmp_path / "jaxgmm").iterdir()] == ["programs"]


@pytest.mark.parametrize("scale", [1e-300, 1e-20, 1e20, 1e300])
def test_scaling_all_sample_weights_changes_nothing(scale):
    w = np.random.default_rng(2).uniform(0.5, 2.0, len(X))
    base = jaxgmm.GaussianMixture(3, random_state=0).fit(X, sample_weight=w)
    scaled = jaxgmm.GaussianMixture(3, random_state=0).fit(X, sample_weight=w * scale)
    np.testing.assert_allclose(scaled.lower_bound_, base.lower_bound_, rtol=1e-10)
    np.testing.assert_allclose(scaled.means_, base.means_, rtol=1e-10)
    np.testing.assert_allclose(scaled.covariances_, base.covariances_, rtol=1e-9)


def test_sweep_criteria_count_the_weights_as_given():
    """Integer weights are copies: the BIC of the weighted sweep is that of the
    repeated rows, however the engine scales the weights inside."""
    w = np.random.default_rng(3).integers(1, 4, len(X))
    a = jaxgmm.sweep(jax.random.key(0), X, [2, 3], ["diag"], n_init=1, sample_weight=w)
    b = jaxgmm.sweep(jax.random.key(0), X, [2, 3], ["diag"], n_init=1, sample_weight=w * 2.0)
    np.testing.assert_allclose(b.table["log_likelihood"], 2 * a.table["log_likelihood"], rtol=1e-9)


@pytest.mark.parametrize("bad", [True, [1.5], [2, True], [0, 2], [], 2.0])
def test_ic_n_components_must_be_positive_ints(bad):
    with pytest.raises(ValueError, match="n_components"):
        jaxgmm.GaussianMixtureIC(n_components=bad, n_init=1).fit(X)


@pytest.mark.parametrize("cls", [jaxgmm.GaussianMixture, jaxgmm.BayesianGaussianMixture])
def test_warm_start_with_a_changed_n_components_names_it(cls):
    model = cls(n_components=3, warm_start=True, random_state=0, max_iter=200).fit(X)
    model.set_params(n_components=4)
    with pytest.raises(ValueError, match=r"n_components=3.*warm_start=False"):
        model.fit(X)


def test_gmm_params_structures_differ_by_covariance_class():
    a = jnp.ones((2, 2))
    tied = jaxgmm.GMMParams(a[0], a, jaxgmm.TiedCovariance(a, a))
    diag = jaxgmm.GMMParams(a[0], a, jaxgmm.DiagCovariance(a, a))
    assert jax.tree_util.tree_structure(tied) != jax.tree_util.tree_structure(diag)


def test_float32_fits_use_full_precision_products_in_their_scope_only():
    """GPUs use TF32 for float32 products by default; a float32 fit asks for full
    float32 within its own scope and leaves the user's setting alone."""
    from jaxgmm._typing import x64_scope

    before = jax.config.jax_default_matmul_precision
    with x64_scope(np.float32):
        assert jax.config.jax_default_matmul_precision == "highest"
    assert jax.config.jax_default_matmul_precision == before
    jaxgmm.GaussianMixture(2, random_state=0).fit(X.astype(np.float32))
    assert jax.config.jax_default_matmul_precision == before


def test_import_loads_names_on_first_use(tmp_path):
    """``import jaxgmm`` imports neither JAX nor scikit-learn (PEP 562); each public
    name loads its module when first used, and ``load`` restores every estimator
    class in a process that has used none of them."""
    gm = jaxgmm.GaussianMixtureIC(n_components=2, covariance_type="diag", n_init=1)
    gm.fit(np.random.default_rng(0).normal(size=(60, 2)))
    gm.save(tmp_path / "ic.npz")
    script = f"""
import sys
import jaxgmm
assert "jax" not in sys.modules and "sklearn" not in sys.modules, "eager import"
assert set(jaxgmm.__all__) <= set(dir(jaxgmm))
model = jaxgmm.load({str(tmp_path / "ic.npz")!r})
print(type(model).__name__, model.n_components_)
try:
    jaxgmm.no_such_name
except AttributeError as e:
    print(e)
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out == [
        f"GaussianMixtureIC {gm.n_components_}",
        "module 'jaxgmm' has no attribute 'no_such_name'",
    ]
