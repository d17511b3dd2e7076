"""SQLAlchemy 2 definitions of every table and view of docs/DESIGN.md, "Database".

``predictions`` carries two columns beyond that section's list — ``county`` and
``days_after_planting`` — so that users' SQL (forecast per county, accuracy by lead time)
needs no join back to the lake. ``basis`` and ``normal_kg_per_ha`` (what a forecast rests
on: ``model``, ``blended`` or ``normal``, and the plot's county normal), then
``plot_normal_kg_per_ha`` (the plot's own normal, which its drivers start from) come last:
migrations 4 and 6 appended them to existing tables, and a new table has its columns in the
same order.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    false,
)
from sqlalchemy.dialects.postgresql import JSONB

from nuru_yield.names import CHAMPION

metadata = MetaData()

# JSON on SQLite, JSONB on PostgreSQL (indexable, compact).
JsonType = JSON().with_variant(JSONB(), "postgresql")

predictions = Table(
    "predictions",
    metadata,
    Column("run_date", Date, primary_key=True),
    Column("plot_id", BigInteger, primary_key=True),
    Column("season_year", Integer, primary_key=True),
    Column("season", String(16), primary_key=True),
    Column("model_name", String(32), primary_key=True),
    Column("model_version", String(32), nullable=False),
    Column("county", String(64)),
    Column("days_after_planting", Integer),
    Column("predicted_yield_kg_per_ha", Float, nullable=False),
    Column("yield_lower", Float),
    Column("yield_upper", Float),
    Column("interval_level", Float),
    Column("top_drivers", JsonType),
    Column("run_id", String(64), nullable=False),
    Column("scored_at", DateTime(timezone=True), nullable=False),
    # model | blended | normal (nuru_yield.models.normal); null for rows scored before it.
    Column("basis", String(16)),
    Column("normal_kg_per_ha", Float),
    # The county normal adjusted for where the plot is: forecast = this + Σ drivers.
    Column("plot_normal_kg_per_ha", Float),
    Index("ix_predictions_plot", "plot_id", "season_year", "season", "model_name", "run_date"),
    postgresql_partition_by="LIST (run_date)",
)

# Column order of a prediction row, shared by loaders, the prediction log and the API.
PREDICTION_COLUMNS: tuple[str, ...] = tuple(column.name for column in predictions.columns)

scoring_runs = Table(
    "scoring_runs",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("run_date", Date, nullable=False, index=True),
    Column("model_name", String(128), nullable=False),
    Column("model_version", String(32)),
    Column("challenger_version", String(32)),
    # running | success | failed | no_plots_in_progress
    Column("status", String(32), nullable=False),
    Column("plots_scored", BigInteger),
    Column("plots_rejected", BigInteger),
    Column("shards", Integer),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("duration_s", Float),
    Column("timings", JsonType),
    Column("features_uri", Text),
    Column("prediction_log_uri", Text),
    Column("dag_run_id", String(250)),
    Column("message", Text),
)

model_promotions = Table(
    "model_promotions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("decided_at", DateTime(timezone=True), nullable=False),
    Column("model_name", String(128), nullable=False),
    Column("candidate_version", String(32)),
    Column("previous_version", String(32)),
    Column("alias", String(32), nullable=False),
    Column("decision", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Column("candidate_metrics", JsonType),
    Column("champion_metrics", JsonType),
    Column("dag_run_id", String(250)),
    Column("actor", String(64)),
)

drift_reports = Table(
    "drift_reports",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_date", Date, nullable=False),
    Column("feature", String(64), nullable=False),
    Column("county", String(64)),
    Column("statistic", String(32), nullable=False),
    Column("value", Float),
    Column("threshold", Float),
    Column("drifted", Boolean, nullable=False),
    Column("status", String(32), nullable=False),
    Column("n_current", Integer, nullable=False),
    Column("n_reference", Integer, nullable=False),
    Index("ix_drift_reports_run_date", "run_date", "feature"),
    # What a finding means (nuru_yield.monitoring.drift): `season signal` (the season is far
    # from normal: news for the bulletin), `plot mix` (other plots than the reference's),
    # `model evidence` (inputs outside the model's training range: retraining), null for none;
    # the share of current rows outside the training range of their lead-time band; and the
    # means of both sides (the reference: the county's normal to date). Migration 6.
    Column("signal", String(32)),
    Column("outside_training_share", Float),
    Column("current_mean", Float),
    Column("reference_mean", Float),
)

model_performance = Table(
    "model_performance",
    metadata,
    Column("season", String(16), primary_key=True),
    Column("season_year", Integer, primary_key=True),
    Column("model_name", String(32), primary_key=True),
    Column("model_version", String(32), primary_key=True),
    Column("lead_time_days", Integer, primary_key=True),
    Column("rmse", Float),
    Column("mae", Float),
    Column("bias", Float),
    Column("coverage", Float),
    Column("n", Integer, nullable=False),
    # n below monitoring.accuracy.MIN_LABELS: reported, too noisy to trust.
    Column("too_few_labels", Boolean, nullable=False, server_default=false()),
    Column("computed_at", DateTime(timezone=True), nullable=False),
    # The county normal's RMSE on the same forecasts (null where the rows carry no normal),
    # and the means of forecast and harvest: is the model worth more than a normal season?
    Column("normal_rmse", Float),
    Column("mean_forecast", Float),
    Column("mean_actual", Float),
)

# County bulletins (nuru_yield.counties; docs/DESIGN.md, "County bulletins"): one row per
# run date × county × season × season year, written by the scoring run's publish step.
county_forecasts = Table(
    "county_forecasts",
    metadata,
    Column("run_date", Date, primary_key=True),
    Column("county", String(64), primary_key=True),
    Column("season", String(16), primary_key=True),
    Column("season_year", Integer, primary_key=True),
    Column("model_version", String(32), nullable=False),
    Column("run_id", String(64), nullable=False),
    Column("lead_days", Integer),
    Column("n_plots", Integer, nullable=False),
    Column("plot_share", Float),
    Column("area_ha", Float),
    Column("forecast_kg_per_ha", Float),
    Column("lower_kg_per_ha", Float),
    Column("upper_kg_per_ha", Float),
    Column("production_t", Float),
    Column("mean_5yr_kg_per_ha", Float),
    Column("mean_lt_kg_per_ha", Float),
    Column("record_seasons", Integer),
    Column("pct_of_5yr_mean", Float),
    Column("pct_of_lt_mean", Float),
    Column("hist_percentile", Float),
    Column("lowest_on_record", Boolean),
    Column("lowest3_on_record", Boolean),
    Column("skill_lead_days", Integer),
    Column("skill_seasons", Integer),
    Column("skill_mape", Float),
    Column("skill_nrmse", Float),
    Column("naive_nrmse", Float),
    Column("trend_nrmse", Float),
    Column("beats_naive", Boolean),
    Column("rain_mm", Float),
    Column("normal_rain_mm", Float),
    Column("rain_pct_of_normal", Float),
    Column("tmax_c", Float),
    Column("normal_tmax_c", Float),
    Column("heat_days", Float),
    Column("normal_heat_days", Float),
    Column("normal_years", Integer),
    Column("season_signal", Text),
    # ok | short_record | no_skill | too_few_plots (nuru_yield.counties.forecasts)
    Column("status", String(32), nullable=False),
    Column("message", Text),
    Column("computed_at", DateTime(timezone=True), nullable=False),
    Index("ix_county_forecasts_county", "county", "season", "season_year", "run_date"),
)

# The hindcast skill of a registered model version (nuru_yield.training.hindcast): per
# county × season kind × lead time (days after planting), computed when it is promoted.
county_skill = Table(
    "county_skill",
    metadata,
    Column("model_name", String(128), primary_key=True),
    Column("model_version", String(32), primary_key=True),
    Column("county", String(64), primary_key=True),
    Column("season", String(16), primary_key=True),
    Column("lead_days", Integer, primary_key=True),
    Column("run_date", Date, nullable=False),
    Column("n_seasons", Integer, nullable=False),
    Column("first_season_year", Integer),
    Column("last_season_year", Integer),
    Column("mean_yield_kg_per_ha", Float),
    Column("skill_mape", Float),
    Column("skill_nrmse", Float),
    Column("naive_mape", Float),
    Column("naive_nrmse", Float),
    Column("trend_mape", Float),
    Column("trend_nrmse", Float),
    Column("beats_naive", Boolean),
    Column("beats_trend", Boolean),
    Column("lower_factor", Float),
    Column("upper_factor", Float),
    # county (its own hindcast seasons) | pooled (every county of the season kind)
    Column("interval_scope", String(16)),
    Column("interval_seasons", Integer),
    Column("computed_at", DateTime(timezone=True), nullable=False),
)

# Shards staged for a run date and not yet published (``nuru_yield.db.loader``): written in
# the same transaction as the shard's rows, so ``publish`` can refuse a partial partition.
predictions_staged = Table(
    "predictions_staged",
    metadata,
    Column("run_date", Date, primary_key=True),
    Column("shard", Integer, primary_key=True),
    Column("shards", Integer, nullable=False),
    Column("rows", BigInteger, nullable=False),
)

schema_version = Table(
    "nuru_schema_version",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("applied_at", DateTime(timezone=True), nullable=False),
)


def latest_predictions_view(columns: Sequence[str] = PREDICTION_COLUMNS) -> str:
    """``CREATE VIEW latest_predictions``: the newest champion row per plot-season, what the
    API serves by default, with ``columns`` of ``predictions`` (a migration passes the
    columns of its own version: a later column does not exist yet when it runs)."""
    listed = ", ".join(columns)
    return f"""
CREATE VIEW latest_predictions AS
SELECT {listed}
FROM (
    SELECT p.*, ROW_NUMBER() OVER (
        PARTITION BY plot_id, season_year, season ORDER BY run_date DESC
    ) AS recency
    FROM predictions p
    WHERE model_name = '{CHAMPION}'
) ranked
WHERE recency = 1
"""


LATEST_PREDICTIONS_VIEW = latest_predictions_view()

# The newest county forecast per county × season × season year: the county table a reader
# wants (the night of each county-season's last scoring run).
LATEST_COUNTY_FORECASTS_VIEW = f"""
CREATE VIEW latest_county_forecasts AS
SELECT {", ".join(f"f.{column.name}" for column in county_forecasts.columns)}
FROM county_forecasts f
WHERE f.run_date = (
    SELECT MAX(n.run_date) FROM county_forecasts n
    WHERE n.county = f.county AND n.season = f.season AND n.season_year = f.season_year
)
"""
