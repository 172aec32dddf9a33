"""CPU speed of the chapter-12 PGD attack and adversarial training step: a Python loop over one
compiled PGD step (the course, ``lmcourse.adversarial``) against one ``jax.lax.fori_loop`` (the
course until this benchmark was written, kept here as the control).

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

Usage::

    python benchmarks/pgd_loop_speed.py                            # about a minute on 2 cores
    python benchmarks/pgd_loop_speed.py --rounds 7 --json benchmarks/results/pgd_loop_speed.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

if str(Path(__file__).resolve().parent) not in sys.path:  # _env.py, also when loaded by path
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import _env  # noqa: E402

PACKAGES = ("jax", "jaxlib", "flax", "optax", "numpy")
EPSILON, STEP_SIZE = 0.1, 0.025


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    parser.add_argument("--calls", type=int, default=5, help="timed calls per piece and round")
    parser.add_argument("--batch", type=int, default=128, help="images per batch (default 128)")
    parser.add_argument("--steps", default="3,10", help="PGD steps to time (default 3,10)")
    parser.add_argument("--train-steps", type=int, default=3,
                        help="PGD steps inside the training step (default 3, chapter 12 quick)")
    parser.add_argument("--json", metavar="PATH", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
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
    load_end, total = _env.load_average(), time.perf_counter() - start
    print(f"\ntotal {total:.0f} s; load average at end: {_env.format_load(load_end)}")
    if args.json:
        _env.write_results(args.json, versions=vers, machine=info, settings=vars(args),
                           load_start=list(load_start), load_end=list(load_end), total_s=total,
                           summary=summary, runs=runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
