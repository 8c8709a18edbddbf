"""The package's shape stays walkable: few top-level modules, packages that say what they own,
functions short enough to read."""

from __future__ import annotations

import ast
from pathlib import Path

import lorabench

PACKAGE = Path(lorabench.__file__).parent
MAX_TOP_LEVEL_MODULES = 10
MAX_FUNCTION_LINES = 60
MAX_OWNER_LINES = 2


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_the_top_level_holds_few_modules() -> None:
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


def test_every_package_says_what_it_owns_in_two_lines() -> None:
    for init in PACKAGE.rglob("__init__.py"):
        if init.parent == PACKAGE:
            continue
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc, f"{init}: no docstring"
        owner = doc.split("\n\n")[0]
        assert len(owner.splitlines()) <= MAX_OWNER_LINES, f"{init}: {owner}"


def test_no_function_is_longer_than_a_screen() -> None:
    long = [
        f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({lines} lines)"
        for path in _modules()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and (lines := node.end_lineno - node.lineno + 1) > MAX_FUNCTION_LINES
    ]
    assert not long, long
