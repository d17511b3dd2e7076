"""The whole nightly chain under a real Airflow, on the real path: the sample world written
as the products a crop team downloads (CHIRPS, AgERA5, GeoJSON plots, crop cuts) and
ingested through the adapters; trigger ``raw_ingestion`` through the REST API v2, let the
Asset chain run ``feature_materialization`` (keyed by the night ``raw_inputs`` names),
``batch_scoring`` and ``drift_monitoring``, then check what a user would look at — the
predictions partition in PostgreSQL, the ``scoring_runs`` row, the drift rows, and an API
lookup of a scored plot.

First under ``airflow standalone`` (LocalExecutor, as ``make demo``), then again for the
same night under the CeleryExecutor with two ``airflow celery worker`` processes behind a
Redis broker (as in production): the metadata DB must show the feature and scoring shards
spread over both workers, and the rerun must publish exactly what the LocalExecutor did.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import psutil
import pyarrow.compute as pc
import pytest
import sqlalchemy as sa

from nuru_yield.config import reset_settings
from nuru_yield.dev.airflow_standalone import (
    AirflowStandalone,
    celery_cluster,
    run_chain,
    standalone,
)
from nuru_yield.lake import Lake
from nuru_yield.names import features_path

# Early in the Long Rains 2025: most plots are under 30 days in the ground (the first month
# once collapsed to a fraction of the harvest), the Short Rains 2024 near harvest.
RUN_DATE = dt.date(2025, 4, 10)
# Features and scoring: more mapped tasks than workers. The worker that ran the task before
# the shards may still be freeing its slot when they are queued (seconds, on a busy
# machine): with three shards the other worker would have to run two of them meanwhile.
SHARDS = "3"
WORKERS = ("worker-a", "worker-b")

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]


@pytest.fixture
def demo_world(nuru_home: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Sample data as the real products (configured as the sources, as in the demo) and
    ingested through the adapters, a migrated PostgreSQL predictions database and a trained
    champion."""
    from nuru_yield.db.migrations import upgrade
    from nuru_yield.dev.demo import demo_sources
    from nuru_yield.sample_data.formats import SOURCES_DIR
    from nuru_yield.sample_data.generator import generate_to_lake
    from nuru_yield.sources.ingest import ingest_all
    from nuru_yield.training.candidates import TrainingParams
    from nuru_yield.training.pipeline import train

    monkeypatch.setenv("PREDICTIONS_DB_URL", postgres_url)
    monkeypatch.setenv("SCORING_SHARDS", SHARDS)
    monkeypatch.setenv("FEATURE_SHARDS", SHARDS)
    for name, value in demo_sources(nuru_home).items():
        monkeypatch.setenv(name, value)
    reset_settings()
    lake = Lake.from_settings()
    generate_to_lake(
        lake, plots=400, start_year=2022, end_year=2025, seed=3,
        real_formats=nuru_home / SOURCES_DIR, raw_contract=False,
    )  # fmt: skip
    assert not lake.exists("raw/plots.parquet")  # the adapters write the raw contract
    # The days up to five nights before: raw_ingestion in Airflow reads the rest.
    ingest_all(RUN_DATE - dt.timedelta(days=5))
    upgrade()
    small = TrainingParams(boosting_rounds=60, forest_rounds=30, forest_depth=8, num_leaves=15)
    summary = train(RUN_DATE, lake, params=small)
    assert summary.outcome.decision == "promoted"
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


def _stopped_cleanly(started: list[psutil.Process]) -> None:
    survivors = [
        f"{member.pid} {member.cmdline()}"
        for member in started
        if member.is_running() and member.status() != psutil.STATUS_ZOMBIE
    ]
    assert not survivors, f"Airflow processes outlived their context: {survivors}"


def _chain(airflow: AirflowStandalone) -> tuple[dict[str, dict], list[psutil.Process]]:
    runs = run_chain(airflow, RUN_DATE, stall=900, from_ingestion=True)
    overhead = {dag_id: airflow.overhead(dag_id, run) for dag_id, run in runs.items()}
    print("airflow overhead (wall / sum of task run times):", json.dumps(overhead, indent=2))
    assert {run["state"] for run in runs.values()} == {"success"}
    downstream = ("feature_materialization", "batch_scoring", "drift_monitoring")
    assert {runs[dag_id]["triggered_by"] for dag_id in downstream} == {"asset"}
    # Every run after raw_ingestion is Airflow's partition of the night its raw_inputs event
    # named (the UI shows it on each run); raw_ingestion, not partitioned, has none.
    assert {dag_id: run["partition_key"] for dag_id, run in runs.items()} == {
        "raw_ingestion": None,
        **dict.fromkeys(downstream, RUN_DATE.isoformat()),
    }
    return runs, airflow.processes()


def _published(predictions_db: str) -> dict[str, object]:
    """The night as published: features, predictions and drift rows (order-independent)."""
    features = Lake.from_settings().read_parquet(features_path(RUN_DATE)).to_pylist()
    engine = sa.create_engine(predictions_db)
    with engine.connect() as conn:
        predictions = conn.execute(
            sa.text(
                "SELECT plot_id, season_year, season, model_name, model_version, "
                "predicted_yield_kg_per_ha, yield_lower, yield_upper, top_drivers "
                "FROM predictions WHERE run_date = :d ORDER BY plot_id, season_year, season"
            ),
            {"d": RUN_DATE.isoformat()},
        ).all()
        drift = conn.execute(
            sa.text(
                "SELECT feature, county, statistic, value, drifted FROM drift_reports "
                "WHERE run_date = :d ORDER BY feature, county NULLS FIRST"
            ),
            {"d": RUN_DATE.isoformat()},
        ).all()
        counties = conn.execute(
            sa.text(
                "SELECT county, season, season_year, n_plots, forecast_kg_per_ha, "
                "lower_kg_per_ha, pct_of_5yr_mean, rain_pct_of_normal, status "
                "FROM county_forecasts WHERE run_date = :d ORDER BY county, season"
            ),
            {"d": RUN_DATE.isoformat()},
        ).all()
    engine.dispose()
    assert counties, "the scoring run wrote no county forecasts"
    return {
        "features": sorted(features, key=lambda row: (row["plot_id"], row["season"])),
        "predictions": [tuple(row) for row in predictions],
        "drift": [tuple(row) for row in drift],
        "counties": [tuple(row) for row in counties],
    }


def _early_season_is_not_a_drought(engine: sa.Engine) -> None:
    """The night by days after planting, as the demo prints it: forecasts of crops a few
    days in the ground stay near their county normal (the season is not yet known), every
    row says what it rests on, and none collapses below 100 kg/ha."""
    from nuru_yield.dev.demo import lead_band_table

    with engine.connect() as conn:
        print(lead_band_table(conn, RUN_DATE))
        early = conn.execute(
            sa.text(
                "SELECT COUNT(*) AS n, AVG(predicted_yield_kg_per_ha) AS forecast, "
                "AVG(normal_kg_per_ha) AS normal, "
                "SUM(CASE WHEN predicted_yield_kg_per_ha < 100 THEN 1 ELSE 0 END) AS collapsed, "
                "SUM(CASE WHEN basis IS NULL THEN 1 ELSE 0 END) AS without_basis "
                "FROM predictions WHERE run_date = :d AND model_name = 'champion' "
                "AND days_after_planting < 30"
            ),
            {"d": RUN_DATE.isoformat()},
        ).one()
    assert early.n >= 100, early
    assert early.without_basis == 0 and early.collapsed == 0, early
    assert 0.6 < early.forecast / early.normal < 1.5, early


def _hosts(metadata_url: str, runs: dict[str, dict], task_id: str) -> dict[int, tuple]:
    """map_index -> (hostname, queue, state, start, end) of a mapped task in ``runs``."""
    engine = sa.create_engine(metadata_url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT map_index, hostname, queue, state, start_date, end_date "
                "FROM task_instance WHERE task_id = :task AND run_id IN :runs"
            ).bindparams(sa.bindparam("runs", expanding=True)),
            {"task": task_id, "runs": [run["dag_run_id"] for run in runs.values()]},
        ).all()
    engine.dispose()
    return {
        row.map_index: (
            row.hostname, row.queue, row.state, f"{row.start_date:%T.%f}", f"{row.end_date:%T.%f}"
        )
        for row in rows
    }  # fmt: skip


def test_the_chain_runs_under_local_and_celery_executors_with_the_same_result(
    demo_world: str, airflow_metadata_url: str, redis_url: str, nuru_home: Path
) -> None:
    metadata = {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": airflow_metadata_url}
    with standalone(nuru_home / "airflow", extra_env=metadata) as airflow:
        _chain(airflow)
        started = airflow.processes()
    _stopped_cleanly(started)

    lake = Lake.from_settings()
    weather = lake.read_parquet(lake.list("raw/weather/year=2025", ".parquet"))
    assert pc.max(weather["date"]).as_py() == RUN_DATE  # raw_ingestion's shards read the rest
    in_progress = Lake.from_settings().read_parquet(features_path(RUN_DATE)).num_rows
    assert in_progress > 0
    engine = sa.create_engine(demo_world)
    with engine.connect() as conn:
        champion_rows = conn.execute(
            sa.text(
                "SELECT COUNT(*) FROM predictions WHERE run_date = :d AND model_name = 'champion'"
            ),
            {"d": RUN_DATE.isoformat()},
        ).scalar_one()
        scoring_run = conn.execute(
            sa.text(
                "SELECT status, plots_scored, model_version FROM scoring_runs WHERE run_date = :d"
            ),
            {"d": RUN_DATE.isoformat()},
        ).one()
        drift_rows = conn.execute(
            sa.text("SELECT COUNT(*) FROM drift_reports WHERE run_date = :d"),
            {"d": RUN_DATE.isoformat()},
        ).scalar_one()
        plot_id = conn.execute(
            sa.text("SELECT MIN(plot_id) FROM predictions WHERE run_date = :d"),
            {"d": RUN_DATE.isoformat()},
        ).scalar_one()
    engine.dispose()
    assert champion_rows == in_progress
    _early_season_is_not_a_drought(engine)
    assert scoring_run.status == "success"
    assert scoring_run.plots_scored == in_progress
    assert drift_rows > 0

    from fastapi.testclient import TestClient

    from nuru_yield.serving.app import create_app

    with TestClient(create_app()) as client:
        response = client.post("/predict", json={"plot_id": plot_id})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["run_date"] == RUN_DATE.isoformat()
    assert body["model_version"] == scoring_run.model_version
    assert body["yield_lower"] < body["predicted_yield_kg_per_ha"] < body["yield_upper"]

    # The same night again, on two Celery workers: a rerun that replaces the partitions.
    local = _published(demo_world)
    with celery_cluster(
        nuru_home / "airflow-celery",
        broker_url=redis_url,
        metadata_url=airflow_metadata_url,
        workers=WORKERS,
    ) as airflow:
        runs, started = _chain(airflow)
    _stopped_cleanly(started)

    for task_id, dag_id in (
        ("materialize_shard", "feature_materialization"),
        ("score_shard", "batch_scoring"),
    ):
        tasks = _hosts(airflow_metadata_url, {dag_id: runs[dag_id]}, task_id)
        assert sorted(tasks) == list(range(int(SHARDS))), tasks
        assert {task[2] for task in tasks.values()} == {"success"}
        assert {task[1] for task in tasks.values()} == {"default"}
        assert {task[0] for task in tasks.values()} == set(WORKERS), (task_id, tasks)
    assert _published(demo_world) == local
