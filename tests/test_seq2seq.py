"""The encoder–decoder Transformer (``lmcourse.models.seq2seq``): masks, decoding, beam search
against brute force, training, and the checks of bad input."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from lmcourse.compat import make_optimizer
from lmcourse.models import count_params
from lmcourse.models import seq2seq as s2s

CFG = s2s.Seq2SeqConfig(vocab_size=13, d_model=16, num_heads=2, d_ff=32, encoder_layers=1,
                        decoder_layers=2, max_source_len=8, max_target_len=6)


@pytest.fixture(scope="module")
def model():
    return s2s.Seq2SeqTransformer(CFG, rngs=nnx.Rngs(0))


@nnx.jit
def forward(model, source, target_in):
    """The model's call, compiled (eager calls are slow); the checks of ``__call__`` are tested
    separately on concrete input."""
    return model(source, target_in, return_attention=True)


def _source(rng, b=3, s=6):
    src = rng.integers(3, CFG.vocab_size, (b, s)).astype(np.int32)
    src[1, 4:] = CFG.pad_id                     # a shorter row
    return src


def test_decoder_is_causal(model):
    rng = np.random.default_rng(0)
    src, tgt = _source(rng), rng.integers(3, 13, (3, 6)).astype(np.int32)
    base = np.asarray(forward(model, src, tgt)[0])
    changed = tgt.copy()
    changed[:, 4:] = rng.integers(3, 13, (3, 2))
    out = np.asarray(forward(model, src, changed)[0])
    np.testing.assert_allclose(out[:, :4], base[:, :4], atol=1e-5)
    assert not np.allclose(out[:, 4:], base[:, 4:], atol=1e-3)   # the later positions did change


def test_source_padding_is_ignored_and_cross_attention_sums_to_one(model):
    rng = np.random.default_rng(1)
    src = rng.integers(3, 13, (2, 5)).astype(np.int32)
    tgt = rng.integers(3, 13, (2, 4)).astype(np.int32)
    padded = np.concatenate([src, np.zeros((2, 3), np.int32)], axis=1)
    a, _ = forward(model, src, tgt)
    b, wb = forward(model, padded, tgt)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
    assert len(wb) == CFG.decoder_layers and wb[0].shape == (2, CFG.num_heads, 4, 8)
    np.testing.assert_allclose(np.asarray(wb[-1]).sum(-1), 1.0, atol=1e-5)
    assert float(np.abs(np.asarray(wb[-1])[..., 5:]).max()) == 0.0     # no weight on padding
    m = s2s.cross_attention_map(model, src[:1], tgt[:1])
    assert m.shape == (4, 5) and np.allclose(m.sum(1), 1.0, atol=1e-5)


def test_parameter_count_from_the_hyper_parameters(model):
    d, f, v = CFG.d_model, CFG.d_ff, CFG.vocab_size
    attention, ffn, ln = 4 * (d * d + d), d * f + f + f * d + d, 2 * d
    expected = v * d + CFG.encoder_layers * (attention + ffn + 2 * ln) \
        + CFG.decoder_layers * (2 * attention + ffn + 3 * ln)
    assert count_params(model) == expected


def test_greedy_equals_beam_of_one_and_stops_at_eos(model):
    src = _source(np.random.default_rng(2))
    greedy = s2s.greedy_decode(model, src)
    beam1 = s2s.beam_search(model, src, beam_size=1)
    np.testing.assert_array_equal(greedy, beam1)
    assert greedy.shape == (3, CFG.max_target_len)
    for row in greedy:                                   # after EOS only padding
        eos = np.flatnonzero(row == CFG.eos_id)
        if eos.size:
            assert (row[eos[0] + 1:] == CFG.pad_id).all()
    # teacher forcing on the greedy output gives back its argmax at every step
    tin, _ = s2s.teacher_forcing(greedy, CFG)
    logits = np.asarray(forward(model, src, tin)[0])
    first = greedy[:, 0]
    np.testing.assert_array_equal(logits[:, 0].argmax(-1), first)


def _toy_log_probs(max_len, vocab=5, seed=0):
    """A next-token distribution depending on the step and the previous token (PAD, BOS
    nearly impossible)."""
    rng = np.random.default_rng(seed)
    table = rng.normal(size=(max_len, vocab, vocab)) * 1.5
    table[..., :2] = -60.0
    return np.asarray(jax.nn.log_softmax(jnp.asarray(table), axis=-1))


@pytest.mark.parametrize("alpha", [0.0, 0.6, 2.0])
@pytest.mark.parametrize("seed", range(4))
def test_wide_beam_finds_the_best_normalised_sequence(alpha, seed):
    max_len, pad, bos, eos = 4, 0, 1, 2
    table = _toy_log_probs(max_len, seed=seed)

    def next_log_probs(tokens, t):
        return table[t][np.asarray(tokens)[:, t]]

    tokens, score = s2s.beam_search_core(next_log_probs, 1, beam_size=81, max_len=max_len,
                                         bos_id=bos, eos_id=eos, pad_id=pad, alpha=alpha)
    best, best_seq = -np.inf, None
    for n in range(max_len + 1):                           # brute force over {a, b}^n (+ EOS)
        for body in itertools.product((3, 4), repeat=n):
            seq = list(body) + ([eos] if n < max_len else [])
            prev, logp = bos, 0.0
            for t, tok in enumerate(seq):
                logp += table[t][prev][tok]
                prev = tok
            value = logp / ((5 + len(seq)) / 6) ** alpha
            if value > best:
                best, best_seq = value, seq
    assert tokens[0, :len(best_seq)].tolist() == best_seq
    assert float(score[0]) == pytest.approx(best, rel=1e-5)


def test_beam_search_can_beat_greedy_on_the_toy_model():
    """Some toy distribution where greedy's sequence is not the most likely one: beam finds a
    better (normalised) score; never a worse one at full width."""
    wins = 0
    for seed in range(20):
        table = _toy_log_probs(4, seed=seed)

        def next_log_probs(tokens, t, table=table):
            return table[t][np.asarray(tokens)[:, t]]

        kw = dict(max_len=4, bos_id=1, eos_id=2, pad_id=0, alpha=0.6)
        _, greedy = s2s.beam_search_core(next_log_probs, 1, beam_size=1, **kw)
        _, wide = s2s.beam_search_core(next_log_probs, 1, beam_size=81, **kw)
        assert wide[0] >= greedy[0] - 1e-6
        wins += wide[0] > greedy[0] + 1e-6
    assert wins > 0


def test_training_learns_to_copy():
    cfg = s2s.Seq2SeqConfig(vocab_size=8, d_model=32, num_heads=2, d_ff=64, encoder_layers=1,
                            decoder_layers=1, max_source_len=4, max_target_len=5)
    model = s2s.Seq2SeqTransformer(cfg, rngs=nnx.Rngs(0))
    opt = make_optimizer(model, optax.adam(3e-3))
    rng = np.random.default_rng(0)
    losses = []
    for _ in range(150):
        src = rng.integers(3, 8, (32, 4)).astype(np.int32)
        tgt = np.concatenate([src, np.full((32, 1), cfg.eos_id, np.int32)], axis=1)
        tin, tout = s2s.teacher_forcing(tgt, cfg)
        loss, aux = s2s.train_step(model, opt, src, tin, tout)
        losses.append(float(loss))
    assert np.isfinite(losses).all()
    assert np.mean(losses[-10:]) < 0.3 * np.mean(losses[:10])
    src = rng.integers(3, 8, (16, 4)).astype(np.int32)
    out = s2s.greedy_decode(model, src)
    assert (out[:, :4] == src).mean() > 0.8


@pytest.mark.parametrize("call, message", [
    (lambda m: m(np.array([[3, 13]]), np.array([[1]])), "outside the table's range"),
    (lambda m: m(np.array([[3, -1]]), np.array([[1]])), "outside the table's range"),
    (lambda m: m(np.ones((1, 9), np.int32) * 3, np.array([[1]])), "max_source_len=8"),
    (lambda m: m(np.array([[3, 4], [0, 0]]), np.array([[1], [1]])), "row 1 is empty"),
    (lambda m: m(np.array([3, 4]), np.array([[1]])), "shape \\(B, S\\)"),
    (lambda m: m(np.array([[3.5, 4]]), np.array([[1]])), "integer ids"),
    (lambda m: m(np.array([[3, 4]]), np.ones((1, 7), np.int32)), "max_target_len=6"),
    (lambda m: s2s.greedy_decode(m, np.array([[3, 4]]), max_len=7), "max_len=7 exceeds"),
    (lambda m: s2s.greedy_decode(m, np.array([[3, 4]]), max_len=0), "max_len must be"),
    (lambda m: s2s.beam_search(m, np.array([[3, 4]]), beam_size=0), "beam_size must be"),
    (lambda m: s2s.beam_search(m, np.array([[3, 4]]), alpha=-1.0), "alpha must be"),
    (lambda m: s2s.cross_attention_map(m, np.array([[3, 4]]), np.array([[3]]), layer=2), "layer"),
    (lambda m: s2s.Seq2SeqConfig(vocab_size=13, d_model=15, num_heads=2), "divisible"),
    (lambda m: s2s.Seq2SeqTransformer(s2s.Seq2SeqConfig(vocab_size=13, d_model=15, num_heads=2),
                                      rngs=nnx.Rngs(0)), "divisible"),
    (lambda m: s2s.Seq2SeqConfig(vocab_size=2), "three different ids"),
    (lambda m: s2s.Seq2SeqConfig(vocab_size=13, dropout_rate=1.5), "dropout_rate"),
])
def test_bad_input_is_refused(model, call, message):
    with pytest.raises(ValueError, match=message):
        call(model)
