"""One monitoring run for a run date — the I/O edge around the pure parts of this package.

:func:`run_monitoring` (``nuru-yield drift --date D`` and the ``drift_monitoring`` DAG):

1. current rows: the champion's rows of the prediction log for D (features + prediction),
   or, when D was not scored, the features partition (features only);
2. the crop-calendar-aware reference (:mod:`.reference`, :func:`reference_of`), and the
   reference prediction: the same model version applied to the reference rows;
3. drift per variable, overall and per county, each finding a season signal, a change of
   plot mix or evidence against the model (inputs outside its training ranges) (:mod:`.drift`);
   the season to date against the normal to date, per county, in words, as the night's
   county bulletin states it (its ``county_forecasts`` rows: one definition,
   :mod:`nuru_yield.counties.signals`, computed once by the scoring night);
4. realized accuracy of the labelled seasons (:mod:`.accuracy`) into ``model_performance``;
5. the alert on model evidence only (:mod:`.alerts`), with a cooldown between retraining
   triggers;
6. ``drift_reports`` rows, ``drift_report.json`` and ``drift_report.html`` for D.

Rerunning a date replaces its own rows and files and nothing else.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from nuru_yield.config import Settings, get_settings
from nuru_yield.errors import LakeError
from nuru_yield.features.columns import FEATURE_COLUMNS
from nuru_yield.features.raw import load_raw
from nuru_yield.lake import Lake
from nuru_yield.models.loaded import ServingModel, load_model
from nuru_yield.models.ranges import TrainingRanges
from nuru_yield.models.registry import mlflow_client
from nuru_yield.monitoring import accuracy
from nuru_yield.monitoring.alerts import Alert, accuracy_reasons, outside_reasons
from nuru_yield.monitoring.drift import PREDICTION, detect_drift
from nuru_yield.monitoring.reference import ReferenceSpec, matched_reference
from nuru_yield.monitoring.report import DriftReport, driver_shares, render_html
from nuru_yield.monitoring.statistics import DriftRule
from nuru_yield.names import (
    CHAMPION,
    MODEL_NAME,
    PREDICTION_LOG,
    RAW_YIELDS,
    bulletin_html_path,
    drift_html_path,
    drift_report_path,
    features_path,
    prediction_log_path,
)
from nuru_yield.training.dataset import split_labels

# SQLAlchemy and the database layer (~0.2 s with the driver) are imported inside the
# functions that read or write the database: the drift DAG's alert notifier imports this
# package (through nuru_yield.monitoring) only to deliver a message.
if TYPE_CHECKING:
    import sqlalchemy as sa

log = logging.getLogger(__name__)

VARIABLES: tuple[str, ...] = (*FEATURE_COLUMNS, PREDICTION)
Predictor = Callable[[pd.DataFrame], np.ndarray]
EvaluationLookup = Callable[[Sequence[str]], dict[str, dict[str, float]]]


@dataclass(frozen=True)
class MonitoringResult:
    """What a run found and wrote; :meth:`xcom` is what the DAG passes on."""

    report: DriftReport
    report_uri: str
    html_uri: str

    @property
    def alert(self) -> Alert:
        return self.report.alert

    def xcom(self) -> dict[str, Any]:
        return {
            "run_date": self.report.run_date.isoformat(),
            "report": self.report_uri,
            "html": self.html_uri,
            "drifted": self.report.drifted,
            "finding": self.report.finding,
            "alert": self.alert.raised,
            "trigger_training": self.alert.trigger,
            "reason": self.alert.summary(),
        }

    def render(self) -> str:
        report = self.report
        statuses = pd.Series([d.comparison.status for d in report.overall]).value_counts()
        counts = ", ".join(f"{count} {status}" for status, count in statuses.items())
        lines = [
            f"drift {report.run_date.isoformat()}: {len(report.overall)} variables ({counts})",
            f"  drifted: {', '.join(report.drifted) or 'none'}",
            f"  finding: {report.finding}",
            *(f"  season signal: {line}" for line in report.season_signals),
            f"  model evidence: {report.evidence_summary}",
            f"  drivers: {report.drivers_summary}",
            f"  realized accuracy rows filled: {len(report.accuracy)}",
            f"  alert: {self.alert.summary()}",
            f"  retrain: {'yes' if self.alert.trigger else 'no'} (the drift_monitoring DAG "
            "starts model_training; this command only reports)",
            f"  report: {self.report_uri}",
            f"  html:   {self.html_uri}",
        ]
        return "\n".join(lines)


def rule_from(settings: Settings) -> DriftRule:
    return DriftRule(
        statistic=settings.drift_statistic,
        threshold=settings.drift_threshold,
        min_samples=settings.drift_min_samples,
        max_outside_share=settings.drift_max_outside_share,
    )


def reference_spec(settings: Settings, run_date: dt.date) -> ReferenceSpec:
    return ReferenceSpec(
        years=settings.drift_reference_years,
        window_days=settings.drift_reference_window_days,
        max_rows=settings.drift_reference_max_rows,
        seed=run_date.toordinal(),  # the same date draws the same reference
    )


# --- current rows -------------------------------------------------------------------------
def load_current(lake: Lake, run_date: dt.date) -> tuple[pd.DataFrame, str]:
    """The champion's rows of D's prediction log, else D's features; and their URI."""
    log_path = prediction_log_path(run_date)
    if lake.exists(log_path):
        frame = lake.read_parquet(log_path).to_pandas()
        if "model_name" in frame.columns:
            frame = frame[frame["model_name"] == CHAMPION].reset_index(drop=True)
        return frame, lake.uri(log_path)
    path = features_path(run_date)
    if lake.exists(path):
        log.warning("no prediction log for %s: monitoring the features only", run_date)
        return lake.read_parquet(path).to_pandas(), lake.uri(path)
    raise LakeError(
        f"nothing to monitor for {run_date.isoformat()}: neither {lake.uri(log_path)} nor "
        f"{lake.uri(path)} exists (run `nuru-yield features` and `score` first)"
    )


def scoring_model(current: pd.DataFrame) -> ServingModel | None:
    """The model version that scored the current rows — the reference prediction comes from
    the same model, and its training ranges tell inputs it never saw —; None (logged) when
    it cannot load."""
    if PREDICTION not in current.columns or "model_version" not in current.columns:
        return None

    version = str(current["model_version"].mode().iloc[0])
    uri = f"models:/{MODEL_NAME}/{version}"
    try:
        return load_model(uri)
    except Exception as error:  # registry unreachable or version gone: report, do not fail
        log.warning("cannot load %s for the reference prediction: %s", uri, error)
        return None


def forecaster(model: ServingModel) -> Predictor:
    """The forecasts ``model`` publishes for feature rows (blended as scoring blends them)."""
    return lambda frame: model.forecast(frame).forecast


# --- realized accuracy --------------------------------------------------------------------
def _labels(lake: Lake) -> pd.DataFrame:

    if not lake.exists(RAW_YIELDS):
        return pd.DataFrame(columns=accuracy.LABEL_COLUMNS)
    good, rejected = split_labels(lake.read_parquet(RAW_YIELDS).to_pandas())
    if len(rejected):
        log.warning("realized accuracy: %d harvest labels quarantined", len(rejected))
    return good


def seasons_to_score(
    labels: pd.DataFrame, existing: pd.DataFrame, run_date: dt.date, recent_years: int
) -> list[tuple[str, int]]:
    """Labelled seasons to (re)compute: recent ones — labels still arrive — and any older
    one not filled yet."""
    done = set(zip(existing["season"], existing["season_year"].astype(int), strict=True))
    labelled = labels[["season", "season_year"]].drop_duplicates()
    return sorted(
        (str(season), int(year))
        for season, year in labelled.itertuples(index=False)
        if int(year) >= run_date.year - recent_years or (season, int(year)) not in done
    )


def forecast_error_sums(
    lake: Lake,
    labels: pd.DataFrame,
    seasons: Sequence[tuple[str, int]],
    run_date: dt.date,
) -> pd.DataFrame:
    """Error sums of every logged forecast (up to ``run_date``) of the labelled seasons,
    one prediction-log partition at a time (bounded memory)."""
    import pyarrow.dataset as ds

    years = sorted({year for _, year in seasons})
    wanted = ds.field("season_year").isin(years) & ds.field("season").isin(
        sorted({season for season, _ in seasons})
    )
    keys = pd.DataFrame(seasons, columns=["season", "season_year"])
    labels = labels.merge(keys, on=["season", "season_year"])
    parts = []
    for day in lake.partition_dates(PREDICTION_LOG):
        # A season's forecasts run from its planting year into the next (Short Rains).
        if day > run_date or not years[0] <= day.year <= years[-1] + 1:
            continue
        path = prediction_log_path(day)
        columns = accuracy.FORECAST_COLUMNS
        if accuracy.NORMAL_COLUMN in lake.open_parquet(path).schema_arrow.names:
            columns = [*columns, accuracy.NORMAL_COLUMN]
        frame = lake.read_parquet(path, columns=columns, filters=wanted).to_pandas()
        parts.append(accuracy.error_sums(frame, labels))
    return accuracy.combine(parts)


def update_realized_accuracy(
    lake: Lake, engine: sa.Engine, run_date: dt.date, settings: Settings
) -> pd.DataFrame:
    """Fill ``model_performance`` for the labelled seasons; returns the fresh rows (see
    :func:`accuracy.fresh_rows`): new, changed since the last run, or reported fresh by an
    earlier run for this date."""
    import sqlalchemy as sa

    from nuru_yield.db.loader import replace_rows
    from nuru_yield.db.schema import model_performance
    from nuru_yield.db.values import plain

    labels = _labels(lake)
    with engine.connect() as connection:
        before = pd.DataFrame(
            connection.execute(sa.select(model_performance)).mappings().all(),
            columns=[c.name for c in model_performance.columns],
        )
    seasons = seasons_to_score(labels, before, run_date, settings.accuracy_recent_years)
    if not seasons:
        return pd.DataFrame(columns=accuracy.PERFORMANCE_COLUMNS)
    performance = accuracy.finalize(forecast_error_sums(lake, labels, seasons, run_date))
    computed_at = dt.datetime.now(dt.UTC)  # audit stamp only; no logic depends on it
    for season, year in seasons:
        rows = performance[(performance["season"] == season) & (performance["season_year"] == year)]
        if rows.empty:
            continue  # labelled, but never forecast: keep whatever was there
        records = [
            {**plain(record), "computed_at": computed_at}
            for record in rows.to_dict(orient="records")
        ]
        replace_rows(engine, model_performance, {"season": season, "season_year": year}, records)
    return accuracy.fresh_rows(performance, before, _reported_fresh(lake, run_date))


def _reported_fresh(lake: Lake, run_date: dt.date) -> pd.DataFrame:
    """The realized-accuracy rows an earlier run for ``run_date`` reported as fresh."""
    path = drift_report_path(run_date)
    rows = lake.read_json(path).get("realized_accuracy", []) if lake.exists(path) else []
    return pd.DataFrame(rows, columns=accuracy.PERFORMANCE_COLUMNS)


def evaluation_metrics(versions: Sequence[str]) -> dict[str, dict[str, float]]:
    """The training-evaluation metrics (flat MLflow names) of each registered version."""
    if not versions:
        return {}
    metrics: dict[str, dict[str, float]] = {}
    try:
        client = mlflow_client()
        for version in versions:
            run_id = client.get_model_version(MODEL_NAME, str(version)).run_id
            metrics[str(version)] = dict(client.get_run(run_id).data.metrics)
    except Exception as error:  # no registry: realized accuracy is still recorded
        log.warning("cannot read evaluation metrics from MLflow: %s", error)
    return metrics


# --- the alert ----------------------------------------------------------------------------
def earlier_trigger(lake: Lake, run_date: dt.date, cooldown_days: int) -> str | None:
    """The latest run date within the cooldown whose report triggered retraining."""
    for back in range(1, cooldown_days + 1):
        day = run_date - dt.timedelta(days=back)
        path = drift_report_path(day)
        if lake.exists(path) and lake.read_json(path).get("alert", {}).get("trigger_training"):
            return day.isoformat()
    return None


def decide_alert(
    lake: Lake,
    run_date: dt.date,
    drifts: Sequence[Any],
    fresh: pd.DataFrame,
    settings: Settings,
    evaluation: EvaluationLookup = evaluation_metrics,
) -> Alert:
    """The alert of this run — evidence against the model: inputs outside its training
    ranges, fresh realized accuracy worse than its evaluation —, with the cooldown."""
    reasons = outside_reasons(drifts, settings.drift_max_outside_share)
    if not fresh.empty:
        champion = fresh[fresh["model_name"] == CHAMPION]
        versions = sorted({str(v) for v in champion["model_version"]})
        reasons += accuracy_reasons(
            fresh,
            evaluation(versions),
            settings.accuracy_rmse_margin,
            settings.accuracy_min_samples,
        )
    if not reasons:
        return Alert()
    return Alert(tuple(reasons), earlier_trigger(lake, run_date, settings.alert_cooldown_days))


# --- the run ------------------------------------------------------------------------------
def reference_of(
    current: pd.DataFrame, run_date: dt.date, *, lake: Lake, settings: Settings
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The crop-calendar-aware reference of ``current`` (feature rows of ``run_date`` with
    ``county``, ``season``, ``season_year`` and ``days_after_planting``): the same counties'
    plot-seasons of the previous ``DRIFT_REFERENCE_YEARS``, planted in the same week, seen on
    the same calendar day (:mod:`.reference`), and its description. Drift compares
    distributions with it; "% of normal" in words is the county bulletin's
    (:mod:`nuru_yield.counties.signals`), whose normal does not depend on which plots
    existed in earlier years."""
    spec = reference_spec(settings, run_date)
    raw = load_raw(lake, dt.date(run_date.year - spec.years - 1, 1, 1), run_date)
    return matched_reference(raw, current, run_date, spec)


def county_forecasts_of(engine: sa.Engine, run_date: dt.date) -> pd.DataFrame:
    """The night's ``county_forecasts`` rows (none when its scoring wrote none)."""
    import sqlalchemy as sa

    from nuru_yield.db.schema import county_forecasts

    query = sa.select(county_forecasts).where(county_forecasts.c.run_date == run_date)
    with engine.connect() as connection:
        rows = connection.execute(query.order_by(county_forecasts.c.county)).mappings().all()
    return pd.DataFrame(rows, columns=[column.name for column in county_forecasts.columns])


def write_drift_rows(engine: sa.Engine, run_date: dt.date, report: DriftReport) -> int:
    from nuru_yield.db.loader import replace_rows
    from nuru_yield.db.schema import drift_reports
    from nuru_yield.db.values import plain

    columns = {c.name for c in drift_reports.columns} - {"id", "run_date"}
    rows = [
        {key: value for key, value in plain(d.as_row()).items() if key in columns}
        for d in report.drifts
    ]
    return replace_rows(engine, drift_reports, {"run_date": run_date}, rows)


def run_monitoring(
    run_date: dt.date,
    *,
    lake: Lake | None = None,
    engine: sa.Engine | None = None,
    settings: Settings | None = None,
    predictor: Predictor | None = None,
    ranges: TrainingRanges | None = None,
    evaluation: EvaluationLookup = evaluation_metrics,
) -> MonitoringResult:
    """Monitor one run date (see the module doc). ``predictor`` and ``ranges`` override the
    model that predicts the reference rows and the training ranges tonight's inputs are
    checked against (default, for both: the version that scored D; a ``predictor`` given
    alone is checked against no ranges), ``evaluation`` where the champion's evaluation
    metrics come from (default: its MLflow run)."""
    from nuru_yield.db.engine import get_engine

    settings = settings or get_settings()
    lake = lake or Lake.from_settings(settings)
    engine = engine or get_engine(settings.predictions_db_url)
    current, source = load_current(lake, run_date)
    reference, described = reference_of(current, run_date, lake=lake, settings=settings)
    if predictor is None and ranges is None and not current.empty:
        model = scoring_model(current)
        if model is not None:
            ranges, predictor = model.ranges, forecaster(model)
    if predictor is not None and PREDICTION in current.columns and not reference.empty:
        reference[PREDICTION] = predictor(reference)
    rule = rule_from(settings)
    drifts = detect_drift(reference, current, VARIABLES, rule, ranges=ranges)
    fresh = update_realized_accuracy(lake, engine, run_date, settings)
    alert = decide_alert(lake, run_date, drifts, fresh, settings, evaluation)
    drivers = driver_shares(current["top_drivers"]) if "top_drivers" in current else {}
    counties = county_forecasts_of(engine, run_date)
    bulletin = bulletin_html_path(run_date)
    report = DriftReport(
        run_date,
        source,
        described,
        rule,
        drifts,
        alert,
        fresh,
        counties=counties,
        bulletin=lake.uri(bulletin) if lake.exists(bulletin) else None,
        ranges_checked=ranges is not None,
        drivers=drivers,
    )

    write_drift_rows(engine, run_date, report)
    report_uri = lake.write_json(drift_report_path(run_date), report.to_json())
    html_uri = lake.write_bytes(
        drift_html_path(run_date), render_html(report, reference, current).encode()
    )
    for reason in alert.reasons:
        log.warning("ALERT %s: %s", run_date.isoformat(), reason)
    if alert.raised and not alert.trigger:
        log.warning("retraining not triggered again: triggered on %s", alert.suppressed_by)
    return MonitoringResult(report, report_uri, html_uri)
