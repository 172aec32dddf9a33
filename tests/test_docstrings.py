"""Every public function of ``lmcourse`` has a docstring, and one that raises says so.

The course's style (CONTRIBUTING.md, issue 12 §4): a public function documents the errors it
raises in a ``Raises:`` section. Read from the source with ``ast`` (nothing is imported), over
every module of the package. A function is public when its name does not start with ``_``; a
method when, in addition, its class is public. "Raises" means a ``raise`` statement in the
function's own body (not in a function nested inside it). Each test lists every offender as
``path:line name`` so that one run shows all that is left to fix.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "lmcourse"
FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _is_accessor_or_overload(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """``@x.setter``/``@x.deleter`` (documented on the getter) and ``@overload`` stubs."""
    for dec in node.decorator_list:
        if isinstance(dec, ast.Attribute) and dec.attr in ("setter", "deleter"):
            return True
        if (isinstance(dec, ast.Name) and dec.id == "overload") or (
                isinstance(dec, ast.Attribute) and dec.attr == "overload"):
            return True
    return False


def public_functions(tree: ast.Module) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """``(qualified name, node)`` of the module's public functions and public methods of its
    public classes (nested classes included; functions inside functions are not public)."""
    def walk(body: list[ast.stmt], prefix: str) -> Iterator[tuple[str, ast.FunctionDef]]:
        for node in body:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                yield from walk(node.body, f"{prefix}{node.name}.")
            elif isinstance(node, FUNCTIONS) and not node.name.startswith("_") \
                    and not _is_accessor_or_overload(node):
                yield f"{prefix}{node.name}", node
            elif isinstance(node, (ast.If, ast.Try)):          # e.g. `if TYPE_CHECKING:` blocks
                for block in (node.body, node.orelse, getattr(node, "finalbody", [])):
                    yield from walk(block, prefix)
    yield from walk(tree.body, "")


def raises_directly(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """Whether a ``raise`` statement is in the function's own body (nested defs excluded)."""
    stack: list[ast.AST] = list(node.body)
    while stack:
        child = stack.pop()
        if isinstance(child, ast.Raise):
            return True
        if isinstance(child, (*FUNCTIONS, ast.ClassDef, ast.Lambda)):
            continue
        stack.extend(ast.iter_child_nodes(child))
    return False


def offenders() -> dict[str, list[str]]:
    """``{"missing docstring": [...], "a raise but no Raises: section": [...]}``, each ``path:line name``."""
    found: dict[str, list[str]] = {"missing docstring": [], "a raise but no Raises: section": []}
    for path in _modules():
        rel = path.relative_to(PACKAGE.parents[1]).as_posix()
        for name, node in public_functions(ast.parse(path.read_text(), filename=str(path))):
            doc = ast.get_docstring(node)
            where = f"{rel}:{node.lineno} {name}"
            if doc is None:
                found["missing docstring"].append(where)
            elif raises_directly(node) and "Raises:" not in doc:
                found["a raise but no Raises: section"].append(where)
    return found


def _report(kind: str) -> str:
    items = offenders()[kind]
    return f"{len(items)} public function(s) with {kind}:\n  " + "\n  ".join(items)


def test_the_walk_sees_the_package():
    names = {p.name for p in _modules()}
    assert {"validation.py", "training.py", "bert.py", "catalog.py"} <= names
    # the rules themselves, on a small module
    tree = ast.parse(
        "def f(x):\n    '''Doc.\n\n    Raises:\n        ValueError: bad.\n    '''\n    raise ValueError\n"
        "def g(x):\n    '''Doc.'''\n    def inner():\n        raise ValueError\n    return inner\n"
        "def h(x):\n    '''Doc.'''\n    if x:\n        raise ValueError\n"
        "def _private():\n    raise ValueError\n"
        "class _Hidden:\n    def m(self):\n        raise ValueError\n"
        "class C:\n    def m(self):\n        return 1\n"
        "    @property\n    def p(self):\n        '''Doc.'''\n        return 1\n"
        "    @p.setter\n    def p(self, v):\n        raise AttributeError\n")
    seen = {name: (ast.get_docstring(node) is not None, raises_directly(node))
            for name, node in public_functions(tree)}
    assert seen == {"f": (True, True), "g": (True, False), "h": (True, True),
                    "C.m": (False, False), "C.p": (True, False)}


@pytest.mark.parametrize("kind", ["missing docstring", "a raise but no Raises: section"])
def test_public_functions_are_documented(kind):
    if offenders()[kind]:
        pytest.fail(_report(kind), pytrace=False)
