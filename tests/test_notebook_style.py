"""Every code cell a student reads is short: at most 30 non-blank lines, one idea per cell.

Issue 12, item 5 ("cells a student reads"): a cell longer than a screen mixes several steps, and
a student who runs it cannot see which step printed what. Long cells are split into single ideas
(a cell per step, a sentence of markdown between them where it helps). The test globs every
notebook in ``notebooks/``, so new chapters are held to the same rule.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
MAX_LINES = 30


def nonblank_lines(source: str | list[str]) -> int:
    """Number of lines of a cell's source that hold more than white space."""
    text = "".join(source) if isinstance(source, list) else source
    return sum(1 for line in text.splitlines() if line.strip())


def long_cells(nb: dict, max_lines: int = MAX_LINES) -> list[tuple[int, int]]:
    """``(cell index, non-blank lines)`` of every code cell longer than ``max_lines``.

    The index counts all cells (markdown too) from 0, as ``nb["cells"][index]``.
    """
    return [(index, n) for index, cell in enumerate(nb["cells"])
            if cell["cell_type"] == "code" and (n := nonblank_lines(cell["source"])) > max_lines]


def test_the_notebooks_are_found():
    assert len(NOTEBOOKS) >= 10, [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.name)
def test_code_cells_have_at_most_30_non_blank_lines(notebook: Path):
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    found = long_cells(nb)
    assert not found, (f"{notebook.name}: code cells longer than {MAX_LINES} non-blank lines "
                       "(cell index: lines): "
                       + ", ".join(f"{index}: {n}" for index, n in found)
                       + "; split each into single ideas, a cell per step")


def _notebook(*cells: tuple[str, str]) -> dict:
    return {"cells": [{"cell_type": kind, "source": source, "metadata": {}} for kind, source in cells]}


def test_a_long_code_cell_is_reported_with_its_index_and_length():
    code_31 = "\n".join(f"x{i} = {i}" for i in range(31))
    code_30_with_blanks = "\n\n".join(f"x{i} = {i}" for i in range(30)) + "\n\n"
    nb = _notebook(("markdown", "\n".join(["text"] * 50)),        # markdown: no limit
                   ("code", code_30_with_blanks),                    # 30 non-blank: allowed
                   ("code", code_31.splitlines(keepends=True)))      # list form, as in .ipynb
    assert nonblank_lines(code_30_with_blanks) == 30
    assert long_cells(nb) == [(2, 31)]
