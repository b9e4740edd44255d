"""The shape rules of docs/architecture.md, checked on the source: imports only at module level (no function-level
import of the package's own modules outside the command line) and functions short enough to read at once
(every public name resolving is tests/test_public_api.py's)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import metricloss as ml
from metricloss.zoo import available

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



ROOT = Path(__file__).resolve().parents[1]


def _path_edits(path: Path) -> list[int]:
    """Lines of ``path`` that call ``sys.path.insert`` / ``sys.path.append``."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        func = getattr(node, "func", None)
        if (isinstance(node, ast.Call) and isinstance(func, ast.Attribute) and func.attr in ("insert", "append")
                and ast.unparse(func.value) == "sys.path"):
            lines.append(node.lineno)
    return lines


def test_scripts_benchmarks_and_tests_import_without_editing_sys_path():
    # A script imports its siblings (its folder is on sys.path when it runs) and tests import tests/ helpers (pytest
    # puts tests/ first); none reaches into another folder by editing sys.path.
    files = [p for folder in ("benchmarks", "scripts", "tests") for p in sorted((ROOT / folder).glob("*.py"))]
    assert files
    offenders = {str(p.relative_to(ROOT)): lines for p in files if (lines := _path_edits(p))}
    assert offenders == {}


def test_path_edit_rule_sees_an_insert(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import sys\nsys.path.insert(0, '..')\n")
    assert _path_edits(bad) == [2]


def test_every_shipped_surrogate_has_one_builder_entry():
    # benchmarks/make_zoo.py's ENTRIES table is the one builder of the zoo: every shipped file is learned by an entry,
    # and every entry names a shipped file.
    tree = ast.parse((ROOT / "benchmarks" / "make_zoo.py").read_text())
    entries = next(node.value for node in ast.walk(tree) if isinstance(node, ast.AnnAssign)
                   and getattr(node.target, "id", None) == "ENTRIES")
    names = {key.value for key in entries.keys}
    assert names == set(available())


def test_every_zoo_card_row_is_a_measurement(monkeypatch):
    # Each ENTRIES row is a factory's product, called with the learned surrogate when a card is written; a factory that
    # forgot to return its closure left None there, and the card failed only after a long learning run.
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # how the script itself runs: its folder on sys.path
    make_zoo = importlib.import_module("make_zoo")
    bad = [(name, i) for name, entry in make_zoo.ENTRIES.items() for i, row in enumerate(entry.rows)
           if not callable(row)]
    assert bad == []
