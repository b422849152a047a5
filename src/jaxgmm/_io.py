"""Save and load fitted models: numpy arrays plus JSON metadata in one file, no pickle.

The file is a ``.npz`` archive (whatever its name): every array under its own name,
and ``__metadata__``, a JSON text with the format version, the estimator's class,
every constructor parameter (arrays by reference) and the fitted scalars. Loading
never unpickles anything, so a model file from elsewhere cannot run code.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["FORMAT_VERSION", "atomic_write", "load", "read_metadata", "register", "save"]

#: Version of the file layout; files from a newer version are refused with a message.
FORMAT_VERSION = 1

_ARRAY_ATTRS = (
    "weights_",
    "means_",
    "covariances_",
    "precisions_",
    "precisions_cholesky_",
    "feature_names_in_",
    # the variational mixture's posterior and priors
    "weight_concentration_",
    "mean_precision_",
    "degrees_of_freedom_",
    "mean_prior_",
    "covariance_prior_",
)
_SCALAR_ATTRS = (
    "converged_",
    "n_iter_",
    "lower_bound_",
    "lower_bounds_",
    "n_features_in_",
    "status_",
    "n_components_",  # GaussianMixtureIC's choice
    "covariance_type_",
    "weight_concentration_prior_",
    "mean_precision_prior_",
    "degrees_of_freedom_prior_",
)


#: The classes a model file may name, by class name; estimators join with
#: :func:`register` where they are defined (so that this module imports none of them).
_REGISTRY: dict[str, type] = {}


def register(cls: type) -> type:
    """Class decorator: let :func:`load` rebuild instances of ``cls``."""
    _REGISTRY[cls.__name__] = cls
    return cls


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call ``write(file)`` so that ``path`` never holds a half-written file.

    A regular file (or a new path) is written to a temporary file beside it, given the
    mode the old file had (or the one the umask gives a new file), and renamed into
    place; through a symlink, the link's target is replaced and the link kept.
    Anything else (``-`` for standard output, ``/dev/stdout``, a FIFO, a device) is
    written directly, since renaming over it would replace the device or pipe with a
    regular file. Temporary files left by a killed writer are removed on the next
    write to the same path.
    """
    if str(path) == "-":
        _write_stream(sys.stdout.buffer, write)
        return
    path = Path(path)
    try:
        st = os.stat(path)  # follows symlinks
    except FileNotFoundError:
        st = None
    if _written_directly(path, st):
        with open(path, "wb") as f:
            _write_stream(f, write)
        return
    target = Path(os.path.realpath(path))
    if not target.parent.is_dir():
        raise FileNotFoundError(
            f"{path}: the directory {path.parent} does not exist; create it first"
        )
    _remove_stale_temporaries(target)
    mode = stat.S_IMODE(st.st_mode) if st is not None else 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(
        dir=target.parent, prefix=_temporary_prefix(target, os.getpid()), suffix=_TEMPORARY_SUFFIX
    )
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _written_directly(path: Path, st) -> bool:
    """Standard streams and special files are written in place, never renamed over."""
    special = str(path).startswith(("/dev/", "/proc/"))
    return special or (st is not None and not stat.S_ISREG(st.st_mode))


def _write_stream(f, write) -> None:
    write(f)
    f.flush()


def _umask() -> int:
    """The process's umask, read without changing it where the system allows."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # no other portable way to read it
    os.umask(mask)
    return mask


_TEMPORARY_SUFFIX = ".jaxgmm-tmp"


def _temporary_prefix(target: Path, pid: int) -> str:
    # The writer's process id is in the name, so a later write can tell a file
    # left by a killed writer from one that another writer is still filling.
    return f".{target.name}.{pid}."


def _remove_stale_temporaries(target: Path) -> None:
    prefix = f".{target.name}."
    try:
        names = [
            n
            for n in os.listdir(target.parent)
            if n.startswith(prefix) and n.endswith(_TEMPORARY_SUFFIX)
        ]
    except OSError:
        return
    for name in names:
        pid_text = name[len(prefix) :].split(".", 1)[0]
        if pid_text.isdigit() and not _process_alive(int(pid_text)):
            (target.parent / name).unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def _jsonable(value, name: str, arrays: dict[str, np.ndarray]):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, (list, tuple)) and (
        all(isinstance(v, (bool, int, float)) and np.isfinite(v) for v in value)
        or all(isinstance(v, str) for v in value)
    ):
        return list(value)
    if isinstance(value, (np.ndarray, list, tuple)):
        arrays[f"param:{name}"] = np.asarray(value)
        return {"array": f"param:{name}"}
    # A RandomState instance cannot be stored faithfully without pickle.
    return {"unsaved": type(value).__name__}


def save(estimator, path: str | os.PathLike, extra: dict | None = None) -> None:
    """Write ``estimator`` (fitted or not) to ``path``.

    Parameters
    ----------
    estimator : GaussianMixture
    path : str or path-like
        The file to write; it is replaced atomically.
    extra : dict, optional
        JSON-serialisable metadata kept beside the model (the command line stores the
        data's column names and its standardisation there); see :func:`read_metadata`.
    """
    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {
        "format": "jaxgmm",
        "format_version": FORMAT_VERSION,
        **_state(estimator, "", arrays),
        "extra": extra or {},
    }
    arrays["__metadata__"] = np.array(json.dumps(meta))
    atomic_write(path, lambda f: np.savez(f, **arrays))


def _state(estimator, prefix: str, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """The JSON state of ``estimator``; its arrays go into ``arrays`` under names
    that start with ``prefix``. A model selection (``GaussianMixtureIC``) keeps its
    criterion table column by column and its chosen model, under ``best/``."""
    params = {
        name: _jsonable(value, prefix + name, arrays)
        for name, value in estimator.get_params().items()
    }
    fitted = hasattr(estimator, "means_") or hasattr(estimator, "best_estimator_")
    state: dict[str, Any] = {"class": type(estimator).__name__, "params": params, "fitted": fitted}
    if not fitted:
        return state
    for name in _ARRAY_ATTRS:
        if hasattr(estimator, name):
            value = np.asarray(getattr(estimator, name))
            # feature names are an object array in scikit-learn: store as text
            arrays[prefix + name] = value.astype(str) if value.dtype == object else value
    state["attributes"] = {
        name: _jsonable(getattr(estimator, name), prefix + name, arrays)
        for name in _SCALAR_ATTRS
        if hasattr(estimator, name)
    }
    if hasattr(estimator, "criterion_"):
        table = estimator.criterion_
        for column in table.dtype.names:
            arrays[f"{prefix}criterion:{column}"] = table[column]
        state["criterion_columns"] = list(table.dtype.names)
    if hasattr(estimator, "best_estimator_"):
        state["best"] = _state(estimator.best_estimator_, prefix + "best/", arrays)
    return state


_ZIP_MAGIC = b"PK\x03\x04"


def _read(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    try:
        with open(path, "rb") as f:
            if f.read(4) != _ZIP_MAGIC:
                raise ValueError(
                    f"{path}: not a jaxgmm model file (a model file is what `jaxgmm fit` "
                    "or estimator.save() writes)"
                )
            f.seek(0)
            with np.load(f, allow_pickle=False) as data:
                arrays = {name: data[name] for name in data.files}
        meta = json.loads(str(arrays.pop("__metadata__")))
    except (FileNotFoundError, IsADirectoryError):
        raise
    except ValueError as e:
        if str(e).startswith(f"{path}: "):
            raise
        raise _corrupted(path) from None
    except (zipfile.BadZipFile, KeyError, OSError, EOFError):
        raise _corrupted(path) from None
    if not isinstance(meta, dict) or meta.get("format") != "jaxgmm":
        raise ValueError(f"{path}: not a jaxgmm model file (no jaxgmm metadata)")
    version = meta.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"{path}: corrupted jaxgmm model file (format version {version!r})")
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{path}: written by a newer jaxgmm (format version {version}); this "
            f"jaxgmm reads format versions up to {FORMAT_VERSION}: upgrade jaxgmm"
        )
    return meta, arrays


def _corrupted(path: Path) -> ValueError:
    # Never numpy's own message: for a file with pickled data it suggests loading it
    # unsafely, which a model file never needs.
    return ValueError(f"{path}: not a jaxgmm model file, or it is truncated or corrupted")


def read_metadata(path: str | os.PathLike) -> dict:
    """The JSON metadata of a model file: ``format_version``, ``class``, ``params``,
    ``fitted``, ``attributes`` (fitted scalars) and ``extra`` (what :func:`save` was
    given; empty for files without it). Raises as :func:`load`."""
    meta = _read(Path(path))[0]
    meta.setdefault("extra", {})
    return meta


def load(path: str | os.PathLike):
    """Read a model written by :func:`save` (or ``estimator.save``).

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    estimator
        A new estimator of the saved class, fitted if the saved one was.

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    ValueError
        If the file is not a jaxgmm model, is truncated or corrupted, or was written
        by a newer jaxgmm; the message names the file.
    """
    path = Path(path)
    meta, arrays = _read(path)
    try:
        estimator = _restore(meta, arrays, "")
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        detail = f"missing {e}" if isinstance(e, KeyError) else str(e).splitlines()[0]
        raise ValueError(f"{path}: corrupted jaxgmm model file ({detail})") from None
    return estimator


def _restore(state: dict, arrays: dict[str, np.ndarray], prefix: str):
    """The estimator :func:`_state` wrote (raises KeyError, TypeError or ValueError
    on an inconsistent file)."""
    cls = _REGISTRY[state["class"]]
    params = {}
    for name, value in state["params"].items():
        if isinstance(value, dict):
            value = arrays[value["array"]] if "array" in value else None
        params[name] = value
    estimator = cls(**params)
    estimator._validate_params()  # scikit-learn's checks of each constructor parameter
    if not state.get("fitted"):
        return estimator
    for name in _ARRAY_ATTRS:
        if prefix + name in arrays:
            value = arrays[prefix + name]
            setattr(estimator, name, value.astype(object) if value.dtype.kind == "U" else value)
    for name, value in state["attributes"].items():
        if isinstance(value, dict):
            value = arrays[value["array"]] if "array" in value else None
        setattr(estimator, name, value)
    if hasattr(estimator, "lower_bound_"):
        estimator.lower_bound_ = float(estimator.lower_bound_)
    wc = getattr(estimator, "weight_concentration_", None)
    if wc is not None and np.ndim(wc) == 2:  # the Dirichlet process's Beta pair
        estimator.weight_concentration_ = (wc[0], wc[1])
    if "criterion_columns" in state:
        columns = {c: arrays[f"{prefix}criterion:{c}"] for c in state["criterion_columns"]}
        table = np.empty(len(columns["bic"]), [(c, v.dtype) for c, v in columns.items()])
        for column, values in columns.items():
            table[column] = values
        estimator.criterion_ = table
    if "best" in state:
        estimator.best_estimator_ = _restore(state["best"], arrays, prefix + "best/")
    _check_fitted(estimator)
    return estimator


def _check_fitted(estimator) -> None:
    """Raise ValueError unless the fitted attributes are present, finite and of the
    shapes the parameters give."""
    from ._covariance import covariance_class

    if hasattr(estimator, "_candidates"):  # a model selection: its choice and table
        estimator._candidates()
        for name in ("n_components_", "covariance_type_", "criterion_", "best_estimator_"):
            if not hasattr(estimator, name):
                raise ValueError(f"no {name}")
        return
    if not hasattr(estimator, "means_"):
        raise ValueError("no means_")
    k, d = np.shape(estimator.means_) if np.ndim(estimator.means_) == 2 else (-1, -1)
    if k != estimator.n_components:
        raise ValueError(
            f"means_ has shape {np.shape(estimator.means_)}, expected "
            f"(n_components={estimator.n_components}, n_features)"
        )
    cov_shape = covariance_class(estimator.covariance_type).shape(k, d)
    shapes = {
        "weights_": (k,),
        "means_": (k, d),
        "covariances_": cov_shape,
        "precisions_": cov_shape,
        "precisions_cholesky_": cov_shape,
        "mean_precision_": (k,),
        "degrees_of_freedom_": (k,),
    }
    if hasattr(estimator, "mean_precision_"):  # the variational posterior
        concentration = np.asarray(estimator.weight_concentration_)
        shapes["weight_concentration_"] = (*concentration.shape[:-1], k)
    for name, shape in shapes.items():
        if not hasattr(estimator, name):
            if name in ("mean_precision_", "degrees_of_freedom_"):
                continue
            raise ValueError(f"no {name}")
        value = np.asarray(getattr(estimator, name))
        if value.shape != shape or value.dtype.kind != "f":
            raise ValueError(f"{name} is {value.dtype} of shape {value.shape}, expected {shape}")
        if not np.all(np.isfinite(value)):
            raise ValueError(f"{name} holds NaN or infinite values")
    weights = np.asarray(estimator.weights_)
    if np.any(weights < 0) or abs(weights.sum() - 1) > 1e-6:
        raise ValueError("weights_ are not a probability vector (non-negative, summing to 1)")
    if getattr(estimator, "n_features_in_", d) != d:
        raise ValueError(f"n_features_in_ is {estimator.n_features_in_} but means_ has {d}")
