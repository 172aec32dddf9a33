"""Shared pytest configuration for the course tests."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Register the course's pytest markers (run only them with ``-m browser``, skip with ``-m 'not browser'``)."""
    config.addinivalue_line(
        "markers",
        "browser: opens notebooks in JupyterLab in headless Chromium (needs chromium + playwright, "
        "see requirements-browser.txt; takes minutes)")
