"""The model-selection sweep: one padded, masked program per covariance type."""

import jax
import numpy as np
import pytest
from conftest import SHUFFLED_WEIGHTS, blobs
from sklearn.mixture import GaussianMixture as SkGM
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import parametrize_with_checks

import jaxgmm
from jaxgmm import GaussianMixture, GaussianMixtureIC


@pytest.mark.parametrize(
    "covariance_type, init_params",
    [
        ("full", "kmeans"),
        ("tied", "k-means++"),
        ("diag", "random"),
        ("spherical", "random_from_data"),
    ],
)
def test_masked_fit_equals_plain_fit_from_same_key(covariance_type, init_params):
    x, _ = blobs(n=150, d=2, k=3, seed=21)
    key = jax.random.key(4)
    kw = dict(n_init=2, init_params=init_params, tol=1e-6, max_iter=60)
    # min_component_samples=0: keep the highest-likelihood restart, as fit() does
    # hierarchical_start=False: the k-means restarts alone, as fit() runs them
    result = jaxgmm.sweep(
        key,
        x,
        [1, 2, 3, 5],
        [covariance_type],
        min_component_samples=0,
        hierarchical_start=False,
        **kw,
    )
    for row, k in enumerate(result.table["n_components"]):
        plain = jaxgmm.fit(key, x, int(k), covariance_type=covariance_type, **kw)
        masked = result.params[row]
        assert int(plain.n_iter) == result.table["n_iter"][row]
        np.testing.assert_allclose(masked.weights, plain.params.weights, rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(masked.means, plain.params.means, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(
            masked.covariance.covariances, plain.params.covariance.covariances, rtol=1e-8
        )
        np.testing.assert_allclose(
            result.table["lower_bound"][row], float(plain.lower_bound), rtol=1e-10
        )


def test_criteria_equal_sklearn_definitions():
    x, _ = blobs(n=200, d=3, k=2, seed=5)
    result = jaxgmm.sweep(jax.random.key(0), x, [1, 2, 3], ["full", "diag"], n_init=2)
    for row, params in enumerate(result.params):
        cov = result.table["covariance_type"][row]
        sk = SkGM(len(params.weights), covariance_type=cov)
        sk.weights_, sk.means_ = np.asarray(params.weights), np.asarray(params.means)
        sk.covariances_ = np.asarray(params.covariance.covariances)
        sk.precisions_cholesky_ = np.asarray(params.covariance.precisions_cholesky)
        np.testing.assert_allclose(result.table["bic"][row], sk.bic(x), rtol=1e-10)
        np.testing.assert_allclose(result.table["aic"][row], sk.aic(x), rtol=1e-10)
        resp = sk.predict_proba(x)
        entropy = -np.sum(resp * np.log(np.where(resp > 0, resp, 1)))
        np.testing.assert_allclose(result.table["icl"][row], sk.bic(x) + 2 * entropy, rtol=1e-8)
        assert result.table["n_parameters"][row] == sk._n_parameters()


def test_sweep_picks_four_on_seed_data_and_table_forms():
    x, _ = jaxgmm.make_seed_blobs(0)
    result = jaxgmm.sweep(jax.random.key(0), x)  # mclust's 14 families, K = 1..8
    assert len(result.table["bic"]) == 112
    assert result.table["n_components"][result.best] == 4
    assert result.best == int(np.argmin(result.table["bic"]))
    # mclust 6.0.0 chooses EII, K=4, BIC 881.8 on these data (issue 13)
    assert result.table["family"][result.best] == "EII"
    assert abs(result.table["bic"][result.best] - 881.8) < 0.05
    records = result.to_records()
    assert records.shape == (112,) and "icl" in records.dtype.names
    pd = pytest.importorskip("pandas")
    assert isinstance(result.to_dataframe(), pd.DataFrame)
    with pytest.raises(ValueError, match="criterion"):
        jaxgmm.sweep(jax.random.key(0), x, criterion="xyz")


def test_degenerate_fits_are_not_chosen():
    # make_blobs seed 9: the highest-likelihood spherical K=5 restart puts a component
    # on a single point (a spike held finite by reg_covar), and its BIC beats K=4.
    x, _ = jaxgmm.make_seed_blobs(9)
    types = ("full", "tied", "diag", "spherical")
    spiky = jaxgmm.sweep(jax.random.key(0), x, covariance_types=types, min_component_samples=0)
    assert spiky.table["n_components"][spiky.best] == 5
    assert spiky.table["smallest_component"][spiky.best] < 1.5
    assert not spiky.table["degenerate"].any()
    result = jaxgmm.sweep(jax.random.key(0), x, covariance_types=types)  # 'auto': 3 samples
    assert result.table["n_components"][result.best] == 4
    assert not result.table["degenerate"][result.best]
    sound = ~result.table["degenerate"]
    assert (result.table["smallest_component"][sound] >= 3).all()
    # a row's restart changes only where the best one was degenerate
    changed = result.table["lower_bound"] != spiky.table["lower_bound"]
    assert (spiky.table["smallest_component"][changed] < 3).all() and changed.any()
    with pytest.raises(ValueError, match="min_component_samples"):
        jaxgmm.sweep(jax.random.key(0), x, min_component_samples=-1)


# --- GaussianMixtureIC ---------------------------------------------------------------


@parametrize_with_checks(
    [GaussianMixtureIC(n_components=2, covariance_type="diag", n_init=1)],
    expected_failed_checks=lambda est: {
        "check_sample_weight_equivalence_on_dense_data": SHUFFLED_WEIGHTS
    },
)
def test_sklearn_estimator_checks_ic(estimator, check):
    check(estimator)


def test_ic_chooses_and_delegates():
    x, _ = jaxgmm.make_seed_blobs(0)
    ic = GaussianMixtureIC(random_state=0).fit(x)
    assert ic.n_components_ == 4 and ic.covariance_type_ in jaxgmm._families.FAMILIES
    best = ic.best_estimator_
    assert isinstance(best, GaussianMixture)
    assert best.n_components == 4 and best.covariance_type == ic.covariance_type_
    table = {k: ic.criterion_[k] for k in ic.criterion_.dtype.names}
    assert len(table["bic"]) == 14 * 8  # mclust's 14 families, K = 1..8
    np.testing.assert_allclose(ic.bic(x), table["bic"].min(), rtol=1e-9)
    np.testing.assert_array_equal(ic.predict(x), best.predict(x))
    np.testing.assert_allclose(ic.predict_proba(x), best.predict_proba(x))
    np.testing.assert_allclose(ic.score_samples(x), best.score_samples(x))
    assert ic.score(x) == best.score(x) and ic.aic(x) == best.aic(x)
    assert ic.sample(10, random_state=0)[0].shape == (10, 2)
    # without the hierarchical start, the chosen model equals a plain fit of that K and
    # type from the same seed
    ic = GaussianMixtureIC(random_state=0, hierarchical_start=False).fit(x)
    best = ic.best_estimator_
    assert table["bic"].min() <= ic.criterion_["bic"].min() + 1e-9  # one start more
    plain = GaussianMixture(4, covariance_type=ic.covariance_type_, n_init=5, random_state=0).fit(x)
    # Restarts that reach one optimum tie to ~1e-13 and may list its components in
    # another order (as in test_sharding.py): compare the components, in one order.
    order = lambda m: np.lexsort(m.means_.T[::-1])
    a, b = order(best), order(plain)
    np.testing.assert_allclose(best.means_[a], plain.means_[b], rtol=1e-8)
    np.testing.assert_allclose(best.weights_[a], plain.weights_[b], rtol=1e-8)
    np.testing.assert_allclose(best.lower_bound_, plain.lower_bound_, rtol=1e-10)


@pytest.mark.parametrize(
    "kwargs, error",
    [
        (dict(criterion="xyz"), InvalidParameterError),
        (dict(covariance_type="banana"), InvalidParameterError),
        (dict(covariance_type=["full", "banana"]), ValueError),
        (dict(n_components=[0, 2]), ValueError),
        (dict(n_components=0), InvalidParameterError),
        (dict(n_components=200), ValueError),
        (dict(min_component_samples=-1), InvalidParameterError),
    ],
)
def test_ic_bad_parameters(kwargs, error):
    x, _ = blobs(n=100, d=2, k=2)
    with pytest.raises(error):
        GaussianMixtureIC(**kwargs).fit(x)


def test_ic_list_of_components_and_types():
    x, _ = blobs(n=200, d=2, k=3, seed=2)
    ic = GaussianMixtureIC(
        [2, 3, 4], covariance_type=["diag", "full"], criterion="icl", n_init=2, random_state=0
    ).fit(x)
    table = {k: ic.criterion_[k] for k in ic.criterion_.dtype.names}
    assert sorted(set(table["covariance_type"])) == ["diag", "full"]
    assert sorted(set(table["n_components"].tolist())) == [2, 3, 4]
    assert ic.n_components_ == 3
