"""Where rows come from (``jaxgmm._rows``): preparation, upload, blocks, the one
reduction over rows."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from jaxgmm import _rows
from jaxgmm._covariance import FullCovariance
from jaxgmm._typing import x64_scope


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("chunk_bytes", [None, 256])  # one copy; many small chunks
def test_upload_is_the_cast_padded_data(monkeypatch, dtype, chunk_bytes):
    if chunk_bytes is not None:
        monkeypatch.setattr(_rows, "_UPLOAD_CHUNK_BYTES", chunk_bytes)
    x = np.random.default_rng(0).standard_normal((203, 3))
    with x64_scope(dtype):
        up = np.asarray(_rows.upload(x, 256, dtype))
    assert up.dtype == dtype and up.shape == (256, 3)
    np.testing.assert_array_equal(up[:203], x.astype(dtype))
    assert not up[203:].any()
    assert x.dtype == np.float64  # the caller's array is untouched


def test_uploaded_rows_are_padded_with_zero_weight():
    x = np.random.default_rng(1).standard_normal((1000, 4))
    w = np.linspace(0.5, 2, 1000)
    with x64_scope(np.float64):
        plan = _rows.plan_rows(x, w, FullCovariance, np.float64)
        rows = plan.upload()
    xp, wp, block_rows = np.asarray(rows.x), np.asarray(rows.w), plan.block_rows
    assert int(rows.n_samples) == 1000 and xp.shape[0] % block_rows == 0 and xp.shape[0] >= 1000
    np.testing.assert_array_equal(xp[:1000], x)
    np.testing.assert_array_equal(wp[:1000], w)
    assert not wp[1000:].any() and not xp[1000:].any()


def test_unit_weights_are_never_stored():
    """Without sample weights no weight array is uploaded (it was 1/D of the data):
    block by block, the first n_samples rows weigh 1 and the padding 0."""
    x = np.random.default_rng(1).standard_normal((1000, 4)) + 5.0
    with x64_scope(np.float64):
        rows = _rows.plan_rows(x, None, FullCovariance, np.float64, block_rows=256).upload()
        assert rows.w is None and int(rows.n_samples) == 1000
        blocks = _rows.make_blocks(rows.x, rows.w, 256, rows.n_samples, center="mean")
        explicit = _rows.make_blocks(
            rows.x,
            jnp.asarray((np.arange(rows.x.shape[0]) < 1000).astype(float)),
            256,
            rows.n_samples,
            center="mean",
        )
        assert int(blocks.n_used) == 4 and blocks.w is None
        np.testing.assert_array_equal(np.asarray(blocks.block(3)[1]), np.arange(768, 1024) < 1000)
        for a, b in zip(
            (blocks.total, blocks.center, blocks.radius),
            (explicit.total, explicit.center, explicit.radius),
            strict=True,
        ):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert float(blocks.total) == 1000.0
        np.testing.assert_allclose(np.asarray(blocks.center), x.mean(0), rtol=1e-14)


def test_blocks_total_centre_radius_and_sum_rows():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((300, 3)) + 1e3
    w = rng.uniform(0, 2, 300)
    with x64_scope(np.float64):
        blocks = _rows.make_blocks(jnp.asarray(x), jnp.asarray(w), 64, center="mean")
        mean = (w @ x) / w.sum()
        np.testing.assert_allclose(float(blocks.total), w.sum(), rtol=1e-14)
        np.testing.assert_allclose(np.asarray(blocks.center), mean, rtol=1e-14)
        radius = np.sqrt(np.max(np.sum((x - mean) ** 2, 1)))
        np.testing.assert_allclose(float(blocks.radius), radius, rtol=1e-12)
        # the one reduction: a pytree of sums over the blocks that hold data
        sums = _rows.sum_rows(lambda xb, wb, b: {"n": jnp.sum(wb > 0), "x": wb @ xb}, blocks)
        assert int(sums["n"]) == np.count_nonzero(w)
        np.testing.assert_allclose(np.asarray(sums["x"]), w @ x, rtol=1e-13)
