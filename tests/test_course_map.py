"""The README's chapter → code → tests map is generated from the imports, never typed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("course_map", ROOT / "tools" / "course_map.py")
course_map = importlib.util.module_from_spec(spec)
spec.loader.exec_module(course_map)


def test_readme_map_equals_the_generated_one():
    assert course_map.render() in (ROOT / "README.md").read_text(), (
        "README.md's chapter map is stale: run `python tools/course_map.py --write`")


def test_imports_are_resolved_to_the_defining_module():
    known = course_map.module_names()
    src = "from lmcourse.data import load_mnist\nimport lmcourse.metrics as m\n%time x = 1\n"
    assert course_map.imported_modules(src, known) == {"data.images", "metrics"}
    assert course_map.imported_modules("from lmcourse.models import cnn", known) == {"models.cnn"}
    assert course_map.imported_modules("import numpy as np", known) == set()


def test_each_module_says_where_it_is_used():
    stale = [m for m, line in course_map.usage_lines().items()
             if line not in course_map.module_path(m).read_text()]
    assert not stale, (f"these modules' 'Used in chapters' lines are stale: {stale}; run "
                       "`python tools/course_map.py --docstrings`")
