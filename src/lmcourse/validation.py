"""Checks of arguments at public boundaries: the one place for "is this a positive integer, a
rate, a probability, a valid id?".

Used in chapters: none directly; imported by ``lmcourse.adversarial``, ``lmcourse.backprop``,
``lmcourse.baselines``, ``lmcourse.bpe``, ``lmcourse.checkpoint``, ``lmcourse.cost``,
``lmcourse.data.dates``, ``lmcourse.data.digits``, ``lmcourse.data.movielens``,
``lmcourse.data.scenes``, ``lmcourse.data.shakespeare``, ``lmcourse.data.vader``,
``lmcourse.detection``, ``lmcourse.flops``, ``lmcourse.generation``, ``lmcourse.implicit_feedback``,
``lmcourse.metrics``, ``lmcourse.models.attention``, ``lmcourse.models.bert``,
``lmcourse.models.clip``, ``lmcourse.models.cnn``, ``lmcourse.models.detector``,
``lmcourse.models.gpt``, ``lmcourse.models.mlp``, ``lmcourse.models.neumf``,
``lmcourse.models.resnet``, ``lmcourse.models.seq2seq``, ``lmcourse.multitask``,
``lmcourse.param_count``, ``lmcourse.privacy``, ``lmcourse.quantize``, ``lmcourse.recsys``,
``lmcourse.regularization``, ``lmcourse.scaling``, ``lmcourse.sharding``, ``lmcourse.timing``,
``lmcourse.training``.

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
import sys

import numpy as np


def _traced_errors() -> tuple[type[Exception], ...]:
    """The errors JAX raises when a tracer is turned into a NumPy array (none before JAX is
    imported: then nothing can be traced, and the data layer stays free of JAX)."""
    jax = sys.modules.get("jax")
    if jax is None:
        return ()
    return (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError)


def is_traced(value: object) -> bool:
    """Whether ``value`` is a JAX tracer (inside ``jit``/``grad``/``vmap``), whose values no Python
    ``if`` can check."""
    jax = sys.modules.get("jax")
    return jax is not None and isinstance(value, jax.core.Tracer)


def concrete(value: object) -> np.ndarray | None:
    """``value`` as a NumPy array if it is a concrete number or array, ``None`` if it is traced
    (inside ``jit``/``vmap``/``grad``: no Python ``if`` can test it) or not numeric at all (JAX
    rebuilds pytrees such as ``regularization.Hyper`` with placeholders while tracing)."""
    if is_traced(value):
        return None
    try:
        a = np.asarray(value)
    except _traced_errors():
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
    """``value`` as an ``int`` if it is an integer ``>= low`` (Python, NumPy or concrete 0-d JAX;
    bools and floats such as ``768.0`` are refused).

    Raises:
        ValueError: ``value`` is not an integer (the message names its type), or is below ``low``.
    """
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer >= {low}, got the bool {value!r}")
    try:
        n = operator.index(value)   # int, NumPy integers, 0-d integer arrays; not 2.5 or NaN
    except TypeError:
        raise ValueError(f"{name} must be an integer >= {low}, got {type(value).__name__} "
                         f"{value!r}") from None
    if n < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {n}")
    return n


def check_bool(name: str, value: object) -> bool:
    """``value`` as a ``bool`` if it is ``True`` or ``False`` (NumPy bools included; ``0``, ``1``,
    ``"no"`` and ``None`` are refused, so a misplaced argument is not read as a switch).

    Raises:
        ValueError: ``value`` is not a bool (the message names its type).
    """
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {type(value).__name__} {value!r}")
    return bool(value)


def check_batch_size(batch_size: object, n: int, what: str = "training examples") -> int:
    """``batch_size`` as an ``int`` in ``[1, n]`` (``n`` examples to draw batches from).

    Raises:
        ValueError: ``batch_size`` is not an integer (bools refused) or lies outside ``[1, n]``.
    """
    try:
        b = None if isinstance(batch_size, bool) else operator.index(batch_size)
    except TypeError:
        b = None
    if b is None or not 1 <= b <= n:
        raise ValueError(f"batch_size must be an integer between 1 and the {n:,} {what}, "
                         f"got {batch_size!r}")
    return b


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


def check_float(name: str, value: object, low: float = -math.inf, high: float = math.inf, *,
                low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a ``float`` if it is a finite real number in the interval from ``low`` to
    ``high`` (each end closed unless ``*_open``; an infinite end is always open).

    Python, NumPy and concrete 0-d JAX numbers are accepted; bools, strings, arrays, NaN and ±inf
    are refused. One-sided intervals read ``>= low`` / ``> low`` in the message.

    Raises:
        ValueError: ``value`` is not a finite real number in the interval (the message names
            ``name``, the interval and the value).
    """
    x = _real(value)
    ok = (x is not None and math.isfinite(x) and (x > low if low_open else x >= low)
          and (x < high if high_open else x <= high))
    if not ok:
        if high == math.inf:
            where = f"{'>' if low_open else '>='} {low:g}"
        elif low == -math.inf:
            where = f"{'<' if high_open else '<='} {high:g}"
        else:
            where = (f"in {'(' if low_open else '['}{low:g}, {high:g}"
                     f"{')' if high_open else ']'}")
        raise ValueError(f"{name} must be a finite number {where}, got {value!r}")
    return x


def check_positive_float(name: str, value: object) -> float:
    """``value`` as a ``float`` if it is finite and > 0 (e.g. a LayerNorm epsilon, a temperature,
    a learning rate).

    Raises:
        ValueError: ``value`` is not a finite real number > 0 (NaN and inf included).
    """
    return check_float(name, value, 0.0, low_open=True)


def check_nonnegative_float(name: str, value: object) -> float:
    """``value`` as a ``float`` if it is finite and >= 0 (a penalty, a loss weight, a tolerance).

    Raises:
        ValueError: ``value`` is not a finite real number >= 0 (NaN and inf included).
    """
    return check_float(name, value, 0.0)


def check_fraction(name: str, value: object, *, open_low: bool = False,
                   open_high: bool = False) -> float:
    """``value`` as a ``float`` if it lies in ``[0, 1]`` (an IoU threshold, a test fraction…),
    with either end excluded on request (``open_low=open_high=True``: a split fraction, which must
    leave rows on both sides).

    Raises:
        ValueError: ``value`` is not a real number in the interval (NaN, bools, strings refused).
    """
    x = _real(value)
    ok = x is not None and (x > 0 if open_low else x >= 0) and (x < 1 if open_high else x <= 1)
    if not ok:
        interval = f"{'(' if open_low else '['}0, 1{')' if open_high else ']'}"
        if open_low and open_high:
            interval = f"the open interval {interval}, e.g. 0.2"
        raise ValueError(f"{name} must be in {interval}, got {value!r}")
    return x


def check_finite(name: str, array: object, hint: str = "check the data, or whether training "
                 "diverged (lower the learning rate)") -> np.ndarray:
    """``array`` as a NumPy array if it holds no NaN or infinity.

    Raises:
        ValueError: saying how many values are not finite, the index of the first, and ``hint``.
    """
    a = np.asarray(array)
    bad = ~np.isfinite(a)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{name} contains {int(bad.sum())} NaN or infinite value(s) (first at "
                         f"index {first}); {hint}")
    return a


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


def check_ids(name: str, ids: object, size: int, *, size_name: str = "size", fix: str = "",
              whole_floats: bool = False) -> np.ndarray:
    """``ids`` as an int64 NumPy array if every id lies in ``[0, size)``.

    JAX's ``take``/embedding lookups clamp an out-of-range id to the last row without a word;
    this check is what stops a wrong id from silently reading the wrong embedding (or answering
    for another user).

    Args:
        name: the argument's name, for the message.
        ids: integer ids of any shape (Python lists, NumPy or concrete JAX arrays; a traced
            array cannot be checked: test it with :func:`concrete` first).
        size: the table's number of rows (ids must be ``< size``).
        size_name: what ``size`` is called where the caller set it (``"vocab_size"``,
            ``"n_users"``), for the message.
        fix: how to fix a bad id, appended to the message.
        whole_floats: also accept a float array whose values are all whole numbers.

    Raises:
        ValueError: ``ids`` is not integer-valued, or an id is negative or ``>= size``; the
            message gives the position and value of the first bad id, the valid range, how many
            ids are bad and ``fix``.
    """
    a = np.asarray(ids)
    if a.size and a.dtype.kind not in "iu":
        whole = (a.dtype.kind == "f" and bool(np.all(np.isfinite(a)))
                 and bool(np.all(a == np.round(a))))
        if not (whole_floats and whole):
            raise ValueError(f"{name} must hold integer ids, got dtype {a.dtype}")
    a = a.astype(np.int64)
    bad = (a < 0) | (a >= size)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        at = f"{name}{list(where)}" if where else name
        raise ValueError(
            f"{at} = {int(a[where])} is outside the table's range [0, {size - 1}] "
            f"({size_name}={size}; {int(bad.sum())} bad id(s), min {int(a.min())}, max "
            f"{int(a.max())})" + (f"; {fix}" if fix else ""))
    return a
