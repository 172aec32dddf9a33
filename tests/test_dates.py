"""The chapter-07 date data (``lmcourse.data.dates``): renderings, the split by day, the saved
split's checks, and the character vocabulary."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest

from lmcourse.data import dates
from lmcourse.data.fetch import DataError

pytest.importorskip("babel")


def test_renderings_of_one_day():
    day = dt.date(1987, 3, 9)
    assert dates.render(day, "en", "long") == "March 9, 1987"
    assert dates.render(day, "zh", "full") == "1987年3月9日星期一"
    assert dates.render(day, "de", "medium") == "09.03.1987"
    assert dates.render(day.toordinal(), "fr", "long") == "9 mars 1987"
    assert dates.iso(day) == "1987-03-09"


def test_pairs_cover_every_language_format_and_the_reverse_direction():
    day = dt.date(2024, 2, 29).toordinal()
    pairs = dates.date_pairs([day])
    assert len(pairs) == len(dates.LANGUAGES) * len(dates.FORMATS) + 1
    forward = pairs.direction == "to_iso"
    assert set(pairs.target[forward]) == {"2024-02-29"}
    assert sorted(set(pairs.language[forward])) == sorted(dates.LANGUAGES)
    (rev,) = np.flatnonzero(~forward)
    assert (pairs.source[rev], pairs.target[rev]) == ("2024-02-29", "2024年2月29日")
    assert pairs.group()[rev] == "iso→zh" and pairs.group()[0] == "en"
    assert len(dates.date_pairs([day], languages=["zh"], reverse=False)) == 3


def test_split_is_by_day_disjoint_complete_and_seeded():
    a, b = dates.make_date_split(0), dates.make_date_split(0)
    c = dates.make_date_split(1)
    assert all(np.array_equal(a[k], b[k]) for k in dates.SPLITS)
    assert not np.array_equal(a["test"], c["test"])
    together = np.concatenate([a[k] for k in dates.SPLITS])
    assert np.array_equal(np.sort(together), dates.all_days())      # each day exactly once
    assert len(dates.all_days()) == 73_049
    assert len(a["test"]) == round(73_049 * 0.1) and len(a["val"]) == round(73_049 * 0.05)
    # no test day appears in training in any language: pairs are made per day
    train_pairs = dates.date_pairs(a["train"][:50])
    assert not set(train_pairs.day) & set(a["test"].tolist())


def test_saved_split_is_reused_and_checked(tmp_path):
    split = dates.load_date_split(0, root=tmp_path)
    path = tmp_path / "dates" / "split_seed0.json"
    saved = json.loads(path.read_text())
    assert saved["babel"] == dates.cldr_versions()["babel"]
    assert saved["cldr"] == dates.cldr_versions()["cldr"]
    again = dates.load_date_split(0, root=tmp_path)
    assert all(np.array_equal(split[k], again[k]) for k in dates.SPLITS)
    saved["cldr"] = "41"                                  # made with another CLDR
    path.write_text(json.dumps(saved))
    with pytest.raises(DataError, match="cldr 41"):
        dates.load_date_split(0, root=tmp_path)
    saved["cldr"] = dates.cldr_versions()["cldr"]
    saved["probe_sha256"] = "0" * 64                      # renders differently
    path.write_text(json.dumps(saved))
    with pytest.raises(DataError, match="render differently"):
        dates.load_date_split(0, root=tmp_path)
    saved = json.loads(json.dumps(saved) .replace("0" * 64, dates._fingerprint(
        dates.cldr_versions())["probe_sha256"]))
    saved["days"]["test"] = saved["days"]["test"][1:]     # other days
    path.write_text(json.dumps(saved))
    with pytest.raises(DataError, match="days differs|sha256 differs"):
        dates.load_date_split(0, root=tmp_path)


def test_char_vocab_round_trip_and_errors():
    vocab = dates.CharVocab(["1987年3月9日", "1987-03-09"])
    assert vocab.size == len(vocab.SPECIALS) + len(set("1987年3月9日-0"))
    ids = vocab.encode_batch(["1987年3月9日"], 13, bos=True, eos=True)
    assert ids.shape == (1, 13) and ids[0, 0] == vocab.BOS and ids[0, 10] == vocab.EOS
    assert vocab.decode(ids[0]) == "1987年3月9日"
    assert vocab.decode([vocab.encode("19")[0], vocab.EOS, vocab.encode("8")[0]]) == "1"
    with pytest.raises(ValueError, match="'Z' .*not in the vocabulary"):
        vocab.encode("19Z")
    with pytest.raises(ValueError, match="max_len is 3"):
        vocab.encode_batch(["1987"], 3)
    with pytest.raises(ValueError, match="outside the table's range"):
        vocab.decode([vocab.size])
    with pytest.raises(ValueError, match="at least one character"):
        dates.CharVocab(["", ""])


@pytest.mark.parametrize("call, message", [
    (lambda: dates.render(dt.date(1899, 12, 31), "en", "long"), "outside the data's range"),
    (lambda: dates.render(dt.date(2000, 1, 1), "xx", "long"), "language must be one of"),
    (lambda: dates.render(dt.date(2000, 1, 1), "en", "short"), "fmt must be one of"),
    (lambda: dates.make_date_split(-1), "seed"),
    (lambda: dates.make_date_split(0, 0.5, 0.5), "leaves no training days"),
    (lambda: dates.make_date_split(0, 0.0, 0.1), "val_fraction"),
    (lambda: dates.sample_days(np.arange(3), 0, 0), "positive integer"),
])
def test_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()
