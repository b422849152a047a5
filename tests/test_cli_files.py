"""The command line's files and terminal output (issue 14): reading CSV-like text of
every common shape (pyarrow's reader, delimiters, compression, standard input,
encodings), skipping text columns, writing every format it reads, the row id that
joins dropped rows back, ``--precision``, output that fits 100 columns, ``-k`` lists,
the edge-of-range note, the top three models, flags in messages, ``python -m``."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import os
import subprocess
import sys

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from test_cli import SCRIPT, bad, run

from jaxgmm.cli._datafiles import DataError, ReadOptions, read_table
from jaxgmm.cli._fit import parse_k

LONG = "a column name far longer than any terminal column should be"


@pytest.fixture(scope="module")
def env():
    # the test run's program cache (conftest.py): the same shapes compile once
    return dict(os.environ, JAX_PLATFORMS="cpu")


@pytest.fixture(scope="module")
def frame():
    """Four blobs in 3 numeric columns, an id, a text column, a constant column and a
    long-named one; the rows as text lines of a ';'-separated, decimal-comma file."""
    x, y = make_blobs(120, 3, centers=[[0, 0, 0], [6, 0, 0], [0, 6, 0], [0, 0, 6]], random_state=0)
    names = ["id", "a", "b", LONG, "kind", "const"]
    rows = [
        [str(i), f"{r[0]:.6f}", f"{r[1]:.6f}", f"{r[2]:.6f}", f"g{label}", "7"]
        for i, (r, label) in enumerate(zip(x, y, strict=True))
    ]
    return names, rows, x


def _text(names, rows, delimiter=",", decimal="."):
    lines = [delimiter.join(names)]
    lines += [delimiter.join(v.replace(".", decimal) for v in r) for r in rows]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def files(tmp_path_factory, frame):
    names, rows, _ = frame
    d = tmp_path_factory.mktemp("files")
    plain = _text(names, rows)
    (d / "data.csv").write_text(plain)
    (d / "semi.csv").write_text(_text(names, rows, ";", ","))
    (d / "data.tsv").write_text(_text(names, rows, "\t"))
    (d / "blank.txt").write_text(_text([n.replace(" ", "_") for n in names], rows, "   "))
    (d / "data.csv.gz").write_bytes(gzip.compress(plain.encode()))
    (d / "data.csv.bz2").write_bytes(bz2.compress(plain.encode()))
    (d / "data.csv.xz").write_bytes(lzma.compress(plain.encode()))
    (d / "latin.csv").write_bytes(_text(["é" + n for n in names], rows).encode("latin-1"))
    (d / "noext").write_text(plain)
    return d


def test_every_shape_of_text_reads_to_the_same_typed_columns(files, frame):
    x = frame[2]
    for name, options in [
        ("data.csv", ReadOptions()),
        ("semi.csv", ReadOptions()),  # ';' and 3,14 sniffed
        ("data.tsv", ReadOptions()),
        ("data.csv.gz", ReadOptions()),
        ("data.csv.bz2", ReadOptions()),
        ("data.csv.xz", ReadOptions()),
        ("noext", ReadOptions(format="csv")),
        ("semi.csv", ReadOptions(delimiter=";")),
        ("latin.csv", ReadOptions(encoding="latin-1")),
    ]:
        table = read_table(files / name, options)
        np.testing.assert_array_equal(table.numeric(table.names[1:3])[0], np.round(x[:, :2], 6))
        numeric, other = table.numeric_names()
        assert len(numeric) == 5 and len(other) == 1, (name, numeric, other)
        assert table.columns[0].dtype == np.int64, name  # ids stay integers
    blank = read_table(files / "blank.txt")  # runs of spaces
    assert blank.names[3] == LONG.replace(" ", "_") and blank.n_rows == len(x)


def test_decompressed_bytes_reach_pyarrow_in_its_own_memory(files, tmp_path, monkeypatch):
    """Decompressed bytes go to pyarrow's threaded readers in a buffer it owns: a worker
    that drops the last reference to a buffer Python owns takes the GIL, and during
    interpreter exit that aborted ``jaxgmm predict`` on a .gz (apache/arrow#34314)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    given = []
    reader = pa.BufferReader
    monkeypatch.setattr(pa, "BufferReader", lambda b: given.append(b) or reader(b))
    pq.write_table(pa.table({"a": [1.5, 2.5]}), tmp_path / "t.parquet")
    (tmp_path / "t.parquet.gz").write_bytes(gzip.compress((tmp_path / "t.parquet").read_bytes()))
    assert read_table(files / "data.csv.gz").n_rows == 120
    assert read_table(tmp_path / "t.parquet.gz").numeric(["a"])[0].tolist() == [[1.5], [2.5]]
    assert len(given) == 2
    assert all(isinstance(buffer, pa.Buffer) for buffer in given)  # none wraps bytes


def test_reading_problems_name_the_line_and_the_fix(tmp_path):
    (tmp_path / "ragged.csv").write_text("a,b\n1,2\n\n3,4\n5\n")
    with pytest.raises(DataError, match=r"line 5 has 1 fields, the header has 2.*--delimiter"):
        read_table(tmp_path / "ragged.csv")
    (tmp_path / "text.csv").write_text("a,b\n1,2\n\n3,x\n")
    table = read_table(tmp_path / "text.csv")
    with pytest.raises(DataError, match=r"column 'b' is not numeric \('x' at line 4\)"):
        table.numeric(["a", "b"])
    (tmp_path / "latin.csv").write_bytes("a,b\n1,\xe9\n".encode("latin-1"))
    for delimiter in (None, " "):  # pyarrow's reader, and Python's decoding
        with pytest.raises(DataError, match=r"not utf-8 text.*--encoding latin-1"):
            read_table(tmp_path / "latin.csv", ReadOptions(delimiter=delimiter))
    with pytest.raises(DataError, match="--format"):
        read_table(tmp_path / "ragged.csv", ReadOptions(format="xls"))


def test_k_takes_numbers_ranges_and_lists():
    assert parse_k("4") == ([4], False)
    assert parse_k("2:4") == ([2, 3, 4], True)
    assert parse_k("2,3,5") == ([2, 3, 5], True)
    assert parse_k("1:3,8") == ([1, 2, 3, 8], True)


def test_fit_from_standard_input_skips_text_and_fits_within_100_columns(env, files, tmp_path):
    """';'-separated decimal-comma text on stdin, compressed: the id excluded, the text
    column skipped with a note, the constant column kept and left unscaled by
    --standardize; the report fits 100 columns, shows the top three models and says
    the chosen K is the edge of the range."""
    model = tmp_path / "m.jgmm"
    semi = (files / "semi.csv").read_bytes()
    proc = subprocess.run(
        [str(SCRIPT), "fit", "-", "-k", "1,2", "--covariance", "sklearn", "--n-init", "1",
         "--exclude", "id", "--standardize", "-o", str(model)],
        input=semi, capture_output=True, env=env, timeout=300,
    )  # fmt: skip
    out, err = proc.stdout.decode(), proc.stderr.decode()
    assert proc.returncode == 0, err
    assert "skipped 1 non-numeric column(s): kind" in err
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 100, out
    assert lines[0].startswith("top 3 of 8 models by BIC") and "<- chosen" in lines[1]
    assert "K=2 is the largest K tried" in out and "-k 1:4" in out
    assert any(line.strip().startswith("rows") for line in lines)  # the component sizes
    info = run(env, "info", model.name, cwd=tmp_path).stdout
    assert max(len(line) for line in info.splitlines()) <= 100, info
    from jaxgmm.cli._common import load_model

    fitted, _, record = load_model(model)
    assert record.columns == ["a", "b", LONG, "const"]
    assert record.standardization.scale[-1] == 1.0  # constant: centred, not scaled
    assert fitted.n_components == 2


def test_predict_with_dropna_keeps_a_row_id_and_writes_every_format(env, files, tmp_path):
    model = tmp_path / "m.jgmm"
    run(env, "fit", files / "data.csv", "-k", "2", "--n-init", "1", "--columns", "a,b",
        "-o", model, "-q")  # fmt: skip
    holes = (files / "data.csv").read_text().splitlines()
    holes[3] = holes[3].replace(holes[3].split(",")[1], "NA", 1)  # row 2's 'a' is missing
    (tmp_path / "holes.csv.gz").write_bytes(gzip.compress(("\n".join(holes) + "\n").encode()))
    for suffix in (".csv", ".tsv", ".txt", ".npz", ".parquet", ".csv.gz", ".csv.zst"):
        out = tmp_path / f"out{suffix}"
        proc = run(env, "predict", model, tmp_path / "holes.csv.gz", "--dropna", "--proba",
                   "-o", out)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        table = read_table(out)
        assert table.names[:2] == ["row", "id"] and table.names[-3:] == [
            "component", "proba_0", "proba_1"
        ]  # fmt: skip
        row, ids = table.columns[0], table.columns[1]
        assert row.dtype == np.int64 and ids.dtype == np.int64, suffix
        np.testing.assert_array_equal(row, np.delete(np.arange(120), 2))
        np.testing.assert_array_equal(ids, row)  # the id column joins back alike
        assert table.columns[table.names.index("kind")][0] == "g" + holes[1].split(",")[4][1:]
    text = (tmp_path / "out.csv").read_text().splitlines()[1].split(",")
    mantissa = text[-1].split("e")[0].replace(".", "").lstrip("0")
    assert 1 <= len(mantissa) <= 6, text  # --precision's default: 6 significant digits


def test_precision_json_and_python_dash_m(env, files, tmp_path):
    model = tmp_path / "m.jgmm"
    run(env, "fit", files / "data.csv", "-k", "2", "--n-init", "1", "--columns", "a,b",
        "-o", model, "-q")  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "jaxgmm", "score", str(model), str(files / "data.csv"),
         "--precision", "3", "--json"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    value = rows[0]["log_likelihood"]
    assert value == float(f"{value:.3g}") and rows[0]["a"] == float(f"{rows[0]['a']:.6f}")


def test_messages_name_the_commands_flags(env, files, tmp_path):
    proc = run(env, "fit", files / "data.csv", "-k", "3", "--columns", "a,b", "--max-iter", "1",
               "--n-init", "1", "-o", tmp_path / "m.jgmm", "-q")  # fmt: skip
    warning = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert warning and "--max-iter" in warning[0] and "max_iter" not in warning[0]
    bad(env, "fit", files / "data.csv", "-k", "2,x", expect="-k '2,x'")
    bad(env, "fit", files / "data.csv", "--exclude", "zz", expect="--exclude names no column")
    bad(env, "fit", "-", "-k", "2", expect="name the model file with -o")


def test_numbers_come_from_arrow_buffers_with_nulls_offsets_and_chunks():
    """The reader converts pyarrow's columns itself (pyarrow's to_numpy imports
    pandas): every integer and float width, nulls, sliced chunks."""
    import pyarrow as pa

    from jaxgmm.cli._datafiles import _numpy_column

    rng = np.random.default_rng(0)
    values = [None if rng.random() < 0.2 else int(rng.integers(0, 100)) for _ in range(1000)]
    for kind in (pa.int8(), pa.uint16(), pa.int64(), pa.uint64(), pa.float32(), pa.float64()):
        for nulls in (True, False):
            v = values if nulls else [7 if x is None else x for x in values]
            parts = [pa.array(v[:300], kind), pa.array(v[300:], kind).slice(5, 500)]
            column = pa.chunked_array([*parts, pa.array(v[:17], kind).slice(3)])
            got = _numpy_column(pa, column)
            want = np.array([np.nan if x is None else x for x in column.to_pylist()], float)
            np.testing.assert_array_equal(got.astype(float), want)
            assert (got.dtype.kind in "iu") == (pa.types.is_integer(kind) and not nulls)


def test_top_models_put_degenerate_fits_last_and_say_why():
    from jaxgmm.cli._common import top_models

    table = {
        "covariance_type": ["diag", "diag", "full"],
        "n_components": [8, 10, 8],
        "bic": [100.0, 50.0, 120.0],
        "degenerate": [False, True, False],
    }
    lines = top_models(table, "bic", ("diag", 8)).splitlines()
    assert "K=8" in lines[1] and "<- chosen" in lines[1]
    assert "full" in lines[2] and "K=10" in lines[3] and "too few rows" in lines[3]
