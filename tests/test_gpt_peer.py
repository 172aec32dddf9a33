"""The PyTorch peer of the chapter-07 GPT in ``benchmarks/gpt_train_speed.py`` is the same function.

Loaded with the JAX model's weights, the peer (explicit attention and PyTorch's fused
``scaled_dot_product_attention``) gives the course's logits to 1e-4 and the same first-step loss
and gradient to 1e-5; its learning-rate schedule equals optax's; a few optimiser steps (clipping,
AdamW with decay on matrices only, warm-up) keep the two losses together. Skipped when PyTorch is
not installed (it is a benchmark peer, ``benchmarks/requirements.txt``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import jax  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

import lmcourse  # noqa: E402, F401
from lmcourse.compat import apply_gradients, make_optimizer  # noqa: E402
from lmcourse.models.gpt import GPT, GPTConfig, lm_loss  # noqa: E402

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "gpt_train_speed.py"
_spec = importlib.util.spec_from_file_location("gpt_train_speed", _PATH)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

CFG = GPTConfig("peer", vocab_size=29, d_model=32, layers=2, heads=4, n_ctx=16)


def _pair(attention: str = "explicit", seed: int = 0):
    model = GPT(CFG, rngs=nnx.Rngs(seed))
    peer = bench.build_torch_gpt(CFG.vocab_size, CFG.d_model, CFG.layers, CFG.heads, CFG.n_ctx,
                                 attention=attention)
    peer.load_state_dict({k: torch.from_numpy(v) for k, v in bench.jax_weights(model).items()})
    return model, peer


def _ids(shape, seed=1):
    return np.random.default_rng(seed).integers(0, CFG.vocab_size, shape).astype(np.int32)


def test_names_cover_the_peer_and_counts_agree():
    model, peer = _pair()
    assert sorted(bench.jax_weights(model)) == sorted(bench.torch_names(CFG.layers))
    assert sorted(dict(peer.named_parameters())) == sorted(bench.torch_names(CFG.layers))
    assert sum(p.numel() for p in peer.parameters()) == CFG.param_count()


@pytest.mark.parametrize("attention", ["explicit", "sdpa"])
def test_same_logits(attention):
    model, peer = _pair(attention)
    x = _ids((4, CFG.n_ctx))
    with torch.no_grad():
        got = peer(torch.from_numpy(x).long()).numpy()
    want = np.asarray(model(x))
    assert got.shape == want.shape == (4, CFG.n_ctx, CFG.vocab_size)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    # a shorter window, and a different model (seed) gives different logits: the check can fail
    np.testing.assert_allclose(peer(torch.from_numpy(x[:, :5]).long()).detach().numpy(),
                               np.asarray(model(x[:, :5])), atol=1e-4, rtol=0)
    other, _ = _pair(attention, seed=3)
    assert np.abs(np.asarray(other(x)) - got).max() > 1e-2


def test_same_first_loss_and_gradient():
    model, peer = _pair()
    batch = _ids((3, CFG.n_ctx + 1), seed=2)
    x, y = batch[:, :-1], batch[:, 1:]
    loss, grads = nnx.value_and_grad(lm_loss)(model, x, y)
    graphdef, _, rest = nnx.split(model, nnx.Param, ...)
    want = bench.jax_weights(nnx.merge(graphdef, grads, rest))
    t_loss = torch.nn.functional.cross_entropy(
        peer(torch.from_numpy(x).long()).reshape(-1, CFG.vocab_size),
        torch.from_numpy(y).long().reshape(-1))
    t_loss.backward()
    assert abs(t_loss.item() - float(loss)) < 1e-5
    for name, p in peer.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), want[name], atol=1e-5, rtol=0, err_msg=name)


def test_schedule_equals_optax():
    sched = optax.warmup_cosine_decay_schedule(0.0, 3e-3, 7, 50)
    for step in range(0, 60):
        assert abs(bench.learning_rate(step, 3e-3, 7, 50) - float(sched(step))) < 1e-7


def test_training_steps_agree():
    """Six steps of each framework's optimiser on one repeated (learnable) batch: losses agree."""
    model, peer = _pair()
    total, peak, warm = 5, 1e-2, 1
    mask = lambda params: jax.tree.map(lambda p: p.ndim >= 2, params)  # noqa: E731
    tx = optax.chain(optax.clip_by_global_norm(bench.CLIP_NORM),
                     optax.adamw(optax.warmup_cosine_decay_schedule(0.0, peak, warm, total),
                                 b1=bench.BETAS[0], b2=bench.BETAS[1], eps=bench.ADAM_EPS,
                                 weight_decay=0.1, mask=mask))
    opt = make_optimizer(model, tx)
    t_opt = torch.optim.AdamW(
        [{"params": [p for p in peer.parameters() if p.ndim >= 2], "weight_decay": 0.1},
         {"params": [p for p in peer.parameters() if p.ndim < 2], "weight_decay": 0.0}],
        lr=0.0, betas=bench.BETAS, eps=bench.ADAM_EPS)
    j_losses, t_losses = [], []
    for i in range(total + 1):
        batch = _ids((4, CFG.n_ctx + 1), seed=10)
        x, y = batch[:, :-1], batch[:, 1:]
        loss, grads = nnx.value_and_grad(lm_loss)(model, x, y)
        apply_gradients(opt, model, grads)
        j_losses.append(float(loss))
        for g in t_opt.param_groups:
            g["lr"] = bench.learning_rate(i, peak, warm, total)
        t_opt.zero_grad()
        t_loss = torch.nn.functional.cross_entropy(
            peer(torch.from_numpy(x).long()).reshape(-1, CFG.vocab_size),
            torch.from_numpy(y).long().reshape(-1))
        t_loss.backward()
        torch.nn.utils.clip_grad_norm_(peer.parameters(), bench.CLIP_NORM)
        t_opt.step()
        t_losses.append(t_loss.item())
    np.testing.assert_allclose(t_losses, j_losses, atol=1e-4, rtol=0)
    assert j_losses[-1] < j_losses[0] - 0.1        # the steps did train


def test_bad_arguments():
    with pytest.raises(ValueError, match="divisible"):
        bench.build_torch_gpt(29, 30, 1, 4, 8)
    with pytest.raises(ValueError, match="attention"):
        bench.build_torch_gpt(29, 32, 1, 4, 8, attention="flash")
    untied = GPT(GPTConfig("u", vocab_size=29, d_model=32, layers=1, heads=4, n_ctx=8,
                           tied_embeddings=False), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="tie"):
        bench.jax_weights(untied)
