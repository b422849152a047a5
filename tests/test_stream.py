"""Streamed EM over data sources (jaxgmm.data): the in-memory fit's answers, read in
chunks that need not align with anything."""

import jax
import numpy as np
import pytest
from conftest import COV_TYPES
from sklearn.datasets import make_blobs
from sklearn.mixture import GaussianMixture as SkGM

import jaxgmm
from jaxgmm import _stream, data


def rows(n=3000, d=3, seed=0):
    return make_blobs(n, d, centers=4, cluster_std=[1.0, 2.0, 0.5, 1.5], random_state=seed)[0]


def start(x, covariance_type, k=4):
    """Starting parameters a little off scikit-learn's one-step fit."""
    sk = SkGM(k, covariance_type=covariance_type, max_iter=1, random_state=0)
    with pytest.warns(Warning):
        sk.fit(x)
    return dict(
        weights_init=sk.weights_, means_init=sk.means_ + 0.3, precisions_init=sk.precisions_
    )


def assert_same_fit(streamed, in_memory, rtol=1e-10):
    """Same iterations and status; parameters equal to rounding."""
    assert int(streamed.n_iter) == int(in_memory.n_iter)
    assert int(streamed.status) == int(in_memory.status)
    a, b = streamed.params, in_memory.params
    np.testing.assert_allclose(a.weights, b.weights, rtol=rtol)
    np.testing.assert_allclose(a.means, b.means, rtol=rtol, atol=rtol * np.abs(b.means).max())
    cov, ref = np.asarray(a.covariance.covariances), np.asarray(b.covariance.covariances)
    np.testing.assert_allclose(cov, ref, rtol=rtol, atol=rtol * np.abs(ref).max())
    np.testing.assert_allclose(float(streamed.lower_bound), float(in_memory.lower_bound), rtol=rtol)


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_npy_source_equals_the_in_memory_fit(covariance_type, tmp_path, monkeypatch):
    x = rows()
    np.save(tmp_path / "x.npy", x)
    kw = dict(covariance_type=covariance_type, tol=1e-8, **start(x, covariance_type))
    in_memory = jaxgmm.fit(jax.random.key(0), x, 4, **kw)
    # 700-row chunks of 64-row blocks: ragged within and at the end
    monkeypatch.setattr(_stream, "CHUNK_BYTES", 11 * 64 * x.shape[1] * 8)
    streamed = jaxgmm.fit(jax.random.key(0), tmp_path / "x.npy", 4, **kw)
    assert_same_fit(streamed, in_memory)
    again = jaxgmm.fit(jax.random.key(0), tmp_path / "x.npy", 4, **kw)  # bit for bit
    leaves = jax.tree_util.tree_leaves((again, streamed))
    for a, b in zip(leaves[: len(leaves) // 2], leaves[len(leaves) // 2 :], strict=True):
        np.testing.assert_array_equal(a, b)


def test_parquet_files_with_a_weight_column_equal_weighted_rows(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    x = rows(n=2000, d=2, seed=3)
    w = np.random.default_rng(0).integers(0, 4, len(x)).astype(float)
    (tmp_path / "parts").mkdir()
    for i, part in enumerate(np.array_split(np.arange(len(x)), 3)):  # 667, 667, 666 rows
        table = pa.table(
            {"label": [f"r{j}" for j in part], "a": x[part, 0], "b": x[part, 1], "w": w[part]}
        )
        pq.write_table(table, tmp_path / "parts" / f"{i}.parquet", row_group_size=123)
    source = data.ParquetSource(tmp_path / "parts", columns=["a", "b"], weight="w")
    assert (source.n_rows, source.n_features) == (2000, 2)
    kw = dict(covariance_type="full", tol=1e-8, **start(x, "full"))
    in_memory = jaxgmm.fit(jax.random.key(0), x, 4, sample_weight=w, **kw)
    assert_same_fit(jaxgmm.fit(jax.random.key(0), source, 4, **kw), in_memory)


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_far_and_tight_data_takes_the_exact_pass_and_stays_exact(covariance_type, monkeypatch):
    rng = np.random.default_rng(1)
    # a component of std 1e-7 three units from the rows' centre: its raw moments
    # would cancel to noise
    x = 1e6 + np.concatenate([rng.normal(size=(600, 2)) * 1e-7, 5 + rng.normal(size=(400, 2))])
    kw = dict(covariance_type=covariance_type, tol=1e-10, max_iter=20, reg_covar=1e-20)
    kw |= dict(means_init=[[1e6, 1e6], [1e6 + 5, 1e6 + 5]], weights_init=[0.5, 0.5])
    in_memory = jaxgmm.fit(jax.random.key(0), x, 2, **kw)
    calls = []
    centred = _stream._chunk_centred
    monkeypatch.setattr(
        _stream, "_chunk_centred", lambda *a: calls.append(1) or centred(*a), raising=True
    )
    streamed = jaxgmm.fit(jax.random.key(0), data.ArraySource(x), 2, **kw)
    assert calls, "the exact second pass was never taken"
    assert_same_fit(streamed, in_memory, rtol=1e-9)
    np.testing.assert_allclose(
        np.asarray(streamed.params.covariance.covariances)[0].ravel()[0], 1e-14, rtol=0.2
    )


def test_the_initial_sample_does_not_depend_on_the_chunking(monkeypatch):
    x = rows(n=3000, d=2, seed=4)
    monkeypatch.setattr(_stream, "SAMPLE_ROWS", 500)  # a sample of about a sixth
    fits = []
    for chunk_bytes in (2048, 7 * 2048):  # chunks of 128 and 896 rows
        monkeypatch.setattr(_stream, "CHUNK_BYTES", chunk_bytes)
        fits.append(jaxgmm.fit_restarts(jax.random.key(2), data.ArraySource(x), 4, n_init=2))
    assert_same_fit(
        jax.tree_util.tree_map(lambda a: a[1], fits[0]),
        jax.tree_util.tree_map(lambda a: a[1], fits[1]),
    )
    # and the sample is not the data: another key starts elsewhere
    other = jaxgmm.fit_restarts(jax.random.key(3), data.ArraySource(x), 4, n_init=2)
    assert not np.allclose(other.params.means, fits[0].params.means)


def test_the_kmeans_start_refines_the_samples_centres_with_passes_over_all_rows(monkeypatch):
    """k-means on a tenth of the rows, then Lloyd passes over all of them: the start is
    the in-memory k-means start (the same partition), not the sample's (0.11 off)."""
    x = make_blobs(3000, 2, centers=4, cluster_std=0.7, random_state=3)[0]
    monkeypatch.setattr(_stream, "SAMPLE_ROWS", 300)
    streamed = jaxgmm.fit(jax.random.key(0), data.ArraySource(x), 4, max_iter=0)
    in_memory = jaxgmm.fit(jax.random.key(0), x, 4, max_iter=0)
    order = lambda r: np.lexsort(np.asarray(r.params.means).T)
    a, b = order(streamed), order(in_memory)
    np.testing.assert_allclose(streamed.params.means[a], in_memory.params.means[b], rtol=1e-12)
    np.testing.assert_allclose(streamed.params.weights[a], in_memory.params.weights[b], rtol=1e-12)
    cov = in_memory.params.covariance.covariances[b]
    np.testing.assert_allclose(streamed.params.covariance.covariances[a], cov, rtol=1e-10)


def test_a_sample_that_misses_every_weighted_row_takes_the_weighted_ones(monkeypatch):
    x = rows(n=2000, d=2, seed=6)
    w = np.zeros(2000)
    w[[10, 900, 1999]] = [1.0, 2.0, 1.0]
    monkeypatch.setattr(_stream, "SAMPLE_ROWS", 20)  # keeps ~1% of rows: none weighted
    res = jaxgmm.fit(jax.random.key(0), data.ArraySource(x, w), 1, max_iter=3)
    np.testing.assert_allclose(res.params.means[0], (w @ x) / w.sum(), rtol=1e-12)


def test_every_restart_is_fitted_in_one_pass_each_iteration(monkeypatch):
    x = rows(n=1000, d=2, seed=5)
    passes = []
    original = _stream._pass
    monkeypatch.setattr(_stream, "_pass", lambda *a: passes.append(1) or original(*a))
    res = jaxgmm.fit_restarts(jax.random.key(0), data.ArraySource(x), 3, n_init=4, max_iter=5)
    assert res.lower_bound.shape == (4,)
    # no risky step on these data; the start: one Lloyd pass over all rows (the sample
    # is all of them, so k-means converged on it), one for the means, one for the moments
    assert len(passes) == int(np.max(res.n_iter)) + 3


def test_share_splits_rows_evenly_and_reads_them():
    source = data.ArraySource(np.arange(20.0).reshape(10, 2))
    shares = [data.share(source, i, 3) for i in range(3)]
    assert [s.n_rows for s in shares] == [4, 3, 3]
    np.testing.assert_array_equal(
        np.concatenate([s.read(0, s.n_rows)[0] for s in shares]), source.x
    )
    np.testing.assert_array_equal(shares[1].read(1, 9)[0], source.x[5:7])
    with pytest.raises(ValueError, match="process_index"):
        data.share(source, 3, 3)


def test_a_read_ahead_stopped_early_leaves_no_reader_running():
    """A consumer that stops (an error, an interrupt) ends the reading thread: one left
    inside pyarrow at interpreter exit can abort the process."""
    import threading

    before = threading.active_count()
    source = data.ArraySource(np.arange(200.0).reshape(100, 2))
    ahead = _stream._read_ahead(source, 10)
    first = next(ahead)
    np.testing.assert_array_equal(first[1], source.x[:10])
    ahead.close()  # the reader is blocked on a full queue here
    assert threading.active_count() == before
    assert [c[0] for c in _stream._read_ahead(source, 30)] == [0, 30, 60, 90]
    assert threading.active_count() == before


def test_npy_source_reads_ranges_without_loading_the_file(tmp_path):
    x = np.arange(60, dtype=np.float32).reshape(20, 3)
    np.save(tmp_path / "x.npy", x)
    source = data.NpySource(tmp_path / "x.npy")
    assert (source.n_rows, source.n_features, source.dtype) == (20, 3, np.float32)
    np.testing.assert_array_equal(source.read(7, 11)[0], x[7:11])
    np.save(tmp_path / "f.npy", np.asfortranarray(x.astype(float)))
    with pytest.raises(ValueError, match="C order"):
        data.NpySource(tmp_path / "f.npy")


def test_bad_sources_get_one_line_errors(tmp_path):
    key = jax.random.key(0)
    x = rows(n=200, d=2)
    with pytest.raises(ValueError, match="a source carries its own weights"):
        jaxgmm.fit(key, data.ArraySource(x), 2, sample_weight=np.ones(200))
    bad = x.copy()
    bad[5, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        jaxgmm.fit(key, data.ArraySource(bad), 2)
    with pytest.raises(ValueError, match="no weight"):
        jaxgmm.fit(key, data.ArraySource(x, np.zeros(200)), 2)
    with pytest.raises(ValueError, match=r"\.npy or Parquet"):
        jaxgmm.fit(key, tmp_path / "x.csv", 2)
    if pytest.importorskip("pyarrow"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"a": [1.0, 2.0]}), tmp_path / "t.parquet")
        with pytest.raises(ValueError, match="no weight column 'w'"):
            data.ParquetSource(tmp_path / "t.parquet", weight="w")


# --- the estimators, the sweep and predictions on a source ----------------------


@pytest.fixture
def iris_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq
    from sklearn.datasets import load_iris

    frame = load_iris(as_frame=True).frame
    pq.write_table(pa.Table.from_pandas(frame), tmp_path / "iris.parquet", row_group_size=40)
    X = frame.drop(columns="target")
    return data.ParquetSource(tmp_path / "iris.parquet", columns=list(X.columns)), X


def test_an_estimator_fits_and_predicts_a_source_as_it_does_its_rows(iris_parquet, tmp_path):
    source, X = iris_parquet
    in_memory = jaxgmm.GaussianMixture(3, random_state=0).fit(X)
    streamed = jaxgmm.GaussianMixture(3, random_state=0).fit(source)
    assert list(streamed.feature_names_in_) == list(X.columns)
    assert streamed.n_iter_ == in_memory.n_iter_
    np.testing.assert_allclose(streamed.means_, in_memory.means_, rtol=1e-10)
    np.testing.assert_array_equal(streamed.predict(source), in_memory.predict(X))
    np.testing.assert_allclose(streamed.score(source), in_memory.score(X), rtol=1e-12)
    np.testing.assert_allclose(streamed.bic(source), in_memory.bic(X), rtol=1e-12)
    np.testing.assert_allclose(streamed.aic(source), in_memory.aic(X), rtol=1e-12)
    # outputs streamed to files, chunk by chunk, in row order
    assert streamed.predict(source, out=tmp_path / "labels.npy") == tmp_path / "labels.npy"
    np.testing.assert_array_equal(np.load(tmp_path / "labels.npy"), in_memory.predict(X))
    streamed.score_samples(source, out=tmp_path / "ll.npy")
    np.testing.assert_allclose(np.load(tmp_path / "ll.npy"), in_memory.score_samples(X), rtol=1e-12)
    import pyarrow.parquet as pq

    streamed.predict_proba(source, out=tmp_path / "p.parquet")
    table = pq.read_table(tmp_path / "p.parquet").to_pandas()
    assert list(table.columns) == ["probability_0", "probability_1", "probability_2"]
    np.testing.assert_allclose(table.to_numpy(), in_memory.predict_proba(X), atol=1e-12)
    # an array can be written out too
    in_memory.predict(X, out=tmp_path / "labels2.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "labels2.npy"), in_memory.predict(X))
    with pytest.raises(ValueError, match=r"\.npy or a \.parquet"):
        streamed.predict(source, out=tmp_path / "labels.csv")
    with pytest.raises(ValueError, match="X has 2 features"):
        streamed.predict(data.ArraySource(np.zeros((5, 2))))


def test_a_warm_start_continues_on_a_source(iris_parquet):
    source, X = iris_parquet
    kw = dict(random_state=0, warm_start=True, max_iter=3)
    with pytest.warns(Warning):
        a = jaxgmm.GaussianMixture(3, **kw).fit(X)
    with pytest.warns(Warning):
        b = jaxgmm.GaussianMixture(3, **kw).fit(source)
    with pytest.warns(Warning):
        a.fit(X)
    with pytest.warns(Warning):
        b.fit(source)
    assert a.n_iter_ == b.n_iter_
    np.testing.assert_allclose(b.means_, a.means_, rtol=1e-9)


class CountingReads(data.Derived):
    """A source that counts the rows read from it."""

    def __init__(self, source):
        super().__init__(source)
        object.__setattr__(self, "rows_read", 0)

    @property
    def n_rows(self):
        return self.source.n_rows

    def read(self, start, stop):
        x, w = self.source.read(start, stop)
        object.__setattr__(self, "rows_read", self.rows_read + len(x))
        return x, w


def test_selection_on_a_source_equals_selection_in_memory(iris_parquet):
    source, X = iris_parquet
    # a source has no hierarchical start (it starts from the restarts alone)
    a = jaxgmm.sweep(
        jax.random.key(0), X.to_numpy(), range(1, 5), n_init=2, hierarchical_start=False
    )
    counting = CountingReads(source)
    b = jaxgmm.sweep(jax.random.key(0), counting, range(1, 5), n_init=2)
    # one pass serves every type, K and restart: 2 setup passes, 3 to start (a Lloyd
    # pass and the parameters' two), one per iteration of the longest fit (at most one
    # exact pass more each), and the final scores
    passes = counting.rows_read / source.n_rows
    assert passes <= 2 * max(b.table["n_iter"]) + 6
    assert (
        passes
        < sum(
            b.table["n_iter"][b.table["covariance_type"] == t].max()
            for t in set(b.table["covariance_type"])
        )
        + 4 * 6
    )  # types' separate passes
    np.testing.assert_array_equal(a.table["n_iter"], b.table["n_iter"])
    np.testing.assert_allclose(a.table["bic"], b.table["bic"], rtol=1e-9)
    np.testing.assert_allclose(a.table["icl"], b.table["icl"], rtol=1e-9)
    assert a.best == b.best
    ic = jaxgmm.GaussianMixtureIC(4, n_init=2, random_state=0).fit(source)  # programs shared
    assert (ic.n_components_, ic.covariance_type_) == tuple(
        b.table[c][b.best] for c in ("n_components", "covariance_type")
    )
    np.testing.assert_array_equal(ic.predict(source), ic.predict(X))


def test_the_variational_mixture_names_what_takes_a_source(iris_parquet):
    with pytest.raises(ValueError, match="fit a data source with GaussianMixture"):
        jaxgmm.BayesianGaussianMixture(n_components=2).fit(iris_parquet[0])


MEMORY_PROBE = """
import resource, sys, numpy as np, jax, jaxgmm
d = 8
kw = dict(covariance_type="full", tol=0.0, max_iter=2, weights_init=np.full(4, 0.25),
          means_init=np.arange(4)[:, None] * 3.0 + np.zeros(d),
          precisions_init=np.tile(np.eye(d), (4, 1, 1)))
jaxgmm.fit(jax.random.key(0), sys.argv[1], 4, **kw)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def test_a_streamed_fits_peak_memory_does_not_grow_with_the_data(tmp_path):
    import subprocess
    import sys

    rng = np.random.default_rng(0)
    peaks = []
    # 16 MB and 256 MB of rows: 16x (from 16 MB on, the chunks alive at once, about
    # 9 x 4 MiB, are all there, so the peak stops growing)
    for n in (250_000, 4_000_000):
        path = tmp_path / f"x{n}.npy"
        with open(path, "wb") as f:  # written in pieces, not held here
            header = {"descr": "<f8", "fortran_order": False, "shape": (n, 8)}
            np.lib.format.write_array_header_2_0(f, header)
            for start in range(0, n, 500_000):
                m = min(500_000, n - start)
                f.write((rng.normal(size=(m, 8)) + rng.integers(0, 4, (m, 1)) * 3).tobytes())
        out = subprocess.run(
            [sys.executable, "-c", MEMORY_PROBE, str(path)],
            capture_output=True, text=True, check=True, timeout=300,
        )  # fmt: skip
        peaks.append(int(out.stdout.split()[-1]))
    assert peaks[1] < 1.1 * peaks[0], f"peak RSS {peaks[0] / 1024:.0f} -> {peaks[1] / 1024:.0f} MB"
