"""Helpers shared by the models of ``lmcourse.models``.

Used in chapters: 03, 04, 05, 06, 07, 08; imported by ``lmcourse.models.gpt``.

:func:`count_params`: the number of trainable scalars of a Flax NNX module (real or abstract,
e.g. built with ``nnx.eval_shape``); the one place the course counts a built model. The checks
of argument values live in :mod:`lmcourse.validation`.

:func:`flat_dot_general`: the product of an ``nnx.Linear`` applied to a batch of sequences,
computed on the tokens laid out as one matrix (a CPU speed-up of the GPT's training step,
measured in ``benchmarks/README.md``).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = ["count_params", "flat_dot_general"]


def count_params(model: nnx.Module) -> int:
    """Number of trainable scalars (entries of the ``nnx.Param`` variables) in ``model``.

    Works on a real module and on an abstract one (``nnx.eval_shape(lambda: Model(...))``: its
    leaves are ``jax.ShapeDtypeStruct``, nothing allocated), since only shapes are read.
    Variables that are not ``nnx.Param`` (RNG state, batch statistics) are not counted.

    Returns:
        An exact Python ``int`` (``Σ prod(shape)`` over the parameter arrays).

    Raises:
        TypeError: ``model`` is not a Flax NNX module (or graph node) that ``nnx.state`` accepts.
    """
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(nnx.state(model, nnx.Param)))


def flat_dot_general(lhs: jax.Array, rhs: jax.Array, dimension_numbers, precision=None,
                     preferred_element_type=None, out_sharding=None) -> jax.Array:
    """Drop-in ``jax.lax.dot_general`` for ``nnx.Linear(..., dot_general=flat_dot_general)``.

    ``nnx.Linear`` maps ``x`` ``(B, T, d_in)`` to ``x W`` ``(B, T, d_out)`` by contracting the
    last axis of ``x`` with the first of ``W``. This function computes the same product on the
    tokens laid out as one matrix, ``x.reshape(B*T, d_in) @ W``, reshaped back to
    ``(B, T, d_out)``. The values are the same; what changes is the backward pass that JAX
    derives: the weight gradient dL/dW = Xᵀ G becomes a product of
    two matrices contracted over their first axis (``(B*T, d_in)`` and ``(B*T, d_out)``)
    instead of a contraction over the two axes ``B`` and ``T`` of 3-D arrays, for which XLA:CPU
    (jaxlib 0.10) first writes a transposed copy of the output gradient and then runs a
    slower product. On the chapter-07 GPT this made the CPU training step 1.09-1.37x as fast
    per round on 2 cores (``benchmarks/README.md``, ``gpt_train_speed.py``; variant
    ``jax-nnx-linear`` is the control). Not measured on a GPU.

    Any other product (inputs of one or two axes, batch dimensions, another contraction, an
    ``out_sharding``) is passed to ``jax.lax.dot_general`` unchanged.

    Args:
        lhs: ``(..., d_in)`` inputs; rhs: ``(d_in, d_out)`` kernel; ``dimension_numbers``,
            ``precision``, ``preferred_element_type``, ``out_sharding``: as in
            ``jax.lax.dot_general``.

    Returns:
        ``(..., d_out)``, the dtype ``jax.lax.dot_general`` gives.

    Raises:
        TypeError / ValueError: as ``jax.lax.dot_general`` for shapes that do not contract.
    """
    (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = dimension_numbers
    matrix_product = (jnp.ndim(lhs) > 2 and jnp.ndim(rhs) == 2 and out_sharding is None
                      and tuple(lhs_contract) == (jnp.ndim(lhs) - 1,) and tuple(rhs_contract) == (0,)
                      and not tuple(lhs_batch) and not tuple(rhs_batch))
    if not matrix_product:
        return jax.lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                                   preferred_element_type=preferred_element_type,
                                   out_sharding=out_sharding)
    lead = lhs.shape[:-1]
    out = jax.lax.dot_general(lhs.reshape(math.prod(lead), lhs.shape[-1]), rhs,
                              (((1,), (0,)), ((), ())), precision=precision,
                              preferred_element_type=preferred_element_type)
    return out.reshape(*lead, rhs.shape[1])
