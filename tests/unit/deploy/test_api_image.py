"""The API image: its requirements cover what the API imports (and nothing of Airflow or
training), and it ships no development wing."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.deploy.stack import API_REQUIREMENTS, DOCKERFILE, REPO


def _requirement_closure(requirements: list[str]) -> set[str]:
    """Distributions (canonical names) that pip installs for these requirements."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    done: set[tuple[str, str]] = set()
    todo = [Requirement(line) for line in requirements]
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        for extra in {"", *requirement.extras}:
            if (name, extra) in done:
                continue
            done.add((name, extra))
            for line in metadata.requires(requirement.name) or []:
                dependency = Requirement(line)
                marker = dependency.marker
                if (marker is None and not extra) or (
                    marker is not None and marker.evaluate({"extra": extra})
                ):
                    todo.append(dependency)
    return {name for name, _ in done}


def _serving_imports() -> set[str]:
    """Every module the serving package imports, function-level (lazy) imports included."""
    import nuru_yield.serving

    modules = set()
    for path in Path(nuru_yield.serving.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module)
    return {module for module in modules if not module.startswith("nuru_yield")}


_BLOCKED_IMPORT_PROBE = """
import importlib, os, pkgutil, sys
blocked = set(os.environ["BLOCKED_MODULES"].split(","))
class OutsideTheImage:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in blocked or f"{name}.".startswith("nuru_yield.dev."):
            raise ModuleNotFoundError(f"{name} is not in the API image", name=name)
sys.meta_path.insert(0, OutsideTheImage())
import nuru_yield.serving
for info in pkgutil.walk_packages(nuru_yield.serving.__path__, "nuru_yield.serving."):
    importlib.import_module(info.name)
for module in os.environ["LAZY_MODULES"].split(","):
    importlib.import_module(module)
import nuru_yield.cli
from nuru_yield.serving.app import create_app
create_app()
print("ok")
"""


def test_api_image_requirements_cover_what_the_api_imports(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from importlib import metadata

    from packaging.utils import canonicalize_name

    pytest.importorskip("nuru_yield.serving", reason="the API package is not importable")
    requirements = [
        line.strip()
        for line in API_REQUIREMENTS.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    closure = _requirement_closure(requirements)
    pinned = {
        canonicalize_name(line.split("==")[0])
        for line in (REPO / "requirements.txt").read_text().splitlines()
        if "==" in line
    }
    assert closure <= pinned, f"not pinned by requirements.txt: {sorted(closure - pinned)}"
    assert not {"apache-airflow", "apache-airflow-core", "mlflow", "scikit-learn"} & closure

    blocked = sorted(
        module
        for module, dists in metadata.packages_distributions().items()
        if module != "nuru_yield" and not {canonicalize_name(d) for d in dists} & closure
    )
    monkeypatch.setenv("BLOCKED_MODULES", ",".join(blocked))
    monkeypatch.setenv("LAZY_MODULES", ",".join(sorted(_serving_imports())))
    monkeypatch.setenv("API_DB_URL", "postgresql+psycopg://nuru_api@127.0.0.1:9/nuru")
    result = subprocess.run(
        [sys.executable, "-c", _BLOCKED_IMPORT_PROBE], capture_output=True, text=True, cwd=REPO
    )
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-2000:]


def test_api_image_ships_no_development_wing(tmp_path: Path) -> None:
    """The API stage's install step, run on a copy of the sources, leaves a package without
    ``nuru_yield.dev`` (the probe above shows the API and the CLI import without it)."""
    from setuptools import find_packages

    api_stage = DOCKERFILE.read_text().partition(" AS api\n")[2]
    (install,) = [line for line in api_stage.splitlines() if "pip install --no-deps ." in line]
    before_install = install.removeprefix("RUN").partition("pip install")[0].rstrip(" &")
    shutil.copytree(REPO / "include", tmp_path / "include")
    subprocess.run(["bash", "-c", before_install or "true"], cwd=tmp_path, check=True)

    shipped = set(find_packages(where=tmp_path / "include"))
    assert {"nuru_yield", "nuru_yield.serving", "nuru_yield.models"} <= shipped
    assert not {package for package in shipped if f"{package}.".startswith("nuru_yield.dev.")}
