"""Tests of lmcourse.models.attention.

Scaled dot-product attention against explicit NumPy math, masking (masked keys get weight exactly
0), shapes, our multi-head attention against ``flax.nnx.MultiHeadAttention`` with the same
weights, padding invariance of the encoder block; the two facts chapter 05 teaches (the √d_k
scaling keeps the scores' variance at 1 under its assumption; attention without positions is
permutation-equivariant); and bad input: sizes, rates and shapes are rejected with a clear
``ValueError``, while each edge of a valid range (dropout 0 and 1) gives finite outputs and
finite gradients.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import lmcourse  # noqa: F401  (sets the CPU XLA flag before the first computation)
from lmcourse.models.attention import (
    EncoderBlock,
    MultiHeadAttention,
    padding_mask,
    scaled_dot_product_attention,
)


def _numpy_attention(q, k, v, mask=None):
    scores = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    w = np.exp(scores - scores.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    return w @ v, w


def test_sdpa_matches_numpy_and_shapes():
    rng = np.random.default_rng(0)
    q, k, v = (rng.normal(size=s).astype(np.float32) for s in [(2, 3, 5, 8), (2, 3, 7, 8), (2, 3, 7, 4)])
    out, w = scaled_dot_product_attention(jnp.asarray(q), jnp.asarray(k), jnp.asarray(v))
    ref_out, ref_w = _numpy_attention(q, k, v)
    assert out.shape == (2, 3, 5, 4) and w.shape == (2, 3, 5, 7)
    np.testing.assert_allclose(w, ref_w, atol=1e-6)
    np.testing.assert_allclose(out, ref_out, atol=1e-5)
    np.testing.assert_allclose(np.asarray(w).sum(-1), 1.0, atol=1e-6)


def test_masked_keys_get_zero_weight():
    rng = np.random.default_rng(1)
    q, k, v = (jnp.asarray(rng.normal(size=(2, 6, 8)), jnp.float32) for _ in range(3))
    keep = jnp.array([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0]])
    out, w = scaled_dot_product_attention(q, k, v, keep.astype(bool)[:, None, :])
    assert np.all(np.asarray(w)[0, :, 3:] == 0.0) and np.all(np.asarray(w)[1, :, 5:] == 0.0)
    # Same as attention over the real keys only.
    ref_out, _ = _numpy_attention(np.asarray(q[0]), np.asarray(k[0, :3]), np.asarray(v[0, :3]))
    np.testing.assert_allclose(out[0], ref_out, atol=1e-5)
    # Changing the masked values changes nothing.
    out2, _ = scaled_dot_product_attention(q, k, v.at[:, 5:].set(1e6), keep.astype(bool)[:, None, :])
    np.testing.assert_allclose(out2, out, atol=1e-6)


def test_fully_masked_query_gets_uniform_weights_not_nan():
    q = k = v = jnp.ones((1, 3, 4))
    _, w = scaled_dot_product_attention(q, k, v, jnp.zeros((1, 3, 3), bool))
    np.testing.assert_allclose(w, 1 / 3, atol=1e-6)


def test_multi_head_matches_flax():
    d, h = 16, 4
    ours = MultiHeadAttention(d, h, rngs=nnx.Rngs(0))
    theirs = nnx.MultiHeadAttention(num_heads=h, in_features=d, decode=False, rngs=nnx.Rngs(1))
    for name in ("query", "key", "value"):
        src, dst = getattr(ours, name), getattr(theirs, name)
        dst.kernel.set_value(src.kernel.get_value().reshape(d, h, d // h))
        dst.bias.set_value(src.bias.get_value().reshape(h, d // h))
    theirs.out.kernel.set_value(ours.out.kernel.get_value().reshape(h, d // h, d))
    theirs.out.bias.set_value(ours.out.bias.get_value())
    x = jax.random.normal(jax.random.key(2), (3, 5, d))
    keep = jnp.array([[1] * 5, [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]])
    y, w = ours(x, padding_mask(keep), return_weights=True)
    assert y.shape == (3, 5, d) and w.shape == (3, h, 5, 5)
    flax_mask = nnx.make_attention_mask(jnp.ones((3, 5)), keep)  # (B, 1, L, S)
    np.testing.assert_allclose(y, theirs(x, mask=flax_mask), atol=1e-5)
    np.testing.assert_allclose(ours(x), theirs(x), atol=1e-5)


def test_encoder_block_ignores_padding():
    block = EncoderBlock(16, 4, 64, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(0), (1, 4, 16))
    padded = jnp.concatenate([x, 100.0 * jnp.ones((1, 3, 16))], axis=1)
    keep = jnp.array([[1, 1, 1, 1, 0, 0, 0]])
    y_short = block(x)
    y_padded = block(padded, padding_mask(keep))
    assert y_padded.shape == (1, 7, 16)
    np.testing.assert_allclose(y_padded[:, :4], y_short, atol=1e-5)



def test_encoder_block_gelu_is_exact_by_default_and_tanh_on_request():
    block = EncoderBlock(16, 4, 64, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(0), (2, 5, 16))
    h = block.norm1(x + block.attention(x))
    for approximate in (False, True):
        block.gelu_approximate = approximate
        want = block.norm2(h + block.ff_out(jax.nn.gelu(block.ff_in(h), approximate=approximate)))
        np.testing.assert_allclose(block(x), want, atol=1e-6)
    block.gelu_approximate = False
    forward = nnx.jit(lambda m, x: m(x))
    exact = forward(block, x)
    block.gelu_approximate = True                        # a static attribute: jit recompiles
    tanh = forward(block, x)
    assert 0 < float(jnp.abs(tanh - exact).max()) < 1e-2
    with pytest.raises(TypeError, match="gelu_approximate"):
        EncoderBlock(16, 4, 64, rngs=nnx.Rngs(0), gelu_approximate="tanh")

# --- the two lessons of chapter 05 ---------------------------------------------------------------
def test_dot_product_variance_is_d_k_under_the_assumption():
    """Vaswani et al. 2017, §3.2.1, footnote 4: independent components, mean 0, variance 1 ⇒
    Var(q·k) = d_k; dividing by √d_k brings it back to 1. Not only for Gaussians."""
    rng = np.random.default_rng(0)
    for d_k in (4, 64, 512):
        for draw in (lambda s: rng.normal(size=s),                        # Gaussian
                     lambda s: rng.choice([-1.0, 1.0], size=s),           # ±1 (Rademacher)
                     lambda s: rng.uniform(-math.sqrt(3), math.sqrt(3), size=s)):  # uniform
            q, k = draw((2, 20_000, d_k))
            dots = (q * k).sum(-1)
            assert abs(dots.var() / d_k - 1) < 0.05
            assert abs((dots / math.sqrt(d_k)).var() - 1) < 0.05
    # With a nonzero mean μ the variance is no longer d_k: d_k((1+μ²)² − μ⁴) = d_k(1 + 2μ²).
    q, k = rng.normal(1.0, 1.0, size=(2, 20_000, 64))
    assert abs((q * k).sum(-1).var() / (64 * 3) - 1) < 0.05


@pytest.mark.parametrize("module", ["attention", "block"])
def test_self_attention_without_positions_is_permutation_equivariant(module):
    d, h = 16, 4
    f = (MultiHeadAttention(d, h, rngs=nnx.Rngs(0)) if module == "attention"
         else EncoderBlock(d, h, 32, rngs=nnx.Rngs(0)))
    x = jax.random.normal(jax.random.key(1), (2, 7, d))
    keep = jnp.array([[1] * 7, [1, 1, 1, 1, 1, 0, 0]])
    perm = np.random.default_rng(3).permutation(7)
    y = f(x, padding_mask(keep))
    y_perm = f(x[:, perm], padding_mask(keep[:, perm]))
    np.testing.assert_allclose(y_perm, y[:, perm], atol=1e-5)   # f(Px) = P f(x)
    assert not np.allclose(y_perm, y, atol=1e-3)                # ... and the rows did move


# --- bad input -------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, match", [
    ({"d_model": 10, "num_heads": 4}, "divisible"),
    ({"d_model": 0, "num_heads": 1}, "d_model"),
    ({"d_model": 8, "num_heads": 0}, "num_heads"),
    ({"d_model": 8, "num_heads": -2}, "num_heads"),
    ({"d_model": 8.0, "num_heads": 2}, "d_model"),
    ({"d_model": True, "num_heads": 1}, "d_model"),
])
def test_multi_head_rejects_bad_sizes(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MultiHeadAttention(**kwargs, rngs=nnx.Rngs(0))


@pytest.mark.parametrize("kwargs, match", [
    ({"d_ff": 0}, "d_ff"),
    ({"dropout_rate": -0.5}, r"dropout_rate.*\[0, 1\]"),
    ({"dropout_rate": 1.5}, r"dropout_rate.*\[0, 1\]"),
    ({"dropout_rate": float("nan")}, "dropout_rate"),
    ({"dropout_rate": "0.1"}, "dropout_rate"),
    ({"layer_norm_eps": 0.0}, "layer_norm_eps"),
    ({"layer_norm_eps": -1e-12}, "layer_norm_eps"),
    ({"layer_norm_eps": float("nan")}, "layer_norm_eps"),
    ({"layer_norm_eps": float("inf")}, "layer_norm_eps"),
])
def test_encoder_block_rejects_bad_hyper_parameters(kwargs, match):
    args = {"d_model": 8, "num_heads": 2, "d_ff": 16, **kwargs}
    with pytest.raises(ValueError, match=match):
        EncoderBlock(**args, rngs=nnx.Rngs(0))


@pytest.mark.parametrize("rate", [0.0, 0.5, 1.0, np.float32(1.0)])
def test_dropout_edges_give_finite_outputs_and_gradients(rate):
    block = EncoderBlock(8, 2, 16, dropout_rate=rate, rngs=nnx.Rngs(0))  # training mode
    x = jax.random.normal(jax.random.key(0), (2, 5, 8))

    def loss(model, x):
        return (model(x) ** 2).mean()

    value, (g_model, g_x) = nnx.jit(nnx.value_and_grad(loss, argnums=(0, 1)))(block, x)
    assert np.isfinite(float(value)) and np.all(np.isfinite(g_x))
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(nnx.state(g_model, nnx.Param)))


def test_shape_errors_are_clear():
    q = jnp.ones((2, 5, 8))
    with pytest.raises(ValueError, match="same last axis"):
        scaled_dot_product_attention(q, jnp.ones((2, 5, 4)), jnp.ones((2, 5, 4)))
    with pytest.raises(ValueError, match="same length S"):
        scaled_dot_product_attention(q, jnp.ones((2, 6, 8)), jnp.ones((2, 5, 8)))
    with pytest.raises(ValueError, match="does not broadcast"):
        scaled_dot_product_attention(q, q, q, jnp.ones((2, 4, 5), bool))
    mha = MultiHeadAttention(8, 2, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="d_model=8"):
        mha(jnp.ones((2, 5, 6)))
    with pytest.raises(ValueError, match=r"\(B, L, d_model"):
        mha(jnp.ones((5, 8)))
    # A (B, L) 0/1 mask passed without padding_mask: rejected, even where B == L would broadcast.
    with pytest.raises(ValueError, match="padding_mask"):
        mha(jnp.ones((5, 5, 8)), jnp.ones((5, 5), bool))
    with pytest.raises(ValueError, match=r"\(B, S\)"):
        padding_mask(jnp.ones(5))
