"""Tests of lmcourse.generation: the filters on hand-made distributions, top-k = 1 equals greedy,
sampling frequencies follow softmax(logits / T), generation with and without the cache agrees
(also past the context, with the sliding window), seeding, and bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import lmcourse  # noqa: F401
from lmcourse.generation import generate, sample_logits, top_k_filter, top_p_filter
from lmcourse.models.gpt import GPT, GPTConfig

CFG = GPTConfig("tiny", vocab_size=23, d_model=32, layers=2, heads=4, n_ctx=16)


@pytest.fixture(scope="module")
def model() -> GPT:
    return GPT(CFG, rngs=nnx.Rngs(0))


def kept(filtered) -> set[int]:
    return set(np.flatnonzero(np.isfinite(np.asarray(filtered))).tolist())


def test_top_p_keeps_the_nucleus():
    logits = jnp.log(jnp.array([0.05, 0.5, 0.15, 0.3]))
    assert kept(top_p_filter(logits, 0.5)) == {1}            # 0.5 alone reaches 0.5
    assert kept(top_p_filter(logits, 0.51)) == {1, 3}
    assert kept(top_p_filter(logits, 0.8)) == {1, 3}          # 0.5 + 0.3 reaches 0.8
    assert kept(top_p_filter(logits, 0.81)) == {1, 3, 2}
    assert kept(top_p_filter(logits, 1.0)) == {0, 1, 2, 3}
    assert kept(top_p_filter(logits, 1e-6)) == {1}            # the top token is always kept
    out = top_p_filter(logits, 0.8)
    np.testing.assert_array_equal(out[jnp.array([1, 3])], logits[jnp.array([1, 3])])


def test_top_k_keeps_the_k_largest():
    logits = jnp.array([[0.1, 2.0, -1.0, 1.5, 0.3]])
    assert kept(top_k_filter(logits, 2)[0]) == {1, 3}
    assert kept(top_k_filter(logits, 5)[0]) == {0, 1, 2, 3, 4}


def test_top_k_one_equals_greedy():
    logits = jax.random.normal(jax.random.key(0), (64, 50))
    greedy = sample_logits(logits, temperature=0)
    for seed in range(3):
        np.testing.assert_array_equal(sample_logits(logits, jax.random.key(seed), top_k=1), greedy)
    np.testing.assert_array_equal(greedy, jnp.argmax(logits, -1))


def test_sampling_frequencies_follow_the_temperature():
    logits = jnp.log(jnp.array([0.6, 0.3, 0.1]))
    n = 20000
    for t in (0.5, 1.0, 2.0):
        draws = sample_logits(jnp.tile(logits, (n, 1)), jax.random.key(1), temperature=t)
        freq = np.bincount(np.asarray(draws), minlength=3) / n
        expected = np.asarray(jax.nn.softmax(logits / t))
        np.testing.assert_allclose(freq, expected, atol=0.015)


def test_top_p_samples_only_from_the_nucleus():
    logits = jnp.tile(jnp.log(jnp.array([0.05, 0.5, 0.15, 0.3])), (5000, 1))
    draws = np.asarray(sample_logits(logits, jax.random.key(2), top_p=0.8))
    assert set(draws.tolist()) == {1, 3}
    assert np.mean(draws == 1) == pytest.approx(0.5 / 0.8, abs=0.03)


@pytest.mark.parametrize("prompt_len, new", [(3, 10), (10, 20)])   # (10, 20) passes n_ctx=16
def test_cache_and_no_cache_generate_the_same(model, prompt_len, new):
    prompt = np.arange(prompt_len) % CFG.vocab_size
    greedy = [generate(model, prompt, new, temperature=0, use_cache=c) for c in (True, False)]
    np.testing.assert_array_equal(*greedy)
    assert greedy[0].shape == (prompt_len + new,)
    np.testing.assert_array_equal(greedy[0][:prompt_len], prompt)
    key = jax.random.key(7)
    sampled = [generate(model, prompt, new, key=key, top_k=5, top_p=0.9, use_cache=c)
               for c in (True, False)]
    np.testing.assert_array_equal(*sampled)


def test_batch_and_seeds(model):
    prompt = np.array([[1, 2, 3], [4, 5, 6]])
    a = generate(model, prompt, 8, key=jax.random.key(0), temperature=1.5)
    b = generate(model, prompt, 8, key=jax.random.key(0), temperature=1.5)
    c = generate(model, prompt, 8, key=jax.random.key(1), temperature=1.5)
    assert a.shape == (2, 11)
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()
    assert generate(model, prompt[0], 0, temperature=0).tolist() == [1, 2, 3]


def test_generation_keeps_training_mode():
    m = GPT(CFG, rngs=nnx.Rngs(0), dropout_rate=0.3)
    m.train()
    a = generate(m, [1, 2], 6, temperature=0)
    b = generate(m, [1, 2], 6, temperature=0)
    np.testing.assert_array_equal(a, b)          # dropout off while generating
    assert m.dropout.deterministic is False       # and training mode restored


@pytest.mark.parametrize("kwargs, match", [
    (dict(temperature=-1.0), "temperature"),
    (dict(temperature=float("nan")), "temperature"),
    (dict(temperature=float("inf")), "temperature"),
    (dict(top_k=0), "top_k"),
    (dict(top_p=0.0), "top_p"),
    (dict(top_p=1.5), "top_p"),
    (dict(top_p=float("nan")), "top_p"),
    (dict(key=None), "PRNG key"),
    (dict(max_new_tokens=-1), "max_new_tokens"),
])
def test_bad_sampling_options(model, kwargs, match):
    args = dict(max_new_tokens=3, key=jax.random.key(0)) | kwargs
    with pytest.raises(ValueError, match=match):
        generate(model, [1, 2], **args)


def test_bad_prompts(model):
    with pytest.raises(ValueError, match="empty"):
        generate(model, [], 3, temperature=0)
    with pytest.raises(ValueError, match="n_ctx=16"):
        generate(model, np.zeros(17, int), 3, temperature=0)
    with pytest.raises(ValueError, match="outside"):
        generate(model, [1, CFG.vocab_size], 3, temperature=0)
    with pytest.raises(ValueError, match="integer ids"):
        generate(model, [1.5, 2.0], 3, temperature=0)


def test_large_top_k_is_no_cut_and_never_nan():
    logits = jnp.array([[0.0, -jnp.inf, 1.0]])
    out = sample_logits(logits, jax.random.key(0), top_k=100, top_p=0.3, temperature=1e-3)
    assert int(out[0]) == 2


def test_decode_step_donates_the_cache(model):
    """The jitted prefill and decode step take the cache as a donated argument: XLA writes the
    new keys and values into the same buffers (the old cache is consumed), instead of copying the
    whole cache every step."""
    from lmcourse.generation import _step_functions

    graphdef, state = nnx.split(model)
    leaves, treedef = jax.tree.flatten(state)
    fns = _step_functions(graphdef, treedef, (None, True, False))
    empty = model.init_cache(2)
    logits, cache = fns["prefill"](leaves, jnp.ones((2, 3), jnp.int32), empty)
    assert all(a.is_deleted() for a in empty.keys + empty.values)
    one = jnp.float32(1.0)
    tok, logits, new, _ = fns["cached_step"](leaves, logits, cache, jax.random.key(0), one, one)
    assert all(a.is_deleted() for a in cache.keys + cache.values)
    assert int(new.length) == 4 and tok.shape == (2,)
    # the result equals the model's own uncached logits for the same tokens
    seq = jnp.concatenate([jnp.ones((2, 3), jnp.int32), tok[:, None]], axis=1)
    np.testing.assert_allclose(logits, model(seq)[:, -1], atol=1e-5)
