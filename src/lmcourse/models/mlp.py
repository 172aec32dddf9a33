"""A multilayer perceptron with explicit dropout, in Flax NNX.

Used in chapters: 04, 12; imported by ``lmcourse.regularization``.

:func:`dropout` takes its key and its rate as arguments (not module attributes), so the rate can
be a traced value that ``jax.vmap`` varies across models. Concrete bad values raise
``ValueError``; traced ones cannot be tested with a Python ``if`` and pass (see
:mod:`lmcourse.validation`).

Source: dropout, Srivastava et al., "Dropout: a simple way to prevent neural networks from
overfitting", JMLR 15 (2014).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from lmcourse.validation import check_int, check_probability


def dropout(key: jax.Array, x: jax.Array, rate: float | jax.Array) -> jax.Array:
    """Inverted dropout (Srivastava et al., 2014): zero each unit with probability ``rate`` and
    scale the survivors by ``1 / (1 - rate)``, so that ``E[dropout(x)] = x`` and nothing needs
    rescaling at test time.

    Args:
        key: ``jax.random`` key.
        x: any-shape float array.
        rate: drop probability in ``[0, 1]``; may be a traced scalar. ``rate = 0`` returns ``x``
            exactly; ``rate = 1`` returns zeros, with a zero (not NaN) gradient: the scale
            ``1 / (1 - rate)`` is never formed there (a ``jnp.where`` on a safe denominator, so
            that no ``inf`` enters the backward pass either).

    Returns:
        Array of ``x``'s shape and dtype.

    Raises:
        ValueError: a concrete ``rate`` outside ``[0, 1]`` or NaN, e.g. -0.5, 1.5 (a traced one
            is not checked: JAX cannot branch on it; see the module docstring).
    """
    check_probability("dropout rate", rate)
    keep_prob = 1.0 - jnp.asarray(rate, jnp.float32)
    keep = jax.random.bernoulli(key, keep_prob, x.shape)
    safe = jnp.where(keep_prob > 0, keep_prob, 1.0)     # rate 1: every unit dropped, no 1/0
    return jnp.where(keep, x / safe, 0.0).astype(x.dtype)


class MLP(nnx.Module):
    """A multilayer perceptron: flatten → Dense(hidden) → ReLU → [dropout] → Dense(classes).

    ``__call__(x, *, key=None, dropout_rate=0.0)`` maps ``(N, ...)`` float32 inputs (e.g.
    ``(N, 28, 28, 1)`` images) to ``(N, num_classes)`` logits. Dropout is applied only when a
    ``key`` is given (training); its ``dropout_rate`` is an argument, not an attribute, so it can be
    a traced value that ``jax.vmap`` varies across models.

    Args:
        rngs: ``nnx.Rngs`` for initialisation (Flax defaults: LeCun-normal kernels, zero biases).
        in_features: flattened input size (784 for 28×28×1).
        hidden: hidden units.
        num_classes: output logits.

    Raises:
        ValueError: a size that is not a positive integer; in ``__call__``, an input whose
            flattened size is not ``in_features``, or a concrete ``dropout_rate`` outside
            ``[0, 1]`` or NaN (see :func:`dropout`).
    """

    def __init__(self, rngs: nnx.Rngs, in_features: int = 784, hidden: int = 256,
                 num_classes: int = 10):
        for name, value in (("in_features", in_features), ("hidden", hidden),
                            ("num_classes", num_classes)):
            check_int(name, value, 1)
        self.hidden = nnx.Linear(in_features, hidden, rngs=rngs)
        self.out = nnx.Linear(hidden, num_classes, rngs=rngs)

    def __call__(self, x: jax.Array, *, key: jax.Array | None = None,
                 dropout_rate: float | jax.Array = 0.0) -> jax.Array:
        flat = x.reshape(x.shape[0], -1)
        if flat.shape[1] != self.hidden.in_features:
            raise ValueError(f"the MLP expects inputs of {self.hidden.in_features} values per "
                             f"example, got shape {x.shape}")
        h = nnx.relu(self.hidden(flat))
        if key is None:
            check_probability("dropout rate", dropout_rate)
        else:
            h = dropout(key, h, dropout_rate)
        return self.out(h)

