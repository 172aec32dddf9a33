"""Where the time of the chapter-07 GPT's training step goes on CPU, and how its matrix products
compare with PyTorch's at the same shapes.

Two parts, both at the shapes of ``gpt_train_speed.py``'s default model (4 layers, width 128,
4 heads, context 64, batch 32, so 2,048 tokens per step):

1. **Trace.** (a) The course's GPT, (b) the control with every ``nnx.Linear`` on plain
   ``jax.lax.dot_general`` instead of ``lmcourse.models.common.flat_dot_general``. The jitted
   step (``lmcourse.models.gpt.lm_loss`` gradient + AdamW) runs under
   ``jax.profiler`` with XLA's per-operation trace events on
   (``--xla_cpu_enable_xprof_traceme=true``, set here before JAX starts). The events are summed
   per kind of compiled operation (``ynn_fusion``: products run by the YNNPACK library;
   ``dot``: products run by XLA's own kernels; ``..._fusion``: elementwise programs) in
   milliseconds of thread time per step, next to the wall time per step. Thread time is summed
   over XLA's worker threads, so it can exceed the wall time when operations run in parallel.
2. **Products alone.** Each product of a ``Linear`` layer of the block, in its three forms
   (forward ``x @ W``; input gradient ``g @ Wᵀ``; weight gradient ``xᵀ @ g``), jitted alone in
   JAX and as ``torch.matmul`` (if PyTorch is installed), timed in alternating rounds (median):
   each round times all JAX pieces, pauses half a second (PyTorch's and XLA's worker threads keep
   spinning for a while after their last task and would slow the other framework), then all
   PyTorch pieces.

Usage::

    python benchmarks/profile_gpt_step.py                  # about a minute
    python benchmarks/profile_gpt_step.py --rounds 7 --calls 50

The numbers are thread and wall times of one machine: compare the rows with each other, and
rerun on an idle machine (the load average is printed).
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

if str(Path(__file__).resolve().parent) not in sys.path:  # _env.py, also when loaded by path
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import _env  # noqa: E402
from _controls import use_plain_linear  # noqa: E402

TRACE_FLAG = "--xla_cpu_enable_xprof_traceme=true"


def trace_step(steps: int, plain_linear: bool = False) -> None:
    """Part 1: time the step, then trace ``steps`` steps and sum the events per kind.

    ``plain_linear``: the control, every ``nnx.Linear`` of the GPT with ``jax.lax.dot_general``
    on ``(B, T, d)`` arrays instead of the course's ``flat_dot_general``.
    """
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from flax import nnx
    from jax.profiler import ProfileData

    from lmcourse.compat import apply_gradients, make_optimizer
    from lmcourse.models.gpt import GPT, GPTConfig, lm_loss

    config = GPTConfig("profile", vocab_size=85, d_model=128, layers=4, heads=4, n_ctx=64)
    rng = np.random.default_rng(0)
    x, y = (jnp.asarray(rng.integers(0, 85, (32, 64)), jnp.int32) for _ in range(2))
    model = GPT(config, rngs=nnx.Rngs(0))
    if plain_linear:
        use_plain_linear(model)
    optimizer = make_optimizer(model, optax.chain(optax.clip_by_global_norm(1.0),
                                                  optax.adamw(1e-3)))
    graphdef, state = nnx.split((model, optimizer))

    @jax.jit
    def step(state, x, y):
        model, optimizer = nnx.merge(graphdef, state)
        loss, grads = nnx.value_and_grad(lm_loss)(model, x, y)
        apply_gradients(optimizer, model, grads)
        return nnx.state((model, optimizer)), loss

    for _ in range(3):
        state, loss = step(state, x, y)
    loss.block_until_ready()
    start = time.perf_counter()
    for _ in range(steps):
        state, loss = step(state, x, y)
    loss.block_until_ready()
    wall_ms = (time.perf_counter() - start) / steps * 1e3

    with tempfile.TemporaryDirectory() as trace_dir:
        jax.profiler.start_trace(trace_dir)
        for _ in range(steps):
            state, loss = step(state, x, y)
        loss.block_until_ready()
        jax.profiler.stop_trace()
        path = sorted(Path(trace_dir).rglob("*.xplane.pb"))[-1]
        profile = ProfileData.from_file(str(path))
    per_kind: collections.Counter = collections.Counter()
    for plane in profile.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_XLAEigen"):      # XLA's worker threads
                continue
            for event in line.events:
                if event.name.startswith(("ThunkExecutor", "SlinkyThreadPool", "end:")):
                    continue                                  # wrappers and waits, not work
                per_kind[re.sub(r"\.\d+$", "", event.name)] += event.duration_ns
    total = sum(per_kind.values()) / steps / 1e6
    label = "control: nnx.Linear with jax.lax.dot_general" if plain_linear else "the course's GPT"
    print(f"\n1{'b' if plain_linear else 'a'}. {label}")
    print(f"   step of {config.param_count():,} parameters, batch 32 x 64 tokens: "
          f"{wall_ms:.1f} ms wall per step (mean of {steps} untraced steps), "
          f"{2048 / wall_ms * 1e3:,.0f} tokens/s")
    print(f"   compiled operations, thread time per step summed over XLA's threads "
          f"({steps} traced steps): {total:.1f} ms")
    print(f"   {'kind':34s} {'ms/step':>8s} {'share':>6s}")
    for kind, ns in per_kind.most_common(14):
        ms = ns / steps / 1e6
        print(f"   {kind:34s} {ms:8.2f} {ms / total:6.1%}")
    hlo = step.lower(state, x, y).compile().as_text()
    broadcasts = re.findall(r"%wrapped_broadcast[.\d]* = f32\[([\d,]+)\]", hlo)
    print(f"   materialised broadcasts (wrapped_broadcast) in the compiled step: "
          f"{len(broadcasts)}, shapes {sorted(set(broadcasts))}")


def time_products(rounds: int, calls: int) -> None:
    """Part 2: the block's products alone, JAX vs PyTorch, alternating rounds."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    try:
        import torch
    except ImportError:
        torch = None
    rng = np.random.default_rng(0)
    n = 2048                                                  # tokens per step
    shapes = {"qkv 128->384": (128, 384), "proj 128->128": (128, 128),
              "fc 128->512": (128, 512), "fc_out 512->128": (512, 128)}
    pieces = {}
    for name, (k, m) in shapes.items():
        x = rng.standard_normal((n, k), dtype=np.float32)
        g = rng.standard_normal((n, m), dtype=np.float32)
        w = rng.standard_normal((k, m), dtype=np.float32)
        xj, gj, wj = jnp.asarray(x), jnp.asarray(g), jnp.asarray(w)
        forms = {"forward x@W": (jax.jit(lambda x, w: x @ w), (xj, wj)),
                 "input grad g@W.T": (jax.jit(lambda g, w: g @ w.T), (gj, wj)),
                 "weight grad x.T@g": (jax.jit(lambda x, g: x.T @ g), (xj, gj))}
        for form, (fn, args) in forms.items():
            fn(*args).block_until_ready()
            pieces[(name, form, "jax")] = (lambda fn=fn, args=args: fn(*args).block_until_ready())
        if torch is not None:
            xt, gt, wt = (torch.from_numpy(a) for a in (x, g, w))
            pieces[(name, "forward x@W", "torch")] = lambda xt=xt, wt=wt: xt @ wt
            pieces[(name, "input grad g@W.T", "torch")] = lambda gt=gt, wt=wt: gt @ wt.T
            pieces[(name, "weight grad x.T@g", "torch")] = lambda xt=xt, gt=gt: xt.T @ gt
    times = collections.defaultdict(list)
    for _ in range(rounds):
        for framework in ("jax", "torch"):           # one framework's pieces, then the other's
            for key, piece in pieces.items():
                if key[2] != framework:
                    continue
                start = time.perf_counter()
                for _ in range(calls):
                    piece()
                times[key].append((time.perf_counter() - start) / calls * 1e3)
            time.sleep(0.5)   # let the framework's idle worker threads stop spinning first
    print(f"\n2. products alone ({n} tokens), median ms per call over {rounds} alternating "
          f"rounds of {calls} calls" + ("" if torch else "; PyTorch not installed"))
    print(f"   {'layer':16s} {'form':18s} {'JAX':>7s} {'PyTorch':>8s} {'JAX/PyTorch':>11s}")
    for name in shapes:
        for form in ("forward x@W", "input grad g@W.T", "weight grad x.T@g"):
            ours = statistics.median(times[(name, form, "jax")])
            theirs = statistics.median(times[(name, form, "torch")]) if torch else float("nan")
            print(f"   {name:16s} {form:18s} {ours:7.3f} {theirs:8.3f} {ours / theirs:11.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10, help="steps timed and traced (10)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds, part 2 (5)")
    parser.add_argument("--calls", type=int, default=30, help="calls per piece per round (30)")
    args = parser.parse_args(argv)
    if TRACE_FLAG not in os.environ.get("XLA_FLAGS", ""):      # before JAX starts its backend
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + TRACE_FLAG).strip()
    import lmcourse  # noqa: F401  (adds the course's CPU flag, as the notebooks run)

    vers = _env.versions(("jax", "jaxlib", "flax", "optax", "torch", "numpy"))
    _env.print_environment(vers, _env.machine())
    print(f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    trace_step(args.steps)
    trace_step(args.steps, plain_linear=True)
    time_products(args.rounds, args.calls)
    print(f"\nload average at end: {_env.format_load(_env.load_average())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
