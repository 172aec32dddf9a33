"""A generated block of README.md: the text between two HTML-comment markers, replaced whole.

``tools/results_table.py`` (measured results) and ``tools/course_map.py`` (chapter → code map)
each own one block; both use :func:`main` so ``python tools/<tool>.py [--write]`` prints the
block or rewrites it in README.md.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def replace_block(text: str, block: str, begin: str, end: str) -> str:
    """``text`` with the part from ``begin`` to ``end`` (markers included) replaced by ``block``.

    Raises:
        ValueError: if ``text`` lacks either marker.
    """
    start, stop = text.find(begin), text.find(end)
    if start < 0 or stop < 0:
        raise ValueError(f"README.md has no generated block ({begin!r} ... {end!r})")
    return text[:start] + block + text[stop + len(end):]


def main(render: Callable[[], str], begin: str, end: str, description: str,
         argv: list[str] | None = None, readme: Path = README) -> int:
    """Print the rendered block, or with ``--write`` replace it in ``readme``; return 0."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--write", action="store_true", help="rewrite the block in README.md")
    args = parser.parse_args(argv)
    block = render()
    if args.write:
        readme.write_text(replace_block(readme.read_text(), block, begin, end))
    else:
        print(block)
    return 0
