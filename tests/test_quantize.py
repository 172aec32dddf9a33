"""int8 quantisation (lmcourse.quantize) against a direct reference."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lmcourse.models.gpt import GPT
from lmcourse.param_count import GPTConfig
from lmcourse.quantize import dequantize_int8, quantize_int8, quantize_model, quantized_bytes


def test_round_trip_error_at_most_half_a_step_per_channel():
    w = np.random.default_rng(0).normal(size=(40, 12)).astype(np.float32) * np.arange(1, 13)
    qt = quantize_int8(w, channel_axis=-1)
    assert qt.values.dtype == np.int8 and qt.scale.shape == (1, 12)
    np.testing.assert_allclose(qt.scale[0], np.abs(w).max(axis=0) / 127, rtol=1e-6)
    err = np.abs(dequantize_int8(qt) - w)
    assert (err <= qt.scale / 2 + 1e-7).all()
    assert np.abs(qt.values).max() == 127                       # each column's absmax maps to ±127
    rows = quantize_int8(w, channel_axis=0)
    assert rows.scale.shape == (40, 1)


def test_values_on_the_grid_come_back_exactly():
    scale = np.array([0.5, 0.01, 3.0], np.float32)
    q = np.array([[127, -3, 0], [-127, 127, 5], [1, 0, -127]], np.int8)
    w = q.astype(np.float32) * scale
    qt = quantize_int8(w)
    np.testing.assert_array_equal(qt.values, q)
    np.testing.assert_array_equal(dequantize_int8(qt), w)
    zero = quantize_int8(np.zeros((3, 2), np.float32))
    np.testing.assert_array_equal(dequantize_int8(zero), 0)


def test_refuses_bad_input():
    with pytest.raises(ValueError, match="NaN or infinite"):
        quantize_int8(np.array([[1.0, np.nan]], np.float32))
    with pytest.raises(ValueError, match="NaN or infinite"):
        quantize_int8(np.array([[1.0, np.inf]], np.float32))
    with pytest.raises(ValueError, match="floating-point"):
        quantize_int8(np.array([[1, 2]], np.int32))
    with pytest.raises(ValueError, match="channel_axis"):
        quantize_int8(np.ones((2, 2), np.float32), channel_axis=2)
    with pytest.raises(ValueError, match="scalar"):
        quantize_int8(np.float32(1.0))


def test_quantize_model_sizes_and_outputs():
    config = GPTConfig("q", vocab_size=20, d_model=16, layers=1, heads=2, n_ctx=8)
    model = GPT(config, rngs=nnx.Rngs(0))
    before = np.asarray(model.blocks[0].fc.kernel[...]).copy()
    qmodel, sizes = quantize_model(model)
    np.testing.assert_array_equal(np.asarray(model.blocks[0].fc.kernel[...]), before)  # unchanged
    d, f, v, t = 16, 64, 20, 8
    matrices = v * d + t * d + d * 3 * d + d * d + d * f + f * d
    channels = v + t + 3 * d + d + f + d          # embedding rows, kernel columns
    other = config.param_count() - matrices
    assert sizes["quantized_params"] == matrices
    assert sizes["float32_bytes"] == 4 * config.param_count()
    assert sizes["int8_bytes"] == quantized_bytes(matrices, channels, other)
    kernel = np.asarray(qmodel.blocks[0].fc.kernel[...])
    expected = dequantize_int8(quantize_int8(before, -1))
    np.testing.assert_array_equal(kernel, expected)
    x = jnp.arange(8)[None] % v
    diff = float(jnp.abs(model(x) - qmodel(x)).max())
    assert 0 < diff < 0.05
