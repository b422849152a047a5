"""The fused CPU pass (``_kernels``, ``_phi_pass.cc``): the same statistics and
log-likelihood as XLA's pass, in every structure it serves, under ``vmap``, in whole
fits, from the program cache, and XLA's pass where it is turned off."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgmm
from jaxgmm import _covariance, _em, _kernels, _programs
from jaxgmm._params import GMMParams
from jaxgmm._rows import make_blocks
from jaxgmm._typing import x64_scope

pytestmark = pytest.mark.skipif(not _kernels.wanted(), reason="no C++ compiler here")

STRUCTURES = {
    "full": _covariance.FullCovariance,
    "diag": _covariance.DiagCovariance,
    "spherical": _covariance.SphericalCovariance,
    "tied": _covariance.TiedCovariance,
}


@pytest.fixture
def xla_pass(monkeypatch):
    """Run a function with the fused pass turned off (``JAXGMM_KERNELS=off``; JAX's
    traces, which do not know the variable, are dropped before and after)."""

    def run(fn, *args):
        jax.clear_caches()
        try:
            with monkeypatch.context() as m:
                m.setenv("JAXGMM_KERNELS", "off")
                return fn(*args)
        finally:
            jax.clear_caches()

    return run


def _params(rng, cov_cls, k, d, dtype, far=0.0):
    """A mixture of ``k`` components in ``d`` dimensions: random means (shifted by
    ``far``), covariances of every scale from 0.3 to 3, one component of weight 0 (a
    sweep's padding: log-weight -inf)."""
    means = rng.normal(size=(k, d)) * 2 + far
    scales = rng.uniform(0.3, 3.0, size=k)
    full = np.stack([s * (np.eye(d) + 0.3 * np.diag(np.ones(d - 1), 1) * (d > 1)) for s in scales])
    full = np.einsum("kij,klj->kil", full, full)
    if cov_cls is _covariance.DiagCovariance:
        cov = np.diagonal(full, axis1=1, axis2=2).copy()
    elif cov_cls is _covariance.SphericalCovariance:
        cov = scales**2
    elif cov_cls is _covariance.TiedCovariance:
        cov = full[0]
    else:
        cov = full
    weights = rng.uniform(0.5, 1.5, size=k)
    weights[-1] = 0.0
    weights /= weights.sum()
    covariance = cov_cls.from_covariances(jnp.asarray(cov, dtype))
    return GMMParams(jnp.asarray(weights, dtype), jnp.asarray(means, dtype), covariance)


def _blocks(rng, n, d, dtype, block_rows, weighted, far=0.0):
    x = jnp.asarray(rng.normal(size=(n, d)) * 2 + far, dtype)
    w = jnp.asarray(rng.uniform(0, 2, size=n) * (rng.random(n) > 0.1), dtype) if weighted else None
    return make_blocks(x, w, block_rows, center="mean")


def _pass(params, blocks, shift=None):
    model = _em.Natural.of(params, blocks)
    cov_cls = params.covariance.structure()
    stats, log_lik, _ = _em.pass_stats(_em.e_step_resp(model), blocks, cov_cls, model.form, shift)
    return stats, log_lik


def _assert_close(a, b, rtol):
    for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        u, v = np.asarray(u), np.asarray(v)
        scale = np.max(np.abs(v)) if v.size else 1.0
        np.testing.assert_allclose(u, v, rtol=0, atol=rtol * scale)


@pytest.mark.parametrize("structure", list(STRUCTURES))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(
    ("d", "k", "weighted"), [(5, 16, True), (16, 8, False), (3, 20, False), (9, 33, True)]
)
def test_the_fused_pass_gives_xla_passs_statistics(structure, dtype, d, k, weighted, xla_pass):
    cov_cls = STRUCTURES[structure]
    rng = np.random.default_rng(d * 100 + k)
    with x64_scope(dtype):
        params = _params(rng, cov_cls, k, d, dtype)
        # 1,500 rows in blocks of 512: two threads per block, a tail of rows, padding
        blocks = _blocks(rng, 1500, d, dtype, 512, weighted)
        fused = jax.jit(_pass)(params, blocks)
        again = jax.jit(_pass)(params, blocks)
        assert "jaxgmm_phi_pass" in jax.jit(_pass).lower(params, blocks).as_text()
        reference = xla_pass(lambda: jax.jit(_pass)(params, blocks))
        xla_text = xla_pass(lambda: jax.jit(_pass).lower(params, blocks).as_text())
    assert "jaxgmm_phi_pass" not in xla_text
    # the same sums to the bit, whichever thread ran which rows
    _assert_close(again, fused, 0.0)
    _assert_close(fused, reference, 1e-12 if dtype == np.float64 else 2e-5)
    # the padding component (weight 0) gets exactly nothing
    assert float(fused[0].sum_r[-1]) == 0.0


def test_passes_from_several_threads_at_once_equal_passes_one_at_a_time():
    """The helper thread serves one pass at a time: passes running at once in other
    threads (which find it busy) do all their rows themselves, and every pass sums
    the same to the bit as alone (each chunk into its own buffer, added in order)."""
    import threading

    rng = np.random.default_rng(7)
    with x64_scope(np.float64):
        params = _params(rng, _covariance.FullCovariance, 16, 6, np.float64)
        problems = [_blocks(rng, 3000, 6, np.float64, 1024, True) for _ in range(3)]
        run = jax.jit(_pass)
        assert "jaxgmm_phi_pass" in run.lower(params, problems[0]).as_text()
        alone = [jax.device_get(run(params, b)) for b in problems]
        results = {}

        def many(i):
            with x64_scope(np.float64):  # (a thread's own configuration)
                results[i] = [jax.device_get(run(params, problems[i])) for _ in range(20)]

        threads = [threading.Thread(target=many, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for i, expected in enumerate(alone):
        for got in results[i]:
            _assert_close(got, expected, 0.0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("d", "k"), [(64, 3), (70, 9)])
def test_the_centred_fused_pass_gives_xla_passs_statistics_on_wide_data(dtype, d, k, xla_pass):
    """Wide data (full, D > 63) takes the centred form: its fused pass (the E-step
    from ``x - mu_k``, the statistics about ``shift``) against XLA's, with
    components of several scales, a padding component, weights and a tail block;
    also with precision factors that are not triangular (the kernel then reads them
    whole)."""
    rng = np.random.default_rng(d + k)
    with x64_scope(dtype):
        params = _params(rng, _covariance.FullCovariance, k, d, dtype)
        blocks = _blocks(rng, 1100, d, dtype, 512, True)
        assert _em.direct_form(_covariance.FullCovariance, blocks)
        shift = params.means + jnp.asarray(rng.normal(size=(k, d)) * 0.1, dtype)
        run = jax.jit(_pass)
        fused = run(params, blocks, shift)
        assert "jaxgmm_direct_pass" in run.lower(params, blocks, shift).as_text()
        reference = xla_pass(lambda: run(params, blocks, shift))
        # entries below the factors' diagonals: no longer triangular (another model,
        # whose log-joint both passes compute from the whole factor)
        chol = params.covariance.precisions_cholesky
        chol = chol + jnp.tril(jnp.asarray(rng.normal(size=chol.shape) * 0.05, dtype), -1)
        cov = params.covariance.replace(params.covariance.covariances, chol)
        skewed = GMMParams(params.weights, params.means, cov)
        turned = run(skewed, blocks, shift)
        turned_reference = xla_pass(lambda: run(skewed, blocks, shift))
    tol = 1e-12 if dtype == np.float64 else 5e-5
    _assert_close(fused, reference, tol)
    _assert_close(turned, turned_reference, tol)
    assert float(fused[0].sum_r[-1]) == 0.0


@pytest.mark.parametrize("structure", ["full", "tied"])
def test_the_fused_pass_is_batched_over_fits_and_any_vmap(structure, xla_pass):
    rng = np.random.default_rng(0)
    cov_cls = STRUCTURES[structure]
    with x64_scope(np.float64):
        blocks = _blocks(rng, 2000, 4, np.float64, 1024, False)
        many = [_params(rng, cov_cls, 16, 4, np.float64) for _ in range(6)]
        stacked = jax.tree_util.tree_map(lambda *a: jnp.stack(a).reshape(2, 3, *a[0].shape), *many)
        twice = jax.jit(jax.vmap(jax.vmap(_pass, (0, None)), (0, None)))
        assert "jaxgmm_phi_pass" in twice.lower(stacked, blocks).as_text()
        fused = twice(stacked, blocks)
        reference = xla_pass(lambda: twice(stacked, blocks))
        one = jax.jit(_pass)(many[4], blocks)
    _assert_close(fused, reference, 1e-12)
    _assert_close(jax.tree_util.tree_map(lambda a: a[1, 1], fused), one, 1e-12)


@pytest.mark.parametrize("structure", ["diag", "tied"])
def test_non_finite_parameters_give_non_finite_sums_as_in_xla(structure, xla_pass):
    rng = np.random.default_rng(1)
    cov_cls = STRUCTURES[structure]
    with x64_scope(np.float64):
        blocks = _blocks(rng, 1024, 6, np.float64, 512, False)
        params = _params(rng, cov_cls, 16, 6, np.float64)
        params = GMMParams(params.weights, params.means.at[2, 0].set(jnp.nan), params.covariance)
        assert "jaxgmm_phi_pass" in jax.jit(_pass).lower(params, blocks).as_text()
        fused = jax.jit(_pass)(params, blocks)
        reference = xla_pass(lambda: jax.jit(_pass)(params, blocks))
    assert np.isnan(fused[1]) and np.isnan(reference[1])
    assert np.array_equal(np.isfinite(fused[0].sum_r), np.isfinite(reference[0].sum_r))


@pytest.fixture
def kernel_runs(monkeypatch):
    """How many times the fused kernels ran (counted at run time, not when traced: a
    fit whose exactness check sends every pass to the centred form never reaches the
    fast form's kernel). Compiled programs are not reused (they would not count)."""
    runs = []

    def counted(wrapper):
        def call(*args, **kwargs):
            out = wrapper(*args, **kwargs)
            jax.debug.callback(lambda: runs.append(1))
            return out

        return call

    for name in ("fused_pass", "fused_direct_pass"):
        monkeypatch.setattr(_kernels, name, counted(getattr(_kernels, name)))
    monkeypatch.setenv("JAXGMM_CACHE_DIR", "off")
    _programs.clear_programs()
    yield runs
    _programs.clear_programs()


@pytest.mark.parametrize(
    ("covariance_type", "n_features", "far"),
    [
        ("full", 5, False),
        ("full", 5, True),
        ("diag", 8, False),
        ("spherical", 14, False),
        ("tied", 16, False),
        ("tied", 16, True),
        ("full", 66, True),
    ],
)
def test_fits_with_the_fused_pass_equal_fits_without(
    covariance_type, n_features, far, xla_pass, kernel_runs
):
    """Whole fits, several blocks (block_rows=512), restarts batched: the same
    iterations, log-likelihood and parameters, with the kernel run. With a tight
    component far from the rest (``far``) the fast form's exactness check sends
    every pass to the centred form (the kernel for wide data, XLA's otherwise)."""
    rng = np.random.default_rng(2)
    d = n_features
    centers = rng.normal(size=(8, d)) * 6
    X = np.concatenate(
        [c + rng.normal(size=(400, d)) * s for c, s in zip(centers, [1, 2] * 4, strict=True)]
    )
    if far:
        X[:300] = 1e6 + 1e-3 * rng.normal(size=(300, d))  # tight and far from the rest

    def fit():
        return jaxgmm.fit_restarts(
            jax.random.key(0),
            X,
            8,
            covariance_type=covariance_type,
            n_init=2,
            max_iter=30,
            tol=0.0,
            block_rows=512,
        )

    fused = fit()
    assert (len(kernel_runs) > 0) == (not far or d > 63)
    reference = xla_pass(fit)
    np.testing.assert_array_equal(fused.n_iter, reference.n_iter)
    np.testing.assert_allclose(fused.lower_bound, reference.lower_bound, rtol=1e-11)
    np.testing.assert_allclose(fused.params.means, reference.params.means, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(
        fused.params.covariance.covariances,
        reference.params.covariance.covariances,
        rtol=1e-7,
        atol=1e-12,
    )


def test_a_stored_program_with_the_fused_pass_runs_in_a_new_process(tmp_path):
    """A program that calls the kernel, stored by one process, is loaded untraced by
    the next (which compiles nothing), which registers the kernel first; the library
    is built once."""
    script = textwrap.dedent(
        """
        import jax, numpy as np, jaxgmm
        from jaxgmm import _programs, _progress
        compiled = []
        _progress.compiling = compiled.append
        X = np.random.default_rng(0).normal(size=(3000, 6))
        r = jaxgmm.fit_restarts(jax.random.key(0), X, 16, covariance_type="diag",
                                max_iter=5, tol=0.0, block_rows=1024)
        stored = len(list(_programs.cache_dir().glob("*.xla")))
        print(repr(float(r.lower_bound[0])), stored, len(compiled))
        """
    )
    env = dict(os.environ, JAXGMM_CACHE_DIR=str(tmp_path), JAX_PLATFORMS="cpu")
    env.pop("JAXGMM_KERNELS", None)
    run = lambda: subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    first, second = run(), run()
    assert first[:2] == second[:2] and int(first[1]) > 0
    assert int(first[2]) > 0 and int(second[2]) == 0
    assert len(list((tmp_path / "kernels").glob("phi_pass-*.so"))) == 1


def test_without_a_compiler_passes_are_xlas(monkeypatch, tmp_path):
    monkeypatch.setattr(_kernels, "_compiler", lambda: None)
    assert not _kernels.wanted()
    rng = np.random.default_rng(3)
    with x64_scope(np.float64):
        params = _params(rng, _covariance.DiagCovariance, 16, 6, np.float64)
        blocks = _blocks(rng, 1024, 6, np.float64, 512, False)
        jax.clear_caches()
        try:
            assert "jaxgmm_phi_pass" not in jax.jit(_pass).lower(params, blocks).as_text()
        finally:
            jax.clear_caches()
    with pytest.raises(OSError, match="no C\\+\\+ compiler"):
        _kernels._build()
    monkeypatch.setattr(_kernels, "_compiler", lambda: [str(tmp_path / "no-such-compiler")])
    monkeypatch.setattr(_kernels, "_directory", lambda: tmp_path)
    with pytest.raises(OSError):
        _kernels._build()
    assert not list(tmp_path.glob("*.so")) and not list(tmp_path.glob(".*tmp"))


def test_the_compiler_command_is_split_as_a_shell_would(monkeypatch):
    monkeypatch.setattr(_kernels.shutil, "which", lambda name: f"/usr/bin/{name}")
    cases = [("ccache g++", ["ccache", "g++"]), ("", ["/usr/bin/c++"]), ('g++ "x', None)]
    for cxx, expected in cases:
        monkeypatch.setenv("CXX", cxx)
        _kernels._compiler.cache_clear()
        try:
            assert _kernels._compiler() == expected
        finally:
            _kernels._compiler.cache_clear()


def test_the_kernel_refuses_operands_of_the_wrong_shape():
    """A factor wider than its padding would read past the kernel's buffers: the
    call fails with an error, not a read out of bounds."""
    assert _kernels.prepare()
    with x64_scope(np.float64):
        x = jnp.zeros((1, 512, 5))
        A = jnp.zeros((6, 8))  # phi = [1, x]: 6 rows
        wide = jnp.zeros((5, 16))  # 5 columns padded to 16, not 8
        args = (x, 0, jnp.ones(512), jnp.zeros(5), A, "shared", wide)
        with pytest.raises(Exception, match="u is not d x"):
            jax.block_until_ready(jax.jit(_kernels.fused_pass, static_argnums=5)(*args))


def test_overlapping_blas_limits_restore_openblass_threads(monkeypatch):
    """Fits in two threads: OpenBLAS is limited from the first entry to the last exit,
    once (threadpoolctl alone restores on each exit what it saw on entry: overlapping
    limits left one thread for good)."""
    import threading

    from jaxgmm import _programs

    events = []

    class Limit:
        def restore_original_limits(self):
            events.append("restore")

    class Controller:
        def limit(self, limits, user_api):
            events.append(("limit", limits, user_api))
            return Limit()

    monkeypatch.setattr(_programs, "_blas_controller", lambda: Controller())
    inside, release = threading.Event(), threading.Event()

    def first():
        with _programs._one_blas_thread():
            inside.set()
            release.wait()

    thread = threading.Thread(target=first)
    thread.start()
    inside.wait()
    with _programs._one_blas_thread():
        release.set()
        thread.join()
        assert events == [("limit", 1, "blas")]
    assert events == [("limit", 1, "blas"), "restore"]
    assert _programs._blas_depth == 0
