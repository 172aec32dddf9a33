"""Wall time from a fresh process to a test-accuracy target on MNIST: the course vs Keras vs PyTorch.

What a student waits for is not the step time of a warm process but the whole run: Python
start-up, imports, loading the data, compiling, training and the evaluations that tell when the
target is reached. Every variant trains the chapter-03 network (Conv32 3x3 VALID - 2x2 max pool -
Conv64 - pool - Conv64 - Flatten - Dense64 - Dense10, ReLU; 93,322 parameters) on the full MNIST
(``lmcourse.data.load_mnist``, pixels / 255) with the same recipe:

* batch 128, the last short batch of an epoch dropped, reshuffled every epoch;
* Adam, learning rate 1e-3 constant, beta1 0.9, beta2 0.999, epsilon 1e-8 (Keras's default
  epsilon 1e-7 is set to 1e-8 to match optax and PyTorch), softmax cross-entropy on logits;
* the test accuracy on all 10,000 test images every ``--eval-every`` steps (default 117, a
  quarter epoch of 468 steps), inside the clock; the run stops at the first evaluation at or
  above ``--target`` (default 0.985; 0.99 for the full-scale figure), or after ``--max-epochs``.

Variants, each in its own subprocess:

* ``jax-course``: the course's own loop, ``lmcourse.training.train_loop`` with
  ``lmcourse.training.train_step`` (``nnx.jit``), ``epoch_batches`` and ``evaluate``, i.e. what
  ``training.fit`` runs, with the evaluation every ``--eval-every`` steps instead of every epoch.
* ``torch-eager`` and ``torch-channels-last``: a plain PyTorch loop (2 threads, indexing the
  in-memory tensors with a per-epoch ``randperm``, PyTorch's documented fast path for data that
  fits in memory; ``inference_mode`` evaluation at batch 1000).
* ``keras-fit``: Keras 3 on TensorFlow, ``model.fit`` on a ``tf.data`` pipeline
  (``shuffle`` - ``batch(drop_remainder=True)`` - ``repeat`` - ``prefetch``, TensorFlow's
  documented input-pipeline practice) with ``steps_per_epoch=--eval-every``, the test set as
  ``validation_data`` and a callback that stops at the target.

The clock starts in the parent just before it launches the subprocess and stops when the worker
has evaluated a model at or above the target (both read ``time.time()`` on the same machine).
Each worker also reports where its time went (imports, data, first step, training, evaluation),
the steps it needed, and its peak RSS. Round ``r`` uses seed ``--seed + r`` in every variant
(weights and shuffles differ between frameworks anyway: their initialisers differ), frameworks
alternate within a round and the order rotates every round; the table gives medians over rounds,
``steps`` (to the target) separates "needed more steps" (luck of the seed, initialisation) from
"ran each step slower", and ``ms/step`` (the time after loading the data, i.e. model building,
compilation, training and evaluations, divided by the steps to the target) compares the work per
step independently of that luck.

Usage::

    pip install -r benchmarks/requirements.txt
    python benchmarks/time_to_accuracy.py                         # ~6 min on 2 idle cores
    python benchmarks/time_to_accuracy.py --rounds 5 --json out.json
    python benchmarks/time_to_accuracy.py --target 0.99 --max-epochs 15
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

if str(Path(__file__).resolve().parent) not in sys.path:  # _env.py, also when loaded by path
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import _env  # noqa: E402

VARIANTS = ["jax-course", "torch-eager", "keras-fit", "torch-channels-last"]
BATCH = 128
EVAL_BATCH = 1000
LEARNING_RATE = 1e-3
ADAM_EPS = 1e-8
TORCH_THREADS = 2
PACKAGES = ("jax", "jaxlib", "flax", "optax", "torch", "tensorflow-cpu", "keras", "numpy")


class _Reached(Exception):
    """Raised inside a loop when an evaluation reaches the target (stops the run)."""


def _load(to_float_images):
    import numpy as np

    from lmcourse.data import load_mnist

    data = load_mnist(allow_subset=False)
    return (to_float_images(data.x_train), data.y_train.astype(np.int32),
            to_float_images(data.x_test), data.y_test.astype(np.int32))


def _run_jax(args: argparse.Namespace, clock: dict) -> dict:
    import jax
    import optax
    from flax import nnx

    from lmcourse import training
    from lmcourse.models import CNN

    clock["imports"] = time.time()
    x_train, y_train, x_test, y_test = _load(training.to_float_images)
    clock["data"] = time.time()
    model = CNN(nnx.Rngs(args.seed))
    optimizer = nnx.Optimizer(model, optax.adam(LEARNING_RATE, eps=ADAM_EPS), wrt=nnx.Param)
    trace: list[tuple[int, float]] = []

    def eval_fn() -> dict[str, float]:
        accuracy = training.evaluate(model, x_test, y_test, batch_size=EVAL_BATCH)[1]
        trace.append((args.eval_every * (len(trace) + 1), accuracy))
        if accuracy >= args.target:
            raise _Reached
        return {"test_accuracy": accuracy}

    steps_per_epoch = len(x_train) // BATCH
    source = training.epoch_batches(len(x_train), BATCH, args.seed)
    first: dict[str, float] = {}

    def step(idx):
        loss = training.train_step(model, optimizer, x_train[idx], y_train[idx])
        if not first:
            jax.block_until_ready(loss)
            first["s"] = time.time() - clock["data"]
        return loss

    try:
        training.train_loop(step, source, steps=args.max_epochs * steps_per_epoch,
                            epoch_steps=args.eval_every, eval_fn=eval_fn, progress=False)
    except _Reached:
        clock["reached"] = time.time()
    return {"trace": trace, "first_step_s": first.get("s")}


def _run_torch(args: argparse.Namespace, clock: dict, channels_last: bool) -> dict:
    import numpy as np
    import torch
    from cnn_train_speed import _to_float_images, make_torch_cnn
    from torch import nn

    torch.set_num_threads(TORCH_THREADS)
    torch.manual_seed(args.seed)
    clock["imports"] = time.time()
    x_train, y_train, x_test, y_test = _load(_to_float_images)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    # (N, 28, 28, 1) -> (N, 1, 28, 28): with one channel this is the same memory, no copy.
    x_train = torch.from_numpy(x_train.reshape(-1, 1, 28, 28))
    x_test = torch.from_numpy(x_test.reshape(-1, 1, 28, 28))
    y_train = torch.from_numpy(y_train.astype(np.int64))
    y_test = torch.from_numpy(y_test.astype(np.int64))
    clock["data"] = time.time()
    model = make_torch_cnn().to(memory_format=fmt)
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE, eps=ADAM_EPS)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(args.seed)
    trace: list[tuple[int, float]] = []
    first_step_s = None
    steps_per_epoch = len(x_train) // BATCH
    step = 0
    for _ in range(args.max_epochs):
        order = torch.randperm(len(x_train), generator=generator)
        for b in range(steps_per_epoch):
            idx = order[b * BATCH:(b + 1) * BATCH]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x_train[idx].contiguous(memory_format=fmt)), y_train[idx])
            loss.backward()
            optimizer.step()
            step += 1
            if first_step_s is None:
                first_step_s = time.time() - clock["data"]
            if step % args.eval_every == 0:
                if not np.isfinite(loss.item()):
                    raise FloatingPointError(f"loss {loss.item()} at step {step}")
                model.eval()
                with torch.inference_mode():
                    correct = sum(int((model(x_test[i:i + EVAL_BATCH].contiguous(memory_format=fmt))
                                       .argmax(1) == y_test[i:i + EVAL_BATCH]).sum())
                                  for i in range(0, len(x_test), EVAL_BATCH))
                model.train()
                trace.append((step, correct / len(x_test)))
                if trace[-1][1] >= args.target:
                    clock["reached"] = time.time()
                    return {"trace": trace, "first_step_s": first_step_s}
    return {"trace": trace, "first_step_s": first_step_s}


def _run_keras(args: argparse.Namespace, clock: dict) -> dict:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf
    from cnn_train_speed import _to_float_images, make_keras_cnn

    keras.utils.set_random_seed(args.seed)
    clock["imports"] = time.time()
    x_train, y_train, x_test, y_test = _load(_to_float_images)
    data = (tf.data.Dataset.from_tensor_slices((x_train, y_train))
            .shuffle(len(x_train), seed=args.seed, reshuffle_each_iteration=True)
            .batch(BATCH, drop_remainder=True).repeat().prefetch(tf.data.AUTOTUNE))
    clock["data"] = time.time()
    model = make_keras_cnn()
    model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE, epsilon=ADAM_EPS),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    trace: list[tuple[int, float]] = []

    class StopAtTarget(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if "first" not in clock:
                clock["first"] = time.time()

        def on_epoch_end(self, epoch, logs=None):
            trace.append(((epoch + 1) * args.eval_every, float(logs["val_accuracy"])))
            if trace[-1][1] >= args.target:
                clock["reached"] = time.time()
                self.model.stop_training = True

    epochs = args.max_epochs * (len(x_train) // BATCH) // args.eval_every
    model.fit(data, steps_per_epoch=args.eval_every, epochs=epochs, verbose=0,
              validation_data=(x_test, y_test), validation_batch_size=EVAL_BATCH,
              callbacks=[StopAtTarget()])
    first = clock.pop("first", None)
    return {"trace": trace, "first_step_s": None if first is None else first - clock["data"]}


def worker(variant: str, args: argparse.Namespace) -> None:
    """Run one variant to the target and write what it measured (or its error) to ``args.result``."""
    clock: dict[str, float] = {"start": time.time()}
    try:
        if variant == "jax-course":
            result = _run_jax(args, clock)
        elif variant == "keras-fit":
            result = _run_keras(args, clock)
        else:
            result = _run_torch(args, clock, channels_last=variant == "torch-channels-last")
        result.update({f"clock_{k}": v for k, v in clock.items()})
        if "reached" in clock:
            result["steps_to_target"] = next(s for s, a in result["trace"] if a >= args.target)
        else:
            result["error"] = (f"target {args.target} not reached in {args.max_epochs} epochs "
                               f"(best {max(a for _, a in result['trace']):.4f})")
    except Exception as exc:  # reported, e.g. TensorFlow not installed
        result = _env.error_record(exc)
    result["peak_rss_mb"] = _env.peak_rss_mb()
    Path(args.result).write_text(json.dumps(result))


def _spawn(variant: str, args: argparse.Namespace, result_path: Path) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", variant,
           "--target", str(args.target), "--eval-every", str(args.eval_every),
           "--max-epochs", str(args.max_epochs), "--seed", str(args.seed),
           "--result", str(result_path)]
    t_spawn = time.time()
    r = _env.spawn_worker(cmd, dict(os.environ, PYTHONUNBUFFERED="1"), result_path, args.timeout)
    if "clock_reached" in r:
        r["time_to_target_s"] = r["clock_reached"] - t_spawn
        r["startup_s"] = r["clock_imports"] - t_spawn
        r["data_s"] = r["clock_data"] - r["clock_imports"]
        r["after_data_s"] = r["clock_reached"] - r["clock_data"]
        r["ms_per_step"] = 1e3 * r["after_data_s"] / r["steps_to_target"]
    return r


def print_table(variants: list[str], summary: dict[str, dict], target: float) -> None:
    head = (f"{'variant':<20} {'s to ' + format(target, '.1%'):>10} {'(min-max)':>13} "
            f"{'x fastest':>9} {'steps':>6} {'start-up s':>10} {'data s':>6} {'1st step s':>10} "
            f"{'ms/step':>8} {'peak RSS':>9}")
    print(head)
    print("-" * len(head))
    best = min((s["time_to_target_s"] for s in summary.values() if "time_to_target_s" in s),
               default=None)
    for v in variants:
        s = summary[v]
        if "time_to_target_s" not in s:
            print(f"{v:<20} FAILED: {s['error']}")
            continue
        spread = f"{s['time_to_target_s_min']:.1f}-{s['time_to_target_s_max']:.1f}"
        first = "-" if s.get("first_step_s") is None else f"{s['first_step_s']:.2f}"
        print(f"{v:<20} {s['time_to_target_s']:>10.1f} {spread:>13} "
              f"{best / s['time_to_target_s']:>9.2f} {s['steps_to_target']:>6.0f} "
              f"{s['startup_s']:>10.1f} {s['data_s']:>6.1f} {first:>10} "
              f"{s['ms_per_step']:>8.1f} {s['peak_rss_mb']:>6,.0f} MB")
        if "error" in s:
            print(f"{'':<20} ({s['rounds_failed']} round(s) failed: {s['error']})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", type=float, default=0.985,
                        help="test accuracy to reach (default 0.985)")
    parser.add_argument("--eval-every", type=int, default=117,
                        help="training steps between evaluations (default 117 = 1/4 epoch)")
    parser.add_argument("--max-epochs", type=int, default=5,
                        help="give up after this many epochs (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of all variants (default 3)")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="comma-separated (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="round r uses seed + r (default 0)")
    parser.add_argument("--timeout", type=float, default=900,
                        help="seconds before a variant's process is killed (default 900)")
    parser.add_argument("--json", metavar="PATH", help="also write all results to this JSON file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not 0.0 < args.target < 1.0:
        parser.error(f"--target must be a test accuracy in (0, 1), got {args.target}")
    if args.eval_every < 1 or args.max_epochs < 1 or args.rounds < 1:
        parser.error("--eval-every, --max-epochs and --rounds must be at least 1")
    if args.worker:
        worker(args.worker, args)
        return 0

    variants = _env.variants_or_exit(parser, args.variants, VARIANTS)
    versions, machine = _env.versions(PACKAGES), _env.machine()
    load_start = _env.print_environment(versions, machine)
    print(f"{args.rounds} round(s) x {len(variants)} variant(s); target {args.target:.1%} test "
          f"accuracy, evaluated every {args.eval_every} steps of batch {BATCH}\n")

    def run_one(v: str, rnd: int) -> dict:
        seeded = argparse.Namespace(**{**vars(args), "seed": args.seed + rnd})
        r = _spawn(v, seeded, Path(tmp) / f"{v}-{rnd}.json")
        r["round"], r["seed"] = rnd, seeded.seed
        msg = r["error"] if "error" in r else (
            f"{r['time_to_target_s']:.1f} s to {args.target:.1%} after {r['steps_to_target']} "
            f"steps (start-up {r['startup_s']:.1f} s, data {r['data_s']:.1f} s)")
        print(f"  round {rnd + 1}/{args.rounds} {v:<20} {msg}", flush=True)
        return r

    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        runs = _env.run_rounds(variants, args.rounds, run_one)
    total_s = time.perf_counter() - t_all
    load_end = _env.load_average()
    summary = _env.summarize_rounds(
        variants, runs, [("time_to_target_s", "spread"), ("steps_to_target", "median"),
                         ("startup_s", "median"), ("data_s", "median"),
                         ("first_step_s", lambda ok: _median_or_none(r["first_step_s"] for r in ok)),
                         ("after_data_s", "median"), ("ms_per_step", "spread"),
                         ("peak_rss_mb", "max")])
    print(f"\nmedians over {args.rounds} round(s); 'x fastest' = fastest median / this median\n")
    print_table(variants, summary, args.target)
    print(f"total {total_s:.0f} s; load average at end: {_env.format_load(load_end)}")
    if args.json:
        _env.write_results(
            args.json, versions=versions, machine=machine, settings={
                "target": args.target, "eval_every": args.eval_every, "batch": BATCH,
                "learning_rate": LEARNING_RATE, "adam_eps": ADAM_EPS, "max_epochs": args.max_epochs,
                "rounds": args.rounds, "seed": args.seed, "torch_threads": TORCH_THREADS,
                "variants": variants},
            load_start=load_start, load_end=load_end, total_s=total_s, summary=summary, runs=runs)
    return 0


def _median_or_none(values) -> float | None:
    import statistics

    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


if __name__ == "__main__":
    sys.exit(main())
