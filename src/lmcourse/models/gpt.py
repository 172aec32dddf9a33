"""A GPT (decoder-only Transformer, GPT-2 layout) in Flax NNX, with a key–value cache.

Used in chapters: 07, 11.

Source: Radford et al. (2019), *Language Models are Unsupervised Multitask Learners*, §2.3
(GPT-2: layer normalisation moved to the input of each sub-block, "pre-LN", an extra LayerNorm
after the last block, residual projections initialised with a 1/√(2L) scale); Vaswani et al.
(2017) eq. 1 and §3.2.2 for the attention itself (:func:`lmcourse.models.attention.
scaled_dot_product_attention`); the layout of Hugging Face ``GPT2LMHeadModel`` and of Karpathy's
nanoGPT ``model.py`` (fused query/key/value projection with biases, MLP ``d -> 4d -> d`` with
GELU, output matrix tied to the token embedding).

Shapes: ``B`` batch, ``T`` tokens of the call, ``S`` cache length (= ``n_ctx``), ``d`` width,
``h`` heads, ``d_k = d / h``, ``V`` vocabulary. Token ids are integers in ``[0, V)``.

The parameter count of a built model equals :func:`lmcourse.param_count.gpt_param_count` of its
:class:`~lmcourse.param_count.GPTConfig` (tested).

Causality: position ``t`` attends to positions ``<= t`` only, so the logits at ``t`` do not
depend on tokens after ``t`` (tested), and one forward pass on ``T`` tokens trains ``T``
next-token predictions at once.

Key–value cache: :meth:`GPT.init_cache` gives empty per-layer key and value buffers of length
``n_ctx``; :meth:`GPT.extend` runs ``T`` new tokens at positions ``cache.length ...``, writes
their keys and values into the buffers and attends over everything cached so far. Prefill is
``extend`` on the prompt, a decode step is ``extend`` on one token; the logits equal the uncached
model's to float32 rounding (tested to 1e-5).

Bad input (checked at the public boundary, since JAX would clamp an id silently): a token id
outside ``[0, V)`` (values are checked when concrete; inside ``jit`` only the shapes are), a
sequence longer than ``n_ctx`` or a cache overflow, a dropout rate outside ``[0, 1]``, a config
that is not a :class:`~lmcourse.param_count.GPTConfig`: each raises ``ValueError`` with the fix.

CPU speed: every ``nnx.Linear`` here computes its product on the ``B*T`` tokens as one matrix
(:func:`lmcourse.models.common.flat_dot_general`): the same values, a weight gradient that XLA:CPU
computes without a transposed copy; 1.09-1.37x the training speed per round on 2 CPU cores
(``benchmarks/README.md``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from lmcourse.models.attention import scaled_dot_product_attention
from lmcourse.models.common import flat_dot_general
from lmcourse.param_count import GPTConfig
from lmcourse.validation import (
    check_ids,
    check_positive_float,
    check_positive_int,
    check_rate,
    concrete,
)

__all__ = ["GPT", "GPTConfig", "KVCache", "SHAKESPEARE_CHAR", "TokenBatch", "causal_mask",
           "check_token_ids", "evaluate_lm", "lm_loss", "make_lm_optimizer", "random_windows",
           "train_step"]

#: Chapter 07's character-level pretraining recipes, one per scale; ``notebooks/07_gpt.ipynb``
#: and ``tools/gpt_contiguous.py`` both read them (one source, so the two cannot drift apart).
#: ``model``: the :class:`GPTConfig` sizes; ``dropout``: the model's dropout rate; ``steps``,
#: ``batch`` (windows of ``n_ctx`` tokens), ``peak_lr``, ``warmup`` (steps): AdamW with linear
#: warm-up and cosine decay to ``peak_lr / 10``, as :func:`make_lm_optimizer`.
#: "full" is nanoGPT's ``config/train_shakespeare_char.py`` (Karpathy): 6 layers, 6 heads,
#: 384 wide, block size 256, dropout 0.2, batch 64, learning rate 1e-3 decayed to 1e-4 over 5,000
#: iterations, 100 warm-up iterations, beta2 0.99; unlike nanoGPT (``bias=False``, weight decay
#: on 2-D tensors only, tiny-shakespeare's 65 characters), our GPT has biases, AdamW decays every
#: parameter, and the vocabulary is our corpus's. "quick" is a small GPT that beats the bigram
#: baseline clearly in about a minute on 2 CPU cores.
SHAKESPEARE_CHAR: dict[str, dict] = {
    "quick": {"model": dict(d_model=64, layers=2, heads=4, n_ctx=64), "dropout": 0.0,
              "steps": 800, "batch": 32, "peak_lr": 1e-2, "warmup": 30},
    "full": {"model": dict(d_model=384, layers=6, heads=6, n_ctx=256), "dropout": 0.2,
             "steps": 5000, "batch": 64, "peak_lr": 1e-3, "warmup": 100},
}

_INIT_STD = 0.02   # GPT-2 / nanoGPT: N(0, 0.02) for every weight matrix and embedding


def causal_mask(length: int) -> jax.Array:
    """Boolean ``(length, length)`` lower-triangular mask: ``mask[t, s] = s <= t``.

    Row ``t`` says which positions the query at ``t`` may attend to (itself and the past).

    Raises:
        ValueError: ``length`` is not a positive integer.
    """
    n = check_positive_int("length", length)
    return jnp.tril(jnp.ones((n, n), dtype=bool))


class KVCache(NamedTuple):
    """Keys and values of the tokens seen so far, for every layer (a JAX pytree).

    One array per layer, not one stacked ``(layers, ...)`` array: a decode step then reads and
    writes each layer's buffer as it is, where a stacked array would be sliced (copied) per layer
    and stacked again (copied) every step (measured together with the cache's donation in
    :func:`lmcourse.generation.generate`: ``benchmarks/README.md``, ``gpt_generate_speed.py``).

    Attributes:
        keys: tuple of ``layers`` float arrays ``(B, h, S, d_k)``; positions ``>= length`` hold
            zeros (masked).
        values: tuple of ``layers`` float arrays ``(B, h, S, d_k)``.
        length: int32 scalar array, the number of positions filled (the next token's position).
    """

    keys: tuple[jax.Array, ...]
    values: tuple[jax.Array, ...]
    length: jax.Array


class CausalSelfAttention(nnx.Module):
    """Multi-head causal self-attention with a fused ``d -> 3d`` query/key/value projection.

    Parameters: ``d*3d + 3d`` (fused projection) ``+ d*d + d`` (output projection) = 4(d² + d).

    Args:
        d_model: width ``d``; num_heads: ``h`` (divides ``d``); layers: the model's number of
            blocks ``L`` (scales the output projection's initialisation by 1/√(2L), GPT-2 §2.3).
        dropout_rate: dropout on the attention output (training only).

    Raises:
        ValueError: a size is not a positive integer, ``d_model % num_heads != 0``, or
            ``dropout_rate`` is outside ``[0, 1]``.
    """

    def __init__(self, d_model: int, num_heads: int, layers: int, *, rngs: nnx.Rngs,
                 dropout_rate: float = 0.0):
        d = check_positive_int("d_model", d_model)
        h = check_positive_int("num_heads", num_heads)
        if d % h:
            raise ValueError(f"d_model={d} is not divisible by num_heads={h}; choose heads among "
                             f"the divisors of d_model")
        self.num_heads = h
        init = nnx.initializers.normal(_INIT_STD)
        proj_init = nnx.initializers.normal(_INIT_STD / math.sqrt(2 * layers))
        self.qkv = nnx.Linear(d, 3 * d, kernel_init=init, dot_general=flat_dot_general, rngs=rngs)
        self.proj = nnx.Linear(d, d, kernel_init=proj_init, dot_general=flat_dot_general,
                               rngs=rngs)
        self.dropout = nnx.Dropout(check_rate("dropout_rate", dropout_rate), rngs=rngs)

    def _heads(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """``(B, T, d)`` → q, k, v each ``(B, h, T, d_k)``."""
        b, t, _ = x.shape
        qkv = self.qkv(x).reshape(b, t, 3, self.num_heads, -1)
        q, k, v = (qkv[:, :, i].transpose(0, 2, 1, 3) for i in range(3))
        return q, k, v

    def _merge(self, heads: jax.Array) -> jax.Array:
        """``(B, h, T, d_k)`` → output projection of ``(B, T, d)``."""
        b, h, t, dk = heads.shape
        return self.dropout(self.proj(heads.transpose(0, 2, 1, 3).reshape(b, t, h * dk)))

    def __call__(self, x: jax.Array, *, return_weights: bool = False):
        """Causal self-attention over ``x`` ``(B, T, d)`` → ``(B, T, d)`` (and weights ``(B, h, T, T)``)."""
        q, k, v = self._heads(x)
        out, weights = scaled_dot_product_attention(q, k, v, causal_mask(x.shape[1]))
        y = self._merge(out)
        return (y, weights) if return_weights else y

    def extend(self, x: jax.Array, keys: jax.Array, values: jax.Array, start: jax.Array
               ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Attention of ``T`` new tokens at positions ``start ... start+T-1`` over the cache.

        Args:
            x: ``(B, T, d)``; keys, values: this layer's cache ``(B, h, S, d_k)``;
            start: int32 scalar, the number of positions already cached.

        Returns:
            ``(y (B, T, d), keys, values)`` with the new keys and values written in.
        """
        q, k, v = self._heads(x)
        keys = jax.lax.dynamic_update_slice(keys, k.astype(keys.dtype), (0, 0, start, 0))
        values = jax.lax.dynamic_update_slice(values, v.astype(values.dtype), (0, 0, start, 0))
        q_pos = start + jnp.arange(x.shape[1])
        mask = jnp.arange(keys.shape[2])[None, :] <= q_pos[:, None]        # (T, S)
        out, _ = scaled_dot_product_attention(q, keys, values, mask)
        return self._merge(out), keys, values


class Block(nnx.Module):
    """One pre-LN decoder block (GPT-2 §2.3): x ← x + Attn(LN(x)); x ← x + MLP(LN(x)).

    MLP(x) = Dropout(GELU(x W_1 + b_1) W_2 + b_2) with the tanh-approximate GELU of GPT-2.
    Parameters: 4(d² + d) + (d f + f + f d + d) + 2·2d.

    Raises:
        ValueError: as :class:`CausalSelfAttention`, or ``d_ff`` / ``layer_norm_eps`` invalid.
    """

    def __init__(self, d_model: int, num_heads: int, d_ff: int, layers: int, *, rngs: nnx.Rngs,
                 dropout_rate: float = 0.0, layer_norm_eps: float = 1e-5):
        d_ff = check_positive_int("d_ff", d_ff)
        eps = check_positive_float("layer_norm_eps", layer_norm_eps)
        init = nnx.initializers.normal(_INIT_STD)
        self.ln1 = nnx.LayerNorm(d_model, epsilon=eps, rngs=rngs)
        self.attn = CausalSelfAttention(d_model, num_heads, layers, rngs=rngs,
                                        dropout_rate=dropout_rate)
        self.ln2 = nnx.LayerNorm(d_model, epsilon=eps, rngs=rngs)
        self.fc = nnx.Linear(d_model, d_ff, kernel_init=init, dot_general=flat_dot_general,
                             rngs=rngs)
        self.fc_out = nnx.Linear(d_ff, d_model, rngs=rngs, dot_general=flat_dot_general,
                                 kernel_init=nnx.initializers.normal(_INIT_STD / math.sqrt(2 * layers)))
        self.dropout = nnx.Dropout(dropout_rate, rngs=rngs)

    def mlp(self, x: jax.Array) -> jax.Array:
        """``(B, T, d)`` → ``(B, T, d)``."""
        return self.dropout(self.fc_out(jax.nn.gelu(self.fc(x), approximate=True)))

    def __call__(self, x: jax.Array) -> jax.Array:
        """``(B, T, d)`` → ``(B, T, d)``, causal."""
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))

    def extend(self, x, keys, values, start):
        """Cached version of :meth:`__call__`; see :meth:`CausalSelfAttention.extend`."""
        a, keys, values = self.attn.extend(self.ln1(x), keys, values, start)
        x = x + a
        return x + self.mlp(self.ln2(x)), keys, values


class GPT(nnx.Module):
    """A GPT-2-style language model: ids ``(B, T)`` → next-token logits ``(B, T, V)``.

    Token embedding + learned position embedding → dropout → ``L`` pre-LN blocks → final
    LayerNorm → logits = hidden · Eᵀ (the token embedding ``E`` reused as output matrix when
    ``config.tied_embeddings``, else a separate bias-free ``d x V`` matrix).

    Args:
        config: :class:`lmcourse.param_count.GPTConfig` (``vocab_size``, ``d_model``, ``layers``,
            ``heads``, ``n_ctx``, ``d_ff`` = None for 4d, ``tied_embeddings``).
        rngs: ``nnx.Rngs`` (``params`` for the initialisation, ``dropout`` when training with
            dropout).
        dropout_rate: in ``[0, 1]``: embedding, attention-output and MLP dropout (nanoGPT's
            Shakespeare configuration uses 0.2). Active only in ``model.train()`` mode.
        layer_norm_eps: the LayerNorms' ε (GPT-2: 1e-5).

    Raises:
        ValueError: ``config`` is not a ``GPTConfig``, or a size/rate is invalid.
    """

    def __init__(self, config: GPTConfig, *, rngs: nnx.Rngs, dropout_rate: float = 0.0,
                 layer_norm_eps: float = 1e-5):
        if not isinstance(config, GPTConfig):
            raise ValueError(f"config must be a lmcourse.param_count.GPTConfig, got "
                             f"{type(config).__name__}; e.g. GPTConfig('char GPT', vocab_size=85, "
                             f"d_model=128, layers=4, heads=4, n_ctx=128)")
        self.config = config
        self.dropout_rate = check_rate("dropout_rate", dropout_rate)
        d, d_ff = config.d_model, config.d_ff or 4 * config.d_model
        init = nnx.initializers.normal(_INIT_STD)
        self.wte = nnx.Embed(config.vocab_size, d, embedding_init=init, rngs=rngs)
        self.wpe = nnx.Embed(config.n_ctx, d, embedding_init=init, rngs=rngs)
        self.dropout = nnx.Dropout(self.dropout_rate, rngs=rngs)
        self.blocks = nnx.List([Block(d, config.heads, d_ff, config.layers, rngs=rngs,
                                      dropout_rate=self.dropout_rate, layer_norm_eps=layer_norm_eps)
                                for _ in range(config.layers)])
        self.ln_f = nnx.LayerNorm(d, epsilon=layer_norm_eps, rngs=rngs)
        self.head = (None if config.tied_embeddings else
                     nnx.Linear(d, config.vocab_size, use_bias=False, kernel_init=init,
                                dot_general=flat_dot_general, rngs=rngs))

    @property
    def n_ctx(self) -> int:
        """The context length (number of learned positions)."""
        return self.config.n_ctx

    def _logits(self, x: jax.Array) -> jax.Array:
        x = self.ln_f(x)
        return self.wte.attend(x) if self.head is None else self.head(x)

    def __call__(self, ids: jax.Array) -> jax.Array:
        """Next-token logits for every position.

        Args:
            ids: int ``(B, T)`` token ids in ``[0, V)``, ``1 <= T <= n_ctx``.

        Returns:
            float32 ``(B, T, V)``: ``logits[b, t]`` scores the token at ``t + 1`` given ``ids[b, :t+1]``.

        Raises:
            ValueError: ``ids`` is not 2-D, longer than ``n_ctx``, empty, or (when concrete) holds
                an id outside ``[0, V)``.
        """
        check_token_ids(self.config, ids, "ids")
        t = ids.shape[1]
        x = self.dropout(self.wte(ids) + self.wpe(jnp.arange(t)))
        for block in self.blocks:
            x = block(x)
        return self._logits(x)

    def init_cache(self, batch_size: int, dtype=jnp.float32) -> KVCache:
        """An empty cache for ``batch_size`` sequences of up to ``n_ctx`` tokens.

        Memory: ``2 * layers * B * n_ctx * d`` numbers.

        Raises:
            ValueError: ``batch_size`` is not a positive integer.
        """
        b = check_positive_int("batch_size", batch_size)
        c = self.config
        shape = (b, c.heads, c.n_ctx, c.d_model // c.heads)
        return KVCache(tuple(jnp.zeros(shape, dtype) for _ in range(c.layers)),
                       tuple(jnp.zeros(shape, dtype) for _ in range(c.layers)),
                       jnp.zeros((), jnp.int32))

    def extend(self, ids: jax.Array, cache: KVCache) -> tuple[jax.Array, KVCache]:
        """Run ``T`` new tokens through the model using (and filling) the key–value cache.

        Prefill: ``extend(prompt, model.init_cache(B))``; decode step: ``extend(next[:, None], cache)``.

        Args:
            ids: int ``(B, T)``, the tokens at positions ``cache.length ... cache.length + T - 1``.
            cache: a :class:`KVCache` from :meth:`init_cache` or a previous call.

        Returns:
            ``(logits (B, T, V), new cache)`` with ``length`` increased by ``T``.

        Raises:
            ValueError: as :meth:`__call__`, a batch size different from the cache's, or (when
                ``cache.length`` is concrete) ``cache.length + T > n_ctx``: start a new cache on
                the last tokens, or generate with a sliding window (:func:`lmcourse.generation.generate`).
        """
        check_token_ids(self.config, ids, "ids")
        if len(cache.keys) != len(self.blocks) or len(cache.values) != len(self.blocks):
            raise ValueError(f"the cache has {len(cache.keys)} layers of keys and "
                             f"{len(cache.values)} of values, the model {len(self.blocks)}; make "
                             f"it with this model's init_cache")
        if ids.shape[0] != cache.keys[0].shape[0]:
            raise ValueError(f"ids has batch size {ids.shape[0]} but the cache was made for "
                             f"{cache.keys[0].shape[0]}; use model.init_cache({ids.shape[0]})")
        start = concrete(cache.length)
        if start is not None and int(start) + ids.shape[1] > self.n_ctx:
            raise ValueError(f"the cache holds {int(start)} tokens; {ids.shape[1]} more exceed the "
                             f"context n_ctx={self.n_ctx}: start a new cache on the last tokens")
        t = ids.shape[1]
        pos = cache.length + jnp.arange(t)
        x = self.dropout(self.wte(ids) + self.wpe(pos))
        keys, values = [], []
        for i, block in enumerate(self.blocks):
            x, k, v = block.extend(x, cache.keys[i], cache.values[i], cache.length)
            keys.append(k)
            values.append(v)
        new = KVCache(tuple(keys), tuple(values), cache.length + t)
        return self._logits(x), new


def check_token_ids(config: GPTConfig, ids: object, name: str = "ids") -> None:
    """Check a ``(B, T)`` batch of token ids for a model of ``config`` (cheap; NumPy only).

    Shapes are checked always (also on tracers inside ``jit``); values when concrete.

    Raises:
        ValueError: not 2-D, ``T == 0``, ``T > n_ctx``, or an id outside ``[0, vocab_size)``.
    """
    shape = jnp.shape(ids)
    if len(shape) != 2:
        raise ValueError(f"{name} must have shape (B, T), got {shape}; for one sequence use "
                         f"ids[None, :]")
    if shape[1] == 0:
        raise ValueError(f"{name} is empty (T = 0): give at least one token")
    if shape[1] > config.n_ctx:
        raise ValueError(f"{name} has {shape[1]} tokens, more than the context n_ctx="
                         f"{config.n_ctx} (the model has no position embedding beyond it); "
                         f"keep the last {config.n_ctx}: ids[:, -{config.n_ctx}:]")
    values = concrete(ids)
    if values is not None:
        check_ids(name, values, config.vocab_size, size_name="vocab_size",
                  fix="encode the text with the tokenizer the model was trained with")


def lm_loss(model: GPT, x: jax.Array, y: jax.Array, weights: jax.Array | None = None) -> jax.Array:
    """Mean next-token cross-entropy in nats: ``-mean log p(y[b, t] | x[b, :t+1])``.

    Args:
        model: a :class:`GPT`.
        x: int ``(B, T)`` inputs; y: int ``(B, T)`` targets (``x`` shifted by one).
        weights: optional float ``(B, T)`` (e.g. 1 on the target part of a prompt–answer pair,
            0 elsewhere); the mean is weighted (all-zero weights give 0, not NaN).

    Returns:
        float32 scalar, nats per (weighted) token; ``/ log 2`` gives bits per token.

    Raises:
        ValueError: ``x`` and ``y`` (or ``weights``) differ in shape, or as :meth:`GPT.__call__`.
    """
    if jnp.shape(x) != jnp.shape(y) or (weights is not None and jnp.shape(weights) != jnp.shape(y)):
        raise ValueError(f"x {jnp.shape(x)}, y {jnp.shape(y)} and weights must have the same shape")
    values = concrete(y)
    if values is not None:
        check_ids("y", values, model.config.vocab_size, size_name="vocab_size")
    losses = optax.softmax_cross_entropy_with_integer_labels(model(x), y)
    if weights is None:
        return losses.mean()
    return (losses * weights).sum() / jnp.maximum(weights.sum(), 1e-9)


def make_lm_optimizer(model: GPT, *, steps: int, peak_lr: float, warmup_steps: int,
                      weight_decay: float = 0.1, b2: float = 0.99, clip_norm: float = 1.0,
                      end_fraction: float = 0.1) -> nnx.Optimizer:
    """Chapter 07's pretraining optimizer: AdamW, linear warm-up then cosine decay, global-norm clip.

    The learning rate rises linearly from 0 to ``peak_lr`` over ``warmup_steps`` steps, then decays
    along a cosine to ``end_fraction * peak_lr`` at ``steps`` (nanoGPT's ``shakespeare_char``
    recipe: AdamW with ``beta2 = 0.99``, weight decay 0.1, gradients clipped to norm 1.0;
    Loshchilov & Hutter 2019 for AdamW, Loshchilov & Hutter 2017 for the cosine schedule).

    Args:
        model: the :class:`GPT` whose ``nnx.Param`` variables are optimised.
        steps: total optimizer steps (the end of the cosine), ``> warmup_steps``.
        peak_lr: the learning rate after warm-up, > 0.
        warmup_steps: linear warm-up steps, >= 0.
        weight_decay: AdamW's decoupled weight decay, >= 0.
        b2: Adam's second-moment decay in (0, 1).
        clip_norm: the global gradient norm is clipped to this value, > 0.
        end_fraction: final learning rate as a fraction of ``peak_lr``, in [0, 1].

    Returns:
        an ``nnx.Optimizer`` (use it with :func:`train_step`).

    Raises:
        ValueError: a step count, rate or fraction is outside the range above.
    """
    from lmcourse.compat import make_optimizer
    from lmcourse.validation import check_fraction, check_int, check_nonnegative_float

    steps = check_positive_int("steps", steps)
    warmup_steps = check_int("warmup_steps", warmup_steps, 0)
    if warmup_steps >= steps:
        raise ValueError(f"warmup_steps={warmup_steps} must be smaller than steps={steps}")
    peak_lr = check_positive_float("peak_lr", peak_lr)
    b2 = check_positive_float("b2", b2)
    if b2 >= 1:
        raise ValueError(f"b2 must be in (0, 1), got {b2}")
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, peak_lr, warmup_steps=warmup_steps, decay_steps=steps,
        end_value=peak_lr * check_fraction("end_fraction", end_fraction))
    tx = optax.chain(optax.clip_by_global_norm(check_positive_float("clip_norm", clip_norm)),
                     optax.adamw(schedule, b2=b2,
                                 weight_decay=check_nonnegative_float("weight_decay", weight_decay)))
    return make_optimizer(model, tx)


@nnx.jit
def train_step(model: GPT, optimizer: nnx.Optimizer, x: jax.Array, y: jax.Array) -> jax.Array:
    """One optimizer step on :func:`lm_loss`, in place (model and optimizer are updated).

    Args:
        model: a :class:`GPT` (in ``train()`` mode for dropout).
        optimizer: its ``nnx.Optimizer`` (e.g. :func:`make_lm_optimizer`).
        x, y: int32 ``(B, T)`` inputs and next-token targets (a :class:`TokenBatch`).

    Returns:
        float32 scalar: the batch's loss in nats per token *before* the update.

    Raises:
        ValueError: as :func:`lm_loss` (shapes; ids are only shape-checked inside ``jit``).
    """
    from lmcourse.compat import apply_gradients

    loss, grads = nnx.value_and_grad(lm_loss)(model, x, y)
    apply_gradients(optimizer, model, grads)
    return loss


class TokenBatch(NamedTuple):
    """Inputs ``x`` and targets ``y``, int32 ``(B, T)``; ``len`` = number of target tokens."""

    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:   # train_loop counts len(batch): tokens per step
        return int(self.y.size)


def random_windows(ids: np.ndarray, batch_size: int, length: int, rng: np.random.Generator | int):
    """Endless batches of random windows of a token stream (nanoGPT's ``get_batch``).

    Each batch takes ``batch_size`` start positions uniformly in ``[0, N - length - 1]`` and
    returns ``x = ids[s : s+length]``, ``y = ids[s+1 : s+length+1]``.

    Args:
        ids: int 1-D token stream of length ``N > length``.
        batch_size, length: ``B`` and ``T``.
        rng: a NumPy generator or a seed (the batches are reproducible).

    Yields:
        :class:`TokenBatch` of int32 ``(B, T)`` arrays.

    Raises:
        ValueError: ``ids`` not 1-D, or not longer than ``length``, or a size not positive.
    """
    ids = np.asarray(ids)
    b, t = check_positive_int("batch_size", batch_size), check_positive_int("length", length)
    if ids.ndim != 1 or len(ids) <= t:
        raise ValueError(f"ids must be a 1-D stream longer than length={t}, got shape {ids.shape}")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    offsets = np.arange(t + 1)
    while True:
        starts = rng.integers(0, len(ids) - t, size=b)
        w = ids[starts[:, None] + offsets].astype(np.int32)
        yield TokenBatch(w[:, :-1], w[:, 1:])


@nnx.jit
def _summed_loss(model: GPT, x: jax.Array, y: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(model(x), y).sum()


def evaluate_lm(model: GPT, ids: np.ndarray, *, length: int | None = None, batch_size: int = 32,
                max_tokens: int | None = None) -> float:
    """Mean next-token loss (nats per token) on a held-out token stream.

    The stream is cut into consecutive, non-overlapping windows of ``length + 1`` tokens
    (nanoGPT-style evaluation: the first tokens of a window have little context, so this is an
    upper bound on the loss with a sliding window). Every target of every full window counts
    once; a final partial window is dropped. Dropout is off during the call (the model's modes
    are restored afterwards).

    Args:
        model: a :class:`GPT`.
        ids: int 1-D token stream.
        length: window length ``T`` (default and maximum ``n_ctx``).
        batch_size: windows per forward pass (the last batch may be shorter).
        max_tokens: use only the first ``max_tokens`` tokens of ``ids`` (None: all).

    Returns:
        nats per token (Python float); divide by ``log 2`` for bits.

    Raises:
        ValueError: ``ids`` not 1-D, holds fewer than ``length + 1`` tokens, or holds an id
            outside the vocabulary; ``length`` not in ``[1, n_ctx]``.
    """
    from lmcourse.compat import get_modes, set_modes

    t = model.n_ctx if length is None else check_positive_int("length", length)
    if t > model.n_ctx:
        raise ValueError(f"length={t} exceeds the model's context n_ctx={model.n_ctx}")
    ids = np.asarray(ids)
    if max_tokens is not None:
        ids = ids[:check_positive_int("max_tokens", max_tokens)]
    if ids.ndim != 1 or len(ids) < t + 1:
        raise ValueError(f"ids must be a 1-D stream of at least length+1={t + 1} tokens, got "
                         f"shape {ids.shape}")
    check_ids("ids", ids, model.config.vocab_size, size_name="vocab_size")
    n = (len(ids) - 1) // t
    x = ids[:n * t].reshape(n, t).astype(np.int32)
    y = ids[1:n * t + 1].reshape(n, t).astype(np.int32)
    modes = get_modes(model)
    model.eval()
    try:
        total = sum(float(_summed_loss(model, x[i:i + batch_size], y[i:i + batch_size]))
                    for i in range(0, n, check_positive_int("batch_size", batch_size)))
    finally:
        set_modes(modes)
    return total / y.size
