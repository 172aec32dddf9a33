"""Tests of lmcourse.timing (no assertion on how long anything takes: only counts, order and
the bookkeeping of warm-up, repeats and waiting)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lmcourse  # noqa: F401  (sets the CPU XLA flag before the first computation)
from lmcourse.timing import Timing, time_fn


def test_calls_warmup_plus_repeats_and_keeps_the_last_output():
    calls = []

    def fn(x, *, scale):
        calls.append(x)
        return jnp.asarray(x * scale)

    t = time_fn(fn, 3.0, scale=2.0, repeats=4, warmup=2)
    assert len(calls) == 6
    assert t.repeats == 4 and t.seconds.shape == (4,) and t.seconds.dtype == np.float64
    assert float(t.value) == 6.0
    assert (t.seconds >= 0).all()
    assert t.min <= t.iqr[0] <= t.median <= t.iqr[1] <= t.max


def test_warmup_zero_times_the_first_call():
    calls = []
    t = time_fn(lambda: calls.append(1), repeats=1, warmup=0)
    assert calls == [1] and t.repeats == 1 and t.value is None
    assert "one run" in str(t)


def test_waits_for_every_array_of_a_pytree(monkeypatch):
    waited = []
    real = jax.block_until_ready

    def spy(tree):
        waited.append(tree)
        return real(tree)

    monkeypatch.setattr(jax, "block_until_ready", spy)
    f = jax.jit(lambda x: {"a": x + 1, "b": (x * 2, x.sum())})
    t = time_fn(f, jnp.arange(3.0), repeats=2, warmup=1)
    assert len(waited) == 3                      # warm-up + 2 timed calls, each waited for
    assert set(t.value) == {"a", "b"} and float(t.value["b"][1]) == 3.0


def test_statistics_on_known_seconds():
    t = Timing(np.array([0.004, 0.001, 0.002, 0.100]))
    assert t.median == pytest.approx(0.003)      # not the mean (0.02675): the outlier is ignored
    assert (t.min, t.max) == (0.001, 0.1)
    assert t.iqr == pytest.approx((0.00175, 0.028))
    assert str(t) == "3 ms (median of 4; min 1, max 100)"


@pytest.mark.parametrize("kwargs, match", [
    ({"repeats": 0}, "repeats"), ({"repeats": 2.5}, "repeats"), ({"repeats": True}, "repeats"),
    ({"warmup": -1}, "warmup"), ({"warmup": None}, "warmup"),
])
def test_bad_counts_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        time_fn(lambda: None, **kwargs)


def test_not_callable_raises():
    with pytest.raises(TypeError, match="callable"):
        time_fn(42)


def test_numpy_and_python_outputs_pass_through():
    out = np.arange(3.0)
    t = time_fn(lambda: out, repeats=3)
    assert t.value is out and t.repeats == 3
