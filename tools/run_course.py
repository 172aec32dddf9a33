"""Execute every course notebook on real data and write ``build/``: an HTML copy of each
executed notebook and a summary report (run time, scale, device and key results per notebook).

Usage (the README's "run the course" command calls this through ``make course``)::

    python tools/run_course.py                 # all notebooks, outputs to build/
    python tools/run_course.py 03 --inplace    # one chapter, also save outputs into notebooks/
    python tools/run_course.py 03 --scale full --save-results
        # full scale; the recorded results go to results/03_cnn_jit.full.json (committed)

``--save-results`` writes ``results/<notebook>.<scale>.json``: every value the notebook passed
to :func:`lmcourse.report.record`, with the command that reproduces it, the run time, the
machine, the library versions and the git commit. These files are the source of every
full-scale number quoted in the README (``tests/test_results.py`` checks that).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
from nbconvert import HTMLExporter

# The CPU's model name, shared with the benchmarks (benchmarks/_env.py imports only the stdlib).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _env import cpu_model  # noqa: E402

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
BUILD = ROOT / "build"
RESULTS = ROOT / "results"


def git_state() -> str:
    """The commit the run starts from (short hash), ``+uncommitted changes`` when the tree is dirty."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                                capture_output=True, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, text=True,
                                    capture_output=True).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+uncommitted changes" if dirty else "")


def load_average() -> float | None:
    """The machine's 1-minute load average (Unix), ``None`` where unavailable."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def save_results(path: Path, scale: str, seconds: float, results: dict, commit: str,
                 load: tuple[float | None, float | None] = (None, None)) -> Path:
    """Write ``results/<notebook>.<scale>.json`` (see the module docstring); return its path.

    ``commit`` is :func:`git_state` taken when the notebook *started* (the code that ran), and
    ``load`` the load average at its start and end (a busy machine makes run times longer).
    """
    import importlib.metadata as md

    versions = {}
    for name in ("jax", "jaxlib", "flax", "optax", "numpy", "scikit-learn"):
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    results = dict(results)
    device = results.pop("device", {}).get("value", "?")
    results.pop("scale", None)
    payload = {
        "notebook": path.name,
        "scale": scale,
        "command": f"python tools/run_course.py {path.stem} --scale {scale} --save-results",
        "seconds": round(seconds, 1),
        "device": device,
        "machine": f"{platform.machine()} {cpu_model('')}, {os.cpu_count()} CPU cores, "
                   f"{platform.system()}",
        "versions": versions,
        "git_commit": commit,
        "load_average_start_end": list(load),
        "results": results,
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{path.stem}.{scale}.json"
    out.write_text(json.dumps(payload, indent=1) + "\n")
    return out


def first_error(nb: nbformat.NotebookNode, exc: CellExecutionError) -> str:
    """The one error that stopped a notebook: ``cell N: Name: message``, message first.

    nbclient stops at the first failing cell (``allow_errors`` is off), so no later cell runs and
    no follow-on ``NameError`` is reported; this names that cell (1-based, code and markdown
    cells counted, as JupyterLab shows them) and its exception's own message, up to 12 lines.
    """
    cell = next((i for i, c in enumerate(nb.cells, start=1) if c.cell_type == "code"
                 and any(o.get("output_type") == "error" for o in c.get("outputs", []))), None)
    ename = getattr(exc, "ename", "") or type(exc).__name__
    evalue = _ANSI.sub("", getattr(exc, "evalue", "") or "").strip()
    if not evalue:      # an unusual CellExecutionError: fall back to the end of its text
        lines = [line for line in _ANSI.sub("", str(exc)).splitlines() if line.strip()
                 and "IPKernelApp" not in line]
        evalue = " | ".join(lines[-3:]) if lines else repr(exc)
    lines = [line.rstrip() for line in evalue.splitlines() if line.strip()]
    message = "\n    ".join(lines[:12]) + ("\n    …" if len(lines) > 12 else "")
    return f"{'cell ' + str(cell) + ': ' if cell else ''}{ename}: {message}"


def kernel_peak_mib(client: NotebookClient) -> float | None:
    """Peak resident memory of the client's kernel process in MiB (``VmHWM`` in
    ``/proc/<pid>/status``, Linux only); ``None`` where it cannot be read."""
    try:
        pid = client.km.provisioner.process.pid
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (AttributeError, OSError, ValueError, IndexError):
        return None
    return None


def execute(path: Path, timeout: int) -> tuple[nbformat.NotebookNode, float, dict, str | None]:
    """Run one notebook in its own kernel; return it executed, seconds, results, error text."""
    nb = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory() as tmp:
        results_file = Path(tmp) / "results.json"
        os.environ["LMCOURSE_RESULTS"] = str(results_file)
        os.environ["LMCOURSE_PROGRESS"] = "0"   # batch run: summary lines only, no widget state saved
        peak = {"mib": None}

        def note_peak_memory(**_):
            """After each cell: the kernel's peak resident memory so far (Linux VmHWM)."""
            mib = kernel_peak_mib(client)
            if mib is not None:
                peak["mib"] = max(mib, peak["mib"] or 0.0)

        client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(NOTEBOOKS)}},
                                on_cell_executed=note_peak_memory)
        start = time.perf_counter()
        error = None
        try:
            client.execute()
        except CellExecutionError as exc:
            error = first_error(nb, exc)
        except CellTimeoutError:
            error = f"a cell ran longer than --timeout {timeout} s (raise it for full scale on a CPU)"
        except DeadKernelError as exc:
            error = f"the kernel died (out of memory?): {exc}"
        seconds = time.perf_counter() - start
        results = json.loads(results_file.read_text()) if results_file.exists() else {}
        if peak["mib"] is not None:
            results["peak memory"] = {"value": round(peak["mib"]), "unit": "MiB"}
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
        status = "ok" if row["error"] is None else f"FAILED: {' | '.join(row['error'].split(chr(10)))}"
        lines.append(f"| [{row['notebook']}]({row['html']}) | {status} | {row['seconds']:.1f} "
                     f"| {scale} | {device} | {keys} |")
    (BUILD / "report.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("only", nargs="*", help="notebook name prefixes, e.g. 03 (default: all)")
    parser.add_argument("--inplace", action="store_true",
                        help="also write the executed notebook back into notebooks/")
    parser.add_argument("--timeout", type=int, default=1800, help="per-cell timeout in seconds")
    parser.add_argument("--scale", choices=("quick", "full", "auto"), default=None,
                        help="set LMCOURSE_SCALE for the run (default: keep the environment's)")
    parser.add_argument("--save-results", action="store_true",
                        help="write results/<notebook>.<scale>.json (commit it)")
    args = parser.parse_args(argv)
    if args.scale:
        os.environ["LMCOURSE_SCALE"] = args.scale

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
        commit, load_start = git_state(), load_average()
        nb, seconds, results, error = execute(path, args.timeout)
        load = (load_start, load_average())
        html, _ = HTMLExporter().from_notebook_node(nb)
        html_path = BUILD / (path.stem + ".html")
        html_path.write_text(html)
        if args.inplace and error is None:
            nbformat.write(nb, path)
        row = {"notebook": path.name, "seconds": seconds, "results": results,
               "error": error, "html": html_path.name}
        kept[path.name] = row
        if args.save_results and error is None:
            scale = results.get("scale", {}).get("value", "unknown")
            print(f"  results: {save_results(path, scale, seconds, results, commit, load).relative_to(ROOT)}")
        print(f"  {'ok' if error is None else 'FAILED'} in {seconds:.1f} s"
              + (f": {error}" if error else ""), flush=True)
    rows = [kept[k] for k in sorted(kept)]
    write_report(rows)
    print(f"report: {BUILD / 'report.md'}")
    return 1 if any(kept[p.name]["error"] for p in paths) else 0


if __name__ == "__main__":
    sys.exit(main())
