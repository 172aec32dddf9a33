"""Helpers shared by the models of ``lmcourse.models``.

Used in chapters: 03, 05, 06; imported by ``lmcourse.models.mlp``, ``lmcourse.multitask``,
``lmcourse.regularization``.

* :func:`count_params`: the number of trainable scalars of a Flax NNX module (real or abstract,
  e.g. built with ``nnx.eval_shape``); the one place the course counts a built model.
* Checks of values that may be *traced*: inside ``jax.jit``/``jax.vmap``/``jax.grad`` a value has
  no number a Python ``if`` could test, so :func:`concrete` returns ``None`` for it and the checks
  below let it pass; a concrete (Python, NumPy or eager JAX) value out of range raises
  ``ValueError`` naming it. :func:`check_int` is for static sizes (never traced).
"""

from __future__ import annotations

import math

import jax
import numpy as np
from flax import nnx

__all__ = ["check_count", "check_int", "check_probability", "check_range", "concrete",
           "count_params"]


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


_TRACED = (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError)


def concrete(value: object) -> np.ndarray | None:
    """``value`` as a NumPy array if it is a concrete number or array, ``None`` if it is traced
    (inside ``jit``/``vmap``/``grad``: no Python ``if`` can test it) or not numeric at all (JAX
    rebuilds pytrees such as ``regularization.Hyper`` with placeholders while tracing)."""
    try:
        a = np.asarray(value)
    except _TRACED:
        return None
    return a if a.dtype.kind in "biuf" else None


def check_range(name: str, value: object, low: float, high: float | None, hint: str) -> None:
    """Raise unless every element of a concrete ``value`` is in ``[low, high]`` and not NaN.

    ``high=None`` means no upper bound (but the value must be finite); traced values pass.

    Raises:
        ValueError: naming ``name``, the interval, the first bad value and ``hint``.
    """
    a = concrete(value)
    if a is None:
        return
    ok = (a >= low) & (a <= high) if high is not None else (a >= low) & np.isfinite(a)
    if not np.all(ok):   # NaN fails every comparison
        bad = a[~ok].reshape(-1)[0] if a.ndim else a
        interval = f"[{low:g}, {high:g}]" if high is not None else f"[{low:g}, inf)"
        raise ValueError(f"{name} must be in {interval}, got {float(bad)!r}; {hint}")


def check_probability(name: str, value: object) -> None:
    """A concrete ``value`` (scalar or array) must be a probability in ``[0, 1]``.

    Raises:
        ValueError: a value outside ``[0, 1]`` or NaN (traced values pass).
    """
    check_range(name, value, 0.0, 1.0, "it is a probability (0 = never, 1 = always)")


def check_count(name: str, value: object, low: int = 0, high: int | None = None) -> None:
    """A concrete ``value`` (scalar or array) must hold whole numbers in ``[low, high]``.

    Raises:
        ValueError: a fractional, NaN or out-of-range value (traced values pass).
    """
    a = concrete(value)
    if a is None:
        return
    if a.dtype.kind == "f" and not np.all(np.isfinite(a) & (a == np.round(a))):
        raise ValueError(f"{name} must be a whole number (pixels), got {a.tolist()!r}")
    hint = f"it is at most {high} here" if high is not None else "it is a count"
    check_range(name, a, low, high, hint)


def check_int(name: str, value: object, low: int) -> int:
    """``value`` as an ``int`` if it is a Python or NumPy integer ``>= low`` (bools and floats
    are refused).

    Raises:
        ValueError: ``value`` is not an integer, or is below ``low``.
    """
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value}")
    return int(value)
