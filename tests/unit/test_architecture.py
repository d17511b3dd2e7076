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


# MLflow client calls that move an alias or a stage.
ALIAS_MOVES = {
    "set_registered_model_alias",
    "delete_registered_model_alias",
    "transition_model_version_stage",
}


def test_only_the_recorded_promotion_paths_move_an_alias() -> None:
    """Every way ``@champion`` (or any alias) can move goes through the gate or the recorded
    promote / rollback commands (``models/registry.py``: ``promote_version`` and
    ``rollback`` record a ``model_promotions`` row, then move). A benchmark once moved
    ``@champion`` of the configured registry with a bare ``set_registered_model_alias``: no
    gate, no audit row."""
    repo = PACKAGE.parents[1]
    sources = [
        *PACKAGE.rglob("*.py"),
        *(repo / "dags").rglob("*.py"),
        *(repo / "scripts").rglob("*.py"),
    ]
    movers: dict[str, set[str]] = {}
    for path in sources:
        tree = ast.parse(path.read_text())
        for statement in tree.body:  # each module-level function or class, or other code
            name = getattr(statement, "name", "<module>")
            for node in ast.walk(statement):
                if isinstance(node, ast.Attribute) and node.attr in ALIAS_MOVES:
                    where = f"{path.relative_to(repo)}::{name}"
                    movers.setdefault(where, set()).add(node.attr)
    registry = "include/nuru_yield/models/registry.py"
    assert set(movers) == {
        f"{registry}::_move_champion",  # called only inside promote_version's and rollback's move
        f"{registry}::promote_version",  # its move(), run by record_decision
        f"{registry}::set_stage",  # the stage that follows the alias
    }, movers
