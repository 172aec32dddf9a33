"""Tests of lmcourse.models.gpt and the n-gram baselines of lmcourse.baselines.

The parameter count of the built model equals the formula of ``param_count``; causality (the
logits at position t do not change when tokens after t change); the key–value cache gives the
uncached logits to 1e-5 at every step; dropout is active only in training mode; training lowers
the loss on a learnable sequence; the batcher and evaluation; bad input; the n-gram baselines
against hand counts.
"""

from __future__ import annotations

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import lmcourse  # noqa: F401  (sets the CPU XLA flag before the first computation)
from lmcourse.baselines import ngram_bits_per_token, ngram_log_probs
from lmcourse.compat import apply_gradients, make_optimizer
from lmcourse.models import count_params
from lmcourse.models.gpt import (
    GPT,
    GPTConfig,
    causal_mask,
    evaluate_lm,
    lm_loss,
    random_windows,
)
from lmcourse.param_count import gpt_param_count

CFG = GPTConfig("tiny", vocab_size=37, d_model=32, layers=2, heads=4, n_ctx=16)


@pytest.fixture(scope="module")
def model() -> GPT:
    return GPT(CFG, rngs=nnx.Rngs(0))


def ids(shape, seed=0, vocab=CFG.vocab_size):
    return jnp.asarray(np.random.default_rng(seed).integers(0, vocab, shape), jnp.int32)


@pytest.mark.parametrize("tied", [True, False])
def test_param_count_matches_formula(tied):
    cfg = GPTConfig("t", vocab_size=37, d_model=24, layers=3, heads=2, n_ctx=10, d_ff=40,
                    tied_embeddings=tied)
    m = nnx.eval_shape(lambda: GPT(cfg, rngs=nnx.Rngs(0)))
    assert count_params(m) == gpt_param_count(37, 24, 3, 10, 40, tied) == cfg.param_count()


def test_output_shape_and_finite(model):
    out = model(ids((3, 16)))
    assert out.shape == (3, 16, CFG.vocab_size) and out.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(out)))


def test_causal_mask_values():
    m = np.asarray(causal_mask(4))
    assert m.tolist() == [[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]]


def test_future_tokens_do_not_change_the_past(model):
    x = ids((2, 12), seed=1)
    t = 5
    y = x.at[:, t + 1:].set(ids((2, 12 - t - 1), seed=2))
    a, b = model(x), model(y)
    np.testing.assert_allclose(a[:, :t + 1], b[:, :t + 1], atol=1e-6)
    assert float(jnp.abs(a[:, t + 1:] - b[:, t + 1:]).max()) > 1e-3   # later positions do change


def test_changing_a_past_token_changes_later_logits(model):
    x = ids((1, 8), seed=3)
    y = x.at[0, 2].set((x[0, 2] + 1) % CFG.vocab_size)
    a, b = model(x), model(y)
    np.testing.assert_allclose(a[:, :2], b[:, :2], atol=1e-6)
    assert float(jnp.abs(a[:, 2:] - b[:, 2:]).min(axis=-1).max()) > 0


@pytest.mark.parametrize("prefill", [1, 5, 16])
def test_kv_cache_equals_no_cache(model, prefill):
    x = ids((2, 16), seed=4)
    full = model(x)
    logits, cache = model.extend(x[:, :prefill], model.init_cache(2))
    steps = [logits]
    for t in range(prefill, 16):
        logits, cache = model.extend(x[:, t:t + 1], cache)
        steps.append(logits)
    got = jnp.concatenate(steps, axis=1)
    np.testing.assert_allclose(got, full, atol=1e-5, rtol=0)
    assert int(cache.length) == 16


def test_cache_under_jit(model):
    x = ids((1, 10), seed=5)

    @nnx.jit
    def step(m, tok, cache):
        return m.extend(tok, cache)

    logits, cache = step(model, x[:, :4], model.init_cache(1))
    for t in range(4, 10):
        logits, cache = step(model, x[:, t:t + 1], cache)
    np.testing.assert_allclose(logits[:, -1], model(x)[:, -1], atol=1e-5)


def test_cache_holds_one_buffer_per_layer(model):
    """The decode step reads and writes each layer's buffer as it is (no per-layer slice of a
    stacked array, no stack after it): the step's program has no stack or concatenate."""
    cache = model.init_cache(3)
    assert len(cache.keys) == len(cache.values) == CFG.layers
    assert {k.shape for k in cache.keys + cache.values} == {(3, CFG.heads, CFG.n_ctx, 8)}
    _, cache = model.extend(ids((3, 5)), cache)
    jaxpr = str(jax.make_jaxpr(lambda c: model.extend(ids((3, 1)), c))(cache))
    primitives = set(re.findall(r"= ([a-z_]+)\[", jaxpr))
    assert not primitives & {"stack", "concatenate"}, primitives
    assert "dynamic_update_slice" in jaxpr
    with pytest.raises(ValueError, match="1 layers of keys"):
        model.extend(ids((3, 1)), cache._replace(keys=cache.keys[:1], values=cache.values[:1]))


def test_cache_overflow_and_batch_mismatch(model):
    _, cache = model.extend(ids((1, 16)), model.init_cache(1))
    with pytest.raises(ValueError, match="exceed the context"):
        model.extend(ids((1, 1)), cache)
    with pytest.raises(ValueError, match="batch size"):
        model.extend(ids((2, 3)), model.init_cache(1))


def test_bad_ids_and_lengths(model):
    with pytest.raises(ValueError, match="n_ctx=16"):
        model(ids((1, 17)))
    with pytest.raises(ValueError, match="outside"):
        model(jnp.asarray([[1, 2, CFG.vocab_size]]))
    with pytest.raises(ValueError, match="outside"):
        model(jnp.asarray([[-1, 2]]))
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        model(jnp.asarray([1, 2, 3]))
    with pytest.raises(ValueError, match="empty"):
        model(jnp.zeros((1, 0), jnp.int32))
    with pytest.raises(ValueError, match="GPTConfig"):
        GPT({"vocab_size": 3}, rngs=nnx.Rngs(0))


@pytest.mark.parametrize("rate", [-0.1, 1.5, float("nan")])
def test_bad_dropout_rate(rate):
    with pytest.raises(ValueError, match="dropout_rate"):
        GPT(CFG, rngs=nnx.Rngs(0), dropout_rate=rate)


def test_dropout_only_in_training_mode():
    m = GPT(CFG, rngs=nnx.Rngs(0), dropout_rate=0.5)
    x = ids((2, 8))
    m.train()
    a, b = m(x), m(x)
    assert float(jnp.abs(a - b).max()) > 1e-4
    m.eval()
    np.testing.assert_array_equal(m(x), m(x))


def test_training_learns_a_periodic_sequence():
    cfg = GPTConfig("t", vocab_size=7, d_model=32, layers=2, heads=2, n_ctx=16)
    m = GPT(cfg, rngs=nnx.Rngs(1))
    stream = np.tile(np.array([0, 3, 1, 4, 1, 5, 6]), 40)
    opt = make_optimizer(m, optax.adamw(3e-3))

    @nnx.jit
    def step(m, opt, x, y):
        loss, grads = nnx.value_and_grad(lm_loss)(m, x, y)
        apply_gradients(opt, m, grads)
        return loss

    batches = random_windows(stream, 8, 16, rng=0)
    first = evaluate_lm(m, stream)
    for _ in range(150):
        b = next(batches)
        step(m, opt, b.x, b.y)
    last = evaluate_lm(m, stream)
    assert first > 1.5 and last < 0.2, (first, last)


def test_lm_loss_weights(model):
    x, y = ids((2, 6), 1), ids((2, 6), 2)
    w = jnp.zeros((2, 6)).at[:, 3:].set(1.0)
    per = optax.softmax_cross_entropy_with_integer_labels(model(x), y)
    np.testing.assert_allclose(lm_loss(model, x, y, w), per[:, 3:].mean(), rtol=1e-6)
    np.testing.assert_allclose(lm_loss(model, x, y), per.mean(), rtol=1e-6)
    with pytest.raises(ValueError, match="same shape"):
        lm_loss(model, x, y[:, :3])


def test_random_windows_are_shifted_and_seeded():
    stream = np.arange(100)
    b = next(random_windows(stream, 4, 10, rng=3))
    assert b.x.shape == b.y.shape == (4, 10) and len(b) == 40
    np.testing.assert_array_equal(b.y, b.x + 1)
    np.testing.assert_array_equal(next(random_windows(stream, 4, 10, rng=3)).x, b.x)
    with pytest.raises(ValueError, match="longer than"):
        next(random_windows(np.arange(5), 2, 5, rng=0))


def test_evaluate_lm_equals_mean_loss(model):
    stream = np.asarray(ids((1, 16 * 3 + 1), 6))[0]
    x, y = stream[:-1].reshape(3, 16), stream[1:].reshape(3, 16)
    expected = float(lm_loss(model, jnp.asarray(x), jnp.asarray(y)))
    assert evaluate_lm(model, stream, batch_size=2) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="outside"):
        evaluate_lm(model, np.append(stream, CFG.vocab_size))
    with pytest.raises(ValueError, match="exceeds"):
        evaluate_lm(model, stream, length=17)


def test_ngram_baselines_against_hand_counts():
    train = np.array([0, 1, 0, 1, 2])
    uni = ngram_log_probs(train, 3, 1, k=1.0)
    np.testing.assert_allclose(np.exp(uni), np.array([3, 3, 2]) / 8)
    bi = ngram_log_probs(train, 3, 2, k=0.5)
    # pairs: 01, 10, 01, 12 -> row 0: c(0,1)=2 of 2; row 1: c(1,0)=1, c(1,2)=1 of 2; row 2: none
    np.testing.assert_allclose(np.exp(bi[0]), np.array([0.5, 2.5, 0.5]) / 3.5)
    np.testing.assert_allclose(np.exp(bi[1]), np.array([1.5, 0.5, 1.5]) / 3.5)
    np.testing.assert_allclose(np.exp(bi[2]), np.ones(3) / 3)
    held = np.array([0, 1, 2])
    expected = -(np.log2(2.5 / 3.5) + np.log2(1.5 / 3.5)) / 2
    assert ngram_bits_per_token(bi, held) == pytest.approx(expected)
    assert ngram_bits_per_token(uni, held) == pytest.approx(-np.mean(np.log2([3 / 8, 3 / 8, 2 / 8])))


def test_bigram_beats_unigram_on_structured_text():
    rng = np.random.default_rng(0)
    stream = np.cumsum(rng.integers(0, 2, 5000)) % 5    # next token is x or x+1
    uni, bi = ngram_log_probs(stream, 5, 1), ngram_log_probs(stream, 5, 2)
    held = np.cumsum(rng.integers(0, 2, 1000)) % 5
    assert ngram_bits_per_token(bi, held) == pytest.approx(1.0, abs=0.02)   # a fair coin
    assert ngram_bits_per_token(uni, held) == pytest.approx(math.log2(5), abs=0.02)


@pytest.mark.parametrize("kwargs, match", [
    (dict(order=3), "order"), (dict(k=0.0), "k must"), (dict(vocab_size=2), "outside")])
def test_ngram_bad_input(kwargs, match):
    args = dict(train_ids=np.array([0, 1, 2]), vocab_size=3, order=2, k=1.0) | kwargs
    with pytest.raises(ValueError, match=match):
        ngram_log_probs(**args)
    with pytest.raises(ValueError, match="outside"):
        ngram_bits_per_token(ngram_log_probs(np.array([0, 1]), 2, 2), np.array([0, 2]))


def test_train_step_and_optimizer_lower_the_loss_and_refuse_bad_settings():
    from lmcourse.models.gpt import make_lm_optimizer, train_step

    cfg = GPTConfig("t", vocab_size=11, d_model=16, layers=1, heads=2, n_ctx=8)
    model = GPT(cfg, rngs=nnx.Rngs(0))
    optimizer = make_lm_optimizer(model, steps=20, peak_lr=1e-2, warmup_steps=2)
    batch = next(random_windows(np.random.default_rng(0).integers(0, 11, 500), 4, 8, 0))
    losses = [float(train_step(model, optimizer, batch.x, batch.y)) for _ in range(10)]
    assert losses[-1] < losses[0] - 0.3          # it memorises one batch
    for bad in (dict(warmup_steps=20), dict(peak_lr=0.0), dict(b2=1.0), dict(end_fraction=1.5)):
        settings = dict(steps=20, peak_lr=1e-3, warmup_steps=2) | bad
        with pytest.raises(ValueError):
            make_lm_optimizer(model, **settings)


def test_shakespeare_char_recipes_are_nanogpts_and_shared():
    """The full recipe is nanoGPT's config/train_shakespeare_char.py (n_layer 6, n_head 6, n_embd
    384, block_size 256, dropout 0.2, batch_size 64, learning_rate 1e-3, max_iters 5000,
    warmup_iters 100), about 10.77M parameters with its 65-character vocabulary; the chapter
    and the contiguous-split tool both read the recipes (no second copy to drift)."""
    from pathlib import Path

    from lmcourse.models.gpt import SHAKESPEARE_CHAR

    full = SHAKESPEARE_CHAR["full"]
    assert full["model"] == dict(d_model=384, layers=6, heads=6, n_ctx=256)
    assert (full["dropout"], full["batch"], full["peak_lr"], full["steps"], full["warmup"]) == (
        0.2, 64, 1e-3, 5000, 100)
    assert 10.6e6 < GPTConfig("nanoGPT", vocab_size=65, **full["model"]).param_count() < 10.8e6
    assert set(SHAKESPEARE_CHAR) == {"quick", "full"}
    assert all(r.keys() == full.keys() for r in SHAKESPEARE_CHAR.values())
    root = Path(__file__).resolve().parents[1]
    for user in ("notebooks/07_gpt.ipynb", "tools/gpt_contiguous.py"):
        text = (root / user).read_text()
        assert "SHAKESPEARE_CHAR[" in text and "d_model=384" not in text, user


# --- flat_dot_general: the GPT's linear layers on the tokens as one matrix ---------------------

def _linear_pair(d_in: int, d_out: int):
    """Two ``nnx.Linear`` with the same weights: the plain product and ``flat_dot_general``."""
    from lmcourse.models.common import flat_dot_general

    plain = nnx.Linear(d_in, d_out, rngs=nnx.Rngs(3))
    flat = nnx.Linear(d_in, d_out, dot_general=flat_dot_general, rngs=nnx.Rngs(3))
    return plain, flat


def test_flat_dot_general_same_values_and_gradients():
    import jax

    plain, flat = _linear_pair(16, 24)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(3, 5, 16)), jnp.float32)
    np.testing.assert_allclose(flat(x), plain(x), rtol=1e-6, atol=1e-6)
    assert flat(x).shape == (3, 5, 24)

    def loss(layer, x):
        return jnp.sum(jnp.sin(layer(x)))

    g_plain = nnx.grad(loss, argnums=(0, 1))(plain, x)
    g_flat = nnx.grad(loss, argnums=(0, 1))(flat, x)
    for a, b in zip(jax.tree.leaves(g_flat), jax.tree.leaves(g_plain), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # the product runs on the 15 tokens as one (15, 16) matrix
    from lmcourse.models.common import flat_dot_general
    jaxpr = str(jax.make_jaxpr(lambda x, w: flat_dot_general(x, w, (((2,), (0,)), ((), ()))))(
        x, plain.kernel[...]))
    assert "f32[15,16] = reshape" in jaxpr.replace(":", ""), jaxpr
    # the weight gradient is X^T G with X, G the tokens as (15, d) matrices
    g_out = jnp.cos(plain(x)).reshape(15, 24)
    np.testing.assert_allclose(g_flat[0]["kernel"][...], x.reshape(15, 16).T @ g_out,
                               rtol=1e-5, atol=1e-5)


def test_flat_dot_general_passes_other_products_unchanged():
    from jax import lax

    from lmcourse.models.common import flat_dot_general

    rng = np.random.default_rng(1)
    a = jnp.asarray(rng.normal(size=(4, 6)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(6, 2)), jnp.float32)
    dims = (((1,), (0,)), ((), ()))
    np.testing.assert_array_equal(flat_dot_general(a, w, dims), lax.dot_general(a, w, dims))
    batched = jnp.asarray(rng.normal(size=(3, 4, 6)), jnp.float32)
    bw = jnp.asarray(rng.normal(size=(3, 6, 2)), jnp.float32)
    bdims = (((2,), (1,)), ((0,), (0,)))     # a batched product: not the Linear pattern
    np.testing.assert_array_equal(flat_dot_general(batched, bw, bdims),
                                  lax.dot_general(batched, bw, bdims))
    with pytest.raises(TypeError):           # shapes that do not contract: lax's own error
        flat_dot_general(batched, jnp.ones((5, 2)), (((2,), (0,)), ((), ())))


def test_gpt_layers_use_flat_dot_general(model):
    from lmcourse.models.common import flat_dot_general

    linears = [m for _, m in nnx.iter_modules(model) if isinstance(m, nnx.Linear)]
    assert len(linears) == 4 * CFG.layers
    assert all(m.dot_general is flat_dot_general for m in linears)
