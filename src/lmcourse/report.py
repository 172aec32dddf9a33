"""Key results that notebooks hand to the course report (``build/report.md``).

Used in chapters: 00, 01, 02, 03, 04, 05, 06, 07, 08, 09, 10, 11, 12; imported by
``lmcourse.config``.

A notebook calls :func:`record` for each result that matters ("test accuracy", "images/s").
When the course runner executes the notebook it sets ``LMCOURSE_RESULTS`` to a JSON file;
:func:`record` appends there. Run interactively (variable unset), :func:`record` only returns the
value, so notebooks behave the same in JupyterLab.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

RESULTS_ENV = "LMCOURSE_RESULTS"


def record(name: str, value: Any, unit: str = "") -> Any:
    """Store ``name = value [unit]`` for the course report and return ``value`` unchanged.

    Args:
        name: what the number is, e.g. ``"MNIST test accuracy"``.
        value: a JSON-serialisable value (NumPy/JAX scalars are converted with ``.item()``).
        unit: optional unit, e.g. ``"images/s"``.
    """
    path = os.environ.get(RESULTS_ENV)
    if path:
        plain = value.item() if hasattr(value, "item") else value
        file = Path(path)
        results = json.loads(file.read_text()) if file.exists() else {}
        results[name] = {"value": plain, "unit": unit}
        file.write_text(json.dumps(results, indent=1))
    return value
