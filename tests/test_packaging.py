"""Packaging: the requirements install from any folder, and the declared floors are the tested ones."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version
from pathlib import Path

from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def _floors(lines) -> dict[str, str]:
    out = {}
    for line in lines:
        m = re.match(r"^\s*([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?\s*>=\s*([0-9][0-9.]*)", line)
        if m:
            out[m.group(1).lower()] = m.group(2)
    return out


def test_requirements_have_no_path_relative_to_the_repository():
    for name in ("requirements.txt", "requirements-gpu.txt", "requirements-nodeps.txt"):
        for line in (ROOT / name).read_text().splitlines():
            line = line.split("#")[0].strip()
            assert not line.startswith(("-e", ".", "/")), (
                f"{name}: {line!r} only works from the repository root; the Makefile installs "
                "the package itself")


def test_pyproject_and_requirements_declare_the_same_floors():
    req = _floors((ROOT / "requirements.txt").read_text().splitlines())
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for name, floor in _floors(deps).items():
        assert req.get(name) == floor, f"{name}: pyproject says >={floor}, requirements >={req.get(name)}"


def test_installed_versions_satisfy_the_floors():
    """The environment the tests run in is the tested one: it must meet every declared floor."""
    for name, floor in _floors((ROOT / "requirements.txt").read_text().splitlines()).items():
        assert Version(version(name)) >= Version(floor), f"{name} {version(name)} < floor {floor}"
