"""Timing a JAX computation honestly: warm-up, ``block_until_ready``, median of repeats.

Used in chapters: 00, 02, 04, 05, 07, 09, 11, 12.

>>> t = time_fn(jnp.dot, a, b, repeats=5)       # a Timing
>>> print(t)                                     # "12.3 ms (median of 5; min 11.9, max 13.0)"

Why ``block_until_ready``: JAX dispatches work asynchronously. A call returns as soon as the
work is *queued*, so a timer stopped right after it measures the dispatch, not the computation.
:func:`time_fn` passes every output through ``jax.block_until_ready`` (which waits for all
arrays of a pytree and returns non-arrays unchanged) before stopping the clock.

Why a warm-up: the first call of a ``jax.jit``-compiled function traces and compiles it, which
can take longer than the computation itself; ``warmup`` calls run (and are waited for) before
the clock starts. Pass ``warmup=0`` to time a one-off run that includes compilation (say so
when you print it).

Why the median: repeated timings on a shared machine have a long right tail (another process,
the garbage collector, a frequency change), never a left one. The median ignores a few slow
outliers where the mean would absorb them; the minimum is also reported (the best case, the
usual choice of ``timeit``) and the maximum and interquartile range show the spread.

Source: JAX documentation, "Asynchronous dispatch" and its FAQ "Benchmarking JAX code"
(https://docs.jax.dev/en/latest/async_dispatch.html, .../faq.html); Python's ``timeit`` module
documentation (on taking the minimum).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np

from lmcourse.validation import check_int

__all__ = ["Timing", "time_fn"]


@dataclass(frozen=True)
class Timing:
    """Wall-clock seconds of ``repeats`` calls of one function (after ``warmup`` calls).

    Attributes:
        seconds: ``(repeats,)`` float64 array, one wall-clock time per call, in seconds.
        value: the output of the last timed call (already waited for), so that a timed
            training run can keep its result.
    """

    seconds: np.ndarray
    value: Any = field(default=None, repr=False)

    @property
    def repeats(self) -> int:
        """Number of timed calls."""
        return len(self.seconds)

    @property
    def median(self) -> float:
        """Median seconds per call (the number to report)."""
        return float(np.median(self.seconds))

    @property
    def min(self) -> float:
        """Fastest call, in seconds."""
        return float(np.min(self.seconds))

    @property
    def max(self) -> float:
        """Slowest call, in seconds."""
        return float(np.max(self.seconds))

    @property
    def iqr(self) -> tuple[float, float]:
        """``(25th, 75th)`` percentiles of the per-call seconds (linear interpolation)."""
        q1, q3 = np.percentile(self.seconds, [25, 75])
        return float(q1), float(q3)

    def __str__(self) -> str:
        unit, scale = _unit(self.median)
        if self.repeats == 1:
            return f"{self.median * scale:.3g} {unit} (one run)"
        return (f"{self.median * scale:.3g} {unit} (median of {self.repeats}; "
                f"min {self.min * scale:.3g}, max {self.max * scale:.3g})")


def _unit(seconds: float) -> tuple[str, float]:
    """The unit (s, ms, µs) that prints ``seconds`` with 1 to 3 digits before the point."""
    if seconds >= 1:
        return "s", 1.0
    if seconds >= 1e-3:
        return "ms", 1e3
    return "µs", 1e6


def time_fn(fn: Callable[..., Any], *args: Any, repeats: int = 5, warmup: int = 1,
            **kwargs: Any) -> Timing:
    """Time ``fn(*args, **kwargs)``: ``warmup`` untimed calls, then ``repeats`` timed ones.

    Each timed call is measured with ``time.perf_counter`` from just before the call until
    ``jax.block_until_ready`` has returned on its output (all arrays computed, not only
    dispatched). Non-JAX outputs (NumPy arrays, Python numbers, ``None``) pass through unchanged.

    Args:
        fn: any callable; typically a ``jax.jit``-compiled function.
        *args, **kwargs: passed to every call (the same arguments each time).
        repeats: timed calls, an integer >= 1 (the median of 1 is that call).
        warmup: untimed calls first, an integer >= 0 (1 compiles a jitted function; 0 times
            the first call, compilation included).

    Returns:
        :class:`Timing` with the per-call seconds and the last call's output.

    Raises:
        ValueError: ``repeats`` not an integer >= 1 or ``warmup`` not an integer >= 0.
        TypeError: ``fn`` is not callable.
    """
    repeats, warmup = check_int("repeats", repeats, 1), check_int("warmup", warmup, 0)
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    for _ in range(int(warmup)):
        jax.block_until_ready(fn(*args, **kwargs))
    seconds = np.empty(int(repeats), np.float64)
    out = None
    for i in range(int(repeats)):
        start = time.perf_counter()
        out = jax.block_until_ready(fn(*args, **kwargs))
        seconds[i] = time.perf_counter() - start
    assert all(math.isfinite(s) and s >= 0 for s in seconds)
    return Timing(seconds, out)
