"""Sufficient statistics (``jaxgmm._stats``): the seam between the E-step and the
M-step. Checked against sums written out in numpy, for every covariance type."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import COV_TYPES

from jaxgmm._covariance import covariance_class
from jaxgmm._em import phi_stats
from jaxgmm._stats import SuffStats
from jaxgmm._typing import x64_scope


def _data(n=50, d=3, k=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)) * [1.0, 3.0, 0.5][:d] + 2.0
    resp = rng.dirichlet(np.ones(k), n) * rng.uniform(0, 2, (n, 1))  # weighted
    return x, resp


def _second(cov_type, v):
    """numpy's q(v): the upper triangle of v v^T, v * v for per-feature variances,
    |v|^2 for one variance (spherical)."""
    if cov_type in ("full", "tied"):
        i, j = np.triu_indices(v.shape[-1])
        return v[..., i] * v[..., j]
    if cov_type == "spherical":
        return np.sum(v * v, axis=-1, keepdims=True)
    return v * v


@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_from_block_is_the_weighted_sums(cov_type):
    x, resp = _data()
    cls = covariance_class(cov_type)
    with x64_scope(np.float64):
        phi = jnp.stack([cls.features(jnp.asarray(r)) for r in x])
        stats = phi_stats(jnp.asarray(resp), phi, jnp.asarray(x), cls)
    np.testing.assert_allclose(np.asarray(stats.sum_r), resp.sum(0), rtol=1e-14)
    np.testing.assert_allclose(np.asarray(stats.sum_rx), resp.T @ x, rtol=1e-13)
    per_component = resp.T @ _second(cov_type, x)
    if cls.shared_second:  # tied: the components' sum, one row, from x^T x
        assert phi.shape[1] == 1 + x.shape[1]
        per_component = per_component.sum(0, keepdims=True)
    np.testing.assert_allclose(np.asarray(stats.sum_rxx), per_component, rtol=1e-13)
    assert stats.sum_rxx.shape == (len(per_component), cls.n_second(x.shape[1]))


@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_centred_statistics_are_sums_of_differences(cov_type):
    x, resp = _data(seed=1)
    shift = np.random.default_rng(2).standard_normal((resp.shape[1], x.shape[1]))
    cls = covariance_class(cov_type)
    with x64_scope(np.float64):
        stats = SuffStats.from_block_centered(
            jnp.asarray(resp), jnp.asarray(x), jnp.asarray(shift), cls.centered_second_moments
        )
    diff = x[:, None, :] - shift[None]  # (n, k, d)
    expected_rxx = np.einsum("nk,nks->ks", resp, _second(cov_type, diff))
    np.testing.assert_allclose(np.asarray(stats.sum_r), resp.sum(0), rtol=1e-14)
    np.testing.assert_allclose(
        np.asarray(stats.sum_rx), np.einsum("nk,nkd->kd", resp, diff), rtol=1e-12
    )
    np.testing.assert_allclose(np.asarray(stats.sum_rxx), expected_rxx, rtol=1e-12)


def test_centred_statistics_stay_exact_where_raw_moments_cancel():
    """A tight cluster at 1e8: raw second moments lose every digit of its spread; the
    statistics about the cluster's own centre keep it."""
    rng = np.random.default_rng(3)
    x = 1e8 + rng.standard_normal((40, 2)) * 1e-3
    resp = np.ones((40, 1))
    center = x.mean(0, keepdims=True)
    cls = covariance_class("full")
    with x64_scope(np.float64):
        stats = SuffStats.from_block_centered(
            jnp.asarray(resp), jnp.asarray(x), jnp.asarray(center), cls.centered_second_moments
        )
    d = x - center
    expected = np.array([d[:, 0] @ d[:, 0], d[:, 0] @ d[:, 1], d[:, 1] @ d[:, 1]])
    np.testing.assert_allclose(np.asarray(stats.sum_rxx)[0], expected, rtol=1e-10)


@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_statistics_of_two_halves_add_up_to_the_whole(cov_type):
    """Streaming is ``add``: what a chunked or multi-process reduction relies on."""
    x, resp = _data(n=64, seed=4)
    cls = covariance_class(cov_type)

    def stats_of(rows):
        phi = jnp.stack([cls.features(jnp.asarray(r)) for r in x[rows]])
        return SuffStats.from_block(jnp.asarray(resp[rows]), phi, x.shape[1])

    with x64_scope(np.float64):
        whole = stats_of(slice(None))
        halves = stats_of(slice(0, 23)).add(stats_of(slice(23, None)))
    for a, b in zip(
        (whole.sum_r, whole.sum_rx, whole.sum_rxx),
        (halves.sum_r, halves.sum_rx, halves.sum_rxx),
        strict=True,
    ):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-13)


def test_from_matrix_splits_resp_phi_into_the_three_sums():
    k, d = 2, 3
    s = jnp.arange(k * (1 + d + 6), dtype=jnp.float32).reshape(k, -1)
    stats = SuffStats.from_matrix(s, d)
    np.testing.assert_array_equal(np.asarray(stats.sum_r), np.asarray(s[:, 0]))
    np.testing.assert_array_equal(np.asarray(stats.sum_rx), np.asarray(s[:, 1:4]))
    np.testing.assert_array_equal(np.asarray(stats.sum_rxx), np.asarray(s[:, 4:]))
