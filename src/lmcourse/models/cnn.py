"""The article's (and TensorFlow's CNN tutorial's) small convolutional network, in Flax NNX.

Conv32 3×3 – MaxPool 2 – Conv64 3×3 – MaxPool 2 – Conv64 3×3 – Flatten – Dense64 – Dense10,
ReLU after every convolution and the hidden dense layer, ``VALID`` padding as in the tutorial:
28×28 → 26 → 13 → 11 → 5 → 3, so 3·3·64 = 576 features reach Dense64; 93,322 parameters for
one input channel. Source: https://www.tensorflow.org/tutorials/images/cnn (for 32×32×3 inputs,
122,570 parameters).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


def max_pool_2x2(x: jax.Array) -> jax.Array:
    """2×2 max pooling with stride 2 and ``VALID`` padding, written as a reshape and a max.

    Same values as ``nnx.max_pool(x, (2, 2), strides=(2, 2))`` (an odd last row/column is
    dropped), but its backward pass is a cheap comparison instead of XLA's select-and-scatter,
    which makes training on CPU markedly faster (see ``benchmarks/``).

    Args:
        x: ``(N, H, W, C)`` array.

    Returns:
        ``(N, H // 2, W // 2, C)`` array of the same dtype.
    """
    n, h, w, c = x.shape
    x = x[:, : h - h % 2, : w - w % 2, :]
    return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


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
        self.conv1 = nnx.Conv(in_channels, 32, (3, 3), padding="VALID", rngs=rngs)
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
