"""The whole nightly chain under a real Airflow (scheduler, DAG processor, API server,
LocalExecutor): trigger ``feature_materialization`` through the REST API v2, let the Asset
chain run ``batch_scoring`` and ``drift_monitoring``, then check what a user would look at —
the predictions partition in PostgreSQL, the ``scoring_runs`` row, the drift rows, and an
API lookup of a scored plot.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import psutil
import pytest
import sqlalchemy as sa

from nuru_yield.airflow_standalone import run_chain, standalone
from nuru_yield.config import reset_settings
from nuru_yield.lake import Lake, features_path

RUN_DATE = "2025-06-15"

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture
def demo_world(nuru_home: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Sample data, a migrated PostgreSQL predictions database and a trained champion."""
    from nuru_yield.db import upgrade
    from nuru_yield.sample_data import generate_to_lake
    from nuru_yield.training import train
    from nuru_yield.training.candidates import TrainingParams

    monkeypatch.setenv("PREDICTIONS_DB_URL", postgres_url)
    monkeypatch.setenv("SCORING_SHARDS", "2")
    reset_settings()
    lake = Lake.from_settings()
    generate_to_lake(lake, plots=400, start_year=2022, end_year=2025, seed=3)
    upgrade()
    small = TrainingParams(boosting_rounds=60, forest_rounds=30, forest_depth=8, num_leaves=15)
    summary = train(dt.date.fromisoformat(RUN_DATE), lake, params=small)
    assert summary.outcome["decision"] == "promoted"
    return postgres_url


@pytest.fixture
def airflow_metadata_url(postgres_server: str) -> str:
    """Airflow's own metadata database on the same PostgreSQL server (as in production)."""
    admin = sa.create_engine(postgres_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text("DROP DATABASE IF EXISTS airflow_e2e WITH (FORCE)"))
        conn.execute(sa.text("CREATE DATABASE airflow_e2e"))
    admin.dispose()
    return postgres_server.rsplit("/", 1)[0] + "/airflow_e2e"


def test_asset_chain_runs_under_real_airflow(
    demo_world: str, airflow_metadata_url: str, nuru_home: Path
) -> None:
    metadata = {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": airflow_metadata_url}
    with standalone(nuru_home / "airflow", extra_env=metadata) as airflow:
        runs = run_chain(airflow, RUN_DATE, timeout=900)
        overhead = {dag_id: airflow.overhead(dag_id, run) for dag_id, run in runs.items()}
        started = airflow.processes()
    survivors = [
        f"{member.pid} {member.cmdline()}"
        for member in started
        if member.is_running() and member.status() != psutil.STATUS_ZOMBIE
    ]
    assert not survivors, f"Airflow processes outlived the standalone context: {survivors}"
    print("airflow overhead (wall / sum of task run times):", json.dumps(overhead, indent=2))

    assert {run["state"] for run in runs.values()} == {"success"}
    assert runs["batch_scoring"]["triggered_by"] == "asset"
    assert runs["drift_monitoring"]["triggered_by"] == "asset"

    in_progress = Lake.from_settings().read_parquet(features_path(RUN_DATE)).num_rows
    assert in_progress > 0
    engine = sa.create_engine(demo_world)
    with engine.connect() as conn:
        champion_rows = conn.execute(
            sa.text(
                "SELECT COUNT(*) FROM predictions WHERE run_date = :d AND model_name = 'champion'"
            ),
            {"d": RUN_DATE},
        ).scalar_one()
        scoring_run = conn.execute(
            sa.text(
                "SELECT status, plots_scored, model_version FROM scoring_runs WHERE run_date = :d"
            ),
            {"d": RUN_DATE},
        ).one()
        drift_rows = conn.execute(
            sa.text("SELECT COUNT(*) FROM drift_reports WHERE run_date = :d"), {"d": RUN_DATE}
        ).scalar_one()
        plot_id = conn.execute(
            sa.text("SELECT MIN(plot_id) FROM predictions WHERE run_date = :d"), {"d": RUN_DATE}
        ).scalar_one()
    engine.dispose()
    assert champion_rows == in_progress
    assert scoring_run.status == "success"
    assert scoring_run.plots_scored == in_progress
    assert drift_rows > 0

    from fastapi.testclient import TestClient

    from nuru_yield.serving.app import create_app

    with TestClient(create_app()) as client:
        response = client.post("/predict", json={"plot_id": plot_id})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["run_date"] == RUN_DATE
    assert body["model_version"] == scoring_run.model_version
    assert body["yield_lower"] < body["predicted_yield_kg_per_ha"] < body["yield_upper"]
