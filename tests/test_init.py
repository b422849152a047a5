"""Initializations (``jaxgmm._init``): k-means++ seeding, Lloyd's k-means against
scikit-learn's, and the parameters each method starts EM from."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import COV_TYPES
from sklearn.cluster import KMeans

from jaxgmm import _init
from jaxgmm._covariance import covariance_class
from jaxgmm._rows import make_blocks
from jaxgmm._typing import x64_scope

CENTRES = np.array([[0.0, 0.0], [100.0, 0.0], [0.0, 100.0], [100.0, 100.0]])


def _blobs(per_blob=25, seed=0, offset=0.0):
    rng = np.random.default_rng(seed)
    x = np.concatenate([c + rng.standard_normal((per_blob, 2)) for c in CENTRES]) + offset
    return x, np.repeat(np.arange(len(CENTRES)), per_blob)


def _blocks(x, w=None, block_rows=16):
    w = np.ones(len(x)) if w is None else w
    return make_blocks(jnp.asarray(x), jnp.asarray(w), block_rows, center="mean")


@pytest.mark.parametrize("seed", range(4))
def test_kmeans_plusplus_seeds_one_row_in_each_far_apart_blob(seed):
    x, label = _blobs()
    with x64_scope(np.float64):
        idx = np.asarray(_init.kmeans_plusplus(jax.random.key(seed), _blocks(x), 4))
    assert idx.max() < len(x)  # real rows, never the padding
    assert sorted(label[idx]) == [0, 1, 2, 3]


def test_kmeans_plusplus_never_draws_rows_of_zero_weight():
    """A fifth, far blob with weight 0 does not exist for the seeding."""
    x, _ = _blobs()
    far = np.full((25, 2), 1e4) + np.random.default_rng(1).standard_normal((25, 2))
    xs = np.concatenate([x, far])
    w = np.r_[np.ones(len(x)), np.zeros(len(far))]
    with x64_scope(np.float64):
        for seed in range(3):
            idx = np.asarray(_init.kmeans_plusplus(jax.random.key(seed), _blocks(xs, w), 6))
            assert idx.max() < len(x)


@pytest.mark.parametrize("weighted", [False, True])
def test_kmeans_plusplus_never_draws_blocks_past_the_data(weighted):
    # The rows are padded to a shared program's size in whole blocks (plan_rows):
    # blocks with no data keep k-means++'s distances at +inf, and 0 * inf = NaN
    # once drew zero padding rows as centres (every centre after the first).
    x, label = _blobs()
    padded = np.concatenate([x, np.zeros((60, 2))])  # 7 blocks of 16 rows of data, 10 in all
    w = jnp.asarray(np.r_[np.ones(len(x)), np.zeros(60)]) if weighted else None
    blocks = make_blocks(jnp.asarray(padded), w, 16, n_samples=len(x), center="mean")
    assert blocks.x.shape[0] == 10 and int(blocks.n_used) == 7
    with x64_scope(np.float64):
        for seed in range(3):
            idx = np.asarray(_init.kmeans_plusplus(jax.random.key(seed), blocks, 4))
            assert idx.max() < len(x)
            assert sorted(label[idx]) == [0, 1, 2, 3]


def test_rows_are_drawn_in_proportion_block_by_block():
    """The two-stage draw (a block by its sum, then a row in it) draws row i with
    probability p_i / sum p, and never a row with p = 0 (zeros inside blocks, a whole
    block of zeros, and zeros at a block's end)."""
    rng = np.random.default_rng(5)
    p = rng.uniform(0, 1, 64) * (rng.uniform(size=64) > 0.3)
    p[16:32] = 0
    p[47] = p[63] = 0
    with x64_scope(np.float64):
        blocks = make_blocks(jnp.zeros((64, 1)), None, 16)
        pb = jnp.asarray(p).reshape(4, 16)
        idx = np.asarray(_init._sample_rows(jax.random.key(0), lambda b: pb[b], blocks, 40_000))
    counts = np.bincount(idx, minlength=64)
    assert not counts[p == 0].any()
    expected = 40_000 * p / p.sum()
    assert np.all(np.abs(counts - expected) <= 5 * np.sqrt(expected) + 1)


def test_unit_weights_seed_as_explicit_ones():
    x, _ = _blobs(seed=4)
    with x64_scope(np.float64):
        implicit = make_blocks(jnp.asarray(x), None, 16, center="mean")
        for seed in range(3):
            a = _init.kmeans_plusplus(jax.random.key(seed), implicit, 4)
            b = _init.kmeans_plusplus(jax.random.key(seed), _blocks(x), 4)
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_kmeans_plusplus_is_a_function_of_the_key():
    x, _ = _blobs(seed=2)
    with x64_scope(np.float64):
        blocks = _blocks(x)
        a = _init.kmeans_plusplus(jax.random.key(7), blocks, 5)
        b = _init.kmeans_plusplus(jax.random.key(7), blocks, 5)
        c = _init.kmeans_plusplus(jax.random.key(8), blocks, 5)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(c))


@pytest.mark.parametrize("offset", [0.0, 1e6])  # far from the origin too
def test_lloyd_matches_scikit_learn_from_the_same_seeds(offset):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((300, 3)) * [1.0, 2.0, 0.5] + offset
    w = rng.uniform(0.2, 2.0, 300)
    seeds = x[[0, 50, 100, 150, 200]]
    with x64_scope(np.float64):
        blocks = _blocks(x, w, block_rows=64)
        ours = _init.kmeans(jnp.asarray(seeds) - blocks.center, blocks)
        ours = np.asarray(ours + blocks.center)
    ref = KMeans(5, init=seeds, n_init=1, algorithm="lloyd", tol=1e-4, max_iter=300)
    ref.fit(x, sample_weight=w)
    np.testing.assert_allclose(ours, ref.cluster_centers_, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("method", list(_init.INIT_METHODS))
@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_every_method_gives_a_valid_mixture(method, cov_type):
    x, _ = _blobs(per_blob=10, seed=4)
    cls = covariance_class(cov_type)
    active = jnp.array([True, True, True, True, False])  # a batch padded to K=5
    with x64_scope(np.float64):
        params = _init.initialize(
            jax.random.key(0), _blocks(x), 5, cls, method, jnp.asarray(1e-6), active
        )
        weights, means = np.asarray(params.weights), np.asarray(params.means)
        precisions = np.asarray(params.covariance.precisions())
    assert weights.shape == (5,) and means.shape == (5, 2)
    if method in ("k-means++", "random_from_data"):
        # one row per component: weight 1/n each, as scikit-learn starts them (equal
        # weights, so the first E-step is the same as with normalised ones)
        np.testing.assert_allclose(weights[:4], 1 / len(x), rtol=1e-12)
    else:
        np.testing.assert_allclose(weights[:4].sum(), 1.0, rtol=1e-12)
    assert (weights[:4] > 0).all() and weights[4] == 0
    assert np.isfinite(means[:4]).all() and np.isfinite(precisions).all()
    if method in ("kmeans", "k-means++"):  # one start in each far-apart blob
        nearest = np.argmin(((means[:4, None] - CENTRES[None]) ** 2).sum(-1), 1)
        assert sorted(nearest) == [0, 1, 2, 3]


@pytest.mark.parametrize("method", ["k-means++", "random_from_data"])
def test_row_starts_are_data_rows_with_reg_covar_covariances(method):
    """Methods that start each component at one row: its mean is that row exactly
    and its covariance exactly reg_covar times the identity, even far from 0."""
    x, _ = _blobs(per_blob=10, seed=5, offset=1e7)
    reg = 1e-4
    with x64_scope(np.float64):
        params = _init.initialize(
            jax.random.key(1), _blocks(x), 3, covariance_class("full"), method, jnp.asarray(reg)
        )
        means = np.asarray(params.means)
        precisions = np.asarray(params.covariance.precisions())
    assert all((x == m).all(1).any() for m in means)
    np.testing.assert_allclose(precisions, np.broadcast_to(np.eye(2) / reg, (3, 2, 2)), rtol=1e-9)


def test_unknown_method_is_a_clear_error():
    x, _ = _blobs(per_blob=5)
    with x64_scope(np.float64), pytest.raises(ValueError, match="init"):
        _init.initialize(
            jax.random.key(0), _blocks(x), 2, covariance_class("full"), "nope", jnp.asarray(1e-6)
        )


@pytest.mark.parametrize("cov", [*COV_TYPES, "VVE", "EVI"])
def test_hard_assignments_estimate_as_the_centred_m_step_of_one_hot_responsibilities(cov):
    """A start from hard assignments (k-means centres, a partition) forms each row's
    difference to its own component's mean alone; it equals the exact centred
    M-step of the one-hot responsibilities, over several blocks, with weights, a
    row assigned to none, an empty component, and tight blobs 1e6 from the origin."""
    from jaxgmm._em import centred_estimate, labelled_estimate

    x, labels = _blobs(per_blob=23, offset=1e6)
    x = (x - 1e6) * 1e-3 + 1e6  # std 1e-3 at 1e6: raw moments would cancel
    rng = np.random.default_rng(3)
    w = rng.uniform(0.5, 2.0, len(x))
    labels = np.where(labels == 3, 4, labels)  # component 3 empty, 4 of 5 used
    labels[7] = -1  # in no component
    cls, k = covariance_class(cov), 5
    with x64_scope(np.float64):
        blocks = _blocks(x, w, block_rows=16)
        padded = np.full(blocks.x.shape[0] * blocks.x.shape[1], -1)
        padded[: len(x)] = labels
        per_block = jnp.asarray(padded.reshape(blocks.x.shape[:2]))
        assign = lambda _x, wb, b: (per_block[b], wb)

        def one_hot(xb, wb, b):
            return jax.nn.one_hot(per_block[b], k, dtype=xb.dtype) * wb[:, None]

        active = jnp.ones(k, bool)
        hard = labelled_estimate(assign, blocks, cls, 1e-12, k, blocks.total, active)
        soft = centred_estimate(one_hot, blocks, cls, 1e-12, blocks.total, active)[0]
        spread = np.asarray(hard.covariance.variances())  # (1 or K) x D
    np.testing.assert_allclose(hard.weights, soft.weights, rtol=1e-14)
    np.testing.assert_allclose(hard.means, soft.means, rtol=1e-15)
    np.testing.assert_allclose(
        hard.covariance.covariances, soft.covariance.covariances, rtol=1e-11, atol=1e-20
    )
    used = np.asarray(hard.weights) > 1e-6  # the empty one keeps 10 eps, as scikit-learn
    assert used.sum() == 4
    spread = spread[used] if spread.shape[0] == len(used) else spread
    assert np.all(spread > 1e-7) and np.all(spread < 1e-5)  # about (1e-3)^2
