"""Train chapter 07's GPT data-parallel over two JAX processes on this machine, and check that
the losses equal a one-process run.

Usage::

    python tools/two_process_train.py                  # Shakespeare characters, 6 steps
    python tools/two_process_train.py --data random --steps 3 --json

The script launches itself twice more as worker processes (``--process-id 0`` and ``1``). Each
worker joins the other through ``jax.distributed.initialize`` (a coordinator on 127.0.0.1, CPU
collectives through Gloo), owns one CPU device, builds the same model from the same seed, and
feeds *its half* of every global batch with ``jax.make_array_from_process_local_data``: the
jitted train step sees one global batch over a 2-device mesh, and XLA all-reduces the gradients
across the processes. The parent runs the same steps in one process on one device with the
whole batch and compares the losses. Exit status 0 when every step's loss agrees to ``--tol``
(default 1e-5), 1 when not, 2 when a worker failed.

This is exactly how a multi-host job runs: one process per host (or per GPU), the same program
everywhere, ``jax.distributed.initialize()`` to find the others (on Cloud TPU and SLURM it needs
no arguments), and each process feeding the data of its own devices. Used in chapter 11.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

BATCH, LENGTH = 16, 32
CONFIG = dict(vocab_size=None, d_model=32, layers=2, heads=4, n_ctx=LENGTH)


def batches(data: str, steps: int):
    """The global batches (int32 ``(BATCH, LENGTH)`` inputs and targets), same in every process."""
    import numpy as np

    if data == "random":
        rng = np.random.default_rng(0)
        ids, vocab = rng.integers(0, 65, size=20_000), 65
    else:
        from lmcourse.bpe import CharTokenizer
        from lmcourse.data.shakespeare import load_shakespeare, split_by_work

        corpus = load_shakespeare()
        text = corpus.text(split_by_work(corpus)["train"])
        tok = CharTokenizer.from_text(text)
        ids, vocab = tok.encode(text[:300_000]), tok.vocab_size
    from lmcourse.models.gpt import random_windows

    stream = random_windows(np.asarray(ids), BATCH, LENGTH, rng=0)
    return vocab, [next(stream) for _ in range(steps)]


def train(data: str, steps: int, process_id: int | None) -> list[float]:
    """Run ``steps`` optimizer steps; ``process_id`` None: one process, one device."""
    import jax
    import numpy as np
    from flax import nnx
    from jax.sharding import NamedSharding

    from lmcourse import sharding
    from lmcourse.models.gpt import GPT, GPTConfig, lm_loss, make_lm_optimizer

    vocab, global_batches = batches(data, steps)
    model = GPT(GPTConfig("two-process", **{**CONFIG, "vocab_size": vocab}), rngs=nnx.Rngs(0))
    optimizer = make_lm_optimizer(model, steps=steps + 1, peak_lr=1e-2, warmup_steps=1)
    graphdef, state = nnx.split((model, optimizer))
    strategy = "single" if process_id is None else "dp"
    mesh = sharding.make_mesh((jax.device_count(),), ("data",))
    shardings = sharding.state_shardings(state, strategy, mesh)
    state = sharding.place(state, shardings)     # replicated: the same values in every process
    batch_sharding = NamedSharding(mesh, sharding.batch_spec(strategy))
    step = sharding.make_sharded_train_step(graphdef, shardings, batch_sharding, lm_loss)
    losses = []
    for batch in global_batches:
        if process_id is None:
            x, y = batch.x, batch.y
        else:                                          # this process's rows of the global batch
            rows = slice(process_id * BATCH // 2, (process_id + 1) * BATCH // 2)
            x, y = (jax.make_array_from_process_local_data(batch_sharding, np.asarray(a[rows]))
                    for a in (batch.x, batch.y))
        state, loss = step(state, x, y)
        losses.append(float(np.asarray(loss.addressable_data(0))))
    return losses


def worker(args: argparse.Namespace) -> None:
    """One of the two processes: join the group, train, print the losses as JSON."""
    import jax

    jax.config.update("jax_num_cpu_devices", 1)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{args.port}", num_processes=2,
                               process_id=args.process_id)
    losses = train(args.data, args.steps, args.process_id)
    print(json.dumps({"process": jax.process_index(), "processes": jax.process_count(),
                      "devices": jax.device_count(), "local_devices": jax.local_device_count(),
                      "losses": losses}), flush=True)
    jax.distributed.shutdown()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    """Launch the two workers, run the one-process reference, compare; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--data", choices=("shakespeare", "random"), default="shakespeare")
    parser.add_argument("--tol", type=float, default=1e-5)
    parser.add_argument("--timeout", type=float, default=300, help="seconds for the workers")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line")
    parser.add_argument("--process-id", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps must be a positive integer, got {args.steps}")
    if args.process_id is not None:
        worker(args)
        return 0
    start, port = time.perf_counter(), free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, str(Path(__file__).resolve()), "--steps", str(args.steps),
               "--data", args.data, "--port", str(port)]
    procs = [subprocess.Popen([*command, "--process-id", str(i)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for i in range(2)]
    import jax

    jax.config.update("jax_num_cpu_devices", 1)
    reference = train(args.data, args.steps, None)             # meanwhile, the one-process run
    results = []
    for i, proc in enumerate(procs):
        try:
            out, err = proc.communicate(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            print(f"worker {i} did not finish within {args.timeout:.0f} s", file=sys.stderr)
            return 2
        if proc.returncode != 0:
            print(f"worker {i} failed (exit {proc.returncode}):\n{err[-3000:]}", file=sys.stderr)
            return 2
        results.append(json.loads(out.strip().splitlines()[-1]))
    diff = max(abs(a - b) for r in results for a, b in zip(r["losses"], reference, strict=True))
    same = diff <= args.tol
    summary = {"processes": results[0]["processes"], "devices": results[0]["devices"],
               "local_devices_per_process": results[0]["local_devices"], "steps": args.steps,
               "data": args.data, "two_process_losses": results[0]["losses"],
               "one_process_losses": reference, "max_abs_diff": diff, "tol": args.tol,
               "equal": same, "seconds": round(time.perf_counter() - start, 1)}
    if args.json:
        print(json.dumps(summary))
    else:
        for key, value in summary.items():
            print(f"{key}: {value}")
        print("EQUAL" if same else f"DIFFERENT: max |difference| {diff:.2e} > {args.tol:g}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
