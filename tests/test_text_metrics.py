"""Exact match, corpus BLEU and chrF (``lmcourse.metrics``) against sacrebleu 2.6, to 1e-9."""

from __future__ import annotations

import random

import numpy as np
import pytest

from lmcourse import metrics

sacrebleu = pytest.importorskip("sacrebleu")

DATES = ["1987-03-09", "2001-12-31", "1900-01-01", "2099-07-04"]
ZH = ["1987年3月9日", "2001年12月31日", "1900年1月1日", "2099年7月4日"]
REAL = ["The cat sat on the mat.", "Friday, September 2, 2072", "Mittwoch, 15. September 2027",
        "понедельник, 9 марта 1987 г.", "It costs $3.50 (tax & fees) - really?", "&quot;x&quot; <y>"]


def _ref_bleu(hyps, refs, tokenize):
    streams = [list(s) for s in zip(*refs, strict=True)] if not isinstance(refs[0], str) else [refs]
    return sacrebleu.metrics.BLEU(tokenize=tokenize).corpus_score(hyps, streams)


def _ref_chrf(hyps, refs, word_order=0):
    streams = [list(s) for s in zip(*refs, strict=True)] if not isinstance(refs[0], str) else [refs]
    return sacrebleu.metrics.CHRF(word_order=word_order).corpus_score(hyps, streams).score


def _noisy(text: str, rng: random.Random, alphabet: str) -> str:
    """``text`` with random character edits (substitute, delete, insert, swap words)."""
    chars = list(text)
    for _ in range(rng.randint(0, 4)):
        op = rng.random()
        i = rng.randrange(len(chars) + 1)
        if op < 0.35 and i < len(chars):
            chars[i] = rng.choice(alphabet)
        elif op < 0.6 and i < len(chars):
            del chars[i]
        else:
            chars.insert(i, rng.choice(alphabet))
    out = "".join(chars)
    if rng.random() < 0.2:
        words = out.split(" ")
        rng.shuffle(words)
        out = " ".join(words)
    return out


def _corpus(seed: int, n: int = 30):
    rng = random.Random(seed)
    pool = DATES + ZH + REAL
    alphabet = "".join(sorted(set("".join(pool)))) + " -.,"
    refs = [rng.choice(pool) for _ in range(n)]
    hyps = [_noisy(r, rng, alphabet) for r in refs]
    return hyps, refs


@pytest.mark.parametrize("tokenize", ["13a", "char", "none"])
@pytest.mark.parametrize("seed", range(6))
def test_bleu_equals_sacrebleu_on_random_corpora(seed, tokenize):
    hyps, refs = _corpus(seed)
    ours = metrics.corpus_bleu(hyps, refs, tokenize=tokenize)
    ref = _ref_bleu(hyps, refs, tokenize)
    assert ours.score == pytest.approx(ref.score, abs=1e-9)
    assert ours.brevity_penalty == pytest.approx(ref.bp, abs=1e-12)
    assert (ours.hyp_len, ours.ref_len) == (ref.sys_len, ref.ref_len)
    np.testing.assert_allclose(ours.precisions, ref.precisions, atol=1e-9)


@pytest.mark.parametrize("seed", range(6))
def test_chrf_equals_sacrebleu_on_random_corpora(seed):
    hyps, refs = _corpus(seed)
    assert metrics.corpus_chrf(hyps, refs) == pytest.approx(_ref_chrf(hyps, refs), abs=1e-9)
    assert metrics.corpus_chrf(hyps, refs, word_order=2) == pytest.approx(
        _ref_chrf(hyps, refs, word_order=2), abs=1e-9)


@pytest.mark.parametrize("seed", range(3))
def test_multiple_references(seed):
    hyps, refs_a = _corpus(seed, 20)
    _, refs_b = _corpus(seed + 100, 20)
    refs = [[a, b] for a, b in zip(refs_a, refs_b, strict=True)]
    for tok in ("13a", "char"):
        assert metrics.corpus_bleu(hyps, refs, tokenize=tok).score == pytest.approx(
            _ref_bleu(hyps, refs, tok).score, abs=1e-9)
    assert metrics.corpus_chrf(hyps, refs) == pytest.approx(_ref_chrf(hyps, refs), abs=1e-9)


@pytest.mark.parametrize("hyps, refs", [
    (DATES, DATES),                                      # perfect match
    (ZH, ZH),
    (["", "", "", ""], DATES),                           # empty hypotheses
    (["", "1987-03-09"], ["1987-03-09", "1987-03-09"]),  # one empty
    (["1987"], ["1987-03-09"]),                          # too short: brevity penalty
    (["1987-03-09 1987-03-09"], ["1987-03-09"]),         # too long
    (["abc"], ["xyz"]),                                  # nothing matches
    (["a b"], ["a c"]),                                  # no bigram matches: smoothing
    (["x"], [""]),                                       # empty reference
    (["09-03-1987"], ["1987-03-09"]),                    # same tokens, other order
])
def test_edge_cases_equal_sacrebleu(hyps, refs):
    for tok in ("13a", "char"):
        assert metrics.corpus_bleu(hyps, refs, tokenize=tok).score == pytest.approx(
            _ref_bleu(hyps, refs, tok).score, abs=1e-9)
    assert metrics.corpus_chrf(hyps, refs) == pytest.approx(_ref_chrf(hyps, refs), abs=1e-9)


def test_known_values():
    assert metrics.corpus_bleu(DATES, DATES).score == pytest.approx(100.0)
    assert metrics.corpus_chrf(ZH, ZH) == pytest.approx(100.0)
    assert metrics.corpus_bleu(["", ""], DATES[:2]).score == 0.0
    assert metrics.corpus_chrf(["", ""], DATES[:2]) == 0.0
    # 13a splits a dash after a digit; "char" makes one token per character
    assert metrics.tokenize_13a("1987-03-09") == ["1987", "-", "03", "-", "09"]
    assert metrics.bleu_tokens("1987年3月9日", "char") == list("1987年3月9日")
    assert metrics.bleu_tokens("1987年3月9日", "13a") == ["1987年3月9日"]


def test_13a_tokenizer_equals_sacrebleus():
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

    tok = Tokenizer13a()
    for line in REAL + DATES + ZH + ["a-b 3-4 x.y 3.5 1,000 end.", "<skipped> hy-\nphen"]:
        assert metrics.tokenize_13a(line) == tok(line).split()


def test_exact_match_by_group():
    hyps = ["1987-03-09", "2001-12-30", "1900-01-01", "x"]
    groups = ["zh", "zh", "en", "en"]
    assert metrics.exact_match(hyps, DATES) == 0.5
    assert metrics.exact_match_by_group(hyps, DATES, groups) == {"en": 0.5, "zh": 0.5}
    assert metrics.exact_match(["a"], [["b", "a"]]) == 1.0


@pytest.mark.parametrize("call, message", [
    (lambda: metrics.corpus_bleu("abc", ["abc"]), "sequence of strings"),
    (lambda: metrics.corpus_bleu(["abc"], "abc"), "references must be a sequence"),
    (lambda: metrics.corpus_bleu([], []), "empty"),
    (lambda: metrics.corpus_bleu(["a", "b"], ["a"]), "2 hypotheses but 1 references"),
    (lambda: metrics.corpus_bleu([1], ["a"]), "expected str"),
    (lambda: metrics.corpus_bleu(["a"], [[]]), "non-empty list"),
    (lambda: metrics.corpus_bleu(["a"], ["a"], tokenize="zh"), "tokenize must be one of"),
    (lambda: metrics.corpus_bleu(["a"], ["a"], smooth="add-k"), "smooth"),
    (lambda: metrics.corpus_bleu(["a"], ["a"], max_order=0), "max_order"),
    (lambda: metrics.corpus_chrf(["a"], ["a"], beta=0), "beta"),
    (lambda: metrics.corpus_chrf(["a"], ["a"], word_order=-1), "word_order"),
    (lambda: metrics.exact_match_by_group(["a"], ["a"], ["x", "y"]), "groups has 2 labels"),
])
def test_bad_input_is_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call()
