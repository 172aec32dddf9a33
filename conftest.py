"""pytest settings for running the chapters under nbval (``pytest --nbval-lax notebooks``).

(At the repository root, not in ``notebooks/``, so students do not meet it in JupyterLab.)

A chapter whose data cannot be had stops in its first code cell with one
``DatasetUnavailableError`` that says how to get the data (``setup_notebook(needs=...)``). nbval
runs every cell as its own test, so without this hook each later cell would fail again with a
``NameError`` for a variable the stopped cell never defined: a cascade that hides the one message
that matters. After such a failure the notebook's remaining cells are skipped, naming the cause.
"""

from __future__ import annotations

import pytest

_STOPPED: dict[str, str] = {}   # notebook path -> why its remaining cells are skipped


def pytest_runtest_setup(item: pytest.Item) -> None:
    reason = _STOPPED.get(str(item.fspath))
    if reason:
        pytest.skip(reason)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if (report.when == "call" and report.failed and str(item.fspath).endswith(".ipynb")
            and "DatasetUnavailableError" in str(report.longrepr)):
        _STOPPED[str(item.fspath)] = (
            "skipped: this chapter's data is unavailable (see the DatasetUnavailableError of the "
            "cell that failed first, which says how to get it)")
