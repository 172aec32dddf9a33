"""CPU training speed of the chapter-07 GPT: the course's Flax NNX model against a PyTorch peer.

The PyTorch peer (:func:`build_torch_gpt`) is this file's own code and mirrors
``lmcourse.models.gpt.GPT`` layer for layer: token + learned position embeddings, pre-LN blocks
(LayerNorm ε = 1e-5, with biases), causal self-attention with a fused ``d -> 3d`` query/key/value
projection (scores ``QKᵀ/√d_k``, masked entries set to the float32 minimum, softmax), MLP
``d -> 4d -> d`` with the tanh-approximate GELU of GPT-2, a final LayerNorm, and logits
``h · Eᵀ`` with the output matrix tied to the token embedding. It starts from *the JAX model's
initial weights* (copied in; ``--torch-init own`` draws GPT-2's N(0, 0.02) scheme in PyTorch
instead), so the first losses agree to float32 rounding.

Both frameworks train on the same batches: random windows of the character-tokenised
Shakespeare training works (``lmcourse.data.shakespeare.split_by_work``, ``CharTokenizer``),
drawn by ``lmcourse.models.gpt.random_windows`` from one seeded NumPy generator in a preparation
process and handed to every variant. Same optimiser: global-norm clipping at 1.0, AdamW
(β = 0.9, 0.99, ε = 1e-8, weight decay 0.1 on matrices and embeddings only) with a linear
warm-up from 0 and cosine decay to 0 (``optax.warmup_cosine_decay_schedule``; PyTorch sets the
same learning rate, :func:`learning_rate`, before each step).

Variants (each in its own subprocess; frameworks alternate within a round, the order rotates):

* ``jax-course``: ``GPT`` + ``lm_loss`` + optax through ``nnx.Optimizer``, one ``nnx.jit`` step.
* ``jax-nnx-linear``: the control for the course's linear layers: the same step with every
  ``nnx.Linear`` of the GPT computing its product with plain ``jax.lax.dot_general`` on
  ``(B, T, d)`` arrays instead of ``lmcourse.models.common.flat_dot_general`` on the ``B*T``
  tokens as one matrix (the course's GPT before that change). Same values.
* ``jax-dp2`` (``jax-dp4``): the same model, loss and optimiser, with the batch split across two
  (four) XLA CPU devices (``jax_num_cpu_devices``; ``lmcourse.sharding.make_sharded_train_step``
  with the ``"dp"`` layout of chapter 11: parameters replicated, gradients all-reduced, a plain
  ``jax.jit`` of the state pytree). Same numbers up to float32 summation order.
* ``jax-dp1``: the control for ``jax-dp2``: the same sharded ``jax.jit`` step on a one-device
  mesh, so that the split itself is measured apart from ``nnx.jit`` versus ``jax.jit``.
* ``torch-eager``: the peer in eager mode, ``torch.set_num_threads(2)`` (``--torch-threads``).
* ``torch-sdpa``: the same with ``F.scaled_dot_product_attention(is_causal=True)`` (PyTorch's
  fused attention kernel) instead of the explicit softmax: what a PyTorch user would write.
* ``torch-compile``: ``torch.compile(model, dynamic=False)`` of the explicit peer (not in the
  default set: compiling takes minutes on 2 loaded cores).

Round ``r`` uses seed ``--seed + r`` for the initial weights and the batches, for every
variant. So the rounds give the speed's spread *and* the seed-to-seed spread of the loss; the
loss curves of two frameworks "agree within noise" when, for every seed, the mean loss of the
last 50 steps differs between them by less than the spread (max - min) of that mean over seeds.

Usage::

    pip install -r benchmarks/requirements.txt     # torch 2.13.0 (CPU)
    python benchmarks/gpt_train_speed.py           # 3 rounds x 2 variants
    python benchmarks/gpt_train_speed.py --steps 300 --rounds 3 --json out.json
    python benchmarks/gpt_train_speed.py --variants jax-course,torch-eager,torch-sdpa,torch-compile
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

if str(Path(__file__).resolve().parent) not in sys.path:  # _env.py, also when loaded by path
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import _env  # noqa: E402
from _controls import use_plain_linear  # noqa: E402
from _dp import make_dp_step  # noqa: E402

DEFAULT_VARIANTS = ["jax-course", "torch-eager"]
ALL_VARIANTS = ["jax-course", "jax-nnx-linear", "jax-dp1", "jax-dp2", "jax-dp4", "torch-eager", "torch-sdpa", "torch-compile"]
BASELINE = "torch-eager"
TORCH_THREADS = 2
LAYER_NORM_EPS = 1e-5
BETAS = (0.9, 0.99)
ADAM_EPS = 1e-8
CLIP_NORM = 1.0
LAST = 50          # the loss-agreement window (last steps)
FINAL = 20         # the "final loss" column (last steps)
PACKAGES = ("jax", "jaxlib", "flax", "optax", "torch", "numpy")


# --------------------------------------------------------------------------------------------
# Shared pieces (no JAX, no torch at import time: the test imports this file)
# --------------------------------------------------------------------------------------------

def learning_rate(step: int, peak: float, warmup: int, total: int) -> float:
    """``optax.warmup_cosine_decay_schedule(0, peak, warmup, total, end_value=0)`` at ``step``.

    Linear from 0 to ``peak`` over ``warmup`` steps, then half a cosine down to 0 at ``total``;
    ``step`` counts the updates already made (0 for the first). Equal to optax's to 1e-7 (tested).
    """
    if warmup > 0 and step < warmup:
        return peak * step / warmup
    decay = max(total - warmup, 1)
    frac = min(max(step - warmup, 0), decay) / decay
    return 0.5 * peak * (1.0 + math.cos(math.pi * frac))


def torch_names(layers: int) -> list[str]:
    """The PyTorch peer's parameter names (the keys of :func:`jax_weights`)."""
    names = ["wte.weight", "wpe.weight"]
    for i in range(layers):
        p = f"blocks.{i}."
        names += [p + n for n in ("ln1.weight", "ln1.bias", "qkv.weight", "qkv.bias", "proj.weight",
                                  "proj.bias", "ln2.weight", "ln2.bias", "fc.weight", "fc.bias",
                                  "fc_out.weight", "fc_out.bias")]
    return names + ["ln_f.weight", "ln_f.bias"]


def jax_weights(model) -> dict[str, np.ndarray]:
    """The weights of a ``lmcourse.models.gpt.GPT`` (tied output) as the PyTorch peer's state dict.

    ``nnx.Linear`` kernels ``(in, out)`` become ``nn.Linear`` weights ``(out, in)``; embeddings
    and LayerNorm scale/bias keep their shapes. Returns float32 NumPy arrays keyed by
    :func:`torch_names`.

    Raises:
        ValueError: the model has an untied output matrix (the peer ties it).
    """
    if model.head is not None:
        raise ValueError("the PyTorch peer ties the output matrix to the token embedding; build "
                         "the GPT with GPTConfig(..., tied_embeddings=True)")
    arr = lambda v: np.array(v[...], dtype=np.float32)  # noqa: E731  (a writable copy)
    out = {"wte.weight": arr(model.wte.embedding), "wpe.weight": arr(model.wpe.embedding)}
    for i, b in enumerate(model.blocks):
        p = f"blocks.{i}."
        for name, ln in (("ln1", b.ln1), ("ln2", b.ln2)):
            out[p + name + ".weight"], out[p + name + ".bias"] = arr(ln.scale), arr(ln.bias)
        for name, lin in (("qkv", b.attn.qkv), ("proj", b.attn.proj), ("fc", b.fc),
                          ("fc_out", b.fc_out)):
            out[p + name + ".weight"] = arr(lin.kernel).T.copy()
            out[p + name + ".bias"] = arr(lin.bias)
    out["ln_f.weight"], out["ln_f.bias"] = arr(model.ln_f.scale), arr(model.ln_f.bias)
    return out


def build_torch_gpt(vocab_size: int, d_model: int, layers: int, heads: int, n_ctx: int, *,
                    attention: str = "explicit", layer_norm_eps: float = LAYER_NORM_EPS):
    """The PyTorch peer of ``lmcourse.models.gpt.GPT`` (GPT-2 layout, tied output, no dropout).

    Args:
        vocab_size, d_model, layers, heads, n_ctx: as ``GPTConfig`` (``d_ff = 4 d``).
        attention: ``"explicit"`` (softmax of masked ``QKᵀ/√d_k``, the course's formula) or
            ``"sdpa"`` (``torch.nn.functional.scaled_dot_product_attention(is_causal=True)``).
        layer_norm_eps: the LayerNorms' ε.

    Returns:
        an ``nn.Module``: ids int64 ``(B, T)``, ``T <= n_ctx`` → logits float32 ``(B, T, V)``,
        initialised like GPT-2 (N(0, 0.02); residual projections N(0, 0.02/√(2L)); zero biases).
        Its key–value cache (the PyTorch peer of ``GPT.init_cache`` / ``GPT.extend``):
        ``model.init_cache(B)`` gives ``(keys, values, 0)``, preallocated float32 buffers
        ``(layers, B, heads, n_ctx, d_k)`` and the number of positions filled;
        ``model.extend(ids, cache)`` runs ``T`` new tokens at positions ``length ...
        length + T - 1``, writes their keys/values into the buffers (in place) and returns
        ``(logits (B, T, V), (keys, values, length + T))``; attention reads only the first
        ``length + T`` cached positions. ``extend`` raises ``ValueError`` past ``n_ctx``.

    Raises:
        ValueError: ``d_model`` not divisible by ``heads``, or an unknown ``attention``.
    """
    import torch
    from torch import nn
    from torch.nn import functional as F  # noqa: N812

    if d_model % heads:
        raise ValueError(f"d_model={d_model} is not divisible by heads={heads}")
    if attention not in ("explicit", "sdpa"):
        raise ValueError(f"attention must be 'explicit' or 'sdpa', got {attention!r}")

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1 = nn.LayerNorm(d_model, eps=layer_norm_eps)
            self.qkv = nn.Linear(d_model, 3 * d_model)
            self.proj = nn.Linear(d_model, d_model)
            self.ln2 = nn.LayerNorm(d_model, eps=layer_norm_eps)
            self.fc = nn.Linear(d_model, 4 * d_model)
            self.fc_out = nn.Linear(4 * d_model, d_model)

        def heads_of(self, x):
            b, t, _ = x.shape
            return self.qkv(x).view(b, t, 3, heads, -1).permute(2, 0, 3, 1, 4).unbind(0)

        def attend(self, q, k, v, mask, causal):
            if attention == "sdpa":
                if causal:
                    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
                else:
                    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            else:
                scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
                scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
                out = torch.softmax(scores, dim=-1) @ v
            b, _, t, _ = q.shape
            return self.proj(out.transpose(1, 2).reshape(b, t, d_model))

        def attn(self, x, mask):
            q, k, v = self.heads_of(x)
            return self.attend(q, k, v, mask, causal=True)

        def mlp(self, x):
            return self.fc_out(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))

        def forward(self, x, mask):
            x = x + self.attn(self.ln1(x), mask)
            return x + self.mlp(x)

        def extend(self, x, keys, values, start, mask):
            # keys, values: this layer's buffers (B, h, n_ctx, d_k); mask (T, start + T)
            q, k, v = self.heads_of(self.ln1(x))
            end = start + x.shape[1]
            keys[:, :, start:end] = k
            values[:, :, start:end] = v
            x = x + self.attend(q, keys[:, :, :end], values[:, :, :end], mask, causal=False)
            return x + self.mlp(x)

    class TorchGPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(vocab_size, d_model)
            self.wpe = nn.Embedding(n_ctx, d_model)
            self.blocks = nn.ModuleList(Block() for _ in range(layers))
            self.ln_f = nn.LayerNorm(d_model, eps=layer_norm_eps)
            self.register_buffer("mask", torch.tril(torch.ones(n_ctx, n_ctx, dtype=torch.bool)),
                                 persistent=False)
            for name, p in self.named_parameters():
                if name.endswith("bias"):
                    nn.init.zeros_(p)
                elif p.ndim == 2:
                    std = 0.02 / math.sqrt(2 * layers) if name.endswith(("proj.weight",
                                                                         "fc_out.weight")) else 0.02
                    nn.init.normal_(p, 0.0, std)

        def forward(self, ids):
            t = ids.shape[1]
            x = self.wte(ids) + self.wpe(torch.arange(t, device=ids.device))
            mask = self.mask[:t, :t]
            for block in self.blocks:
                x = block(x, mask)
            return self.ln_f(x) @ self.wte.weight.T

        def init_cache(self, batch_size: int):
            shape = (layers, batch_size, heads, n_ctx, d_model // heads)
            return (torch.zeros(shape, device=self.wte.weight.device),
                    torch.zeros(shape, device=self.wte.weight.device), 0)

        def extend(self, ids, cache):
            keys, values, start = cache
            b, t = ids.shape
            if b != keys.shape[1]:
                raise ValueError(f"ids has batch size {b} but the cache was made for "
                                 f"{keys.shape[1]}; use model.init_cache({b})")
            if start + t > n_ctx:
                raise ValueError(f"the cache holds {start} tokens; {t} more exceed the context "
                                 f"n_ctx={n_ctx}: start a new cache on the last tokens")
            x = self.wte(ids) + self.wpe(torch.arange(start, start + t, device=ids.device))
            mask = self.mask[start:start + t, :start + t]
            for i, block in enumerate(self.blocks):
                x = block.extend(x, keys[i], values[i], start, mask)
            return self.ln_f(x) @ self.wte.weight.T, (keys, values, start + t)

    return TorchGPT()


# --------------------------------------------------------------------------------------------
# Preparation (one JAX process): initial weights and batches per seed
# --------------------------------------------------------------------------------------------

def _config(args, vocab_size: int):
    from lmcourse.param_count import GPTConfig

    return GPTConfig("bench char GPT", vocab_size=vocab_size, d_model=args.d_model,
                     layers=args.layers, heads=args.heads, n_ctx=args.context)


def prepare(args: argparse.Namespace, seeds: list[int], out_dir: Path) -> dict:
    """Write ``seed<k>.npz`` (initial weights under the peer's names, batches, vocab) per seed."""
    from flax import nnx

    import lmcourse  # noqa: F401
    from lmcourse.bpe import CharTokenizer
    from lmcourse.data.shakespeare import load_shakespeare, split_by_work
    from lmcourse.models.gpt import GPT, random_windows

    corpus = load_shakespeare()
    text = corpus.text(split_by_work(corpus)["train"])
    tok = CharTokenizer.from_text(corpus.text())
    ids = tok.encode(text)
    cfg = _config(args, tok.vocab_size)
    total = args.warmup + args.steps
    for seed in seeds:
        model = GPT(cfg, rngs=nnx.Rngs(seed))
        gen = random_windows(ids, args.batch, args.context, np.random.default_rng(seed))
        batches = []
        for _ in range(total):
            b = next(gen)
            batches.append(np.concatenate([b.x, b.y[:, -1:]], axis=1))
        np.savez(out_dir / f"seed{seed}.npz", batches=np.stack(batches).astype(np.int32),
                 vocab_size=tok.vocab_size, **jax_weights(model))
    return {"vocab_size": tok.vocab_size, "train_tokens": int(ids.size),
            "params": cfg.param_count()}


# --------------------------------------------------------------------------------------------
# Workers (one variant per process)
# --------------------------------------------------------------------------------------------

def _run_jax(args: argparse.Namespace, data, devices: int | None = None,
             plain_linear: bool = False) -> dict:
    """``devices=None``: the course's ``nnx.jit`` step; ``n``: the sharded step on ``n`` CPU devices.

    ``plain_linear``: every ``nnx.Linear`` of the GPT uses ``jax.lax.dot_general`` (the control).
    """
    t_start = time.perf_counter()
    import jax
    if devices is not None:   # before anything computes: chapter 11's simulated CPU devices
        from lmcourse.sharding import use_cpu_devices
        use_cpu_devices(devices)
    import optax
    from flax import nnx

    import lmcourse  # noqa: F401  (the course's CPU flag, as the notebooks run)
    from lmcourse.compat import apply_gradients, make_optimizer
    from lmcourse.models import count_params
    from lmcourse.models.gpt import GPT, lm_loss

    total = args.warmup + args.steps
    model = GPT(_config(args, int(data["vocab_size"])), rngs=nnx.Rngs(args.seed))
    if plain_linear:
        use_plain_linear(model)
    start = jax_weights(model)
    if any(not np.array_equal(start[k], data[k]) for k in start):
        raise RuntimeError("the JAX model's initial weights differ from the prepared ones")
    schedule = optax.warmup_cosine_decay_schedule(0.0, args.lr, args.lr_warmup, total)
    decay_mask = lambda params: jax.tree.map(lambda p: p.ndim >= 2, params)  # noqa: E731
    tx = optax.chain(optax.clip_by_global_norm(CLIP_NORM),
                     optax.adamw(schedule, b1=BETAS[0], b2=BETAS[1], eps=ADAM_EPS,
                                 weight_decay=args.weight_decay, mask=decay_mask))
    optimizer = make_optimizer(model, tx)

    batches = data["batches"]
    if devices is None:
        @nnx.jit
        def step(model, optimizer, x, y):
            loss, grads = nnx.value_and_grad(lm_loss)(model, x, y)
            apply_gradients(optimizer, model, grads)
            return loss
    else:   # the same step, the batch split across the CPU devices (chapter 11's data parallel)
        step, dp_state = make_dp_step(model, optimizer, lm_loss, devices)
    losses = []
    t_build = time.perf_counter()
    for i in range(args.warmup):
        losses.append(step(model, optimizer, batches[i, :, :-1], batches[i, :, 1:]))
        losses[-1].block_until_ready()
        if i == 0:
            first_step_s = time.perf_counter() - t_build
    state = (lambda: nnx.state(model)) if devices is None else dp_state
    jax.block_until_ready(state())
    t0, cpu0 = time.perf_counter(), time.process_time()
    for i in range(args.warmup, total):
        losses.append(step(model, optimizer, batches[i, :, :-1], batches[i, :, 1:]))
    jax.block_until_ready((losses[-1], state()))
    train_s, cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
    return {"params": count_params(model), "first_step_s": first_step_s, "train_s": train_s,
            "cores_busy": cpu_s / train_s, "devices": devices,
            "losses": np.asarray(jax.device_get(losses), np.float64).tolist(),
            "startup_s": t_build - t_start, "xla_flags": os.environ.get("XLA_FLAGS", "")}


def _run_torch(variant: str, args: argparse.Namespace, data) -> dict:
    t_start = time.perf_counter()
    import torch
    from torch.nn import functional as F  # noqa: N812

    torch.set_num_threads(args.torch_threads)
    torch.manual_seed(args.seed)
    total = args.warmup + args.steps
    model = build_torch_gpt(int(data["vocab_size"]), args.d_model, args.layers, args.heads,
                            args.context, attention="sdpa" if variant == "torch-sdpa" else "explicit")
    if args.torch_init == "jax":
        model.load_state_dict({k: torch.from_numpy(data[k]) for k in torch_names(args.layers)})
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=0.0, betas=BETAS, eps=ADAM_EPS)
    net = torch.compile(model, dynamic=False) if variant == "torch-compile" else model
    batches = torch.from_numpy(data["batches"].astype(np.int64))
    vocab = int(data["vocab_size"])

    def step(i):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(i, args.lr, args.lr_warmup, total)
        optimizer.zero_grad(set_to_none=True)
        x, y = batches[i, :, :-1], batches[i, :, 1:]
        loss = F.cross_entropy(net(x).reshape(-1, vocab), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP_NORM)
        optimizer.step()
        return loss.detach()

    losses = []
    t_build = time.perf_counter()
    for i in range(args.warmup):
        losses.append(step(i))
        if i == 0:
            first_step_s = time.perf_counter() - t_build
    t0, cpu0 = time.perf_counter(), time.process_time()
    for i in range(args.warmup, total):
        losses.append(step(i))
    train_s, cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
    return {"params": sum(p.numel() for p in model.parameters()), "cores_busy": cpu_s / train_s,
            "threads": torch.get_num_threads(), "first_step_s": first_step_s,
            "train_s": train_s, "losses": torch.stack(losses).double().tolist(),
            "startup_s": t_build - t_start}


def worker(variant: str, args: argparse.Namespace) -> None:
    """Run one variant and write its measurements (or its error) as JSON to ``args.result``."""
    try:
        with np.load(args.data) as f:
            data = {k: f[k] for k in f.files}
        if variant in ("jax-course", "jax-nnx-linear"):
            result = _run_jax(args, data, plain_linear=variant == "jax-nnx-linear")
        elif variant.startswith("jax-dp"):
            result = _run_jax(args, data, devices=int(variant.removeprefix("jax-dp")))
        else:
            result = _run_torch(variant, args, data)
        result["train_tok_s"] = args.steps * args.batch * args.context / result["train_s"]
        result["final_loss"] = statistics.fmean(result["losses"][-FINAL:])
        result[f"last{LAST}_loss"] = statistics.fmean(result["losses"][-LAST:])
    except Exception as exc:  # reported, e.g. a torch.compile without a working C++ compiler
        result = _env.error_record(exc)
    result["peak_rss_mb"] = _env.peak_rss_mb()
    Path(args.result).write_text(json.dumps(result))


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------

def _common_args(args: argparse.Namespace) -> list[str]:
    return ["--steps", str(args.steps), "--warmup", str(args.warmup), "--batch", str(args.batch),
            "--context", str(args.context), "--layers", str(args.layers), "--heads",
            str(args.heads), "--d-model", str(args.d_model), "--lr", str(args.lr),
            "--lr-warmup", str(args.lr_warmup), "--weight-decay", str(args.weight_decay),
            "--torch-init", args.torch_init, "--torch-threads", str(args.torch_threads)]


def _spawn(variant: str, args: argparse.Namespace, seed: int, data: Path, result: Path) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", variant, "--seed", str(seed),
           "--data", str(data), "--result", str(result), *_common_args(args)]
    return _env.spawn_worker(cmd, dict(os.environ, PYTHONUNBUFFERED="1"), result, args.timeout)


def summarize(variants: list[str], runs: dict[str, list[dict]]) -> dict[str, dict]:
    """Medians over the successful rounds, ratios to ``BASELINE``, and the loss agreement."""
    def lastk(ok: list[dict]) -> list[float]:
        return [r[f"last{LAST}_loss"] for r in ok]

    summary = _env.summarize_rounds(
        variants, runs,
        [("train_tok_s", "spread"), ("first_step_s", "median"), ("final_loss", "median"),
         (f"last{LAST}_loss_by_round", lastk),
         ("seed_spread", lambda ok: max(lastk(ok)) - min(lastk(ok)) if len(ok) > 1 else None),
         ("first_loss_by_round", lambda ok: [r["losses"][0] for r in ok]),
         ("peak_rss_mb", "max"), ("params", "first"), ("cores_busy", "median")],
        baseline=BASELINE, ratios=[("train_tok_s", "train_vs_torch_eager")])
    base = summary.get(BASELINE, {})
    for v, s in summary.items():
        if v == BASELINE or "train_tok_s" not in s or "train_tok_s" not in base:
            continue
        pairs = [(a, b) for a, b in zip(runs[v], runs[BASELINE], strict=True)
                 if "error" not in a and "error" not in b]
        diffs = [abs(a[f"last{LAST}_loss"] - b[f"last{LAST}_loss"]) for a, b in pairs]
        curve = [float(np.max(np.abs(np.subtract(a["losses"], b["losses"])))) for a, b in pairs]
        spreads = [x for x in (s["seed_spread"], base["seed_spread"]) if x is not None]
        spread = min(spreads) if spreads else None
        s["vs_torch_eager_loss"] = {
            f"abs_diff_last{LAST}_by_round": diffs, "max_abs_diff_curve_by_round": curve,
            "first_loss_abs_diff_by_round": [abs(a["losses"][0] - b["losses"][0]) for a, b in pairs],
            "seed_spread_smaller_of_the_two": spread,
            "agree_within_seed_spread": None if spread is None else max(diffs) < spread}
    return summary


def print_table(variants: list[str], summary: dict[str, dict]) -> None:
    head = (f"{'variant':<14} {'train tok/s':>11} {'(min-max)':>15} {'x eager':>7} "
            f"{'1st step s':>10} {'loss':>6} {'last-' + str(LAST) + ' by seed':>24} {'peak RSS':>9} "
            f"{'cores busy':>10}")
    print(head)
    print("-" * len(head))
    for v in variants:
        s = summary[v]
        if "train_tok_s" not in s:
            print(f"{v:<14} FAILED: {s['error']}")
            continue
        spread = f"{s['train_tok_s_min']:,.0f}-{s['train_tok_s_max']:,.0f}"
        ratio = s.get("train_vs_torch_eager")
        by_seed = " ".join(f"{x:.4f}" for x in s[f"last{LAST}_loss_by_round"])
        print(f"{v:<14} {s['train_tok_s']:>11,.0f} {spread:>15} "
              f"{'-' if ratio is None else format(ratio, '.2f'):>7} {s['first_step_s']:>10.2f} "
              f"{s['final_loss']:>6.3f} {by_seed:>24} {s['peak_rss_mb']:>6,.0f} MB "
              f"{s['cores_busy']:>10.2f}")
        if "error" in s:
            print(f"{'':<14} ({s['rounds_failed']} round(s) failed: {s['error']})")
    for v in variants:
        agree = summary[v].get("vs_torch_eager_loss")
        if not agree:
            continue
        spread = agree["seed_spread_smaller_of_the_two"]
        print(f"\nloss agreement {v} vs {BASELINE} (same seed, same batches):")
        print("  |first-step loss difference| by seed: "
              + " ".join(f"{x:.2e}" for x in agree["first_loss_abs_diff_by_round"]))
        print(f"  |difference of the last-{LAST}-step means| by seed: "
              + " ".join(f"{x:.2e}" for x in agree[f"abs_diff_last{LAST}_by_round"]))
        print("  largest per-step difference along the curve by seed: "
              + " ".join(f"{x:.2e}" for x in agree["max_abs_diff_curve_by_round"]))
        if spread is not None:
            print(f"  seed-to-seed spread (max - min over seeds) of the last-{LAST} mean: "
                  f"{spread:.5f} -> agree within noise: {agree['agree_within_seed_spread']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200, help="timed training steps (default 200)")
    parser.add_argument("--warmup", type=int, default=5,
                        help="untimed steps first (in the loss curve); the first compiles (default 5)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of all variants; round r uses seed --seed + r (default 3)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--context", type=int, default=64, help="window length T = n_ctx (64)")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (1e-3)")
    parser.add_argument("--lr-warmup", type=int, default=20, help="warm-up steps of the schedule (20)")
    parser.add_argument("--weight-decay", type=float, default=0.1)
    parser.add_argument("--torch-init", choices=("jax", "own"), default="jax",
                        help="PyTorch's initial weights: the JAX model's (default) or its own draw")
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                        help="comma-separated, or 'all' (default: %(default)s; known: "
                             + ",".join(ALL_VARIANTS) + ")")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--torch-threads", type=int, default=TORCH_THREADS,
                        help="PyTorch's threads (2; use 1 under `taskset -c 0`, one core)")
    parser.add_argument("--timeout", type=float, default=900,
                        help="seconds before a variant's process is killed (default 900)")
    parser.add_argument("--json", metavar="PATH", help="also write all results to this JSON file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in ("steps", "warmup", "rounds", "batch", "context", "layers", "heads", "d_model"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.steps + args.warmup < LAST:
        parser.error(f"--steps + --warmup must be at least {LAST} (the loss-agreement window)")
    if args.d_model % args.heads:
        parser.error(f"--d-model {args.d_model} must be divisible by --heads {args.heads}")
    if args.lr <= 0 or args.lr_warmup < 0 or args.weight_decay < 0:
        parser.error("--lr must be positive, --lr-warmup and --weight-decay non-negative")

    if args.worker:
        worker(args.worker, args)
        return 0

    variants = _env.variants_or_exit(parser, args.variants, ALL_VARIANTS)
    # Alternate frameworks within a round: JAX, PyTorch, (JAX,) PyTorch, ...
    order = _env.by_framework(variants, ("jax", "torch"))

    versions, machine = _env.versions(PACKAGES), _env.machine()
    load_start = _env.print_environment(versions, machine)
    seeds = [args.seed + r for r in range(args.rounds)]

    def run_one(v: str, rnd: int) -> dict:
        seed = seeds[rnd]
        r = _spawn(v, args, seed, Path(tmp) / f"seed{seed}.npz", Path(tmp) / f"{v}-{rnd}.json")
        r["round"], r["seed"] = rnd, seed
        msg = r["error"] if "error" in r else (
            f"train {r['train_tok_s']:,.0f} tok/s ({r['cores_busy']:.2f} cores busy), "
            f"first step {r['first_step_s']:.1f} s, "
            f"loss {r['losses'][0]:.4f} -> {r['final_loss']:.4f}, "
            f"RSS {r['peak_rss_mb']:,.0f} MB")
        print(f"  round {rnd + 1}/{args.rounds} (seed {seed}) {v:<14} {msg} "
              f"[{r['process_wall_s']:.0f} s]", flush=True)
        return r

    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        data_info = prepare(args, seeds, Path(tmp))
        print(f"GPT {args.layers} layers x {args.heads} heads x {args.d_model} wide, context "
              f"{args.context}, {data_info['params']:,} parameters, vocabulary "
              f"{data_info['vocab_size']} characters; {data_info['train_tokens']:,} training "
              f"tokens; batch {args.batch} x {args.context} = {args.batch * args.context:,} "
              f"tokens/step; {args.warmup} untimed + {args.steps} timed steps; AdamW peak "
              f"{args.lr:g}, warm-up {args.lr_warmup}, cosine to 0, clip {CLIP_NORM}, "
              f"weight decay {args.weight_decay:g}; torch init: {args.torch_init}; "
              f"{args.rounds} round(s) x {len(order)} variant(s), seeds {seeds} "
              f"[prepared in {time.perf_counter() - t0:.0f} s]\n")
        by_variant = _env.run_rounds(order, args.rounds, run_one)  # start rotated every round
    runs = {v: by_variant[v] for v in variants}
    total_s = time.perf_counter() - t_all
    load_end = _env.load_average()

    summary = summarize(variants, runs)
    print(f"\nmedians over {args.rounds} round(s); ratios to {BASELINE} (same run); loss = mean "
          f"of the last {FINAL} steps (median over seeds)\n")
    print_table(variants, summary)
    print(f"\ntotal {total_s:.0f} s; load average at end: {_env.format_load(load_end)}")

    if args.json:
        settings = {k: v for k, v in vars(args).items()
                    if k not in ("worker", "result", "data", "json")}
        settings.update(order=order, seeds=seeds, torch_threads=args.torch_threads, betas=BETAS,
                        adam_eps=ADAM_EPS, clip_norm=CLIP_NORM, layer_norm_eps=LAYER_NORM_EPS,
                        **data_info)
        _env.write_results(args.json, versions=versions, machine=machine, settings=settings,
                           load_start=load_start, load_end=load_end, total_s=total_s,
                           summary=summary, runs=runs, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
