"""Development commands leave a deployment alone, checked against a production-like one.

A benchmark run with a deployment's settings in its environment once registered its
synthetic model in the real registry, moved ``@champion`` to it (no gate, no audit row)
and wrote its synthetic features into the real lake; the next night scored every plot with
it. Here a deployment is real services configured as docker-compose configures them: an
``mlflow server`` process whose model has a ``@champion``, an S3 lake (moto's server) with
raw inputs and a published night, a PostgreSQL predictions database with a published night,
alerts to a webhook, and a NURU_HOME. Each ``nuru-yield bench`` kind runs at a tiny size
through the real command with those settings in its environment: it must succeed, print
its JSON result, and leave the registry (models, versions, aliases, tags, experiments,
runs), the lake (every object and its ETag), the database (every table's rows) and
NURU_HOME exactly as they were.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from nuru_yield.dev.local_services import scratch_database
from nuru_yield.names import CHAMPION, MODEL_NAME, features_path

NURU_YIELD = str(Path(sys.executable).with_name("nuru-yield"))
PUBLISHED = dt.date(2025, 6, 15)


@dataclass(frozen=True)
class Deployment:
    environment: dict[str, str]
    admin_url: str  # the PostgreSQL server a bench may make its scratch database on
    home: Path
    bucket: str
    s3_endpoint: str
    tracking_uri: str
    database_url: str


def _s3(endpoint: str) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
    )


@pytest.fixture(scope="module")
def deployment(
    mlflow_server: str,
    s3_endpoint: str,
    postgres_server: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Deployment]:
    from mlflow import MlflowClient

    from nuru_yield.db.engine import dispose_engines
    from nuru_yield.dev.bench.api import load_predictions
    from nuru_yield.lake import Lake
    from nuru_yield.names import RAW_PLOTS

    # The registry: a champion, tagged by the gate, in the experiment training uses.
    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    if not client.search_registered_models(f"name = '{MODEL_NAME}'"):
        client.create_registered_model(MODEL_NAME)
        source = "s3://nuru-yield/models/m-1"
        version = client.create_model_version(MODEL_NAME, source=source).version
        client.set_registered_model_alias(MODEL_NAME, CHAMPION, version)
        client.set_model_version_tag(MODEL_NAME, version, "nuru.decision", "promoted")

    # The lake: raw inputs and a published night.
    bucket = f"nuru-{uuid.uuid4().hex[:10]}"
    _s3(s3_endpoint).create_bucket(Bucket=bucket)
    lake = Lake(f"s3://{bucket}", endpoint_url=s3_endpoint, access_key="test", secret_key="test")
    lake.write_parquet(RAW_PLOTS, pa.table({"plot_id": [1, 2, 3]}))
    lake.write_parquet(features_path(PUBLISHED), pa.table({"plot_id": [1, 2, 3]}))

    home = tmp_path_factory.mktemp("deployment") / "nuru"
    home.mkdir()
    (home / "kept.txt").write_text("the deployment's own file\n")
    with scratch_database(postgres_server) as database_url:
        load_predictions(database_url, 20)  # the schema and one published night
        dispose_engines()
        environment = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "S3_"))},
            "NURU_HOME": str(home),
            "LAKE_URL": f"s3://{bucket}",
            "S3_BUCKET_NAME": bucket,
            "S3_ENDPOINT_URL": s3_endpoint,
            "S3_ACCESS_KEY": "test",
            "S3_SECRET_KEY": "test",
            "MLFLOW_TRACKING_URI": mlflow_server,
            "MLFLOW_ARTIFACT_ROOT": "mlflow-artifacts:///nuru-yield",  # as docker-compose sets it
            "PREDICTIONS_DB_URL": database_url,
            "API_DB_URL": database_url,
            "ALERT_CHANNEL": "webhook",
            "ALERT_WEBHOOK_URL": "http://127.0.0.1:9/nuru-alerts",
        }
        yield Deployment(
            environment,
            postgres_server,
            home,
            bucket,
            s3_endpoint,
            mlflow_server,
            database_url,
        )


def snapshot(deployment: Deployment) -> dict[str, Any]:
    """Everything of the deployment a command could change."""
    import sqlalchemy as sa
    from mlflow import MlflowClient

    client = MlflowClient(
        tracking_uri=deployment.tracking_uri, registry_uri=deployment.tracking_uri
    )
    registry = {
        model.name: {
            "aliases": dict(client.get_registered_model(model.name).aliases),
            "versions": sorted(
                (v.version, v.source, v.run_id, v.current_stage, sorted(v.tags.items()))
                for v in client.search_model_versions(f"name = '{model.name}'")
            ),
        }
        for model in client.search_registered_models()
    }
    experiments = sorted(
        (e.name, len(client.search_runs([e.experiment_id]))) for e in client.search_experiments()
    )
    listing = _s3(deployment.s3_endpoint).list_objects_v2(Bucket=deployment.bucket)
    objects = {item["Key"]: item["ETag"] for item in listing.get("Contents", [])}
    engine = sa.create_engine(deployment.database_url)
    try:
        with engine.connect() as connection:
            tables = {
                table: sorted(
                    tuple(map(str, row))
                    for row in connection.execute(sa.text(f'SELECT * FROM "{table}"'))
                )
                for table in sa.inspect(connection).get_table_names()
            }
    finally:
        engine.dispose()
    home = sorted(
        (str(path.relative_to(deployment.home)), path.stat().st_size if path.is_file() else -1)
        for path in deployment.home.rglob("*")
    )
    return {
        "registry": registry,
        "experiments": experiments,
        "lake": objects,
        "database": tables,
        "home": home,
    }


@pytest.fixture(scope="module")
def before(deployment: Deployment) -> dict[str, Any]:
    state = snapshot(deployment)
    assert state["registry"][MODEL_NAME]["aliases"] == {CHAMPION: "1"}
    assert features_path(PUBLISHED) in state["lake"]
    assert state["database"]["predictions"]
    return state


BENCHES = {
    "features": ["bench", "features", "--plots", "300"],
    "scoring": ["bench", "scoring", "--plots", "300", "--model", "tiny"],
    "night": ["bench", "night", "--plots", "300", "--model", "tiny"],
    "api": ["bench", "api", "--rows", "300", "--seconds", "1"],
    "train": ["bench", "train", "--plots", "150"],
    "ingest": ["bench", "ingest", "--plots", "300"],
    "ingest --ndvi": [
        "bench",
        "ingest",
        "--ndvi",
        "--plots",
        "300",
        "--shards",
        "2",
        "--s2-pixels",
        "512",
    ],
}
# A key of each bench's JSON result and what it must hold at this size.
RESULTS = {
    "features": ("plots", 300),
    "scoring": ("plots", 300),
    "night": ("plots", 300),
    "api": ("rows", 300),
    "train": ("plots", 150),
    "ingest": ("plots", 300),
    "ingest --ndvi": ("plots", 300),
}


@pytest.mark.parametrize("kind", list(BENCHES))
def test_each_bench_runs_through_the_command_and_leaves_the_deployment_alone(
    kind: str, deployment: Deployment, before: dict[str, Any], tmp_path: Path
) -> None:
    argv = list(BENCHES[kind])
    if kind.split()[0] not in ("features", "train", "ingest"):
        argv += ["--db-url", deployment.admin_url]  # its scratch database goes on this server
    done = subprocess.run(
        [NURU_YIELD, *argv],
        env=deployment.environment,
        cwd=tmp_path,  # no stray .env file
        capture_output=True,
        text=True,
    )
    assert snapshot(deployment) == before  # first: a crash may have touched it already
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    key, value = RESULTS[kind]
    assert result[key] == value, result
