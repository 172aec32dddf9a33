"""Tokenizers: characters, and byte-level BPE from scratch, checked against Hugging Face tokenizers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmcourse.bpe import (
    BPE,
    N_BYTES,
    PRETOKENIZE_PATTERN,
    CharTokenizer,
    merge_pair,
    pretokenize,
    train_bpe,
)

TEXT = ("To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n"
        "The slings and arrows of outrageous fortune,\nOr to take arms against a sea of troubles\n"
        "And by opposing end them. To die: to sleep; no more; and by a sleep to say we end\n"
        "The heart-ache and the thousand natural shocks that flesh is heir to. Caf\u00e9 \u00fcber "
        "\u4f60\u597d 123 4567_89 \u2014 fin.\n") * 3


@pytest.fixture(scope="module")
def small_bpe():
    return train_bpe(TEXT, 300)


# --- characters ----------------------------------------------------------------------------------

def test_char_tokenizer_round_trip_and_ids():
    tok = CharTokenizer.from_text("hello world")
    assert tok.chars == (" ", "d", "e", "h", "l", "o", "r", "w") and tok.vocab_size == 8
    ids = tok.encode("hold")
    assert ids.dtype == np.int32 and ids.tolist() == [3, 5, 4, 1]
    assert tok.decode(ids) == "hold"
    assert tok.encode("").shape == (0,)
    unicode = CharTokenizer.from_text("\u4f60\u597d\U0001f600a")
    assert unicode.decode(unicode.encode("a\U0001f600\u4f60")) == "a\U0001f600\u4f60"


@given(st.text(min_size=1))
@settings(max_examples=200, deadline=None)
def test_char_round_trip_property(s):
    tok = CharTokenizer.from_text(s)
    assert tok.decode(tok.encode(s)) == s
    assert tok.vocab_size == len(set(s))


def test_char_tokenizer_errors():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(ValueError, match=r"'z' \(U\+007A\) at position 2 is not in the vocabulary.*from_text"):
        tok.encode("abzz")
    with pytest.raises(ValueError, match="outside"):
        tok.decode([0, 3])
    with pytest.raises(ValueError, match="integer"):
        tok.decode(np.array([0.5]))
    with pytest.raises(ValueError, match="empty"):
        CharTokenizer.from_text("")
    with pytest.raises(ValueError, match="single characters"):
        CharTokenizer(["ab", "c"])
    with pytest.raises(ValueError, match="must be a str"):
        tok.encode(b"abc")


# --- pre-tokenisation and the merge step -------------------------------------------------------

def test_pretokenize_gpt2_style():
    assert pretokenize("Hello world!  It's 2024") == ["Hello", " world", "!", " ", " It", "'s", " 2024"]
    assert pretokenize("a_b\n\nc") == ["a", "_", "b", "\n", "\n", "c"]   # last space joins the word
    assert pretokenize("", None) == [] and pretokenize("x y", None) == ["x y"]
    with pytest.raises(ValueError, match="skips characters"):
        pretokenize("a b", r"[a-z]")


@given(st.text())
@settings(max_examples=300, deadline=None)
def test_pretokenize_pieces_concatenate_to_the_text(s):
    assert "".join(pretokenize(s, PRETOKENIZE_PATTERN)) == s


def test_merge_pair():
    assert merge_pair([1, 2, 2, 2, 1, 2], (2, 2), 9) == [1, 9, 2, 1, 2]
    assert merge_pair([1, 2], (2, 1), 9) == [1, 2]
    assert merge_pair([], (1, 1), 9) == []


# --- training --------------------------------------------------------------------------------------

def test_train_textbook_example():
    """Wikipedia's "aaabdaaabac": aa → Z, then ab → Y (tie with Za, smallest ids win), then ZY → X."""
    bpe = train_bpe("aaabdaaabac", N_BYTES + 3, pattern=None)
    a, b = ord("a"), ord("b")
    assert bpe.merges == ((a, a), (a, b), (N_BYTES, N_BYTES + 1))
    assert bpe.vocab[N_BYTES + 2] == b"aaab"
    assert bpe.encode("aaabdaaabac").tolist() == [N_BYTES + 2, ord("d"), N_BYTES + 2, a, ord("c")]


def test_vocab_size_reached_and_vocab_consistent(small_bpe):
    assert small_bpe.vocab_size == 300 and len(small_bpe.merges) == 300 - N_BYTES
    assert len(set(small_bpe.vocab)) == 300                 # every merge makes a new token
    for k, (a, b) in enumerate(small_bpe.merges):
        assert a < N_BYTES + k and b < N_BYTES + k           # built from earlier tokens only
        assert small_bpe.vocab[N_BYTES + k] == small_bpe.vocab[a] + small_bpe.vocab[b]
    assert small_bpe.vocab[N_BYTES] in (b" t", b"th", b"e ", b" a", b"he", b"o ")  # a frequent pair first
    assert len(small_bpe.encode(TEXT)) < 0.65 * len(TEXT.encode())   # 44 merges: 1,092 bytes → 642 tokens


def test_training_is_deterministic(small_bpe):
    assert train_bpe(TEXT, 300) == small_bpe


def test_merges_applied_in_training_order():
    bpe = BPE(((ord("b"), ord("c")), (ord("a"), ord("b"))))
    # rank 0 (bc) goes first, so "ab" can no longer be merged
    assert bpe.encode("abc").tolist() == [ord("a"), N_BYTES]
    assert bpe.encode("ab").tolist() == [N_BYTES + 1]
    assert BPE(((ord("a"), ord("b")), (ord("b"), ord("c")))).encode("abc").tolist() == [N_BYTES, ord("c")]


def test_merges_never_cross_pieces():
    bpe = train_bpe("ab ab ab ab", N_BYTES + 2)
    assert bpe.vocab[N_BYTES:] == (b"ab", b" ab")            # the space goes with the next word
    with pytest.raises(ValueError, match="only 2 merges"):    # pieces "ab", " ab": nothing left
        train_bpe("ab ab ab ab", N_BYTES + 3)
    assert train_bpe("ab ab ab ab", N_BYTES + 3, pattern=None).vocab[-1] == b" ab ab"   # crosses


@given(st.text())
@settings(max_examples=300, deadline=None)
def test_bpe_round_trip_on_any_unicode(s):
    bpe = _shared_bpe()
    ids = bpe.encode(s)
    assert ids.dtype == np.int32 and ids.ndim == 1
    assert bpe.decode(ids) == s
    assert len(ids) <= len(s.encode("utf-8"))


_BPE: list[BPE] = []


def _shared_bpe() -> BPE:
    if not _BPE:
        _BPE.append(train_bpe(TEXT, 320))
    return _BPE[0]


def test_decode_of_a_cut_character_and_token_strings(small_bpe):
    ids = small_bpe.encode("\u4f60")                        # 3 bytes, not merged: 3 tokens
    assert small_bpe.decode(ids[:1]) == "\ufffd"
    assert "".join(small_bpe.token_strings(small_bpe.encode("To be"))) == "To be"


def test_bpe_errors(small_bpe):
    with pytest.raises(ValueError, match="integer >= 256"):
        train_bpe(TEXT, 100)
    with pytest.raises(ValueError, match="integer >= 256"):
        train_bpe(TEXT, 300.0)
    with pytest.raises(ValueError, match=r"only 2 merges.*vocab_size <= 258"):
        train_bpe("abc", 300, pattern=None)
    with pytest.raises(ValueError, match="must be a str"):
        train_bpe(b"abc", 300)
    with pytest.raises(ValueError, match="outside"):
        small_bpe.decode([300])
    with pytest.raises(ValueError, match="outside"):
        small_bpe.decode([-1])
    with pytest.raises(ValueError, match="does not exist yet"):
        BPE(((N_BYTES, 1),))
    with pytest.raises(ValueError, match="must be a str"):
        small_bpe.encode(None)


# --- against Hugging Face tokenizers -------------------------------------------------------------

def _hf_bpe(text: str, vocab_size: int):
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([text], trainer)
    return tok


def _gpt2_byte_chars() -> dict[int, str]:
    """GPT-2's printable stand-in for each byte, which Hugging Face's byte-level vocabulary uses."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("\u00a1"), ord("\u00ac") + 1),
            *range(ord("\u00ae"), ord("\u00ff") + 1)]
    shifted = [b for b in range(256) if b not in keep]
    return {**{b: chr(b) for b in keep}, **{b: chr(256 + i) for i, b in enumerate(shifted)}}


def _corpus_text() -> tuple[str, str]:
    """~300 kB of training text and a held-out text: Shakespeare when cached, else TEXT-like."""
    try:
        from lmcourse.data.shakespeare import load_shakespeare, split_by_work

        corpus = load_shakespeare()
    except Exception:   # noqa: BLE001 - no cache and no network: a synthetic stand-in
        rng = np.random.default_rng(0)
        words = TEXT.split()
        def make(n):
            return " ".join(rng.choice(words, n).tolist())
        return make(50_000), make(5_000)
    split = split_by_work(corpus)
    return corpus.text(split["train"])[:300_000], corpus.text(split["val"])[:100_000]


def test_same_compression_and_vocabulary_as_hugging_face():
    """Measured on Shakespeare (300 kB train, 100 kB of the validation plays), vocab 512: identical
    vocabularies and token counts (1.90 bytes/token); merge ORDER differs only where counts tie.
    Asserted: bytes/token within 2 %, 98 % of the vocabulary shared. A BPE that merged the rarest
    pair, or counted pairs across pieces, fails both."""
    train, held_out = _corpus_text()
    theirs = _hf_bpe(train, 512)
    ours = train_bpe(train, 512)
    assert theirs.get_vocab_size() == ours.vocab_size == 512
    n_theirs, n_ours = len(theirs.encode(held_out).ids), len(ours.encode(held_out))
    bytes_held_out = len(held_out.encode("utf-8"))
    ratio_theirs, ratio_ours = bytes_held_out / n_theirs, bytes_held_out / n_ours
    assert abs(ratio_ours / ratio_theirs - 1) < 0.02, (ratio_ours, ratio_theirs)
    assert ratio_ours > 1.5                                    # far from one token per byte
    byte_char = _gpt2_byte_chars()
    ours_vocab = {"".join(byte_char[b] for b in token) for token in ours.vocab}
    shared = len(ours_vocab & set(theirs.get_vocab()))
    assert shared >= 0.98 * 512, shared
    assert ours.decode(ours.encode(held_out)) == held_out
