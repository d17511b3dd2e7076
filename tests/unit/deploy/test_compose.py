"""The production stack's files, checked without a Docker engine: the compose file itself.

`docker compose config` needs the compose plugin, which this machine (and a fresh CI
runner, possibly) lacks: the compose file is validated against the compose-spec JSON schema
vendored by check-jsonschema, with its variables interpolated the way compose does, and
every path, image, variable and setting it references is checked against the repository.
Where `docker compose` exists, it validates the file as well. The commands it runs, the API
image, the dependencies, Grafana, the database roles, CI, `airflow_settings.yaml` and the
Kubernetes pod template are checked by the other tests of this folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from tests.unit.deploy.stack import (
    COMPOSE_FILE,
    DOCKERFILE,
    ENV_EXAMPLE,
    REPO,
    MissingVariable,
    argv_of,
    environment_of,
    interpolate_tree,
    validation_errors,
    vendored_schema,
)

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


def test_compose_file_follows_the_compose_spec(
    raw_compose: dict[str, Any], compose: dict[str, Any]
) -> None:
    schema = vendored_schema("compose-spec.json")
    assert validation_errors(raw_compose, schema) == []
    assert validation_errors(compose, schema) == []


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
        assert argv_of(service["command"]) == command
        mounts = {volume.split(":")[0]: volume.split(":")[1] for volume in service["volumes"]}
        for folder in ("dags", "plugins", "include"):
            assert mounts[f"./{folder}"] == f"/opt/airflow/{folder}"
        environment = environment_of(service)
        assert environment["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert environment["AIRFLOW__CELERY__BROKER_URL"] == "redis://redis:6379/0"
        assert environment["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("@postgres:5432/airflow")
        assert environment["AIRFLOW__CELERY__RESULT_BACKEND"].endswith("@postgres:5432/airflow")
        assert "redis" in service["depends_on"]
    workers = services["airflow-worker"]
    assert int(workers["deploy"]["replicas"]) >= 2, "at least two Celery workers"
    assert "inspect ping" in " ".join(argv_of(workers["healthcheck"]["test"]))
    assert argv_of(services["redis"]["healthcheck"]["test"]) == ["CMD", "redis-cli", "ping"]
    init = argv_of(services["airflow-init"]["command"])
    assert init[:2] == ["bash", "-c"] and "airflow db migrate" in init[2]
    assert argv_of(services["nuru-init"]["entrypoint"]) + argv_of(
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
        environment = environment_of(services[name])
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
    environment = environment_of(api)
    for variable in ("API_DB_URL", "PREDICTIONS_DB_URL"):
        url = make_url(environment[variable])
        assert (url.username, url.host, url.database) == ("nuru_api", "postgres", "nuru")
    raw_api = json.dumps(raw_compose["services"]["inference-api"])
    assert "NURU_DB_PASSWORD" not in raw_api, "the API must not see the owner's password"
    assert "${S3_API_ACCESS_KEY}" in raw_api and "${S3_ACCESS_KEY" not in raw_api
    assert int(api["deploy"]["replicas"]) >= 2
    assert "/health" in " ".join(argv_of(api["healthcheck"]["test"]))
    first, _, last = api["ports"][0].rpartition(":")[0].partition("-")
    assert int(last) - int(first) + 1 >= int(api["deploy"]["replicas"]), "one port per replica"
    assert (
        services["nginx"]["networks"]["default"]["ipv4_address"]
        == environment["FORWARDED_ALLOW_IPS"]
    )


def test_the_forecasts_view_is_served_by_the_api_server_with_the_read_only_role(
    services: dict[str, dict[str, Any]],
) -> None:
    """The Forecasts view is a plugin of ``plugins/`` (mounted into every Airflow service,
    baked into the image) served by the API server, which reads the prediction tables for it
    as ``nuru_api`` (SELECT only); the pipeline's services keep the owner role."""
    from sqlalchemy.engine import make_url

    from nuru_yield.ui.plugin import ForecastsPlugin

    plugin = REPO / "plugins" / "nuru_forecasts.py"
    assert "from nuru_yield.ui.plugin import ForecastsPlugin" in plugin.read_text()
    assert ForecastsPlugin.fastapi_apps and ForecastsPlugin.external_views
    assert "COPY --chown=airflow:0 plugins/ plugins/" in DOCKERFILE.read_text()
    apiserver = environment_of(services["airflow-apiserver"])
    url = make_url(apiserver["API_DB_URL"])
    assert (url.username, url.host, url.database) == ("nuru_api", "postgres", "nuru")
    for name in ("airflow-scheduler", "airflow-worker", "airflow-dag-processor"):
        assert "API_DB_URL" not in environment_of(services[name]), name
        assert make_url(environment_of(services[name])["PREDICTIONS_DB_URL"]).username == "nuru"


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
            assert environment_of(services[name])[variable] == value, (name, variable)
