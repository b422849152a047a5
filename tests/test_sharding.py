"""Restarts (EM, sweep, variational) sharded over 4 fake CPU devices pick the same model
as one device."""

import json
import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import json, jax, numpy as np, jaxgmm
    assert jax.local_device_count() == 4, jax.devices()
    x, _ = jaxgmm.make_seed_blobs(3)
    out = {}
    for cov in ["full", "diag"]:
        runs = {}
        for n_dev in (1, 4):
            res = jaxgmm.fit_restarts(jax.random.key(5), x, 4, covariance_type=cov,
                                      n_init=6, init_params="random", n_devices=n_dev)
            runs[n_dev] = res
        a, b = runs[1], runs[4]
        out[cov] = dict(
            best=[jaxgmm.best_index(a), jaxgmm.best_index(b)],
            lb_diff=float(np.max(np.abs(np.asarray(a.lower_bound) - np.asarray(b.lower_bound)))),
            mean_diff=float(np.max(np.abs(
                np.asarray(a.params.means) - np.asarray(b.params.means)))),
            n_iter=[np.asarray(a.n_iter).tolist(), np.asarray(b.n_iter).tolist()],
            sharded=str(b.params.means.sharding),
        )
    # float32: the same restart is chosen; XLA compiles a batch of 6 and a batch of
    # 2 per device into different reduction orders, so values agree to float32
    # rounding, not bit for bit (the README states this tolerance)
    runs = [jaxgmm.fit_restarts(jax.random.key(5), x.astype(np.float32), 4, n_init=6,
                                init_params="random", n_devices=n) for n in (1, 4)]
    cov32 = [np.asarray(r.params.covariance.covariances, np.float64) for r in runs]
    out["float32"] = dict(
        best=[jaxgmm.best_index(r) for r in runs],
        n_iter=[np.asarray(r.n_iter).tolist() for r in runs],
        lb_diff=float(np.max(np.abs(np.asarray(runs[0].lower_bound, np.float64)
                                    - np.asarray(runs[1].lower_bound, np.float64)))),
        mean_diff=float(np.max(np.abs(cov32[0] - cov32[1]) / np.max(np.abs(cov32[0])))),
    )
    # two types: the 'kmeans' centres are computed once (sharded) and shared
    sweeps = [jaxgmm.sweep(jax.random.key(1), x, [1, 2, 3, 4], ["diag", "spherical"], n_init=3,
                           n_devices=n) for n in (1, 4)]
    out["sweep"] = dict(
        best=[int(s.best) for s in sweeps],
        n_iter=[s.table["n_iter"].tolist() for s in sweeps],
        lb_diff=float(np.max(np.abs(sweeps[0].table["bic"] - sweeps[1].table["bic"]))),
        # restarts that reach one optimum tie to ~1e-13 and may list its components
        # in another order: compare the components as a set (rows sorted)
        mean_diff=max(float(np.max(np.abs(np.sort(np.asarray(a.means), 0)
                                          - np.sort(np.asarray(b.means), 0))))
                      for a, b in zip(sweeps[0].params, sweeps[1].params)),
    )
    from jaxgmm._bayesian import fit_vb_restarts
    bgm = jaxgmm.BayesianGaussianMixture(n_components=4, n_init=6, random_state=0).fit(x)
    vb = [fit_vb_restarts(jax.random.key(2), x, 4, bgm._priors(), n_init=6,
                          init_params="random", n_devices=n) for n in (1, 4)]
    out["bayesian"] = dict(
        best=[jaxgmm.best_index(v) for v in vb],
        n_iter=[np.asarray(v.n_iter).tolist() for v in vb],
        lb_diff=float(np.max(np.abs(np.asarray(vb[0].lower_bound)
                                    - np.asarray(vb[1].lower_bound)))),
        mean_diff=float(np.max(np.abs(np.asarray(vb[0].params.means)
                                      - np.asarray(vb[1].params.means)))),
        sharded=str(vb[1].params.means.sharding),
    )
    # a streamed fit deals its chunks to the 4 devices and sums their statistics
    from sklearn.datasets import make_blobs
    from jaxgmm import _stream, data
    xs = make_blobs(3000, 3, centers=4, random_state=0)[0]
    start = dict(weights_init=np.full(4, 0.25), means_init=xs[:4] + 0.1,
                 precisions_init=np.tile(np.eye(3), (4, 1, 1)))
    _stream.CHUNK_BYTES = 640 * 3 * 8  # 5 chunks of 640 rows
    seen = set()
    stats = _stream._chunk_stats
    def spy(cov, block, params, x, *rest):
        seen.update(str(d) for d in x.devices())
        return stats(cov, block, params, x, *rest)
    _stream._chunk_stats = spy
    kw = dict(tol=1e-8, **start)
    mem = jaxgmm.fit(jax.random.key(0), xs, 4, **kw)
    src = jaxgmm.fit(jax.random.key(0), data.ArraySource(xs), 4, **kw)
    out["stream"] = dict(
        best=[0, 0], n_iter=[int(mem.n_iter), int(src.n_iter)],
        lb_diff=float(abs(mem.lower_bound - src.lower_bound)),
        mean_diff=float(np.max(np.abs(np.asarray(mem.params.means) - src.params.means))),
        devices=len(seen),
    )
    print(json.dumps(out))
    """
)


def test_sharded_restarts_and_sweep_equal_single_device():
    env = dict(
        os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu"
    )
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    for cov, r in out.items():
        assert r["best"][0] == r["best"][1], (cov, r)
        assert r["n_iter"][0] == r["n_iter"][1], (cov, r)
        # the sweep's best restart per K can be another restart at the same optimum
        mean_tol = {"sweep": 1e-6, "float32": 1e-4}.get(cov, 1e-8)
        lb_tol = 1e-4 if cov == "float32" else 1e-7
        assert r["lb_diff"] < lb_tol and r["mean_diff"] < mean_tol, (cov, r)
        if "devices" in r:  # the chunks went to every device
            assert r["devices"] == 4, r
        if "sharded" in r:  # the restart axis is split over the 4 devices
            assert "restart" in r["sharded"], r["sharded"]
