"""Save and load fitted models: numpy arrays plus JSON metadata in one file, no pickle.

The file is a ``.npz`` archive (whatever its name): every array under its own name,
and ``__metadata__``, a JSON text with the format version, the estimator's class,
every constructor parameter (arrays by reference) and the fitted scalars. Loading
never unpickles anything, so a model file from elsewhere cannot run code.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["FORMAT_VERSION", "atomic_write", "load", "read_metadata", "save"]

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


def _registry() -> dict[str, type]:
    from .estimator import BayesianGaussianMixture, GaussianMixture, GaussianMixtureIC

    return {
        "GaussianMixture": GaussianMixture,
        "BayesianGaussianMixture": BayesianGaussianMixture,
        "GaussianMixtureIC": GaussianMixtureIC,
    }


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it into
    place: an interrupted write never leaves a half-written file at ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _jsonable(value, name: str, arrays: dict[str, np.ndarray]):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, (list, tuple)) and all(
        isinstance(v, (bool, int, float)) and np.isfinite(v) for v in value
    ):
        return [v for v in value]
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


def _read(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    try:
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
        meta = json.loads(str(arrays.pop("__metadata__")))
    except (FileNotFoundError, IsADirectoryError):
        raise
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError) as e:
        raise ValueError(
            f"{path}: not a jaxgmm model file, or it is truncated or corrupted ({e})"
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != "jaxgmm":
        raise ValueError(f"{path}: not a jaxgmm model file (no jaxgmm metadata)")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(
            f"{path}: written by a newer jaxgmm (format version {version}); this "
            f"jaxgmm reads format versions up to {FORMAT_VERSION}: upgrade jaxgmm"
        )
    return meta, arrays


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
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: corrupted jaxgmm model file ({type(e).__name__}: {e})") from None
    return estimator


def _restore(state: dict, arrays: dict[str, np.ndarray], prefix: str):
    """The estimator :func:`_state` wrote (raises KeyError, TypeError or ValueError
    on an inconsistent file)."""
    cls = _registry()[state["class"]]
    params = {}
    for name, value in state["params"].items():
        if isinstance(value, dict):
            value = arrays[value["array"]] if "array" in value else None
        params[name] = value
    estimator = cls(**params)
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
    return estimator
