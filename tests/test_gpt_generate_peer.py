"""The PyTorch peer's key–value cache (``benchmarks/gpt_train_speed.py``) and its greedy decoder
(``benchmarks/gpt_generate_speed.py``) compute what the course's JAX GPT computes.

With the same weights (a small GPT briefly trained on the Shakespeare training works, so that
its greedy text is not one repeated character): the peer's cached logits equal its uncached
ones and the JAX model's to 1e-4, position by position; its cached greedy tokens equal its
uncached ones and ``lmcourse.generation.generate(..., temperature=0.0)``'s (cached and
uncached) for 30 steps on real prompts from the validation works. Skipped when PyTorch is not
installed (it is a benchmark peer, ``benchmarks/requirements.txt``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from flax import nnx  # noqa: E402

import lmcourse  # noqa: E402, F401
from lmcourse.data.shakespeare import load_shakespeare, split_by_work  # noqa: E402
from lmcourse.generation import generate  # noqa: E402
from lmcourse.models.gpt import (  # noqa: E402
    GPT,
    GPTConfig,
    make_lm_optimizer,
    random_windows,
    train_step,
)

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "gpt_generate_speed.py"
_spec = importlib.util.spec_from_file_location("gpt_generate_speed", _PATH)
gen_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen_bench)
train_bench = gen_bench.train_bench

PROMPT, NEW, STEPS = 10, 30, 150


@pytest.fixture(scope="module")
def pair():
    """A small GPT trained ``STEPS`` steps on the training works, its peer, and 2 real prompts."""
    prompts, tok = gen_bench.shakespeare_prompts(2, PROMPT)
    corpus = load_shakespeare()
    ids = tok.encode(corpus.text(split_by_work(corpus)["train"]))
    cfg = GPTConfig("gen peer", vocab_size=tok.vocab_size, d_model=48, layers=2, heads=4,
                    n_ctx=PROMPT + NEW)
    model = GPT(cfg, rngs=nnx.Rngs(0))
    opt = make_lm_optimizer(model, steps=STEPS, peak_lr=3e-3, warmup_steps=10)
    batches = random_windows(ids, 32, cfg.n_ctx, 0)
    for _ in range(STEPS):
        b = next(batches)
        train_step(model, opt, b.x, b.y)
    model.eval()
    peer = train_bench.build_torch_gpt(cfg.vocab_size, cfg.d_model, cfg.layers, cfg.heads,
                                       cfg.n_ctx)
    peer.load_state_dict({k: torch.from_numpy(v)
                          for k, v in train_bench.jax_weights(model).items()})
    return model, peer, prompts, tok


def test_cached_logits_equal_uncached_and_jax(pair):
    model, peer, prompts, _ = pair
    seq = torch.from_numpy(np.array(generate(model, prompts, NEW, temperature=0.0))).long()
    with torch.inference_mode():
        full = peer(seq).numpy()
        logits, cache = peer.extend(seq[:, :PROMPT], peer.init_cache(2))     # prefill
        steps = [logits]
        for t in range(PROMPT, seq.shape[1]):                                 # one token a step
            logits, cache = peer.extend(seq[:, t:t + 1], cache)
            steps.append(logits)
    cached = torch.cat(steps, dim=1).numpy()
    assert cache[2] == seq.shape[1] == model.config.n_ctx
    np.testing.assert_allclose(cached, full, atol=1e-4, rtol=0)
    np.testing.assert_allclose(full, np.asarray(model(seq.numpy().astype(np.int32))),
                               atol=1e-4, rtol=0)
    # the check can fail: a cache missing one position (PROMPT: zeros, never written) differs
    with torch.inference_mode():
        _, c = peer.extend(seq[:, :PROMPT], peer.init_cache(2))
        skipped, _ = peer.extend(seq[:, PROMPT + 1:PROMPT + 2], (c[0], c[1], c[2] + 1))
    assert np.abs(skipped[:, 0].numpy() - full[:, PROMPT + 1]).max() > 1e-3


def test_greedy_tokens_agree(pair):
    model, peer, prompts, tok = pair
    x = torch.from_numpy(prompts)
    cached = gen_bench.torch_generate(peer, x, NEW, use_cache=True).numpy()
    uncached = gen_bench.torch_generate(peer, x, NEW, use_cache=False).numpy()
    jax_cached = generate(model, prompts, NEW, temperature=0.0, use_cache=True)
    jax_uncached = generate(model, prompts, NEW, temperature=0.0, use_cache=False)
    assert cached.shape == (2, PROMPT + NEW)
    np.testing.assert_array_equal(cached[:, :PROMPT], prompts)
    np.testing.assert_array_equal(cached, uncached)
    np.testing.assert_array_equal(cached, jax_cached)
    np.testing.assert_array_equal(cached, jax_uncached)
    for row in cached[:, PROMPT:]:                        # a text, not one repeated character
        assert len(set(row.tolist())) >= 3, tok.decode(row)


def test_sdpa_peer_cache_agrees(pair):
    """The peer with PyTorch's fused attention (``attention="sdpa"``) decodes the same tokens."""
    model, peer, prompts, _ = pair
    cfg = model.config
    fused = train_bench.build_torch_gpt(cfg.vocab_size, cfg.d_model, cfg.layers, cfg.heads,
                                        cfg.n_ctx, attention="sdpa")
    fused.load_state_dict(peer.state_dict())
    x = torch.from_numpy(prompts)
    np.testing.assert_array_equal(gen_bench.torch_generate(fused, x, NEW).numpy(),
                                  gen_bench.torch_generate(peer, x, NEW, use_cache=False).numpy())


def test_prompts_are_real_text(pair):
    _, _, prompts, tok = pair
    text = tok.decode(prompts[0])
    assert prompts.shape == (2, PROMPT) and sum(c.isalpha() for c in text) >= 3
    assert not np.array_equal(prompts[0], prompts[1])


def test_bad_arguments(pair):
    _, peer, prompts, _ = pair
    x = torch.from_numpy(prompts)
    with pytest.raises(ValueError, match="exceeds the context"):
        gen_bench.torch_generate(peer, x, NEW + 1)
    with pytest.raises(ValueError, match="exceed the context"):
        peer.extend(x, (*peer.init_cache(2)[:2], NEW + 1))
    with pytest.raises(ValueError, match="batch size"):
        peer.extend(x, peer.init_cache(3))
    with pytest.raises(ValueError, match="vocabulary|\\[0, "):
        gen_bench.torch_generate(peer, x + 1000, 3)
    with pytest.raises(ValueError, match="non-empty"):
        gen_bench.torch_generate(peer, x[:, :0], 3)
    with pytest.raises(ValueError, match="max_new_tokens"):
        gen_bench.torch_generate(peer, x, -1)
    with pytest.raises(ValueError, match="PROMPT:TOTAL"):
        gen_bench.parse_lengths("16-64", 64)
    with pytest.raises(ValueError, match="prompt < total"):
        gen_bench.parse_lengths("16:128", 64)
    assert gen_bench.default_lengths(64) == [(8, 32), (16, 64)]
    assert gen_bench.default_lengths(256) == [(16, 64), (64, 256)]
