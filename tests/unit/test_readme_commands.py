"""Every ``nuru-yield`` command the README and docs/DESIGN.md document is run by a test.

``nuru-yield bench features`` once crashed with a traceback after a refactor (the run date
became a date) and no test noticed: no test ran it. :data:`RUN_BY` names, for each command,
the tests that run it through the command line; a command documented without an entry, an
entry naming a test that does not exist, or a documented option the command does not have
fails here.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest
import typer

from nuru_yield.cli import app

REPO = Path(__file__).resolve().parents[2]
DOCUMENTS = ("README.md", "docs/DESIGN.md")

# Command → the tests that run it through `nuru-yield` (main(), the console script or
# `python -m nuru_yield`), each as "path::test_function".
RUN_BY: dict[str, list[str]] = {
    "sample-data": [
        "tests/unit/sample_data/test_sample_data.py::test_cli_writes_the_raw_contract_into_the_lake"
    ],
    "ingest ndvi": ["tests/unit/sources/test_ndvi_ingest.py::test_the_ingest_ndvi_command"],
    **{
        f"ingest {product}": [
            "tests/unit/sources/test_readme_ingest.py::test_the_readme_ingest_commands_run_as_written"
        ]
        for product in ("plots", "chirps", "agera5", "yields")
    },
    "ingest all": [
        "tests/unit/sources/test_sources.py::"
        "test_ingest_all_runs_every_configured_product_and_leaves_the_others"
    ],
    "db upgrade": ["tests/integration/test_db.py::test_cli_db_upgrade_twice_on_sqlite"],
    "lake upgrade": [
        "tests/unit/test_raw_layout.py::test_upgrade_moves_flat_files_into_buckets_once"
    ],
    "features": [
        "tests/unit/features/test_features_materialize.py::test_cli_features_prints_one_line_and_fails_with_one_line"
    ],
    "train": ["tests/integration/test_registry.py::test_cli_train_promotes_a_first_champion"],
    "skill": [
        "tests/integration/test_counties.py::test_the_champions_skill_and_a_nights_county_forecasts"
    ],
    "backtest": [
        "tests/integration/test_registry.py::test_cli_backtest_prints_a_recipe_by_lead_time"
    ],
    "promote": [
        "tests/integration/test_registry.py::test_seed_script_registers_the_run_and_moves_the_production_alias",
        "tests/integration/test_registry.py::test_promote_refuses_unknown_stages_and_runs_without_a_model",
    ],
    "rollback": [
        "tests/integration/test_registry.py::test_rollback_restores_previous_and_is_recorded"
    ],
    "score": [
        "tests/reliability/test_pipeline_empty_night.py::test_an_empty_night_is_its_own_outcome_everywhere"
    ],
    "drift": [
        "tests/integration/test_monitoring_run.py::test_cli_on_postgres_writes_rows_and_reports"
    ],
    "serve": ["tests/integration/test_api_server.py::test_nuru_yield_serve_over_http"],
    "demo": ["tests/e2e/test_demo.py::test_the_demo_runs_the_night_in_its_own_scratch_home"],
    **{
        f"bench {kind}": [
            "tests/integration/test_dev_isolation.py::"
            "test_each_bench_runs_through_the_command_and_leaves_the_deployment_alone"
        ]
        for kind in ("features", "scoring", "api", "night", "train", "ingest")
    },
}


def _snippets(text: str) -> list[str]:
    """The code a reader may copy: each line of a fenced block, each inline code span (which
    may wrap over lines), whitespace made single."""
    snippets = []
    for block in re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.S | re.M):
        snippets += block.splitlines()
    prose = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.S | re.M)
    snippets += re.findall(r"`([^`]+)`", prose)
    return [" ".join(snippet.split()) for snippet in snippets]


def documented_commands() -> dict[str, set[str]]:
    """Each documented command (``db upgrade``, ``bench night``, …) and the options
    documented with it anywhere."""
    found: dict[str, set[str]] = {}
    for document in DOCUMENTS:
        for snippet in _snippets((REPO / document).read_text()):
            snippet = snippet.split(" #", 1)[0].replace("\\|", "|")
            for part in re.split(r"&&|;", snippet):
                match = re.search(r"(?:^|[\s(/])nuru-yield((?: [^\s]+)*)", part)
                if not match:
                    continue
                words = match.group(1).split()
                path: list[str] = []
                for word in words:
                    if not re.fullmatch(r"[a-z][a-z|-]*", word):
                        break
                    path.append(word)
                if not path:
                    continue
                options = {w.strip("[]") for w in words if w.strip("[").startswith("--")}
                *group, last = path
                for name in last.split("|"):
                    found.setdefault(" ".join([*group, name]), set()).update(options)
    return found


def _resolve(path: str) -> Any:
    """The CLI's command or group for ``db upgrade``, ``bench``, …; None for neither."""
    command: Any = typer.main.get_command(app)
    for word in path.split():
        if word not in getattr(command, "commands", {}):
            return None
        command = command.commands[word]
    return command


def _command(path: str) -> Any:
    """The CLI's command for ``db upgrade``, ``bench night``, …; None for no such command."""
    command = _resolve(path)
    return None if hasattr(command, "commands") else command


def runnable_commands() -> dict[str, set[str]]:
    """The documented commands, less a group named alone ("every `nuru-yield bench`")."""
    return {
        path: options
        for path, options in documented_commands().items()
        if not hasattr(_resolve(path), "commands")
    }


def test_the_documents_name_commands() -> None:
    documented = runnable_commands()
    assert {"sample-data", "bench night", "lake upgrade", "demo"} <= set(documented)
    assert "--interactions" in documented["bench scoring"]


def test_every_documented_command_and_option_exists() -> None:
    for path, options in runnable_commands().items():
        command = _command(path)
        assert command is not None, f"documented `nuru-yield {path}` is not a command"
        known = {option for param in command.params for option in param.opts}
        assert options <= known, f"nuru-yield {path}: no option {sorted(options - known)}"


def test_every_documented_command_is_run_by_a_test() -> None:
    missing = sorted(set(runnable_commands()) - set(RUN_BY))
    assert not missing, f"documented commands no test runs (add them to RUN_BY): {missing}"
    assert all(_command(path) for path in RUN_BY), "RUN_BY names a command the CLI lacks"


@pytest.mark.parametrize("path", sorted(RUN_BY))
def test_each_named_test_exists_and_names_its_command(path: str) -> None:
    for test in RUN_BY[path]:
        file, _, name = test.partition("::")
        source = (REPO / file).read_text()
        functions = {
            node.name
            for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        }
        assert name in functions, f"{test} does not exist"
        helpers = re.findall(r"^from (tests(?:\.\w+)+) import", source, flags=re.M)
        for helper in helpers:  # e.g. the helper that starts the command for the test
            source += (REPO / (helper.replace(".", "/") + ".py")).read_text()
        for word in path.split():
            assert f'"{word}"' in source, f"{file} never spells the command word {word!r}"
