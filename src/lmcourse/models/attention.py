"""Attention and the Transformer encoder block, small and readable, in Flax NNX.

Used in chapters: 05; imported by ``lmcourse.models.bert``, ``lmcourse.models.gpt``,
``lmcourse.models.seq2seq``.

Source: Vaswani et al. (2017), *Attention Is All You Need*, eq. 1 (scaled dot-product
attention), §3.2.2 (multi-head attention) and §3.1 (the encoder layer: a residual connection
around each sub-layer followed by layer normalisation, "post-LN", as BERT also does).

Shapes use ``B`` batch, ``L`` query length, ``S`` key length, ``d`` model width, ``h`` heads,
``d_k = d / h`` head width. Masks are boolean, ``True`` where a query may attend to a key.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lmcourse.validation import check_positive_float, check_positive_int, check_rate


def scaled_dot_product_attention(q: jax.Array, k: jax.Array, v: jax.Array,
                                 mask: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """softmax(Q Kᵀ / √d_k) V (Vaswani et al. 2017, eq. 1), with an optional mask.

    Args:
        q: queries, shape ``(..., L, d_k)``, float.
        k: keys, shape ``(..., S, d_k)``.
        v: values, shape ``(..., S, d_v)``.
        mask: boolean, broadcastable to ``(..., L, S)``; ``False`` entries get weight exactly 0
            (their score is replaced by the dtype's most negative number before the softmax).

    Returns:
        ``(output, weights)``: output ``(..., L, d_v)``; weights ``(..., L, S)``, each row sums to 1.
        A query whose keys are all masked gets uniform weights (no NaN).

    Raises:
        ValueError: ``q`` and ``k`` differ in width, ``k`` and ``v`` in length, or ``mask`` does
            not broadcast to ``(..., L, S)``.
    """
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k must have the same last axis d_k, got q {q.shape} and "
                         f"k {k.shape}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"k and v must have the same length S (axis -2), got k {k.shape} and "
                         f"v {v.shape}")
    if mask is not None:
        scores_shape = (*np.broadcast_shapes(q.shape[:-2], k.shape[:-2]), q.shape[-2], k.shape[-2])
        _check_mask_shape(mask.shape, scores_shape, "(..., L, S)")
    d_k = q.shape[-1]
    scores = jnp.einsum("...ld,...sd->...ls", q, k) / jnp.sqrt(jnp.asarray(d_k, q.dtype))
    if mask is not None:
        scores = jnp.where(mask, scores, jnp.finfo(scores.dtype).min)
    weights = jax.nn.softmax(scores, axis=-1)
    return jnp.einsum("...ls,...sd->...ld", weights, v), weights


def _check_mask_shape(mask_shape: tuple[int, ...], target: tuple[int, ...], named: str, *,
                      same_rank: bool = False) -> None:
    """Raise ValueError unless a mask of ``mask_shape`` broadcasts to ``target`` unchanged (and,
    with ``same_rank``, has as many axes: a ``(B, S)`` mask would otherwise broadcast silently
    against ``(L, S)`` whenever ``B == L``)."""
    try:
        ok = np.broadcast_shapes(tuple(mask_shape), tuple(target)) == tuple(target)
    except ValueError:
        ok = False
    if not ok or (same_rank and len(mask_shape) != len(target)):
        raise ValueError(
            f"mask of shape {tuple(mask_shape)} does not broadcast to the attention scores "
            f"{named} = {tuple(target)}; for a (B, S) padding mask of 1s and 0s use "
            f"padding_mask(attention_mask), which gives (B, 1, 1, S)")


def padding_mask(attention_mask: jax.Array) -> jax.Array:
    """Turn a key padding mask ``(B, S)`` (1 = real token, 0 = padding) into ``(B, 1, 1, S)`` bool.

    The result broadcasts over heads ``h`` and queries ``L`` in :func:`scaled_dot_product_attention`.

    Raises:
        ValueError: ``attention_mask`` is not two-dimensional ``(B, S)``.
    """
    if jnp.ndim(attention_mask) != 2:
        raise ValueError(f"attention_mask must have shape (B, S), got {jnp.shape(attention_mask)}; "
                         "for a single sequence add the batch axis: mask[None, :]")
    return jnp.asarray(attention_mask).astype(bool)[:, None, None, :]


class MultiHeadAttention(nnx.Module):
    """Multi-head self-attention (Vaswani et al. 2017, §3.2.2): h heads of width d/h in parallel.

    MultiHead(X) = Concat(head_1, …, head_h) W_O, head_i = Attention(X W_Q^i, X W_K^i, X W_V^i).
    The four projections are ``(d, d)`` dense layers with biases (as in BERT); parameters
    4·(d² + d).

    Args:
        d_model: model width ``d`` (positive); num_heads: ``h`` (positive, divides ``d``).

    Raises:
        ValueError: a size is not a positive integer, or ``d_model`` is not divisible by
            ``num_heads``.
    """

    def __init__(self, d_model: int, num_heads: int, *, rngs: nnx.Rngs):
        d_model = check_positive_int("d_model", d_model)
        num_heads = check_positive_int("num_heads", num_heads)
        if d_model % num_heads:
            raise ValueError(f"d_model={d_model} is not divisible by num_heads={num_heads}; "
                             f"choose num_heads among the divisors of d_model "
                             f"(each head has width d_model / num_heads)")
        self.d_model = d_model
        self.num_heads = num_heads
        self.query = nnx.Linear(d_model, d_model, rngs=rngs)
        self.key = nnx.Linear(d_model, d_model, rngs=rngs)
        self.value = nnx.Linear(d_model, d_model, rngs=rngs)
        self.out = nnx.Linear(d_model, d_model, rngs=rngs)

    def _split(self, x: jax.Array) -> jax.Array:
        """(B, L, d) → (B, h, L, d_k)."""
        b, length, d = x.shape
        return x.reshape(b, length, self.num_heads, d // self.num_heads).transpose(0, 2, 1, 3)

    def __call__(self, x: jax.Array, mask: jax.Array | None = None, *,
                 return_weights: bool = False):
        """Self-attention over ``x`` of shape ``(B, L, d)``.

        Args:
            x: input sequence ``(B, L, d)``.
            mask: boolean with 4 axes, broadcastable to ``(B, h, L, L)``, e.g.
                :func:`padding_mask` ``(B, 1, 1, L)``.
            return_weights: also return the attention weights ``(B, h, L, L)``.

        Returns:
            ``(B, L, d)``, or ``((B, L, d), (B, h, L, L))`` with ``return_weights``.

        Raises:
            ValueError: ``x`` is not ``(B, L, d_model)``, or ``mask`` does not broadcast to
                ``(B, h, L, L)``.
        """
        if x.ndim != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"x must have shape (B, L, d_model={self.d_model}), got {x.shape}")
        if mask is not None:
            b, length = x.shape[:2]
            _check_mask_shape(jnp.shape(mask), (b, self.num_heads, length, length),
                              "(B, h, L, L)", same_rank=True)
        q, k, v = (self._split(f(x)) for f in (self.query, self.key, self.value))
        heads, weights = scaled_dot_product_attention(q, k, v, mask)
        b, h, length, d_k = heads.shape
        y = self.out(heads.transpose(0, 2, 1, 3).reshape(b, length, h * d_k))
        return (y, weights) if return_weights else y


class EncoderBlock(nnx.Module):
    """One Transformer encoder layer, post-LN (Vaswani et al. 2017 §3.1; BERT):

    x ← LayerNorm(x + Dropout(MultiHead(x)));  x ← LayerNorm(x + Dropout(FFN(x))),
    FFN(x) = GELU(x W_1 + b_1) W_2 + b_2 with the exact (erf) GELU, as BERT uses.

    ``gelu_approximate`` is a plain (static) attribute: set it to ``True`` to use the tanh
    approximation of GELU (Hendrycks & Gimpel 2016, arXiv:1606.08415, §2). Changing it on a built
    block changes the module's graph, so a function compiled with ``nnx.jit`` recompiles.

    Args:
        d_model, num_heads: as :class:`MultiHeadAttention`; d_ff: FFN width (positive).
        dropout_rate: probability in ``[0, 1]`` of dropping a unit of each sub-layer's output
            (BERT: 0.1 in training; 0 = no dropout, the default; 1 drops everything).
        layer_norm_eps: the LayerNorms' ε, finite and > 0 (BERT: 1e-12).
        gelu_approximate: ``False`` (default) for the exact GELU x·Φ(x), ``True`` for the tanh
            approximation.

    Raises:
        ValueError: a size is not a positive integer, ``d_model % num_heads != 0``,
            ``dropout_rate`` is outside ``[0, 1]`` or NaN, ``layer_norm_eps`` is not > 0.
        TypeError: ``gelu_approximate`` is not a bool.
    """

    def __init__(self, d_model: int, num_heads: int, d_ff: int, *, rngs: nnx.Rngs,
                 dropout_rate: float = 0.0, layer_norm_eps: float = 1e-12,
                 gelu_approximate: bool = False):
        d_ff = check_positive_int("d_ff", d_ff)
        if not isinstance(gelu_approximate, bool):
            raise TypeError(f"gelu_approximate must be a bool, got {gelu_approximate!r}")
        self.gelu_approximate = gelu_approximate
        dropout_rate = check_rate("dropout_rate", dropout_rate)
        layer_norm_eps = check_positive_float("layer_norm_eps", layer_norm_eps)
        self.attention = MultiHeadAttention(d_model, num_heads, rngs=rngs)
        self.norm1 = nnx.LayerNorm(d_model, epsilon=layer_norm_eps, rngs=rngs)
        self.ff_in = nnx.Linear(d_model, d_ff, rngs=rngs)
        self.ff_out = nnx.Linear(d_ff, d_model, rngs=rngs)
        self.norm2 = nnx.LayerNorm(d_model, epsilon=layer_norm_eps, rngs=rngs)
        self.dropout = nnx.Dropout(dropout_rate, rngs=rngs)

    def __call__(self, x: jax.Array, mask: jax.Array | None = None, *,
                 return_weights: bool = False):
        """``x`` ``(B, L, d)`` → ``(B, L, d)`` (and the weights ``(B, h, L, L)`` if asked)."""
        attended, weights = self.attention(x, mask, return_weights=True)
        x = self.norm1(x + self.dropout(attended))
        hidden = jax.nn.gelu(self.ff_in(x), approximate=bool(self.gelu_approximate))
        x = self.norm2(x + self.dropout(self.ff_out(hidden)))
        return (x, weights) if return_weights else x
