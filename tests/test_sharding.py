"""Tests of ``lmcourse.sharding`` (chapter 11): layouts, collectives, equality with one device.

The pytest process has already started JAX with one CPU device, so the multi-device checks run
in a fresh subprocess with 8 simulated devices (``jax_num_cpu_devices``). The two-process
``jax.distributed`` check launches ``tools/two_process_train.py`` (three Python processes: about
30 s on an idle 2-core machine, up to 1.5 min under load).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import jax
import pytest
from jax.sharding import PartitionSpec as P

from lmcourse.sharding import (
    count_collectives,
    describe_counts,
    make_mesh,
    param_spec,
    use_cpu_devices,
)

ROOT = Path(__file__).resolve().parents[1]

HLO = """\
HloModule jit_step, entry_computation_layout={(f32[8]{0})->f32[]}
%add.clone (x: f32[], y: f32[]) -> f32[] {
  ROOT %add = f32[] add(f32[] %x, f32[] %y)
}
ENTRY %main (param: f32[8]) -> f32[] {
  %all-gather-start = (f32[1]{0}, f32[8]{0}) all-gather-start(f32[1]{0} %param), dimensions={0}
  %all-gather-done = f32[8]{0} all-gather-done((f32[1]{0}, f32[8]{0}) %all-gather-start)
  %all-reduce.3 = (f32[8]{0}, f32[]) all-reduce(f32[8]{0} %all-gather-done, f32[] %c), to_apply=%add.clone
  %gte = f32[8]{0} get-tuple-element((f32[8]{0}, f32[]) %all-reduce.3), index=0
  %reduce-scatter = f32[1]{0} reduce-scatter(f32[8]{0} %gte), dimensions={0}, to_apply=%add.clone
  %collective-permute.1 = f32[1]{0} collective-permute(f32[1]{0} %reduce-scatter), source_target_pairs={{0,1},{1,0}}
  %all-to-all = f32[8]{0} all-to-all(f32[8]{0} %gte), dimensions={0}
  ROOT %all-reduce.4 = f32[] all-reduce(f32[] %c), to_apply=%add.clone
}
"""


def test_count_collectives_on_a_known_hlo_snippet():
    counts = count_collectives(HLO)
    assert counts == {"all-reduce": 2, "all-gather": 1, "reduce-scatter": 1,
                      "collective-permute": 1, "all-to-all": 1}
    assert describe_counts(counts).startswith("2 all-reduce, 1 all-gather")
    assert count_collectives("ENTRY %m { ROOT %x = f32[] add(f32[] %a, f32[] %b) }") == \
        dict.fromkeys(counts, 0)
    with pytest.raises(ValueError, match="as_text"):
        count_collectives(None)


def test_a_mesh_that_does_not_divide_the_devices_is_refused():
    eight = list(range(8))                 # validation happens before any device is touched
    with pytest.raises(ValueError, match="must divide the 8 device"):
        make_mesh((3,), ("data",), devices=eight)
    with pytest.raises(ValueError, match="must divide the 8 device"):
        make_mesh((4, 4), ("data", "model"), devices=eight)
    with pytest.raises(ValueError, match="distinct names"):
        make_mesh((2, 2), ("data", "data"), devices=eight)
    with pytest.raises(ValueError, match="positive integer"):
        make_mesh((0,), ("data",), devices=eight)
    mesh = make_mesh((1,), ("data",))
    assert dict(mesh.shape) == {"data": 1}


def test_partition_rules():
    fsdp_mesh = SimpleNamespace(shape={"data": 8})
    tp_mesh = SimpleNamespace(shape={"model": 2})
    # FSDP: the largest dimension that 8 divides; none divides -> replicated
    assert param_spec(("wte", "embedding"), (85, 64), "fsdp", fsdp_mesh) == P(None, "data")
    assert param_spec(("fc", "kernel"), (64, 256), "fsdp", fsdp_mesh) == P(None, "data")
    assert param_spec(("fc_out", "kernel"), (256, 64), "fsdp", fsdp_mesh) == P("data", None)
    assert param_spec(("x",), (85,), "fsdp", fsdp_mesh) == P(None)
    assert param_spec(("dp", "kernel"), (64, 256), "dp", fsdp_mesh) == P()
    # Megatron: column-split first matrices, row-split second ones, Adam moments alike
    assert param_spec(("0", "blocks", "0", "fc", "kernel"), (64, 256), "tp", tp_mesh) == P(None, "model")
    assert param_spec(("mu", "blocks", "1", "fc_out", "kernel"), (256, 64), "tp", tp_mesh) == P("model", None)
    assert param_spec(("attn", "qkv", "bias"), (192,), "tp", tp_mesh) == P("model")
    assert param_spec(("attn", "proj", "bias"), (64,), "tp", tp_mesh) == P()
    assert param_spec(("ln1", "scale"), (64,), "tp", tp_mesh) == P()
    with pytest.raises(ValueError, match="cannot be split"):
        param_spec(("fc", "kernel"), (64, 255), "tp", tp_mesh)
    with pytest.raises(ValueError, match="needs mesh axes"):
        param_spec(("fc", "kernel"), (64, 256), "tp", fsdp_mesh)
    with pytest.raises(ValueError, match="unknown strategy"):
        param_spec(("fc", "kernel"), (64, 256), "pipeline", fsdp_mesh)


def test_use_cpu_devices_after_the_backend_started_says_to_restart():
    n = jax.device_count()                  # starts the backend (already started by other tests)
    if jax.default_backend() != "cpu":
        pytest.skip("simulated devices are a CPU feature")
    with pytest.raises(RuntimeError, match="restart"):
        use_cpu_devices(n + 1)


EIGHT_DEVICES = textwrap.dedent("""
    import json
    from lmcourse.sharding import use_cpu_devices
    assert use_cpu_devices(8) == 8
    import jax, numpy as np
    from flax import nnx
    from jax.sharding import NamedSharding
    from lmcourse import sharding as S
    from lmcourse.models.gpt import GPT, GPTConfig, lm_loss, make_lm_optimizer
    cfg = GPTConfig("tiny", vocab_size=40, d_model=32, layers=1, heads=4, n_ctx=16)
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, 40, (2, 8, 16)).astype(np.int32) for _ in range(3)]
    out = {}
    for strategy, shape in (("single", (1,)), ("dp", (8,)), ("fsdp", (8,)), ("tp", (2,))):
        model = GPT(cfg, rngs=nnx.Rngs(0))
        opt = make_lm_optimizer(model, steps=4, peak_lr=1e-2, warmup_steps=1)
        graphdef, state = nnx.split((model, opt))
        mesh = S.make_mesh(shape, S.mesh_axes(strategy))
        sh = S.state_shardings(state, strategy, mesh)
        state = S.place(state, sh)
        bs = NamedSharding(mesh, S.batch_spec(strategy))
        step = S.make_sharded_train_step(graphdef, sh, bs, lm_loss, gather_params=strategy == "fsdp")
        xy = [[jax.device_put(a, bs) for a in b] for b in batches]
        compiled = step.lower(state, *xy[0]).compile()
        losses = []
        for x, y in xy:
            state, loss = compiled(state, x, y)
            losses.append(float(loss))
        out[strategy] = dict(losses=losses,
            measured=compiled.memory_analysis().argument_size_in_bytes,
            formula=S.per_device_bytes((state, *xy[0]), (sh, bs, bs)),
            counts=S.count_collectives(compiled.as_text()))
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def eight_device_runs():
    proc = subprocess.run([sys.executable, "-c", EIGHT_DEVICES], capture_output=True, text=True,
                          timeout=900, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("strategy", ["dp", "fsdp", "tp"])
def test_sharded_training_equals_one_device(eight_device_runs, strategy):
    single, run = eight_device_runs["single"], eight_device_runs[strategy]
    diff = max(abs(a - b) for a, b in zip(run["losses"], single["losses"], strict=True))
    assert diff < 1e-5, (strategy, run["losses"], single["losses"])
    assert run["measured"] == run["formula"], "XLA's per-device argument bytes differ from the layout"


def test_memory_and_collectives_follow_the_strategy(eight_device_runs):
    runs = eight_device_runs
    assert runs["fsdp"]["measured"] < runs["dp"]["measured"] / 6       # state split 8 ways
    assert runs["single"]["measured"] > runs["tp"]["measured"] > runs["fsdp"]["measured"]
    assert runs["dp"]["counts"]["all-reduce"] >= 1 and runs["dp"]["counts"]["all-gather"] == 0
    assert runs["fsdp"]["counts"]["all-gather"] >= 12                  # one per parameter array
    assert runs["tp"]["counts"]["all-reduce"] >= 4                      # 2 forward + 2 backward
    assert sum(runs["single"]["counts"].values()) == 0


def test_two_processes_equal_one_process_takes_about_a_minute():
    """``tools/two_process_train.py``: jax.distributed over two local processes (slow: ~30-90 s)."""
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "two_process_train.py"),
                           "--data", "random", "--steps", "2", "--json"],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["processes"] == 2 and result["devices"] == 2 and result["equal"]
    assert result["max_abs_diff"] < 1e-5
