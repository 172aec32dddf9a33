"""The data catalog and ``python -m lmcourse.data``: list, verify, pack/unpack, require.

Every test works on a temporary cache (``LMCOURSE_DATA_DIR``) holding copies of only the small
VADER files; the real cache is read, never written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from lmcourse.data import catalog, cli
from lmcourse.data.fetch import (
    DATA_DIR_ENV,
    OFFLINE_ENV,
    DatasetUnavailableError,
    cache_root,
    sha256_file,
)
from lmcourse.data.registry import REGISTRY, VADER

REAL_CACHE = cache_root()   # the cache the course uses here (LMCOURSE_DATA_DIR or data/), read only


@pytest.fixture
def vader_cache(tmp_path, monkeypatch):
    """A temporary cache holding a copy of the four VADER files (skip if the real cache lacks them)."""
    src = REAL_CACHE / "vader"
    if not all((src / f.name).is_file() for f in VADER.files):
        pytest.skip(f"the VADER corpora are not in the data cache {REAL_CACHE} (run `make data`)")
    root = tmp_path / "cache"
    (root / "vader").mkdir(parents=True)
    for f in VADER.files:
        shutil.copyfile(src / f.name, root / "vader" / f.name)
    monkeypatch.setenv(DATA_DIR_ENV, str(root))
    return root


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    root = tmp_path / "empty"
    root.mkdir()
    monkeypatch.setenv(DATA_DIR_ENV, str(root))
    return root


def test_catalog_covers_every_registered_dataset(empty_cache):
    in_catalog = {i.dataset.name for i in catalog.ITEMS if i.dataset is not None}
    assert set(REGISTRY) <= in_catalog
    for item in catalog.ITEMS:
        assert item.chapters and item.size > 0 and item.source and item.checked_by
        assert (item.ensure is None) == (item.kind == "derived"), item.name
        assert all(n in catalog.CATALOG for n in item.inputs + ((item.fallback,) if item.fallback else ()))
        assert isinstance(catalog.is_cached(item, empty_cache), bool)   # every kind answers


def test_list_runs_as_a_module(vader_cache):
    out = subprocess.run([sys.executable, "-m", "lmcourse.data", "--list"], capture_output=True,
                         text=True, timeout=120, check=True).stdout
    header, *rows = out.splitlines()
    assert header.split()[:5] == ["name", "chapters", "size", "cached", "kind"]
    by_name = {r.split()[0]: r for r in rows}
    assert set(catalog.CATALOG) <= set(by_name)
    assert "06" in by_name["vader"] and " yes " in by_name["vader"]
    assert " no " in by_name["mnist"]                          # not in this temporary cache
    assert "00,03,08" in by_name["mnist"] and "MiB" in by_name["mnist"]


def test_verify_names_a_corrupt_and_a_missing_file(vader_cache, capsys):
    assert cli.main(["verify", "vader"]) == 0
    target = vader_cache / "vader" / "tweets_GroundTruth.txt"
    data = bytearray(target.read_bytes())
    data[100] ^= 0xFF                                          # same size, different bytes
    target.write_bytes(bytes(data))
    capsys.readouterr()
    assert cli.main(["verify", "vader"]) == 1
    err = capsys.readouterr().err
    assert "BAD vader/tweets_GroundTruth.txt" in err and "SHA-256" in err
    (vader_cache / "vader" / "nytEditorialSnippets_GroundTruth.txt").unlink()
    assert cli.main(["verify", "vader"]) == 1
    assert "MISSING vader/nytEditorialSnippets_GroundTruth.txt" in capsys.readouterr().err


def test_verify_rejects_unknown_names():
    with pytest.raises(SystemExit) as exc:
        cli.main(["verify", "mnistt"])
    assert exc.value.code == 2


def test_pack_unpack_round_trip(vader_cache, tmp_path, monkeypatch, capsys):
    emb = vader_cache / "minilm-movies" / "emb-0123abcd.npz"      # a (small) derived cache travels too
    emb.parent.mkdir()
    np.savez(emb, embeddings=np.ones((3, 384), np.float32), key=np.array("k"))
    archive = tmp_path / "course-data.tar"
    assert cli.main(["pack", str(archive)]) == 0
    assert "not packed: mnist, fashion_mnist" in capsys.readouterr().err
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        manifest = json.loads(tar.extractfile("MANIFEST.json").read())
    assert names[0] == "MANIFEST.json"
    assert set(manifest["files"]) == {f"vader/{f.name}" for f in VADER.files} | {"minilm-movies/emb-0123abcd.npz"}
    assert manifest["files"]["vader/tweets_GroundTruth.txt"]["sha256"] == VADER.files[0].sha256

    fresh = tmp_path / "fresh"
    monkeypatch.setenv(DATA_DIR_ENV, str(fresh))
    assert cli.main(["unpack", str(archive)]) == 0
    assert cli.main(["verify", "vader", "movie_embeddings"]) == 0
    assert sha256_file(fresh / "minilm-movies" / "emb-0123abcd.npz") == sha256_file(emb)
    assert not [p for p in fresh.iterdir() if p.name.startswith(".unpack-")]


def _tar(path: Path, members: dict[str, bytes], manifest: dict | None = None, link: str = "") -> Path:
    with tarfile.open(path, "w") as tar:
        files = {n: {"sha256": hashlib.sha256(b).hexdigest(), "size": len(b), "item": "x"}
                 for n, b in members.items()}
        for name, data in [("MANIFEST.json", json.dumps(manifest or {"format": 1, "files": files}).encode()),
                           *members.items()]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if link:
            info = tarfile.TarInfo("vader/link")
            info.type, info.linkname = tarfile.SYMTYPE, link
            tar.addfile(info)
    return path


@pytest.mark.parametrize("name", ["../escape.txt", "/tmp/lmcourse-escape.txt", "vader/../../escape.txt"])
def test_unpack_refuses_path_traversal(empty_cache, tmp_path, capsys, name):
    archive = _tar(tmp_path / "evil.tar", {name: b"pwned"})
    assert cli.main(["unpack", str(archive)]) == 1
    assert "refusing archive member" in capsys.readouterr().err
    assert list(empty_cache.iterdir()) == []
    assert not (tmp_path / "escape.txt").exists() and not Path("/tmp/lmcourse-escape.txt").exists()


def test_unpack_refuses_links_and_is_all_or_nothing(empty_cache, vader_cache, tmp_path, monkeypatch, capsys):
    good = {f"vader/{f.name}": (vader_cache / "vader" / f.name).read_bytes() for f in VADER.files}
    monkeypatch.setenv(DATA_DIR_ENV, str(empty_cache))
    assert cli.main(["unpack", str(_tar(tmp_path / "link.tar", good, link="/etc/passwd"))]) == 1
    assert "links and special files" in capsys.readouterr().err
    # one tampered file (its manifest entry tampered alike): the registry catches it, nothing placed
    bad = dict(good)
    bad["vader/tweets_GroundTruth.txt"] = b"x" + bad["vader/tweets_GroundTruth.txt"][1:]
    assert cli.main(["unpack", str(_tar(tmp_path / "bad.tar", bad))]) == 1
    err = capsys.readouterr().err
    assert "vader/tweets_GroundTruth.txt" in err and "nothing was unpacked" in err
    assert [p for p in empty_cache.rglob("*") if p.is_file()] == []


def test_require_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="unknown data item.*'mnistt'.*valid names: mnist, fashion_mnist"):
        catalog.require(["mnistt"])
    with pytest.raises(ValueError, match="not the string"):
        catalog.require("mnist")
    catalog.require(())                                        # nothing needed: nothing to do


def test_require_offline_with_an_empty_cache_gives_one_message(empty_cache, monkeypatch):
    monkeypatch.setenv(OFFLINE_ENV, "1")
    with pytest.raises(DatasetUnavailableError) as exc:
        catalog.require(["vader", "vader_splits", "digits"])
    msg = str(exc.value)
    assert msg.count("- 'vader'") == 1 and "used by chapter 06" in msg
    assert "`make data`" in msg and f"unset {OFFLINE_ENV}" in msg
    assert "`python -m lmcourse.data unpack course-data.tar`" in msg
    assert "'digits'" not in msg                               # installed with scikit-learn
    assert "How to fix" not in msg                             # the loaders' own advice is not repeated
    assert [p for p in empty_cache.rglob("*") if p.is_file()] == []


def test_require_mnist_falls_back_to_the_subset_with_a_warning(empty_cache, monkeypatch):
    def unavailable(root):
        raise DatasetUnavailableError("Dataset 'mnist': could not obtain train-images-idx3-ubyte")

    mnist = dataclasses.replace(catalog.CATALOG["mnist"], ensure=unavailable)
    monkeypatch.setitem(catalog.CATALOG, "mnist", mnist)
    with pytest.warns(UserWarning, match="'mnist' is not available.*SUBSET.*make data"):
        catalog.require(["mnist"])
    # without the subset too: one error naming MNIST's chapters, not the subset's
    monkeypatch.setitem(catalog.CATALOG, "mnist_subset",
                        dataclasses.replace(catalog.CATALOG["mnist_subset"], ensure=unavailable))
    with pytest.raises(DatasetUnavailableError, match=r"'mnist' \(MNIST.*chapters 00, 03, 08"):
        catalog.require(["mnist"])


def test_fix_says_unset_offline_only_when_it_is_set(monkeypatch):
    monkeypatch.delenv(OFFLINE_ENV, raising=False)
    assert "unset" not in catalog.fix_for(catalog.CATALOG["vader"])
    monkeypatch.setenv(OFFLINE_ENV, "1")
    assert f"unset {OFFLINE_ENV}" in catalog.fix_for(catalog.CATALOG["vader"])
    assert "`make install`" in catalog.fix_for(catalog.CATALOG["minilm"])
