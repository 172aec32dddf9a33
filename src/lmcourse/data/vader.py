"""The four human-rated sentiment corpora of the VADER paper, parsed, checked and split.

Used in chapters: 06; imported by ``lmcourse.data.catalog``.

Hutto & Gilbert (2014), *VADER: A Parsimonious Rule-based Model for Sentiment Analysis of Social
Media Text*, ICWSM-14, section 3.4: 20 trained raters scored every sentence from -4 (extremely
negative) to +4 (extremely positive); the files hold the mean rating.

========  ===================================  ==========
corpus    file                                 sentences
========  ===================================  ==========
tweets    tweets_GroundTruth.txt                4,200
movie     movieReviewSnippets_GroundTruth.txt  10,605
amazon    amazonReviewSnippets_GroundTruth.txt  3,708
nyt       nytEditorialSnippets_GroundTruth.txt  5,190
========  ===================================  ==========

Each line is ``id<TAB>mean rating<TAB>text`` (CRLF line ends; the movie file is UTF-8).

Sources, in order (:func:`ensure_vader`): the cache (``$LMCOURSE_DATA_DIR/vader`` or ``data/vader``,
every file SHA-256 checked), a local copy of the archive (argument ``archive``), and the registry's
sources (:data:`lmcourse.data.registry.VADER`): the official archive ``hutto_ICWSM_2014.tar.gz`` in
github.com/cjhutto/vaderSentiment, and the ``vaderSentiment==3.3.2`` source distribution on PyPI,
which ships the same archive (``pip download --no-deps --no-binary :all: vaderSentiment==3.3.2``).
The network sources are skipped when ``LMCOURSE_OFFLINE`` is set and run under the time limits of
:mod:`lmcourse.data.fetch`. Everything goes through :func:`lmcourse.data.fetch.ensure_files`'s one
fallback loop (temporary name, SHA-256 check, atomic rename), so the cache never holds a corrupt file.

The paper's protocol (section 4): a 50/50 train/test split of each corpus (the ML baselines of
Table 5 were "trained on half the data, with the other half being held out for testing"), and
3-class polarity with thresholds ±0.05 on scores normalised to [-1, 1] (here rating / 4).
:func:`load_splits` fixes one seeded split per corpus and saves it in the cache, so that every model
and the VADER baseline are scored on the same test halves.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lmcourse.data.fetch import (
    DataError,
    LocalArchive,
    cache_root,
    ensure_files,
    write_json_atomic,
)
from lmcourse.data.registry import VADER, DataFile
from lmcourse.validation import check_fraction, check_int

#: Corpus names, in the paper's order, and their files.
CORPORA: tuple[str, ...] = ("tweets", "movie", "amazon", "nyt")
FILES: dict[str, str] = {
    "tweets": "tweets_GroundTruth.txt",
    "movie": "movieReviewSnippets_GroundTruth.txt",
    "amazon": "amazonReviewSnippets_GroundTruth.txt",
    "nyt": "nytEditorialSnippets_GroundTruth.txt",
}
#: Sentences per corpus (paper, section 3.4).
EXPECTED_COUNTS: dict[str, int] = {"tweets": 4200, "movie": 10605, "amazon": 3708, "nyt": 5190}
#: 3-class polarity labels, in label order 0, 1, 2.
POLARITY_NAMES: tuple[str, ...] = ("negative", "neutral", "positive")
#: Threshold on the normalised score (rating / 4 or VADER's compound), paper section 4.
POLARITY_THRESHOLD = 0.05
RATING_MAX = 4.0

#: The archive of the paper's data, as found in the repository and in the PyPI sdist.
ARCHIVE = DataFile("hutto_ICWSM_2014.tar.gz",
                   "d5bb07d87474b3eb8d30b4deccbc23f19d742a6c5718fbacc65485b70b95c5fa", 2_338_514)
#: Where the archive comes from: the registry's two sources (official GitHub file, PyPI sdist).
OFFICIAL_URL = VADER.sources[0].location
ARCHIVE_INNER = VADER.sources[0].inner
PYPI_SPEC = VADER.sources[1].spec
SDIST_INNER = VADER.sources[1].archive


# ----------------------------------------------------------------------------------------------
# fetching
# ----------------------------------------------------------------------------------------------
def ensure_vader(root: Path | None = None, archive: str | Path | None = None) -> dict[str, Path]:
    """Make sure the four ground-truth files are in the cache, verified; return corpus → path.

    Order: the cache; ``archive`` (a local ``hutto_ICWSM_2014.tar.gz``) if given; then the sources
    of :data:`lmcourse.data.registry.VADER`: the official archive on GitHub and the
    ``vaderSentiment==3.3.2`` sdist from PyPI (both skipped when ``LMCOURSE_OFFLINE`` is set, both
    under the network time limits of :mod:`lmcourse.data.fetch`). Each file is checked against its
    SHA-256 before it is renamed into the cache.

    Raises:
        DatasetUnavailableError: no source gave verified files; lists every attempt and how to fix
            it (a local archive: ``archive=<path to hutto_ICWSM_2014.tar.gz>``).
    """
    local = LocalArchive(archive, ARCHIVE_INNER, what="ground-truth files", hint=(
        f"A copy of the archive (from {OFFICIAL_URL}, e.g. downloaded on another "
        f"machine) also works: ensure_vader(archive=<path to {ARCHIVE.name}>)."))
    paths = ensure_files(VADER, root, local_archive=local)
    return {c: paths[FILES[c]] for c in CORPORA}


# ----------------------------------------------------------------------------------------------
# parsing
# ----------------------------------------------------------------------------------------------
@dataclass
class ParseReport:
    """What parsing one file met: kept lines and every odd line, by reason.

    ``counts`` keys: ``kept``, ``blank`` (skipped), ``fields<3`` (skipped), ``bad_rating``
    (skipped: not a number, not finite or outside [-4, 4]), ``duplicate_id`` (skipped, the first
    is kept), and, for kept lines that needed a repair, ``not_utf8`` (decoded as cp1252) and
    ``extra_tabs`` (tabs inside the text, replaced by spaces). ``problems`` lists
    ``(line number, reason, first 60 characters)`` for every odd line.
    """

    corpus: str
    counts: Counter = field(default_factory=Counter)
    problems: list[tuple[int, str, str]] = field(default_factory=list)

    def note(self, line_no: int, reason: str, text: str) -> None:
        """Count one line under ``reason`` and keep its number and first 60 characters."""
        self.counts[reason] += 1
        self.problems.append((line_no, reason, text[:60]))

    def __str__(self) -> str:
        odd = {k: v for k, v in sorted(self.counts.items()) if k != "kept"}
        return f"{self.corpus}: kept {self.counts['kept']} lines; odd lines {odd or 'none'}"


def parse_ground_truth(raw: bytes, corpus: str) -> tuple[list[str], np.ndarray, list[str], ParseReport]:
    """Parse one ``*_GroundTruth.txt`` file.

    Args:
        raw: the file's bytes (``id<TAB>rating<TAB>text`` per line, LF or CRLF).
        corpus: its corpus name (for messages).

    Returns:
        ``(ids, ratings, texts, report)``: ids as strings, ratings float32 ``(n,)`` in [-4, 4],
        texts, and a :class:`ParseReport` counting every odd line (nothing is dropped silently).

    Raises:
        ValueError: ``raw`` is not bytes (read the file with ``read_bytes()``).
    """
    if not isinstance(raw, (bytes, bytearray)):
        raise ValueError(f"raw must be the file's bytes (Path.read_bytes()), got {type(raw).__name__}")
    report = ParseReport(corpus)
    ids: list[str] = []
    ratings: list[float] = []
    texts: list[str] = []
    seen: set[str] = set()
    for line_no, line in enumerate(raw.split(b"\n"), start=1):
        line = line.rstrip(b"\r")
        if not line.strip():
            if line_no < raw.count(b"\n") + 1:   # the empty piece after the final newline is no line
                report.note(line_no, "blank", "")
            continue
        try:
            text_line = line.decode("utf-8")
        except UnicodeDecodeError:
            text_line = line.decode("cp1252", errors="replace")
            report.note(line_no, "not_utf8", text_line)
        parts = text_line.split("\t")
        if len(parts) < 3:
            report.note(line_no, "fields<3", text_line)
            continue
        if len(parts) > 3:
            report.note(line_no, "extra_tabs", text_line)
        sid, rating_text, text = parts[0].strip(), parts[1].strip(), " ".join(parts[2:]).strip()
        try:
            rating = float(rating_text)
        except ValueError:
            rating = math.nan
        if not math.isfinite(rating) or abs(rating) > RATING_MAX:
            report.note(line_no, "bad_rating", text_line)
            continue
        if sid in seen:
            report.note(line_no, "duplicate_id", text_line)
            continue
        seen.add(sid)
        ids.append(sid)
        ratings.append(rating)
        texts.append(text)
        report.counts["kept"] += 1
    return ids, np.asarray(ratings, dtype=np.float32), texts, report


@dataclass(frozen=True)
class VaderData:
    """All sentences of the four corpora as parallel arrays.

    Attributes:
        key: ``(n,)`` str, ``"corpus:id"``, unique across corpora.
        corpus: ``(n,)`` str, one of :data:`CORPORA`.
        domain: ``(n,)`` int32, index of the corpus in :data:`CORPORA`.
        rating: ``(n,)`` float32, mean human rating in [-4, 4].
        text: ``(n,)`` object (str).
        reports: corpus → :class:`ParseReport`.
    """

    key: np.ndarray
    corpus: np.ndarray
    domain: np.ndarray
    rating: np.ndarray
    text: np.ndarray
    reports: dict[str, ParseReport]

    def __len__(self) -> int:
        return len(self.key)

    @property
    def polarity(self) -> np.ndarray:
        """``(n,)`` int32 3-class labels of the ratings (:func:`polarity_labels`)."""
        return polarity_labels(self.rating / RATING_MAX)

    def where(self, corpus: str) -> np.ndarray:
        """Row indices ``(m,)`` of one corpus, in file order.

        Raises:
            ValueError: ``corpus`` is not one of :data:`CORPORA` (no silent empty selection).
        """
        if corpus not in CORPORA:
            raise ValueError(f"unknown corpus {corpus!r}; use one of {', '.join(CORPORA)}")
        return np.flatnonzero(self.corpus == corpus)


def load_vader(root: Path | None = None, *, archive: str | Path | None = None,
               check_counts: bool = True) -> VaderData:
    """Load the four corpora (fetching them first if needed, see :func:`ensure_vader`).

    Args:
        root: cache folder (default :func:`lmcourse.data.fetch.cache_root`).
        archive: optional local ``hutto_ICWSM_2014.tar.gz``.
        check_counts: compare the sentence counts with :data:`EXPECTED_COUNTS`.

    Returns:
        :class:`VaderData`; ``reports`` holds the per-file counts of odd lines.

    Raises:
        DatasetUnavailableError: see :func:`ensure_vader`.
        DataError: a corpus has a different number of sentences than the paper.
    """
    paths = ensure_vader(root, archive)
    keys, corpora, ratings, texts, reports = [], [], [], [], {}
    for corpus in CORPORA:
        ids, r, t, report = parse_ground_truth(paths[corpus].read_bytes(), corpus)
        if check_counts and len(ids) != EXPECTED_COUNTS[corpus]:
            raise DataError(f"vader/{corpus}: {len(ids)} sentences, the paper has "
                            f"{EXPECTED_COUNTS[corpus]} ({report})")
        keys += [f"{corpus}:{i}" for i in ids]
        corpora += [corpus] * len(ids)
        ratings.append(r)
        texts += t
        reports[corpus] = report
    corpus_arr = np.asarray(corpora)
    domain = np.asarray([CORPORA.index(c) for c in corpora], dtype=np.int32)
    text_arr = np.empty(len(texts), dtype=object)
    text_arr[:] = texts
    return VaderData(np.asarray(keys), corpus_arr, domain, np.concatenate(ratings), text_arr, reports)


# ----------------------------------------------------------------------------------------------
# labels and splits
# ----------------------------------------------------------------------------------------------
def polarity_labels(score: np.ndarray, threshold: float = POLARITY_THRESHOLD) -> np.ndarray:
    """3-class labels of normalised sentiment scores (paper, section 4).

    Args:
        score: ``(n,)`` floats in [-1, 1] (rating / 4, or VADER's compound score).
        threshold: 0.05 in the paper; any finite value in [0, 1).

    Returns:
        ``(n,)`` int32: 0 negative (score ≤ -threshold), 1 neutral, 2 positive (score ≥ threshold).

    Raises:
        ValueError: a score is NaN, infinite or outside [-1, 1] (a NaN would silently become
            "neutral"; a rating not divided by 4 would be out of range), or a bad ``threshold``.
    """
    threshold = check_fraction("threshold", threshold, open_high=True)
    s = np.asarray(score, dtype=np.float64)
    if not np.all(np.isfinite(s)):
        raise ValueError(f"score contains {int((~np.isfinite(s)).sum())} NaN or infinite value(s); "
                         "a NaN has no polarity")
    if s.size and np.abs(s).max() > 1.0:
        raise ValueError(f"scores must be normalised to [-1, 1] (a mean rating divided by "
                         f"{RATING_MAX:g}, or VADER's compound score); max |score| is "
                         f"{float(np.abs(s).max()):.3g}")
    return np.where(s >= threshold, 2, np.where(s <= -threshold, 0, 1)).astype(np.int32)


def make_splits(data: VaderData, seed: int = 0, val_fraction: float = 0.2) -> dict[str, dict[str, list[str]]]:
    """A seeded 50/50 train/test split of each corpus, with a validation part of the train half.

    Per corpus ``c`` (index ``i`` in :data:`CORPORA`): ``perm = default_rng([seed, i]).permutation(n)``;
    the first ``n // 2`` are the training half, the rest the test half; the first
    ``round(val_fraction · n_train)`` of the training half become validation.

    Returns:
        corpus → ``{"train", "val", "test"}`` → list of keys (``"corpus:id"``), disjoint.

    Raises:
        ValueError: ``seed`` not an integer ≥ 0, ``val_fraction`` not in [0, 1) (NaN included),
            or ``data`` has no sentences.
    """
    seed = check_int("seed", seed, 0)
    val_fraction = check_fraction("val_fraction", val_fraction, open_high=True)
    if len(data) == 0:
        raise ValueError("data holds no sentences")
    splits = {}
    for i, corpus in enumerate(CORPORA):
        keys = data.key[data.where(corpus)]
        perm = np.random.default_rng([seed, i]).permutation(len(keys))
        half = len(keys) // 2
        n_val = int(round(val_fraction * half))
        splits[corpus] = {"val": keys[perm[:n_val]].tolist(), "train": keys[perm[n_val:half]].tolist(),
                          "test": keys[perm[half:]].tolist()}
    return splits


def load_splits(data: VaderData, seed: int = 0, val_fraction: float = 0.2,
                root: Path | None = None) -> dict[str, dict[str, np.ndarray]]:
    """The split of :func:`make_splits`, saved once in the cache and reused (so every model and
    baseline is scored on the same halves), as row indices into ``data``.

    The JSON file ``vader/splits_seed{seed}_val{val_fraction}.json`` holds the keys; if it is
    missing it is written atomically. A saved file that does not match ``make_splits`` (other
    data) raises.

    Returns:
        corpus → ``{"train", "val", "test"}`` → int64 row indices ``(m,)``.

    Raises:
        DataError: the saved split does not match the data.
        ValueError: bad ``seed`` or ``val_fraction`` (see :func:`make_splits`).
    """
    folder = (root or cache_root()) / VADER.name
    path = folder / f"splits_seed{seed}_val{val_fraction:g}.json"
    fresh = make_splits(data, seed, val_fraction)
    if path.exists():
        saved = json.loads(path.read_text())
        if saved != fresh:
            raise DataError(f"{path}: saved split differs from the one seed {seed} gives; delete it")
    else:
        write_json_atomic(path, fresh)
    row = {k: i for i, k in enumerate(data.key)}
    return {c: {part: np.asarray([row[k] for k in keys], dtype=np.int64) for part, keys in parts.items()}
            for c, parts in fresh.items()}
