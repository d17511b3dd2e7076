"""SQLAlchemy 2 definitions of every table and view of docs/DESIGN.md, "Database".

``predictions`` carries two columns beyond that section's list — ``county`` and
``days_after_planting`` — so that users' SQL (forecast per county, accuracy by lead time)
needs no join back to the lake. ``basis`` and ``normal_kg_per_ha`` (what a forecast rests
on: ``model``, ``blended`` or ``normal``, and the plot's county normal), then
``plot_normal_kg_per_ha`` (the plot's own normal, which its drivers start from) come last:
migrations 4 and 5 appended them to existing tables, and a new table has its columns in the
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
    # means of both sides (the reference: the county's normal to date). Migration 5.
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
