"""`make demo` end to end, as a user runs it (``nuru-yield demo``): sample data written as
the real products, the database, the five DAGs through a real Airflow standalone (the
products into the raw contract by ``raw_ingestion`` first), the summary, in its own scratch
home whatever a deployment's settings in the shell say.

The shell here names a deployment's lake, registry, database and alert webhook on ports
where nothing answers: had the demo used any of them, it would have failed."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from nuru_yield.dev.demo import DEMO_RUN_DATE
from nuru_yield.dev.local_services import free_port
from nuru_yield.dev.scratch import MARKER
from nuru_yield.lake import Lake
from nuru_yield.names import (
    RAW_PLOT_GEOMETRIES,
    RAW_WEATHER_SOURCES,
    bulletin_html_path,
    features_path,
    prediction_log_path,
)
from tests.fixtures.settings import SETTING_VARIABLES

NURU_YIELD = str(Path(sys.executable).with_name("nuru-yield"))


def test_the_demo_runs_the_night_in_its_own_scratch_home(tmp_path: Path) -> None:
    home = tmp_path / "nuru"
    nowhere = f"127.0.0.1:{free_port()}"
    environment = {
        **{k: v for k, v in os.environ.items() if k.upper() not in SETTING_VARIABLES},
        "NURU_HOME": str(home),
        "LAKE_URL": "s3://a-deployments-bucket",
        "S3_BUCKET_NAME": "a-deployments-bucket",
        "S3_ENDPOINT_URL": f"http://{nowhere}",
        "S3_ACCESS_KEY": "pipeline",
        "S3_SECRET_KEY": "secret",
        "MLFLOW_TRACKING_URI": f"http://{nowhere}",
        "PREDICTIONS_DB_URL": f"postgresql+psycopg://nuru:secret@{nowhere}/nuru",
        "ALERT_CHANNEL": "webhook",
        "ALERT_WEBHOOK_URL": f"http://{nowhere}/alerts",
    }
    done = subprocess.run(
        [NURU_YIELD, "demo", "--plots", "400", "--no-serve", "--stall-minutes", "20"],
        env=environment,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )

    assert done.returncode == 0, done.stderr[-5000:]
    assert "Nuru Yield demo ready" in done.stdout, done.stdout
    assert "champion: Ensemble_VotingRegressor v1" in done.stdout
    assert "airflow: raw_ingestion success" in done.stderr
    assert "airflow: model_training success" in done.stderr
    assert (home / MARKER).exists()
    lake = Lake(f"file://{home / 'lake'}")
    # The raw contract came through the adapters: what only an ingest writes is there.
    assert lake.exists(RAW_PLOT_GEOMETRIES) and lake.exists(RAW_WEATHER_SOURCES)
    # NDVI from both raster paths: MOD13Q1-style composites and Sentinel-2 scenes (STAC).
    ledgers = {path.rsplit("/", 1)[-1].rsplit("-", 1)[0] for path in lake.list("sources/ndvi")}
    assert ledgers == {"mod13q1", "sentinel-2-l2a"}, ledgers
    assert lake.exists(features_path(DEMO_RUN_DATE))
    assert lake.exists(prediction_log_path(DEMO_RUN_DATE))
    with sqlite3.connect(home / "predictions.db") as connection:
        [(scored,)] = connection.execute(
            "SELECT COUNT(*) FROM predictions WHERE run_date = ? AND model_name = 'champion'",
            (DEMO_RUN_DATE.isoformat(),),
        ).fetchall()
    assert scored > 0
    with sqlite3.connect(home / "predictions.db") as connection:
        [(counties,)] = connection.execute(
            "SELECT COUNT(*) FROM county_forecasts WHERE run_date = ?",
            (DEMO_RUN_DATE.isoformat(),),
        ).fetchall()
    assert counties > 0
    assert f"county bulletin of {DEMO_RUN_DATE}" in done.stdout
    assert lake.exists(bulletin_html_path(DEMO_RUN_DATE))
