"""mclust's default start: model-based agglomerative hierarchical clustering.

``mclust::Mclust`` starts EM for every family and K from one partition of the data:
the K-cluster level of a hierarchy built by merging, at each step, the pair of clusters
whose merge costs least under the unconstrained (VVV) Gaussian classification
likelihood, on data transformed by a scaled SVD (``hc(modelName="VVV", use="SVD")``,
its defaults). Its local optima are the reference our k-means restarts are compared
against, and a start from the same partition reaches them; so the model-selection
sweep runs this start as one more restart of every model (:func:`partitions`).

The criterion (Fraley 1998, "Algorithms for model-based Gaussian hierarchical
clustering", SIAM J. Sci. Comput. 20(1), section 3; Banfield and Raftery 1993): a
cluster of ``n`` points with scatter matrix ``W`` (about its mean) costs

    n log( det(W / n) + beta (tr(W) + alpha) / n ),

the classification likelihood's ``n log det(W / n)`` made finite for clusters of at
most ``p`` points (whose ``W`` is singular) by the trace term; ``beta = 1`` and
``alpha`` is the data's total scatter over ``n p`` (mclust's ``alpha = 1`` times
``traceW(data / sqrt(n p))``). Merging clusters i and j changes the total by
``cost(i u j) - cost(i) - cost(j)``; each step merges the pair of least change.

Written here in NumPy from those formulas: the pair costs are held in an ``n x n``
matrix and each step recomputes one row of it (the merged cluster against every other,
batched), with each cluster's cheapest partner kept so that the step's minimum is a
scan of ``n`` values. Rows beyond :data:`MAX_ROWS` are subsampled as mclust does
(its ``subset`` option, 2000 by default), and fewer for wide data.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = ["MAX_ROWS", "merges", "partitions", "sampled_partitions", "svd_scaled"]

#: The most rows the hierarchy is built on (mclust's ``subset`` default); a larger
#: data set contributes a random sample of this many rows.
MAX_ROWS = 2000
#: Each step holds a p x p scatter matrix per cluster: rows x features is capped at
#: this (2000 rows up to 8 features; 1.6 s there), so that wide data stays cheap.
MAX_ROWS_FEATURES = 16000


def svd_scaled(x: np.ndarray) -> np.ndarray:
    """mclust's ``hcUse = "SVD"`` transform: each feature standardised (R's
    ``scale``, sample standard deviation; constant features dropped), then rotated
    onto its singular vectors and divided by the square roots of the singular values
    (null directions dropped)."""
    x = np.asarray(x, np.float64)
    sd = x.std(axis=0, ddof=1) if x.shape[0] > 1 else np.zeros(x.shape[1])
    keep = np.isfinite(sd) & (sd > 0)
    z = (x[:, keep] - x[:, keep].mean(axis=0)) / sd[keep]
    if z.shape[1] == 0:
        return z
    _, s, vt = np.linalg.svd(z, full_matrices=False)
    kept = s > s[0] * max(z.shape) * np.finfo(np.float64).eps
    return z @ vt[kept].T / np.sqrt(s[kept])


def _cost(count, trace, logdet, alpha, beta=1.0):
    """``n log(det(W / n) + beta (tr W + alpha) / n)``, with ``logdet = log det(W / n)``
    (-inf where singular), written as a log-add for range."""
    return count * np.logaddexp(logdet, np.log(beta * (trace + alpha) / count))


class _Clusters:
    """The hierarchy's live clusters: counts, means, scatter matrices, traces and
    costs, indexed by their first row."""

    def __init__(self, z: np.ndarray):
        n, p = z.shape
        self.p = p
        # mclust: alpha * traceW(data / sqrt(n p)), alpha = 1
        self.alpha = max(np.sum((z - z.mean(axis=0)) ** 2) / (n * p), np.finfo(np.float64).eps)
        self.count = np.ones(n)
        self.mean = z.copy()
        self.scatter = np.zeros((n, p, p))
        self.trace = np.zeros(n)
        self.cost = _cost(self.count, self.trace, -np.inf, self.alpha)

    def joined(self, a: int, others: np.ndarray):
        """Scatter, trace and cost of cluster ``a`` merged with each of ``others``."""
        na, nc = self.count[a], self.count[others]
        delta = self.mean[others] - self.mean[a]
        f = na * nc / (na + nc)
        scatter = (
            self.scatter[a]
            + self.scatter[others]
            + f[:, None, None] * (delta[:, :, None] * delta[:, None, :])
        )
        trace = self.trace[a] + self.trace[others] + f * np.sum(delta * delta, axis=1)
        n = na + nc
        logdet = np.full(len(others), -np.inf)
        big = n > self.p  # at most p points: W is singular, det(W / n) = 0
        if big.any():
            sign, ld = np.linalg.slogdet(scatter[big] / n[big, None, None])
            logdet[big] = np.where(sign > 0, ld, -np.inf)
        return scatter, trace, _cost(n, trace, logdet, self.alpha)

    def merge(self, a: int, b: int) -> None:
        """Cluster ``b`` into cluster ``a``."""
        scatter, trace, cost = self.joined(a, np.array([b]))
        na, nb = self.count[a], self.count[b]
        self.mean[a] = (na * self.mean[a] + nb * self.mean[b]) / (na + nb)
        self.count[a] = na + nb
        self.scatter[a], self.trace[a], self.cost[a] = scatter[0], trace[0], cost[0]


def _singleton_pairs(z: np.ndarray, clusters: _Clusters) -> np.ndarray:
    """The change of every pair of single points: a pair's scatter is
    ``d d^T / 2`` (``d`` their difference), with trace ``|d|^2 / 2`` and, for one
    feature, determinant over 2 of ``|d|^2 / 4``."""
    sq = np.sum(z * z, axis=1)
    dist = np.maximum(sq[:, None] + sq[None, :] - 2 * z @ z.T, 0)
    with np.errstate(divide="ignore"):  # a repeated row: log 0 = -inf, as meant
        logdet = np.log(dist / 4) if clusters.p == 1 else -np.inf
        change = _cost(2.0, dist / 2, logdet, clusters.alpha) - 2 * clusters.cost[0]
    np.fill_diagonal(change, np.inf)
    return change


def merges(z: np.ndarray) -> np.ndarray:
    """The hierarchy over the rows of ``z`` (already transformed): an ``(n - 1, 2)``
    array of the merged clusters, each named by its first row; the merged cluster
    keeps the first name."""
    n = z.shape[0]
    clusters = _Clusters(np.asarray(z, np.float64))
    change = _singleton_pairs(clusters.mean, clusters) if n > 1 else np.zeros((n, n))
    live = np.ones(n, bool)
    best = change.argmin(axis=1) if n > 1 else np.zeros(n, int)
    best_change = change[np.arange(n), best]
    out = np.empty((max(n - 1, 0), 2), np.int64)
    for step in range(n - 1):
        i = int(np.argmin(best_change))
        a, b = sorted((i, int(best[i])))
        out[step] = a, b
        clusters.merge(a, b)
        live[b] = False
        change[b, :] = change[:, b] = np.inf
        best_change[b] = np.inf
        others = np.flatnonzero(live)
        others = others[others != a]
        if others.size == 0:
            break
        row = clusters.joined(a, others)[2] - clusters.cost[a] - clusters.cost[others]
        change[a, others] = change[others, a] = row
        # partners that were a or b: their cheapest partner is looked for again
        stale = others[(best[others] == a) | (best[others] == b)]
        if stale.size:
            best[stale] = change[stale].argmin(axis=1)
            best_change[stale] = change[stale, best[stale]]
        fresh = others[(row < best_change[others]) & ~np.isin(others, stale)]
        cheaper = change[a, fresh]
        best[fresh], best_change[fresh] = a, cheaper
        j = int(np.argmin(change[a]))
        best[a], best_change[a] = j, change[a, j]
    return out


def partitions(x: np.ndarray, ks: Iterable[int]) -> dict[int, np.ndarray]:
    """mclust's starting partition into K clusters of the rows of ``x``, for each K
    of ``ks`` with 1 <= K <= the rows: labels 0..K-1 (numbered by first row)."""
    z = svd_scaled(x)
    n = z.shape[0]
    if z.shape[1] == 0:  # every feature constant: nothing to cluster on
        return {}
    wanted = {int(k) for k in ks if 1 <= k <= n}
    labels = np.arange(n)
    out = {}
    if n in wanted:
        out[n] = labels.copy()
    for step, (a, b) in enumerate(merges(z) if n > 1 else ()):
        labels[labels == b] = a
        if n - step - 1 in wanted:
            out[n - step - 1] = np.unique(labels, return_inverse=True)[1]
    return out


def sampled_partitions(
    x: np.ndarray, sample_weight: np.ndarray | None, ks: Iterable[int], seed
) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """:func:`partitions` of the rows of positive weight, or of :data:`MAX_ROWS` of
    them (fewer for wide data, :data:`MAX_ROWS_FEATURES`) drawn without replacement
    (``seed`` seeds NumPy's generator; in order of row); returns the rows used
    (indices into ``x``, an array of the host or a device) and the partitions. The
    hierarchy itself does not weigh the rows."""
    rows = np.arange(x.shape[0]) if sample_weight is None else np.flatnonzero(sample_weight > 0)
    most = min(MAX_ROWS, max(MAX_ROWS_FEATURES // max(x.shape[1], 1), 2))
    if rows.size > most:
        rows = np.sort(np.random.default_rng(seed).choice(rows, most, replace=False))
    return rows, partitions(np.asarray(x[rows]), ks)
