"""Helpers shared by the models of ``lmcourse.models``.

Used in chapters: 03, 04, 05, 06, 07, 08.

:func:`count_params`: the number of trainable scalars of a Flax NNX module (real or abstract,
e.g. built with ``nnx.eval_shape``); the one place the course counts a built model. The checks
of argument values live in :mod:`lmcourse.validation`.
"""

from __future__ import annotations

import math

import jax
from flax import nnx

__all__ = ["count_params"]


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
