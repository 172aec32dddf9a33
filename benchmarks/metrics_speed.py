"""Speed (and peak memory) of lmcourse.metrics against scikit-learn on 10^7 scores.

This is a **speed benchmark on synthetic data**: the labels and scores are drawn from a seeded
distribution that looks like a classifier's output (10% positives; score = sigmoid of a normal
variable shifted by 1.5 for positives, rounded to float32 as a model would produce it, so there
are ties), not from a real model. Correctness is tested in ``tests/test_metrics.py``; here we
only check that both libraries return the same value (to 1e-9) before comparing times.

Metrics timed, each called exactly as a user would call it (input checks included):

* ROC AUC: ``lmcourse.metrics.roc_auc_score`` vs ``sklearn.metrics.roc_auc_score``;
* F1 of thresholded predictions: ``lmcourse.metrics.f1_score`` vs ``sklearn.metrics.f1_score``
  (binary, positive label 1);
* average precision: ``lmcourse.metrics.average_precision_score`` vs scikit-learn's.

The two libraries run alternately in one process (ours, theirs, then theirs, ours, ...) for
``--repeats`` rounds; the table gives the median time, the spread (min–max) and the ratio
scikit-learn / ours. Peak memory is measured in a separate pass with ``tracemalloc`` (NumPy
reports its array allocations to it): the largest amount of memory allocated during the call
above what was allocated before it.

Usage::

    python benchmarks/metrics_speed.py                       # 10^7 scores, 5 rounds (~1-2 min)
    python benchmarks/metrics_speed.py --n 1000000 --repeats 3 --out /tmp/r.md
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import subprocess
import sys
import time
import tracemalloc
from importlib.metadata import version
from pathlib import Path

import numpy as np
from sklearn import metrics as skm

from lmcourse import metrics as lm

if str(Path(__file__).resolve().parent) not in sys.path:  # _env.py, also when loaded by path
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import _env  # noqa: E402

ROOT = Path(__file__).resolve().parent


def make_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels (int64, 10% ones), float64 scores with float32 resolution, and y_pred = s >= 0.5."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.10).astype(np.int64)
    logit = rng.normal(size=n) + 1.5 * y - 1.0
    s = (1.0 / (1.0 + np.exp(-logit))).astype(np.float32).astype(np.float64)
    return y, s, (s >= 0.5).astype(np.int64)


def timed(func, *args) -> tuple[float, float]:
    gc.collect()
    t0 = time.perf_counter()
    value = func(*args)
    return time.perf_counter() - t0, float(value)


def peak_bytes(func, *args) -> int:
    gc.collect()
    tracemalloc.start()
    tracemalloc.reset_peak()
    base, _ = tracemalloc.get_traced_memory()
    func(*args)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak - base


def machine() -> str:
    model = _env.cpu_model(platform.processor() or platform.machine())
    return f"{model}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}"


def load() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "load: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000_000, help="number of scores")
    parser.add_argument("--repeats", type=int, default=5, help="rounds (each library once per round)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "metrics_results.md",
                        help="markdown file for the results table")
    args = parser.parse_args(argv)

    y, s, y_pred = make_data(args.n, args.seed)
    cases = {
        "ROC AUC": ((lm.roc_auc_score, (y, s)), (skm.roc_auc_score, (y, s))),
        "F1 (binary)": ((lm.f1_score, (y, y_pred)), (skm.f1_score, (y, y_pred))),
        "average precision": ((lm.average_precision_score, (y, s)),
                              (skm.average_precision_score, (y, s))),
    }
    load_before = load()
    print(f"n = {args.n:,} scores, {y.mean():.1%} positives, "
          f"{len(np.unique(s)):,} distinct scores; {args.repeats} rounds")
    print(load_before)

    rows = []
    for name, ((ours_f, ours_args), (sk_f, sk_args)) in cases.items():
        calls = {"ours": (ours_f, ours_args), "sklearn": (sk_f, sk_args)}
        values: dict[str, float] = {}

        def run_one(who: str, _round: int, calls=calls, values=values) -> float:
            seconds, values[who] = timed(calls[who][0], *calls[who][1])
            return seconds

        # ours, sklearn, then sklearn, ours, ...
        times = _env.run_rounds(list(calls), args.repeats, run_one)
        if abs(values["ours"] - values["sklearn"]) > 1e-9:
            raise SystemExit(f"{name}: results differ: ours {values['ours']!r}, "
                             f"scikit-learn {values['sklearn']!r}")
        peaks = {"ours": peak_bytes(ours_f, *ours_args), "sklearn": peak_bytes(sk_f, *sk_args)}
        med = _env.medians(times)
        row = dict(metric=name, value=values["ours"], ours=med["ours"], sklearn=med["sklearn"],
                   ratio=med["sklearn"] / med["ours"],
                   spread_ours=(min(times["ours"]), max(times["ours"])),
                   spread_sklearn=(min(times["sklearn"]), max(times["sklearn"])),
                   peak_ours=peaks["ours"] / 2**20, peak_sklearn=peaks["sklearn"] / 2**20)
        rows.append(row)
        print(f"{name:18s} ours {row['ours']:.3f} s  sklearn {row['sklearn']:.3f} s  "
              f"ratio {row['ratio']:.1f}x  peak {row['peak_ours']:.0f} / {row['peak_sklearn']:.0f} MiB")
    load_after = load()
    print(load_after)

    input_mib = (y.nbytes + s.nbytes) / 2**20
    lines = [
        "# Metrics speed: lmcourse.metrics vs scikit-learn",
        "",
        f"Measured by `benchmarks/metrics_speed.py` on {time.strftime('%Y-%m-%d')}: "
        f"**speed benchmark on synthetic data** ({args.n:,} seeded labels and scores, "
        f"{y.mean():.1%} positives, scores with float32 resolution so that {args.n - len(np.unique(s)):,} "
        "are ties); both libraries return the same value to 1e-9 before their times are compared.",
        "",
        f"* machine: {machine()}",
        f"* versions: Python {platform.python_version()}, NumPy {np.__version__}, "
        f"scikit-learn {version('scikit-learn')}",
        f"* load (`uptime`) before: `{load_before}`",
        f"* load (`uptime`) after: `{load_after}`",
        f"* {args.repeats} rounds, libraries alternating; median time, [min–max] in brackets",
        f"* peak memory: `tracemalloc` peak during one call above the memory held before it "
        f"(the inputs themselves, {input_mib:.0f} MiB for `y_true` + `y_score`, are not counted)",
        "",
        "| metric | value | lmcourse (s) | scikit-learn (s) | scikit-learn / lmcourse | "
        "peak memory lmcourse (MiB) | peak memory scikit-learn (MiB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['metric']} | {r['value']:.6f} | {r['ours']:.3f} [{r['spread_ours'][0]:.3f}–"
            f"{r['spread_ours'][1]:.3f}] | {r['sklearn']:.3f} [{r['spread_sklearn'][0]:.3f}–"
            f"{r['spread_sklearn'][1]:.3f}] | {r['ratio']:.1f}× | {r['peak_ours']:.0f} | "
            f"{r['peak_sklearn']:.0f} |")
    lines += [
        "",
        "Why the differences: our ROC AUC sorts the positives' and the negatives' scores "
        "separately with `np.sort` and counts the pairs with `searchsorted` (the Mann–Whitney "
        "form of the same area, exact in integer arithmetic); scikit-learn runs a stable "
        "`argsort` of all scores, builds the ROC curve and integrates it, after validating the "
        "labels with `np.unique`. Our average precision also replaces the `argsort` by a value "
        "sort (`np.sort` is several times faster than `np.argsort` on float64) and locates only "
        "the positives among the distinct scores. Our binary F1 counts integer labels with "
        "`bincount` in linear time; scikit-learn's label validation and multilabel confusion "
        "matrix sort them. Times are wall-clock on a shared 2-core machine: compare the ratio, "
        "not the absolute seconds, and expect it to vary with the load shown above.",
        "",
    ]
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
