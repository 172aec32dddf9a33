"""The article's (and TensorFlow's CNN tutorial's) small convolutional network, in Flax NNX.

Conv32 3×3 – MaxPool 2 – Conv64 3×3 – MaxPool 2 – Conv64 3×3 – Flatten – Dense64 – Dense10,
ReLU after every convolution and the hidden dense layer, ``VALID`` padding as in the tutorial:
28×28 → 26 → 13 → 11 → 5 → 3, so 3·3·64 = 576 features reach Dense64; 93,322 parameters for
one input channel. Source: https://www.tensorflow.org/tutorials/images/cnn (for 32×32×3 inputs,
122,570 parameters).

Two CPU speed-ups, both numerically the same operations as ``nnx.max_pool`` and ``nnx.Conv``'s
default ``lax.conv_general_dilated`` (measured and explained in ``benchmarks/README.md``):

* :func:`max_pool_2x2` keeps ``nnx.max_pool``'s forward pass but replaces its backward pass
  (XLA's select-and-scatter, the slowest op of the training step on CPU) by a comparison mask.
* :func:`conv_few_channels` computes, when training, the forward pass of a convolution with few
  input channels (the first layer: one channel) as a sum of nine shifted, broadcast products,
  which XLA fuses into one loop, instead of a convolution call that is slow for one input
  channel; its backward pass is the usual convolution gradient, and inference keeps the
  convolution call.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

#: Largest number of input channels for which :func:`conv_few_channels` uses shifted products.
FEW_CHANNELS = 4


def _select_first_max_grad(x: jax.Array, g: jax.Array) -> jax.Array:
    """Backward pass of 2×2/stride-2 max pooling: ``g`` routed to each window's first maximum.

    ``x`` ``(N, H, W, C)`` is the pool's input and ``g`` ``(N, H//2, W//2, C)`` the cotangent
    of its output. Each window's maximum is recomputed here from ``x`` (comparing with a saved
    output could miss when XLA recomputes ``x`` in another fusion and rounds differently), and
    the window's first maximum in row-major order receives ``g``, as in XLA's
    select-and-scatter, so ties give the same gradient as ``nnx.max_pool``; an odd last
    row/column gets zero.
    """
    n, h, w, c = x.shape
    ho, wo = h // 2, w // 2
    windows = x[:, : 2 * ho, : 2 * wo, :].reshape(n, ho, 2, wo, 2, c)
    corners = [windows[:, :, di, :, dj] for di in range(2) for dj in range(2)]
    top = jnp.maximum(jnp.maximum(corners[0], corners[1]), jnp.maximum(corners[2], corners[3]))
    taken = jnp.zeros(top.shape, dtype=bool)
    parts = []
    for corner in corners:
        first = (corner == top) & ~taken
        taken = taken | first
        parts.append(jnp.where(first, g, jnp.zeros_like(g)))
    rows = [jnp.stack(parts[2 * di:2 * di + 2], axis=3) for di in range(2)]  # (n, ho, wo, 2, c)
    dx = jnp.stack(rows, axis=2).reshape(n, 2 * ho, 2 * wo, c)
    return jnp.pad(dx, ((0, 0), (0, h - 2 * ho), (0, w - 2 * wo), (0, 0)))


@jax.custom_vjp
def max_pool_2x2(x: jax.Array) -> jax.Array:
    """2×2 max pooling with stride 2 and ``VALID`` padding, with a fast backward pass on CPU.

    Forward: exactly ``nnx.max_pool(x, (2, 2), strides=(2, 2))`` (``lax.reduce_window``; an odd
    last row/column is dropped). Backward (a ``jax.custom_vjp``): instead of XLA's
    select-and-scatter, the input is reshaped to ``(N, H/2, 2, W/2, 2, C)`` windows, each
    entry is compared with its window's maximum, and the output gradient goes to the first
    maximum of each window: the same gradient as ``nnx.max_pool``'s, ties included, several times faster on CPU (see
    ``benchmarks/README.md``).

    Args:
        x: ``(N, H, W, C)`` array.

    Returns:
        ``(N, H // 2, W // 2, C)`` array of the same dtype.
    """
    return nnx.max_pool(x, (2, 2), strides=(2, 2))


def _max_pool_2x2_fwd(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    return nnx.max_pool(x, (2, 2), strides=(2, 2)), x


def _max_pool_2x2_bwd(x: jax.Array, g: jax.Array) -> tuple[jax.Array]:
    return (_select_first_max_grad(x, g),)


max_pool_2x2.defvjp(_max_pool_2x2_fwd, _max_pool_2x2_bwd)


def _shifted_products(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """``VALID``, stride-1 NHWC/HWIO convolution as a sum of ``kh·kw·C_in`` broadcast products."""
    kh, kw, c_in, _ = kernel.shape
    out_h, out_w = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    out = None
    for i in range(kh):
        for j in range(kw):
            for c in range(c_in):
                term = x[:, i:i + out_h, j:j + out_w, c:c + 1] * kernel[i, j, c]
                out = term if out is None else out + term
    return out


def _lax_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), "VALID",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


@jax.custom_vjp
def _conv_shifted_when_training(x: jax.Array, kernel: jax.Array) -> jax.Array:
    # Not differentiated (inference): lax.conv, which is faster than shifted products at large
    # batches (batch 1000: the nine full-size partial sums no longer fit in the cache).
    return _lax_conv(x, kernel)


def _cst_fwd(x, kernel):
    # Differentiated (training): the forward pass as shifted products, saving the inputs.
    return _shifted_products(x, kernel), (x, kernel)


def _cst_bwd(res, g):
    x, kernel = res
    # The gradients of the same convolution written with lax.conv: XLA drops the unused forward.
    _, vjp = jax.vjp(_lax_conv, x, kernel)
    return vjp(g)


_conv_shifted_when_training.defvjp(_cst_fwd, _cst_bwd)


def conv_few_channels(lhs: jax.Array, rhs: jax.Array, window_strides, padding, *,
                      lhs_dilation=None, rhs_dilation=None, dimension_numbers=None,
                      feature_group_count: int = 1, precision=None, **kwargs) -> jax.Array:
    """Drop-in ``lax.conv_general_dilated`` for ``nnx.Conv`` that is faster for few input channels.

    For a stride-1, undilated, ungrouped, ``VALID`` NHWC/HWIO convolution with at most
    :data:`FEW_CHANNELS` input channels, the forward pass *of a differentiated call* (training)
    is computed as :math:`y_{b,h,w,:} = \\sum_{i,j,c} x_{b,h+i,w+j,c}\\, K_{i,j,c,:}`, i.e.
    ``kh·kw·C_in`` shifted slices times kernel rows (one fused elementwise loop in XLA), and its
    backward pass is the gradient of ``lax.conv_general_dilated`` itself (a ``jax.custom_vjp``).
    A call that is not differentiated (inference) runs ``lax.conv_general_dilated``, which is
    faster there at large batches. Anything else is passed on to ``lax.conv_general_dilated``
    unchanged. Same values up to float32 summation order (~1e-6).

    Args:
        lhs: ``(N, H, W, C_in)`` input; rhs: ``(kh, kw, C_in, C_out)`` kernel; the other
            arguments as in ``jax.lax.conv_general_dilated`` (``nnx.Conv`` passes them).

    Returns:
        ``(N, H - kh + 1, W - kw + 1, C_out)`` for the fast case.
    """
    dn = dimension_numbers
    nhwc = dn is not None and tuple(dn.lhs_spec) == (0, 3, 1, 2) and tuple(
        dn.rhs_spec) == (3, 2, 0, 1) and tuple(dn.out_spec) == (0, 3, 1, 2)
    fast = (nhwc and lhs.ndim == 4 and rhs.shape[2] <= FEW_CHANNELS
            and padding == "VALID" and tuple(window_strides) == (1, 1)
            and tuple(lhs_dilation or (1, 1)) == (1, 1) and tuple(rhs_dilation or (1, 1)) == (1, 1)
            and feature_group_count == 1 and precision is None
            and kwargs.get("preferred_element_type") is None
            and kwargs.get("out_sharding") is None and lhs.dtype == rhs.dtype)
    if fast:
        return _conv_shifted_when_training(lhs, rhs)
    return jax.lax.conv_general_dilated(lhs, rhs, window_strides, padding,
                                        lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
                                        dimension_numbers=dimension_numbers,
                                        feature_group_count=feature_group_count,
                                        precision=precision, **kwargs)


class CNN(nnx.Module):
    """The chapter-03 network. ``__call__`` maps ``(N, 28, 28, C)`` float32 images to ``(N, 10)`` logits.

    Args:
        rngs: ``nnx.Rngs`` for parameter initialisation (Flax defaults: LeCun-normal kernels,
            zero biases).
        in_channels: input channels (1 for MNIST).
        num_classes: output logits.
        dropout_rate: optional dropout before the last layer (0 = none, as in the article).
    """

    def __init__(self, rngs: nnx.Rngs, in_channels: int = 1, num_classes: int = 10,
                 dropout_rate: float = 0.0):
        # conv1 sees few channels: shifted products (see conv_few_channels); same parameters.
        self.conv1 = nnx.Conv(in_channels, 32, (3, 3), padding="VALID", rngs=rngs,
                              conv_general_dilated=conv_few_channels)
        self.conv2 = nnx.Conv(32, 64, (3, 3), padding="VALID", rngs=rngs)
        self.conv3 = nnx.Conv(64, 64, (3, 3), padding="VALID", rngs=rngs)
        self.dense1 = nnx.Linear(3 * 3 * 64, 64, rngs=rngs)
        self.dense2 = nnx.Linear(64, num_classes, rngs=rngs)
        # created last, so that the parameters are initialised exactly as without dropout
        self.dropout = nnx.Dropout(dropout_rate, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = max_pool_2x2(nnx.relu(self.conv1(x)))
        x = max_pool_2x2(nnx.relu(self.conv2(x)))
        x = nnx.relu(self.conv3(x))
        x = x.reshape(x.shape[0], -1)
        x = nnx.relu(self.dense1(x))
        return self.dense2(self.dropout(x))


def count_params(model: nnx.Module) -> int:
    """Number of trainable scalars (``nnx.Param`` leaves) in ``model``."""
    return sum(int(jnp.size(p)) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
