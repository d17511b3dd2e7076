"""Every command the stack runs exists, with its options: Airflow's, MLflow's and
``nuru-yield``'s, parsed by their own CLIs (nothing runs)."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from tests.unit.deploy.stack import DOCKERFILE, REPO, argv_of, environment_of, pipeline_services


def _click_parse(group: Any, argv: list[str]) -> Any:
    """Resolve argv's subcommands in a click group and parse the leaf's options strictly
    (unknown options or extra arguments raise); returns the leaf command. Nothing runs."""
    import click

    context = group.make_context(group.name or "cli", [], resilient_parsing=True)
    command, rest = group, list(argv)
    while isinstance(command, click.Group):
        assert rest, f"{argv} stops at a command group"
        name, rest = rest[0], rest[1:]
        sub = command.get_command(context, name)
        assert sub is not None, f"no subcommand {name!r} in {argv}"
        strict = not isinstance(sub, click.Group)
        context = sub.make_context(
            name, rest if strict else [], parent=context, resilient_parsing=not strict
        )
        command = sub
    return command


@pytest.fixture(scope="module")
def airflow_parser() -> Any:
    from airflow.cli.cli_parser import get_parser

    return get_parser()


def _airflow_calls(services: Mapping[str, Any]) -> Iterator[list[str]]:
    """Every airflow CLI call the pipeline services make, without the `airflow` word."""
    for service in pipeline_services(services).values():
        if service.get("entrypoint") is None and service.get("command"):
            command = argv_of(service["command"])
            if command[0] != "bash":
                yield command
        test = argv_of(service.get("healthcheck", {}).get("test"))
        if test[:1] == ["CMD-SHELL"] and test[1].startswith("airflow "):
            yield shlex.split(test[1])[1:]
    script = argv_of(services["airflow-init"]["command"])[2]
    for line in script.splitlines():
        if line.strip().startswith("airflow "):
            yield shlex.split(line)[1:]


def test_airflow_commands_parse(services: dict[str, Any], airflow_parser: Any) -> None:
    calls = list(_airflow_calls(services))
    assert ["scheduler"] in calls and ["db", "migrate"] in calls
    assert any(call[:2] == ["jobs", "check"] for call in calls)
    for call in calls:
        airflow_parser.parse_args(call)


def test_nuru_and_mlflow_commands_parse(services: dict[str, Any]) -> None:
    import typer.main
    from mlflow.cli import cli as mlflow_cli

    from nuru_yield.cli import app

    nuru = typer.main.get_command(app)
    _click_parse(nuru, argv_of(services["nuru-init"]["command"]))
    api_cmd = json.loads(re.search(r"^CMD (\[.*\])$", DOCKERFILE.read_text(), re.M).group(1))
    assert api_cmd[0] == "nuru-yield"
    _click_parse(nuru, api_cmd[1:])

    mlflow = services["mlflow-server"]
    assert argv_of(mlflow["entrypoint"]) == ["mlflow"]
    server = _click_parse(mlflow_cli, argv_of(mlflow["command"]))
    import mlflow.environment_variables as mlflow_env

    known = {param.envvar for param in server.params if param.envvar}
    known |= {name for name in dir(mlflow_env) if name.startswith("MLFLOW_")}
    for variable in environment_of(mlflow):
        assert variable in known or variable.startswith("AWS_"), f"MLflow ignores {variable}"


def test_airflow_init_applies_the_pools_of_airflow_settings(services: dict[str, Any]) -> None:
    from nuru_yield.airflow_settings import build_parser

    script = argv_of(services["airflow-init"]["command"])[2]
    (line,) = [ln for ln in script.splitlines() if "nuru_yield.airflow_settings" in ln]
    argv = shlex.split(line)
    assert argv[:3] == ["python", "-m", "nuru_yield.airflow_settings"]
    mounts = dict(v.split(":")[1::-1] for v in services["airflow-init"]["volumes"])
    assert (REPO / mounts[argv[3]]).resolve() == REPO / "airflow_settings.yaml"
    assert build_parser().parse_args(argv[3:]).only == ["pools"]
