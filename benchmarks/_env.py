"""Shared pieces of the benchmark scripts: what ran them, the alternating-rounds driver, the JSON.

Used by ``cnn_train_speed.py``, ``gpt_train_speed.py``, ``metrics_speed.py`` and
``profile_cnn_step.py`` (each puts this folder on ``sys.path`` and imports ``_env``).

* :func:`versions`, :func:`cpu_model`, :func:`machine`, :func:`print_environment`: the library
  versions, the CPU (model, core counts, instruction-set extensions) and the load average that
  a benchmark's numbers depend on, recorded with them.
* :func:`parse_variants` (:func:`variants_or_exit`), :func:`interleave` (:func:`by_framework`),
  :func:`run_rounds`: every peer once per round, frameworks alternating and
  the start rotated each round, so that no peer always runs first (on a warm or a cold machine);
  :func:`spawn_worker` runs one peer in its own process and reads back its JSON result.
* :func:`medians`, :func:`summarize_rounds`: per-peer medians over the rounds (and spreads,
  maxima, ratios to a baseline peer).
* :func:`write_results`: the JSON file of a run (versions, machine, settings, load averages,
  summary, every round's raw numbers).

Only the standard library is imported: a worker process must not pay for JAX or PyTorch here.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

#: CPU flags worth reporting (from ``/proc/cpuinfo``): they decide which kernels XLA/oneDNN use.
ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile")


# --------------------------------------------------------------------------------------------
# What ran the benchmark
# --------------------------------------------------------------------------------------------

def versions(packages: Iterable[str]) -> dict[str, str | None]:
    """``{"python": "3.x.y", package: installed version or None}`` for each of ``packages``."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for pkg in packages:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def _cpuinfo() -> str | None:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return None


def cpu_model(default: str) -> str:
    """The CPU's ``model name`` from ``/proc/cpuinfo`` (Linux), else ``default``."""
    text = _cpuinfo()
    if text is None:
        return default
    return next((ln.split(":", 1)[1].strip() for ln in text.splitlines()
                 if ln.startswith("model name")), default)


def machine() -> dict[str, Any]:
    """The machine as recorded in a results JSON.

    Returns:
        ``{"cpu_model", "cpu_count" (logical CPUs), "cpus_usable" (this process's affinity),
        "platform", "isa"}``; ``isa`` lists which of :data:`ISA_FLAGS` the CPU has, and is
        missing where ``/proc/cpuinfo`` cannot be read.
    """
    info: dict[str, Any] = {
        "cpu_model": platform.processor() or "unknown", "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)), "platform": platform.platform()}
    text = _cpuinfo()
    if text is None:
        return info
    info["cpu_model"] = cpu_model(info["cpu_model"])
    flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines()
                  if ln.startswith("flags")), [])
    info["isa"] = [f for f in ISA_FLAGS if f in flags]
    return info


def load_average() -> tuple[float, float, float]:
    """The 1-, 5- and 15-minute load averages (``os.getloadavg``)."""
    return os.getloadavg()


def format_load(load: Sequence[float]) -> str:
    """``"0.12 0.34 0.56"``."""
    return " ".join(f"{x:.2f}" for x in load)


def print_environment(vers: Mapping[str, str | None], info: Mapping[str, Any],
                      busy: float = 0.5) -> tuple[float, float, float]:
    """Print the versions, the machine and the load average; warn when the load exceeds ``busy``.

    Returns:
        the load averages at the start (for the results JSON).
    """
    print("versions:", ", ".join(f"{k} {v}" for k, v in vers.items() if v))
    print(f"machine:  {info['cpu_model']}, {info['cpus_usable']} usable CPU(s), "
          f"ISA {' '.join(info.get('isa', []))}; {info['platform']}")
    load = load_average()
    print(f"load average at start: {format_load(load)}")
    if load[0] > busy:
        print("WARNING: other processes are using the CPU; the numbers will be noisy "
              f"(rerun when the load average is below ~{busy:g})")
    return load


# --------------------------------------------------------------------------------------------
# Alternating rounds
# --------------------------------------------------------------------------------------------

def parse_variants(text: str, known: Sequence[str]) -> list[str]:
    """``"a, b"`` → ``["a", "b"]``; ``"all"`` → every known variant.

    Raises:
        ValueError: a name not in ``known`` (the message lists the known ones).
    """
    variants = list(known) if text == "all" else [v.strip() for v in text.split(",")]
    unknown = [v for v in variants if v not in known]
    if unknown:
        raise ValueError(f"unknown variant(s) {unknown}; known: {list(known)}")
    return variants


def variants_or_exit(parser: Any, text: str, known: Sequence[str]) -> list[str]:
    """:func:`parse_variants` for a script's ``--variants``: an unknown name ends the script with
    ``parser.error`` (argparse's usage message and exit status 2)."""
    try:
        return parse_variants(text, known)
    except ValueError as exc:
        parser.error(str(exc))
        raise  # parser.error exits; this keeps type checkers content


def by_framework(variants: Sequence[str], prefixes: Sequence[str]) -> list[str]:
    """:func:`interleave` of ``variants`` grouped by name prefix: ``("jax", "torch")`` gives
    JAX, PyTorch, JAX, PyTorch, ..."""
    return interleave([[v for v in variants if v.startswith(p)] for p in prefixes])


def interleave(groups: Sequence[Sequence[str]]) -> list[str]:
    """One of each group in turn: ``[[j1, j2], [t1]]`` → ``[j1, t1, j2]`` (frameworks alternate)."""
    return [g[i] for i in range(max(map(len, groups))) for g in groups if i < len(g)]


def run_rounds(order: Sequence[str], rounds: int, run_one: Callable[[str, int], T], *,
               rotate: bool = True) -> dict[str, list[T]]:
    """Run every peer of ``order`` once per round, ``rounds`` times; collect the results.

    Round ``r`` starts at peer ``r mod len(order)`` and wraps around (``rotate``), so that no peer
    always goes first; with ``rotate=False`` every round runs ``order`` as given. With two peers
    this is A, B, then B, A, ...

    Args:
        order: the peers, in the order of round 0 (a peer named twice runs twice per round).
        rounds: how many rounds (at least 1).
        run_one: ``run_one(peer, round)`` measures one peer once and returns its result.
        rotate: rotate the start of each round.

    Returns:
        ``{peer: [result of each run, in order]}``, keys in the order of ``order``.

    Raises:
        ValueError: ``rounds < 1`` or no peers.
    """
    if rounds < 1 or not order:
        raise ValueError(f"need at least one round and one peer, got rounds={rounds}, "
                         f"peers={list(order)}")
    runs: dict[str, list[T]] = {p: [] for p in order}
    order = list(order)
    for rnd in range(rounds):
        k = rnd % len(order) if rotate else 0
        for peer in order[k:] + order[:k]:
            runs[peer].append(run_one(peer, rnd))
    return runs


def spawn_worker(cmd: Sequence[str], env: Mapping[str, str], result_path: Path,
                 timeout: float) -> dict[str, Any]:
    """Run one peer's worker process; return the JSON it wrote to ``result_path`` (then removed).

    Returns:
        the worker's result plus ``process_wall_s`` (the process's wall time, start-up
        included), or ``{"error": ...}`` when it timed out or wrote no result (exit code and the
        last 3 lines of its output).
    """
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(list(cmd), env=dict(env), capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    wall = time.perf_counter() - t0
    if result_path.exists():
        result = json.loads(result_path.read_text())
        result_path.unlink()
    else:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        result = {"error": f"exit code {proc.returncode}: {' | '.join(tail)[:300]}"}
    result["process_wall_s"] = wall
    return result


def error_record(exc: BaseException) -> dict[str, str]:
    """A worker's result for a failed run: ``{"error": "Type: first line of the message"}``."""
    return {"error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}"}


def peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    """Peak resident set size in MB of this process (or ``RUSAGE_CHILDREN``); Linux reports KiB."""
    return resource.getrusage(who).ru_maxrss / 1024


# --------------------------------------------------------------------------------------------
# Per-peer medians
# --------------------------------------------------------------------------------------------

def medians(runs: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """``{peer: median of its values}`` (e.g. seconds per round).

    Raises:
        statistics.StatisticsError: a peer has no values.
    """
    return {peer: statistics.median(values) for peer, values in runs.items()}


#: How :func:`summarize_rounds` reduces one field over the successful rounds.
Reduction = str | Callable[[list[dict]], Any]


def summarize_rounds(peers: Sequence[str], runs: Mapping[str, Sequence[dict]],
                     fields: Sequence[tuple[str, Reduction]], *, baseline: str | None = None,
                     ratios: Sequence[tuple[str, str]] = ()) -> dict[str, dict]:
    """Per peer, reduce its successful rounds (results without ``"error"``) field by field.

    Each peer's summary starts with ``rounds_ok`` and ``rounds_failed``, then each of ``fields``
    in order: ``(key, "median")``; ``(key, "spread")``, the median and ``key_min``, ``key_max``;
    ``(key, "max")``; ``(key, "first")``, the first round's value; or ``(key, f)`` with
    ``f(successful rounds)``. ``error`` holds the first failed round's error when some failed;
    a peer with no successful round gets only ``{"error": ...}``. Then, for each
    ``(key, name)`` of ``ratios``, ``name = key / baseline's key`` where both exist.

    Returns:
        ``{peer: summary}``, keys in the order of ``peers``.

    Raises:
        ValueError: an unknown reduction name.
    """
    summary: dict[str, dict] = {}
    for p in peers:
        ok = [r for r in runs[p] if "error" not in r]
        if not ok:
            summary[p] = {"error": runs[p][0].get("error", "no result") if runs[p] else "not run"}
            continue
        s: dict[str, Any] = {"rounds_ok": len(ok), "rounds_failed": len(runs[p]) - len(ok)}
        for key, how in fields:
            if callable(how):
                s[key] = how(ok)
            elif how == "spread":
                values = [r[key] for r in ok]
                s[key] = statistics.median(values)
                s[f"{key}_min"], s[f"{key}_max"] = min(values), max(values)
            elif how == "median":
                s[key] = statistics.median(r[key] for r in ok)
            elif how == "max":
                s[key] = max(r[key] for r in ok)
            elif how == "first":
                s[key] = ok[0][key]
            else:
                raise ValueError(f"unknown reduction {how!r} for {key!r}; use 'median', "
                                 "'spread', 'max', 'first' or a function of the rounds")
        if len(ok) < len(runs[p]):
            s["error"] = next(r["error"] for r in runs[p] if "error" in r)
        summary[p] = s
    base = summary.get(baseline, {}) if baseline is not None else {}
    for s in summary.values():
        for key, name in ratios:
            if key in s and base.get(key):
                s[name] = s[key] / base[key]
    return summary


# --------------------------------------------------------------------------------------------
# The results file
# --------------------------------------------------------------------------------------------

def write_results(path: str | Path, *, versions: Mapping, machine: Mapping, settings: Mapping,
                  load_start: Sequence[float], load_end: Sequence[float], total_s: float,
                  summary: Mapping, runs: Mapping, indent: int = 2) -> None:
    """Write a run's JSON (keys in this order: versions, machine, settings,
    load_average_start, load_average_end, total_s, summary, runs) and say so.

    Raises:
        OSError: the file cannot be written; TypeError: a value is not JSON-serialisable.
    """
    Path(path).write_text(json.dumps({
        "versions": versions, "machine": machine, "settings": settings,
        "load_average_start": load_start, "load_average_end": load_end,
        "total_s": total_s, "summary": summary, "runs": runs}, indent=indent))
    print(f"wrote {path}")
