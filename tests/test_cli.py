"""End to end: the real ``jaxgmm`` console script in a subprocess, on small files."""

from __future__ import annotations

import csv
import json
import os
import re
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import jaxgmm

SCRIPT = Path(sys.executable).parent / "jaxgmm"


@pytest.fixture(scope="module")
def env():
    # the test run's program cache (conftest.py): the same shapes compile once
    return dict(os.environ, JAX_PLATFORMS="cpu")


def run(env, *args, cwd=None, extra_env=None):
    proc = subprocess.run(
        [str(SCRIPT), *map(str, args)],
        capture_output=True,
        text=True,
        env=dict(env, **(extra_env or {})),
        cwd=cwd,
        timeout=300,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def bad(env, *args, expect: str):
    """A bad-input case: exit code 2 and one line on stderr naming the problem."""
    proc = run(env, *args)
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert expect in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The seed's blobs as a CSV with a header and a text column, and as .npy."""
    d = tmp_path_factory.mktemp("data")
    x, y = jaxgmm.make_seed_blobs(0)
    with open(d / "blobs.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["a", "b", "label"])
        w.writerows(
            [[repr(float(r[0])), repr(float(r[1])), f"g{lab}"] for r, lab in zip(x, y, strict=True)]
        )
    np.save(d / "blobs.npy", x)
    return d, x, y


@pytest.fixture(scope="module")
def auto_model(env, data):
    d, _, _ = data
    proc = run(
        env,
        "fit",
        d / "blobs.csv",
        "--columns",
        "a,b",
        "-k",
        "1:6",
        "--n-init",
        "3",
        "-o",
        d / "auto.jgmm",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    return d / "auto.jgmm", json.loads(proc.stdout)


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


def test_fit_auto_chooses_four_and_writes_model(auto_model):
    path, summary = auto_model
    assert path.exists()
    assert summary["n_components"] == 4 and summary["columns"] == ["a", "b"]
    table = summary["table"]
    types = set(table["covariance_type"])  # mclust's 14 families, the four by sklearn's names
    assert len(types) == 14 and {"diag", "full", "spherical", "tied", "EII", "VVE"} <= types
    assert sorted(set(table["n_components"])) == [1, 2, 3, 4, 5, 6]
    assert np.isclose(sum(summary["weights"]), 1)
    assert not list(path.parent.glob(".*.jaxgmm-tmp"))  # atomic writes leave nothing behind


@pytest.fixture(scope="module")
def k3_model(env, data):
    """A fixed-K fit on standardised columns: (model path, the fit's output)."""
    d, _, _ = data
    proc = run(env, "fit", d / "blobs.npy", "-k", "3", "--standardize", "-o", d / "k3.jgmm")
    assert proc.returncode == 0, proc.stderr
    return d / "k3.jgmm", proc


def test_fit_fixed_k_text_summary_and_standardize(env, data, k3_model):
    d, x, _ = data
    proc = k3_model[1]
    assert "K=3" in proc.stdout and "weight" in proc.stdout and "standardised" in proc.stdout
    # the standardisation is undone: the means are in the data's units
    info = json.loads(run(env, "info", d / "k3.jgmm", "--json").stdout)
    assert info["standardized"] and info["columns"] == ["x0", "x1"]
    means = np.asarray(info["means"])
    assert means.min() > x.min() - 1 and means.max() < x.max() + 1
    # score in the data's units equals a plain fit's density up to the fit's tolerance
    scores = run(env, "score", d / "k3.jgmm", d / "blobs.npy", "--json")
    ll = np.array([r["log_likelihood"] for r in json.loads(scores.stdout)])
    plain = jaxgmm.GaussianMixture(3, n_init=5, random_state=0).fit(x)
    assert abs(ll.mean() - plain.score(x)) < 0.05


def test_predict_keeps_columns_and_probabilities(env, data, auto_model):
    d, x, y = data
    out = d / "labelled.csv"
    proc = run(
        env, "predict", auto_model[0], d / "blobs.csv", "--proba", "--precision", "17", "-o", out
    )
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert len(rows) == len(x)
    assert list(rows[0])[:4] == ["a", "b", "label", "component"]
    assert rows[0]["label"] == f"g{y[0]}" and float(rows[0]["a"]) == x[0, 0]
    proba = np.array([[float(r[f"proba_{k}"]) for k in range(4)] for r in rows])
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-9)
    labels = np.array([int(r["component"]) for r in rows])
    np.testing.assert_array_equal(labels, proba.argmax(1))
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(y, labels) > 0.8
    # stdout CSV when no -o
    proc = run(env, "predict", auto_model[0], d / "blobs.csv")
    assert proc.stdout.splitlines()[0] == "a,b,label,component"


def test_score_outliers(env, data, auto_model):
    d, _x, _ = data
    proc = run(
        env, "score", auto_model[0], d / "blobs.csv", "--outliers", "0.05", "-o", d / "scores.tsv"
    )
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader((d / "scores.tsv").read_text().splitlines(), delimiter="\t"))
    flags = np.array([int(r["outlier"]) for r in rows])
    ll = np.array([float(r["log_likelihood"]) for r in rows])
    assert 3 <= flags.sum() <= 8  # about 5% of the training rows
    assert ll[flags == 1].max() < ll[flags == 0].min()
    assert "below the 0.05 quantile" in proc.stderr


def test_sample_is_reproducible(env, auto_model, tmp_path):
    model = auto_model[0]
    a = run(env, "sample", model, "-n", "50", "--seed", "1").stdout
    b = run(env, "sample", model, "-n", "50", "--seed", "1").stdout
    c = run(env, "sample", model, "-n", "50", "--seed", "2").stdout
    assert a == b != c
    lines = a.splitlines()
    assert lines[0] == "a,b,component" and len(lines) == 51
    proc = run(env, "sample", model, "-n", "20", "-o", tmp_path / "s.npy")
    assert proc.returncode == 0 and np.load(tmp_path / "s.npy").shape == (20, 3)


def test_plot_png_sizes(env, data, auto_model, k3_model, tmp_path):
    pytest.importorskip("matplotlib")
    d, _, _ = data
    out = tmp_path / "fig.png"
    proc = run(env, "plot", auto_model[0], d / "blobs.csv", "-o", out, "--json")
    assert proc.returncode == 0, proc.stderr
    assert png_size(out) == (1280, 480)  # the scatter and the criterion panel
    report = json.loads(proc.stdout)
    assert report == {
        "output": str(out),
        "kind": "classification",
        "panels": ["classification", "bic"],
        "format": "png",
        "width": 1280,
        "height": 480,
    }
    proc = run(env, "plot", k3_model[0], d / "blobs.npy", "--pca", "--dpi", "50", "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert png_size(out) == (320, 240)  # a fixed K: the scatter alone
    from matplotlib.image import imread

    assert imread(out).shape[:2] == (240, 320)


def test_info_text_and_json(env, auto_model):
    proc = run(env, "info", auto_model[0])
    assert proc.returncode == 0
    assert "format version 1" in proc.stdout and "a, b" in proc.stdout
    info = json.loads(run(env, "info", auto_model[0], "--json").stdout)
    assert info["format_version"] == 1 and info["n_components"] == 4 and info["converged"]


def test_parquet_in_and_out(env, data, auto_model, tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    _, x, _ = data
    pq.write_table(pa.table({"a": x[:, 0], "b": x[:, 1]}), tmp_path / "blobs.parquet")
    proc = run(
        env, "predict", auto_model[0], tmp_path / "blobs.parquet", "-o", tmp_path / "out.parquet"
    )
    assert proc.returncode == 0, proc.stderr
    out = pq.read_table(tmp_path / "out.parquet")
    assert out.column_names == ["a", "b", "component"] and out.num_rows == len(x)


def test_missing_pyarrow_says_how_to_install(env, data, tmp_path):
    (tmp_path / "x.parquet").write_bytes(b"PAR1")
    code = textwrap.dedent(
        f"""
        import sys
        sys.modules["pyarrow"] = None  # as if it were not installed
        from jaxgmm.cli import main
        raise SystemExit(main(["fit", {str(tmp_path / "x.parquet")!r}, "-k", "2"]))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 2 and "pip install" in proc.stderr and "pyarrow" in proc.stderr


def test_dropna(env, tmp_path):
    x, _ = jaxgmm.make_seed_blobs(1)
    lines = ["a,b"] + [f"{r[0]},{r[1]}" for r in x]
    lines[3] = "NA,1.0"
    lines[7] = "2.0,"
    (tmp_path / "holes.csv").write_text("\n".join(lines) + "\n")
    msg = bad(env, "fit", tmp_path / "holes.csv", "-k", "2", expect="2 row(s) with missing")
    assert "--dropna" in msg and "'a': 1" in msg
    proc = run(
        env,
        "fit",
        tmp_path / "holes.csv",
        "-k",
        "2",
        "--dropna",
        "--json",
        "-o",
        tmp_path / "m.jgmm",
    )
    assert proc.returncode == 0 and json.loads(proc.stdout)["rows"] == len(x) - 2


def test_bad_inputs_are_one_line_errors(env, data, auto_model, tmp_path):
    d, _, _ = data
    bad(env, "fit", tmp_path / "nope.csv", expect="nope.csv: no such file")
    (tmp_path / "data.xyz").write_text("1,2\n")
    bad(env, "fit", tmp_path / "data.xyz", expect="unknown file format '.xyz'")
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    bad(env, "fit", tmp_path / "junk.parquet", expect="junk.parquet")
    bad(
        env,
        "fit",
        d / "blobs.csv",
        "-k",
        "2",
        "--columns",
        "a,label",
        expect="column 'label' is not numeric ('g1' at line 2)",
    )
    (tmp_path / "few.csv").write_text("a,b\n1,2\n3,4\n5,7\n")
    bad(env, "fit", tmp_path / "few.csv", "-k", "5", expect="3 row(s) with data but K=5")
    bad(env, "fit", d / "blobs.csv", "-k", "zero", expect="-k 'zero'")
    (tmp_path / "ragged.csv").write_text("a,b\n1,2\n3\n")
    bad(env, "fit", tmp_path / "ragged.csv", expect="line 3 has 1 fields")
    bad(env, "fit", d / "blobs.csv", "--columns", "a,zz", expect="no column 'zz'")
    # model files that are not ours, or broken
    bad(env, "predict", d / "blobs.csv", d / "blobs.csv", expect="not a jaxgmm model file")
    truncated = tmp_path / "cut.jgmm"
    truncated.write_bytes(auto_model[0].read_bytes()[:200])
    bad(env, "info", truncated, expect="cut.jgmm")
    bad(env, "info", tmp_path / "missing.jgmm", expect="no such model file")
    # columns at predict that do not match the model's
    (tmp_path / "other.csv").write_text("a,c\n1,2\n3,4\n")
    bad(env, "predict", auto_model[0], tmp_path / "other.csv", expect="lacks 'b'")
    bad(env, "score", auto_model[0], d / "blobs.csv", "--outliers", "2", expect="--outliers")
    bad(
        env,
        "plot",
        auto_model[0],
        d / "blobs.csv",
        "--x",
        "q",
        "-o",
        tmp_path / "f.png",
        expect="--x 'q'",
    )
    # a usage error is argparse's: exit 2 too
    assert run(env, "fit").returncode == 2


def test_failed_fit_leaves_existing_model_alone(env, data, auto_model):
    d, _, _ = data
    before = auto_model[0].read_bytes()
    bad(env, "fit", d / "blobs.csv", "-k", "2", "--columns", "a,label", "-o", auto_model[0],
        expect="not numeric")  # fmt: skip
    assert auto_model[0].read_bytes() == before


def test_interrupted_write_leaves_no_partial_file(tmp_path, monkeypatch):
    from jaxgmm._io import atomic_write

    target = tmp_path / "model.jgmm"
    target.write_bytes(b"old")

    def write(f):
        f.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, write)
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["model.jgmm"]


def test_progress_on_stderr_only_when_asked(env, data):
    d, _, _ = data
    args = ("fit", d / "blobs.npy", "-k", "2", "-o", d / "p.jgmm")
    shown = run(env, *args, extra_env={"JAXGMM_PROGRESS": "always"})
    assert shown.returncode == 0 and "fitting" in shown.stderr and "lower bound" in shown.stderr
    quiet = run(env, *args, "--quiet", extra_env={"JAXGMM_PROGRESS": "always"})
    assert quiet.returncode == 0 and quiet.stderr == "" and quiet.stdout == ""
    plain = run(env, *args)  # stderr is a pipe here, not a terminal
    assert "fitting" not in plain.stderr


@pytest.mark.parametrize("command", ["fit", "predict", "score", "sample", "plot", "demo", "info"])
def test_help_has_examples(env, command):
    proc = run(env, command, "--help")
    assert (
        proc.returncode == 0 and "examples:" in proc.stdout and f"jaxgmm {command}" in (proc.stdout)
    )


def test_demo_writes_report_and_png(env, tmp_path):
    pytest.importorskip("matplotlib")
    proc = run(env, "demo", "--n-init", "2", "-o", tmp_path / "demo.png", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "chosen: K=4" in proc.stdout and "adjusted Rand index" in proc.stdout
    assert png_size(tmp_path / "demo.png") == (1280, 480)
    out = json.loads(run(env, "demo", "--n-init", "2", "--json", cwd=tmp_path).stdout)
    assert out["n_components"] == 4 and out["adjusted_rand_index"] > 0.8
    assert len(out["table"]["bic"]) == 14 * 8 and "top 5 of 112 models" in proc.stdout
    # the printed table numbers components as the model (and the plot) do
    lines = proc.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("component  true blob"))
    rows = [re.findall(r"-?\d+(?:\.\d+)?", line) for line in lines[start + 1 : start + 5]]
    assert [int(r[0]) for r in rows] == [0, 1, 2, 3]
    assert sorted(int(r[1]) for r in rows) == [0, 1, 2, 3]  # the matched true blob
    for r in rows:
        k = int(r[0])
        assert float(r[2]) == pytest.approx(out["weights"][k], abs=6e-4)
        assert float(r[4]) == pytest.approx(out["means"][k][0], abs=6e-4)
    assert (tmp_path / "jaxgmm-demo.png").exists()  # the default name, in the cwd


def test_outputs_keep_numbers_numeric(env, data, auto_model, tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    _, x, _ = data
    lines = ["a,b,count,maybe,label"]
    lines += [
        f"{float(r[0])!r},{float(r[1])!r},{i},{'NA' if i == 2 else i / 2},g{i}"
        for i, r in enumerate(x)
    ]
    (tmp_path / "typed.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.parquet"
    proc = run(env, "predict", auto_model[0], tmp_path / "typed.csv", "-o", out)
    assert proc.returncode == 0, proc.stderr
    schema = pq.read_table(out).schema
    assert [str(schema.field(n).type) for n in schema.names] == [
        "double",
        "double",
        "int64",
        "double",
        "string",
        "int64",
    ]
    assert pq.read_table(out).column("a").to_pylist() == x[:, 0].tolist()
    rows = json.loads(run(env, "predict", auto_model[0], tmp_path / "typed.csv", "--json").stdout)
    assert rows[0]["a"] == x[0, 0] and rows[1]["count"] == 1 and rows[0]["label"] == "g0"
    assert rows[2]["maybe"] is None and rows[3]["maybe"] == 1.5
    # CSV writes the input's numbers as read (missing ones empty, as pandas does)
    proc = run(env, "predict", auto_model[0], tmp_path / "typed.csv")
    assert proc.stdout.splitlines()[3].startswith(lines[3].replace("NA", "") + ",")
    assert proc.stdout.splitlines()[4].startswith(lines[4] + ",")
    del pa


def test_numeric_looking_header_is_a_header(env, tmp_path):
    years = tmp_path / "years.csv"
    years.write_text("2019,2020\n1.5,2.5\n1.7,2.1\n9.0,8.2\n9.1,8.8\n")
    proc = run(env, "fit", years, "-k", "2", "--json", "-o", tmp_path / "y.jgmm")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["rows"] == 4 and summary["columns"] == ["2019", "2020"]
    note = proc.stderr.strip().splitlines()
    assert len(note) == 1 and "column names" in note[0] and "--no-header" in note[0]
    quiet = run(env, "fit", years, "-k", "2", "-q", "-o", tmp_path / "y.jgmm")
    assert quiet.returncode == 0 and quiet.stderr == ""
    proc = run(env, "fit", years, "-k", "2", "--no-header", "--json", "-o", tmp_path / "n.jgmm")
    summary = json.loads(proc.stdout)
    assert summary["rows"] == 5 and summary["columns"] == ["x0", "x1"]
    assert proc.stderr == ""
    # the flag is on every command that reads data
    for command in ("predict", "score", "plot"):
        assert "--no-header" in run(env, command, "--help").stdout
    proc = run(env, "predict", tmp_path / "n.jgmm", years, "--no-header", "--json")
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)) == 5


def test_npy_with_text_column_and_npz_output(env, data, auto_model, tmp_path):
    d, x, y = data
    msg = bad(
        env, "predict", auto_model[0], d / "blobs.csv", "-o", tmp_path / "x.npy", expect="'label'"
    )
    assert ".npz" in msg and ".parquet" in msg
    assert not (tmp_path / "x.npy").exists()
    out = tmp_path / "x.npz"
    proc = run(env, "predict", auto_model[0], d / "blobs.csv", "-o", out)
    assert proc.returncode == 0, proc.stderr
    with np.load(out, allow_pickle=False) as f:  # one array per column, by name
        assert f.files == ["a", "b", "label", "component"]
        np.testing.assert_array_equal(f["a"], x[:, 0])
        assert f["label"].dtype.kind == "U" and f["component"].dtype.kind == "i"
    # and read back as a table
    proc = run(env, "score", auto_model[0], out, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["label"] == f"g{y[0]}"


def test_standardised_fit_reports_the_data_units(env, data, tmp_path):
    _, x, _ = data
    np.save(tmp_path / "scaled.npy", x * 1000)
    model = tmp_path / "s.jgmm"
    proc = run(
        env, "fit", tmp_path / "scaled.npy", "-k", "1:3", "--covariance", "full",
        "--standardize", "-o", model, "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    table, n = summary["table"], x.shape[0]
    row = table["n_components"].index(summary["n_components"])
    # the criterion table's log-likelihood is the summary's (data units), not the
    # standardised one (which is larger by n log(1000 std) per dimension)
    assert table["log_likelihood"][row] / n == pytest.approx(summary["log_likelihood_per_row"])
    p = 6 * summary["n_components"] - 1
    assert table["bic"][row] == pytest.approx(-2 * table["log_likelihood"][row] + p * np.log(n))
    plain = jaxgmm.GaussianMixture(summary["n_components"], n_init=3, random_state=0)
    assert summary["log_likelihood_per_row"] == pytest.approx(
        plain.fit(x * 1000).score(x * 1000), abs=0.05
    )
    info = json.loads(run(env, "info", model, "--json").stdout)
    assert info["lower_bound"] == pytest.approx(summary["log_likelihood_per_row"], abs=0.01)


def test_fit_streams_a_file_over_the_memory_budget(env, data, tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    d, x, _ = data
    table = pa.table({"a": x[:, 0], "b": x[:, 1], "note": ["r"] * len(x)})
    pq.write_table(table, tmp_path / "blobs.parquet", row_group_size=17)
    common = ["-k", "4", "--standardize", "--json", "-q"]
    streamed = run(
        env, "fit", tmp_path / "blobs.parquet", *common, "--memory-budget", "1KB",
        "-o", tmp_path / "s.jgmm",
    )  # fmt: skip
    assert streamed.returncode == 0, streamed.stderr
    in_memory = run(env, "fit", d / "blobs.npy", *common, "-o", tmp_path / "m.jgmm")
    a, b = json.loads(streamed.stdout), json.loads(in_memory.stdout)
    assert a["columns"] == ["a", "b"] and a["rows"] == len(x)  # the text column is not read
    assert a["n_iter"] == b["n_iter"]
    np.testing.assert_allclose(a["means"], b["means"], rtol=1e-9)
    np.testing.assert_allclose(a["log_likelihood_per_row"], b["log_likelihood_per_row"], rtol=1e-9)
    model = jaxgmm.load(tmp_path / "s.jgmm")
    assert list(model.feature_names_in_) == ["a", "b"]
    bad(
        env, "fit", d / "blobs.csv", "-k", "2", "--memory-budget", "1KB",
        expect="only .npy and Parquet files",
    )  # fmt: skip
    bad(env, "fit", d / "blobs.npy", "-k", "2", "--memory-budget", "a lot", expect="4GB, 512MB")
    bad(env, "fit", d / "blobs.npy", "-k", "2", "--process-id", "1", expect="go with --distributed")
