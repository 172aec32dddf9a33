"""Where the time of the chapter-03 CNN's training step goes on CPU: each operation timed alone.

The jitted training step is one XLA program, so a profiler sees fusions, not layers. Here every
piece of the step is compiled and timed on its own, at the shapes of a batch-128 step:

* each convolution's forward pass (as run when training), its input gradient ("dgrad", not
  needed for conv1) and its kernel gradient ("wgrad"), with ``lax.conv_general_dilated``
  (``nnx.Conv``'s default) and, for conv1, with the course's ``conv_few_channels`` (nine
  shifted products when differentiated);
* each max pool's forward and backward pass, for ``nnx.max_pool`` (``reduce_window`` forward,
  select-and-scatter backward), the reshape + ``max`` pool, and the course's ``max_pool_2x2``
  (``reduce_window`` forward, ``jax.custom_vjp`` mask backward);
* the dense layers (forward + both gradients), the loss, and the Adam update;
* whole programs: the forward pass, forward + gradients, and the full step, for the course's
  network before and after the fixes and for plain Flax.

Pieces are timed in alternation (round after round, each piece ``--calls`` times per round) and
the median over rounds is reported, in ms per call. Also printed: which operations the compiled
full steps contain (convolutions, select-and-scatter, reduce-window, YNNPACK fusions), from the
optimised HLO that ``XLA_FLAGS=--xla_dump_to=DIR`` would also write to disk.

Usage::

    python benchmarks/profile_cnn_step.py                 # course XLA flag on (as `import lmcourse`)
    python benchmarks/profile_cnn_step.py --no-flag       # LMCOURSE_XLA_TUNING=0: XLA's defaults
    python benchmarks/profile_cnn_step.py --rounds 9 --calls 20 --batch 256
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=7, help="alternating rounds (default 7)")
    parser.add_argument("--calls", type=int, default=10, help="calls per piece per round")
    parser.add_argument("--no-flag", action="store_true",
                        help="run without the course's XLA CPU flag (LMCOURSE_XLA_TUNING=0)")
    args = parser.parse_args(argv)
    if args.no_flag:
        os.environ["LMCOURSE_XLA_TUNING"] = "0"

    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from flax import nnx

    import lmcourse  # noqa: F401  (adds the CPU flag to XLA_FLAGS unless LMCOURSE_XLA_TUNING=0)
    from lmcourse.models.cnn import CNN, conv_few_channels, max_pool_2x2

    print(f"jax {jax.__version__}; XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; "
          f"batch {args.batch}; load average {os.getloadavg()[0]:.2f}")
    B = args.batch
    rng = np.random.default_rng(0)

    def normal(*shape, scale=1.0):
        return jnp.asarray(rng.standard_normal(shape, dtype=np.float32) * scale)

    def lax_conv(x, w):
        return jax.lax.conv_general_dilated(x, w, (1, 1), "VALID",
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))

    dn = jax.lax.conv_dimension_numbers((1, 1, 1, 1), (1, 1, 1, 1), ("NHWC", "HWIO", "NHWC"))

    def shifted_conv(x, w):
        return conv_few_channels(x, w, (1, 1), "VALID", lhs_dilation=(1, 1),
                                 rhs_dilation=(1, 1), dimension_numbers=dn)

    def flax_pool(x):
        return nnx.max_pool(x, (2, 2), strides=(2, 2))

    def reshape_pool(x):
        n, h, w, c = x.shape
        x = x[:, : h - h % 2, : w - w % 2, :]
        return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))

    pieces: dict[str, tuple] = {}  # name -> (jitted function, args)

    def add(name, fn, *fn_args):
        pieces[name] = (jax.jit(fn), fn_args)

    def fwd_dgrad_wgrad(prefix, conv, x, w, dgrad=True):
        g = normal(*conv(x, w).shape)
        # the forward pass as training runs it (jax.vjp uses a custom_vjp's forward rule)
        add(f"{prefix} forward", lambda x, w: jax.vjp(conv, x, w)[0], x, w)
        if dgrad:
            add(f"{prefix} input gradient", lambda x, w, g: jax.vjp(
                lambda v: conv(v, w), x)[1](g)[0], x, w, g)
        add(f"{prefix} kernel gradient", lambda x, w, g: jax.vjp(
            lambda k: conv(x, k), w)[1](g)[0], x, w, g)

    convs = [("conv1", (B, 28, 28, 1), (3, 3, 1, 32)), ("conv2", (B, 13, 13, 32), (3, 3, 32, 64)),
             ("conv3", (B, 5, 5, 64), (3, 3, 64, 64))]
    for name, xs, ws in convs:
        x, w = normal(*xs), normal(*ws, scale=0.1)
        fwd_dgrad_wgrad(f"{name} lax.conv", lax_conv, x, w, dgrad=name != "conv1")
        if name == "conv1":
            fwd_dgrad_wgrad(f"{name} shifted (course)", shifted_conv, x, w, dgrad=False)

    for name, xs in [("pool1", (B, 26, 26, 32)), ("pool2", (B, 11, 11, 64))]:
        x = jax.nn.relu(normal(*xs))  # pools follow a ReLU: many ties at zero, as in the step
        g = normal(*flax_pool(x).shape)
        for kind, pool in [("nnx.max_pool", flax_pool), ("reshape+max", reshape_pool),
                           ("custom_vjp (course)", max_pool_2x2)]:
            add(f"{name} {kind} forward", pool, x)
            add(f"{name} {kind} backward", lambda x, g, pool=pool: jax.vjp(pool, x)[1](g)[0], x, g)

    h, w1, b1 = normal(B, 576), normal(576, 64, scale=0.05), normal(64)
    w2, b2, y = normal(64, 10, scale=0.1), normal(10), jnp.asarray(rng.integers(0, 10, B))

    def head(h, w1, b1, w2, b2):
        logits = jax.nn.relu(h @ w1 + b1) @ w2 + b2
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    add("dense1+dense2+loss forward", head, h, w1, b1, w2, b2)
    add("dense1+dense2+loss gradients", jax.grad(head, argnums=(0, 1, 2, 3, 4)), h, w1, b1, w2,
        b2)

    # whole programs, on real-shaped random images, with the course's parameters
    model = CNN(nnx.Rngs(0))
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    tx = optax.adam(1e-3)
    opt_state = tx.init(params)
    grads = jax.tree.map(jnp.ones_like, params)
    add("Adam update (93,322 parameters)", lambda p, s, g: optax.apply_updates(
        p, tx.update(g, s, p)[0]), params, opt_state, grads)

    images = jnp.asarray(rng.random((B, 28, 28, 1), dtype=np.float32))

    def network(conv1, pool):
        def forward(p, x):
            def conv(layer, h, fn=lax_conv):
                return jax.nn.relu(fn(h, p[layer]["kernel"]) + p[layer]["bias"])

            h = pool(conv("conv1", x, conv1))
            h = pool(conv("conv2", h))
            h = conv("conv3", h).reshape(x.shape[0], -1)
            h = jax.nn.relu(h @ p["dense1"]["kernel"] + p["dense1"]["bias"])
            return h @ p["dense2"]["kernel"] + p["dense2"]["bias"]

        def loss(p, x):
            return optax.softmax_cross_entropy_with_integer_labels(forward(p, x), y).mean()

        def step(p, s, x):
            value, g = jax.value_and_grad(loss)(p, x)
            updates, s = tx.update(g, s, p)
            return optax.apply_updates(p, updates), s, value

        return forward, jax.grad(loss), step

    steps = {}
    for label, conv1, pool in [("plain Flax", lax_conv, flax_pool),
                               ("course before", lax_conv, reshape_pool),
                               ("course now", shifted_conv, max_pool_2x2)]:
        forward, grad, step = network(conv1, pool)
        add(f"[{label}] forward", forward, params, images)
        add(f"[{label}] forward + gradients", grad, params, images)
        add(f"[{label}] full step", step, params, opt_state, images)
        steps[label] = step

    # compile and warm up everything, then time in alternation
    for fn, fn_args in pieces.values():
        for _ in range(2):
            jax.block_until_ready(fn(*fn_args))
    def time_piece(name: str, _round: int) -> float:
        fn, fn_args = pieces[name]
        t0 = time.perf_counter()
        for _ in range(args.calls):
            out = fn(*fn_args)
        jax.block_until_ready(out)
        return (time.perf_counter() - t0) / args.calls * 1e3

    times = _env.run_rounds(list(pieces), args.rounds, time_piece, rotate=False)

    width = max(map(len, pieces))
    print(f"\nmedian ms per call over {args.rounds} rounds x {args.calls} calls "
          f"(min-max of the round medians)\n")
    for name in pieces:
        t = times[name]
        print(f"{name:<{width}}  {statistics.median(t):8.3f}   ({min(t):.3f}-{max(t):.3f})")

    med = _env.medians(times)

    def total(names):
        return sum(med[n] for n in names)

    for label, conv1, pool in [("plain Flax", "conv1 lax.conv", "nnx.max_pool"),
                               ("course before", "conv1 lax.conv", "reshape+max"),
                               ("course now", "conv1 shifted (course)", "custom_vjp (course)")]:
        parts = {
            "convolutions forward": [f"{conv1} forward", "conv2 lax.conv forward",
                                     "conv3 lax.conv forward"],
            "convolutions input gradient": ["conv2 lax.conv input gradient",
                                            "conv3 lax.conv input gradient"],
            "convolutions kernel gradient": [f"{conv1} kernel gradient",
                                             "conv2 lax.conv kernel gradient",
                                             "conv3 lax.conv kernel gradient"],
            "pools forward": [f"pool1 {pool} forward", f"pool2 {pool} forward"],
            "pools backward": [f"pool1 {pool} backward", f"pool2 {pool} backward"],
            "dense + loss (fwd + grad)": ["dense1+dense2+loss forward",
                                          "dense1+dense2+loss gradients"],
            "Adam update": ["Adam update (93,322 parameters)"],
        }
        summed = sum(total(v) for v in parts.values())
        whole = med[f"[{label}] full step"]
        print(f"\n{label}: sum of the pieces {summed:.1f} ms, compiled full step {whole:.1f} ms "
              f"({B / whole * 1e3:,.0f} img/s)")
        for part, names in parts.items():
            print(f"  {part:<30} {total(names):7.2f} ms  {100 * total(names) / summed:5.1f}%")

    print("\noperations in the optimised HLO of each full step:")
    for label, step in steps.items():
        hlo = jax.jit(step).lower(params, opt_state, images).compile().as_text()
        counts = {op: len(re.findall(rf"= [^=]*? {op}\(", hlo)) for op in
                  ("convolution", "select-and-scatter", "reduce-window", "scatter",
                                          "iota", "dot")}
        counts["YNNPACK fusions"] = hlo.count('"kind":"__ynn_fusion"')
        print(f"  {label:<14} " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
