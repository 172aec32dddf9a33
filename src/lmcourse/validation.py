"""Checks of arguments at public boundaries: the one place for "is this a positive integer, a
rate, a probability, a valid id?".

Used in chapters: none directly; imported by ``lmcourse.models.attention``,
``lmcourse.models.bert``, ``lmcourse.models.common``, ``lmcourse.models.mlp``,
``lmcourse.multitask``, ``lmcourse.regularization``.

JAX clamps out-of-range indices and propagates NaN silently, so every public function of the
course checks what it is given with these helpers and raises a ``ValueError`` that names the
argument, says what was expected and what came, and (where it helps) how to fix it.
Each helper returns the checked value converted (``int``/``float``/array) so callers can write
``n = check_positive_int("n", n)``. Helpers for traced values (inside ``jit``) let them pass:
:func:`concrete` returns ``None`` for them.
"""

from __future__ import annotations

import math
import operator

import jax
import numpy as np

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


def _real(value: object) -> float | None:
    """``float(value)`` for a real number (Python, NumPy or 0-d JAX), else ``None``."""
    if isinstance(value, (bool, str, bytes)) or np.ndim(value) != 0:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def check_positive_int(name: str, value: object) -> int:
    """``value`` as an ``int`` if it is a positive integer (Python, NumPy or JAX; bools excluded).

    Raises:
        ValueError: ``value`` is not an integer ≥ 1 (the message names ``name``).
    """
    try:
        n = None if isinstance(value, bool) else operator.index(value)
    except TypeError:
        n = None
    if n is None or n < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return n


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


def check_rate(name: str, value: object) -> float:
    """``value`` as a ``float`` if it is a probability in ``[0, 1]`` (NaN rejected).

    A dropout rate of 0 keeps every unit; 1 drops every unit (``nnx.Dropout`` then returns
    zeros, with finite gradients).

    Raises:
        ValueError: ``value`` is not a real number in ``[0, 1]``.
    """
    x = _real(value)
    if x is None or not 0.0 <= x <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
    return x


def check_positive_float(name: str, value: object) -> float:
    """``value`` as a ``float`` if it is finite and > 0 (e.g. a LayerNorm epsilon, a temperature).

    Raises:
        ValueError: ``value`` is not a finite real number > 0 (NaN and inf included).
    """
    x = _real(value)
    if x is None or not math.isfinite(x) or x <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return x


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
        raise ValueError(f"{name} must be a whole number, got {a.tolist()!r}")
    hint = f"it is at most {high} here" if high is not None else "it is a count"
    check_range(name, a, low, high, hint)


def check_ids(name: str, ids: object, size: int, what: str = "vocabulary") -> np.ndarray:
    """``ids`` as an integer NumPy array if every id lies in ``[0, size)``.

    JAX's ``take``/embedding lookups clamp an out-of-range id to the last row without a word;
    this check is what stops a wrong id from silently reading the wrong embedding.

    Args:
        name: the argument's name, for the message.
        ids: integer ids of any shape (Python lists, NumPy or concrete JAX arrays).
        size: the table's size (ids must be ``< size``).
        what: what the table is, for the message (``"vocabulary"``, ``"users"``…).

    Raises:
        ValueError: ``ids`` is not integer-valued, or an id is negative or ``>= size``.
    """
    a = np.asarray(ids)
    if a.size and a.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integer ids, got dtype {a.dtype}")
    a = a.astype(np.int64) if a.size else a.astype(np.int64).reshape(a.shape)
    if a.size and (a.min() < 0 or a.max() >= size):
        bad = a[(a < 0) | (a >= size)].reshape(-1)[0]
        raise ValueError(f"{name} holds id {int(bad)}, outside the {what} of size {size} "
                         f"(valid ids are 0 … {size - 1})")
    return a
