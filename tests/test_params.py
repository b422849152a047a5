"""The mixture's parameters (``jaxgmm._params``) and what each covariance class owns
for them: padding, trimming, dense matrices, precisions, the variational prior."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import COV_TYPES, sklearn_init

import jaxgmm
from jaxgmm._typing import x64_scope


def _params(covariance_type, k=3, d=4):
    x = np.random.default_rng(0).normal(size=(50, d))
    w0, m0, p0 = sklearn_init(x, k, covariance_type)
    cov_cls = jaxgmm.COVARIANCE_TYPES[covariance_type]
    with x64_scope(np.float64):
        return jaxgmm.GMMParams(w0, m0, cov_cls.from_precisions(p0)), x


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_padded_then_leading_is_the_same_mixture(covariance_type):
    params, _ = _params(covariance_type)
    with x64_scope(np.float64):
        padded = params.padded(5)
        assert padded.weights.shape == (5,) and not np.asarray(padded.weights)[3:].any()
        cov = padded.covariance
        if cov.per_component:  # masked components: identity covariance and Cholesky
            np.testing.assert_array_equal(
                np.asarray(cov.covariances)[3:], np.asarray(cov.precisions_cholesky)[3:]
            )
        back = padded.leading(3)
    np.testing.assert_array_equal(np.asarray(back.weights), np.asarray(params.weights))
    np.testing.assert_array_equal(np.asarray(back.means), np.asarray(params.means))
    np.testing.assert_array_equal(
        np.asarray(back.covariance.covariances), np.asarray(params.covariance.covariances)
    )


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_dense_and_precisions_agree_with_the_class(covariance_type):
    params, _ = _params(covariance_type)
    cov = params.covariance
    cls = type(cov)
    dense = cls.dense(np.asarray(cov.covariances), 3, 4)
    assert dense.shape == (3, 4, 4)
    # the dense matrices have the class's variances on their diagonals
    with x64_scope(np.float64):
        variances = np.broadcast_to(np.asarray(cov.variances()), (3, 4))
        precisions = np.asarray(cov.precisions())
    np.testing.assert_allclose(np.diagonal(dense, axis1=1, axis2=2), variances, rtol=1e-14)
    chol = np.asarray(cov.precisions_cholesky)
    np.testing.assert_allclose(cls.precisions_from_cholesky(chol), precisions, rtol=1e-12)


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_empirical_prior_is_sklearns_default(covariance_type):
    from sklearn.mixture import BayesianGaussianMixture as SkBGM

    x = np.random.default_rng(1).normal(size=(40, 3))
    sk = SkBGM(n_components=2, covariance_type=covariance_type, max_iter=1)
    with pytest.warns(Warning):
        sk.fit(x)
    ours = jaxgmm.COVARIANCE_TYPES[covariance_type].empirical_prior(x)
    np.testing.assert_allclose(ours, sk.covariance_prior_, rtol=1e-14)
