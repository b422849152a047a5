"""Compiled programs (``jaxgmm._programs``): compiled before the upload, kept in memory
and in jaxgmm's own cache directory, loaded by a new process without tracing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np

import jaxgmm
from jaxgmm import _programs

FIT = textwrap.dedent(
    """
    import json, sys
    import jax, numpy as np
    import jaxgmm
    from jaxgmm import _programs
    from sklearn.datasets import load_iris
    X = load_iris().data
    out = {}
    for cov in ("full", "tied", "diag", "spherical"):
        m = jaxgmm.GaussianMixture(3, covariance_type=cov, random_state=0).fit(X)
        out[cov] = [m.lower_bound_, m.means_.tolist()]
    b = jaxgmm.BayesianGaussianMixture(n_components=3, random_state=0).fit(X)
    out["bayes"] = [b.lower_bound_, b.means_.tolist()]
    files = sorted(p.name for p in _programs.cache_dir().iterdir())
    print(json.dumps({"out": out, "files": files, "jax_dir": jax.config.jax_compilation_cache_dir}))
    """
)


def _run(env) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", FIT], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_new_process_loads_the_stored_programs(tmp_path):
    """Every covariance type (LAPACK's Cholesky and triangular solves inside) and the
    variational mixture: a second process gives bitwise the same fits from the stored
    programs; a damaged file is compiled again, never a crash; JAX's own cache
    directory is never set."""
    env = {**os.environ, "JAXGMM_CACHE_DIR": str(tmp_path)}
    first = _run(env)
    assert first["files"] and all(f.endswith(".xla") for f in first["files"])
    assert not first["jax_dir"]
    second = _run(env)
    assert second["out"] == first["out"] and second["files"] == first["files"]
    for name in first["files"]:
        (tmp_path / "programs" / name).write_bytes(b"damaged")
    third = _run(env)
    assert third["out"] == first["out"]


def test_off_keeps_programs_in_memory_only(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXGMM_CACHE_DIR", "off")
    assert _programs.cache_dir() is None
    monkeypatch.setenv("JAXGMM_CACHE_DIR", str(tmp_path))
    assert _programs.cache_dir() == tmp_path / "programs"


def test_same_shapes_reuse_the_compiled_program(monkeypatch):
    monkeypatch.setenv("JAXGMM_CACHE_DIR", "off")
    _programs.clear_programs()
    x, _ = jaxgmm.make_seed_blobs(0)
    jaxgmm.GaussianMixture(3, random_state=0).fit(x)
    n = len(_programs._PROGRAMS)
    # another sample of the same size, another seed, another tol: the same program
    x2 = x + np.random.default_rng(1).standard_normal(x.shape) * 0.1
    jaxgmm.GaussianMixture(3, random_state=1, tol=1e-4).fit(x2)
    assert len(_programs._PROGRAMS) == n
    jaxgmm.GaussianMixture(3, covariance_type="diag", random_state=0).fit(x)
    assert len(_programs._PROGRAMS) == n  # small data: one program for every type
    jaxgmm.GaussianMixture(3, random_state=0).fit(x[:, :1])  # another shape
    assert len(_programs._PROGRAMS) == n + 1


def _fit_all(x, settings):
    out = []
    for k, n_init, cov in settings:
        m = jaxgmm.GaussianMixture(k, n_init=n_init, covariance_type=cov, random_state=0).fit(x)
        out.append((m, m.predict_proba(x), m.score_samples(x)))
    return out


def test_small_data_shares_one_program_across_k_n_init_and_types(monkeypatch):
    """Small data rounds K up to 8 (masked components), runs the restarts one after
    another keeping the best (the estimator wants no more), and fits every
    covariance type with one switched program: a new K, n_init or type compiles
    nothing, for fitting and for scoring, and every result equals the fit compiled
    for its own K, n_init and type."""
    from jaxgmm import _engine

    monkeypatch.setenv("JAXGMM_CACHE_DIR", "off")
    x, _ = jaxgmm.make_seed_blobs(0)
    settings = [(3, 1, "full"), (1, 1, "full"), (8, 1, "full"), (5, 3, "full"), (6, 4, "full")]
    settings += [(2, 3, "tied"), (4, 1, "diag"), (3, 4, "spherical")]
    _programs.clear_programs()
    rounded = _fit_all(x, settings[:1])
    n = len(_programs._PROGRAMS)  # one fit program, one scoring program
    rounded += _fit_all(x, settings[1:3])
    assert len(_programs._PROGRAMS) == n
    rounded += _fit_all(x, settings[3:5])
    assert len(_programs._PROGRAMS) == n  # restarts one after another: any n_init
    rounded += _fit_all(x, settings[5:])
    assert len(_programs._PROGRAMS) == n  # other types: the same programs
    monkeypatch.setattr(_engine, "ROUNDING_WORK", 0)  # each batch as asked
    plain = _fit_all(x, settings)
    for (a, pa, sa), (b, pb, sb), setting in zip(rounded, plain, settings, strict=True):
        assert a.n_iter_ == b.n_iter_ and a.weights_.shape == (setting[0],), setting
        for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
            np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(a.lower_bound_, b.lower_bound_, rtol=1e-12)
        np.testing.assert_allclose(pa, pb, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(sa, sb, rtol=1e-12)


def test_a_sweeps_types_share_one_program_beyond_small_data(monkeypatch):
    """The families of a sweep over mclust's share one switched program on narrow
    data larger than small data too (6,000 rows: several blocks, the expanded
    E-step), up to SWEEP_SHARING_WORK per pass: another set of families compiles
    nothing, and every row equals the sweep with a program per type. scikit-learn's
    types alone, or wider data, keep a program per type (the shared program's
    full-form passes cost more than the compiling they save)."""
    from conftest import blobs

    from jaxgmm import _engine

    monkeypatch.setenv("JAXGMM_CACHE_DIR", "off")
    x, _ = blobs(n=6000, d=3, k=3, seed=5)
    key = jax.random.key(2)
    kw = dict(n_init=2, hierarchical_start=False, tol=1e-6)
    _programs.clear_programs()
    shared = jaxgmm.sweep(key, x, [1, 2, 3], ["full", "spherical", "VEI", "EVV"], **kw)
    n = len(_programs._PROGRAMS)
    assert n <= 2  # the shared centres' program and the fits' one
    jaxgmm.sweep(key, x, [1, 2, 3], ["tied", "VVE", "EEI"], **kw)
    assert len(_programs._PROGRAMS) == n
    monkeypatch.setattr(_engine, "SWEEP_SHARING_WORK", 0)  # a program per type
    plain = jaxgmm.sweep(key, x, [1, 2, 3], ["full", "spherical", "VEI", "EVV"], **kw)
    assert len(_programs._PROGRAMS) == n + 4
    monkeypatch.setattr(_engine, "SWEEP_SHARING_WORK", 2**30)
    jaxgmm.sweep(key, x, [1, 2, 3], ["full", "diag"], **kw)  # scikit-learn's types
    assert len(_programs._PROGRAMS) == n + 6  # a program each (their options differ)
    monkeypatch.setattr(_engine, "SWEEP_SHARING_FEATURES", 2)
    jaxgmm.sweep(key, x, [1, 2, 3], ["tied", "VVE"], **kw)  # 3 features > 2
    assert len(_programs._PROGRAMS) == n + 8
    np.testing.assert_array_equal(shared.table["n_iter"], plain.table["n_iter"])
    np.testing.assert_allclose(
        shared.table["log_likelihood"], plain.table["log_likelihood"], rtol=1e-12
    )
    for a, b in zip(shared.params, plain.params, strict=True):
        assert type(a.covariance) is type(b.covariance)
        np.testing.assert_allclose(a.means, b.means, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(a.covariance.covariances, b.covariance.covariances, rtol=1e-9)


def test_large_batches_are_not_rounded():
    """Past the rounding's work limit (here 2,048 rows of 64 features) each K keeps a
    program of its own: rounding up would cost more per pass than compiling."""
    from jaxgmm import _engine

    batch = _engine.Batch((3,), 1)
    assert batch.bucketed(256, 4) == _engine.Batch((8,), 1)
    assert _engine.Batch((9,), 3).bucketed(256, 4) == _engine.Batch((16,), 4)
    assert batch.bucketed(2048, 64) is None
    assert _engine.Batch((3,), 5).bucketed(2048, 20) == _engine.Batch((8,), 5)


def test_traced_calls_go_through_jit():
    """Under the user's own jit the engine is traced as before (no ahead-of-time
    program can take tracers)."""
    x = jaxgmm.make_seed_blobs(0)[0].astype(np.float32)  # host data, a traced key
    fit = jax.jit(lambda key: jaxgmm.fit(key, x, 2).lower_bound)
    direct = jaxgmm.fit(jax.random.key(0), x, 2).lower_bound
    np.testing.assert_allclose(float(fit(jax.random.key(0))), float(direct), rtol=1e-6)


def test_cache_keeps_the_programs_used_last_within_its_size(tmp_path):
    for i, name in enumerate(("old", "mid", "new")):
        p = tmp_path / f"{name}.xla"
        p.write_bytes(b"x" * 100)
        os.utime(p, (1000 + i, 1000 + i))
    _programs._trim_cache(tmp_path, limit=250)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mid.xla", "new.xla"]


class _Recorder:
    def __init__(self):
        self.events = []

    def compiling(self, what):
        self.events.append(("compiling", what))

    def models_done(self, n):
        self.events.append(("done", n))

    def iteration(self, n_iter, lower_bound):
        if not self.events or self.events[-1][0] != "iteration":
            self.events.append(("iteration", None))


def test_progress_says_when_a_program_is_compiled(monkeypatch):
    """A reporter hears "compiling <type>" before the fit's iterations, once per new
    program, and never for a program already compiled."""
    from jaxgmm import _progress

    monkeypatch.setenv("JAXGMM_CACHE_DIR", "off")
    _programs.clear_programs()
    x, _ = jaxgmm.make_seed_blobs(0)
    recorder = _Recorder()
    with _progress.reporting(recorder):
        jaxgmm.sweep(jax.random.key(0), x, range(1, 4), ("tied", "diag"), n_init=2)
        first = list(recorder.events)
        jaxgmm.sweep(jax.random.key(1), x, range(1, 4), ("tied", "diag"), n_init=2)
    compiled = [what for event, what in first if event == "compiling"]
    assert compiled == ["k-means starts", "all types"]  # small data: one switched program
    assert first.index(("compiling", "all types")) < first.index(("iteration", None))
    assert first[-1] == ("done", 3)
    assert all(event != "compiling" for event, _ in recorder.events[len(first) :])


def test_sequential_restarts_keep_the_restart_best_index_picks():
    """``best_of`` keeps what ``best_index`` picks from the same restarts: the highest
    lower bound among those that did not fail, the first on ties, else restart 0."""
    from jaxgmm import _engine
    from jaxgmm._em import EMResult
    from jaxgmm._typing import Status

    def fake(lower, status):
        def fit(i):
            r = EMResult(None, i, jnp.asarray(lower)[i], None, None, jnp.asarray(status)[i])
            return r, None

        return fit

    cases = [
        ([-3.0, -1.0, -2.0, -1.0], [0, 0, 0, 0]),  # the first of the tied best
        ([-3.0, -1.0, -2.0, -0.5], [0, 0, 0, Status.NON_FINITE]),  # a failed one never wins
        ([-3.0, -np.inf, -2.0, -4.0], [0, 0, 0, 0]),  # nor a non-finite bound
        ([-3.0, -1.0, -2.0, -0.5], [Status.NON_FINITE] * 4),  # all failed: restart 0
    ]
    for lower, status in cases:
        fit = fake(lower, status)
        run = jax.jit(lambda n, fit=fit: _engine.best_of(fit, (jnp.arange(4),), (), n))
        for n in (1, 3, 4):
            best, _ = run(n)
            many = EMResult(None, None, np.asarray(lower[:n]), None, None, np.asarray(status[:n]))
            assert int(best.n_iter[0]) == jaxgmm.best_index(many), (lower, status, n)


def test_best_only_compiles_nothing_of_its_own_where_nothing_is_shared(monkeypatch):
    """Where small-data sharing is off (here by the work limit), asking for the best
    restart alone runs the ordinary program: the estimator and ``fit_restarts`` share
    it, and ``fit`` takes ``best_only`` like ``fit_restarts``."""
    from jaxgmm import _engine

    monkeypatch.setenv("JAXGMM_CACHE_DIR", "off")
    monkeypatch.setattr(_engine, "ROUNDING_WORK", 0)
    _programs.clear_programs()
    x, _ = jaxgmm.make_seed_blobs(0)
    many = jaxgmm.fit_restarts(jax.random.key(0), x, 3, n_init=2)
    n = len(_programs._PROGRAMS)
    best = jaxgmm.fit(jax.random.key(0), x, 3, n_init=2, best_only=False)
    assert len(_programs._PROGRAMS) == n
    assert float(best.lower_bound) == float(np.max(np.asarray(many.lower_bound)))


def test_a_process_near_its_memory_map_limit_drops_its_programs(monkeypatch):
    """Each program holds memory maps until JAX lets it go; near Linux's limit a new
    compile would abort the process in LLVM, so the programs are dropped first."""
    x = np.random.default_rng(0).normal(size=(50, 2))
    jaxgmm.fit(jax.random.key(0), x, 2)
    assert len(_programs._PROGRAMS) >= 1
    cleared = []
    monkeypatch.setattr(_programs, "_max_map_count", lambda: 1000)
    monkeypatch.setattr(_programs, "_n_memory_maps", lambda: 601)
    monkeypatch.setattr(jax, "clear_caches", lambda: cleared.append(1))
    rng = np.random.default_rng(1)
    fit = jaxgmm.fit(jax.random.key(0), rng.normal(size=(50, 3)), 2)  # a new program:
    # room is made first
    assert cleared == [1] and len(_programs._PROGRAMS) == 1 and fit.converged
    monkeypatch.setattr(_programs, "_n_memory_maps", lambda: 599)
    jaxgmm.fit(jax.random.key(0), rng.normal(size=(50, 4)), 2)  # below: nothing dropped
    assert cleared == [1] and len(_programs._PROGRAMS) == 2


def test_the_memory_map_counts_are_read_from_linux():
    if not os.path.exists("/proc/self/maps"):
        return
    assert _programs._max_map_count() > 0 and _programs._n_memory_maps() > 100
