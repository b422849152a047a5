"""``to_sklearn()``: scikit-learn's own estimator of a fitted jaxgmm mixture, for
scikit-learn's tooling (skl2onnx's ONNX export)."""

import math

import numpy as np
import onnxruntime
import pandas as pd
import pytest
from conftest import COV_TYPES
from numpy.testing import assert_allclose, assert_array_equal
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType
from sklearn.base import clone
from sklearn.datasets import load_iris
from sklearn.exceptions import NotFittedError
from sklearn.mixture import BayesianGaussianMixture as SkBGM
from sklearn.mixture import GaussianMixture as SkGM
from sklearn.utils.validation import check_is_fitted

import jaxgmm
from jaxgmm._base import sklearn_covariance_type
from jaxgmm._covariance import covariance_class

IRIS = load_iris()
X = IRIS.data
#: scikit-learn's four and three of mclust's families, one of each structure's kinds.
TYPES = [*COV_TYPES, "EII", "VEV", "VVE"]


def fit(covariance_type, x=X, **params):
    params = {"n_components": 3, "random_state": 0} | params
    return jaxgmm.GaussianMixture(covariance_type=covariance_type, **params).fit(x)


@pytest.fixture(scope="module")
def models():
    return {name: fit(name) for name in TYPES}


def fitted_names(estimator):
    return {k for k in vars(estimator) if k.endswith("_") and not k.startswith("_")}


def test_each_family_becomes_the_sklearn_type_of_its_structure():
    expected = {
        "EII": "spherical", "VII": "spherical",
        "EEI": "diag", "VEI": "diag", "EVI": "diag", "VVI": "diag",
        "EEE": "tied",
        "VEE": "full", "EVE": "full", "VVE": "full", "EEV": "full", "VEV": "full",
        "EVV": "full", "VVV": "full",
        "full": "full", "tied": "tied", "diag": "diag", "spherical": "spherical",
    }  # fmt: skip
    assert {name: sklearn_covariance_type(name) for name in expected} == expected


@pytest.mark.parametrize("covariance_type", TYPES)
def test_sklearn_s_predictions_equal_jaxgmm_s(models, covariance_type):
    """The same mixture, so scikit-learn's arithmetic and jaxgmm's differ by rounding
    alone (measured on iris: 3e-14 in the probabilities, 2e-13 in the log-likelihoods,
    6e-15 relative in score, bic and aic)."""
    jx = models[covariance_type]
    sk = jx.to_sklearn()
    check_is_fitted(sk)
    assert isinstance(sk, SkGM)
    assert_array_equal(sk.predict(X), jx.predict(X))
    assert_allclose(sk.predict_proba(X), jx.predict_proba(X), rtol=0, atol=1e-12)
    assert_allclose(sk.score_samples(X), jx.score_samples(X), rtol=1e-12, atol=1e-12)
    assert_allclose(sk.score(X), jx.score(X), rtol=1e-13)
    # scikit-learn counts its type's free parameters, more than a family's
    k, d = jx.means_.shape
    extra = covariance_class(sk.covariance_type).n_parameters(k, d)
    extra -= covariance_class(covariance_type).n_parameters(k, d)
    assert_allclose(sk.bic(X), jx.bic(X) + extra * math.log(len(X)), rtol=1e-13)
    assert_allclose(sk.aic(X), jx.aic(X) + 2 * extra, rtol=1e-13)
    x_new, y_new = sk.sample(7)
    assert x_new.shape == (7, X.shape[1]) and y_new.shape == (7,)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_every_fitted_attribute_is_sklearn_s_own(dtype):
    """The attributes scikit-learn's fit sets, jaxgmm's values, in the dtype
    scikit-learn's fit of the same data gives (float32 data: float32 arrays)."""
    x = X.astype(dtype)
    jx = fit("full", x)
    sk = jx.to_sklearn()
    own = SkGM(3, random_state=0).fit(x)
    assert fitted_names(sk) == fitted_names(own)
    for name in fitted_names(sk):
        value = getattr(sk, name)
        assert_array_equal(value, getattr(jx, name))
        if isinstance(value, np.ndarray):
            assert value.dtype == getattr(own, name).dtype, name


def test_the_parameters_carry_over_and_sklearn_accepts_them():
    params = dict(
        tol=1e-4,
        reg_covar=1e-5,
        max_iter=50,
        n_init=2,
        init_params="k-means++",
        random_state=3,
        verbose_interval=5,
    )
    jx = fit("VEV", **params)
    sk = jx.to_sklearn()
    assert sk.get_params() == jx.get_params() | {"covariance_type": "full"}
    clone(sk).fit(X)  # scikit-learn's own validation of every parameter


def test_the_estimator_is_a_copy():
    jx = fit("full", random_state=np.random.RandomState(0))
    before = {name: np.copy(getattr(jx, name)) for name in fitted_names(jx)}
    proba = jx.predict_proba(X)
    sk = jx.to_sklearn()
    for name in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"):
        getattr(sk, name)[...] = 0.5
    if hasattr(sk, "lower_bounds_"):  # scikit-learn >= 1.7
        sk.lower_bounds_.append(0.0)
    assert sk.random_state is not jx.random_state  # its draws do not advance jaxgmm's
    sk.set_params(n_components=2, covariance_type="diag")
    for name, value in before.items():
        assert_array_equal(getattr(jx, name), value)
    assert jx.get_params()["covariance_type"] == "full"
    assert_array_equal(jx.predict_proba(X), proba)


def test_an_unfitted_model_raises_sklearn_s_error():
    with pytest.raises(NotFittedError, match="This GaussianMixture instance is not fitted yet"):
        jaxgmm.GaussianMixture(2).to_sklearn()
    with pytest.raises(NotFittedError, match="This BayesianGaussianMixture instance is not"):
        jaxgmm.BayesianGaussianMixture().to_sklearn()


def test_feature_names_carry_over():
    frame = pd.DataFrame(X, columns=IRIS.feature_names)
    jx = fit("diag", frame)
    sk = jx.to_sklearn()
    assert_array_equal(sk.feature_names_in_, IRIS.feature_names)
    # a frame's names are checked against them (a mismatch would warn: an error here)
    assert_array_equal(sk.predict(frame), jx.predict(frame))


# both weight priors (Beta pairs, Dirichlet concentrations) and both kinds of covariance
# prior (a matrix, a number)
@pytest.mark.parametrize(
    ("covariance_type", "prior"),
    [("full", "dirichlet_process"), ("spherical", "dirichlet_distribution")],
)
def test_bayesian_mixture_converts_with_its_posterior_and_priors(covariance_type, prior):
    params = dict(n_components=3, covariance_type=covariance_type, random_state=0)
    jx = jaxgmm.BayesianGaussianMixture(weight_concentration_prior_type=prior, **params).fit(X)
    sk = jx.to_sklearn()
    own = SkBGM(weight_concentration_prior_type=prior, **params).fit(X)
    assert isinstance(sk, SkBGM)
    assert fitted_names(sk) == fitted_names(own)
    assert sk.get_params() == jx.get_params()
    # measured on iris: 3e-14 in the probabilities, 1.1e-13 in the log-likelihoods
    assert_array_equal(sk.predict(X), jx.predict(X))
    assert_allclose(sk.predict_proba(X), jx.predict_proba(X), rtol=0, atol=1e-12)
    assert_allclose(sk.score_samples(X), jx.score_samples(X), rtol=1e-12, atol=1e-12)


# (input type, its dtype, tolerances of the probabilities and of the log-likelihoods):
# a float32 graph computes in float32 (measured on iris: 4.1e-7 and 5.7e-6 full, 6.7e-6
# and 6.1e-5 diag); a float64 one agrees to rounding (1.4e-14 and 8.3e-14).
PRECISIONS = [
    (FloatTensorType, np.float32, 5e-5, 5e-4),
    (DoubleTensorType, np.float64, 1e-12, 1e-12),
]


@pytest.mark.parametrize(("tensor", "dtype", "atol", "log_atol"), PRECISIONS)
@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_skl2onnx_exports_it(models, covariance_type, tensor, dtype, atol, log_atol):
    jx = models[covariance_type]
    sk = jx.to_sklearn()
    inputs = [("X", tensor([None, X.shape[1]]))]
    onx = convert_sklearn(sk, initial_types=inputs, options={SkGM: {"score_samples": True}})
    session = onnxruntime.InferenceSession(
        onx.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    labels, proba, log_prob = session.run(None, {"X": X.astype(dtype)})
    assert_array_equal(labels.ravel(), jx.predict(X))
    assert_allclose(proba, jx.predict_proba(X), rtol=0, atol=atol)
    assert_allclose(log_prob.ravel(), jx.score_samples(X), rtol=0, atol=log_atol)


def test_the_selection_converts_its_chosen_model():
    ic = jaxgmm.GaussianMixtureIC(range(1, 4), covariance_type="sklearn", n_init=1).fit(X)
    sk = ic.to_sklearn()
    assert isinstance(sk, SkGM) and sk.n_components == ic.best_estimator_.n_components
    assert_array_equal(sk.predict(X), ic.predict(X))
    with pytest.raises(NotFittedError):
        jaxgmm.GaussianMixtureIC().to_sklearn()
