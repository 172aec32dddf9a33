"""CPU training speed of the chapter-03 CNN: Flax NNX (as the course runs it) against PyTorch and Keras.

Every variant trains the same network (Conv32 3x3 VALID - 2x2 max pool - Conv64 - pool - Conv64 -
Flatten - Dense64 - Dense10, ReLU; 93,322 parameters) for the same number of steps on the same
real MNIST batches (batch 128, Adam 1e-3, float32), each in its own subprocess: XLA flags must be
set before JAX starts its backend, and one process's memory must not count for another. Variants
run in alternation (JAX, PyTorch, Keras, JAX, ..., the order rotated every round) for several
rounds; the table gives the median over rounds.

Variants (``--variants``; the default set below, ``all`` adds the JAX ablations):

* ``jax-course``: ``lmcourse.training.train_step`` on ``lmcourse.models.CNN`` exactly as the
  course runs it: ``import lmcourse`` adds the CPU flag to ``XLA_FLAGS``, the pool is
  ``max_pool_2x2`` (``reduce_window`` forward, ``jax.custom_vjp`` mask backward) and conv1 is
  ``conv_few_channels`` (shifted products when training).
* ``jax-before``: the course before these fixes (flag, reshape + max pool, plain conv1).
* ``jax-default``: no flag, ``nnx.max_pool`` and ``nnx.Conv``: plain JAX/Flax.
* ``torch-eager``, ``torch-channels-last``, ``torch-compile``: the same architecture in PyTorch
  (its default initialisation), 2 threads; a failing ``torch.compile`` is caught and reported.
* ``keras-step`` (a ``tf.function`` train step) and ``keras-fit`` (``model.fit``): Keras 3 on
  TensorFlow; reported as failed when TensorFlow is not installed.
* ``jax-dp2``: the course network, loss and Adam with the batch split across two XLA CPU devices
  (``lmcourse.sharding.use_cpu_devices`` and ``make_sharded_train_step``, the ``"dp"`` layout of
  chapter 11); ``jax-dp1`` is its control, the same ``jax.jit`` step on a one-device mesh.
  ``jax-dp2`` aborted in 4 of 6 runs on 2 cores (an XLA all-reduce that never completes;
  ``benchmarks/README.md``): an aborted round is reported as failed and the others still count.
* ablations: ``jax-pool-only``, ``jax-conv1-only``, ``jax-no-flag``, ``jax-flag-only``,
  ``jax-reshape-pool`` (see ``JAX_VARIANTS``).

Timed: ``--steps`` training steps after ``--warmup`` untimed ones (the first one compiles), then
inference at batch 1000 on test images (``--infer-batches`` batches after one untimed call).
Reported per variant: median training images/s and inference images/s, their ratio to
``torch-eager``, the spread between rounds, the first-step time (compilation), the mean loss of
the last 20 steps (a sanity check: the JAX variants start from the same weights and see the same
batches, so their losses agree closely), the peak RSS of the process (``resource.getrusage``) and
"cores busy" (process CPU time over the wall time of the timed steps; not for Keras).

Usage::

    pip install -r benchmarks/requirements.txt
    python benchmarks/cnn_train_speed.py                      # about 5 minutes on 2 idle cores
    python benchmarks/cnn_train_speed.py --steps 100 --rounds 2 --json out.json
    python benchmarks/cnn_train_speed.py --variants all
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

if str(Path(__file__).resolve().parent) not in sys.path:  # _env.py, also when loaded by path
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import _env  # noqa: E402
from _dp import make_dp_step  # noqa: E402

DEFAULT_VARIANTS = ["jax-course", "torch-eager", "jax-before", "keras-step", "jax-default",
                    "torch-channels-last", "keras-fit", "torch-compile"]
EXTRA_VARIANTS = ["jax-dp1", "jax-dp2", "jax-pool-only", "jax-conv1-only", "jax-no-flag", "jax-flag-only",
                  "jax-reshape-pool"]
BASELINE = "torch-eager"
COURSE_FLAG = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"
BATCH = 128
INFER_BATCH = 1000
TORCH_THREADS = 2
PACKAGES = ("jax", "jaxlib", "flax", "optax", "torch", "tensorflow-cpu", "tensorflow", "keras",
            "numpy", "ml_dtypes", "protobuf")

# variant -> (XLA flag from lmcourse on, pool, conv1):
#   pool "vjp" = lmcourse.models.cnn.max_pool_2x2 (reduce_window forward, mask backward),
#        "reshape" = reshape + max (the course before this benchmark's fixes),
#        "flax" = nnx.max_pool (reduce_window forward, select-and-scatter backward);
#   conv1 "shifted" = lmcourse.models.cnn.conv_few_channels, "lax" = nnx.Conv's default.
JAX_VARIANTS = {
    "jax-course": (True, "vjp", "shifted"),
    "jax-before": (True, "reshape", "lax"),
    "jax-default": (False, "flax", "lax"),
    "jax-pool-only": (True, "vjp", "lax"),
    "jax-conv1-only": (True, "reshape", "shifted"),
    "jax-no-flag": (False, "vjp", "shifted"),
    "jax-flag-only": (True, "flax", "lax"),
    "jax-reshape-pool": (False, "reshape", "lax"),
    "jax-dp1": (True, "vjp", "shifted"),
    "jax-dp2": (True, "vjp", "shifted"),
}
# variant -> number of simulated CPU devices the batch is split over (the sharded step)
DP_DEVICES = {"jax-dp1": 1, "jax-dp2": 2}
KERAS_VARIANTS = ("keras-step", "keras-fit")


# --------------------------------------------------------------------------------------------
# Workers (one variant per process)
# --------------------------------------------------------------------------------------------

def _to_float_images(x):
    """``(N, 28, 28)`` uint8 -> ``(N, 28, 28, 1)`` float32 in [0, 1].

    The same values as ``lmcourse.training.to_float_images``, which the JAX workers use; the
    PyTorch workers use this copy so that they never import JAX (it would inflate their RSS).
    """
    import numpy as np

    return x[..., None].astype(np.float32) / 255.0


def _load_data(seed: int, n_batches: int, to_float_images=_to_float_images):
    """Float32 NHWC MNIST arrays and the index arrays of ``n_batches`` shuffled batches."""
    import numpy as np

    from lmcourse.data import load_mnist

    data = load_mnist(allow_subset=False)
    x_train = to_float_images(data.x_train)
    y_train = data.y_train.astype(np.int32)
    x_test = to_float_images(data.x_test)
    rng = np.random.default_rng(seed)
    idx: list = []
    while len(idx) < n_batches:  # reshuffle per epoch, drop the short last batch
        order = rng.permutation(len(x_train))
        idx += [order[i:i + BATCH] for i in range(0, len(order) - BATCH + 1, BATCH)]
    return x_train, y_train, x_test, idx[:n_batches]


def make_torch_cnn():
    """The chapter-03 network in PyTorch (NCHW, PyTorch's default initialisation); same layer
    shapes as the Flax ``CNN``. PyTorch is imported here, so a JAX worker never loads it."""
    import torch
    from torch import nn

    class TorchCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 32, 3)
            self.conv2 = nn.Conv2d(32, 64, 3)
            self.conv3 = nn.Conv2d(64, 64, 3)
            self.dense1 = nn.Linear(3 * 3 * 64, 64)
            self.dense2 = nn.Linear(64, 10)

        def forward(self, x):
            x = nn.functional.max_pool2d(torch.relu(self.conv1(x)), 2)
            x = nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2)
            x = torch.relu(self.conv3(x))
            x = torch.flatten(x, 1)
            x = torch.relu(self.dense1(x))
            return self.dense2(x)

    return TorchCNN()


def make_keras_cnn():
    """The chapter-03 network in Keras 3 (NHWC, logits out, Keras's default initialisation)."""
    import keras

    layers = keras.layers
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        layers.Conv2D(32, 3, activation="relu"), layers.MaxPooling2D(2),
        layers.Conv2D(64, 3, activation="relu"), layers.MaxPooling2D(2),
        layers.Conv2D(64, 3, activation="relu"), layers.Flatten(),
        layers.Dense(64, activation="relu"), layers.Dense(10)])


def _run_jax(variant: str, args: argparse.Namespace) -> dict:
    t_start = time.perf_counter()
    import lmcourse  # noqa: F401  (adds the CPU flag to XLA_FLAGS unless LMCOURSE_XLA_TUNING=0)

    xla_flags = os.environ.get("XLA_FLAGS", "")
    import jax
    devices = DP_DEVICES.get(variant)
    if devices is not None:   # before anything computes: chapter 11's simulated CPU devices
        from lmcourse.sharding import use_cpu_devices
        use_cpu_devices(devices)
    import numpy as np
    import optax
    from flax import nnx

    from lmcourse.compat import make_optimizer
    from lmcourse.models import count_params
    from lmcourse.models.cnn import CNN, max_pool_2x2
    from lmcourse.training import cross_entropy_loss, to_float_images, train_step

    _, pool_kind, conv1_kind = JAX_VARIANTS[variant]

    def reshape_pool(v: jax.Array) -> jax.Array:
        """The course's pool before the fixes: reshape to 2×2 windows and ``max`` over them."""
        n, h, w, c = v.shape
        v = v[:, : h - h % 2, : w - w % 2, :]
        return v.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))

    pools = {"vjp": max_pool_2x2, "reshape": reshape_pool,
             "flax": lambda v: nnx.max_pool(v, (2, 2), strides=(2, 2), padding="VALID")}

    class VariantCNN(CNN):
        """The course CNN (same parameters, same initialisation) with a chosen pool and conv1."""

        def __init__(self, rngs: nnx.Rngs):
            super().__init__(rngs)
            if conv1_kind == "lax":  # nnx.Conv's default convolution; same parameters
                self.conv1.conv_general_dilated = jax.lax.conv_general_dilated

        def __call__(self, x: jax.Array) -> jax.Array:
            pool = pools[pool_kind]
            x = pool(nnx.relu(self.conv1(x)))
            x = pool(nnx.relu(self.conv2(x)))
            x = nnx.relu(self.conv3(x))
            x = x.reshape(x.shape[0], -1)
            x = nnx.relu(self.dense1(x))
            return self.dense2(self.dropout(x))

    x_train, y_train, x_test, idx = _load_data(args.seed, args.warmup + args.steps,
                                               to_float_images)
    t_build = time.perf_counter()
    model = VariantCNN(nnx.Rngs(args.seed))
    optimizer = make_optimizer(model, optax.adam(1e-3))
    build_s = time.perf_counter() - t_build
    step, state = train_step, (lambda: nnx.state(model))
    if devices is not None:   # the same step, the batch split across the CPU devices
        step, state = make_dp_step(model, optimizer,
                                   lambda m, x, y: cross_entropy_loss(m, x, y)[0], devices)

    losses = []
    t0 = time.perf_counter()
    for i in idx[:args.warmup]:
        losses.append(step(model, optimizer, x_train[i], y_train[i]))
        losses[-1].block_until_ready()
        if len(losses) == 1:
            first_step_s = time.perf_counter() - t0
    jax.block_until_ready(state())

    t0, cpu0 = time.perf_counter(), time.process_time()
    for i in idx[args.warmup:]:
        losses.append(step(model, optimizer, x_train[i], y_train[i]))
    jax.block_until_ready((losses[-1], state()))
    train_s, cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
    if devices is not None:   # the trained state back into the model, for inference
        nnx.update((model, optimizer), jax.device_get(state()))
    loss_values = np.asarray(jax.device_get(losses), dtype=np.float64)

    @nnx.jit
    def predict(m, x):
        return m(x)

    model.eval()
    predict(model, x_test[:INFER_BATCH]).block_until_ready()
    t0 = time.perf_counter()
    for b in range(args.infer_batches):
        start = (b * INFER_BATCH) % (len(x_test) - INFER_BATCH + 1)
        out = predict(model, x_test[start:start + INFER_BATCH])
    out.block_until_ready()
    infer_s = time.perf_counter() - t0

    return {
        "params": count_params(model), "xla_flags": xla_flags, "build_s": build_s,
        "first_step_s": first_step_s, "train_s": train_s, "infer_s": infer_s,
        "losses": loss_values.tolist(), "startup_s": t_build - t_start,
        "cores_busy": cpu_s / train_s, "devices": devices,
    }


def _run_torch(variant: str, args: argparse.Namespace) -> dict:
    t_start = time.perf_counter()
    import numpy as np
    import torch
    from torch import nn

    torch.set_num_threads(TORCH_THREADS)
    torch.manual_seed(args.seed)

    x_train, y_train, x_test, idx = _load_data(args.seed, args.warmup + args.steps)
    # (N, 28, 28, 1) -> (N, 1, 28, 28): with one channel this is the same memory, no copy.
    x_train = torch.from_numpy(x_train.reshape(-1, 1, 28, 28))
    y_train = torch.from_numpy(y_train.astype(np.int64))
    x_test = torch.from_numpy(x_test.reshape(-1, 1, 28, 28))
    fmt = torch.channels_last if variant == "torch-channels-last" else torch.contiguous_format

    t_build = time.perf_counter()
    model = make_torch_cnn().to(memory_format=fmt)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    net = torch.compile(model, dynamic=False) if variant == "torch-compile" else model
    build_s = time.perf_counter() - t_build
    loss_fn = nn.CrossEntropyLoss()

    def step(i):
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(net(x_train[i].contiguous(memory_format=fmt)), y_train[i])
        loss.backward()
        optimizer.step()
        return loss.detach()

    losses = []
    t0 = time.perf_counter()
    for i in idx[:args.warmup]:
        losses.append(step(torch.from_numpy(i)))
        if len(losses) == 1:
            first_step_s = time.perf_counter() - t0
    t0, cpu0 = time.perf_counter(), time.process_time()
    for i in idx[args.warmup:]:
        losses.append(step(torch.from_numpy(i)))
    train_s, cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
    loss_values = torch.stack(losses).double().numpy()

    model.eval()
    with torch.inference_mode():
        net(x_test[:INFER_BATCH].contiguous(memory_format=fmt))
        t0 = time.perf_counter()
        for b in range(args.infer_batches):
            start = (b * INFER_BATCH) % (len(x_test) - INFER_BATCH + 1)
            net(x_test[start:start + INFER_BATCH].contiguous(memory_format=fmt))
        infer_s = time.perf_counter() - t0

    return {
        "params": sum(p.numel() for p in model.parameters()), "threads": torch.get_num_threads(),
        "build_s": build_s, "first_step_s": first_step_s, "train_s": train_s,
        "infer_s": infer_s, "losses": loss_values.tolist(), "startup_s": t_build - t_start,
        "cores_busy": cpu_s / train_s,
    }


def _run_keras(variant: str, args: argparse.Namespace) -> dict:
    """Keras 3 on TensorFlow: a ``tf.function`` train step (``keras-step``) or ``model.fit``."""
    t_start = time.perf_counter()
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np
    import tensorflow as tf

    keras.utils.set_random_seed(args.seed)
    x_train, y_train, x_test, idx = _load_data(args.seed, args.warmup + args.steps)

    t_build = time.perf_counter()
    model = make_keras_cnn()
    optimizer = keras.optimizers.Adam(1e-3)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    build_s = time.perf_counter() - t_build

    losses = []
    if variant == "keras-step":
        @tf.function
        def step(x, y):
            with tf.GradientTape() as tape:
                loss = loss_fn(y, model(x, training=True))
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
            return loss

        t0 = time.perf_counter()
        for i in idx[:args.warmup]:
            losses.append(float(step(x_train[i], y_train[i])))
            if len(losses) == 1:
                first_step_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = [step(x_train[i], y_train[i]) for i in idx[args.warmup:]]
        losses += [float(v) for v in out]  # TF runs eagerly-synchronously: values are ready
        train_s = time.perf_counter() - t0
    else:  # model.fit over exactly the same batches, in order (shuffle=False)
        model.compile(optimizer=optimizer, loss=loss_fn)

        def fit(batch_idx):
            order = np.concatenate(batch_idx)
            model.fit(x_train[order], y_train[order], batch_size=BATCH, epochs=1,
                      shuffle=False, verbose=0)

        t0 = time.perf_counter()
        fit(idx[:1])
        first_step_s = time.perf_counter() - t0
        if args.warmup > 1:
            fit(idx[1:args.warmup])
        t0 = time.perf_counter()
        fit(idx[args.warmup:])
        train_s = time.perf_counter() - t0
        # fit's logs hold a running mean over the call; for the sanity column use the loss of
        # the trained model on the last 20 training batches instead.
        last = np.concatenate(idx[-20:])
        losses = [float(loss_fn(y_train[last], model(x_train[last], training=False)))]

    infer = tf.function(lambda x: model(x, training=False))
    infer(x_test[:INFER_BATCH])
    t0 = time.perf_counter()
    for b in range(args.infer_batches):
        start = (b * INFER_BATCH) % (len(x_test) - INFER_BATCH + 1)
        out = infer(x_test[start:start + INFER_BATCH])
    out.numpy()
    infer_s = time.perf_counter() - t0

    return {
        "params": int(model.count_params()), "threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "build_s": build_s, "first_step_s": first_step_s, "train_s": train_s,
        "infer_s": infer_s, "losses": losses, "startup_s": t_build - t_start,
    }


def worker(variant: str, args: argparse.Namespace) -> None:
    """Run one variant and write its measurements (or its error) as JSON to ``args.result``."""
    try:
        run = (_run_jax if variant in JAX_VARIANTS
               else _run_keras if variant in KERAS_VARIANTS else _run_torch)
        result = run(variant, args)
        losses = result.pop("losses")
        result["final_loss"] = sum(losses[-20:]) / len(losses[-20:])
        result["train_img_s"] = args.steps * BATCH / result["train_s"]
        result["infer_img_s"] = args.infer_batches * INFER_BATCH / result["infer_s"]
    except Exception as exc:  # reported, e.g. a torch.compile without a working C++ compiler
        result = _env.error_record(exc)
    result["peak_rss_mb"] = _env.peak_rss_mb()
    result["children_peak_rss_mb"] = _env.peak_rss_mb(resource.RUSAGE_CHILDREN)
    Path(args.result).write_text(json.dumps(result))


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------

def _env_for(variant: str) -> dict:
    """The environment of a variant's subprocess (XLA flags decided before JAX starts)."""
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    if variant in JAX_VARIANTS:
        flag_on = JAX_VARIANTS[variant][0]
        # Start from the user's XLA_FLAGS without the course flag; lmcourse adds it back if on.
        flags = " ".join(f for f in env.get("XLA_FLAGS", "").split() if not f.startswith(
            COURSE_FLAG.split("=")[0]))
        env["XLA_FLAGS"] = flags
        if flag_on:
            env.pop("LMCOURSE_XLA_TUNING", None)
        else:
            env["LMCOURSE_XLA_TUNING"] = "0"
    return env


def _spawn(variant: str, args: argparse.Namespace, result_path: Path) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", variant,
           "--steps", str(args.steps), "--warmup", str(args.warmup), "--seed", str(args.seed),
           "--infer-batches", str(args.infer_batches), "--result", str(result_path)]
    return _env.spawn_worker(cmd, _env_for(variant), result_path, args.timeout)


def _fmt(value, spec=",.0f", missing="-"):
    return missing if value is None else format(value, spec)


def _median_present(rounds: list[dict], key: str = "cores_busy") -> float | None:
    """Median of ``key`` over the rounds that report it (Keras does not), else ``None``."""
    values = [r[key] for r in rounds if r.get(key) is not None]
    return statistics.median(values) if values else None


def summarize(variants: list[str], runs: dict[str, list[dict]]) -> dict[str, dict]:
    """Medians over the successful rounds of each variant, and ratios to ``BASELINE``."""
    return _env.summarize_rounds(
        variants, runs,
        [("train_img_s", "spread"), ("infer_img_s", "median"), ("first_step_s", "median"),
         ("peak_rss_mb", "max"), ("children_peak_rss_mb", "max"), ("final_loss", "median"),
         ("params", "first"), ("cores_busy", _median_present)],
        baseline=BASELINE,
        ratios=[("train_img_s", "train_vs_torch_eager"), ("infer_img_s", "infer_vs_torch_eager")])


def print_table(variants: list[str], summary: dict[str, dict]) -> None:
    head = (f"{'variant':<20} {'train img/s':>11} {'(min-max)':>15} {'x eager':>7} "
            f"{'infer img/s':>11} {'x eager':>7} {'1st step s':>10} {'loss':>6} {'peak RSS':>9} "
            f"{'cores busy':>10}")
    print(head)
    print("-" * len(head))
    for v in variants:
        s = summary[v]
        if "train_img_s" not in s:
            print(f"{v:<20} FAILED: {s['error']}")
            continue
        spread = f"{s['train_img_s_min']:,.0f}-{s['train_img_s_max']:,.0f}"
        print(f"{v:<20} {s['train_img_s']:>11,.0f} {spread:>15} "
              f"{_fmt(s.get('train_vs_torch_eager'), '.2f'):>7} {s['infer_img_s']:>11,.0f} "
              f"{_fmt(s.get('infer_vs_torch_eager'), '.2f'):>7} {s['first_step_s']:>10.2f} "
              f"{s['final_loss']:>6.3f} {s['peak_rss_mb']:>6,.0f} MB "
              f"{_fmt(s.get('cores_busy'), '.2f'):>10}")
        if "error" in s:
            print(f"{'':<20} ({s['rounds_failed']} round(s) failed: {s['error']})")
    for v in variants:
        if summary[v].get("children_peak_rss_mb"):
            print(f"{v}: its child processes (torch.compile workers, tools TensorFlow runs) peaked at "
                  f"{summary[v]['children_peak_rss_mb']:,.0f} MB on top")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=150, help="timed training steps (default 150)")
    parser.add_argument("--warmup", type=int, default=5,
                        help="untimed steps first; the first compiles (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of all variants (default 3)")
    parser.add_argument("--infer-batches", type=int, default=5,
                        help="timed inference batches of 1000 test images (default 5)")
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                        help="comma-separated, or 'all' (default: %(default)s; extras: "
                             + ",".join(EXTRA_VARIANTS) + ")")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=600,
                        help="seconds before a variant's process is killed (default 600)")
    parser.add_argument("--json", metavar="PATH", help="also write all results to this JSON file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.warmup < 1 or args.steps < 1 or args.rounds < 1 or args.infer_batches < 1:
        parser.error("--warmup, --steps, --rounds and --infer-batches must be at least 1")

    if args.worker:
        worker(args.worker, args)
        return 0

    known = DEFAULT_VARIANTS + EXTRA_VARIANTS
    variants = _env.variants_or_exit(parser, args.variants, known)
    # Alternate frameworks within a round: JAX, PyTorch, Keras, JAX, PyTorch, Keras, ...
    groups = [[v for v in variants if v in JAX_VARIANTS],
              [v for v in variants if v not in JAX_VARIANTS and v not in KERAS_VARIANTS],
              [v for v in variants if v in KERAS_VARIANTS]]
    order = _env.interleave(groups)

    versions, machine = _env.versions(PACKAGES), _env.machine()
    load_start = _env.print_environment(versions, machine)
    print(f"{args.rounds} round(s) x {len(order)} variant(s); {args.steps} timed steps of batch "
          f"{BATCH} after {args.warmup} warm-up steps; inference {args.infer_batches} x "
          f"{INFER_BATCH}\n")

    def run_one(v: str, rnd: int) -> dict:
        r = _spawn(v, args, Path(tmp) / f"{v}-{rnd}.json")
        r["round"] = rnd
        msg = r["error"] if "error" in r else (
            f"train {r['train_img_s']:,.0f} img/s, infer {r['infer_img_s']:,.0f} img/s, "
            f"first step {r['first_step_s']:.1f} s, RSS {r['peak_rss_mb']:,.0f} MB")
        print(f"  round {rnd + 1}/{args.rounds} {v:<20} {msg} "
              f"[{r['process_wall_s']:.0f} s]", flush=True)
        return r

    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        by_variant = _env.run_rounds(order, args.rounds, run_one)  # start rotated every round
    runs = {v: by_variant[v] for v in variants}
    total_s = time.perf_counter() - t_all
    load_end = _env.load_average()

    summary = summarize(variants, runs)
    print(f"\nmedians over {args.rounds} round(s); ratios to {BASELINE} (same run); "
          f"loss = mean of the last 20 steps\n")
    print_table(variants, summary)
    flags = next((r["xla_flags"] for r in runs.get("jax-course", []) if "xla_flags" in r), None)
    if flags is not None:
        print(f"\njax-course XLA_FLAGS: {flags!r}")
    print(f"total {total_s:.0f} s; load average at end: {_env.format_load(load_end)}")

    if args.json:
        _env.write_results(
            args.json, versions=versions, machine=machine, settings={
                "steps": args.steps, "warmup": args.warmup, "rounds": args.rounds,
                "batch": BATCH, "infer_batch": INFER_BATCH, "infer_batches": args.infer_batches,
                "torch_threads": TORCH_THREADS, "seed": args.seed, "order": order},
            load_start=load_start, load_end=load_end, total_s=total_s, summary=summary,
            runs=runs, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
