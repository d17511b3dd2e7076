"""Development commands work in a scratch space of their own (``nuru_yield.dev.scratch``):
every setting that names a target points inside it for the block and for the processes it
starts, everything is put back afterwards, and a named home that holds a deployment's
champion or published nights is refused in one line. The production-like end-to-end check
(a real MLflow server, an S3 lake, PostgreSQL) is tests/integration/test_dev_isolation.py."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from nuru_yield.config import get_settings, reset_settings
from nuru_yield.db.engine import dispose_engines
from nuru_yield.dev.bench import run_isolated
from nuru_yield.dev.scratch import MARKER, SCRATCH_VARIABLES, ScratchTargetError, scratch_space

PRODUCTION = {
    "NURU_HOME": "/opt/nuru",
    "LAKE_URL": "s3://nuru-yield",
    "S3_BUCKET_NAME": "nuru-yield",
    "S3_ENDPOINT_URL": "http://minio:9000",
    "S3_ACCESS_KEY": "pipeline",
    "S3_SECRET_KEY": "s3cret",
    "MLFLOW_TRACKING_URI": "http://mlflow-server:5000",
    "MLFLOW_ARTIFACT_ROOT": "s3://nuru-yield/mlartifacts",
    "PREDICTIONS_DB_URL": "postgresql+psycopg://nuru:secret@postgres:5432/nuru",
    "API_DB_URL": "postgresql+psycopg://nuru_api:secret@postgres:5432/nuru",
    "ALERT_CHANNEL": "webhook",
    "ALERT_WEBHOOK_URL": "https://hooks.example.org/nuru",
}


def _targets() -> dict[str, str]:
    """What the settings of a process point at (run in a spawned child too)."""
    settings = get_settings()
    return {
        "home": str(settings.nuru_home),
        "lake": settings.lake_url,
        "registry": settings.mlflow_tracking_uri,
        "artifacts": settings.mlflow_artifact_root,
        "database": settings.predictions_db_url,
        "api_database": settings.api_db_url,
        "bucket": settings.s3_bucket_name or "",
        "endpoint": settings.s3_endpoint_url or "",
        "alerts": settings.alert_channel,
    }


@pytest.fixture
def production(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name, value in PRODUCTION.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    reset_settings()
    return PRODUCTION


def test_every_target_points_inside_the_scratch_space_and_comes_back_after(
    production: dict[str, str],
) -> None:
    before = {name: os.environ.get(name) for name in (*SCRATCH_VARIABLES, *production)}
    assert get_settings().lake_url == "s3://nuru-yield"

    with scratch_space("a test") as space:
        home = space.home
        inside = _targets()
        child = run_isolated(_targets).result  # what a spawned step sees

    assert inside == child
    assert inside == {
        "home": str(home),
        "lake": f"file://{home / 'lake'}",
        "registry": f"sqlite:///{home / 'mlflow.db'}",
        "artifacts": str(home / "mlartifacts"),
        "database": f"sqlite:///{home / 'predictions.db'}",
        "api_database": f"sqlite:///{home / 'predictions.db'}",
        "bucket": "",
        "endpoint": "",
        "alerts": "off",
    }
    assert not home.exists()  # a temporary space is removed
    assert {name: os.environ.get(name) for name in before} == before
    assert get_settings().mlflow_tracking_uri == "http://mlflow-server:5000"


def test_mlflow_process_wide_uris_point_inside_and_are_restored(
    production: dict[str, str], tmp_path: Path
) -> None:
    import mlflow

    mlflow.set_tracking_uri("http://mlflow-server:5000")
    mlflow.set_registry_uri("http://mlflow-server:5000")
    try:
        with scratch_space("a test", parent=tmp_path) as space:
            registry = f"sqlite:///{space.home / 'mlflow.db'}"
            assert mlflow.get_tracking_uri() == registry
            assert mlflow.get_registry_uri() == registry
        assert mlflow.get_tracking_uri() == "http://mlflow-server:5000"
        assert mlflow.get_registry_uri() == "http://mlflow-server:5000"
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)


def test_a_named_home_is_kept_and_marked_and_an_explicit_database_is_used(
    production: dict[str, str], tmp_path: Path
) -> None:
    database = f"sqlite:///{tmp_path / 'made-for-the-bench.db'}"
    with scratch_space("the demo", home=tmp_path / "demo", predictions_db_url=database):
        assert get_settings().predictions_db_url == database
        assert get_settings().api_db_url == database
        assert get_settings().nuru_home == tmp_path / "demo"
    assert (tmp_path / "demo" / MARKER).read_text().startswith("A scratch space")


def _champion_in(home: Path) -> None:
    """A registry in ``home`` whose model has a @champion (as a deployment's would)."""
    from nuru_yield.models.registry import mlflow_client
    from nuru_yield.names import CHAMPION, MODEL_NAME

    client = mlflow_client()
    client.create_registered_model(MODEL_NAME)
    version = client.create_model_version(MODEL_NAME, source=str(home / "model")).version
    client.set_registered_model_alias(MODEL_NAME, CHAMPION, version)


def _published_night_in(home: Path) -> None:
    from nuru_yield.lake import Lake
    from nuru_yield.names import features_path

    Lake.from_settings().write_parquet(features_path(dt.date(2025, 6, 15)), pa.table({"a": [1]}))


def _published_predictions_in(home: Path) -> None:
    import sqlalchemy as sa

    from nuru_yield.db.engine import get_engine
    from nuru_yield.db.migrations import upgrade

    upgrade()
    with get_engine().begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO predictions (run_date, plot_id, season_year, season, model_name, "
                "model_version, predicted_yield_kg_per_ha, run_id, scored_at) VALUES "
                "('2025-06-15', 1, 2025, 'Long Rains', 'champion', '1', 1800.0, 'r', "
                "'2025-06-15 02:00:00')"
            )
        )


@pytest.mark.parametrize(
    ("deploy", "what"),
    [
        (_champion_in, "it holds @champion (Ensemble_VotingRegressor v1)"),
        (_published_night_in, "it holds published nights (2025-06-15)"),
        (_published_predictions_in, "it holds published predictions (2025-06-15)"),
    ],
)
def test_a_home_in_use_is_refused_in_one_line_unless_a_development_command_made_it(
    production: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, deploy, what
) -> None:
    home = tmp_path / "deployment"
    for name in ("LAKE_URL", "MLFLOW_TRACKING_URI", "PREDICTIONS_DB_URL", "API_DB_URL"):
        monkeypatch.delenv(name)  # an embedded deployment: everything under NURU_HOME
    monkeypatch.setenv("NURU_HOME", str(home))
    reset_settings()
    deploy(home)
    dispose_engines()  # SQLite's -wal and -shm files go with the last connection
    listing = sorted(path.name for path in home.rglob("*"))

    with pytest.raises(ScratchTargetError) as refused, scratch_space("the demo", home=home):
        pytest.fail("the block ran in a deployment's home")

    [line] = str(refused.value).splitlines()
    assert line.startswith("refusing to run the demo on the ")
    assert what in line and "scratch space of its own" in line
    assert refused.value.exit_code == 2
    assert sorted(path.name for path in home.rglob("*")) == listing  # not even marked
    assert os.environ["NURU_HOME"] == str(home)  # the environment is back

    (home / MARKER).write_text("made by the demo\n")  # the demo's own home: reused
    with scratch_space("the demo", home=home) as space:
        assert space.home == home


def test_make_airflow_runs_its_commands_inside_the_scratch_home(
    production: dict[str, str], tmp_path: Path
) -> None:
    show = "import os; print(os.environ['LAKE_URL'], os.environ['MLFLOW_TRACKING_URI'])"
    command = [sys.executable, "-m", "nuru_yield.dev.scratch", "--home", str(tmp_path / "h")]
    command += ["--purpose", "make airflow", "--", sys.executable, "-c", show]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    home = tmp_path / "h"
    assert done.stdout.split() == [f"file://{home / 'lake'}", f"sqlite:///{home / 'mlflow.db'}"]
    assert (home / MARKER).exists()
