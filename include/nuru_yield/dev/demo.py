"""`make demo` / `nuru-yield demo`: the whole product on the embedded defaults.

Sample data written as the products a crop team downloads (CHIRPS, AgERA5, GeoJSON plots,
crop cuts: the real path) → database → the five DAGs run by a real Airflow (standalone:
scheduler, DAG processor, API server; LocalExecutor) for a night inside the latest season:
``raw_ingestion`` turns the products into the raw contract, ``model_training`` makes a
champion, then the nightly chain → a summary → the API on :8000 (``--port``) until Ctrl-C.
Each step is the same library function as its CLI command and DAG task.
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
from nuru_yield.names import (
    bulletin_html_path,
    drift_html_path,
    drift_report_path,
    prediction_log_path,
)
from nuru_yield.sample_data.formats import SOURCES_DIR

log = logging.getLogger(__name__)

DEMO_START_YEAR = 2020
DEMO_END_YEAR = 2025
# Early in the Long Rains 2025 (planted Mar–May, no harvest labels yet): most plots are under
# 30 days in the ground, the forecasts a support team reads the week the crop goes in; the
# Short Rains 2024 crops are near harvest.
DEMO_RUN_DATE = dt.date(2025, 4, 10)
STEPS = 6
DEMO_HOST = "127.0.0.1"
DEMO_PORT = 8000


def _step(number: int, text: str) -> None:
    typer.secho(f"[{number}/{STEPS}] {mask_passwords(text)}", bold=True)


def rerun_hints(home: Path, run_date: dt.date) -> dict[str, str]:
    """Per DAG, what to run again when its run fails or stalls: the demo (its sample data
    is kept), with a longer wait for a busy machine, or that step alone from the command
    line (each DAG calls the same library function as its command)."""
    sources = " ".join(f"{name}={value}" for name, value in demo_sources(home).items())
    steps = {
        "raw_ingestion": "ingest all",
        "model_training": "train",
        "feature_materialization": "features",
        "batch_scoring": "score",
        "drift_monitoring": "drift",
    }
    return {
        dag_id: (
            f"`make demo` (the sample data in {home} is kept; `make demo STALL_MINUTES=30` "
            f"waits longer on a busy machine), or this step alone: "
            f"`NURU_HOME={home}{' ' + sources if dag_id == 'raw_ingestion' else ''} "
            f"nuru-yield {step} --date {run_date.isoformat()}`"
        )
        for dag_id, step in steps.items()
    }


def demo_sources(home: Path) -> dict[str, str]:
    """The ``*_SOURCE`` settings of the demo's world (``nuru-yield sample-data`` writes it
    as the real products under ``home/sources``), for ``raw_ingestion``."""
    folder = home / SOURCES_DIR
    return {
        "PLOTS_SOURCE": str(folder / "plots.geojson"),
        "PLOT_SEASONS_SOURCE": str(folder / "plot_seasons.csv"),
        "CHIRPS_SOURCE": str(folder / "chirps"),
        "AGERA5_SOURCE": str(folder / "agera5"),
        "YIELDS_SOURCE": str(folder / "crop_cuts.csv"),
        "NDVI_SOURCE": str(folder / "ndvi"),
        "NDVI_STAC_URL": str(folder / "stac" / "catalog.json"),
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
    home = get_settings().nuru_home.expanduser().resolve()
    with scratch_space("the demo", home=home, extra=demo_sources(home)):
        stall = DEFAULT_STALL_SECONDS if stall_minutes is None else stall_minutes * 60
        _build_and_serve(plots, seed, serve, port, stall)


def _build_and_serve(plots: int, seed: int, serve: bool, port: int, stall: float) -> None:
    from nuru_yield.db.migrations import upgrade
    from nuru_yield.dev.airflow_standalone import INGESTION, run_chain, standalone

    settings = get_settings()
    lake = Lake.from_settings(settings)
    lake.check_writable()
    started = time.monotonic()
    sources = settings.nuru_home / SOURCES_DIR

    if Path(demo_sources(settings.nuru_home)["YIELDS_SOURCE"]).exists():
        _step(1, f"sample data already in {sources} (delete {settings.nuru_home} to regenerate)")
    else:
        from nuru_yield.sample_data.generator import generate_to_lake

        _step(
            1,
            f"sample data: {plots:,} plots, {DEMO_START_YEAR}-{DEMO_END_YEAR}, as CHIRPS, "
            f"AgERA5, GeoJSON plots and crop cuts in {sources}",
        )
        summary = generate_to_lake(
            lake, plots=plots, start_year=DEMO_START_YEAR, end_year=DEMO_END_YEAR, seed=seed,
            real_formats=sources, raw_contract=False,
        )  # fmt: skip
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
            (INGESTION, "model_training", "feature_materialization", "batch_scoring",
             "drift_monitoring")
        )  # fmt: skip
        rerun = rerun_hints(settings.nuru_home, DEMO_RUN_DATE)
        _step(
            4,
            f"{INGESTION} for {DEMO_RUN_DATE}: plots and crop cuts by plot bucket, CHIRPS "
            "and AgERA5 by month → the raw contract",
        )
        with airflow.unpaused((INGESTION,)):
            ingestion_run = airflow.trigger(INGESTION, {"run_date": DEMO_RUN_DATE.isoformat()})
            ingested = airflow.wait_for_run(INGESTION, ingestion_run, stall, rerun=rerun[INGESTION])
        _step(5, f"model_training for {DEMO_RUN_DATE} (candidates → evaluation → gate → alias)")
        with airflow.unpaused(("model_training",)):
            training_run = airflow.trigger(
                "model_training", {"run_date": DEMO_RUN_DATE.isoformat()}
            )
            airflow.wait_for_run(
                "model_training", training_run, stall, rerun=rerun["model_training"]
            )
        _step(
            6,
            f"nightly chain for {DEMO_RUN_DATE}: feature_materialization → batch_scoring → drift_monitoring",
        )
        runs = {INGESTION: ingested, **run_chain(airflow, DEMO_RUN_DATE, stall, rerun)}
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


def county_table(connection: sa.Connection, run_date: dt.date) -> str:
    """The night's county forecasts as the bulletin says them: t/ha with the 80% interval,
    % of the five-year mean, rain % of normal, the hindcast NRMSE beside the county mean's
    (at the lead the night is read at), and the status."""
    rows = connection.execute(
        sa.text(
            "SELECT county, season, season_year, lead_days, n_plots, forecast_kg_per_ha, "
            "lower_kg_per_ha, upper_kg_per_ha, pct_of_5yr_mean, rain_pct_of_normal, "
            "skill_lead_days, skill_nrmse, naive_nrmse, status FROM county_forecasts "
            "WHERE run_date = :d ORDER BY season_year, season, county"
        ),
        {"d": run_date.isoformat()},
    ).all()
    if not rows:
        return "  (no county forecasts)"

    def number(value: Any, text: str) -> str:
        return "–" if value is None else text.format(value)

    lines = [
        f"  {'county':<14} {'season':<16} {'days':>4} {'plots':>6} {'t/ha':>5} {'80% range':>10} "
        f"{'% 5-yr':>6} {'rain %':>6}  {'NRMSE (mean)':<18} status"
    ]
    for row in rows:
        band = (
            "–"
            if row.lower_kg_per_ha is None
            else f"{row.lower_kg_per_ha / 1000:.2f}–{row.upper_kg_per_ha / 1000:.2f}"
        )
        skill = (
            "–"
            if row.skill_nrmse is None
            else f"{row.skill_nrmse:.2f} ({row.naive_nrmse:.2f}) at {row.skill_lead_days} d"
        )
        lines.append(
            f"  {row.county:<14} {row.season + ' ' + str(row.season_year):<16} "
            f"{number(row.lead_days, '{:d}'):>4} {row.n_plots:>6,} "
            f"{number(row.forecast_kg_per_ha and row.forecast_kg_per_ha / 1000, '{:.2f}'):>5} "
            f"{band:>10} {number(row.pct_of_5yr_mean, '{:.0f}%'):>6} "
            f"{number(row.rain_pct_of_normal, '{:.0f}%'):>6}  {skill:<18} {row.status}"
        )
    return "\n".join(lines)


def drift_findings(lake: Lake, run_date: dt.date) -> list[str]:
    """What the night's drift report saw, indented under the summary's drift line: the
    finding, the season signals, the model evidence, whether retraining was triggered, and
    what moved the forecasts from their plot normals."""
    path = drift_report_path(run_date)
    if not lake.exists(path):
        return ["  (no drift report)"]
    report = lake.read_json(path)
    alert = report.get("alert", {})
    retrain = "triggered" if alert.get("trigger_training") else "not triggered"
    return [
        f"  finding: {report.get('finding', '?')}",
        *(f"  season signal: {line}" for line in report.get("season_signals", [])),
        f"  model evidence: {report.get('model_evidence', '?')}",
        f"  retraining: {retrain}",
        f"  drivers: {report.get('drivers', '?')}",
    ]


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
        counties = county_table(conn, DEMO_RUN_DATE)

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
        f"county bulletin of {DEMO_RUN_DATE} (kg/ha as t/ha; % of the county's five-year "
        "mean; rain since planting as % of the same days of earlier years; the hindcast "
        "NRMSE of the forecast beside the county mean's):",
        counties,
        f"drift on {DEMO_RUN_DATE}: {drift['drifted'] or 0} of {drift['variables'] or 0} "
        f"variables overall (what `nuru-yield drift` reports), {drift['county_drifted'] or 0} "
        f"of {drift['county_checks'] or 0} variable × county checks",
        *drift_findings(lake, DEMO_RUN_DATE),
        "airflow overhead (DAG-run wall time / sum of task run times): "
        + ", ".join(f"{dag_id} {o['ratio']:.2f}" for dag_id, o in overhead.items()),
        "",
        "where things are:",
        f"  sources         {settings.nuru_home / SOURCES_DIR}  (what raw_ingestion reads)",
        f"  lake            {lake.url}",
        f"  prediction log  {lake.uri(prediction_log_path(DEMO_RUN_DATE))}",
        f"  drift report    {lake.uri(drift_html_path(DEMO_RUN_DATE))}",
        f"  county bulletin {lake.uri(bulletin_html_path(DEMO_RUN_DATE))}",
        f"  tables          {settings.predictions_db_url}",
        f"  MLflow          {settings.mlflow_tracking_uri}  (mlflow ui --backend-store-uri {settings.mlflow_tracking_uri})",
        f"  Airflow logs    {settings.nuru_home / 'airflow' / 'logs'}",
        "  Forecasts view  `make airflow`, then http://localhost:8080/plugin/forecasts (Airflow's UI)",
        "",
        "try:",
        f"  curl -s -X POST localhost:{port}/predict -H 'Content-Type: application/json' "
        f"-d '{{\"plot_id\": {plot['plot_id'] if plot else 1}}}'",
        f"  curl -s localhost:{port}/health",
        f"  curl -s localhost:{port}/counties",
        f"  curl -s localhost:{port}/counties/Makueni/forecast",
        f'  sqlite3 {settings.nuru_home / "predictions.db"} "SELECT county, COUNT(*), ROUND(AVG(predicted_yield_kg_per_ha)) '
        'FROM latest_predictions GROUP BY county"',
        f'  sqlite3 -header -column {settings.nuru_home / "predictions.db"} "SELECT county, '
        "season, ROUND(forecast_kg_per_ha) AS kg_per_ha, ROUND(pct_of_5yr_mean) AS pct_5yr, "
        'status FROM latest_county_forecasts"',
    ]
    return mask_passwords("\n".join(line for line in lines if line is not None))
