"""Attention and the Transformer encoder block, small and readable, in Flax NNX.

Source: Vaswani et al. (2017), *Attention Is All You Need*, eq. 1 (scaled dot-product
attention), §3.2.2 (multi-head attention) and §3.1 (the encoder layer: a residual connection
around each sub-layer followed by layer normalisation, "post-LN", as BERT also does).

Shapes use ``B`` batch, ``L`` query length, ``S`` key length, ``d`` model width, ``h`` heads,
``d_k = d / h`` head width. Masks are boolean, ``True`` where a query may attend to a key.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


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
    """
    d_k = q.shape[-1]
    scores = jnp.einsum("...ld,...sd->...ls", q, k) / jnp.sqrt(jnp.asarray(d_k, q.dtype))
    if mask is not None:
        scores = jnp.where(mask, scores, jnp.finfo(scores.dtype).min)
    weights = jax.nn.softmax(scores, axis=-1)
    return jnp.einsum("...ls,...sd->...ld", weights, v), weights


def padding_mask(attention_mask: jax.Array) -> jax.Array:
    """Turn a key padding mask ``(B, S)`` (1 = real token, 0 = padding) into ``(B, 1, 1, S)`` bool.

    The result broadcasts over heads ``h`` and queries ``L`` in :func:`scaled_dot_product_attention`.
    """
    return attention_mask.astype(bool)[:, None, None, :]


class MultiHeadAttention(nnx.Module):
    """Multi-head self-attention (Vaswani et al. 2017, §3.2.2): h heads of width d/h in parallel.

    MultiHead(X) = Concat(head_1, …, head_h) W_O, head_i = Attention(X W_Q^i, X W_K^i, X W_V^i).
    The four projections are ``(d, d)`` dense layers with biases (as in BERT); parameters
    4·(d² + d).
    """

    def __init__(self, d_model: int, num_heads: int, *, rngs: nnx.Rngs):
        if d_model % num_heads:
            raise ValueError(f"d_model={d_model} is not divisible by num_heads={num_heads}")
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
            mask: boolean, broadcastable to ``(B, h, L, L)``, e.g. :func:`padding_mask`.
            return_weights: also return the attention weights ``(B, h, L, L)``.

        Returns:
            ``(B, L, d)``, or ``((B, L, d), (B, h, L, L))`` with ``return_weights``.
        """
        q, k, v = (self._split(f(x)) for f in (self.query, self.key, self.value))
        heads, weights = scaled_dot_product_attention(q, k, v, mask)
        b, h, length, d_k = heads.shape
        y = self.out(heads.transpose(0, 2, 1, 3).reshape(b, length, h * d_k))
        return (y, weights) if return_weights else y


class EncoderBlock(nnx.Module):
    """One Transformer encoder layer, post-LN (Vaswani et al. 2017 §3.1; BERT):

    x ← LayerNorm(x + Dropout(MultiHead(x)));  x ← LayerNorm(x + Dropout(FFN(x))),
    FFN(x) = GELU(x W_1 + b_1) W_2 + b_2 with the exact (erf) GELU, as BERT uses.
    """

    def __init__(self, d_model: int, num_heads: int, d_ff: int, *, rngs: nnx.Rngs,
                 dropout_rate: float = 0.0, layer_norm_eps: float = 1e-12):
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
        hidden = jax.nn.gelu(self.ff_in(x), approximate=False)
        x = self.norm2(x + self.dropout(self.ff_out(hidden)))
        return (x, weights) if return_weights else x
