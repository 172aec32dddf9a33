"""The VADER corpora loader: parsing (odd lines counted), safe fetching, labels and splits.

Synthetic files and archives are written in each test; the real-data tests use the real files
from the cache (fetched offline-capable from the vaderSentiment sdist on PyPI) and are skipped
when they cannot be obtained.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from lmcourse.baselines import vader_compound
from lmcourse.data.fetch import OFFLINE_ENV, DataError, DatasetUnavailableError, sha256_file
from lmcourse.data.registry import REGISTRY, VADER
from lmcourse.data.vader import (
    ARCHIVE_INNER,
    CORPORA,
    EXPECTED_COUNTS,
    FILES,
    VaderData,
    ensure_vader,
    load_splits,
    load_vader,
    make_splits,
    parse_ground_truth,
    polarity_labels,
)

# --- parsing ---------------------------------------------------------------------------------

def test_parse_clean_crlf_file():
    raw = b"1\t2.5\tGreat movie!\r\n2\t-1.25\tNot good.\r\n3\t0\tIt is a film.\r\n"
    ids, ratings, texts, report = parse_ground_truth(raw, "movie")
    assert ids == ["1", "2", "3"]
    np.testing.assert_allclose(ratings, [2.5, -1.25, 0.0])
    assert ratings.dtype == np.float32
    assert texts == ["Great movie!", "Not good.", "It is a film."]
    assert report.counts == {"kept": 3}
    assert report.problems == []


def test_parse_counts_every_odd_line():
    raw = (b"1\t1.0\tfine line\n"
           b"\n"                                   # blank
           b"2\t0.5\ttext with\ta stray tab\n"      # extra tab: kept, repaired
           b"3\tabc\tbad rating\n"                  # not a number
           b"4\t7.5\tout of range\n"                # |rating| > 4
           b"5\tnan\tnot finite\n"
           b"6\t-0.5\n"                             # too few fields
           b"1\t2.0\tduplicate id\n"
           b"7\t3.0\tcaf\xe9 in cp1252\n"           # not UTF-8: decoded as cp1252, kept
           b"8\t-4\tlast line without newline")
    ids, ratings, texts, report = parse_ground_truth(raw, "x")
    assert ids == ["1", "2", "7", "8"]
    assert texts[1] == "text with a stray tab"
    assert texts[2] == "café in cp1252"
    np.testing.assert_allclose(ratings, [1.0, 0.5, 3.0, -4.0])
    assert report.counts["kept"] == 4
    assert report.counts["blank"] == 1
    assert report.counts["extra_tabs"] == 1
    assert report.counts["bad_rating"] == 3
    assert report.counts["fields<3"] == 1
    assert report.counts["duplicate_id"] == 1
    assert report.counts["not_utf8"] == 1
    # every skipped line is accounted for: 10 lines = 4 kept + 6 skipped
    skipped = sum(report.counts[k] for k in ("blank", "bad_rating", "fields<3", "duplicate_id"))
    assert report.counts["kept"] + skipped == 10
    assert [p[0] for p in report.problems if p[1] == "bad_rating"] == [4, 5, 6]
    assert "odd lines" in str(report)


def test_parse_trailing_newline_is_not_a_blank_line():
    _, _, _, report = parse_ground_truth(b"1\t1\ta\n", "x")
    assert report.counts == {"kept": 1}


# --- labels ----------------------------------------------------------------------------------

def test_polarity_thresholds():
    score = np.array([-1.0, -0.05, -0.0499, 0.0, 0.0499, 0.05, 1.0])
    np.testing.assert_array_equal(polarity_labels(score), [0, 0, 1, 1, 1, 2, 2])
    assert polarity_labels(score).dtype == np.int32
    # the human rating 0.2 on the -4..4 scale is exactly the threshold 0.05
    np.testing.assert_array_equal(polarity_labels(np.array([0.2, 0.19, -0.2]) / 4), [2, 1, 0])


# --- fetching --------------------------------------------------------------------------------

def _archive(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, raw in files.items():
            info = tarfile.TarInfo(ARCHIVE_INNER + name)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return path


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv(OFFLINE_ENV, "1")


def test_checksum_failure_leaves_no_cache_file(tmp_path, offline):
    fake = {name: b"1\t1.0\tnot the real corpus\r\n" for name in FILES.values()}
    archive = _archive(tmp_path / "fake.tar.gz", fake)
    root = tmp_path / "cache"
    with pytest.raises(DatasetUnavailableError) as err:
        ensure_vader(root, archive=archive)
    msg = str(err.value)
    assert "SHA-256" in msg or "bytes, expected" in msg
    assert OFFLINE_ENV in msg                           # the network sources were skipped, and said so
    folder = root / VADER.name
    assert not folder.exists() or list(folder.iterdir()) == []   # nothing unverified, no .part file


def test_archive_missing_a_file(tmp_path, offline):
    archive = _archive(tmp_path / "a.tar.gz", {FILES["tweets"]: b"1\t1\tx\n"})
    with pytest.raises(DatasetUnavailableError, match="1 of 4 ground-truth files"):
        ensure_vader(tmp_path / "cache", archive=archive)


def test_not_an_archive(tmp_path, offline):
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"this is not a tarball")
    with pytest.raises(DatasetUnavailableError, match="unreadable archive"):
        ensure_vader(tmp_path / "cache", archive=bad)


# --- real data -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real():
    try:
        return load_vader()
    except DatasetUnavailableError as exc:  # pragma: no cover - no cache and no PyPI
        pytest.skip(f"VADER corpora unavailable: {exc}")


def test_registry_entry():
    assert REGISTRY["vader"] is VADER
    assert {f.name for f in VADER.files} == set(FILES.values())


def test_real_counts_and_ranges(real):
    for c in CORPORA:
        m = real.where(c)
        assert len(m) == EXPECTED_COUNTS[c]
        assert real.reports[c].counts["kept"] == EXPECTED_COUNTS[c]
        assert real.rating[m].min() >= -4 and real.rating[m].max() <= 4
    assert len(set(real.key)) == len(real)
    assert set(np.unique(real.domain)) == {0, 1, 2, 3}
    # the first tweet of the corpus
    assert real.text[0].startswith("Somehow I was blessed with some really amazing friends")
    assert abs(real.rating[0] - 2.726315789) < 1e-6


def test_real_archive_installs_into_an_empty_cache(real, tmp_path, offline):
    """The real files, packed into an archive, pass the checks and land in a fresh cache."""
    from lmcourse.data.vader import ensure_vader as ev
    paths = ev()                                            # the real cache
    archive = _archive(tmp_path / "real.tar.gz", {FILES[c]: paths[c].read_bytes() for c in CORPORA})
    root = tmp_path / "cache"
    got = ensure_vader(root, archive=archive)
    for f in VADER.files:
        assert sha256_file(root / VADER.name / f.name) == f.sha256
    assert set(got) == set(CORPORA)
    # now served from the cache, without any source
    assert ensure_vader(root) == got


def test_corrupt_cached_file_is_replaced(real, tmp_path, offline):
    paths = ensure_vader()
    archive = _archive(tmp_path / "real.tar.gz", {FILES[c]: paths[c].read_bytes() for c in CORPORA})
    root = tmp_path / "cache"
    ensure_vader(root, archive=archive)
    victim = root / VADER.name / FILES["nyt"]
    victim.write_bytes(b"corrupt")
    with pytest.raises(DatasetUnavailableError):
        ensure_vader(root)                                  # no source: corrupt file deleted, error
    assert not victim.exists()
    ensure_vader(root, archive=archive)
    assert sha256_file(victim) == next(f.sha256 for f in VADER.files if f.name == FILES["nyt"])


def test_split_is_deterministic_disjoint_and_saved(real, tmp_path):
    a, b = make_splits(real, seed=0), make_splits(real, seed=0)
    assert a == b
    assert make_splits(real, seed=1) != a
    for c in CORPORA:
        parts = [set(a[c][p]) for p in ("train", "val", "test")]
        assert sum(len(p) for p in parts) == EXPECTED_COUNTS[c]
        assert len(set.union(*parts)) == EXPECTED_COUNTS[c]            # disjoint and complete
        assert len(a[c]["train"]) + len(a[c]["val"]) == EXPECTED_COUNTS[c] // 2
        assert all(k.startswith(c + ":") for k in a[c]["test"])
    rows = load_splits(real, seed=0, root=tmp_path)
    saved = tmp_path / VADER.name / "splits_seed0_val0.2.json"
    assert json.loads(saved.read_text()) == a
    again = load_splits(real, seed=0, root=tmp_path)
    for c in CORPORA:
        for p in ("train", "val", "test"):
            np.testing.assert_array_equal(rows[c][p], again[c][p])
            assert list(real.key[rows[c][p]]) == a[c][p]


def test_saved_split_that_does_not_match_raises(real, tmp_path):
    load_splits(real, seed=0, root=tmp_path)
    path = tmp_path / VADER.name / "splits_seed0_val0.2.json"
    saved = json.loads(path.read_text())
    saved["tweets"]["test"], saved["tweets"]["train"] = saved["tweets"]["train"], saved["tweets"]["test"]
    path.write_text(json.dumps(saved))
    with pytest.raises(DataError, match="differs"):
        load_splits(real, seed=0, root=tmp_path)


def test_vader_package_on_known_sentences():
    pytest.importorskip("vaderSentiment", reason="pip install vaderSentiment==3.3.2")
    compound = vader_compound(["VADER is smart, handsome, and funny!", "The book was kind of bad.",
                               "The book is on the table."])
    assert compound[0] > 0.5 and compound[1] < -0.3 and compound[2] == 0.0
    assert compound.dtype == np.float32 and np.all(np.abs(compound) <= 1)
    np.testing.assert_array_equal(polarity_labels(compound), [2, 0, 1])


# --- bad input -------------------------------------------------------------------------------

@pytest.mark.parametrize("score", [[0.0, np.nan], [np.inf], [1.5], [-1.01], [2.0]])
def test_polarity_labels_rejects_bad_scores(score):
    with pytest.raises(ValueError, match="NaN|normalised"):
        polarity_labels(np.array(score))


@pytest.mark.parametrize("threshold", [-0.01, 1.0, np.nan, True, "0.05"])
def test_polarity_labels_rejects_bad_threshold(threshold):
    with pytest.raises(ValueError, match="threshold"):
        polarity_labels(np.array([0.5]), threshold=threshold)


def test_polarity_labels_range_edges():
    # the edges of the score range are valid; threshold 0 is the lower edge of its range
    np.testing.assert_array_equal(polarity_labels(np.array([-1.0, 1.0])), [0, 2])
    np.testing.assert_array_equal(polarity_labels(np.array([-1.0, 0.0, 1.0]), threshold=0.0), [0, 2, 2])
    assert polarity_labels(np.array([], np.float32)).shape == (0,)


def _tiny_data(n_per_corpus: int = 10):
    """A small synthetic VaderData with every corpus present."""
    keys, corpora, ratings, texts = [], [], [], []
    for corpus in CORPORA:
        for i in range(n_per_corpus):
            keys.append(f"{corpus}:{i}")
            corpora.append(corpus)
            ratings.append((i % 9) - 4.0)
            texts.append(f"sentence {i} of {corpus}")
    text = np.empty(len(texts), dtype=object)
    text[:] = texts
    return VaderData(np.asarray(keys), np.asarray(corpora),
                     np.asarray([CORPORA.index(c) for c in corpora], dtype=np.int32),
                     np.asarray(ratings, dtype=np.float32), text, {})


@pytest.mark.parametrize("kwargs", [{"val_fraction": -0.1}, {"val_fraction": 1.0},
                                    {"val_fraction": float("nan")}, {"seed": -1}, {"seed": 1.5}])
def test_make_splits_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        make_splits(_tiny_data(), **kwargs)


def test_make_splits_val_fraction_zero_is_valid():
    s = make_splits(_tiny_data(), val_fraction=0.0)
    for c in CORPORA:
        assert s[c]["val"] == [] and len(s[c]["train"]) == 5 and len(s[c]["test"]) == 5


def test_unknown_corpus_is_rejected():
    data = _tiny_data()
    assert len(data.where("nyt")) == 10
    with pytest.raises(ValueError, match="unknown corpus 'twitter'"):
        data.where("twitter")


@pytest.mark.parametrize("texts,match", [("one string", "not one string"),
                                         (["ok", None], r"texts\[1\]")])
def test_vader_compound_rejects_bad_texts(texts, match):
    with pytest.raises(ValueError, match=match):
        vader_compound(texts)


def test_vader_compound_of_no_texts_is_empty_like_encode():
    scores = vader_compound([])
    assert scores.shape == (0,) and scores.dtype == np.float32


def test_parse_rejects_decoded_text():
    with pytest.raises(ValueError, match="bytes"):
        parse_ground_truth("1\t1.0\ttext\n", "x")
