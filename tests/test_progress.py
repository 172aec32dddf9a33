"""lmcourse.progress: counting, the summary line, silence switches, and what a notebook keeps."""

from __future__ import annotations

import json

import pytest

from lmcourse import progress as prog
from lmcourse.progress import Progress, format_value, progress


def test_iterating_counts_each_item_and_prints_one_summary(capsys, monkeypatch):
    monkeypatch.setenv("LMCOURSE_PROGRESS", "0")
    items = list(progress(range(7), desc="encode", unit="sentences"))
    assert items == list(range(7))
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    assert out[0].startswith("encode: 7 sentences in ") and "sentences/s" in out[0]


def test_manual_counting_reports_units_steps_and_final_values(capsys, monkeypatch):
    monkeypatch.setenv("LMCOURSE_PROGRESS", "0")
    with progress(total=640, desc="train", unit="img") as p:
        for step in range(10):
            p.update(64, loss=1.0 / (step + 1))
    assert (p.n, p.steps) == (640, 10)
    line = capsys.readouterr().out.strip()
    assert line.startswith("train: 640 img (10 steps) in ")
    assert line.endswith("img/s, final loss 0.1")


def test_a_failure_is_reported_as_stopped(capsys, monkeypatch):
    monkeypatch.setenv("LMCOURSE_PROGRESS", "0")
    with pytest.raises(KeyError):
        for i in progress(range(10), desc="eval", unit="batches"):
            if i == 3:
                raise KeyError(i)
    assert "eval: stopped after 3 of 10 batches" in capsys.readouterr().out


def test_disabled_is_silent_and_close_is_idempotent(capsys):
    p = progress(total=5, desc="x", enabled=False)
    p.update(5)
    p.close()
    p.close()
    assert capsys.readouterr() == ("", "")


def test_custom_summary_replaces_the_default(capsys, monkeypatch):
    monkeypatch.setenv("LMCOURSE_PROGRESS", "0")
    p = progress(total=3, desc="x")
    p.update(3)
    p.close("x: done my way")
    p.close("again")
    assert capsys.readouterr().out == "x: done my way\n"


def test_text_bar_goes_to_stderr_and_is_erased(capsys, monkeypatch):
    monkeypatch.delenv("LMCOURSE_PROGRESS", raising=False)
    monkeypatch.setattr(prog, "TEXT_DELAY_S", 0.0)
    with progress(total=4, desc="sweep", unit="runs") as p:
        for _ in range(4):
            p.update(1)
    out, err = capsys.readouterr()
    assert out.startswith("sweep: 4 runs in ")
    assert "sweep:" in err and err.rstrip(" ").endswith("\r")  # drawn, then blanked
    assert "\n" not in err


@pytest.mark.parametrize("value", ["2", "maybe"])
def test_bad_environment_value_says_how_to_fix(monkeypatch, value):
    monkeypatch.setenv("LMCOURSE_PROGRESS", value)
    with pytest.raises(ValueError, match="set it to 0"):
        progress(total=1)


def test_bad_counts_are_refused():
    with pytest.raises(ValueError, match="total must be >= 0"):
        progress(total=-1, enabled=False)
    p = progress(total=3, enabled=False)
    with pytest.raises(ValueError, match="cannot go back"):
        p.update(-1)
    with pytest.raises(TypeError, match="update"):
        iter(Progress(total=3, enabled=False)).__next__()


def test_format_value():
    assert format_value(0.081234) == "0.08123"
    assert format_value(12000) == "12,000"
    assert format_value(True) == "True"
    assert format_value("2/3") == "2/3"
    assert format_value(float("nan")) == "nan"


_CELL = """\
from lmcourse.progress import progress
import time
print("before")
with progress(total=640, desc="train", unit="img") as p:
    for step in range(10):
        time.sleep(0.02)
        p.update(64, loss=0.5)
print("after")
"""


def _run_notebook(monkeypatch, env_value: str | None) -> dict:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("ipywidgets")
    if env_value is None:
        monkeypatch.delenv("LMCOURSE_PROGRESS", raising=False)
    else:
        monkeypatch.setenv("LMCOURSE_PROGRESS", env_value)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(_CELL)])
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    return json.loads(nbformat.writes(nb))  # what the saved .ipynb holds


def _texts(outputs: list[dict]) -> list[str]:
    texts = []
    for out in outputs:
        if out["output_type"] == "stream":
            texts += "".join(out["text"]).splitlines()
        else:
            assert set(out["data"]) == {"text/plain"}, out  # no widget view, no HTML bar
            texts.append("".join(out["data"]["text/plain"]))
    return texts


@pytest.mark.parametrize("env_value", [None, "0"], ids=["live-widget", "LMCOURSE_PROGRESS=0"])
def test_saved_notebook_keeps_only_the_summary_line(monkeypatch, env_value):
    saved = _run_notebook(monkeypatch, env_value)
    outputs = saved["cells"][0]["outputs"]
    assert "widget-view" not in json.dumps(outputs)
    texts = _texts(outputs)
    assert texts[0] == "before" and texts[-1] == "after"
    assert len(texts) == 3, texts
    assert texts[1].startswith("train: 640 img (10 steps) in ")
    assert texts[1].endswith("final loss 0.5")
    assert "%|" not in json.dumps(outputs)  # no half-drawn text bar
    if env_value == "0":  # what tools/run_course.py should set: no widget state saved either
        assert "widgets" not in saved["metadata"]


def test_slow_units_report_seconds_per_unit_not_a_zero_rate(monkeypatch):
    monkeypatch.setenv("LMCOURSE_PROGRESS", "0")
    bar = progress(total=5, desc="demo runs", unit="runs")
    bar.update(5)
    bar._start -= 74.5                      # as if the five runs took 74.5 s
    text = bar.summary()
    assert "0 runs/s" not in text and "s per run" in text, text
    fast = progress(total=100, desc="train", unit="img")
    fast.update(100)
    fast._start -= 2.0
    assert "img/s" in fast.summary()
