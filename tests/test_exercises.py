"""The exercise checker: the student's stub is tested first, never replaced silently."""

import pytest

from lmcourse.exercises import check


def _test_square(f):
    assert f(3) == 9, f"expected 9, got {f(3)}"


def _stub(x):
    raise NotImplementedError


def test_right_answer_passes():
    assert check(_test_square, lambda x: x * x, lambda x: x**2) is True


def test_stub_falls_back_to_solution_and_says_so(capsys):
    assert check(_test_square, _stub, lambda x: x**2, name="ex1") is False
    assert "not answered yet" in capsys.readouterr().out


def test_wrong_answer_fails_even_with_a_good_solution():
    with pytest.raises(AssertionError, match="expected 9"):
        check(_test_square, lambda x: x + x, lambda x: x**2)


def test_broken_solution_is_caught():
    with pytest.raises(AssertionError):
        check(_test_square, _stub, lambda x: 0)


def test_a_check_that_accepts_a_known_wrong_answer_is_rejected():
    with pytest.raises(AssertionError, match="tests nothing"):
        check(lambda f: None, lambda x: x * x, lambda x: x * x, wrong=lambda x: 0)
    assert check(_test_square, lambda x: x * x, lambda x: x * x, wrong=lambda x: 0)
