"""Exact log-densities: tight components far from the data's centre, huge and tiny
scales, float64 and float32.

The reference is the centred form evaluated in long double (80-bit on x86), from the
same parameters: scikit-learn is no oracle here, since its diag and spherical
log-densities use the expanded quadratic form too (off by up to 1e5 relative at 1e6
apart, std 1e-5) and its full form ``X @ U - mu @ U`` loses ~1e-6 relative there.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import COV_TYPES
from sklearn.mixture import GaussianMixture as SkGM
from sklearn.mixture._gaussian_mixture import _compute_precision_cholesky

import jaxgmm
from jaxgmm import _em as em
from jaxgmm import _rows
from jaxgmm._typing import x64_scope


def full_covariances(covariance_type, cov, k, d):
    return {
        "full": lambda: cov,
        "tied": lambda: np.broadcast_to(cov, (k, d, d)),
        "diag": lambda: np.stack([np.diag(c) for c in cov]),
        "spherical": lambda: np.stack([np.eye(d) * c for c in cov]),
    }[covariance_type]()


def reference(x, weights, means, cov, covariance_type):
    """Per-row log-likelihood and responsibilities, centred form, long double."""
    k, d = means.shape
    covs = full_covariances(covariance_type, cov, k, d)
    x = np.asarray(x, np.longdouble)
    log_joint = []
    for j in range(k):
        prec = np.linalg.inv(covs[j]).astype(np.longdouble)
        diff = x - np.asarray(means[j], np.longdouble)
        maha = np.einsum("nd,de,ne->n", diff, prec, diff)
        log_det = np.linalg.slogdet(covs[j])[1]
        log_joint.append(
            np.log(np.longdouble(weights[j])) - 0.5 * (maha + log_det + d * np.log(2 * np.pi))
        )
    log_joint = np.stack(log_joint, 1)
    top = log_joint.max(1, keepdims=True)
    log_norm = top[:, 0] + np.log(np.exp(log_joint - top).sum(1))
    return log_norm, np.exp(log_joint - log_norm[:, None])


def two_clusters(covariance_type, sep, std, d=3, n=(300, 200), seed=0):
    """Rows of two tight clusters at 0 and ``sep``, and their exact parameters."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(size=(n[0], d)) * std, sep + rng.normal(size=(n[1], d)) * std])
    a = rng.normal(size=(2, d, d)) * 0.3 + np.eye(d)
    full = np.einsum("kde,kfe->kdf", a, a) * std**2
    cov = {
        "full": full,
        "tied": full[0],
        "diag": np.stack([np.diag(f) for f in full]),
        "spherical": np.array([std**2, 2 * std**2]),
    }[covariance_type]
    means = np.stack([x[: n[0]].mean(0), x[n[0] :].mean(0)])
    return x, np.array([0.6, 0.4]), means, cov


def estimator(covariance_type, weights, means, cov, cls=jaxgmm.GaussianMixture):
    """A fitted estimator holding exactly these parameters."""
    gm = cls(len(weights), covariance_type=covariance_type)
    gm.weights_, gm.means_, gm.covariances_ = weights, means, cov
    gm.precisions_cholesky_ = _compute_precision_cholesky(cov, covariance_type)
    gm.n_features_in_ = means.shape[1]
    return gm


def rel(a, b):
    a, b = np.asarray(a, np.longdouble), np.asarray(b, np.longdouble)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1)))


@pytest.mark.parametrize("on_host", [True, False], ids=["host", "compiled"])
@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_score_samples_and_proba_exact_far_and_tight(covariance_type, on_host, monkeypatch):
    """Both scoring paths: numpy on the host (small inputs) and the compiled passes."""
    if not on_host:
        monkeypatch.setattr(em, "HOST_SCORING_WORK", 0)
    for sep in (1e2, 1e4, 1e6):
        for std in (1e-1, 1e-3, 1e-5):
            x, w, m, c = two_clusters(covariance_type, sep, std)
            ref_ll, ref_resp = reference(x, w, m, c, covariance_type)
            gm = estimator(covariance_type, w, m, c)
            sk = estimator(covariance_type, w, m, c, SkGM)
            ours, theirs = rel(gm.score_samples(x), ref_ll), rel(sk.score_samples(x), ref_ll)
            assert ours < 1e-12, (sep, std, ours)
            assert ours <= max(theirs, 1e-14), (sep, std, ours, theirs)
            np.testing.assert_allclose(gm.predict_proba(x), ref_resp, atol=1e-12)
            labels = gm.predict(x)
            np.testing.assert_array_equal(labels, ref_resp.argmax(1))
            np.testing.assert_array_equal(labels, sk.predict(x))
            assert labels.dtype == sk.predict(x).dtype


def test_small_inputs_are_scored_on_the_host(monkeypatch):
    """Up to HOST_SCORING_WORK (rows x K x D^2) numpy scores the rows; past it the
    compiled passes do; both agree, in the model's dtype."""
    x, w, m, c = two_clusters("full", 10.0, 1.0, n=(600, 400))
    gm = estimator("full", w, m, c)
    calls = []
    host = em.score_rows_host
    monkeypatch.setattr(em, "HOST_SCORING_WORK", len(x) * 2 * 9)
    monkeypatch.setattr(jaxgmm._base, "score_rows_host", lambda *a: calls.append(1) or host(*a))
    small = gm.score_samples(x), gm.predict_proba(x)
    assert calls == [1, 1]
    assert gm.score_samples(np.concatenate([x, x[:1]])).shape == (len(x) + 1,)
    assert calls == [1, 1]  # one row more: compiled
    monkeypatch.setattr(em, "HOST_SCORING_WORK", 0)
    large = gm.score_samples(x), gm.predict_proba(x)
    np.testing.assert_allclose(small[0], large[0], rtol=1e-14)
    np.testing.assert_allclose(small[1], large[1], atol=1e-14)
    for dtype in (np.float32, np.float64):
        gm32 = estimator("full", w.astype(dtype), m.astype(dtype), c.astype(dtype))
        assert gm32.score_samples(x.astype(dtype)[:10]).dtype == dtype
        assert gm32.predict_proba(x.astype(dtype)[:10]).dtype == dtype


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_lower_bound_of_given_parameters_is_exact(covariance_type):
    """The fit's first E-step (its lower bound) from given parameters, in float64."""
    for sep, std in ((1e4, 1e-3), (1e6, 1e-5)):
        x, w, m, c = two_clusters(covariance_type, sep, std)
        prec = np.linalg.inv(c) if covariance_type in ("full", "tied") else 1 / c
        res = jaxgmm.fit(
            jax.random.key(0),
            x,
            2,
            covariance_type=covariance_type,
            weights_init=w,
            means_init=m,
            precisions_init=prec,
            max_iter=1,
            tol=0.0,
        )
        ref = float(np.mean(reference(x, w, m, c, covariance_type)[0]))
        assert abs(float(res.lower_bound) - ref) <= 1e-12 * abs(ref), (sep, std)


@pytest.mark.parametrize("covariance_type", ["full"])
def test_em_follows_sklearns_path_far_and_tight(covariance_type):
    """Where scikit-learn's own steps are exact (full; 1e4 apart, std 1e-3). Its tied
    M-step (``X^T X - sum_k nk mu_k mu_k^T``) and diag/spherical E-step cancel."""
    x, _, m, c = two_clusters(covariance_type, 1e4, 1e-3)
    rng = np.random.default_rng(1)
    m0 = m + rng.normal(size=m.shape) * 1e-4
    prec = np.linalg.inv(c) * 0.7
    kw = dict(covariance_type=covariance_type, weights_init=[0.5, 0.5], means_init=m0)
    ref = SkGM(2, precisions_init=prec, max_iter=5, tol=0.0, **kw)
    with pytest.warns(Warning):
        ref.fit(x)
    res = jaxgmm.fit(jax.random.key(0), x, 2, precisions_init=prec, max_iter=5, tol=0.0, **kw)
    np.testing.assert_allclose(res.params.means, ref.means_, rtol=1e-12)
    np.testing.assert_allclose(res.params.covariance.covariances, ref.covariances_, rtol=1e-6)
    np.testing.assert_allclose(res.lower_bounds, ref.lower_bounds_, rtol=1e-9)


def test_float32_lower_bound_is_the_log_likelihood_of_the_fit():
    """Two clusters at 0 and 100 (std 0.01) and at 0 and 1e4: float32 reported
    7.90 and -5242.9 (diag 0.0) against the true 5.685 and 10.05."""
    rng = np.random.default_rng(0)
    for sep in (100.0, 1e4):
        x = np.concatenate(
            [rng.normal(size=(300, 2)) * 0.01, sep + rng.normal(size=(300, 2)) * 0.01]
        )
        for covariance_type in COV_TYPES:
            gm = jaxgmm.GaussianMixture(2, covariance_type=covariance_type, random_state=0)
            gm.fit(x.astype(np.float32))
            assert gm.converged_
            p64 = [np.asarray(a, np.float64) for a in (gm.weights_, gm.means_, gm.covariances_)]
            exact = float(np.mean(reference(x.astype(np.float32), *p64, covariance_type)[0]))
            # lower_bound_ is the last E-step's, before the last M-step: within tol
            assert abs(gm.lower_bound_ - exact) < 1e-3 + 1e-4 * abs(exact), (sep, covariance_type)
            assert abs(gm.score(x.astype(np.float32)) - exact) < 1e-4 * max(abs(exact), 1)


def test_float32_labels_agree_with_exact_labels_beyond_float32_accuracy():
    rng = np.random.default_rng(2)
    centers = np.array([[0.0, 0.0], [0.3, 0.0], [0.0, 0.3]]) + 50.0
    x = (centers[rng.integers(0, 3, 3000)] + rng.normal(size=(3000, 2)) * 0.2).astype(np.float32)
    gm = jaxgmm.GaussianMixture(3, random_state=0).fit(x)
    p64 = [np.asarray(a, np.float64) for a in (gm.weights_, gm.means_, gm.covariances_)]
    _, resp = reference(x, *p64, "full")
    top2 = np.sort(np.log(resp.astype(np.float64)), 1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 1e-3
    assert clear.mean() > 0.99
    np.testing.assert_array_equal(gm.predict(x)[clear], resp.argmax(1)[clear])


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-10), (np.float32, 1e-3)])
def test_fast_form_is_used_only_inside_its_error_bound(dtype, tol, monkeypatch):
    """Both sides of the boundary: wherever the estimate keeps the fast form, the
    fast form is accurate; the centred form takes over before it is not. Ordinary
    data (the benchmark's shape) stays on the fast form. (These blocks are small
    enough for the centred form alone: small data is treated as large here.)"""
    monkeypatch.setattr(_rows, "SMALL_ROWS", 0)
    rng = np.random.default_rng(3)
    used_fast = used_exact = 0
    for std in np.geomspace(1.0, 1e-6, 13):
        for covariance_type in COV_TYPES:
            seed = int(rng.integers(99))
            x, w, m, c = two_clusters(covariance_type, 10 * std**0.5, std, d=4, seed=seed)
            x, w, m, c = (np.asarray(a, dtype) for a in (x, w, m, c))  # what the model holds
            ref, _ = reference(x, *(a.astype(np.float64) for a in (w, m, c)), covariance_type)
            cls = jaxgmm.COVARIANCE_TYPES[covariance_type]
            with x64_scope(dtype):  # the engine's scope (full float32 products on GPUs)
                params = jaxgmm.GMMParams(
                    jnp.asarray(w, dtype),
                    jnp.asarray(m, dtype),
                    cls.from_covariances(jnp.asarray(c, dtype)),
                )
                xj = jnp.asarray(x, dtype)
                blocks = _rows.make_blocks(
                    xj, jnp.ones(len(x), dtype), len(x), center=params.weights @ params.means
                )
                model = em.Natural.of(params, blocks)
                fast = em.block_e_step(xj, model, centred=False)[2]
                centred = em.block_e_step(xj, model, centred=True)[2]
            assert rel(centred, ref) < tol
            if bool(model.exact):
                used_exact += 1
            else:
                used_fast += 1
                assert rel(fast, ref) < tol, (std, covariance_type)
    assert used_fast and used_exact
    # the benchmark's data: 16 features, 16 clusters of unit variance at scale 4
    centers = rng.normal(scale=4.0, size=(16, 16))
    x = (centers[rng.integers(0, 16, 5000)] + rng.normal(size=(5000, 16))).astype(dtype)
    gm = SkGM(16, random_state=0, max_iter=20).fit(x)
    with x64_scope(dtype):
        params = jaxgmm.GMMParams(
            jnp.asarray(gm.weights_, dtype),
            jnp.asarray(gm.means_, dtype),
            jaxgmm.FullCovariance.from_covariances(jnp.asarray(gm.covariances_, dtype)),
        )
        blocks = _rows.make_blocks(
            jnp.asarray(x), jnp.ones(5000, dtype), 5000, center=params.weights @ params.means
        )
        assert not bool(em.Natural.of(params, blocks).exact)


def test_scaling_data_scales_nothing_else():
    """Huge and tiny scales: the same clusters at 1e-150 and 1e150 times."""
    x, _, _, _ = two_clusters("full", 10.0, 1.0)
    base = jaxgmm.GaussianMixture(2, random_state=0).fit(x)
    for scale in (1e-150, 1e150):
        gm = jaxgmm.GaussianMixture(2, random_state=0, reg_covar=1e-6 * scale**2).fit(x * scale)
        np.testing.assert_allclose(gm.means_, base.means_ * scale, rtol=1e-9)
        shift = -x.shape[1] * np.log(scale)
        np.testing.assert_allclose(
            gm.score_samples(x * scale), base.score_samples(x) + shift, rtol=1e-9
        )


def test_small_data_uses_the_centred_form_alone():
    """One block of at most SMALL_ROWS rows: the exact form, decided from shapes (a
    Python True, so the fast form is never compiled); more rows keep the switch."""
    x = np.random.default_rng(0).standard_normal((300, 3))
    with x64_scope(np.float64):
        small = _rows.make_blocks(jnp.asarray(x), jnp.ones(300), 512)
        large = _rows.make_blocks(jnp.asarray(x), jnp.ones(300), 64)
        cls = jaxgmm.FullCovariance
        assert small.small and em.direct_form(cls, small) is True
        assert not large.small and em.direct_form(cls, large) is False


def reference_estimate(x, w, resp, covariance_type, reg_covar):
    """scikit-learn's ``_estimate_gaussian_parameters`` in long double, centred."""
    x, r = np.asarray(x, np.longdouble), np.asarray(resp, np.longdouble) * w[:, None]
    nk = r.sum(0) + 10 * np.finfo(np.float64).eps
    means = r.T @ x / nk[:, None]
    diff = x[None] - means[:, None]  # (k, n, d)
    full = np.einsum("nk,knd,kne->kde", r, diff, diff) / nk[:, None, None]
    d = x.shape[1]
    cov = {
        "full": lambda: full + reg_covar * np.eye(d),
        "tied": lambda: np.einsum("k,kde->de", nk, full) / nk.sum() + reg_covar * np.eye(d),
        "diag": lambda: np.diagonal(full, 0, 1, 2) + reg_covar,
        "spherical": lambda: np.diagonal(full, 0, 1, 2).mean(1) + reg_covar,
    }[covariance_type]()
    return nk / nk.sum(), means, cov


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_one_block_m_step_is_the_exact_centred_estimate(covariance_type):
    """Small data's M-step (one block: the means from the responsibilities, then the
    moments about them) needs no cancellation check: it is exact on tight clusters
    far from the origin, with weights."""
    cov_cls = jaxgmm.COVARIANCE_TYPES[covariance_type]
    for sep, std in ((1e4, 1e-3), (1e6, 1e-5)):
        x, wts, m, c = two_clusters(covariance_type, sep, std)
        x = x + 3e5  # both clusters far from the origin too
        w = np.linspace(0.5, 2.0, x.shape[0])
        with x64_scope(np.float64):
            blocks = _rows.make_blocks(jnp.asarray(x), jnp.asarray(w), 512, center="mean")
            assert blocks.single and em.direct_form(cov_cls, blocks)
            prec = np.linalg.inv(c) if covariance_type in ("full", "tied") else 1 / c
            params = jaxgmm.GMMParams(
                jnp.asarray(wts), jnp.asarray(m + 3e5), cov_cls.from_precisions(jnp.asarray(prec))
            )
            model = em.Natural.of(params, blocks)
            new, stats, _ = em.em_pass(em.e_step_resp(model), blocks, cov_cls, 1e-9)
            resp = reference(x, wts, m + 3e5, c, covariance_type)[1]
        ref_w, ref_m, ref_c = reference_estimate(x, w, resp, covariance_type, 1e-9)
        np.testing.assert_allclose(new.weights, ref_w, rtol=1e-13)
        np.testing.assert_allclose(new.means, ref_m, rtol=1e-15, atol=1e-16 * sep)
        scale = float(np.abs(ref_c).max())  # off-diagonal terms are ~1e-4 of it
        np.testing.assert_allclose(new.covariance.covariances, ref_c, rtol=1e-9, atol=1e-12 * scale)
        np.testing.assert_allclose(stats.sum_r, (resp * w[:, None]).sum(0), rtol=1e-13)
