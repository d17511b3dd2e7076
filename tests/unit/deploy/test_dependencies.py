"""What the package declares it needs, and how the stack and the docs spell database URLs."""

from __future__ import annotations

import ast
import re

from tests.unit.deploy.stack import COMPOSE_FILE, ENV_EXAMPLE, REPO


def _package_imports() -> set[str]:
    """Top-level modules that the package, the DAGs and the scripts import (lazy imports
    included)."""
    modules = set()
    for root in (REPO / "include" / "nuru_yield", REPO / "dags", REPO / "scripts"):
        for path in root.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    modules |= {alias.name.partition(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules.add(node.module.partition(".")[0])
    return modules


def test_every_declared_dependency_is_imported() -> None:
    """pyproject's dependencies name what the package imports, nothing more (a driver
    declared but never used is weight in every image and a dead lead for a reader)."""
    import tomllib
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    provided: dict[str, set[str]] = {}
    for module, dists in metadata.packages_distributions().items():
        for dist in dists:
            provided.setdefault(canonicalize_name(dist), set()).add(module)
    # Imported through another package's module: uvicorn's httptools protocol, which the
    # API's request-head limits subclass.
    imported = _package_imports() | {"httptools"}

    def modules_of(name: str) -> set[str]:
        """The modules of a distribution, or of its own requirements for a meta-package
        (``apache-airflow`` installs ``airflow`` through ``apache-airflow-core``)."""
        modules = set(provided.get(canonicalize_name(name), set()))
        if not modules:
            for line in metadata.requires(name) or []:
                dependency = Requirement(line)
                if dependency.marker is None:
                    modules |= provided.get(canonicalize_name(dependency.name), set())
        return modules

    unused = [
        requirement
        for requirement in declared
        if not modules_of(Requirement(requirement).name) & imported
    ]
    assert not unused, f"declared in pyproject.toml but never imported: {unused}"


def test_database_urls_name_one_postgresql_driver() -> None:
    """Every Nuru Yield URL in the docs and the stack spells ``postgresql+psycopg://``; only
    Airflow's own metadata database keeps the psycopg2 driver Airflow documents."""
    documents = [REPO / "README.md", REPO / "docs" / "DESIGN.md", COMPOSE_FILE, ENV_EXAMPLE]
    spellings = {}
    for document in documents:
        for line in document.read_text().splitlines():
            # A URL with a server part (not a bare scheme named in prose).
            for driver in re.findall(r"postgresql\+(\w+)://[^`\s]", line):
                if "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" not in line:
                    spellings.setdefault(driver, []).append(f"{document.name}: {line.strip()}")
    assert set(spellings) == {"psycopg"}, spellings
