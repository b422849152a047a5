"""Choosing the number of components: BIC / AIC / ICL over one compiled sweep.

For each covariance type, every K and every restart is fitted by ONE compiled program:
components are padded to K_max and the unused ones masked out (zero weight, excluded
from every statistic and from the likelihood), and the program is vmapped over
(K, restart) -- and sharded over devices like the core's restarts. Fit (K, i) uses
restart key i, so it equals the plain K-component fit from the same key; with the
hierarchical start, fit (K, n_init) starts from mclust's partition into K clusters
(:mod:`jaxgmm._agglomerate`), computed once on the host for every type.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence

import jax
import numpy as np

from . import _agglomerate, _progress, _spmd, distributed
from ._covariance import STRUCTURES, covariance_class
from ._engine import Batch, Inputs, Options, check_key, run, shared_centers
from ._families import FAMILIES
from ._init import INIT_METHODS
from ._multistart import across_processes, best_index, local_source, select, streams
from ._params import GMMParams
from ._stream import fit_groups, sample_starts
from ._typing import Array, Float, PRNGKeyArray, Status, x64_scope
from .data import ArraySource

__all__ = ["CRITERIA", "SweepResult", "sweep"]

CRITERIA = ("bic", "aic", "icl")


@dataclasses.dataclass(frozen=True)
class SweepResult:
    """One row per (covariance type, K); lower criterion values are better.

    Attributes
    ----------
    table : dict of ndarray
        Columns ``covariance_type``, ``n_components``, ``bic``, ``aic``, ``icl``,
        ``log_likelihood`` (summed over the weighted rows), ``n_parameters``,
        ``converged``, ``n_iter``, ``lower_bound``, ``status``,
        ``smallest_component`` (effective samples of the smallest component) and
        ``degenerate`` (see ``min_component_samples`` of :func:`sweep`).
    params : list of GMMParams
        The best restart of each row, with exactly ``n_components`` components.
    results : list of EMResult
        The best restart of each row as the core returns it (numpy arrays; its
        params trimmed to ``n_components``).
    criterion : str
        The criterion ``best`` minimises.
    best : int
        The chosen row.
    """

    table: dict[str, np.ndarray]
    params: list[GMMParams]
    results: list
    criterion: str
    best: int

    def to_dataframe(self):
        """The table as a pandas DataFrame (needs pandas)."""
        import pandas as pd

        return pd.DataFrame(self.table)

    def to_records(self) -> np.ndarray:
        """The table as a numpy structured array (one field per column)."""
        columns = {n: np.asarray(v) for n, v in self.table.items()}
        records = np.empty(len(columns["bic"]), [(n, v.dtype) for n, v in columns.items()])
        for name, values in columns.items():
            records[name] = values
        return records


def _n_parameters(cov_cls, k: int, d: int) -> int:
    return cov_cls.n_parameters(k, d) + k * d + k - 1


def sweep(
    key: PRNGKeyArray,
    X: Float[Array, "n_samples n_features"],
    n_components: Iterable[int] = range(1, 9),
    covariance_types: Sequence[str] = tuple(FAMILIES),
    *,
    n_init: int = 5,
    criterion: str = "bic",
    init_params: str = "kmeans",
    sample_weight: Float[Array, " n_samples"] | None = None,
    tol: float = 1e-3,
    reg_covar: float = 1e-6,
    max_iter: int = 100,
    n_devices: int | None = None,
    min_component_samples: float | str = "auto",
    hierarchical_start: bool = True,
) -> SweepResult:
    """Fit every K and covariance type with ``n_init`` restarts; score them.

    Parameters
    ----------
    key : jax.random key
        Restart i of every model uses ``jax.random.split(key, n_init)[i]`` (with
        the hierarchical start, ``split(key, n_init + 1)[i]``: the same keys under
        JAX's partitionable threefry, the default).
    X : array-like of shape (n_samples, n_features), data source or path
        A source (:mod:`jaxgmm.data`) is streamed: each iteration is one pass over
        its rows for every K and restart of a covariance type at once.
    n_components : iterable of int, default=range(1, 9)
    covariance_types : sequence of str, default=mclust's 14 families
        scikit-learn's names ('full', 'tied', 'diag', 'spherical') or mclust's
        (:mod:`jaxgmm._families`; 'VVV', 'EEE', 'VVI' and 'VII' are those four).
    n_init : int, default=5
    criterion : {'bic', 'aic', 'icl'}, default='bic'
        BIC and AIC are scikit-learn's; ICL is BIC plus twice the entropy of the
        responsibilities (mclust's integrated completed likelihood).
    init_params, sample_weight, tol, reg_covar, max_iter, n_devices
        As in :func:`jaxgmm.fit`.
    min_component_samples : float or 'auto', default='auto'
        A fit in which some component carries fewer effective samples (weight times
        the total sample weight) is *degenerate*: a component on one or two points is
        a likelihood spike held finite only by ``reg_covar``, not a cluster (mclust
        discards such singular fits too). Each row keeps its best non-degenerate
        restart, and ``best`` is the lowest criterion among non-degenerate rows
        (among all rows if every one is degenerate). 'auto' is ``n_features + 1``,
        the fewest points that span a ``n_features``-dimensional Gaussian; 0 turns the
        check off.
    hierarchical_start : bool, default=True
        Every model also starts once from mclust's default partition (one more
        restart than ``n_init``): the K-cluster level of model-based agglomerative
        clustering (unconstrained Gaussian criterion, on data scaled by an SVD;
        :mod:`jaxgmm._agglomerate`), built once on at most 2000 rows (a random sample
        of larger data, as mclust samples) and shared by every type. From it EM
        reaches the optima mclust reports, which the restarts may miss. Skipped for
        a K above the rows sampled, and for a streamed source or data split over
        processes (they start from the restarts alone).

    Returns
    -------
    SweepResult
    """
    check_key(key)
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    ks = tuple(sorted({int(k) for k in n_components}))
    if not ks or ks[0] < 1:
        raise ValueError(f"n_components must be positive integers, got {ks}")
    types = [covariance_class(c).name for c in covariance_types]
    # small data: beyond scikit-learn's four, one program for all the families
    families = any(covariance_class(t) not in STRUCTURES for t in types)
    if streams(X):
        check_key(key)
        source = local_source(X, sample_weight)
        d = source.n_features
    else:
        x = np.asarray(X) if not isinstance(X, jax.Array) else X
        d = x.shape[1]
        total = float(x.shape[0] if sample_weight is None else np.sum(sample_weight))
        if across_processes(X):  # every process's rows
            total = float(distributed.all_sum(np.asarray(total)))
    if min_component_samples == "auto":
        min_component_samples = d + 1
    elif not (isinstance(min_component_samples, int | float) and min_component_samples >= 0):
        raise ValueError(
            "min_component_samples must be 'auto' or a non-negative number, "
            f"got {min_component_samples!r}"
        )
    rows: dict[str, list] = {c: [] for c in ("covariance_type", "family", "n_components")}
    rows.update({c: [] for c in CRITERIA})
    rows.update({c: [] for c in ("log_likelihood", "n_parameters", "converged", "n_iter")})
    rows.update({"lower_bound": [], "status": [], "smallest_component": [], "degenerate": []})
    params: list[GMMParams] = []
    fits = []
    if init_params not in INIT_METHODS:
        raise ValueError(f"init_params must be one of {sorted(INIT_METHODS)}, got {init_params!r}")
    across = across_processes(X)
    inputs = Inputs(tol=tol, reg_covar=reg_covar, lower_bound0=-np.inf)
    per_k = n_init  # fits of each K: the restarts, and the hierarchical start
    if hierarchical_start and not streams(X) and not across:
        partitioned = _with_partition(inputs, key, x, sample_weight, ks, n_init)
        if partitioned is not None:  # None: too few rows of positive weight
            inputs, per_k = partitioned, n_init + 1
    cells = Batch(ks, per_k, n_devices)
    if across:  # every fit's start, from the whole data's sample
        groups = [(covariance_class(name), ks) for name in types]
        kw = dict(n_init=n_init, init_params=init_params, given=(None,) * 3, params0=None)
        source = ArraySource(X, sample_weight)
        starts = sample_starts(key, source, groups, reg_covar=reg_covar, **kw)
    elif init_params == "kmeans" and len(types) > 1 and not streams(X):  # computed once
        cov_cls = covariance_class(types[0])
        centers = shared_centers(key, X, sample_weight, cov_cls, cells)
        inputs = dataclasses.replace(inputs, centers=centers)
    if streams(X):  # every type, K and restart in the same passes over the rows
        groups = [(covariance_class(name), ks) for name in types]
        kw = dict(n_init=n_init, init_params=init_params, max_iter=max_iter, tol=tol)
        each = fit_groups(key, source, groups, reg_covar=reg_covar, with_scores=True, **kw)
        streamed = dict(zip(types, each, strict=True))
    for name in types:
        cov_cls = covariance_class(name)
        if streams(X):
            results, (log_lik, entropy), total = streamed[name]
        else:
            options = Options(
                cov_cls,
                init=init_params,
                max_iter=max_iter,
                with_scores=True,
                families=families,
                sweep=len(types) > 1,
            )
            fit, given = run, inputs
            if across:  # one program over every process's rows
                options, given = _spmd.starting(options, inputs, *starts, types.index(name))
                fit = _spmd.run
            results, (log_lik, entropy) = fit(key, X, sample_weight, options, cells, given, True)
        with x64_scope(results.lower_bound.dtype):
            results = jax.tree_util.tree_map(np.asarray, results)
        log_lik, entropy = np.asarray(log_lik, np.float64), np.asarray(entropy, np.float64)
        weights = np.asarray(results.params.weights, np.float64)
        for j, k in enumerate(ks):
            batch = slice(j * per_k, (j + 1) * per_k)
            smallest = weights[batch, :k].min(axis=1) * total
            sound = smallest >= min_component_samples
            i = best_index(select(results, batch), among=sound if sound.any() else None)
            row = j * per_k + i
            best = select(results, row)
            failed = int(best.status) == Status.NON_FINITE
            p = _n_parameters(cov_cls, k, d)
            ll = -np.inf if failed else float(log_lik[row])
            bic = -2 * ll + p * math.log(total)
            rows["covariance_type"].append(name)
            rows["family"].append(cov_cls.family)
            rows["n_components"].append(k)
            rows["bic"].append(bic)
            rows["aic"].append(-2 * ll + 2 * p)
            rows["icl"].append(bic + 2 * float(entropy[row]))
            rows["log_likelihood"].append(ll)
            rows["n_parameters"].append(p)
            rows["converged"].append(bool(best.converged))
            rows["n_iter"].append(int(best.n_iter))
            rows["lower_bound"].append(float(best.lower_bound))
            rows["status"].append(Status(int(best.status)).name.lower())
            rows["smallest_component"].append(float(smallest[i]))
            rows["degenerate"].append(not bool(sound[i]))
            params.append(best.params.leading(k))
            fits.append(dataclasses.replace(best, params=params[-1]))
        _progress.models_done(len(ks))
    table = {name: np.asarray(values) for name, values in rows.items()}
    values = table[criterion]
    if not table["degenerate"].all():
        values = np.where(table["degenerate"], np.inf, values)
    return SweepResult(table, params, fits, criterion, int(np.argmin(values)))


def _with_partition(inputs: Inputs, key, x, sample_weight, ks, n_init) -> Inputs | None:
    """``inputs`` with mclust's hierarchical partition for every K as the last fit of
    that K (after its ``n_init`` restarts; -1: the restarts start otherwise), or None
    where there is no partition to start from."""
    seed = np.asarray(jax.random.key_data(jax.random.fold_in(key, 0x6863)))
    weights = None if sample_weight is None else np.asarray(sample_weight)
    rows, parts = _agglomerate.sampled_partitions(x, weights, ks, seed)
    if rows.size < 2 or not parts:
        return None
    # padded (row 0, label -1: no weight) to a power of two, so that nearby sizes of
    # small data keep sharing one compiled program
    size = 1 << (rows.size - 1).bit_length()
    labels = np.full((len(ks), n_init + 1, size), -1, np.int32)
    for j, k in enumerate(ks):
        if k in parts:  # K at most the rows sampled
            labels[j, n_init, : rows.size] = parts[k]
    labels = labels.reshape(len(ks) * (n_init + 1), size)
    rows = np.pad(rows.astype(np.int32), (0, size - rows.size))
    return dataclasses.replace(inputs, partition_rows=rows, partition=labels)
