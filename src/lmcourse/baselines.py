"""Baselines: scores the chapters compare with (the VADER package; count-based n-gram language
models with add-k smoothing).

Used in chapters: 06, 07; imported by ``lmcourse.data.catalog``."""

from __future__ import annotations

import numpy as np


def vader_compound(texts) -> np.ndarray:
    """VADER's compound score in [-1, 1] of each text, from the ``vaderSentiment`` package
    (Hutto & Gilbert 2014, section 3; ``SentimentIntensityAnalyzer.polarity_scores``).

    Args:
        texts: a sequence of ``n`` strings (``n = 0`` gives an empty array, like
            :func:`lmcourse.models.bert.encode`).

    Returns:
        float32 ``(n,)``.

    Raises:
        ValueError: ``texts`` is a single string (pass a list) or holds a non-string.
        ImportError: with the install line if the package is missing.
    """
    if isinstance(texts, (str, bytes)):
        raise ValueError("texts must be a sequence of strings, not one string: use [text]")
    texts = list(texts)
    bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
    if bad is not None:
        raise ValueError(f"texts[{bad}] is {type(texts[bad]).__name__}, not str")
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    except ImportError as exc:  # pragma: no cover
        raise ImportError("the VADER baseline needs `pip install vaderSentiment==3.3.2`") from exc
    if not texts:
        return np.zeros((0,), dtype=np.float32)
    analyzer = SentimentIntensityAnalyzer()
    return np.asarray([analyzer.polarity_scores(t)["compound"] for t in texts], dtype=np.float32)


def ngram_log_probs(train_ids, vocab_size: int, order: int, k: float = 1.0) -> np.ndarray:
    """Add-k smoothed character (token) n-gram model of order 1 (unigram) or 2 (bigram), as
    log-probabilities in nats (Jurafsky & Martin, *Speech and Language Processing*, 3rd ed.
    draft, §3.5.2 "Add-k smoothing": ``P(b | a) = (c(a, b) + k) / (c(a) + k V)``).

    Args:
        train_ids: int 1-D token stream (at least ``order`` tokens), ids in ``[0, vocab_size)``.
        vocab_size: ``V``.
        order: 1 (``P(b)``, counts of tokens) or 2 (``P(b | a)``, counts of adjacent pairs).
        k: pseudo-count added to every count, finite and > 0 (so no held-out token gets
            probability 0; choose it on validation data, never on test data).

    Returns:
        float64 ``(V,)`` for order 1, ``(V, V)`` for order 2 (row ``a`` = ``log P(· | a)``).

    Raises:
        ValueError: ``order`` not 1 or 2, ``k`` not > 0, ``train_ids`` not 1-D or too short, or
            an id outside ``[0, vocab_size)``.
    """
    from lmcourse.validation import check_ids, check_int, check_positive_float

    v = check_int("vocab_size", vocab_size, 1)
    order = check_int("order", order, 1)
    if order > 2:
        raise ValueError(f"order must be 1 (unigram) or 2 (bigram), got {order}")
    k = check_positive_float("k", k)
    ids = np.asarray(train_ids)
    if ids.ndim != 1 or len(ids) < order:
        raise ValueError(f"train_ids must be a 1-D stream of at least {order} token(s), got "
                         f"shape {ids.shape}")
    ids = check_ids("train_ids", ids, v, size_name="vocab_size")
    if order == 1:
        counts = np.bincount(ids, minlength=v).astype(np.float64) + k
        return np.log(counts / counts.sum())
    counts = np.bincount(ids[:-1] * v + ids[1:], minlength=v * v).reshape(v, v).astype(np.float64) + k
    return np.log(counts / counts.sum(axis=1, keepdims=True))


def ngram_bits_per_token(log_probs: np.ndarray, eval_ids) -> float:
    """Mean cross-entropy in bits per token of an n-gram model from :func:`ngram_log_probs` on a
    held-out stream: ``-mean log2 P(x_i | x_{i-1})`` over ``i = 1 … N-1`` for a bigram (the first
    token has no predecessor and is not scored), over all ``i`` for a unigram. For a
    character-level tokenization this is bits per character.

    Raises:
        ValueError: ``log_probs`` not ``(V,)`` or ``(V, V)``, ``eval_ids`` not 1-D with at least
            2 tokens, or an id outside ``[0, V)``.
    """
    from lmcourse.validation import check_ids

    lp = np.asarray(log_probs, dtype=np.float64)
    if lp.ndim not in (1, 2) or (lp.ndim == 2 and lp.shape[0] != lp.shape[1]):
        raise ValueError(f"log_probs must be (V,) or (V, V) from ngram_log_probs, got {lp.shape}")
    ids = np.asarray(eval_ids)
    if ids.ndim != 1 or len(ids) < 2:
        raise ValueError(f"eval_ids must be a 1-D stream of at least 2 tokens, got shape {ids.shape}")
    ids = check_ids("eval_ids", ids, lp.shape[0], size_name="vocab_size")
    nats = -(lp[ids] if lp.ndim == 1 else lp[ids[:-1], ids[1:]]).mean()
    return float(nats / np.log(2))
