"""``airflow_settings.yaml``: the Astro format, the stack's connections, and every connection,
pool and variable the DAGs use."""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from tests.unit.deploy.stack import REPO, environment_of


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
        for key, value in environment_of(services["airflow-scheduler"]).items()
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
