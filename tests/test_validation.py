"""Tests of lmcourse.validation: every helper accepts what it should and refuses bools, NaN, inf,
fractions and out-of-range values with a message that names the argument."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lmcourse  # noqa: F401  (sets the CPU XLA flag before the first computation)
from lmcourse import validation as V

NAN, INF = float("nan"), float("inf")


# --- integers -----------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [1, 7, np.int64(3), np.int32(1), np.uint8(2), jnp.asarray(5),
                                   np.asarray(4)])
def test_check_positive_int_accepts_python_numpy_and_concrete_jax_integers(value):
    n = V.check_positive_int("n", value)
    assert type(n) is int and n == int(value)


@pytest.mark.parametrize("value", [0, -1, True, False, 2.0, 2.5, NAN, INF, "3", None,
                                   np.float32(2.0), np.array([1, 2])])
def test_check_positive_int_rejects(value):
    with pytest.raises(ValueError, match="n must be a positive integer"):
        V.check_positive_int("n", value)


def test_check_int_bounds_and_messages():
    assert V.check_int("pad", 0, 0) == 0 and V.check_int("seed", -5, -10) == -5
    assert type(V.check_int("k", np.int16(3), 1)) is int
    with pytest.raises(ValueError, match=r"pad must be an integer >= 0, got -1$"):
        V.check_int("pad", -1, 0)
    with pytest.raises(ValueError, match="layers must be an integer >= 1, got the bool True"):
        V.check_int("layers", True, 1)
    with pytest.raises(ValueError, match="d_model must be an integer >= 1, got float 768.0"):
        V.check_int("d_model", 768.0, 1)
    for bad in (NAN, INF, "3", None, np.float64(3.0)):
        with pytest.raises(ValueError, match="must be an integer >= 1"):
            V.check_int("n", bad, 1)


def test_check_int_refuses_a_traced_value():
    @jax.jit
    def f(n):
        V.check_int("n", n, 1)
        return n

    with pytest.raises(ValueError, match="n must be an integer >= 1, got"):
        f(3)


def test_check_batch_size_edges():
    assert V.check_batch_size(1, 10) == 1 and V.check_batch_size(np.int64(10), 10) == 10
    for bad in (0, 1001, True, 2.0, NAN, None):
        with pytest.raises(ValueError, match=r"batch_size must be an integer between 1 and the "
                                             r"1,000 training ratings"):
            V.check_batch_size(bad, 1000, "training ratings")


def test_check_bool():
    assert V.check_bool("pooler", True) is True and V.check_bool("pooler", np.bool_(False)) is False
    for bad in (0, 1, "no", None, 1.0):
        with pytest.raises(ValueError, match="pooler must be True or False"):
            V.check_bool("pooler", bad)


# --- real numbers -------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [0.0, 0, 0.3, 1, 1.0, np.float32(0.5), jnp.asarray(0.25)])
def test_check_rate_accepts_the_closed_unit_interval(value):
    assert V.check_rate("dropout_rate", value) == pytest.approx(float(value))


@pytest.mark.parametrize("value", [-0.1, 1.1, NAN, INF, True, "0.5", None, np.array([0.5, 0.5])])
def test_check_rate_rejects(value):
    with pytest.raises(ValueError, match=r"dropout_rate must be a probability in \[0, 1\]"):
        V.check_rate("dropout_rate", value)


def test_check_float_intervals_and_messages():
    assert V.check_float("power", 1, 1.0) == 1.0
    assert V.check_float("x", -3.0) == -3.0
    assert V.check_float("t", 0.5, 0.0, 1.0, low_open=True, high_open=True) == 0.5
    cases = [
        (dict(low=1.0), 0.5, "power must be a finite number >= 1, got 0.5"),
        (dict(low=0.0, low_open=True), 0.0, "must be a finite number > 0"),
        (dict(high=2.0, high_open=True), 2.0, "must be a finite number < 2"),
        (dict(low=0.0, high=1.0, high_open=True), 1.0, r"must be a finite number in \[0, 1\)"),
        (dict(low=0.0, high=1.0, low_open=True), 0.0, r"must be a finite number in \(0, 1\]"),
    ]
    for kwargs, value, match in cases:
        with pytest.raises(ValueError, match=match):
            V.check_float("power", value, **kwargs)
    for bad in (NAN, INF, -INF, True, "1", None, np.ones(2)):
        with pytest.raises(ValueError, match="finite number"):
            V.check_float("x", bad)


def test_check_positive_and_nonnegative_float():
    assert V.check_positive_float("lr", 1e-3) == 1e-3
    assert V.check_nonnegative_float("lam", 0) == 0.0
    assert V.check_nonnegative_float("lam", np.float32(2.5)) == 2.5
    for bad in (0.0, -1.0, NAN, INF, True):
        with pytest.raises(ValueError, match="lr must be a finite number > 0"):
            V.check_positive_float("lr", bad)
    for bad in (-1e-9, NAN, INF, -INF, False, "0"):
        with pytest.raises(ValueError, match="lam must be a finite number >= 0"):
            V.check_nonnegative_float("lam", bad)


def test_check_fraction_closed_half_open_and_open():
    assert V.check_fraction("iou", 0) == 0.0 and V.check_fraction("iou", 1.0) == 1.0
    assert V.check_fraction("t", 0.0, open_high=True) == 0.0
    assert V.check_fraction("t", np.float64(0.2), open_low=True, open_high=True) == 0.2
    with pytest.raises(ValueError, match=r"iou_threshold must be in \[0, 1\], got 1.5"):
        V.check_fraction("iou_threshold", 1.5)
    with pytest.raises(ValueError, match=r"threshold must be in \[0, 1\), got 1.0"):
        V.check_fraction("threshold", 1.0, open_high=True)
    with pytest.raises(ValueError, match=r"x must be in \(0, 1\], got 0"):
        V.check_fraction("x", 0, open_low=True)
    for bad in (0.0, 1.0, NAN):
        with pytest.raises(ValueError, match=r"test_fraction must be in the open interval \(0, 1\)"):
            V.check_fraction("test_fraction", bad, open_low=True, open_high=True)
    for bad in (NAN, INF, True, "0.5", None):
        with pytest.raises(ValueError, match="iou"):
            V.check_fraction("iou", bad)


def test_check_finite_counts_and_locates():
    a = np.zeros((3, 2))
    assert V.check_finite("x", a) is not None
    a[2, 1], a[0, 0] = np.nan, np.inf
    with pytest.raises(ValueError, match=r"x contains 2 NaN or infinite value\(s\) \(first at "
                                         r"index \(0, 0\)\); look"):
        V.check_finite("x", a, hint="look")


# --- arrays: ranges, counts, ids ----------------------------------------------------------------

def test_check_range_probability_and_count_let_traced_values_pass():
    V.check_probability("p", np.array([0.0, 1.0]))
    V.check_count("k", np.array([0, 3]), 0, 3)
    V.check_range("w", 5.0, 0.0, None, "any")
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\], got nan"):
        V.check_probability("p", np.array([0.5, np.nan]))
    with pytest.raises(ValueError, match=r"w must be in \[0, inf\), got inf"):
        V.check_range("w", INF, 0.0, None, "finite")
    with pytest.raises(ValueError, match="whole number"):
        V.check_count("k", 1.5)
    with pytest.raises(ValueError, match=r"k must be in \[0, 3\]"):
        V.check_count("k", 4, 0, 3)

    @jax.jit
    def f(p):
        V.check_probability("p", p)       # traced: cannot be tested, passes
        return p

    assert float(f(2.0)) == 2.0


def test_concrete_and_is_traced():
    assert V.concrete(3).tolist() == 3 and V.concrete(jnp.ones(2)).tolist() == [1.0, 1.0]
    assert V.concrete("text") is None and V.concrete(object()) is None
    seen = []

    @jax.jit
    def f(x):
        seen.append((V.concrete(x), V.is_traced(x)))
        return x

    f(1.0)
    assert seen == [(None, True)]
    assert not V.is_traced(np.ones(2)) and not V.is_traced(jnp.ones(2))


def test_check_ids_accepts_edges_and_returns_int64():
    out = V.check_ids("ids", [0, 4], 5)
    assert out.dtype == np.int64 and out.tolist() == [0, 4]
    assert V.check_ids("ids", np.zeros((0,), np.float32), 5).shape == (0,)
    assert V.check_ids("ids", jnp.asarray([[1, 2]]), 3).shape == (1, 2)
    assert V.check_ids("u", np.array([1.0, 2.0]), 3, whole_floats=True).tolist() == [1, 2]


def test_check_ids_message_gives_position_range_and_fix():
    ids = np.array([[1, 2, 50], [-1, 0, 3]])
    with pytest.raises(ValueError, match=r"input_ids\[0, 2\] = 50 is outside the table's range "
                                         r"\[0, 49\] \(vocab_size=50; 2 bad id\(s\), min -1, max "
                                         r"50\); use the right tokenizer"):
        V.check_ids("input_ids", ids, 50, size_name="vocab_size", fix="use the right tokenizer")
    with pytest.raises(ValueError, match=r"^k = 7 is outside the table's range \[0, 4\] "
                                         r"\(size=5; 1 bad id\(s\), min 7, max 7\)$"):
        V.check_ids("k", 7, 5)
    for bad, match in ((np.array([0.5]), "integer ids, got dtype float64"),
                       (np.array([1.0, np.nan]), "integer ids"),
                       (np.array([True]), "integer ids, got dtype bool"),
                       (np.array([1.0]), "integer ids")):
        with pytest.raises(ValueError, match=match):
            V.check_ids("ids", bad, 5)
    with pytest.raises(ValueError, match="integer ids"):
        V.check_ids("ids", np.array([0.5]), 5, whole_floats=True)
    assert math.isfinite(float(V.check_ids("ids", np.array([4]), 5)[0]))
