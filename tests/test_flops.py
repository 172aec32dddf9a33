"""FLOP and byte formulas of lmcourse.flops against XLA's own analysis of the compiled step."""

from __future__ import annotations

import functools

import jax.numpy as jnp
import pytest
from flax import nnx

from lmcourse.flops import (
    activation_bytes,
    adam_fp32_bytes,
    compile_train_step,
    gpt_forward_flops,
    gpt_train_flops,
    kaplan_forward_flops_per_token,
    kaplan_train_flops,
    mixed_precision_adam_bytes,
    model_flops_utilization,
    non_embedding_params,
    training_argument_bytes,
    tree_bytes,
    xla_flops,
    xla_memory,
)
from lmcourse.models.gpt import GPT, make_lm_optimizer, train_step
from lmcourse.param_count import GPTConfig

CONFIGS = {"small": (GPTConfig("a", vocab_size=50, d_model=128, layers=1, heads=4, n_ctx=32), 8),
           "two-layer": (GPTConfig("b", vocab_size=85, d_model=128, layers=2, heads=8, n_ctx=64), 8)}


@functools.cache
def _compiled(name: str):
    config, batch = CONFIGS[name]
    model = GPT(config, rngs=nnx.Rngs(0))
    optimizer = make_lm_optimizer(model, steps=10, peak_lr=1e-3, warmup_steps=1)
    x = jnp.zeros((batch, config.n_ctx), jnp.int32)
    return compile_train_step(train_step, model, optimizer, x, x)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_formula_matches_xla_flops_within_5_percent(name):
    config, batch = CONFIGS[name]
    compiled, _ = _compiled(name)
    formula, xla = gpt_train_flops(config, batch), xla_flops(compiled)
    # XLA also counts biases, softmax, LayerNorm, GELU, the loss and Adam: a little more, never less
    assert formula < xla < 1.05 * formula, (formula, xla)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_argument_bytes_equal_parameters_adam_and_batch(name):
    config, batch = CONFIGS[name]
    compiled, state = _compiled(name)
    memory = xla_memory(compiled)
    parts = training_argument_bytes(config.param_count(), batch_size=batch, seq_len=config.n_ctx)
    scalars = tree_bytes(state) - parts["parameters"] - parts["adam_moments"]
    assert 0 <= scalars < 256, scalars                 # step counters and random-number state
    assert memory["arguments"] == sum(parts.values()) + scalars
    assert parts["adam_moments"] == 2 * parts["parameters"] == 8 * config.param_count()


def test_pieces_sum_and_hand_count():
    config = GPTConfig("c", vocab_size=10, d_model=8, layers=2, heads=2, n_ctx=4)
    parts = gpt_forward_flops(config, batch_size=3, seq_len=4)
    bt = 3 * 4
    assert parts["qkv"] == 2 * 2 * bt * 8 * 24
    assert parts["attn_scores"] == parts["attn_values"] == 2 * 2 * 3 * 4 * 4 * 8
    assert parts["mlp"] == 2 * 2 * bt * 8 * 32 * 2
    assert parts["logits"] == 2 * bt * 8 * 10
    assert gpt_train_flops(config, 3, 4) == 3 * sum(parts.values())
    assert gpt_forward_flops(config, 3, 2)["attn_scores"] == parts["attn_scores"] // 4   # T² term
    n = non_embedding_params(config)
    assert n + (10 + 4) * 8 == config.param_count()
    assert kaplan_forward_flops_per_token(config) == 2 * n + 2 * 2 * 4 * 8
    assert kaplan_train_flops(config, 1000) == 6 * n * 1000


def test_byte_formulas():
    assert sum(mixed_precision_adam_bytes(7_000_000_000).values()) == 16 * 7_000_000_000
    assert sum(adam_fp32_bytes(10).values()) == 160
    mp = mixed_precision_adam_bytes(1)
    assert mp["fp32_master_parameters"] + mp["fp32_momentum"] + mp["fp32_variance"] == 12   # K
    config = GPTConfig("c", vocab_size=10, d_model=8, layers=2, heads=2, n_ctx=4)
    act = activation_bytes(config, batch_size=3)
    assert act["blocks"] == 2 * 3 * 4 * (16 * 8 + 2 * 4) * 4
    assert act["head"] == 3 * 4 * (8 + 10) * 4
    assert activation_bytes(config, 3, bytes_per_value=2)["blocks"] == act["blocks"] // 2


def test_bad_input_raises():
    config = GPTConfig("c", vocab_size=10, d_model=8, layers=2, heads=2, n_ctx=4)
    with pytest.raises(ValueError, match="n_ctx"):
        gpt_forward_flops(config, 2, seq_len=5)
    with pytest.raises(ValueError, match="batch_size"):
        gpt_train_flops(config, 0)
    with pytest.raises(ValueError, match="GPTConfig"):
        gpt_train_flops({"d_model": 8}, 2)
    with pytest.raises(ValueError, match="tokens"):
        kaplan_train_flops(config, -1)
    with pytest.raises(ValueError, match="n_params"):
        mixed_precision_adam_bytes(0)
    with pytest.raises(ValueError, match="seconds_per_step"):
        model_flops_utilization(1e9, 0.0, 1e12)
    with pytest.raises(ValueError, match="step must be callable"):
        compile_train_step(None, None, None, None, None)
    assert model_flops_utilization(1e9, 0.5, 4e9) == pytest.approx(0.5)
