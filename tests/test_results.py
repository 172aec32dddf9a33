"""The README's measured results are generated from the committed run logs in results/.

Each ``results/<notebook>.<scale>.json`` is written by ``tools/run_course.py --save-results``
from the values the notebook recorded. These tests fail when a number in the README's generated
block is typed in or stale, or when a log lacks what is needed to reproduce it.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("results_table", ROOT / "tools" / "results_table.py")
results_table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(results_table)

LOGS = sorted((ROOT / "results").glob("*.json"))
NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_readme_block_equals_the_generated_one():
    readme = (ROOT / "README.md").read_text()
    generated = results_table.render(results_table.load_runs())
    assert generated in readme, (
        "README.md's results block differs from results/*.json: run "
        "`python tools/results_table.py --write` (never edit the block by hand)")


def test_every_notebook_has_a_quick_scale_log():
    have = {p.name.rsplit(".", 2)[0] for p in LOGS if p.name.endswith(".quick.json")}
    assert set(NOTEBOOKS) <= have, f"no results/<nb>.quick.json for {sorted(set(NOTEBOOKS) - have)}"


@pytest.mark.parametrize("log", LOGS, ids=[p.name for p in LOGS])
def test_log_says_how_to_reproduce_it(log):
    run = json.loads(log.read_text())
    for key in ("notebook", "scale", "command", "seconds", "device", "machine", "versions",
                "git_commit", "results"):
        assert key in run, f"{log.name} lacks {key!r}"
    assert log.name == f"{Path(run['notebook']).stem}.{run['scale']}.json"
    assert f"--scale {run['scale']}" in run["command"] and "--save-results" in run["command"]
    assert "/root/" not in log.read_text() and "/work/" not in log.read_text()


def test_fmt_is_what_the_table_shows():
    assert results_table.fmt({"value": 0.98765, "unit": ""}) == "0.9877"
    assert results_table.fmt({"value": 12345, "unit": "params"}) == "12,345 params"
    assert results_table.fmt(None) == "—"
    assert results_table.fmt({"value": None, "unit": "s"}).startswith("none")
    assert results_table.fmt({"value": [0.98765, 1], "unit": ""}) == "[0.9877, 1]"


def test_run_time_shows_the_load_it_ran_under():
    assert results_table.run_time({"seconds": 61.4}) == "61 s"
    assert results_table.run_time({"seconds": 61.4, "load_average_start_end": [0.2, 1.84]}) == (
        "61 s (load 0.2 → 1.8)")
