"""Execute every course notebook on real data and write ``build/``: an HTML copy of each
executed notebook and a summary report (run time, scale, device and key results per notebook).

Usage (the README's "run the course" command calls this through ``make course``)::

    python tools/run_course.py                 # all notebooks, outputs to build/
    python tools/run_course.py 03 --inplace    # one chapter, also save outputs into notebooks/
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbconvert import HTMLExporter

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
BUILD = ROOT / "build"


def execute(path: Path, timeout: int) -> tuple[nbformat.NotebookNode, float, dict, str | None]:
    """Run one notebook in its own kernel; return it executed, seconds, results, error text."""
    nb = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory() as tmp:
        results_file = Path(tmp) / "results.json"
        os.environ["LMCOURSE_RESULTS"] = str(results_file)
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(NOTEBOOKS)}})
        start = time.perf_counter()
        error = None
        try:
            client.execute()
        except CellExecutionError as exc:
            lines = [line for line in _ANSI.sub("", str(exc)).splitlines() if line.strip()
                     and "IPKernelApp" not in line]
            error = " | ".join(lines[-3:]) if lines else repr(exc)
        seconds = time.perf_counter() - start
        results = json.loads(results_file.read_text()) if results_file.exists() else {}
        os.environ.pop("LMCOURSE_RESULTS", None)
    return nb, seconds, results, error


def write_report(rows: list[dict]) -> None:
    """Write build/report.json and build/report.md from the per-notebook rows."""
    (BUILD / "report.json").write_text(json.dumps(rows, indent=1))
    lines = ["# Course run report", "",
             "| notebook | status | run time (s) | scale | device | key results |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        res = dict(row["results"])
        scale = res.pop("scale", {}).get("value", "?")
        device = res.pop("device", {}).get("value", "?")
        keys = "<br>".join(
            f"{k}: {v['value']:.4g} {v['unit']}".strip() if isinstance(v["value"], float)
            else f"{k}: {v['value']} {v['unit']}".strip()
            for k, v in res.items())
        status = "ok" if row["error"] is None else f"FAILED: {row['error']}"
        lines.append(f"| [{row['notebook']}]({row['html']}) | {status} | {row['seconds']:.1f} "
                     f"| {scale} | {device} | {keys} |")
    (BUILD / "report.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("only", nargs="*", help="notebook name prefixes, e.g. 03 (default: all)")
    parser.add_argument("--inplace", action="store_true",
                        help="also write the executed notebook back into notebooks/")
    parser.add_argument("--timeout", type=int, default=1800, help="per-cell timeout in seconds")
    args = parser.parse_args(argv)

    paths = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if args.only:
        paths = [p for p in paths if any(p.name.startswith(o) for o in args.only)]
    if not paths:
        print("no notebooks matched", args.only, file=sys.stderr)
        return 2
    BUILD.mkdir(exist_ok=True)
    rows = []
    previous = json.loads((BUILD / "report.json").read_text()) if (BUILD / "report.json").exists() else []
    kept = {r["notebook"]: r for r in previous}
    for path in paths:
        print(f"running {path.name} ...", flush=True)
        nb, seconds, results, error = execute(path, args.timeout)
        html, _ = HTMLExporter().from_notebook_node(nb)
        html_path = BUILD / (path.stem + ".html")
        html_path.write_text(html)
        if args.inplace and error is None:
            nbformat.write(nb, path)
        row = {"notebook": path.name, "seconds": seconds, "results": results,
               "error": error, "html": html_path.name}
        kept[path.name] = row
        print(f"  {'ok' if error is None else 'FAILED'} in {seconds:.1f} s"
              + (f": {error}" if error else ""), flush=True)
    rows = [kept[k] for k in sorted(kept)]
    write_report(rows)
    print(f"report: {BUILD / 'report.md'}")
    return 1 if any(kept[p.name]["error"] for p in paths) else 0


if __name__ == "__main__":
    sys.exit(main())
