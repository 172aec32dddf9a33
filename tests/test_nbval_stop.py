"""Under nbval, a chapter whose data is unavailable fails once, not in a cascade of NameErrors."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]


def test_cells_after_a_data_error_are_skipped(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_code_cell("from lmcourse.data.fetch import DatasetUnavailableError\n"
                                  "raise DatasetUnavailableError('mnist: run make data')"),
        nbformat.v4.new_code_cell("y = 2\nprint(x, y)"),
        nbformat.v4.new_code_cell("print(undefined_name)"),
    ]
    nbformat.write(nb, tmp_path / "chapter.ipynb")
    shutil.copy(ROOT / "conftest.py", tmp_path / "conftest.py")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax", "-rs",
         str(tmp_path / "chapter.ipynb")], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    out = result.stdout
    assert "1 failed, 1 passed, 2 skipped" in out, out[-2000:]
    assert "NameError" not in out and "data is unavailable" in out
