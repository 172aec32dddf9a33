"""Dates written in six languages by the Unicode CLDR (through Babel), paired with ISO 8601:
chapter 07's translation data.

Used in chapters: 07; imported by ``lmcourse.data.catalog``.

Every day from 1900-01-01 to 2099-12-31 (73,049 days) is rendered by
``babel.dates.format_date`` in the ``full``, ``long`` and ``medium`` formats of six locales
(English ``en``, Chinese ``zh``, Japanese ``ja``, German ``de``, French ``fr``, Russian ``ru``)
and paired with its ISO 8601 calendar date ``YYYY-MM-DD`` (ISO 8601-1:2019, §5.2.2.1, the
extended format). Two directions:

* ``to_iso``: any rendering → ``1987-03-09`` (18 pairs per day: 6 languages × 3 formats);
* ``iso_to_zh``: ``1987-03-09`` → the Chinese long form ``1987年3月9日`` (1 pair per day).

Some formats coincide (Chinese ``long`` = ``medium``; French ``long`` = ``medium``): they are kept
as separate (format-labelled) pairs, so every language has three pairs per day.

The split is **by day**: a day in the test split is never seen in training, in any language,
format or direction. :func:`make_date_split` draws it from a seed; :func:`load_date_split` saves
it once in the data cache as ``dates/split_seed{seed}.json`` (the days of each split, their
SHA-256, and a fingerprint of the renderings of 400 probe days with the Babel and CLDR versions
that made them) and, on every later load, re-derives it and compares: another seed's days, another
Babel or another CLDR (whose renderings can change between versions) raise a clear
:class:`~lmcourse.data.fetch.DataError` instead of silently changing the data.

Sources: Unicode CLDR 49 (via Babel 2.19, ``babel.core.get_cldr_version()``); ISO 8601-1:2019.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lmcourse.data.fetch import DataError, cache_root, display_path, write_json_atomic
from lmcourse.validation import check_fraction, check_ids, check_int, check_positive_int

LANGUAGES: tuple[str, ...] = ("en", "zh", "ja", "de", "fr", "ru")
FORMATS: tuple[str, ...] = ("full", "long", "medium")
DIRECTIONS: tuple[str, ...] = ("to_iso", "iso_to_zh")
FIRST_DAY = dt.date(1900, 1, 1)
LAST_DAY = dt.date(2099, 12, 31)
SPLITS: tuple[str, ...] = ("train", "val", "test")
FOLDER = "dates"
_PROBE_DAYS = 400


def cldr_versions() -> dict[str, str]:
    """The installed ``{"babel": "2.19.0", "cldr": "49"}`` (what renders the data)."""
    import babel
    from babel.core import get_cldr_version

    return {"babel": babel.__version__, "cldr": str(get_cldr_version())}


def all_days() -> np.ndarray:
    """Every day of the range as proleptic Gregorian ordinals (``date.toordinal()``), int64
    ``(73049,)``, in order."""
    return np.arange(FIRST_DAY.toordinal(), LAST_DAY.toordinal() + 1, dtype=np.int64)


def iso(day: int | dt.date) -> str:
    """ISO 8601 extended calendar date ``YYYY-MM-DD`` of a date or ordinal."""
    return _as_date(day).isoformat()


def render(day: int | dt.date, language: str, fmt: str) -> str:
    """``day`` written by CLDR for ``language`` in format ``fmt`` (``babel.dates.format_date``).

    Example: ``render(date(1987, 3, 9), "zh", "full") == "1987年3月9日星期一"``.

    Raises:
        ValueError: unknown ``language`` or ``fmt`` (the message lists the valid ones), or a day
            outside 1900-01-01 … 2099-12-31.
    """
    from babel.dates import format_date

    _check_choice("language", language, LANGUAGES)
    _check_choice("fmt", fmt, FORMATS)
    return format_date(_as_date(day), fmt, locale=_locale(language))


@dataclass(frozen=True)
class DatePairs:
    """Source–target pairs, one row per pair (all arrays ``(n,)``).

    Attributes:
        source, target: the strings (``str`` object arrays).
        language: the source language (``"en"`` … ``"ru"``), or ``"iso"`` for ``iso_to_zh``.
        fmt: the CLDR format of the rendered side (``"full"``, ``"long"``, ``"medium"``).
        direction: ``"to_iso"`` or ``"iso_to_zh"``.
        day: the date as an ordinal (int64).
    """

    source: np.ndarray
    target: np.ndarray
    language: np.ndarray
    fmt: np.ndarray
    direction: np.ndarray
    day: np.ndarray

    def __len__(self) -> int:
        return len(self.source)

    def subset(self, rows: np.ndarray | Sequence[int] | slice) -> DatePairs:
        """The pairs at ``rows`` (indices, a boolean mask or a slice)."""
        return DatePairs(*(getattr(self, f)[rows] for f in
                           ("source", "target", "language", "fmt", "direction", "day")))

    def group(self) -> np.ndarray:
        """One label per pair for per-language tables: the source language for ``to_iso``
        (``"zh"``), ``"iso→zh"`` for the reverse direction; ``str`` object array ``(n,)``."""
        return np.where(self.direction == "to_iso", self.language, "iso→zh").astype(object)


def date_pairs(days: Iterable[int] | np.ndarray, *, languages: Sequence[str] = LANGUAGES,
               formats: Sequence[str] = FORMATS, reverse: bool = True) -> DatePairs:
    """All pairs of the given days: per day, every ``language × format`` → ISO, then (with
    ``reverse``) ISO → the Chinese long form.

    Args:
        days: ordinals (see :func:`all_days`), any order; pairs come day by day in that order.
        languages, formats: subsets of :data:`LANGUAGES` and :data:`FORMATS`.
        reverse: also add the ``iso_to_zh`` pair of each day.

    Returns:
        :class:`DatePairs` with ``len(days) * (len(languages) * len(formats) + reverse)`` rows.

    Raises:
        ValueError: an unknown language or format, or a day outside the range.
    """
    for lang in languages:
        _check_choice("language", lang, LANGUAGES)
    for fmt in formats:
        _check_choice("fmt", fmt, FORMATS)
    rows: list[tuple[str, str, str, str, str, int]] = []
    for day in np.asarray(list(days) if not isinstance(days, np.ndarray) else days).tolist():
        date, target = _as_date(day), iso(day)
        for lang in languages:
            for fmt in formats:
                rows.append((render(date, lang, fmt), target, lang, fmt, "to_iso", day))
        if reverse:
            rows.append((target, render(date, "zh", "long"), "iso", "long", "iso_to_zh", day))
    cols = list(zip(*rows, strict=True)) if rows else [()] * 6
    obj = [np.asarray(c, dtype=object) for c in cols[:5]]
    return DatePairs(*obj, np.asarray(cols[5], dtype=np.int64))


def make_date_split(seed: int = 0, val_fraction: float = 0.05, test_fraction: float = 0.1
                    ) -> dict[str, np.ndarray]:
    """A seeded split of the days (not of the pairs): ``{"train", "val", "test"}`` → sorted
    ordinals (int64). Every day is in exactly one split.

    Raises:
        ValueError: ``seed`` not an integer ≥ 0, a fraction outside (0, 1), or fractions summing
            to 1 or more (no training days left).
    """
    seed = check_int("seed", seed, 0)
    val_fraction = check_fraction("val_fraction", val_fraction, open_low=True, open_high=True)
    test_fraction = check_fraction("test_fraction", test_fraction, open_low=True, open_high=True)
    if val_fraction + test_fraction >= 1:
        raise ValueError(f"val_fraction + test_fraction = {val_fraction + test_fraction:g} leaves "
                         "no training days; keep their sum below 1 (e.g. 0.05 and 0.1)")
    days = np.random.default_rng(seed).permutation(all_days())
    n_test, n_val = round(len(days) * test_fraction), round(len(days) * val_fraction)
    parts = {"test": days[:n_test], "val": days[n_test:n_test + n_val],
             "train": days[n_test + n_val:]}
    return {name: np.sort(parts[name]) for name in SPLITS}


def _fingerprint(versions: dict[str, str]) -> dict:
    """What the saved file records next to the days: versions and a hash of probe renderings."""
    probe = all_days()[:: len(all_days()) // _PROBE_DAYS][:_PROBE_DAYS]
    pairs = date_pairs(probe)
    text = "\n".join(f"{s}\t{t}" for s, t in zip(pairs.source, pairs.target, strict=True))
    return {**versions, "probe_days": len(probe), "probe_sha256": _sha(text)}


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def load_date_split(seed: int = 0, val_fraction: float = 0.05, test_fraction: float = 0.1,
                    root: Path | None = None) -> dict[str, np.ndarray]:
    """:func:`make_date_split`, saved once in the cache and checked on every load.

    The file ``dates/split_seed{seed}.json`` (in ``root`` or the data cache) holds the Babel and
    CLDR versions, the SHA-256 of the renderings of 400 probe days, the fractions, and the days
    of each split with their SHA-256. If it is missing it is written atomically; if present, the
    split is re-derived and must match it exactly.

    Returns:
        ``{"train", "val", "test"}`` → sorted ordinals, int64.

    Raises:
        DataError: the saved file was made by another Babel/CLDR version, renders the probe days
            differently, or holds other days (the message says which and how to fix it).
        ValueError: bad ``seed`` or fractions (see :func:`make_date_split`).
    """
    split = make_date_split(seed, val_fraction, test_fraction)
    fresh = {"seed": seed, "val_fraction": val_fraction, "test_fraction": test_fraction,
             **_fingerprint(cldr_versions()),
             "sha256": {k: _sha(",".join(map(str, v.tolist()))) for k, v in split.items()},
             "days": {k: v.tolist() for k, v in split.items()}}
    folder = (root or cache_root()) / FOLDER
    path = folder / f"split_seed{seed}.json"
    if path.exists():
        saved = json.loads(path.read_text())
        _compare(saved, fresh, path)
    else:
        write_json_atomic(path, fresh)
    return split


def _compare(saved: dict, fresh: dict, path: Path) -> None:
    where = display_path(path)
    for key in ("babel", "cldr"):
        if saved.get(key) != fresh[key]:
            raise DataError(
                f"{where} was made with {key} {saved.get(key)}, but {key} {fresh[key]} is "
                f"installed; CLDR renderings can change between versions. Install the recorded "
                f"version (`pip install babel=={saved.get('babel')}`) to reproduce the course's "
                f"numbers, or delete the file to re-derive the data with the installed one")
    if saved.get("probe_sha256") != fresh["probe_sha256"]:
        raise DataError(f"{where}: the probe days render differently than when the file was "
                        "saved (same Babel/CLDR version, other locale data?); delete the file to "
                        "re-derive it")
    for key in ("val_fraction", "test_fraction", "sha256", "days"):
        if saved.get(key) != fresh[key]:
            raise DataError(f"{where}: its {key} differs from the split seed {fresh['seed']} "
                            f"gives with val_fraction={fresh['val_fraction']:g}, "
                            f"test_fraction={fresh['test_fraction']:g}; delete it to re-derive")


def sample_days(days: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` of ``days`` drawn without replacement (seeded), sorted; all of them if ``n`` ≥ their
    number.

    Raises:
        ValueError: ``n`` not a positive integer.
    """
    n = check_positive_int("n", n)
    days = np.asarray(days)
    if n >= len(days):
        return np.sort(days)
    return np.sort(np.random.default_rng(seed).choice(days, n, replace=False))


# ----------------------------------------------------------------------------------------------
# characters → ids
# ----------------------------------------------------------------------------------------------
class CharVocab:
    """A character vocabulary with four special ids: ``PAD=0``, ``BOS=1``, ``EOS=2``, ``SEP=3``
    (the separator between prompt and target when a decoder-only model does the task).

    Args:
        texts: the strings whose characters make the vocabulary (sorted by code point after the
            specials, so it does not depend on the order of ``texts``).

    Raises:
        ValueError: ``texts`` holds no character at all.
    """

    PAD, BOS, EOS, SEP = 0, 1, 2, 3
    SPECIALS = ("<pad>", "<bos>", "<eos>", "<sep>")

    def __init__(self, texts: Iterable[str]):
        chars = sorted(set().union(*map(set, texts)))
        if not chars:
            raise ValueError("CharVocab needs at least one character; got only empty texts")
        self.chars: tuple[str, ...] = tuple(chars)
        self.itos: tuple[str, ...] = self.SPECIALS + self.chars
        self.stoi: dict[str, int] = {c: i for i, c in enumerate(self.itos) if i >= len(self.SPECIALS)}

    def __len__(self) -> int:
        return len(self.itos)

    @property
    def size(self) -> int:
        """Number of ids (specials included)."""
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        """The ids of ``text``'s characters (no specials added).

        Raises:
            ValueError: a character the vocabulary does not know (named with its position and
                code point).
        """
        try:
            return [self.stoi[c] for c in text]
        except KeyError:
            bad = next(i for i, c in enumerate(text) if c not in self.stoi)
            raise ValueError(
                f"character {text[bad]!r} (U+{ord(text[bad]):04X}) at position {bad} of {text!r} "
                f"is not in the vocabulary of {len(self.chars)} characters; the model was built "
                "from the training texts and cannot read it (use only characters of its "
                "languages, or rebuild the vocabulary with this text)") from None

    def encode_batch(self, texts: Sequence[str], max_len: int, *, bos: bool = False,
                     eos: bool = False) -> np.ndarray:
        """Encode and right-pad with ``PAD``: int32 ``(len(texts), max_len)``.

        Raises:
            ValueError: an unknown character, or a text (with its specials) longer than
                ``max_len`` (the message names the longest and the limit).
        """
        max_len = check_positive_int("max_len", max_len)
        out = np.full((len(texts), max_len), self.PAD, dtype=np.int32)
        for row, text in enumerate(texts):
            ids = [self.BOS] * bos + self.encode(text) + [self.EOS] * eos
            if len(ids) > max_len:
                raise ValueError(f"{text!r} needs {len(ids)} positions (specials included) but "
                                 f"max_len is {max_len}; shorten it or build the model with a "
                                 "larger maximum length")
            out[row, :len(ids)] = ids
        return out

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """Characters of ``ids`` up to the first ``EOS`` (``BOS``, ``PAD``, ``SEP`` skipped).

        Raises:
            ValueError: an id outside ``[0, size)``.
        """
        ids = check_ids("ids", np.asarray(ids), self.size, size_name="vocab size")
        out = []
        for i in ids.reshape(-1).tolist():
            if i == self.EOS:
                break
            if i >= len(self.SPECIALS):
                out.append(self.itos[i])
        return "".join(out)


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
_LOCALES: dict[str, object] = {}


def _locale(language: str):
    if language not in _LOCALES:
        from babel import Locale

        _LOCALES[language] = Locale.parse(language)
    return _LOCALES[language]


def _as_date(day: int | dt.date) -> dt.date:
    if isinstance(day, dt.date):
        date = day
    else:
        date = dt.date.fromordinal(check_int("day", day, 1))
    if not FIRST_DAY <= date <= LAST_DAY:
        raise ValueError(f"day {date.isoformat()} is outside the data's range "
                         f"{FIRST_DAY.isoformat()} … {LAST_DAY.isoformat()}")
    return date


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
