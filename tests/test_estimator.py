"""jaxgmm.GaussianMixture against sklearn.mixture.GaussianMixture: same contract."""

import pickle
import re
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import COV_TYPES, blobs, sklearn_init
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.mixture import GaussianMixture as SkGM
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import parametrize_with_checks

import jaxgmm
from jaxgmm import GaussianMixture
from jaxgmm._families import FAMILIES

FITTED = ["weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"]


# Every scikit-learn estimator check runs; scikit-learn itself skips
# check_array_api_input unless SCIPY_ARRAY_API is set (jaxgmm takes numpy or JAX arrays,
# not array-API dispatch).
@parametrize_with_checks([GaussianMixture(), GaussianMixture(covariance_type="diag")])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_constructor_matches_sklearn():
    import inspect

    ours = inspect.signature(GaussianMixture.__init__).parameters
    theirs = inspect.signature(SkGM.__init__).parameters
    assert [(p.name, p.kind, p.default) for p in ours.values()] == [
        (p.name, p.kind, p.default) for p in theirs.values()
    ]


@pytest.mark.parametrize("covariance_type", COV_TYPES)
@pytest.mark.parametrize("max_iter", [3, 100])
def test_same_fit_as_sklearn_from_same_start(covariance_type, max_iter):
    x, _ = blobs(n=300, d=3, k=3, seed=11)
    w0, m0, p0 = sklearn_init(x, 3, covariance_type, seed=2)
    kw = dict(
        covariance_type=covariance_type,
        weights_init=w0,
        means_init=m0,
        precisions_init=p0,
        max_iter=max_iter,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = SkGM(3, **kw).fit(x)
        ours = GaussianMixture(3, **kw).fit(x)
    for name in FITTED:
        a, b = getattr(ours, name), getattr(ref, name)
        assert isinstance(a, np.ndarray) and a.shape == b.shape and a.dtype == b.dtype, name
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-12, err_msg=name)
    assert ours.n_iter_ == ref.n_iter_ and ours.converged_ == ref.converged_
    np.testing.assert_allclose(ours.lower_bound_, ref.lower_bound_, rtol=1e-8)
    np.testing.assert_allclose(ours.lower_bounds_, ref.lower_bounds_, rtol=1e-8)
    assert isinstance(ours.lower_bounds_, list) and isinstance(ours.lower_bound_, float)
    np.testing.assert_allclose(ours.score_samples(x), ref.score_samples(x), rtol=1e-8)
    np.testing.assert_allclose(ours.predict_proba(x), ref.predict_proba(x), atol=1e-8)
    np.testing.assert_array_equal(ours.predict(x), ref.predict(x))
    np.testing.assert_allclose(ours.bic(x), ref.bic(x), rtol=1e-8)
    np.testing.assert_allclose(ours.aic(x), ref.aic(x), rtol=1e-8)
    assert ours._n_parameters() == ref._n_parameters()


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, bool])
def test_dtypes(dtype):
    x, _ = blobs(n=200, d=2, k=2, seed=3)
    x = (x > 0) if dtype is bool else x.astype(dtype)
    gm = GaussianMixture(2, random_state=0, reg_covar=1e-3).fit(x)
    expected = np.float32 if dtype == np.float32 else np.float64
    for name in FITTED:
        assert getattr(gm, name).dtype == expected, name
    assert gm.score_samples(x).dtype == expected
    assert gm.predict_proba(x).dtype == expected
    assert gm.predict(x).shape == (200,)


def test_fit_predict_equals_fit_then_predict_even_unconverged():
    x, _ = blobs(n=200, d=2, k=3, seed=4)
    for max_iter in (1, 2, 100):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            a = GaussianMixture(3, max_iter=max_iter, random_state=1).fit_predict(x)
            b = GaussianMixture(3, max_iter=max_iter, random_state=1).fit(x).predict(x)
        np.testing.assert_array_equal(a, b)


def test_convergence_warning_like_sklearn():
    x, _ = blobs(n=100, d=2, k=2)
    msg = "Best performing initialization did not converge"
    with pytest.warns(ConvergenceWarning, match=msg):
        GaussianMixture(2, max_iter=1, random_state=0).fit(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gm = GaussianMixture(2, max_iter=0, random_state=0).fit(x)  # no warning
    assert gm.n_iter_ == 0 and gm.lower_bound_ == -np.inf and gm.lower_bounds_ == []


def test_warm_start_continues_exactly():
    x, _ = blobs(n=300, d=2, k=3, seed=6)
    w0, m0, p0 = sklearn_init(x, 3, "full", seed=6)
    kw = dict(weights_init=w0, means_init=m0, precisions_init=p0, tol=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        whole = GaussianMixture(3, max_iter=10, **kw).fit(x)
        warm = GaussianMixture(3, max_iter=4, warm_start=True, **kw).fit(x)
        warm.set_params(max_iter=6).fit(x)
        ref = SkGM(3, max_iter=4, warm_start=True, **kw).fit(x)
        ref.set_params(max_iter=6).fit(x)
    for name in FITTED:
        np.testing.assert_allclose(getattr(warm, name), getattr(whole, name), rtol=1e-9)
        np.testing.assert_allclose(getattr(warm, name), getattr(ref, name), rtol=1e-6)
    assert warm.n_iter_ == ref.n_iter_ == 6
    np.testing.assert_allclose(warm.lower_bounds_, ref.lower_bounds_, rtol=1e-8)


def test_verbose_output_like_sklearn(capsys):
    x, _ = blobs(n=100, d=2, k=2)
    kw = dict(max_iter=20, tol=0.0, random_state=0, verbose_interval=5)
    for verbose in (1, 2):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            GaussianMixture(2, verbose=verbose, **kw).fit(x)
            ours = capsys.readouterr().out
            SkGM(2, verbose=verbose, **kw).fit(x)
            ref = capsys.readouterr().out
        strip = lambda s: re.sub(r"[-\d.]+", "#", s)
        assert strip(ours) == strip(ref)


def test_restarts_parallel_first_equals_single_and_never_worse():
    x, _ = jaxgmm.make_seed_blobs(4)
    one = GaussianMixture(4, n_init=1, random_state=3, init_params="random").fit(x)
    many = GaussianMixture(4, n_init=8, random_state=3, init_params="random").fit(x)
    assert many.lower_bound_ >= one.lower_bound_
    first = jaxgmm.fit_restarts(jaxgmm._base.key_from(3), x, 4, n_init=8, init_params="random")
    np.testing.assert_allclose(first.params.means[0], one.means_, rtol=1e-9)


def test_same_seed_same_result_run_to_run():
    x, _ = blobs(n=150, d=3, k=3, seed=8)
    a = GaussianMixture(3, n_init=3, random_state=5).fit(x)
    b = GaussianMixture(3, n_init=3, random_state=5).fit(x)
    for name in FITTED:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def _both(fit_or_call, *args, **kwargs):
    """Run the same failing call on ours and sklearn's; return both exceptions."""
    errors = []
    for cls in (GaussianMixture, SkGM):
        with pytest.raises(Exception) as info:
            fit_or_call(cls, *args, **kwargs)
        errors.append(info.value)
    return errors


X_OK = blobs(n=50, d=2, k=2)[0]
BAD_X = {
    "nan": np.where(np.arange(100).reshape(50, 2) == 7, np.nan, X_OK),
    "inf": np.where(np.arange(100).reshape(50, 2) == 7, np.inf, X_OK),
    "1d": X_OK[:, 0],
    "3d": X_OK.reshape(50, 2, 1),
    "empty": np.empty((0, 2)),
    "one sample": X_OK[:1],
    "too few for k": X_OK[:2],
    "sparse": sp.csr_matrix(X_OK),
    "complex": X_OK + 1j,
    "strings": np.array([["a", "b"]] * 5),
    "object": np.array([[object(), 1.0]] * 5, dtype=object),
}


@pytest.mark.parametrize("case", sorted(BAD_X))
def test_bad_input_same_errors_as_sklearn(case):
    x = BAD_X[case]
    ours, ref = _both(lambda cls: cls(3).fit(x))
    assert type(ours) is type(ref)
    assert str(ours) == str(ref)


BAD_INIT = {
    "weights shape": dict(weights_init=np.full(3, 1 / 3)),
    "weights not normalised": dict(weights_init=np.array([0.5, 0.6])),
    "weights negative": dict(weights_init=np.array([1.5, -0.5])),
    "means shape": dict(means_init=np.zeros((2, 3))),
    "precisions shape": dict(precisions_init=np.stack([np.eye(3)] * 2)),
    "precisions not pd": dict(precisions_init=np.stack([np.eye(2), -np.eye(2)])),
    "precisions not symmetric": dict(precisions_init=np.stack([np.eye(2), [[1, 0.5], [0, 1]]])),
    "diag precisions negative": dict(covariance_type="diag", precisions_init=-np.ones((2, 2))),
    "bad covariance_type": dict(covariance_type="banana"),
    "bad n_components": dict(n_components=0),
    "bad tol": dict(tol=-1.0),
    "bad init_params": dict(init_params="zeros"),
    "bad max_iter": dict(max_iter=-1),
    "ill-defined covariance": dict(reg_covar=0.0, means_init=X_OK[:2] * 0 + [[0, 0], [100, 100]]),
}


@pytest.mark.parametrize("case", sorted(BAD_INIT))
def test_bad_parameters_same_errors_as_sklearn(case):
    kw = {"n_components": 2, "random_state": 0, **BAD_INIT[case]}
    x = X_OK
    if case == "ill-defined covariance":
        x = np.vstack([X_OK, [[100.0, 100.0]]])
    ours, ref = _both(lambda cls: cls(**kw).fit(x))
    assert type(ours) is type(ref)
    # the options of a StrOptions are a set: its printed order varies between runs
    options = lambda e: re.sub(r"\{[^}]*\}", lambda m: str(sorted(m[0][1:-1].split(", "))), str(e))
    expected = options(ref)
    if case == "bad covariance_type":  # scikit-learn's four, and mclust's 14 families
        four = [f"'{n}'" for n in ("diag", "full", "spherical", "tied")]
        every = sorted([*four, *(f"'{n}'" for n in FAMILIES)])
        expected = expected.replace(str(four), str(every))
    assert options(ours) == expected
    if case.startswith("bad "):
        assert isinstance(ours, InvalidParameterError)


def test_unfitted_and_wrong_features_errors():
    for method in ("predict", "predict_proba", "score", "score_samples"):
        with pytest.raises(NotFittedError):
            getattr(GaussianMixture(2), method)(X_OK)
    with pytest.raises(NotFittedError):
        GaussianMixture(2).sample(3)
    ours = GaussianMixture(2, random_state=0).fit(X_OK)
    ref = SkGM(2, random_state=0).fit(X_OK)
    for method in ("predict", "score_samples"):
        errors = []
        for gm in (ours, ref):
            with pytest.raises(ValueError) as info:
                getattr(gm, method)(np.ones((4, 3)))
            errors.append(str(info.value).replace("SkGM", "GaussianMixture"))
        assert errors[0] == errors[1]
    with pytest.raises(ValueError, match="n_samples"):
        ours.sample(0)


def test_inputs_and_estimator_not_modified():
    x, _ = blobs(n=120, d=2, k=2)
    x_copy = x.copy()
    w0, m0, p0 = sklearn_init(x, 2, "full")
    inits = [a.copy() for a in (w0, m0, p0)]
    sw = np.ones(len(x))
    gm = GaussianMixture(2, weights_init=w0, means_init=m0, precisions_init=p0).fit(
        x, sample_weight=sw
    )
    np.testing.assert_array_equal(x, x_copy)
    for a, b in zip((w0, m0, p0), inits, strict=True):
        np.testing.assert_array_equal(a, b)
    assert gm.weights_init is w0
    state = pickle.dumps(gm.__dict__)
    gm.predict(x), gm.predict_proba(x), gm.score(x), gm.score_samples(x), gm.sample(5)
    assert pickle.dumps(gm.__dict__) == state


def test_clone_pipeline_gridsearch_pickle():
    x, _ = blobs(n=200, d=2, k=3, seed=2)
    gm = GaussianMixture(3, random_state=0)
    assert clone(gm).get_params() == gm.get_params()
    pipe = make_pipeline(StandardScaler(), GaussianMixture(3, random_state=0)).fit(x)
    assert pipe.predict(x).shape == (200,)
    grid = GridSearchCV(
        GaussianMixture(random_state=0),
        {"n_components": [1, 3], "covariance_type": ["full", "diag"]},
        cv=3,
    ).fit(x)
    assert grid.best_params_["n_components"] == 3
    fitted = GaussianMixture(3, random_state=0).fit(x)
    back = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(back.predict_proba(x), fitted.predict_proba(x))


def test_feature_names_from_dataframe():
    pd = pytest.importorskip("pandas")
    x, _ = blobs(n=100, d=2, k=2)
    df = pd.DataFrame(x, columns=["a", "b"])
    gm = GaussianMixture(2, random_state=0).fit(df)
    np.testing.assert_array_equal(gm.feature_names_in_, ["a", "b"])
    assert gm.predict(df).shape == (100,)


# --- beyond scikit-learn ------------------------------------------------------------


@pytest.mark.parametrize("covariance_type", COV_TYPES)
@pytest.mark.parametrize("init_params", ["given", "kmeans", "k-means++"])
def test_integer_weights_equal_repeated_rows(covariance_type, init_params):
    x, _ = blobs(n=80, d=2, k=3, seed=12)
    counts = np.random.default_rng(0).integers(0, 4, size=len(x))
    counts[:3] = [1, 2, 3]
    repeated = np.repeat(x, counts, axis=0)
    kw = dict(covariance_type=covariance_type, random_state=0, tol=1e-10, max_iter=50)
    if init_params == "given":
        w0, m0, p0 = sklearn_init(x, 3, covariance_type, seed=1)
        kw.update(weights_init=w0, means_init=m0, precisions_init=p0)
    else:
        kw.update(init_params=init_params)
    weighted = GaussianMixture(3, **kw).fit(x, sample_weight=counts.astype(float))
    plain = GaussianMixture(3, **kw).fit(repeated)
    for name in FITTED:
        np.testing.assert_allclose(
            getattr(weighted, name), getattr(plain, name), rtol=1e-7, atol=1e-10, err_msg=name
        )
    assert weighted.n_iter_ == plain.n_iter_
    np.testing.assert_allclose(weighted.lower_bound_, plain.lower_bound_, rtol=1e-10)


@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random_from_data", "random"])
def test_zero_weights_are_dropped_rows(init_params):
    x, _ = blobs(n=90, d=2, k=3, seed=13)
    keep = np.arange(len(x)) % 3 != 0
    kw = dict(init_params=init_params, random_state=0, tol=1e-8, max_iter=200)
    if init_params in ("random", "random_from_data"):
        # these draw one number per row, so only a fit from given starting
        # parameters can be compared; k-means draws by weight and is exact
        w0, m0, p0 = sklearn_init(x, 3, "full", seed=3)
        kw.update(weights_init=w0, means_init=m0, precisions_init=p0)
    weighted = GaussianMixture(3, **kw).fit(x, sample_weight=keep.astype(float))
    dropped = GaussianMixture(3, **kw).fit(x[keep])
    for name in FITTED:
        np.testing.assert_allclose(
            getattr(weighted, name), getattr(dropped, name), rtol=1e-7, atol=1e-10, err_msg=name
        )


def test_zero_weight_rows_never_start_a_component():
    x, _ = blobs(n=60, d=2, k=2, seed=1)
    w = np.zeros(len(x))
    w[:10] = 1.0
    for init_params in ("kmeans", "k-means++", "random_from_data"):
        gm = GaussianMixture(2, init_params=init_params, max_iter=0, random_state=0)
        gm.fit(x, sample_weight=w)
        d = np.abs(gm.means_[:, None, :] - x[None, 10:, :]).sum(-1)
        assert np.all(d.min(1) > 0) or init_params == "kmeans"
        assert np.all(np.isfinite(gm.means_))


@pytest.mark.parametrize(
    "weights, match",
    [
        (-np.ones(50), "Negative values in data passed to `sample_weight`"),
        (np.full(50, np.nan), "NaN"),
        (np.full(50, np.inf), "infinity"),
        (np.ones(49), "sample_weight.shape"),
        (np.r_[1.0, np.zeros(49)], "positive values"),
    ],
)
def test_bad_sample_weight(weights, match):
    with pytest.raises(ValueError, match=match):
        GaussianMixture(2).fit(X_OK, sample_weight=weights)


def test_sample_with_per_call_seed_or_key():
    import jax

    gm = GaussianMixture(2, random_state=0).fit(X_OK)
    a, ya = gm.sample(500, random_state=1)
    b, _ = gm.sample(500, random_state=1)
    c, _ = gm.sample(500, random_state=jax.random.key(1))
    d, _ = gm.sample(500)
    e, _ = gm.sample(500)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(d, e)  # estimator's int seed: same draw, as sklearn
    assert not np.array_equal(a, d)
    assert c.shape == (500, 2) and ya.dtype == np.int64 and np.all(np.diff(ya) >= 0)
    np.testing.assert_allclose(np.bincount(ya) / 500, gm.weights_, atol=0.08)
    for k in range(2):
        np.testing.assert_allclose(a[ya == k].mean(0), gm.means_[k], atol=0.3)


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_save_load_round_trip(tmp_path, covariance_type):
    x, _ = blobs(n=100, d=3, k=2)
    gm = GaussianMixture(2, covariance_type=covariance_type, random_state=0).fit(x)
    path = tmp_path / "model.jgmm"
    gm.save(path)
    back = jaxgmm.load(path)
    assert type(back) is GaussianMixture and back.get_params() == gm.get_params()
    np.testing.assert_array_equal(back.predict_proba(x), gm.predict_proba(x))
    np.testing.assert_array_equal(back.score_samples(x), gm.score_samples(x))
    for name in [*FITTED, "n_iter_", "converged_", "lower_bound_", "lower_bounds_"]:
        np.testing.assert_array_equal(getattr(back, name), getattr(gm, name))
    assert not list(tmp_path.glob("*.tmp"))


def test_save_load_keeps_init_arrays_and_feature_names(tmp_path):
    pd = pytest.importorskip("pandas")
    x, _ = blobs(n=100, d=2, k=2)
    w0, m0, p0 = sklearn_init(x, 2, "diag")
    gm = GaussianMixture(
        2, covariance_type="diag", weights_init=w0, means_init=m0, precisions_init=p0
    ).fit(pd.DataFrame(x, columns=["u", "v"]))
    gm.save(tmp_path / "m")
    back = jaxgmm.load(tmp_path / "m")
    np.testing.assert_array_equal(back.means_init, m0)
    np.testing.assert_array_equal(back.feature_names_in_, ["u", "v"])
    assert back.random_state is None


def test_load_errors_name_the_file(tmp_path):
    gm = GaussianMixture(2, random_state=0).fit(X_OK)
    good = tmp_path / "good.jgmm"
    gm.save(good)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.jgmm"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.jgmm"
    garbage.write_bytes(b"this is not a model")
    for bad in (truncated, garbage):
        with pytest.raises(ValueError, match=re.escape(str(bad))):
            jaxgmm.load(bad)
    other = tmp_path / "other.npz"
    np.savez(other, a=np.zeros(3))
    with pytest.raises(ValueError, match="not a jaxgmm model"):
        jaxgmm.load(other)
    with pytest.raises(FileNotFoundError):
        jaxgmm.load(tmp_path / "missing.jgmm")

    import json

    future = tmp_path / "future.jgmm"
    with np.load(good) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(str(arrays["__metadata__"]))
    meta["format_version"] = jaxgmm._io.FORMAT_VERSION + 1
    arrays["__metadata__"] = np.array(json.dumps(meta))
    with open(future, "wb") as f:
        np.savez(f, **arrays)
    with pytest.raises(ValueError, match=r"future\.jgmm.*newer jaxgmm"):
        jaxgmm.load(future)


def test_compilation_cache_opt_in_path_and_off(tmp_path):
    import os
    import subprocess
    import sys

    script = (
        "import jax, numpy as np, jaxgmm\n"
        "x = np.random.default_rng(0).normal(size=(60, 2))\n"
        "jaxgmm.GaussianMixture(2, random_state=0).fit(x)\n"
        "print(jax.config.jax_compilation_cache_dir)\n"
        "jaxgmm.enable_compilation_cache()\n"
        # JAX keeps only programs that took a second to compile, unless told
        "jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)\n"
        "jaxgmm.GaussianMixture(2, random_state=0).fit(x[:, :1])  # a new program\n"
        "print(jax.config.jax_compilation_cache_dir)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "JAXGMM_CACHE_DIR"}
    home = dict(env, XDG_CACHE_HOME=str(tmp_path / "xdg"))
    untouched = subprocess.run(
        [sys.executable, "-c", script], env=home, capture_output=True, text=True, check=True
    ).stdout.split()[-2]
    assert untouched == "None"  # a fit alone never sets JAX's global cache
    out = subprocess.run(
        [sys.executable, "-c", script], env=home, capture_output=True, text=True, check=True
    ).stdout.split()[-1]
    assert out == str(tmp_path / "xdg" / "jaxgmm" / "xla")
    assert any((tmp_path / "xdg" / "jaxgmm" / "xla").iterdir())
    chosen = dict(env, JAXGMM_CACHE_DIR=str(tmp_path / "mine"))
    out = subprocess.run(
        [sys.executable, "-c", script], env=chosen, capture_output=True, text=True, check=True
    ).stdout.split()[-1]
    assert out == str(tmp_path / "mine")
    off = dict(env, JAXGMM_CACHE_DIR="off")
    out = subprocess.run(
        [sys.executable, "-c", script], env=off, capture_output=True, text=True, check=True
    ).stdout.split()[-1]
    assert out == "None"
