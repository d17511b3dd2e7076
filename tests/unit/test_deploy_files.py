"""The production stack's files, checked without a Docker engine.

`docker compose config` needs the compose plugin, which this machine (and a fresh CI
runner, possibly) lacks: the compose file is validated against the compose-spec JSON schema
vendored by check-jsonschema, with its variables interpolated the way compose does, and
every path, command, variable, image and SQL query it references is checked against the
repository, the installed CLIs (Airflow, MLflow, nuru-yield) and the database schema. Where
`docker compose` exists, it validates the file as well.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.resources
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from tests.fixtures.services import unavailable

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
DOCKERFILE = REPO / "docker" / "Dockerfile"
API_REQUIREMENTS = REPO / "docker" / "requirements-api.in"
DASHBOARDS = REPO / "docker" / "grafana" / "dashboards"
DATASOURCES = REPO / "docker" / "grafana" / "provisioning" / "datasources"
INIT_SQL_SCRIPT = REPO / "docker" / "postgres" / "init-databases.sh"
WORKFLOW = REPO / ".github" / "workflows" / "ci.yml"

# Services the production stack must have, and the ones it makes optional (compose profiles).
REQUIRED_SERVICES = {
    "postgres",
    "minio",
    "minio-init",
    "mlflow-server",
    "nuru-init",
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
    "redis",
    "inference-api",
}
OPTIONAL_SERVICES = {"nginx": "nginx", "grafana": "grafana", "flower": "flower"}
SECRETS = {
    "POSTGRES_PASSWORD",
    "AIRFLOW_DB_PASSWORD",
    "MLFLOW_DB_PASSWORD",
    "NURU_DB_PASSWORD",
    "NURU_API_DB_PASSWORD",
    "MINIO_ROOT_USER",
    "MINIO_ROOT_PASSWORD",
    "S3_ACCESS_KEY",
    "S3_SECRET_KEY",
    "S3_API_ACCESS_KEY",
    "S3_API_SECRET_KEY",
    "API_KEY",
    "AIRFLOW_FERNET_KEY",
    "AIRFLOW_JWT_SECRET",
    "AIRFLOW_API_SECRET_KEY",
    "AIRFLOW_ADMIN_PASSWORD",
    "GRAFANA_ADMIN_PASSWORD",
}
# The seed's deployment guide variables, with the values it documents where they are fixed.
SEED_VARIABLES = {
    "MLFLOW_TRACKING_URI": "http://mlflow-server:5000",
    "MLFLOW_DB_PASSWORD": None,
    "S3_BUCKET_NAME": "nuru-yield",
    "S3_ENDPOINT_URL": "http://minio:9000",
    "S3_ACCESS_KEY": None,
    "S3_SECRET_KEY": None,
    "API_KEY": None,
}


# --- compose-style variable interpolation ------------------------------------------------


class MissingVariable(ValueError):
    """A `${VAR:?message}` whose variable is unset or empty."""


def _closing_brace(text: str, opening: int) -> int:
    depth = 0
    for index in range(opening, len(text)):
        depth += {"{": 1, "}": -1}.get(text[index], 0)
        if depth == 0:
            return index
    raise ValueError(f"unclosed '${{' in {text!r}")


def _expand(body: str, env: Mapping[str, str], used: set[str]) -> str:
    match = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])(.*))?", body, re.DOTALL)
    if not match:
        raise ValueError(f"bad variable expression ${{{body}}}")
    name, operator, argument = match.groups()
    used.add(name)
    value = env.get(name)
    if operator is None:
        return value or ""
    if operator.endswith("?"):
        if value is None or (operator == ":?" and not value):
            raise MissingVariable(f"{name}: {argument}")
        return value
    present = bool(value) if operator.startswith(":") else value is not None
    alternative = interpolate(argument, env, used)
    if operator.endswith("-"):
        return value if present else alternative
    return alternative if present else ""


def interpolate(text: str, env: Mapping[str, str], used: set[str] | None = None) -> str:
    """Compose's `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR:?error}`, `${VAR:+alt}`, `$$`."""
    used = set() if used is None else used
    out: list[str] = []
    index = 0
    while index < len(text):
        char, following = text[index], text[index + 1 : index + 2]
        if char != "$":
            out.append(char)
            index += 1
        elif following == "$":
            out.append("$")
            index += 2
        elif following == "{":
            end = _closing_brace(text, index + 1)
            out.append(_expand(text[index + 2 : end], env, used))
            index = end + 1
        elif name := re.match(r"[A-Za-z_][A-Za-z0-9_]*", text[index + 1 :]):
            used.add(name.group())
            out.append(env.get(name.group(), ""))
            index += 1 + len(name.group())
        else:
            out.append(char)
            index += 1
    return "".join(out)


def interpolate_tree(node: Any, env: Mapping[str, str], used: set[str]) -> Any:
    if isinstance(node, dict):
        return {key: interpolate_tree(value, env, used) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate_tree(value, env, used) for value in node]
    if isinstance(node, str):
        return interpolate(node, env, used)
    return node


def read_env_file(path: Path) -> dict[str, str]:
    pairs = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


# --- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def raw_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    return read_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="module")
def compose(raw_compose: dict[str, Any], env_example: dict[str, str]) -> dict[str, Any]:
    """The compose file as compose sees it with .env.example as its .env."""
    return interpolate_tree(raw_compose, env_example, set())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def _vendored_schema(name: str) -> dict[str, Any]:
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    return json.loads(vendor.joinpath(name).read_text())


def _validation_errors(document: Any, schema: dict[str, Any]) -> list[str]:
    import jsonschema

    validator = jsonschema.validators.validator_for(schema)(schema)
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}"
        for error in validator.iter_errors(document)
    ]


def _command(value: Any) -> list[str]:
    if value is None:
        return []
    return shlex.split(value) if isinstance(value, str) else [str(part) for part in value]


def _pipeline_services(services: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in services.items()
        if service.get("build", {}).get("target") == "pipeline"
    }


def _environment(service: Mapping[str, Any]) -> dict[str, str]:
    return {key: str(value) for key, value in (service.get("environment") or {}).items()}


# --- the compose file itself -------------------------------------------------------------


def test_compose_file_follows_the_compose_spec(
    raw_compose: dict[str, Any], compose: dict[str, Any]
) -> None:
    schema = _vendored_schema("compose-spec.json")
    assert _validation_errors(raw_compose, schema) == []
    assert _validation_errors(compose, schema) == []


def _compose_v2() -> list[str] | None:
    for base in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(base[0]) is None:
            continue
        probe = subprocess.run([*base, "version", "--short"], capture_output=True, text=True)
        if probe.returncode == 0 and probe.stdout.strip().lstrip("v").startswith("2."):
            return base
    return None


def test_docker_compose_accepts_the_file_where_it_is_installed() -> None:
    base = _compose_v2()
    if base is None:
        pytest.skip("no `docker compose` v2 here; the schema test above validates the file")
    result = subprocess.run(
        [
            *base,
            "--env-file",
            str(ENV_EXAMPLE),
            "--profile",
            "nginx",
            "--profile",
            "grafana",
            "-f",
            str(COMPOSE_FILE),
            "config",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr


def test_every_variable_is_documented_in_env_example(
    raw_compose: dict[str, Any], env_example: dict[str, str]
) -> None:
    used: set[str] = set()
    interpolate_tree(raw_compose, env_example, used)
    assert used - set(env_example) == set(), "used by docker-compose.yml, missing in .env.example"
    assert set(env_example) - used == set(), "in .env.example, unused by docker-compose.yml"


def test_secrets_are_required_and_have_no_defaults(
    raw_compose: dict[str, Any], env_example: dict[str, str]
) -> None:
    text = COMPOSE_FILE.read_text()
    for secret in sorted(SECRETS):
        assert f"${{{secret}:?" in text, f"{secret} should be required with ${{{secret}:?…}}"
        assert not re.search(rf"\$\{{{secret}:?-", text), f"{secret} must not have a default"
        without = {key: value for key, value in env_example.items() if key != secret}
        with pytest.raises(MissingVariable, match=secret):
            interpolate_tree(raw_compose, without, set())
    assert all(env_example[secret] for secret in SECRETS)


def test_env_example_carries_the_seed_variables(env_example: dict[str, str]) -> None:
    for variable, value in SEED_VARIABLES.items():
        assert variable in env_example
        if value is not None:
            assert env_example[variable] == value


def test_services_of_issue_8_exist(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) >= REQUIRED_SERVICES
    for name in REQUIRED_SERVICES:
        assert "profiles" not in services[name], f"{name} must start by default"
    for name, profile in OPTIONAL_SERVICES.items():
        assert services[name]["profiles"] == [profile]


def test_depends_on_targets_exist_with_meaningful_conditions(
    services: dict[str, dict[str, Any]],
) -> None:
    graph: dict[str, set[str]] = {}
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        assert isinstance(depends, dict), f"{name}: use depends_on with conditions"
        graph[name] = set(depends)
        for target, spec in depends.items():
            assert target in services, f"{name} depends on unknown service {target}"
            assert target != name
            condition = spec["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{target} has no healthcheck"
            else:
                assert condition == "service_completed_successfully"
                assert services[target].get("restart") == "no", f"{target} is not one-shot"
    # No cycles: a topological order exists.
    done: set[str] = set()
    while len(done) < len(graph):
        ready = {name for name, deps in graph.items() if name not in done and deps <= done}
        assert ready, f"depends_on cycle among {sorted(set(graph) - done)}"
        done |= ready


def test_long_running_services_have_healthchecks(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        if service.get("restart") != "no":
            assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def test_images_are_pinned(services: dict[str, dict[str, Any]]) -> None:
    images = [service["image"] for service in services.values()]
    images += re.findall(r"^ARG \w+_IMAGE=(\S+)", DOCKERFILE.read_text(), re.MULTILINE)
    for image in images:
        name, _, tag = image.rpartition(":")
        assert name and "/" not in tag, f"{image} has no tag"
        if name.startswith("nuru-yield/"):
            continue  # built here from docker/Dockerfile
        assert tag != "latest" and re.search(r"\d+\.\d+|\d{4}-\d{2}-\d{2}", tag), image


def test_build_contexts_dockerfiles_and_targets_exist(services: dict[str, dict[str, Any]]) -> None:
    targets = set(re.findall(r"^FROM \S+ AS (\S+)", DOCKERFILE.read_text(), re.MULTILINE))
    built = [service["build"] for service in services.values() if "build" in service]
    assert {build["target"] for build in built} == {"pipeline", "api"}
    for build in built:
        context = REPO / build["context"]
        assert context.is_dir()
        assert (context / build["dockerfile"]).resolve() == DOCKERFILE
        assert build["target"] in targets
    assert (DOCKERFILE.parent / "Dockerfile.dockerignore").is_file()


def test_dockerfile_copies_files_that_exist_and_are_not_ignored() -> None:
    ignored = [
        line.strip()
        for line in (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("COPY") and "--from" not in line:
            sources = [part for part in line.split()[1:-1] if not part.startswith("--")]
            for source in sources:
                assert (REPO / source).exists(), f"Dockerfile copies missing {source}"
                path = PurePosixPath(source.rstrip("/"))
                for candidate in (path, *path.parents):
                    assert not any(
                        candidate.match(pattern.removeprefix("**/")) for pattern in ignored
                    ), f"{source} is excluded by Dockerfile.dockerignore"


def test_bind_mounts_exist(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (REPO / source).exists(), f"{name} mounts missing {source}"
        assert "env_file" not in service, "variables come from .env through interpolation"


def test_airflow_services_mount_the_project_and_run_its_components(
    services: dict[str, dict[str, Any]],
) -> None:
    expected = {
        "airflow-apiserver": ["api-server"],
        "airflow-scheduler": ["scheduler"],
        "airflow-dag-processor": ["dag-processor"],
        "airflow-triggerer": ["triggerer"],
        "airflow-worker": ["celery", "worker"],
    }
    for name, command in expected.items():
        service = services[name]
        assert _command(service["command"]) == command
        mounts = {volume.split(":")[0]: volume.split(":")[1] for volume in service["volumes"]}
        for folder in ("dags", "plugins", "include"):
            assert mounts[f"./{folder}"] == f"/opt/airflow/{folder}"
        environment = _environment(service)
        assert environment["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert environment["AIRFLOW__CELERY__BROKER_URL"] == "redis://redis:6379/0"
        assert environment["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("@postgres:5432/airflow")
        assert environment["AIRFLOW__CELERY__RESULT_BACKEND"].endswith("@postgres:5432/airflow")
        assert "redis" in service["depends_on"]
    workers = services["airflow-worker"]
    assert int(workers["deploy"]["replicas"]) >= 2, "at least two Celery workers"
    assert "inspect ping" in " ".join(_command(workers["healthcheck"]["test"]))
    assert _command(services["redis"]["healthcheck"]["test"]) == ["CMD", "redis-cli", "ping"]
    init = _command(services["airflow-init"]["command"])
    assert init[:2] == ["bash", "-c"] and "airflow db migrate" in init[2]
    assert _command(services["nuru-init"]["entrypoint"]) + _command(
        services["nuru-init"]["command"]
    ) == ["nuru-yield", "db", "upgrade"]


def test_airflow_options_set_by_environment_exist() -> None:
    from importlib import metadata

    config = metadata.distribution("apache-airflow-core").locate_file(
        "airflow/config_templates/config.yml"
    )
    sections = yaml.safe_load(Path(config).read_text())
    from airflow.providers.celery.get_provider_info import get_provider_info

    sections |= get_provider_info()["config"]  # [celery]: the CeleryExecutor's provider
    for source in (COMPOSE_FILE, REPO / "Makefile"):  # the stack, and `make airflow`
        names = set(re.findall(r"\bAIRFLOW__([A-Z_]+?)__([A-Z_]+)\b", source.read_text()))
        assert names, source
        for section, option in names:
            options = sections.get(section.lower(), {}).get("options", {})
            assert option.lower() in options, f"{source.name}: [{section.lower()}] {option.lower()}"


def test_pipeline_environment_passes_settings_validation(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from nuru_yield.config import Settings, get_settings, reset_settings

    fields = {name.upper() for name in Settings.model_fields}
    for name in ("nuru-init", "inference-api"):
        environment = _environment(services[name])
        not_settings = set(environment) - fields
        assert not not_settings, f"{name}: {not_settings}"
        with monkeypatch.context() as patch:
            for key, value in environment.items():
                patch.setenv(key, value)
            reset_settings()
            settings = get_settings()
            assert settings.lake_url == "s3://nuru-yield"
            assert settings.predictions_db_url.startswith("postgresql+psycopg://")
            assert settings.mlflow_tracking_uri == "http://mlflow-server:5000"
        reset_settings()


def test_api_uses_the_read_only_role_and_scales_out(
    raw_compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    from sqlalchemy.engine import make_url

    api = services["inference-api"]
    environment = _environment(api)
    for variable in ("API_DB_URL", "PREDICTIONS_DB_URL"):
        url = make_url(environment[variable])
        assert (url.username, url.host, url.database) == ("nuru_api", "postgres", "nuru")
    raw_api = json.dumps(raw_compose["services"]["inference-api"])
    assert "NURU_DB_PASSWORD" not in raw_api, "the API must not see the owner's password"
    assert "${S3_API_ACCESS_KEY}" in raw_api and "${S3_ACCESS_KEY" not in raw_api
    assert int(api["deploy"]["replicas"]) >= 2
    assert "/health" in " ".join(_command(api["healthcheck"]["test"]))
    first, _, last = api["ports"][0].rpartition(":")[0].partition("-")
    assert int(last) - int(first) + 1 >= int(api["deploy"]["replicas"]), "one port per replica"
    assert (
        services["nginx"]["networks"]["default"]["ipv4_address"]
        == environment["FORWARDED_ALLOW_IPS"]
    )


# --- commands: every executable and option exists ---------------------------------------


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
    for service in _pipeline_services(services).values():
        if service.get("entrypoint") is None and service.get("command"):
            command = _command(service["command"])
            if command[0] != "bash":
                yield command
        test = _command(service.get("healthcheck", {}).get("test"))
        if test[:1] == ["CMD-SHELL"] and test[1].startswith("airflow "):
            yield shlex.split(test[1])[1:]
    script = _command(services["airflow-init"]["command"])[2]
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
    _click_parse(nuru, _command(services["nuru-init"]["command"]))
    api_cmd = json.loads(re.search(r"^CMD (\[.*\])$", DOCKERFILE.read_text(), re.M).group(1))
    assert api_cmd[0] == "nuru-yield"
    _click_parse(nuru, api_cmd[1:])

    mlflow = services["mlflow-server"]
    assert _command(mlflow["entrypoint"]) == ["mlflow"]
    server = _click_parse(mlflow_cli, _command(mlflow["command"]))
    import mlflow.environment_variables as mlflow_env

    known = {param.envvar for param in server.params if param.envvar}
    known |= {name for name in dir(mlflow_env) if name.startswith("MLFLOW_")}
    for variable in _environment(mlflow):
        assert variable in known or variable.startswith("AWS_"), f"MLflow ignores {variable}"


def test_airflow_init_applies_the_pools_of_airflow_settings(services: dict[str, Any]) -> None:
    from nuru_yield.airflow_settings import build_parser

    script = _command(services["airflow-init"]["command"])[2]
    (line,) = [ln for ln in script.splitlines() if "nuru_yield.airflow_settings" in ln]
    argv = shlex.split(line)
    assert argv[:3] == ["python", "-m", "nuru_yield.airflow_settings"]
    mounts = dict(v.split(":")[1::-1] for v in services["airflow-init"]["volumes"])
    assert (REPO / mounts[argv[3]]).resolve() == REPO / "airflow_settings.yaml"
    assert build_parser().parse_args(argv[3:]).only == ["pools"]


# --- the API image ----------------------------------------------------------------------


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


# --- dependencies and database URLs -------------------------------------------------------


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


# --- Grafana -----------------------------------------------------------------------------


def _dashboard_queries() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted(DASHBOARDS.glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                yield panel["title"], target


def _runnable(sql: str) -> str:
    """Grafana's macros replaced by plain SQL, so PostgreSQL can check the query."""
    sql = re.sub(r"\$__timeFilter\((\w+)\)", r"\1 BETWEEN '1900-01-01' AND '2100-01-01'", sql)
    assert "$" not in sql, f"unhandled Grafana macro in {sql}"
    return sql


def test_grafana_provisioning_is_consistent(services: dict[str, Any]) -> None:
    grafana = services["grafana"]
    sources = [
        source
        for path in DATASOURCES.glob("*.yaml")
        for source in yaml.safe_load(path.read_text())["datasources"]
    ]
    uids = {source["uid"] for source in sources}
    (postgres,) = sources
    assert postgres["user"] == "nuru_api" and postgres["jsonData"]["database"] == "nuru"
    assert postgres["url"].split(":")[0] in services
    placeholders = set(re.findall(r"\$\{?(\w+)", json.dumps(sources)))
    assert placeholders and placeholders <= set(_environment(grafana))
    queries = list(_dashboard_queries())
    assert len(queries) >= 5
    for title, target in queries:
        assert target["datasource"]["uid"] in uids, title
    mounts = dict(volume.split(":")[1::-1][:2] for volume in grafana["volumes"])
    home = Path(_environment(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
    assert (REPO / mounts[str(home.parent)] / home.name).is_file()
    provider = yaml.safe_load(
        (REPO / "docker/grafana/provisioning/dashboards/nuru-yield.yaml").read_text()
    )["providers"][0]
    assert provider["options"]["path"] in mounts


def test_dashboard_reads_only_tables_of_the_schema() -> None:
    from nuru_yield.db.schema import metadata

    known = set(metadata.tables) | {"latest_predictions"}
    panels_by_table: dict[str, list[str]] = {}
    for title, target in _dashboard_queries():
        tables = re.findall(r"\b(?:FROM|JOIN)\s+(\w+)", target["rawSql"], re.IGNORECASE)
        assert tables and set(tables) <= known, f"{title}: {tables}"
        for table in tables:
            panels_by_table.setdefault(table, []).append(title)
    assert {"predictions", "drift_reports", "model_performance"} <= set(panels_by_table)


# --- PostgreSQL: init script, read-only role, dashboard SQL --------------------------------


@pytest.fixture(scope="module")
def init_server() -> Iterator[str]:
    """A PostgreSQL 15 server of these tests' own: the init script changes what every role may
    do on the whole server (CONNECT on postgres and template1), which the session's shared
    server must not see. Yields its admin URL."""
    from nuru_yield.dev.local_services import throwaway_postgres
    from nuru_yield.errors import NuruError

    if shutil.which("psql") is None:
        unavailable("psql not on PATH")
    with contextlib.ExitStack() as stack:
        try:
            url, _ = stack.enter_context(throwaway_postgres())
        except NuruError as error:
            unavailable(str(error))
        yield url


@pytest.fixture
def initialised_cluster(init_server: str) -> Iterator[dict[str, str]]:
    """The init script run against the test server, as the postgres image runs it on a new
    volume; its databases and roles dropped after. URLs by name: ``owner`` (nuru on nuru),
    ``reader`` (nuru_api on nuru), ``admin`` (the superuser on nuru) and ``reader_DB`` for
    every other database."""
    from sqlalchemy.engine import make_url

    admin = make_url(init_server)
    environment = {
        **os.environ,
        "PGHOST": admin.host,
        "PGPORT": str(admin.port),
        "POSTGRES_USER": admin.username,
        "AIRFLOW_DB_PASSWORD": "a",
        "MLFLOW_DB_PASSWORD": "m",
        "NURU_DB_PASSWORD": "n",
        "NURU_API_DB_PASSWORD": "r",
    }
    result = subprocess.run(
        ["bash", str(INIT_SQL_SCRIPT)], env=environment, capture_output=True, text=True
    )
    try:
        assert result.returncode == 0, result.stderr
        urls = {
            role: admin.set(username=user, database=db).render_as_string(hide_password=False)
            for role, user, db in (
                ("owner", "nuru", "nuru"),
                ("reader", "nuru_api", "nuru"),
                ("admin", admin.username, "nuru"),
                *((f"reader_{db}", "nuru_api", db) for db in OTHER_DATABASES),
            )
        }
        yield urls
    finally:
        from nuru_yield.db.engine import dispose_engines

        dispose_engines()
        drops = [
            f"DROP DATABASE IF EXISTS {db} WITH (FORCE)" for db in ("airflow", "mlflow", "nuru")
        ]
        drops.append("DROP ROLE IF EXISTS airflow, mlflow, nuru, nuru_api")
        subprocess.run(
            ["psql", "-U", admin.username, "-d", "postgres"]
            + [arg for drop in drops for arg in ("-c", drop)],
            env=environment,
            capture_output=True,
        )


OTHER_DATABASES = ("postgres", "template1", "airflow", "mlflow")


@pytest.mark.postgres
def test_read_only_role_reads_tables_created_later_and_writes_nothing(
    initialised_cluster: dict[str, str],
) -> None:
    import sqlalchemy as sa

    from nuru_yield.db.migrations import upgrade

    assert upgrade(initialised_cluster["owner"]) >= 1
    owner = sa.create_engine(initialised_cluster["owner"])
    reader = sa.create_engine(initialised_cluster["reader"])
    try:
        with owner.begin() as conn:  # a partition created later, as the loader does
            conn.execute(
                sa.text(
                    "CREATE TABLE predictions_p20250501 PARTITION OF predictions "
                    "FOR VALUES IN ('2025-05-01')"
                )
            )
            conn.execute(
                sa.text(
                    "INSERT INTO predictions (run_date, plot_id, season_year, season, "
                    "model_name, model_version, county, predicted_yield_kg_per_ha, run_id, "
                    "scored_at) VALUES ('2025-05-01', 7, 2025, 'Long Rains', 'champion', '3', "
                    "'Bungoma', 2500, 'r1', now())"
                )
            )
        with reader.connect() as conn:
            row = conn.execute(sa.text("SELECT plot_id, county FROM latest_predictions")).one()
            assert tuple(row) == (7, "Bungoma")
            assert conn.execute(sa.text("SELECT count(*) FROM predictions_p20250501")).scalar()
            for title, target in _dashboard_queries():
                try:
                    conn.exec_driver_sql(_runnable(target["rawSql"])).fetchall()
                except sa.exc.DBAPIError as error:
                    pytest.fail(f"dashboard panel {title!r}: {error.orig}")
        with reader.connect() as conn, pytest.raises(sa.exc.DBAPIError) as read_only:
            conn.exec_driver_sql("DELETE FROM predictions")
        assert type(read_only.value.orig).__name__ == "ReadOnlySqlTransaction"
        # Read-only transactions are only a default: the grants are what forbid writes.
        for statement in (
            "DELETE FROM predictions",
            "INSERT INTO drift_reports (run_date, feature, statistic, drifted, status, "
            "n_current, n_reference) VALUES ('2025-05-01', 'x', 'psi', false, 'ok', 1, 1)",
            "CREATE TABLE scratch (x int)",
        ):
            with reader.connect() as conn, pytest.raises(sa.exc.DBAPIError) as denied:
                conn.exec_driver_sql("SET TRANSACTION READ WRITE")
                conn.exec_driver_sql(statement)
            assert type(denied.value.orig).__name__ == "InsufficientPrivilege", statement
        with pytest.raises(sa.exc.OperationalError, match="permission denied"):
            sa.create_engine(initialised_cluster["reader_airflow"]).connect()
    finally:
        owner.dispose()
        reader.dispose()


def _write_attempts(
    tables: dict[str, str],
    views: list[str],
    sequences: list[str],
    large_object: int,
    extensions: list[str],
) -> list[str]:
    """Every way we know for a role to change something on the server, for these tables
    (name -> one of its columns), views, sequences, an existing large object, and the
    extensions the server could install."""
    attempts = []
    for name, column in tables.items():
        attempts += [
            f"INSERT INTO {name} DEFAULT VALUES",
            f"UPDATE {name} SET {column} = {column}",
            f"DELETE FROM {name}",
            f"TRUNCATE {name}",
            f"SELECT * FROM {name} FOR UPDATE",
            f"SELECT * FROM {name} FOR KEY SHARE",
            f"LOCK TABLE {name} IN ROW EXCLUSIVE MODE",
            f"COPY {name} FROM PROGRAM 'true'",
            f"COPY {name} FROM '/dev/null'",
            f"ALTER TABLE {name} ADD COLUMN nuru_api_x int",
            f"CREATE INDEX ON {name} ({column})",
            f"DROP TABLE {name}",
            f"COMMENT ON TABLE {name} IS 'x'",
            f"REINDEX TABLE {name}",
        ]
    for name in views:  # (not updatable: DML on them fails before any privilege is checked)
        attempts += [
            f"CREATE OR REPLACE VIEW {name} AS SELECT 1 AS x",
            f"ALTER VIEW {name} RENAME TO nuru_api_v",
            f"DROP VIEW {name}",
            f"COMMENT ON VIEW {name} IS 'x'",
        ]
    for sequence in sequences:
        attempts += [f"SELECT nextval('{sequence}')", f"SELECT setval('{sequence}', 1000)"]
    attempts += [
        # Large objects: new ones, the server's files, and one that exists.
        "SELECT lo_from_bytea(0, 'x')",
        "SELECT lo_create(0)",
        "SELECT lo_creat(-1)",
        "SELECT lo_import('/etc/hostname')",
        f"SELECT lo_export({large_object}, '/tmp/nuru_api_lo')",
        f"SELECT lo_put({large_object}, 0, 'x')",
        f"SELECT lo_open({large_object}, 131072)",  # INV_WRITE
        f"SELECT lo_unlink({large_object})",
        # The server's files and programs.
        "COPY (SELECT 1) TO PROGRAM 'true'",
        "COPY (SELECT 1) TO '/tmp/nuru_api_copy'",
        # New objects, also temporary ones.
        "CREATE TABLE public.nuru_api_t (x int)",
        "CREATE TEMP TABLE nuru_api_t (x int)",
        "CREATE TEMP VIEW nuru_api_v AS SELECT 1",
        "CREATE SCHEMA nuru_api_s",
        "CREATE FUNCTION public.nuru_api_f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "CREATE FUNCTION pg_temp.nuru_api_f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "CREATE TYPE public.nuru_api_type AS (x int)",
        "CREATE PUBLICATION nuru_api_p",
        "CREATE ROLE nuru_api_r",
        "CREATE EVENT TRIGGER nuru_api_e ON ddl_command_start EXECUTE FUNCTION pg_backend_pid()",
        "DO $$ BEGIN EXECUTE 'DELETE FROM predictions'; END $$",
        *(f"CREATE EXTENSION {extension}" for extension in extensions),
        # Functions with side effects: locks the pipeline waits for, WAL, server state.
        "SELECT pg_advisory_lock(1)",
        "SELECT pg_advisory_lock(1, 2)",
        "SELECT pg_advisory_lock_shared(1)",
        "SELECT pg_advisory_xact_lock(1)",
        "SELECT pg_try_advisory_lock(1)",
        "SELECT pg_try_advisory_lock_shared(1, 2)",
        "SELECT pg_try_advisory_xact_lock(1)",
        "SELECT pg_logical_emit_message(true, 'nuru', 'x')",
        "SELECT pg_logical_emit_message(false, 'nuru', 'x'::bytea)",
        "SELECT pg_stat_reset()",
        "SELECT pg_stat_reset_shared('bgwriter')",
        "SELECT pg_switch_wal()",
        "SELECT pg_create_restore_point('x')",
        "SELECT pg_reload_conf()",
        "SELECT pg_replication_origin_create('x')",
        "SELECT pg_create_physical_replication_slot('nuru_api_slot')",
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'postgres'",
        "CHECKPOINT",
    ]
    return attempts


@pytest.mark.postgres
def test_read_only_role_has_no_way_to_write(initialised_cluster: dict[str, str]) -> None:
    """nuru_api (the API, Grafana) tries every write path it might have, in a session that
    turned read-only mode off: each is refused for lack of privilege. It can reach no other
    database, holds no role, and owns nothing afterwards. (PostgreSQL 15 lets any role change
    its own password and session defaults, NOTIFY, and run ANALYZE/VACUUM, which skip what it
    does not own: the last two are checked to do nothing.)"""
    import sqlalchemy as sa

    from nuru_yield.db.migrations import upgrade

    upgrade(initialised_cluster["owner"])
    admin = sa.create_engine(initialised_cluster["admin"], isolation_level="AUTOCOMMIT")
    reader = sa.create_engine(initialised_cluster["reader"])
    reader_autocommit = reader.execution_options(isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(
                "CREATE TABLE predictions_p20250501 PARTITION OF predictions "
                "FOR VALUES IN ('2025-05-01')"
            )
            conn.exec_driver_sql("ALTER TABLE predictions_p20250501 OWNER TO nuru")
            large_object = conn.exec_driver_sql("SELECT lo_from_bytea(0, 'the owner''s')").scalar()
            conn.exec_driver_sql(f"ALTER LARGE OBJECT {large_object} OWNER TO nuru")
            tables = dict(
                conn.exec_driver_sql(
                    "SELECT c.relname, min(a.attname) FROM pg_class c "
                    "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 "
                    "WHERE c.relnamespace = 'public'::regnamespace "
                    "AND c.relkind IN ('r', 'p') GROUP BY c.relname"
                ).all()
            )
            views = list(
                conn.exec_driver_sql(
                    "SELECT relname FROM pg_class WHERE relkind IN ('v', 'm') "
                    "AND relnamespace = 'public'::regnamespace"
                ).scalars()
            )
            sequences = list(
                conn.exec_driver_sql(
                    "SELECT relname FROM pg_class WHERE relkind = 'S' "
                    "AND relnamespace = 'public'::regnamespace"
                ).scalars()
            )
            extensions = list(
                conn.exec_driver_sql(
                    "SELECT name FROM pg_available_extensions WHERE installed_version IS NULL "
                    "AND name IN ('dblink', 'postgres_fdw', 'adminpack', 'hstore', 'pgcrypto')"
                ).scalars()
            )
        assert {"predictions", "predictions_p20250501", "scoring_runs"} <= set(tables)
        assert views == ["latest_predictions"]
        assert "model_promotions_id_seq" in sequences

        attempts = _write_attempts(tables, views, sequences, large_object, extensions)
        allowed = []
        for statement in attempts:
            with reader.connect() as conn:
                conn.exec_driver_sql("SET TRANSACTION READ WRITE")  # grants alone must stop it
                try:
                    conn.exec_driver_sql(statement)
                    allowed.append(statement)
                except sa.exc.DBAPIError as error:
                    if type(error.orig).__name__ != "InsufficientPrivilege":
                        allowed.append(f"{statement}: {error.orig}")
        for statement in ("CREATE DATABASE nuru_api_db", "ALTER SYSTEM SET work_mem = '1GB'"):
            with reader_autocommit.connect() as conn:
                conn.exec_driver_sql("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE")
                try:
                    conn.exec_driver_sql(statement)
                    allowed.append(statement)
                except sa.exc.DBAPIError as error:
                    if type(error.orig).__name__ != "InsufficientPrivilege":
                        allowed.append(f"{statement}: {error.orig}")
        assert allowed == [], f"{len(allowed)} of {len(attempts) + 2} attempts were not refused"

        # What PostgreSQL accepts from anyone, and does nothing for this role.
        notices: list[str] = []
        with reader_autocommit.connect() as conn:
            conn.connection.driver_connection.add_notice_handler(
                lambda notice: notices.append(notice.message_primary)
            )
            conn.exec_driver_sql("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE")
            for statement in (
                "VACUUM predictions_p20250501",
                "ANALYZE predictions_p20250501",
                "GRANT SELECT ON predictions TO PUBLIC",
            ):
                conn.exec_driver_sql(statement)
        assert len(notices) == 3 and "skipping" in notices[0] and "skipping" in notices[1]
        assert notices[2] == 'no privileges were granted for "predictions"'

        for database in OTHER_DATABASES:
            with pytest.raises(sa.exc.OperationalError, match="permission denied for database"):
                sa.create_engine(initialised_cluster[f"reader_{database}"]).connect()

        with admin.connect() as conn:
            owned = conn.exec_driver_sql(
                "SELECT (SELECT count(*) FROM pg_class WHERE relowner = r.oid) "
                "+ (SELECT count(*) FROM pg_proc WHERE proowner = r.oid) "
                "+ (SELECT count(*) FROM pg_namespace WHERE nspowner = r.oid) "
                "+ (SELECT count(*) FROM pg_type WHERE typowner = r.oid) "
                "+ (SELECT count(*) FROM pg_largeobject_metadata WHERE lomowner = r.oid) "
                "FROM pg_roles r WHERE rolname = 'nuru_api'"
            ).scalar()
            assert owned == 0
            assert (
                conn.exec_driver_sql("SELECT count(*) FROM pg_largeobject_metadata").scalar() == 1
            )
            assert not conn.exec_driver_sql(
                "SELECT has_table_privilege('public', 'predictions', 'SELECT')"
            ).scalar()
            attributes = conn.exec_driver_sql(
                "SELECT rolsuper OR rolcreaterole OR rolcreatedb OR rolreplication OR rolbypassrls, "
                "(SELECT count(*) FROM pg_auth_members m WHERE m.member = r.oid) "
                "FROM pg_roles r WHERE rolname = 'nuru_api'"
            ).one()
            assert tuple(attributes) == (False, 0)  # pg_write_server_files & co. included
            rights = conn.exec_driver_sql(
                "SELECT datname, has_database_privilege('nuru_api', datname, 'CONNECT'), "
                "has_database_privilege('nuru_api', datname, 'CREATE'), "
                "has_database_privilege('nuru_api', datname, 'TEMPORARY') "
                "FROM pg_database WHERE datallowconn ORDER BY datname"
            ).all()
            assert [tuple(row) for row in rights] == [
                (name, name == "nuru", False, False) for name in sorted(("nuru", *OTHER_DATABASES))
            ]
    finally:
        admin.dispose()
        reader.dispose()


@pytest.mark.postgres
def test_api_reads_through_the_role_and_the_pipeline_locks_as_the_owner(
    initialised_cluster: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the init script takes away is nothing the stack uses: the pipeline (nuru) loads
    partitions and takes its run-date locks, and every API route answers through nuru_api."""
    import datetime as dt

    from nuru_yield.db.locks import run_date_lock
    from tests.integration.test_api_support import (
        API_KEY,
        LATEST_NIGHT,
        PROMOTIONS,
        PredictionsDb,
        auth,
        known_rows,
        serving,
    )

    db = PredictionsDb(initialised_cluster["owner"])
    db.load(known_rows())  # the loader's advisory lock, as the owner
    db.add_promotions()
    with run_date_lock(db.engine, dt.date(2025, 5, 1), step="test"):
        pass
    with run_date_lock(db.engine, dt.date(2025, 5, 1), step="test", shared=True):
        pass
    with serving(
        monkeypatch,
        initialised_cluster["owner"],
        API_DB_URL=initialised_cluster["reader"],
        API_KEY=API_KEY,
    ) as client:
        calls = {
            "predict": client.post("/predict", json={"plot_id": 1}, headers=auth()),
            "batch": client.post(
                "/predict/batch", json={"plots": [{"plot_id": 1}, {"plot_id": 3}]}, headers=auth()
            ),
            "history": client.get("/predictions/1", params={"as_of": "2025-04-02"}, headers=auth()),
            "models": client.get("/models", headers=auth()),
            "reload": client.post("/models/reload", headers=auth()),
            "health": client.get("/health", headers=auth()),
            "metrics": client.get("/metrics"),
        }
    assert {name: call.status_code for name, call in calls.items()} == dict.fromkeys(calls, 200)
    assert calls["batch"].json()["found"] == 2
    assert calls["health"].json()["latest_run_date"] == str(LATEST_NIGHT)
    assert len(calls["models"].json()["promotions"]) == len(PROMOTIONS)
    db.engine.dispose()


# --- CI ----------------------------------------------------------------------------------


def test_ci_workflow_runs_make_test_with_postgresql_15_and_redis() -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    workflow["on"] = workflow.pop(True)  # YAML 1.1 reads the key `on` as a boolean
    assert _validation_errors(workflow, _vendored_schema("github-workflows.json")) == []
    (job,) = workflow["jobs"].values()
    assert job["env"]["CI"] == "true"
    steps = " ".join(step.get("run", "") for step in job["steps"])
    assert "postgresql-15" in steps and "/usr/lib/postgresql/15/bin" in steps
    assert "redis-server" in steps
    assert job["steps"][-1]["run"] == "make test"
    (python,) = [step for step in job["steps"] if "setup-python" in step.get("uses", "")]
    assert python["with"]["python-version"] == "3.11"


# --- airflow_settings.yaml ---------------------------------------------------------------


def test_airflow_settings_yaml_is_in_astro_format() -> None:
    from nuru_yield.airflow_settings import SECTIONS, load

    document = yaml.safe_load((REPO / "airflow_settings.yaml").read_text())
    assert set(document) == {"airflow"} and set(document["airflow"]) == set(SECTIONS)
    assert all(isinstance(document["airflow"][section], list) for section in SECTIONS)
    settings = load(REPO / "airflow_settings.yaml")
    assert set(settings.connections) == {"nuru_predictions_db", "nuru_lake"}
    assert {"nuru_scoring", "nuru_training"} <= set(settings.pools)


def test_airflow_connections_are_the_stacks_databases_and_bucket(
    services: dict[str, Any], env_example: dict[str, str]
) -> None:
    """Dev values (airflow_settings.yaml) and production values (AIRFLOW_CONN_* in compose)
    name the same connections and the same database, role and bucket credentials."""
    from urllib.parse import urlparse

    from nuru_yield.airflow_settings import load

    dev = load(REPO / "airflow_settings.yaml").connections
    production = {
        key.removeprefix("AIRFLOW_CONN_").lower(): value
        for key, value in _environment(services["airflow-scheduler"]).items()
        if key.startswith("AIRFLOW_CONN_")
    }
    assert set(production) == set(dev)

    database = dev["nuru_predictions_db"]
    assert database["conn_type"] == "postgres"
    assert (database["host"], str(database["port"])) == ("localhost", env_example["POSTGRES_PORT"])
    assert (database["schema"], database["login"]) == ("nuru", "nuru")
    assert database["password"] == env_example["NURU_DB_PASSWORD"]
    url = urlparse(production["nuru_predictions_db"])
    assert (url.scheme, url.username, url.hostname, url.path) == (
        "postgresql",
        "nuru",
        "postgres",
        "/nuru",
    )
    assert url.password == env_example["NURU_DB_PASSWORD"]

    lake, lake_production = dev["nuru_lake"], json.loads(production["nuru_lake"])
    assert lake["conn_type"] == lake_production["conn_type"] == "aws"
    assert lake["login"] == lake_production["login"] == env_example["S3_ACCESS_KEY"]
    assert lake["password"] == lake_production["password"] == env_example["S3_SECRET_KEY"]
    endpoint = urlparse(json.loads(lake["extra"])["endpoint_url"])
    assert (endpoint.hostname, str(endpoint.port)) == ("localhost", env_example["MINIO_PORT"])
    assert lake_production["extra"]["endpoint_url"] == env_example["S3_ENDPOINT_URL"]


def test_dags_use_only_connections_pools_and_variables_that_are_defined() -> None:
    from nuru_yield.airflow_settings import load

    settings = load(REPO / "airflow_settings.yaml")
    sources = sorted((REPO / "dags").glob("*.py"))
    orchestration = REPO / "include" / "nuru_yield" / "orchestration.py"
    text = "\n".join(path.read_text() for path in [*sources, orchestration] if path.exists())
    connections = set(re.findall(r"conn_id\s*=\s*[\"']([\w-]+)[\"']", text))
    pools = set(re.findall(r"\bpool\s*=\s*[\"']([\w-]+)[\"']", text))
    variables = set(re.findall(r"Variable\.get\(\s*[\"']([\w-]+)[\"']", text))
    variables |= set(re.findall(r"var\.(?:value|json)\.(\w+)", text))
    assert connections <= set(settings.connections)
    assert pools <= set(settings.pools) | {"default_pool"}
    assert variables <= set(settings.variables)


# --- KubernetesExecutor pod template (documented, not run on a cluster here) ------------


def test_pod_template_is_a_pod_with_a_base_container_and_real_settings() -> None:
    from nuru_yield.config import Settings

    pod = yaml.safe_load((REPO / "docker" / "pod_template.yaml").read_text())
    assert _validation_errors(pod, _POD_SCHEMA) == []
    assert (pod["apiVersion"], pod["kind"]) == ("v1", "Pod")
    (container,) = pod["spec"]["containers"]
    assert container["name"] == "base"  # what the KubernetesExecutor requires
    assert pod["spec"]["restartPolicy"] == "Never"
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env["AIRFLOW__CORE__EXECUTOR"] == "KubernetesExecutor"
    fields = {name.upper() for name in Settings.model_fields}
    assert {name for name in env if not name.startswith("AIRFLOW__")} <= fields
    assert env["FEATURE_SHARDS"] == env["SCORING_SHARDS"]
    mounts = {mount["name"] for mount in container["volumeMounts"]}
    assert mounts <= {volume["name"] for volume in pod["spec"]["volumes"]}
    limit = container["resources"]["limits"]["memory"]
    assert limit.endswith("Gi") and float(limit[:-2]) <= 2  # the per-shard goal


# The parts of a Kubernetes Pod the template uses (types and required keys).
_POD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "metadata": {"type": "object", "properties": {"labels": {"type": "object"}}},
        "spec": {
            "type": "object",
            "required": ["containers"],
            "properties": {
                "containers": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "image"],
                        "properties": {
                            "env": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["name", "value"],
                                    "properties": {"value": {"type": "string"}},
                                },
                            },
                            "resources": {"type": "object"},
                        },
                    },
                },
                "volumes": {"type": "array", "items": {"required": ["name"]}},
            },
        },
    },
}


def test_tasks_wait_for_a_busy_api_server_in_every_airflow(
    services: dict[str, dict[str, Any]],
) -> None:
    """Under load a task failed before running any code (``httpcore.ReadTimeout`` in
    ``task_instances.start``: Airflow's 5 s per call to the API server) and succeeded on
    retry. The demo's Airflow, `make airflow` and the compose stack wait longer and retry
    more, with options the installed Airflow documents and its task SDK reads."""
    from importlib import metadata

    from nuru_yield.dev.airflow_standalone import EXECUTION_API_SETTINGS, airflow_environment

    template = metadata.distribution("apache-airflow-core").locate_file(
        "airflow/config_templates/config.yml"
    )
    workers = yaml.safe_load(Path(template).read_text())["workers"]["options"]
    client = metadata.distribution("apache-airflow-task-sdk").locate_file(
        "airflow/sdk/api/client.py"
    )
    reads = Path(client).read_text()
    for variable in EXECUTION_API_SETTINGS:
        section, option = variable.removeprefix("AIRFLOW__").lower().split("__")
        assert section == "workers" and option in workers, variable
        assert f'"workers", "{option}"' in reads, f"the task SDK's client does not read {option}"
    timeout = float(EXECUTION_API_SETTINGS["AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT"])
    assert timeout >= 10 * float(workers["execution_api_timeout"]["default"])
    retries = int(EXECUTION_API_SETTINGS["AIRFLOW__WORKERS__EXECUTION_API_RETRIES"])
    assert retries > int(workers["execution_api_retries"]["default"])

    demo = airflow_environment(REPO / ".nuru" / "airflow", 8080)
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    make_airflow = (
        subprocess.run(
            ["make", "--no-print-directory", "-n", "airflow"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
            env=env,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    airflow_services = [name for name in services if name.startswith("airflow-")]
    assert "airflow-worker" in airflow_services
    for variable, value in EXECUTION_API_SETTINGS.items():
        assert demo[variable] == value, variable
        assert f"{variable}={value} " in make_airflow, variable
        for name in airflow_services:
            assert _environment(services[name])[variable] == value, (name, variable)
