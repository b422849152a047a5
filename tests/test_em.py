"""Invariants and transformations of the EM core."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import COV_TYPES, blobs, sklearn_init

import jaxgmm
from jaxgmm import _em as em
from jaxgmm import _engine, _programs, _rows
from jaxgmm._datasets import SEED_CENTERS


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_lower_bound_never_decreases(covariance_type, key):
    x, _ = blobs(n=500, d=3, k=4, seed=2)
    res = jaxgmm.fit(
        key,
        x,
        4,
        covariance_type=covariance_type,
        init_params="random",
        reg_covar=0.0,
        tol=1e-10,
        max_iter=60,
    )
    trace = np.asarray(res.lower_bounds)[: int(res.n_iter)]
    assert len(trace) > 5
    assert np.all(np.diff(trace) >= -1e-12 * np.abs(trace[1:]))
    assert np.isnan(np.asarray(res.lower_bounds)[int(res.n_iter) :]).all()


@pytest.mark.parametrize(
    "covariance_type, init_params",
    list(zip(COV_TYPES, ["k-means++", "random", "random_from_data", "kmeans"], strict=True)),
)
def test_jit_equals_eager(covariance_type, init_params, key):
    x, _ = blobs(n=60, d=2, k=2, seed=1)
    kw = dict(
        covariance_type=covariance_type, init_params=init_params, max_iter=3, tol=0.0, n_init=2
    )
    jitted = jaxgmm.fit(key, x, 2, **kw)
    with jax.disable_jit():
        eager = jaxgmm.fit(key, x, 2, **kw)
    for a, b in zip(
        jax.tree_util.tree_leaves(jitted), jax.tree_util.tree_leaves(eager), strict=True
    ):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-8, atol=1e-12)


def test_no_recompilation_for_new_data_of_same_shape(key):
    x1, _ = blobs(n=123, d=3, k=2, seed=1)
    x2, _ = blobs(n=123, d=3, k=2, seed=2)
    jaxgmm.fit(key, x1, 2, n_init=2, max_iter=5)
    # the engine compiles ahead of time (jaxgmm._programs), not through jit's cache
    before = (len(_programs._PROGRAMS), _engine.fit_batch._cache_size())
    r1 = jaxgmm.fit(key, x2, 2, n_init=2, max_iter=5, tol=1e-2, reg_covar=1e-4)
    r2 = jaxgmm.fit(jax.random.key(7), x1 * 2.0, 2, n_init=2, max_iter=5)
    assert (len(_programs._PROGRAMS), _engine.fit_batch._cache_size()) == before
    assert not np.allclose(r1.params.means, r2.params.means)


@pytest.mark.parametrize("init_params", sorted(jaxgmm.INIT_METHODS))
def test_same_key_same_result_bitwise(init_params):
    x, _ = blobs(n=200, d=3, k=3, seed=4)
    runs = [
        jaxgmm.fit_restarts(jax.random.key(3), x, 3, n_init=3, init_params=init_params)
        for _ in range(2)
    ]
    for a, b in zip(*(jax.tree_util.tree_leaves(r) for r in runs), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_dtype_is_kept_without_global_flags(dtype, covariance_type, key):
    assert not jax.config.jax_enable_x64
    x, _ = blobs(n=100, d=2, k=2, dtype=dtype)
    res = jaxgmm.fit(key, x, 2, covariance_type=covariance_type)
    assert not jax.config.jax_enable_x64
    for leaf in [*jax.tree_util.tree_leaves(res.params), res.lower_bound, res.lower_bounds]:
        assert leaf.dtype == dtype
    assert bool(res.converged)
    log_prob, log_resp = jaxgmm.score_rows(res.params, x)
    assert log_prob.dtype == dtype and log_resp.dtype == dtype
    assert np.all(np.isfinite(log_prob))


def test_float32_matches_float64(key):
    x, _ = blobs(n=300, d=3, k=3, seed=6, scale=100.0)
    x += 1e4  # far from the origin: centring keeps float32 accurate
    w0, m0, p0 = sklearn_init(x / 100.0, 3, "full")
    kw = dict(
        weights_init=w0, means_init=m0 * 100.0, precisions_init=p0 / 1e4, max_iter=20, tol=0.0
    )
    r64 = jaxgmm.fit(key, x, 3, **kw)
    r32 = jaxgmm.fit(key, x.astype(np.float32), 3, **kw)
    np.testing.assert_allclose(r32.params.means, r64.params.means, rtol=1e-5)
    np.testing.assert_allclose(
        r32.params.covariance.covariances, r64.params.covariance.covariances, rtol=2e-3, atol=1.0
    )
    np.testing.assert_allclose(float(r32.lower_bound), float(r64.lower_bound), rtol=1e-5)


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_block_statistics_equal_vmapped_per_sample_m_step(covariance_type, monkeypatch):
    """The blocked matrix product is the sum over rows of the seed's vmapped _m_step
    (in the fast form, which small data does not use: treated as large here)."""
    monkeypatch.setattr(_rows, "SMALL_ROWS", 0)
    x, _ = blobs(n=37, d=3, k=2, seed=8)
    w0, m0, p0 = sklearn_init(x, 2, covariance_type)
    cov_cls = jaxgmm.COVARIANCE_TYPES[covariance_type]
    with jax.enable_x64(True):
        params = jaxgmm.GMMParams(
            jnp.asarray(w0), jnp.asarray(m0), cov_cls.from_precisions(jnp.asarray(p0))
        )
        w = jnp.linspace(0.5, 2.0, x.shape[0])
        model = em.Natural.of(params, _rows.make_blocks(jnp.asarray(x), w, x.shape[0]))
        stats, ll = em.block_stats(jnp.asarray(x), w, model)
        resp, _, _ = jax.vmap(em._e_step, (0, None))(x, model)
        per_sample = jax.vmap(em._m_step, (0, 0, None))(x, resp * w[:, None], model)
        summed = jax.tree_util.tree_map(lambda a: a.sum(0), per_sample)
        leaves = zip(
            jax.tree_util.tree_leaves(stats), jax.tree_util.tree_leaves(summed), strict=True
        )
        for a, b in leaves:
            np.testing.assert_allclose(a, b, rtol=1e-12)
        np.testing.assert_allclose(ll, w @ jax.vmap(em._log_lik, (0, None))(x, model), rtol=1e-12)


@pytest.mark.parametrize("block_rows", [8, 16, 64, 512])
def test_block_size_does_not_change_the_fit(block_rows, key):
    x, _ = blobs(n=101, d=2, k=3, seed=9)
    w0, m0, p0 = sklearn_init(x, 3, "full")
    kw = dict(weights_init=w0, means_init=m0, precisions_init=p0, max_iter=10, tol=0.0)
    ref = jaxgmm.fit(key, x, 3, **kw)
    res = jaxgmm.fit(key, x, 3, block_rows=block_rows, **kw)
    np.testing.assert_allclose(res.params.means, ref.params.means, rtol=1e-10)
    np.testing.assert_allclose(float(res.lower_bound), float(ref.lower_bound), rtol=1e-12)


def test_diag_equals_full_on_one_component(key):
    """With one component the diagonal fit is the diagonal of the full fit."""
    x, _ = blobs(n=200, d=3, k=1, seed=2)
    full = jaxgmm.fit(key, x, 1, covariance_type="full")
    diag = jaxgmm.fit(key, x, 1, covariance_type="diag")
    sph = jaxgmm.fit(key, x, 1, covariance_type="spherical")
    tied = jaxgmm.fit(key, x, 1, covariance_type="tied")
    full_cov = np.asarray(full.params.covariance.covariances)[0]
    np.testing.assert_allclose(diag.params.covariance.covariances[0], np.diag(full_cov), rtol=1e-10)
    np.testing.assert_allclose(
        sph.params.covariance.covariances[0], np.diag(full_cov).mean(), rtol=1e-10
    )
    np.testing.assert_allclose(tied.params.covariance.covariances, full_cov, rtol=1e-10)
    np.testing.assert_allclose(diag.params.means, full.params.means, rtol=1e-10)


def test_collapsed_component_is_reported_not_nan(key):
    """A component placed far from every point loses them all: no NaN, status says so."""
    x, _ = blobs(n=100, d=2, k=2, seed=3)
    means = np.array([x[:50].mean(0), x[50:].mean(0), [1e3, 1e3]])
    res = jaxgmm.fit(
        key,
        x,
        3,
        means_init=means,
        weights_init=np.full(3, 1 / 3),
        precisions_init=np.stack([np.eye(2)] * 3),
        max_iter=20,
    )
    assert int(res.status) == jaxgmm.Status.COLLAPSED
    for leaf in jax.tree_util.tree_leaves(res.params):
        assert np.all(np.isfinite(np.asarray(leaf)))
    assert np.isfinite(float(res.lower_bound))


def test_singular_covariance_is_reported_with_last_finite_params(key):
    """reg_covar=0 and a component left with one point: NON_FINITE, the last finite
    parameters (here the starting ones) are returned."""
    x = np.array([[0.0, 0.0], [0.1, 0.3], [0.2, -0.1], [5.0, 5.0], [-0.1, 0.2]])
    w0, m0, p0 = np.array([0.5, 0.5]), np.array([[0.0, 0.0], [5.0, 5.0]]), np.stack([np.eye(2)] * 2)
    res = jaxgmm.fit(
        key,
        x,
        2,
        weights_init=w0,
        means_init=m0,
        precisions_init=p0,
        reg_covar=0.0,
    )
    assert int(res.status) == jaxgmm.Status.NON_FINITE
    assert not bool(res.converged) and int(res.n_iter) >= 1
    for leaf in jax.tree_util.tree_leaves(res.params):
        assert np.all(np.isfinite(np.asarray(leaf)))


def test_singular_initialization_is_reported(key):
    x = np.array([[0.0, 0.0], [0.1, 0.3], [0.2, -0.1], [5.0, 5.0], [-0.1, 0.2]])
    res = jaxgmm.fit(key, x, 2, reg_covar=0.0)
    assert int(res.status) == jaxgmm.Status.NON_FINITE
    assert int(res.n_iter) == 0 and not bool(res.converged)


def test_max_iter_status_and_zero_iterations(key):
    x, _ = blobs(n=100, d=2, k=2)
    res = jaxgmm.fit(key, x, 2, max_iter=2, tol=0.0)
    assert int(res.status) == jaxgmm.Status.MAX_ITER and not bool(res.converged)
    res0 = jaxgmm.fit(key, x, 2, max_iter=0)
    assert int(res0.n_iter) == 0 and float(res0.lower_bound) == -np.inf


def test_warm_start_continues_where_it_stopped(key):
    x, _ = blobs(n=200, d=2, k=3, seed=5)
    whole = jaxgmm.fit(key, x, 3, max_iter=12, tol=0.0, init_params="random")
    part = jaxgmm.fit(key, x, 3, max_iter=5, tol=0.0, init_params="random")
    rest = jaxgmm.fit(
        key, x, 3, max_iter=7, tol=0.0, params0=part.params, lower_bound0=float(part.lower_bound)
    )
    np.testing.assert_allclose(rest.params.means, whole.params.means, rtol=1e-9)
    np.testing.assert_allclose(rest.lower_bounds, np.asarray(whole.lower_bounds)[5:], rtol=1e-10)


def test_seed_data_recovers_the_four_centres(key):
    # The maximum-likelihood fit of make_blobs seed 0 puts one mean 0.52 from its
    # centre (the overlapping 50- and 20-point blobs); seed 2's is within 0.34.
    x, _ = jaxgmm.make_seed_blobs(2)
    res = jaxgmm.fit(key, x, 4, n_init=8)
    assert bool(res.converged)
    means = np.asarray(res.params.means)
    dist = np.sqrt(((means[:, None] - SEED_CENTERS[None]) ** 2).sum(-1))
    assert dist.min(0).max() < 0.5
    assert sorted(dist.argmin(1)) == [0, 1, 2, 3]


def test_more_restarts_never_worse(key):
    x, _ = jaxgmm.make_seed_blobs(4)
    one = jaxgmm.fit(key, x, 4, n_init=1, init_params="random")
    many = jaxgmm.fit_restarts(key, x, 4, n_init=8, init_params="random")
    best = jaxgmm.fit(key, x, 4, n_init=8, init_params="random")
    # restart 0 of the batch is the n_init=1 fit
    np.testing.assert_allclose(many.params.means[0], one.params.means, rtol=1e-9)
    assert float(best.lower_bound) >= float(one.lower_bound)
    # small data: `fit` runs the restarts one after another and keeps the best (one
    # program for every n_init); it is the restart best_index picks from the batch
    chosen = jax.tree_util.tree_map(lambda a: a[jaxgmm.best_index(many)], many)
    np.testing.assert_allclose(best.lower_bound, np.max(np.asarray(many.lower_bound)), rtol=1e-12)
    np.testing.assert_allclose(best.params.means, chosen.params.means, rtol=1e-9)


def test_key_must_be_a_jax_key():
    x, _ = blobs(n=50)
    with pytest.raises(TypeError, match=r"jax\.random\.key"):
        jaxgmm.fit(0, x, 2)


@pytest.mark.parametrize("init_params", ["random_from_data", "k-means++"])
@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_float32_row_initializations_are_exact(init_params, covariance_type, key):
    """A component started on one row has covariance reg_covar exactly, in float32 too
    (raw moments would cancel to noise far larger than reg_covar here)."""
    x, _ = blobs(n=300, d=4, k=3, seed=1, dtype=np.float32, scale=10.0)
    res = jaxgmm.fit(
        key, x, 3, covariance_type=covariance_type, init_params=init_params, max_iter=0
    )
    assert int(res.status) == jaxgmm.Status.MAX_ITER
    var = np.asarray(res.params.covariance.covariances)
    if covariance_type in ("full", "tied"):
        var = np.diagonal(var, axis1=-2, axis2=-1)
    np.testing.assert_allclose(var, 1e-6, rtol=1e-6)
    assert bool(
        jaxgmm.fit(key, x, 3, covariance_type=covariance_type, init_params=init_params).converged
    )


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_tight_component_far_away_is_exact_in_float32(covariance_type, key):
    """A component 1e4 standard deviations from the data's centre: the exact centred
    pass keeps float32 covariances right."""
    rng = np.random.default_rng(0)
    wide = rng.normal(size=(300, 3))
    tight = 50.0 + 5e-3 * rng.normal(size=(100, 3))
    x = np.vstack([wide, tight])
    kw = dict(
        covariance_type=covariance_type,
        means_init=np.array([[0.0, 0.0, 0.0], [50.0, 50.0, 50.0]]),
        max_iter=30,
    )
    r64 = jaxgmm.fit(key, x, 2, **kw)
    r32 = jaxgmm.fit(key, x.astype(np.float32), 2, **kw)
    assert int(r32.status) == int(r64.status) == jaxgmm.Status.CONVERGED
    c32 = np.asarray(r32.params.covariance.covariances, np.float64)
    # tied shares one covariance, estimated from raw moments about the data's centre
    # (12.5): float32 keeps eps32 x (50 - 12.5)^2 ~ 1.7e-4 of each entry, 2.4e-4 of
    # the covariance's scale (0.7), inside the 1/1024 the cancellation check allows
    atol = 4e-4 if covariance_type == "tied" else 1e-9
    np.testing.assert_allclose(c32, r64.params.covariance.covariances, rtol=2e-3, atol=atol)
    np.testing.assert_allclose(r32.params.means, r64.params.means, rtol=1e-5, atol=1e-5)


def _both_from_sklearn_start(x, k, covariance_type, max_iter):
    """jaxgmm's and scikit-learn's fits from scikit-learn's start (tol 0, reg_covar 1e-3)."""
    from sklearn.mixture import GaussianMixture as SkGMM

    w0, m0, p0 = sklearn_init(x, k, covariance_type)
    kw = dict(covariance_type=covariance_type, tol=0.0, max_iter=max_iter, reg_covar=1e-3)
    init = dict(weights_init=w0, means_init=m0, precisions_init=p0)
    return jaxgmm.GaussianMixture(k, **kw, **init).fit(x), SkGMM(k, **kw, **init).fit(x)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("covariance_type", ["full", "tied"])
def test_wide_data_uses_the_direct_form_and_equals_sklearn(covariance_type):
    """D = 70: D(D+1)/2 second moments are past the threshold, so 'full' forms no
    features ('tied' forms [1, x] alone at any width); the fit still follows
    scikit-learn's from the same start."""
    from jaxgmm._covariance import COVARIANCE_TYPES

    x, _ = blobs(n=240, d=70, k=2, seed=4)
    assert COVARIANCE_TYPES[covariance_type].prefers_direct(70) == (covariance_type == "full")
    assert not COVARIANCE_TYPES[covariance_type].prefers_direct(63)
    ours, sk = _both_from_sklearn_start(x, 2, covariance_type, max_iter=5)
    np.testing.assert_allclose(ours.means_, sk.means_, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(ours.covariances_, sk.covariances_, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(ours.lower_bound_, sk.lower_bound_, rtol=1e-8)
    np.testing.assert_allclose(ours.score_samples(x), sk.score_samples(x), rtol=1e-8)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_tied_wide_data_past_one_block_equals_sklearn():
    """Tied with D = 70 over several blocks: phi is [1, x], the quadratic form is
    added per row and the second moments are the rows' own (x^T x, as scikit-learn's
    tied M-step reads them)."""
    x, _ = blobs(n=20000, d=70, k=3, seed=6)
    ours, sk = _both_from_sklearn_start(x, 3, "tied", max_iter=3)
    np.testing.assert_allclose(ours.means_, sk.means_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(ours.covariances_, sk.covariances_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(ours.lower_bound_, sk.lower_bound_, rtol=1e-10)


def test_direct_form_equals_the_expanded_form(monkeypatch):
    """A per-component and a shared type, and the variational mixture, give the same
    fit with the direct form forced on narrow data."""
    from jaxgmm._covariance import Covariance

    x, _ = blobs(n=150, d=4, k=3, seed=5)
    fits = {}
    for threshold in (2048, 0):
        monkeypatch.setattr(Covariance, "DIRECT_SECOND_MOMENTS", threshold)
        jax.clear_caches()
        for cov in ("full", "diag"):
            g = jaxgmm.GaussianMixture(3, covariance_type=cov, random_state=0, tol=1e-8)
            fits[threshold, cov] = g.fit(x)
        bgm = jaxgmm.BayesianGaussianMixture(n_components=3, random_state=0)
        fits[threshold, "vb"] = bgm.fit(x)
    jax.clear_caches()
    for cov in ("full", "diag", "vb"):
        fast, direct = fits[2048, cov], fits[0, cov]
        assert fast.n_iter_ == direct.n_iter_
        np.testing.assert_allclose(direct.lower_bound_, fast.lower_bound_, rtol=1e-11)
        np.testing.assert_allclose(direct.means_, fast.means_, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(direct.score_samples(x), fast.score_samples(x), rtol=1e-10)
