"""The "run me to check your answer" helper that every chapter's exercises use.

Used in chapters: 00, 01, 02, 03, 04, 05, 06, 07, 08, 09, 10, 11, 12.

Each exercise has three cells:

1. the student's stub, with one name (``my_f_beta``) whose body raises ``NotImplementedError``;
2. the hidden solution (collapsed in JupyterLab), with another name (``f_beta_solution``);
3. a check cell that calls :func:`check` with a test of the question asked.

So "Run All" never checks the solution in place of the student's code: the student's function is
tested first; only while it is still the untouched stub does :func:`check` say so and run the test
on the hidden solution instead (which proves the test itself passes on a right answer). A known
wrong answer can be passed as ``wrong`` to prove the test also fails where it should.

Pattern from the Deep Learning Indaba practicals (exercise, hidden solution, "run me" cell).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["check"]


def check(test: Callable[[Any], None], answer: Any, solution: Any, *, wrong: Any = None,
          name: str = "exercise") -> bool:
    """Test the student's ``answer``; fall back to the hidden ``solution`` while it is a stub.

    Args:
        test: a function that takes an answer (usually a function) and raises ``AssertionError``
            with a helpful message when it is wrong. It should test the question asked.
        answer: the student's answer (the stub until they fill it in).
        solution: the hidden reference solution.
        wrong: optional known-wrong answer; if given, ``test(wrong)`` must raise
            ``AssertionError`` (a check that cannot fail is no check).
        name: printed in the messages.

    Returns:
        ``True`` when the student's answer passed, ``False`` when it was still the stub (and the
        hidden solution passed in its place).

    Raises:
        AssertionError: the student's answer is wrong (the message says why), the solution fails
            the test, or ``wrong`` passes it.
    """
    if wrong is not None:
        try:
            test(wrong)
        except AssertionError:
            pass
        else:
            raise AssertionError(f"{name}: the check accepted a known wrong answer; it tests nothing")
    try:
        test(answer)
    except NotImplementedError:
        test(solution)
        print(f"{name}: not answered yet (your function still raises NotImplementedError). "
              "The hidden solution passes this check; now write your own and run this cell again.")
        return False
    print(f"{name}: correct")
    return True
