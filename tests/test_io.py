"""Files the library writes and reads: modes, links, special files, stale temporaries,
and models that are checked when they are loaded."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

import jaxgmm
from jaxgmm._io import atomic_write


def _write(text: bytes):
    return lambda f: f.write(text)


@pytest.fixture
def umask():
    """Set the process umask for one test, restoring it afterwards."""
    previous = os.umask(0o022)
    os.umask(previous)
    yield os.umask
    os.umask(previous)


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_new_file_gets_the_umask_mode(tmp_path, umask, mask, mode):
    umask(mask)
    atomic_write(tmp_path / "new.csv", _write(b"a\n"))
    assert stat.S_IMODE(os.stat(tmp_path / "new.csv").st_mode) == mode


def test_overwritten_file_keeps_its_mode(tmp_path, umask):
    path = tmp_path / "kept.csv"
    path.write_bytes(b"old\n")
    os.chmod(path, 0o640)
    umask(0o077)
    atomic_write(path, _write(b"new\n"))
    assert path.read_bytes() == b"new\n"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640


def test_symlink_writes_its_target_and_stays_a_link(tmp_path):
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "model.jgmm"
    target.write_bytes(b"old")
    link = tmp_path / "link.jgmm"
    link.symlink_to(target)
    atomic_write(link, _write(b"new"))
    assert link.is_symlink() and target.read_bytes() == b"new"
    # the temporary file lived beside the target, and is gone
    assert sorted(p.name for p in (tmp_path / "real").iterdir()) == ["model.jgmm"]


def test_fifo_is_written_directly(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    atomic_write(fifo, _write(b"through the pipe"))
    reader.join(timeout=30)
    assert received == [b"through the pipe"]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]


def test_device_is_written_directly_never_replaced():
    # /dev/full: writing fails with "no space"; renaming over it (as root) would
    # have replaced the device node with a regular file.
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    with pytest.raises(OSError):
        atomic_write("/dev/full", _write(b"x" * 100_000))
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)
    assert not [n for n in os.listdir("/dev") if n.startswith(".full.")]


def test_dash_is_standard_output(monkeypatch):
    out = io.TextIOWrapper(io.BytesIO())
    monkeypatch.setattr(sys, "stdout", out)
    atomic_write("-", _write(b"to stdout"))
    assert out.buffer.getvalue() == b"to stdout"


def test_missing_directory_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nodir") as info:
        atomic_write(tmp_path / "nodir" / "x.csv", _write(b""))
    assert "does not exist" in str(info.value) and ".tmp" not in str(info.value)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temporaries_of_dead_writers_are_removed(tmp_path):
    dead = tmp_path / f".x.csv.{_dead_pid()}.abc123.jaxgmm-tmp"
    alive = tmp_path / f".x.csv.{os.getppid()}.def456.jaxgmm-tmp"  # a live writer's
    other = tmp_path / f".y.csv.{_dead_pid()}.ghi789.jaxgmm-tmp"  # another path's
    for p in (dead, alive, other):
        p.write_bytes(b"partial")
    atomic_write(tmp_path / "x.csv", _write(b"done"))
    assert not dead.exists() and alive.exists() and other.exists()
    assert (tmp_path / "x.csv").read_bytes() == b"done"


def test_kill_9_during_a_write_leaves_nothing_after_the_next_write(tmp_path):
    path = tmp_path / "big.npy"
    slow = (
        "import sys, time; from jaxgmm._io import atomic_write\n"
        "def write(f):\n"
        "    f.write(b'x' * 1_000_000); f.flush(); print('writing', flush=True); time.sleep(60)\n"
        f"atomic_write({str(path)!r}, write)\n"
    )
    with subprocess.Popen([sys.executable, "-c", slow], stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout.readline().strip() == "writing"
        proc.kill()
        proc.wait()
    assert len(list(tmp_path.glob(".big.npy.*.jaxgmm-tmp"))) == 1  # the debris
    atomic_write(path, _write(b"whole"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.npy"]


# --- models checked when they are loaded ---------------------------------------------


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A fitted model's file: (path, its arrays, its metadata)."""
    x = np.random.default_rng(0).normal(size=(40, 2))
    x[20:] += 6
    path = tmp_path_factory.mktemp("model") / "m.jgmm"
    jaxgmm.GaussianMixture(2, random_state=0).fit(x).save(path)
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    return path, arrays, json.loads(str(arrays["__metadata__"]))


def _tampered(tmp_path, saved, change_arrays=None, change_meta=None) -> Path:
    _, arrays, meta = saved
    arrays, meta = dict(arrays), json.loads(json.dumps(meta))
    if change_arrays:
        change_arrays(arrays)
    if change_meta:
        change_meta(meta)
    arrays["__metadata__"] = np.array(json.dumps(meta))
    path = tmp_path / "bad.jgmm"
    with open(path, "wb") as f:  # np.savez would add ".npz" to a name
        np.savez(f, **arrays)
    return path


def _set(where: str, name: str, value):
    def change(d):
        d[where][name] = value

    return change


@pytest.mark.parametrize(
    ("arrays", "meta", "message"),
    [
        (lambda a: a.update(means_=np.full((2, 2), np.nan)), None, "means_ holds NaN"),
        (lambda a: a.update(covariances_=np.ones((2, 2))), None, "covariances_ is float64"),
        (lambda a: a.pop("means_"), None, "no means_"),
        (lambda a: a.update(weights_=np.array([0.9, 0.9])), None, "weights_"),
        (None, lambda m: m.update(format_version=-1), "format version -1"),
        (None, lambda m: m.update(format_version=True), "format version True"),
        (None, _set("params", "n_components", -3), "n_components"),
        (None, _set("params", "covariance_type", "bogus"), "covariance_type"),
        (None, _set("attributes", "n_features_in_", 5), "n_features_in_"),
    ],
)
def test_inconsistent_model_file_is_refused_at_load(tmp_path, saved, arrays, meta, message):
    path = _tampered(tmp_path, saved, arrays, meta)
    with pytest.raises(ValueError, match=message) as info:
        jaxgmm.load(path)
    assert str(info.value).startswith(f"{path}: ")


def test_untouched_model_file_loads(saved):
    assert jaxgmm.load(saved[0]).means_.shape == (2, 2)


@pytest.mark.parametrize("kind", ["csv", "pickled npy", "empty zip"])
def test_not_a_model_file_never_suggests_unpickling(tmp_path, kind):
    path = tmp_path / "data.x"
    if kind == "csv":
        path.write_text("a,b\n1,2\n")
    elif kind == "pickled npy":
        with open(path, "wb") as f:
            np.save(f, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    else:
        zipfile.ZipFile(path, "w").close()
    with pytest.raises(ValueError, match="not a jaxgmm model file") as info:
        jaxgmm.load(path)
    assert "pickle" not in str(info.value)


def test_cli_writes_through_dash_and_dev_stdout(saved, tmp_path):
    script = Path(sys.executable).parent / "jaxgmm"
    data = tmp_path / "d.csv"
    data.write_text("x0,x1\n0.1,0.2\n6.0,6.1\n")
    env = dict(os.environ, JAXGMM_CACHE_DIR="off", JAX_PLATFORMS="cpu")
    for target in ("-", "/dev/stdout"):
        proc = subprocess.run(
            [str(script), "predict", str(saved[0]), str(data), "-o", target, "--quiet"],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.splitlines()[0] == "x0,x1,component"
        assert len(proc.stdout.splitlines()) == 3
    assert os.path.islink("/dev/stdout") or not os.path.isfile("/dev/stdout")
