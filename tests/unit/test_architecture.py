"""The package's structure (docs/DESIGN.md, "Layout"): what may import what, checked on the source."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "include" / "nuru_yield"


def _imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            modules.add("." * node.level + (node.module or ""))
    return modules


@pytest.mark.parametrize("module", ["names.py", "steps.py"])
def test_shared_modules_import_only_the_standard_library(module: str) -> None:
    """Every part of the system may import ``nuru_yield.names`` and ``nuru_yield.steps``:
    they must not pull in anything, neither a third-party package nor another module of
    this package."""
    imported = _imported_modules(PACKAGE / module)
    assert imported, "the check parsed nothing"
    outside = {m for m in imported if m.partition(".")[0] not in sys.stdlib_module_names}
    assert outside == {"__future__"} or outside == set(), outside
