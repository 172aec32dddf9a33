"""Is the course's training loop as fast as its isolated jitted step? Both in one process.

``lmcourse.training.fit`` wraps ``training.train_step`` with everything a notebook needs: a
reshuffle per epoch, gathering each batch out of the host arrays, a NaN check every 50 steps,
a progress bar, the history. This script measures what that costs, in one process, on the
chapter-03 network (``lmcourse.models.CNN``, batch 128, Adam 1e-3, full MNIST), the variants
alternating for ``--rounds`` rounds (median reported):

* ``isolated step``: ``training.train_step`` called ``--steps`` times on batches gathered
  beforehand (the benchmark's own loop: no bar, no checks), synchronised once at the end;
* ``fit``: ``training.fit(..., epochs=1, progress=True)`` on the first ``--steps`` x 128
  training images, timed from the call to its return (wall clock: batch gathering, dispatch,
  NaN checks, the bar and its summary line all inside); the step is already compiled (the same
  model in the same process), so no compilation is inside either clock;
* ``fit, no bar``: the same with ``progress=False``;
* ``cached_partial step``: the isolated loop with ``nnx.cached_partial(train_step, model,
  optimizer)``, which skips NNX's per-call traversal of the model and optimizer graphs (the
  candidate fix if the loop were slow because of Python dispatch).

Also reported: the host time of one call until it returns (the dispatch; the step then runs
asynchronously) for ``nnx.jit`` and ``cached_partial``, against the step's own time.

Reported: images/s per variant and ``fit / isolated step``, the figure the course promises to
keep at or above 0.95 (issue "Speed as students feel it", item 2). ``--profile`` also runs
``cProfile`` on one ``fit`` call and prints where its host time goes.

Usage::

    python benchmarks/loop_vs_step.py                       # ~1 min on 2 idle cores
    python benchmarks/loop_vs_step.py --rounds 7 --json benchmarks/results/loop_vs_step.json
    python benchmarks/loop_vs_step.py --profile
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path

if str(Path(__file__).resolve().parent) not in sys.path:  # _env.py, also when loaded by path
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import _env  # noqa: E402

BATCH = 128
PACKAGES = ("jax", "jaxlib", "flax", "optax", "numpy")
VARIANTS = ("isolated step", "fit", "fit, no bar", "cached_partial step")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=150, help="steps per timed call (default 150)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of all variants (default 5)")
    parser.add_argument("--profile", action="store_true", help="cProfile one fit call")
    parser.add_argument("--json", metavar="PATH", help="also write all results to this JSON file")
    args = parser.parse_args(argv)
    if args.steps < 2 or args.rounds < 1:
        parser.error("--steps must be at least 2 and --rounds at least 1")

    import jax
    import numpy as np
    import optax
    from flax import nnx

    from lmcourse import training
    from lmcourse.data import load_mnist
    from lmcourse.models import CNN

    versions, machine = _env.versions(PACKAGES), _env.machine()
    load_start = _env.print_environment(versions, machine)
    mnist = load_mnist(allow_subset=False)
    n = args.steps * BATCH
    if n > len(mnist.x_train):
        parser.error(f"--steps {args.steps} x {BATCH} exceeds the {len(mnist.x_train):,} images")
    x = training.to_float_images(mnist.x_train[:n])
    y = mnist.y_train[:n].astype(np.int32)
    model = CNN(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
    order = np.random.default_rng(0).permutation(n)
    xs = [x[order[i:i + BATCH]] for i in range(0, n, BATCH)]
    ys = [y[order[i:i + BATCH]] for i in range(0, n, BATCH)]
    cached_step = nnx.cached_partial(training.train_step, model, optimizer)

    def isolated(step_fn) -> float:
        t0 = time.perf_counter()
        for xb, yb in zip(xs, ys, strict=True):
            loss = step_fn(xb, yb)
        jax.block_until_ready((loss, nnx.state(model)))
        return time.perf_counter() - t0

    def fit(progress: bool) -> float:
        t0 = time.perf_counter()
        training.fit(model, optimizer, x, y, epochs=1, batch_size=BATCH, progress=progress)
        jax.block_until_ready(nnx.state(model))
        return time.perf_counter() - t0

    timers = {"isolated step": lambda: isolated(lambda a, b: training.train_step(model, optimizer, a, b)),
              "fit": lambda: fit(True), "fit, no bar": lambda: fit(False),
              "cached_partial step": lambda: isolated(cached_step)}
    for timer in timers.values():                        # compile and warm every path once
        timer()
    t_all = time.perf_counter()
    seconds = _env.run_rounds(list(VARIANTS), args.rounds, lambda v, r: timers[v]())
    total_s = time.perf_counter() - t_all
    load_end = _env.load_average()
    rates = {v: [args.steps * BATCH / s for s in seconds[v]] for v in VARIANTS}
    med = _env.medians(rates)
    print(f"\n{args.rounds} alternating rounds of {args.steps} steps (batch {BATCH}); median "
          f"images/s, [min-max], ratio to the isolated step")
    for v in VARIANTS:
        print(f"  {v:<22} {med[v]:8,.0f}  [{min(rates[v]):,.0f}-{max(rates[v]):,.0f}]  "
              f"{med[v] / med['isolated step']:.3f}")
    ratio = med["fit"] / med["isolated step"]
    per_round = [f / i for f, i in zip(rates["fit"], rates["isolated step"], strict=True)]
    print(f"fit / isolated step: {ratio:.3f} (per round {min(per_round):.3f}-{max(per_round):.3f}; "
          f"goal >= 0.95)")
    print(f"total {total_s:.0f} s; load average at end: {_env.format_load(load_end)}")

    dispatch = {}                      # host time until the call returns, the queue empty before
    for name, fn in (("nnx.jit step", lambda a, b: training.train_step(model, optimizer, a, b)),
                     ("cached_partial step", cached_step)):
        times = []
        for xb, yb in zip(xs[:30], ys[:30], strict=True):
            t0 = time.perf_counter()
            out = fn(xb, yb)
            times.append(time.perf_counter() - t0)
            jax.block_until_ready((out, nnx.state(model)))
        dispatch[name] = float(np.median(times))
        print(f"host time per call until it returns ({name}): {dispatch[name] * 1e3:.2f} ms "
              f"(median of 30; the step itself: {1e3 * BATCH / med['isolated step']:.1f} ms)")

    profile_text = None
    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(training.fit, model, optimizer, x, y, epochs=1, batch_size=BATCH,
                         progress=True)
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).strip_dirs().sort_stats("tottime").print_stats(12)
        profile_text = out.getvalue()
        print(profile_text)
    if args.json:
        summary = {v: {"images_per_s": med[v], "min": min(rates[v]), "max": max(rates[v]),
                       "vs_isolated_step": med[v] / med["isolated step"]} for v in VARIANTS}
        _env.write_results(
            args.json, versions=versions, machine=machine,
            settings={"steps": args.steps, "rounds": args.rounds, "batch": BATCH},
            load_start=load_start, load_end=load_end, total_s=total_s, summary=summary,
            runs={"seconds": seconds, "dispatch_s": dispatch, "fit_vs_isolated_per_round": per_round,
                  "profile": profile_text})
    return 0


if __name__ == "__main__":
    sys.exit(main())
