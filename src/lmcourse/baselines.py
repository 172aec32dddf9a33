"""Baselines that are models but not the course's own: scores the chapters compare with.

Used in chapters: 06; imported by ``lmcourse.data.catalog``."""

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
