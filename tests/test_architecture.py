"""The shape rules of docs/architecture.md, checked on the source: imports only at module level (no function-level
import of the package's own modules outside the command line) and functions short enough to read at once
(every public name resolving is tests/test_public_api.py's)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import metricloss as ml

SRC = Path(ml.__file__).resolve().parent
MODULES = sorted(SRC.rglob("*.py"))
MAX_LINES = 80  # of a function's body, its docstring excluded


def _functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def _body_lines(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    body = fn.body
    if len(body) > 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the docstring
    return fn.end_lineno - body[0].lineno + 1


def _own_imports(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    found = []
    for node in ast.walk(fn):
        if isinstance(node, ast.ImportFrom) and (node.level > 0 or (node.module or "").startswith("metricloss")):
            found.append("." * node.level + (node.module or ""))
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("metricloss")]
    return found


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_no_function_level_import_of_the_package_and_no_long_function(path):
    for fn in _functions(path):
        if path.name != "cli.py":  # the command line imports each command's module when it runs
            assert not _own_imports(fn), f"{fn.name} imports {_own_imports(fn)} inside the function"
        assert _body_lines(fn) <= MAX_LINES, f"{fn.name} is {_body_lines(fn)} lines long"


def test_the_rules_see_what_they_check(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from .io import load\n    return load\n\n\ndef g():\n" + "    x = 1\n" * 81)
    fns = {fn.name: fn for fn in _functions(bad)}
    assert _own_imports(fns["f"]) == [".io"] and _body_lines(fns["g"]) == 81

