"""`make demo` / `nuru-yield demo`: the whole product on the embedded defaults.

Sample data → database → the four DAGs run by a real Airflow (standalone: scheduler, DAG
processor, API server; LocalExecutor) for a night inside the latest season → a summary →
the API on :8000 (``--port``) until Ctrl-C. Each step is the same library function as its
CLI command and DAG task.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
import typer

from nuru_yield.config import Settings, get_settings
from nuru_yield.dev.airflow_standalone import DEFAULT_STALL_SECONDS
from nuru_yield.errors import mask_passwords
from nuru_yield.lake import Lake
from nuru_yield.names import RAW_PLOTS, drift_html_path, prediction_log_path

log = logging.getLogger(__name__)

DEMO_START_YEAR = 2020
DEMO_END_YEAR = 2025
# Early in the Long Rains 2025 (planted Mar–May, no harvest labels yet): most plots are under
# 30 days in the ground, the forecasts a support team reads the week the crop goes in; the
# Short Rains 2024 crops are near harvest.
DEMO_RUN_DATE = dt.date(2025, 4, 10)
STEPS = 5
DEMO_HOST = "127.0.0.1"
DEMO_PORT = 8000


def _step(number: int, text: str) -> None:
    typer.secho(f"[{number}/{STEPS}] {mask_passwords(text)}", bold=True)


def rerun_hints(home: Path, run_date: dt.date) -> dict[str, str]:
    """Per DAG, what to run again when its run fails or stalls: the demo (its sample data
    is kept), with a longer wait for a busy machine, or that step alone from the command
    line (each DAG calls the same library function as its command)."""
    steps = {
        "model_training": "train",
        "feature_materialization": "features",
        "batch_scoring": "score",
        "drift_monitoring": "drift",
    }
    return {
        dag_id: (
            f"`make demo` (the sample data in {home} is kept; `make demo STALL_MINUTES=30` "
            f"waits longer on a busy machine), or this step alone: "
            f"`NURU_HOME={home} nuru-yield {step} --date {run_date.isoformat()}`"
        )
        for dag_id, step in steps.items()
    }


def run_demo(
    plots: int,
    seed: int,
    serve: bool = True,
    port: int = DEMO_PORT,
    stall_minutes: float | None = None,
) -> None:
    """Build everything from an empty NURU_HOME (reusing sample data if present), then serve
    the API on ``port``, which is checked first: minutes of pipeline are not spent to find
    it taken at the end.

    Everything happens in NURU_HOME as a scratch space (:mod:`nuru_yield.dev.scratch`): its
    own lake, registry and database whatever ``LAKE_URL``, ``MLFLOW_TRACKING_URI`` or
    ``PREDICTIONS_DB_URL`` say, and a NURU_HOME that holds a deployment's champion or
    published nights is refused. The waits for the DAG runs follow their progress and give
    up after ``stall_minutes`` (default ``DEFAULT_STALL_SECONDS``) without any (see
    ``AirflowStandalone.wait_for_run``)."""
    from nuru_yield.dev.local_services import check_port_free
    from nuru_yield.dev.scratch import scratch_space

    if serve:
        check_port_free(
            DEMO_HOST, port, "the demo's API (make demo PORT=… / nuru-yield demo --port …)"
        )
    with scratch_space("the demo", home=get_settings().nuru_home):
        stall = DEFAULT_STALL_SECONDS if stall_minutes is None else stall_minutes * 60
        _build_and_serve(plots, seed, serve, port, stall)


def _build_and_serve(plots: int, seed: int, serve: bool, port: int, stall: float) -> None:
    from nuru_yield.db.migrations import upgrade
    from nuru_yield.dev.airflow_standalone import run_chain, standalone

    settings = get_settings()
    lake = Lake.from_settings(settings)
    lake.check_writable()
    started = time.monotonic()

    if lake.exists(RAW_PLOTS):
        _step(
            1,
            f"sample data already in {lake.uri('raw')} (delete {settings.nuru_home} to regenerate)",
        )
    else:
        from nuru_yield.sample_data.generator import generate_to_lake

        _step(1, f"sample data: {plots:,} plots, {DEMO_START_YEAR}-{DEMO_END_YEAR}")
        summary = generate_to_lake(
            lake, plots=plots, start_year=DEMO_START_YEAR, end_year=DEMO_END_YEAR, seed=seed
        )
        typer.echo(summary.render())

    version = upgrade()
    _step(2, f"predictions database at schema version {version}: {settings.predictions_db_url}")

    airflow_home = settings.nuru_home / "airflow"
    _step(
        3,
        f"starting Airflow standalone (home {airflow_home}; log {airflow_home / 'standalone.log'})",
    )
    with standalone(airflow_home) as airflow:
        airflow.wait_for_dags(
            ("model_training", "feature_materialization", "batch_scoring", "drift_monitoring")
        )
        rerun = rerun_hints(settings.nuru_home, DEMO_RUN_DATE)
        _step(4, f"model_training for {DEMO_RUN_DATE} (candidates → evaluation → gate → alias)")
        with airflow.unpaused(("model_training",)):
            training_run = airflow.trigger(
                "model_training", {"run_date": DEMO_RUN_DATE.isoformat()}
            )
            airflow.wait_for_run(
                "model_training", training_run, stall, rerun=rerun["model_training"]
            )
        _step(
            5,
            f"nightly chain for {DEMO_RUN_DATE}: feature_materialization → batch_scoring → drift_monitoring",
        )
        runs = run_chain(airflow, DEMO_RUN_DATE, stall, rerun)
        overhead = {dag_id: airflow.overhead(dag_id, run) for dag_id, run in runs.items()}

    typer.echo(render_summary(settings, lake, overhead, time.monotonic() - started, port))
    if serve:
        from nuru_yield.serving.app import run

        typer.secho(f"API on http://{DEMO_HOST}:{port} (docs at /docs) — Ctrl-C to stop", bold=True)
        run(DEMO_HOST, port)


def _one(conn: sa.Connection, sql: str, **params: Any) -> Any:
    return conn.execute(sa.text(sql), params).mappings().first()


def lead_band_table(connection: sa.Connection, run_date: dt.date) -> str:
    """The night's champion forecasts by days after planting: plot-seasons, mean forecast
    beside the mean county normal, what they rest on (model / blended / normal) and how many
    fall under 100 kg/ha."""
    from nuru_yield.models.leads import band_label, lead_band

    rows = connection.execute(
        sa.text(
            "SELECT days_after_planting, predicted_yield_kg_per_ha, normal_kg_per_ha, basis "
            "FROM predictions WHERE run_date = :d AND model_name = 'champion'"
        ),
        {"d": run_date.isoformat()},
    ).all()
    if not rows:
        return "  (no forecasts)"
    frame = pd.DataFrame(rows, columns=["days", "forecast", "normal", "basis"])
    frame["band"] = lead_band(frame["days"].to_numpy())
    lines = [
        f"  {'days after planting':<20} {'plots':>7} {'forecast':>9} {'normal':>7} "
        f"{'< 100':>6}  basis"
    ]
    for band, group in frame.groupby("band"):
        basis = ", ".join(
            f"{name} {count:,}" for name, count in group["basis"].value_counts().items()
        )
        lines.append(
            f"  {band_label(int(band)):<20} {len(group):>7,} {group['forecast'].mean():>9,.0f} "
            f"{group['normal'].mean():>7,.0f} {int((group['forecast'] < 100).sum()):>6,}  {basis}"
        )
    return "\n".join(lines)


def render_summary(
    settings: Settings,
    lake: Lake,
    overhead: dict[str, dict[str, float]],
    seconds: float,
    port: int = DEMO_PORT,
) -> str:
    """What a person needs after the demo: model, counts, findings, where everything is."""
    from nuru_yield.db.engine import get_engine
    from nuru_yield.training.evaluation import format_metric

    with get_engine(settings.predictions_db_url).connect() as conn:
        promotion = _one(
            conn,
            "SELECT model_name, candidate_version, candidate_metrics, reason FROM model_promotions "
            "WHERE decision = 'promoted' ORDER BY id DESC LIMIT 1",
        )
        scoring = _one(
            conn,
            "SELECT run_date, model_version, plots_scored, plots_rejected, duration_s FROM scoring_runs "
            "WHERE status = 'success' ORDER BY started_at DESC LIMIT 1",
        )
        drift = _one(
            conn,
            "SELECT SUM(CASE WHEN county IS NULL THEN 1 ELSE 0 END) AS variables, "
            "SUM(CASE WHEN county IS NULL AND drifted THEN 1 ELSE 0 END) AS drifted, "
            "SUM(CASE WHEN county IS NOT NULL THEN 1 ELSE 0 END) AS county_checks, "
            "SUM(CASE WHEN county IS NOT NULL AND drifted THEN 1 ELSE 0 END) AS county_drifted "
            "FROM drift_reports WHERE run_date = :d",
            d=DEMO_RUN_DATE.isoformat(),
        )
        plot = _one(
            conn,
            "SELECT MIN(plot_id) AS plot_id FROM predictions WHERE run_date = :d",
            d=DEMO_RUN_DATE.isoformat(),
        )
        bands = lead_band_table(conn, DEMO_RUN_DATE)

    metrics = promotion["candidate_metrics"] if promotion else {}
    if isinstance(metrics, str):
        metrics = json.loads(metrics)
    overall = ", ".join(
        f"{name} {format_metric(name, metrics[name])}"
        for name in ("rmse", "mae", "r2", "coverage")
        if isinstance(metrics, dict) and name in metrics
    )
    lines = [
        "",
        f"Nuru Yield demo ready in {seconds / 60:.1f} min — everything lives under {settings.nuru_home}",
        "",
        f"champion: {promotion['model_name']} v{promotion['candidate_version']} "
        f"(hold-out {overall}; RMSE in kg/ha)"
        if promotion
        else "champion: none",
        f"  why: {promotion['reason']}" if promotion else "",
        f"scored: {scoring['plots_scored']:,} plot-seasons on {scoring['run_date']} with v{scoring['model_version']} "
        f"({scoring['plots_rejected']} rejected, {scoring['duration_s']:.0f}s)"
        if scoring
        else "scored: nothing",
        f"forecasts on {DEMO_RUN_DATE} by days after planting (kg/ha; the county normal is a "
        "normal season's yield):",
        bands,
        f"drift on {DEMO_RUN_DATE}: {drift['drifted'] or 0} of {drift['variables'] or 0} "
        f"variables overall (what `nuru-yield drift` reports), {drift['county_drifted'] or 0} "
        f"of {drift['county_checks'] or 0} variable × county checks",
        "airflow overhead (DAG-run wall time / sum of task run times): "
        + ", ".join(f"{dag_id} {o['ratio']:.2f}" for dag_id, o in overhead.items()),
        "",
        "where things are:",
        f"  lake            {lake.url}",
        f"  prediction log  {lake.uri(prediction_log_path(DEMO_RUN_DATE))}",
        f"  drift report    {lake.uri(drift_html_path(DEMO_RUN_DATE))}",
        f"  tables          {settings.predictions_db_url}",
        f"  MLflow          {settings.mlflow_tracking_uri}  (mlflow ui --backend-store-uri {settings.mlflow_tracking_uri})",
        f"  Airflow logs    {settings.nuru_home / 'airflow' / 'logs'}",
        "  Forecasts view  `make airflow`, then http://localhost:8080/plugin/forecasts (Airflow's UI)",
        "",
        "try:",
        f"  curl -s -X POST localhost:{port}/predict -H 'Content-Type: application/json' "
        f"-d '{{\"plot_id\": {plot['plot_id'] if plot else 1}}}'",
        f"  curl -s localhost:{port}/health",
        f'  sqlite3 {settings.nuru_home / "predictions.db"} "SELECT county, COUNT(*), ROUND(AVG(predicted_yield_kg_per_ha)) '
        'FROM latest_predictions GROUP BY county"',
    ]
    return mask_passwords("\n".join(line for line in lines if line is not None))
