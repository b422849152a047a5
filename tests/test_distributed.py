"""Several real processes on this machine (jax.distributed over localhost): one fit
over every process's rows, equal to the fit of all rows in one process, the same bits
in every process; a process that dies stops the others with a clear error."""

import pickle
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_stream import rows, start

import jaxgmm
from jaxgmm import distributed

WORKER = Path(__file__).with_name("distributed_worker.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_processes(directory, n=2, mode="fit", timeout=240):
    port = free_port()
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(port), str(n), str(i), str(directory), mode],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(n)
    ]
    outputs = [p.communicate(timeout=timeout)[0] for p in procs]
    return [p.returncode for p in procs], outputs


def cases(directory: Path):
    """name -> (data for the workers, the same rows in memory, keyword arguments)."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    out = {}
    x = rows(n=1001, d=3, seed=5)  # 501 and 500 rows
    np.save(directory / "full.npy", x)
    kw = dict(n_components=4, covariance_type="full", tol=1e-8, **start(x, "full"))
    out["full"] = (str(directory / "full.npy"), (x, None), kw)

    x = rows(n=1500, d=2, seed=6)
    w = np.random.default_rng(0).integers(0, 3, len(x)).astype(float)
    pq.write_table(
        pa.table({"a": x[:, 0], "b": x[:, 1], "w": w}), directory / "w.parquet", row_group_size=97
    )
    source = jaxgmm.data.ParquetSource(directory / "w.parquet", columns=["a", "b"], weight="w")
    kw = dict(n_components=4, covariance_type="spherical", tol=1e-8, **start(x, "spherical"))
    out["spherical_weighted"] = (source, (x, w), kw)

    rng = np.random.default_rng(1)
    x = 1e6 + np.concatenate([rng.normal(size=(600, 2)) * 1e-7, 5 + rng.normal(size=(400, 2))])
    x = x[rng.permutation(len(x))]
    kw = dict(n_components=2, covariance_type="diag", tol=1e-10, max_iter=20, reg_covar=1e-20)
    kw |= dict(means_init=[[1e6, 1e6], [1e6 + 5, 1e6 + 5]], weights_init=[0.5, 0.5])
    out["far_and_tight"] = ([x[:700], x[700:]], (x, None), kw)  # arrays: each process's rows

    x = rows(n=1201, d=3, seed=10)
    w = np.random.default_rng(2).integers(1, 4, len(x)).astype(float)
    kw = dict(n_components=3, covariance_type="full", n_init=2, tol=0.0, max_iter=30)
    # arrays of uneven size, weighted: one program over both processes' rows
    out["arrays_kmeans"] = ([(x[:800], w[:800]), (x[800:], w[800:])], (x, w), kw)

    x = rows(n=900, d=2, seed=11)
    kw = dict(call="sweep", n_components=(1, 2), covariance_types=("full", "spherical"))
    out["sweep_arrays"] = ([x[:500], x[500:]], (x, None), kw | dict(n_init=2))

    x = rows(n=2000, d=2, seed=7)
    np.save(directory / "kmeans.npy", x)
    kw = dict(n_components=3, covariance_type="full", n_init=3)  # k-means++ on the sample
    out["kmeans"] = (str(directory / "kmeans.npy"), None, kw)
    return out


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    directory = tmp_path_factory.mktemp("two")
    all_cases = cases(directory)
    (directory / "cases.pkl").write_bytes(
        pickle.dumps({name: (X, kw) for name, (X, _, kw) in all_cases.items()})
    )
    codes, outputs = run_processes(directory)
    assert codes == [0, 0], "\n".join(outputs)
    results = [pickle.loads((directory / f"out{i}.pkl").read_bytes()) for i in range(2)]
    return all_cases, results


def test_every_process_ends_with_the_same_bits(two_processes):
    _, (a, b) = two_processes
    for name in a:
        for field in a[name]:
            if field == "table":
                for column in a[name][field]:
                    np.testing.assert_array_equal(a[name][field][column], b[name][field][column])
            else:
                np.testing.assert_array_equal(a[name][field], b[name][field], err_msg=name)


def test_arrays_in_memory_run_as_one_program_over_both_processes(two_processes):
    """Each process's rows in memory: the EM loop is one program on both processes'
    devices (its sums gathered inside it, no host collective per iteration), starting
    where the streamed fit of all the rows starts, and ending where it ends."""
    all_cases, (result, _) = two_processes
    result = result["arrays_kmeans"]
    _, (x, w), kw = all_cases["arrays_kmeans"]
    ref = jaxgmm.fit_restarts(jaxgmm_key(), jaxgmm.data.ArraySource(x, w), **kw)
    np.testing.assert_array_equal(result["n_iter"], 30)
    np.testing.assert_array_equal(result["n_iter"], np.asarray(ref.n_iter))
    assert result["gathers"] <= 8  # the sample's and the layout's, not one per iteration
    np.testing.assert_allclose(result["means"], np.asarray(ref.params.means), rtol=1e-10)
    np.testing.assert_allclose(result["lower_bound"], np.asarray(ref.lower_bound), rtol=1e-12)
    cov = np.asarray(ref.params.covariance.covariances)
    np.testing.assert_allclose(result["covariances"], cov, rtol=1e-10, atol=1e-12)


def test_a_sweep_of_arrays_runs_over_both_processes(two_processes):
    all_cases, (result, _) = two_processes
    table = result["sweep_arrays"]["table"]
    _, (x, _), kw = all_cases["sweep_arrays"]
    kw = {k: v for k, v in kw.items() if k != "call"}
    ref = jaxgmm.sweep(jaxgmm_key(), jaxgmm.data.ArraySource(x), **kw).table
    np.testing.assert_array_equal(table["covariance_type"], ref["covariance_type"])
    np.testing.assert_array_equal(table["n_iter"], ref["n_iter"])
    np.testing.assert_allclose(table["bic"], ref["bic"], rtol=1e-10)
    assert result["sweep_arrays"]["gathers"] <= 12


@pytest.mark.parametrize("name", ["full", "spherical_weighted", "far_and_tight"])
def test_two_processes_equal_the_in_memory_fit(two_processes, name):
    all_cases, (results, _) = two_processes
    result = results[name]
    _, (x, w), kw = all_cases[name]
    ref = jaxgmm.fit_restarts(jaxgmm_key(), x, sample_weight=w, **kw)
    np.testing.assert_array_equal(result["n_iter"], np.asarray(ref.n_iter))
    np.testing.assert_array_equal(result["status"], np.asarray(ref.status))
    for field, value in [
        ("weights", ref.params.weights),
        ("means", ref.params.means),
        ("covariances", ref.params.covariance.covariances),
        ("lower_bound", ref.lower_bound),
    ]:
        value = np.asarray(value)
        np.testing.assert_allclose(
            result[field], value, rtol=1e-10, atol=1e-10 * np.abs(value).max(), err_msg=field
        )


def test_two_processes_seed_as_one_process_does(two_processes):
    """The initialization's sample is drawn by each row's index in the whole data, so
    the processes' samples together are one process's sample."""
    all_cases, (results, _) = two_processes
    result = results["kmeans"]
    X, _, kw = all_cases["kmeans"]
    ref = jaxgmm.fit_restarts(jaxgmm_key(), X, **kw)
    np.testing.assert_array_equal(result["n_iter"], np.asarray(ref.n_iter))
    np.testing.assert_allclose(result["means"], np.asarray(ref.params.means), rtol=1e-9)


def test_a_process_that_dies_stops_the_others_with_a_clear_error(tmp_path):
    x = rows(n=1000, d=2, seed=8)
    np.save(tmp_path / "x.npy", x)
    kw = dict(n_components=3, covariance_type="full", max_iter=50, tol=0.0)
    (tmp_path / "cases.pkl").write_bytes(pickle.dumps({"x": (str(tmp_path / "x.npy"), kw)}))
    codes, outputs = run_processes(tmp_path, mode="die", timeout=120)  # no hang
    assert codes[1] == 3
    assert codes[0] != 0
    assert "ProcessFailed" in outputs[0] and "another process stopped" in outputs[0]


def test_initialize_names_what_is_missing(monkeypatch):
    for name in ("JAXGMM_COORDINATOR", "JAXGMM_NUM_PROCESSES", "JAXGMM_PROCESS_ID"):
        monkeypatch.delenv(name, raising=False)
    for name in ("SLURM_JOB_ID", "OMPI_MCA_orte_hnp_uri"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match="No coordinator"):
        distributed.initialize()
    with pytest.raises(ValueError, match="needs num_processes and process_id"):
        distributed.initialize("127.0.0.1:1234")
    monkeypatch.setenv("JAXGMM_NUM_PROCESSES", "two")
    with pytest.raises(ValueError, match="JAXGMM_NUM_PROCESSES must be an integer"):
        distributed.initialize("127.0.0.1:1234")
    assert distributed.process_count() == 1 and distributed.process_index() == 0


def jaxgmm_key():
    import jax

    return jax.random.key(0)


def test_the_command_fits_with_two_processes(tmp_path):
    x = rows(n=1201, d=2, seed=9)
    np.save(tmp_path / "x.npy", x)
    script = Path(sys.executable).parent / "jaxgmm"
    port = free_port()
    common = ["fit", str(tmp_path / "x.npy"), "-k", "3", "--json", "-q", "--distributed"]
    common += ["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2"]
    procs = [
        subprocess.Popen(
            [str(script), *common, "--process-id", str(i), "-o", str(tmp_path / f"m{i}.jgmm")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert outs[1][0] == "" and not (tmp_path / "m1.jgmm").exists()  # process 0 reports
    summary = __import__("json").loads(outs[0][0])
    one = subprocess.run(
        [str(script), "fit", str(tmp_path / "x.npy"), "-k", "3", "--json", "-q",
         "--memory-budget", "1KB", "-o", str(tmp_path / "one.jgmm")],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    alone = __import__("json").loads(one.stdout)
    assert summary["n_iter"] == alone["n_iter"]
    np.testing.assert_allclose(summary["means"], alone["means"], rtol=1e-10)


def test_the_variational_mixture_refuses_a_multi_process_run(monkeypatch):
    monkeypatch.setattr(distributed, "process_count", lambda: 2)
    x = rows(n=100, d=2, seed=1)
    with pytest.raises(ValueError, match="BayesianGaussianMixture fits in one process"):
        jaxgmm.BayesianGaussianMixture(n_components=2).fit(x)
