"""CPU speed of the chapter-12 PGD attack and adversarial training step: a Python loop over one
compiled PGD step (the course, ``lmcourse.adversarial``) against one ``jax.lax.fori_loop`` (the
course's structure until this benchmark was written, kept here as the control: the same PGD step
in the loop body; its training step has ε and α as compile-time constants and one fixed key,
where the course's code took them as arguments).

What is timed, on the chapter-12 network (``lmcourse.models.cnn.CNN``, untrained, seed 0; the
speed does not depend on the weights' values) and a batch of ``--batch`` real MNIST test digits:

* ``pgd``: ``steps`` L∞ PGD steps from a random start (ε = 0.1, α = 0.025), milliseconds per
  call, for each ``--steps`` value;
* ``train step``: one adversarial training step (PGD with ``--train-steps`` steps, then one Adam
  step on the adversarial batch), against the plain ``training.train_step`` on the same batch
  (the ratio chapter 12 prints: about ``steps + 1`` is expected).

Both variants run in one process, alternating for ``--rounds`` rounds (each round: every piece
of the course, then every piece of the control; median of ``--calls`` calls per piece). Every
piece is compiled and run once before the clock. The two PGDs are checked to give bit-identical
images before anything is timed.

With ``--profile``, both PGD-3 variants are also traced (``jax.profiler`` with XLA's
per-operation events, ``--xla_cpu_enable_xprof_traceme=true``, set before JAX starts): the
thread time per call of the most expensive kinds of compiled operation, and the convolutions of
the control's compiled program with their kernel layout (``dim_labels``) and whether they sit
inside the loop body.

Usage::

    python benchmarks/pgd_loop_speed.py                            # about a minute on 2 cores
    python benchmarks/pgd_loop_speed.py --rounds 5 --json benchmarks/results/pgd_loop_speed.json
    python benchmarks/pgd_loop_speed.py --rounds 1 --profile     # where the loop's time goes
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from pathlib import Path

if str(Path(__file__).resolve().parent) not in sys.path:  # _env.py, also when loaded by path
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import _env  # noqa: E402

PACKAGES = ("jax", "jaxlib", "flax", "optax", "numpy")
EPSILON, STEP_SIZE = 0.1, 0.025
TRACE_FLAG = "--xla_cpu_enable_xprof_traceme=true"


def profile(label: str, fn, calls: int = 3) -> None:
    """Trace ``calls`` calls of ``fn`` and print the thread time per call of the 6 most expensive
    kinds of compiled operation (XLA's worker and client threads)."""
    import collections
    import re
    import tempfile

    import jax
    from jax.profiler import ProfileData

    jax.block_until_ready(fn())
    with tempfile.TemporaryDirectory() as trace_dir:
        jax.profiler.start_trace(trace_dir)
        for _ in range(calls):
            out = fn()
        jax.block_until_ready(out)
        jax.profiler.stop_trace()
        data = ProfileData.from_file(str(sorted(Path(trace_dir).rglob("*.xplane.pb"))[-1]))
    kinds: collections.Counter = collections.Counter()
    ops: collections.Counter = collections.Counter()
    for plane in data.planes:
        for line in plane.lines:
            if not line.name.startswith(("tf_XLAEigen", "tf_XLAPjRt")):
                continue
            for event in line.events:
                if not event.name.startswith(("ThunkExecutor", "SlinkyThreadPool", "end:")):
                    kinds[re.sub(r"\.\d+$", "", event.name)] += event.duration_ns
                    ops[event.name] += event.duration_ns
    total = sum(kinds.values()) / calls / 1e6
    print(f"\n{label}: compiled operations, thread time per call {total:.1f} ms")
    for kind, ns in kinds.most_common(6):
        print(f"   {kind:32s} {ns / calls / 1e6:8.2f} ms")
    print("   the most expensive single operations:",
          ", ".join(f"{name} {ns / calls / 1e6:.1f} ms" for name, ns in ops.most_common(4)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    parser.add_argument("--calls", type=int, default=5, help="timed calls per piece and round")
    parser.add_argument("--batch", type=int, default=128, help="images per batch (default 128)")
    parser.add_argument("--steps", default="3,10", help="PGD steps to time (default 3,10)")
    parser.add_argument("--train-steps", type=int, default=3,
                        help="PGD steps inside the training step (default 3, chapter 12 quick)")
    parser.add_argument("--json", metavar="PATH", help="also write the results to this JSON file")
    parser.add_argument("--profile", action="store_true",
                        help="also trace both PGD-3 variants and list the control's convolutions")
    args = parser.parse_args(argv)
    if args.profile:                          # must be set before JAX starts
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {TRACE_FLAG}".strip()
    if min(args.rounds, args.calls, args.batch, args.train_steps) < 1:
        parser.error("--rounds, --calls, --batch and --train-steps must be >= 1")
    steps_list = [int(s) for s in args.steps.split(",")]

    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    from lmcourse import adversarial as adv
    from lmcourse import training
    from lmcourse.compat import apply_gradients, make_optimizer
    from lmcourse.data import load_mnist
    from lmcourse.models.cnn import CNN

    start = time.perf_counter()
    vers, info = _env.versions(PACKAGES), _env.machine()
    load_start = _env.print_environment(vers, info)

    # the control: the course's PGD until this benchmark, one fori_loop inside one program
    def pgd_fori(model, x, y, epsilon, step_size, steps, key):
        def body(_, x_adv):
            return adv._pgd_step(model, x_adv, x, y, epsilon, step_size)
        return jax.lax.fori_loop(0, steps, body, adv._random_start(x, key, epsilon))

    pgd_fori_jit = nnx.jit(pgd_fori, static_argnames=("steps",))

    @nnx.jit(static_argnames=("steps",))
    def adversarial_step_fori(model, optimizer, x, y, key, steps):
        x_adv = jax.lax.stop_gradient(pgd_fori(model, x, y, EPSILON, STEP_SIZE, steps, key))
        grad_fn = nnx.value_and_grad(training.cross_entropy_loss, has_aux=True)
        (loss, _), grads = grad_fn(model, x_adv, y)
        apply_gradients(optimizer, model, grads)
        return loss

    data = load_mnist()
    x = jnp.asarray(training.to_float_images(data.x_test[:args.batch]))
    y = jnp.asarray(data.y_test[:args.batch], jnp.int32)
    model = CNN(rngs=nnx.Rngs(0))
    key = jax.random.key(0)
    for steps in steps_list:
        same = bool(jnp.array_equal(adv._pgd(model, x, y, EPSILON, STEP_SIZE, steps, key),
                                    pgd_fori_jit(model, x, y, EPSILON, STEP_SIZE, steps, key)))
        print(f"PGD-{steps}: Python loop and fori_loop give bit-identical images: {same}")
        if not same:
            raise SystemExit("the two PGDs differ: nothing to compare")

    def fresh():
        m = CNN(rngs=nnx.Rngs(0))
        return m, make_optimizer(m, optax.adam(1e-3))

    course_step = adv.make_adversarial_step(EPSILON, STEP_SIZE, args.train_steps)
    states = {name: fresh() for name in ("course", "control", "plain")}
    pieces = {
        **{(f"pgd-{s}", "course"): (lambda s=s: adv._pgd(model, x, y, EPSILON, STEP_SIZE, s, key))
           for s in steps_list},
        **{(f"pgd-{s}", "control"): (lambda s=s: pgd_fori_jit(model, x, y, EPSILON, STEP_SIZE, s,
                                                               key)) for s in steps_list},
        ("train step", "course"): lambda: course_step(*states["course"], x, y),
        ("train step", "control"): lambda: adversarial_step_fori(*states["control"], x, y, key,
                                                                 args.train_steps),
        ("plain train step", "both"): lambda: training.train_step(*states["plain"], x, y),
    }
    for fn in pieces.values():                                   # compile and warm up
        jax.block_until_ready(fn())
    runs: dict[str, list[float]] = {f"{p}|{v}": [] for p, v in pieces}
    for _ in range(args.rounds):
        for variant in ("course", "control", "both"):
            for (piece, v), fn in pieces.items():
                if v != variant:
                    continue
                times = []
                for _ in range(args.calls):
                    t0 = time.perf_counter()
                    jax.block_until_ready(fn())
                    times.append((time.perf_counter() - t0) * 1e3)
                runs[f"{piece}|{v}"].append(statistics.median(times))
    med = {k: statistics.median(v) for k, v in runs.items()}
    plain = med["plain train step|both"]
    print(f"\nms per call, median of {args.rounds} rounds (min-max); batch {args.batch}, "
          f"ε {EPSILON}, α {STEP_SIZE}")
    print(f"{'piece':18s} {'Python loop (course)':>24s} {'fori_loop (control)':>24s} "
          f"{'control / course':>17s}")
    summary = {}
    for piece in [f"pgd-{s}" for s in steps_list] + ["train step"]:
        a, b = runs[f"{piece}|course"], runs[f"{piece}|control"]
        ratios = [c / d for c, d in zip(b, a, strict=True)]
        summary[piece] = {"course_ms": med[f"{piece}|course"], "control_ms": med[f"{piece}|control"],
                          "control_over_course_per_round": ratios}
        print(f"{piece:18s} {med[f'{piece}|course']:10.1f} ({min(a):.1f}-{max(a):.1f})"
              f"{med[f'{piece}|control']:13.1f} ({min(b):.1f}-{max(b):.1f})"
              f"   {statistics.median(ratios):5.2f} (per round {min(ratios):.2f}-{max(ratios):.2f})")
    summary["plain_train_step_ms"] = plain
    for name in ("course", "control"):
        ratio = med[f"train step|{name}"] / plain
        summary[f"train_step_over_plain_{name}"] = ratio
        print(f"adversarial / plain training step, {name}: {ratio:.1f}x "
              f"(plain {plain:.1f} ms; expected about {args.train_steps + 1} = steps + 1)")
    if args.profile:
        profile("PGD-3, Python loop (course)", lambda: adv._pgd(model, x, y, EPSILON, STEP_SIZE, 3, key))
        profile("PGD-3, fori_loop (control)",
                lambda: pgd_fori_jit(model, x, y, EPSILON, STEP_SIZE, 3, key))
        graphdef, state = nnx.split(model)
        hlo = jax.jit(lambda s, x, y, k: pgd_fori(nnx.merge(graphdef, s), x, y, EPSILON,
                                                  STEP_SIZE, 3, k)).lower(state, x, y, key)
        print("\nconvolutions in the control's compiled program (kernel layout, where):")
        for line in hlo.compile().as_text().splitlines():
            conv = re.search(r"(%\S+) = (\S+) convolution\(.*dim_labels=(\S+?),", line)
            if conv:
                where = "loop body" if "while/body" in line else "outside the loop"
                print(f"   {conv.group(1):28s} {conv.group(2):28s} {conv.group(3):22s} {where}")
    load_end, total = _env.load_average(), time.perf_counter() - start
    print(f"\ntotal {total:.0f} s; load average at end: {_env.format_load(load_end)}")
    if args.json:
        _env.write_results(args.json, versions=vers, machine=info, settings=vars(args),
                           load_start=list(load_start), load_end=list(load_end), total_s=total,
                           summary=summary, runs=runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
