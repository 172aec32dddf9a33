"""Committed notebooks show no absolute path of the machine that executed them.

A path such as ``/home/alice/course/data/mnist`` or ``/root/.venv/lib/python3.11/...`` in a
committed output tells a student nothing and leaks the author's machine; notebooks print paths with
``lmcourse.data.fetch.display_path`` (relative to the project or the data cache) instead.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))

# Home folders, the usual work and temp roots, and Windows user folders. System paths that are the
# same on every Debian machine (e.g. /usr/share/datasets/fashion-mnist) are not machine-specific.
MACHINE_PATH = re.compile(
    r"(?<![\w.~])(?:/home/[^/\s'\"]+|/root|/work|/tmp|/private/var|/Users/[^/\s'\"]+"
    r"|[A-Za-z]:\\Users\\[^\\\s'\"]+)(?:/|\\)")


def _output_texts(nb: dict):
    for index, cell in enumerate(nb["cells"]):
        for output in cell.get("outputs", []):
            texts = [output.get("text", "")]
            texts += [v for k, v in output.get("data", {}).items() if k.startswith("text/")]
            texts += output.get("traceback", [])
            for text in texts:
                yield index, "".join(text) if isinstance(text, list) else str(text)


def machine_paths(nb: dict, extra: tuple[str, ...] = ()) -> list[tuple[int, str]]:
    """``(cell index, offending text)`` for each output that shows a machine's absolute path."""
    found = []
    for index, text in _output_texts(nb):
        match = MACHINE_PATH.search(text) or next(
            (re.search(re.escape(p), text) for p in extra if p and p in text), None)
        if match:
            start = max(match.start() - 40, 0)
            found.append((index, text[start:match.end() + 60]))
    return found


def test_detector_finds_machine_paths():
    nb = {"cells": [
        {"outputs": [{"text": "saved to /home/alice/course/data/mnist/x"}]},
        {"outputs": [{"data": {"text/plain": "File /root/.venv/lib/python3.11/x.py"}}]},
        {"outputs": [{"text": "from data-cache/mnist (official files)"}]},
        {"outputs": [{"text": "Debian's /usr/share/datasets/fashion-mnist/"}]},
    ]}
    assert [i for i, _ in machine_paths(nb)] == [0, 1]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_committed_outputs_hold_no_machine_path(path):
    nb = json.loads(path.read_text())
    found = machine_paths(nb, extra=(str(ROOT), str(Path.home())))
    assert not found, (f"{path.name} shows absolute paths of the machine that ran it (print them with "
                       f"lmcourse.data.fetch.display_path): {found[:3]}")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_committed_outputs_hold_no_widget_debris_or_figure_problems(path):
    """Progress bars leave one summary line, not widget state (``tools/run_course.py`` sets
    ``LMCOURSE_PROGRESS=0``); every figure passed ``lmcourse.plotting.check_figure``."""
    nb = json.loads(path.read_text())
    assert "widgets" not in nb.get("metadata", {}), (
        f"{path.name} keeps widget state in its metadata: re-execute it with tools/run_course.py")
    for index, cell in enumerate(nb["cells"]):
        for output in cell.get("outputs", []):
            assert "application/vnd.jupyter.widget-view+json" not in output.get("data", {}), (
                f"{path.name} cell {index} keeps a progress widget: re-execute it with tools/run_course.py")
    problems = [(i, t.strip()[:120]) for i, t in _output_texts(nb) if "FIGURE CHECK" in t]
    assert not problems, f"{path.name} has figures without labels, title or legend: {problems[:3]}"
