"""Every public method of every estimator, called on a fitted model, checked against
scikit-learn (or against what it must return)."""

import warnings

import numpy as np
import pytest
from sklearn.mixture import BayesianGaussianMixture as SkBGM
from sklearn.mixture import GaussianMixture as SkGM

import jaxgmm

X, _ = jaxgmm.make_seed_blobs(0)


def as_sklearn(model):
    """scikit-learn's estimator of the same class holding the same fitted state."""
    cls = SkBGM if isinstance(model, jaxgmm.BayesianGaussianMixture) else SkGM
    ref = cls(**{k: v for k, v in model.get_params().items() if k in cls().get_params()})
    for name, value in vars(model).items():
        if name.endswith("_") and not name.startswith("_"):
            setattr(ref, name, value)
    return ref


@pytest.fixture(scope="module")
def fitted():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence of the variational fit
        return {
            "gm": jaxgmm.GaussianMixture(4, random_state=0).fit(X),
            "bgm": jaxgmm.BayesianGaussianMixture(n_components=5, random_state=0).fit(X),
            "ic": jaxgmm.GaussianMixtureIC(
                [3, 4, 5], covariance_type=["full", "diag"], n_init=1, random_state=0
            ).fit(X),
        }


@pytest.mark.parametrize("name", ["gm", "bgm"])
def test_scoring_methods_equal_sklearn_on_the_same_state(fitted, name):
    model = fitted[name]
    ref = as_sklearn(model)
    np.testing.assert_allclose(model.score_samples(X), ref.score_samples(X), rtol=1e-10)
    np.testing.assert_allclose(model.score(X), ref.score(X), rtol=1e-10)
    np.testing.assert_allclose(model.predict_proba(X), ref.predict_proba(X), atol=1e-10)
    np.testing.assert_array_equal(model.predict(X), ref.predict(X))
    if name == "gm":
        np.testing.assert_allclose(model.bic(X), ref.bic(X), rtol=1e-10)
        np.testing.assert_allclose(model.aic(X), ref.aic(X), rtol=1e-10)


@pytest.mark.parametrize("name", ["gm", "bgm", "ic"])
def test_sample_draws_from_the_fitted_mixture(fitted, name):
    model = fitted[name]
    mixture = model.best_estimator_ if name == "ic" else model
    x, y = model.sample(20000, random_state=1)
    assert x.shape == (20000, 2) and y.shape == (20000,) and y.dtype == np.int64
    assert np.all(np.diff(y) >= 0)  # grouped by component, as scikit-learn's
    counts = np.bincount(y, minlength=len(mixture.weights_)) / len(y)
    np.testing.assert_allclose(counts, mixture.weights_, atol=0.02)
    for k in np.unique(y):
        if np.sum(y == k) > 500:
            np.testing.assert_allclose(x[y == k].mean(0), mixture.means_[k], atol=0.15)
    again, _ = model.sample(20000, random_state=1)
    np.testing.assert_array_equal(x, again)
    with pytest.raises(ValueError, match="n_samples"):
        model.sample(0)


@pytest.mark.parametrize("name", ["gm", "bgm", "ic"])
def test_fit_predict_equals_fit_then_predict(fitted, name):
    model = fitted[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        labels = type(model)(**model.get_params()).fit_predict(X)
    np.testing.assert_array_equal(labels, model.predict(X))


@pytest.mark.parametrize("name", ["gm", "bgm", "ic"])
def test_save_load_round_trip_keeps_every_method(fitted, name, tmp_path):
    model = fitted[name]
    model.save(tmp_path / "m.jgmm")
    back = jaxgmm.load(tmp_path / "m.jgmm")
    assert type(back) is type(model)
    assert back.get_params().keys() == model.get_params().keys()
    np.testing.assert_array_equal(back.predict(X), model.predict(X))
    np.testing.assert_allclose(back.score_samples(X), model.score_samples(X), rtol=1e-12)
    np.testing.assert_array_equal(
        back.sample(50, random_state=3)[0], model.sample(50, random_state=3)[0]
    )


def test_ic_methods_are_the_chosen_models(fitted):
    ic = fitted["ic"]
    best = ic.best_estimator_
    assert (ic.n_components_, ic.covariance_type_) == (best.n_components, best.covariance_type)
    for method in ("predict", "predict_proba", "score_samples", "score", "bic", "aic"):
        np.testing.assert_array_equal(getattr(ic, method)(X), getattr(best, method)(X))
    table = ic.criterion_
    assert isinstance(table, np.ndarray) and table.dtype.names is not None
    chosen = (table["covariance_type"] == ic.covariance_type_) & (
        table["n_components"] == ic.n_components_
    )
    assert chosen.sum() == 1
    np.testing.assert_allclose(table["bic"][chosen][0], best.bic(X), rtol=1e-9)
    assert table["bic"][chosen][0] == np.min(table["bic"][~table["degenerate"]])


def test_get_and_set_params_round_trip(fitted):
    for model in fitted.values():
        params = model.get_params()
        clone = type(model)().set_params(**params)
        assert clone.get_params().keys() == params.keys()
