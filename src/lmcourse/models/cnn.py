"""The article's (and TensorFlow's CNN tutorial's) small convolutional network, in Flax NNX.

Used in chapters: 03, 08, 10, 12; imported by ``lmcourse.adversarial``, ``lmcourse.models.clip``,
``lmcourse.models.resnet``.

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

The module also holds the chapter's diagnosis of a training log (:func:`learned_nothing`,
:func:`is_overfitting`, with :func:`class_shares`) and :func:`check_labels`, which rejects class
labels outside ``[0, num_classes)`` before they reach a JAX loss (where they would give a silent
NaN or a silently wrong value).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lmcourse.validation import (
    check_fraction,
    check_nonnegative_float,
    check_positive_int,
    check_rate,
)

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
        in_channels: input channels (1 for MNIST), a positive integer.
        num_classes: output logits, a positive integer.
        dropout_rate: dropout before the last layer, in ``[0, 1]`` (0 = none, as in the article;
            1 drops everything: the logits are the last layer's bias, finite, with finite
            gradients).

    Raises:
        ValueError: a size that is not a positive integer, or a dropout rate outside ``[0, 1]``
            or NaN.
    """

    def __init__(self, rngs: nnx.Rngs, in_channels: int = 1, num_classes: int = 10,
                 dropout_rate: float = 0.0):
        in_channels = check_positive_int("in_channels", in_channels)
        num_classes = check_positive_int("num_classes", num_classes)
        dropout_rate = check_rate("dropout_rate", dropout_rate)
        # conv1 sees few channels: shifted products (see conv_few_channels); same parameters.
        self.conv1 = nnx.Conv(in_channels, 32, (3, 3), padding="VALID", rngs=rngs,
                              conv_general_dilated=conv_few_channels)
        self.conv2 = nnx.Conv(32, 64, (3, 3), padding="VALID", rngs=rngs)
        self.conv3 = nnx.Conv(64, 64, (3, 3), padding="VALID", rngs=rngs)
        self.dense1 = nnx.Linear(3 * 3 * 64, 64, rngs=rngs)
        self.dense2 = nnx.Linear(64, num_classes, rngs=rngs)
        # created last, so that the parameters are initialised exactly as without dropout
        self.dropout = nnx.Dropout(float(dropout_rate), rngs=rngs)

    def _check_input(self, x: jax.Array) -> None:
        """Shape and dtype checks (static, so they run once per compiled shape under ``jit``)."""
        c_in = self.conv1.in_features
        if x.ndim != 4:
            raise ValueError(f"CNN expects a batch of images (N, H, W, {c_in}) (NHWC), got shape "
                             f"{tuple(x.shape)}; add the batch axis with x[None] and the channel "
                             "axis with x[..., None]")
        if x.shape[-1] != c_in:
            raise ValueError(f"CNN was built with in_channels={c_in} but the images have "
                             f"{x.shape[-1]} channels (shape {tuple(x.shape)}, NHWC expected)")
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise ValueError(f"CNN expects float images scaled to [0, 1], got dtype {x.dtype}; "
                             "convert with lmcourse.training.to_float_images (uint8 / 255)")
        h, w = x.shape[1], x.shape[2]
        sizes = []
        for side in (h, w):
            side = (side - 2) // 2          # conv1 (VALID 3x3), pool 1
            side = (side - 2) // 2          # conv2, pool 2
            sizes.append(side - 2)          # conv3
        features = sizes[0] * sizes[1] * 64 if min(sizes) > 0 else 0
        if features != self.dense1.in_features:
            raise ValueError(
                f"images of {h}x{w} give {max(sizes[0], 0)}x{max(sizes[1], 0)}x64 = {features} "
                f"features after conv3, but dense1 expects {self.dense1.in_features} "
                "(28x28 images give 3x3x64 = 576); resize the images or rebuild dense1")

    def __call__(self, x: jax.Array) -> jax.Array:
        """Logits ``(N, num_classes)`` for float images ``(N, H, W, in_channels)`` in [0, 1].

        Raises:
            ValueError: not 4-D NHWC, the wrong number of channels, an integer dtype (unscaled
                pixels), or a spatial size that does not give ``dense1``'s input size.
        """
        self._check_input(x)
        x = max_pool_2x2(nnx.relu(self.conv1(x)))
        x = max_pool_2x2(nnx.relu(self.conv2(x)))
        x = nnx.relu(self.conv3(x))
        x = x.reshape(x.shape[0], -1)
        x = nnx.relu(self.dense1(x))
        return self.dense2(self.dropout(x))


# --- labels, and the chapter's diagnosis of a training log ------------------------------------

def check_labels(labels: np.ndarray | Sequence[int], num_classes: int) -> np.ndarray:
    """Return ``labels`` as an int32 array after checking every label is a class id in range.

    JAX does not raise on an out-of-range class id: ``optax.softmax_cross_entropy_with_integer_labels``
    returns NaN for a label ``>= num_classes`` and a finite, wrong value for a negative one. Call this
    once on the whole label array (concrete values, outside ``jit``) before training.

    Args:
        labels: ``(N,)`` integer class ids (any integer dtype; floats are rejected).
        num_classes: number of classes K; valid labels are ``0 … K-1``.

    Returns:
        ``(N,)`` int32 array, the same labels.

    Raises:
        ValueError: ``num_classes`` not a positive integer, labels not 1-D, not integers, or
            outside ``[0, num_classes - 1]`` (the message gives the first bad label and how many).
    """
    num_classes = check_positive_int("num_classes", num_classes)
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"labels must be a 1-D array of class ids, got shape {y.shape} "
                         "(one-hot labels? use labels.argmax(-1))")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integer class ids, got dtype {y.dtype}")
    bad = np.flatnonzero((y < 0) | (y >= num_classes))
    if bad.size:
        raise ValueError(
            f"{bad.size} label(s) outside the valid range 0..{num_classes - 1}: first at index "
            f"{bad[0]} is {y[bad[0]]}. Map the classes to 0..{num_classes - 1}, or build the model "
            f"with num_classes={int(y.max()) + 1} if there really are more classes")
    return y.astype(np.int32)


def class_shares(labels: np.ndarray | Sequence[int], num_classes: int) -> np.ndarray:
    """Fraction of ``labels`` in each class: ``(num_classes,)`` float64 summing to 1.

    Raises:
        ValueError: as :func:`check_labels`, or no labels at all.
    """
    y = check_labels(labels, num_classes)
    if y.size == 0:
        raise ValueError("class_shares needs at least one label")
    return np.bincount(y, minlength=num_classes) / y.size


def _check_shares(shares: np.ndarray | Sequence[float]) -> np.ndarray:
    pi = np.asarray(shares, dtype=np.float64)
    if pi.ndim != 1 or pi.size < 2:
        raise ValueError(f"class shares must be a 1-D array of at least 2 classes, got {pi.shape}")
    if not np.all(np.isfinite(pi)) or np.any(pi < 0) or not math.isclose(pi.sum(), 1.0,
                                                                          abs_tol=1e-6):
        raise ValueError(f"class shares must be finite, >= 0 and sum to 1, got {pi}")
    return pi


def learned_nothing(loss: float, accuracy: float, shares: np.ndarray | Sequence[float], *,
                    loss_tol: float = 0.01, accuracy_tol: float = 0.01) -> bool:
    """Whether a (loss, accuracy) pair is the signature of a model whose output ignores its input.

    A prediction ``q`` that does not depend on the input has mean cross-entropy
    :math:`-\\sum_k \\pi_k \\log q_k = H(\\pi) + \\mathrm{KL}(\\pi \\| q)` on labels with class
    shares :math:`\\pi`: at least the entropy :math:`H(\\pi)` (reached at ``q = π``) and exactly
    :math:`\\ln K` for the uniform ``q`` (the loss of a freshly initialised network). Its accuracy
    is the share of the one class its argmax picks, at most :math:`\\max_k \\pi_k`. So the
    criterion is both together:

    ``H(π) - loss_tol <= loss <= ln K + loss_tol`` **and** ``accuracy <= max(π) + accuracy_tol``.

    On balanced classes (π = 1/K) this is "loss ≈ ln K and accuracy at chance". A loss of ln K with
    an accuracy far above chance is *not* this signature (and cannot come from a constant
    prediction). Overfitting is a different diagnosis: see :func:`is_overfitting`.

    Args:
        loss: mean cross-entropy in nats (natural log), ``>= 0``.
        accuracy: fraction correct in ``[0, 1]``.
        shares: ``(K,)`` class shares of the labels the loss was measured on (:func:`class_shares`).
        loss_tol, accuracy_tol: allowed slack, ``>= 0`` (rounding in a log, sampling noise).

    Returns:
        ``True`` when both conditions hold.

    Raises:
        ValueError: loss negative or not finite, accuracy outside ``[0, 1]`` or NaN, shares not a
            distribution over at least 2 classes, a negative or non-finite tolerance.
    """
    pi = _check_shares(shares)
    if not (math.isfinite(loss) and loss >= 0):
        raise ValueError(f"loss must be a finite cross-entropy >= 0 (nats), got {loss}")
    accuracy = check_fraction("accuracy", accuracy)
    loss_tol = check_nonnegative_float("loss_tol", loss_tol)
    accuracy_tol = check_nonnegative_float("accuracy_tol", accuracy_tol)
    nonzero = pi[pi > 0]
    entropy = float(-(nonzero * np.log(nonzero)).sum())
    loss_flat = entropy - loss_tol <= loss <= math.log(pi.size) + loss_tol
    at_chance = accuracy <= pi.max() + accuracy_tol
    return bool(loss_flat and at_chance)


def is_overfitting(train_losses: Sequence[float], val_losses: Sequence[float], *,
                   rel_tol: float = 0.05) -> bool:
    """Whether loss curves show overfitting: training loss falls while validation loss rises.

    Let ``b`` be the epoch of the lowest validation loss. Overfitting means that after ``b`` the
    validation loss has risen by more than ``rel_tol`` (relative) above that minimum while the
    training loss has kept falling by more than ``rel_tol`` (relative) below its value at ``b``.
    A gap between the two curves alone (validation loss above training loss) is not
    overfitting; flat curves (a model that learned nothing) are not either.

    Args:
        train_losses, val_losses: per-epoch mean losses, same length ``>= 2``, finite, ``>= 0``.
        rel_tol: relative change that counts as a rise or a fall, ``>= 0``.

    Returns:
        ``True`` when both curves moved as described.

    Raises:
        ValueError: curves of different lengths, shorter than 2, negative or not finite, or a
            negative or non-finite ``rel_tol``.
    """
    train = np.asarray(train_losses, dtype=np.float64)
    val = np.asarray(val_losses, dtype=np.float64)
    if train.ndim != 1 or train.shape != val.shape or train.size < 2:
        raise ValueError("train_losses and val_losses must be 1-D, of the same length >= 2; got "
                         f"shapes {train.shape} and {val.shape}")
    if not (np.all(np.isfinite(train)) and np.all(np.isfinite(val))
            and train.min() >= 0 and val.min() >= 0):
        raise ValueError("losses must be finite and >= 0")
    rel_tol = check_nonnegative_float("rel_tol", rel_tol)
    best = int(np.argmin(val))
    val_rose = val[-1] > val[best] * (1 + rel_tol)
    train_fell = train[-1] < train[best] * (1 - rel_tol)
    return bool(best < val.size - 1 and val_rose and train_fell)
