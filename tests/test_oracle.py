"""Oracle: from the same starting parameters, in float64, our EM equals scikit-learn's."""

import jax
import numpy as np
import pytest
from conftest import COV_TYPES, blobs, sklearn_init
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

import jaxgmm


@pytest.mark.parametrize("covariance_type", COV_TYPES)
@pytest.mark.parametrize("n_iter", [1, 7])
def test_same_parameters_as_sklearn(covariance_type, n_iter):
    x, _ = blobs(n=400, d=3, k=3)
    w0, m0, p0 = sklearn_init(x, 3, covariance_type)
    ref = GaussianMixture(
        3,
        covariance_type=covariance_type,
        weights_init=w0,
        means_init=m0,
        precisions_init=p0,
        max_iter=n_iter,
        tol=0.0,
    )
    with pytest.warns(ConvergenceWarning):
        ref.fit(x)
    res = jaxgmm.fit(
        jax.random.key(0),
        x,
        3,
        covariance_type=covariance_type,
        weights_init=w0,
        means_init=m0,
        precisions_init=p0,
        max_iter=n_iter,
        tol=0.0,
    )
    p = res.params
    assert p.means.dtype == np.float64
    assert int(res.n_iter) == ref.n_iter_ == n_iter
    np.testing.assert_allclose(p.weights, ref.weights_, rtol=1e-6)
    np.testing.assert_allclose(p.means, ref.means_, rtol=1e-6)
    np.testing.assert_allclose(p.covariance.covariances, ref.covariances_, rtol=1e-6)
    np.testing.assert_allclose(
        p.covariance.precisions_cholesky, ref.precisions_cholesky_, rtol=1e-6, atol=1e-12
    )
    with jax.enable_x64(True):  # float64 jax arrays need 64-bit types to compute on
        precisions = p.covariance.precisions()
    np.testing.assert_allclose(precisions, ref.precisions_, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(float(res.lower_bound), ref.lower_bound_, rtol=1e-8)
    np.testing.assert_allclose(res.lower_bounds[:n_iter], ref.lower_bounds_, rtol=1e-8)


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_same_convergence_as_sklearn(covariance_type):
    """With the default tol both stop at the same iteration with the same model."""
    x, _ = blobs(n=300, d=2, k=3, seed=3)
    w0, m0, p0 = sklearn_init(x, 3, covariance_type, seed=4)
    kw = dict(weights_init=w0, means_init=m0, precisions_init=p0, covariance_type=covariance_type)
    ref = GaussianMixture(3, **kw).fit(x)
    res = jaxgmm.fit(jax.random.key(0), x, 3, **kw)
    assert bool(res.converged) and ref.converged_
    assert int(res.n_iter) == ref.n_iter_
    assert int(res.status) == jaxgmm.Status.CONVERGED
    np.testing.assert_allclose(res.params.means, ref.means_, rtol=1e-6)
    np.testing.assert_allclose(float(res.lower_bound), ref.lower_bound_, rtol=1e-8)


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_score_rows_equal_sklearn(covariance_type):
    x, _ = blobs(n=250, d=4, k=3, seed=5)
    ref = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(x)
    cov_cls = jaxgmm.COVARIANCE_TYPES[covariance_type]
    params = jaxgmm.GMMParams(
        ref.weights_, ref.means_, cov_cls(ref.covariances_, ref.precisions_cholesky_)
    )
    log_prob, log_resp = jaxgmm.score_rows(params, x)
    np.testing.assert_allclose(log_prob, ref.score_samples(x), rtol=1e-10)
    np.testing.assert_allclose(np.exp(log_resp), ref.predict_proba(x), atol=1e-10)
