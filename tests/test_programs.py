"""Compiled programs (``jaxgmm._programs``): compiled before the upload, kept in memory
and in jaxgmm's own cache directory, loaded by a new process without tracing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import jax
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
    assert len(_programs._PROGRAMS) == n + 1


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
