"""Versioned, idempotent schema migrations (``nuru-yield db upgrade``).

Each migration is a step with a version number; the versions applied are rows of
``nuru_schema_version``. :func:`upgrade` applies the missing steps in order, in one
transaction (DDL is transactional on PostgreSQL, and on SQLite with the engine's explicit
``BEGIN``), under a lock so that two concurrent upgrades cannot both apply a step. Running
it again is a no-op. Add a step by appending to :data:`MIGRATIONS`; never edit a released one.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa

from nuru_yield.db import schema
from nuru_yield.db.engine import check_connection, database_errors, get_engine, writer
from nuru_yield.errors import DatabaseError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[sa.Connection], None]


def _initial_schema(connection: sa.Connection) -> None:
    # On PostgreSQL `predictions` is created PARTITION BY LIST (run_date) (see schema.py);
    # its partitions are created by the loader, one per run date.
    schema.metadata.create_all(connection)
    connection.exec_driver_sql("DROP VIEW IF EXISTS latest_predictions")
    connection.exec_driver_sql(schema.LATEST_PREDICTIONS_VIEW)


def _longer_run_status(connection: sa.Connection) -> None:
    # `no_plots_in_progress` does not fit VARCHAR(16); SQLite does not enforce lengths.
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("ALTER TABLE scoring_runs ALTER COLUMN status TYPE VARCHAR(32)")


def _flag_too_few_labels(connection: sa.Connection) -> None:
    # A database created at this version already has the column (step 1 creates the
    # current schema). The threshold is the rule as released with this step (today's
    # monitoring.accuracy.MIN_LABELS): a migration never follows later code.
    columns = {c["name"] for c in sa.inspect(connection).get_columns("model_performance")}
    if "too_few_labels" not in columns:
        connection.exec_driver_sql(
            "ALTER TABLE model_performance ADD COLUMN too_few_labels BOOLEAN NOT NULL DEFAULT false"
        )
    connection.execute(
        schema.model_performance.update().values(too_few_labels=schema.model_performance.c.n < 30)
    )


def _add_columns(connection: sa.Connection, **added: tuple[tuple[str, str], ...]) -> None:
    """Add each table's (name, SQL type) columns it does not have yet (a database created at
    a later version has them already)."""
    for table, columns in added.items():
        present = {c["name"] for c in sa.inspect(connection).get_columns(table)}
        for name, sql_type in columns:
            if name not in present:
                connection.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {name} {sql_type}")


def _forecast_basis(connection: sa.Connection) -> None:
    # The blend toward the county normal: what each forecast rests on, and the normal; the
    # normal's error beside realized accuracy. A database created at this version already has
    # the columns (step 1 creates the current schema). On PostgreSQL, a column added to the
    # partitioned `predictions` is added to every partition.
    _add_columns(
        connection,
        predictions=(("basis", "VARCHAR(16)"), ("normal_kg_per_ha", "DOUBLE PRECISION")),
        model_performance=(
            ("normal_rmse", "DOUBLE PRECISION"),
            ("mean_forecast", "DOUBLE PRECISION"),
            ("mean_actual", "DOUBLE PRECISION"),
        ),
    )
    connection.exec_driver_sql("DROP VIEW IF EXISTS latest_predictions")
    through_normal = schema.PREDICTION_COLUMNS.index("normal_kg_per_ha") + 1
    connection.exec_driver_sql(
        schema.latest_predictions_view(schema.PREDICTION_COLUMNS[:through_normal])
    )


def _plot_normal_and_drift_signals(connection: sa.Connection) -> None:
    # Drivers explained from the plot's own normal; drift findings told apart (season signal,
    # plot mix, model evidence) with the share outside the training range and both means. A
    # database created at this version already has the columns (step 1 creates the current
    # schema); on PostgreSQL a column added to `predictions` reaches every partition.
    _add_columns(
        connection,
        predictions=(("plot_normal_kg_per_ha", "DOUBLE PRECISION"),),
        drift_reports=(
            ("signal", "VARCHAR(32)"),
            ("outside_training_share", "DOUBLE PRECISION"),
            ("current_mean", "DOUBLE PRECISION"),
            ("reference_mean", "DOUBLE PRECISION"),
        ),
    )
    connection.exec_driver_sql("DROP VIEW IF EXISTS latest_predictions")
    connection.exec_driver_sql(schema.LATEST_PREDICTIONS_VIEW)


def _county_bulletins(connection: sa.Connection) -> None:
    # County forecasts and the hindcast skill behind them, and the view of the newest county
    # forecasts. A database created at this version already has them (step 1 creates the
    # current schema).
    for table in (schema.county_forecasts, schema.county_skill):
        table.create(connection, checkfirst=True)
    connection.exec_driver_sql("DROP VIEW IF EXISTS latest_county_forecasts")
    connection.exec_driver_sql(schema.LATEST_COUNTY_FORECASTS_VIEW)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "tables, indexes and the latest_predictions view", _initial_schema),
    Migration(2, "scoring_runs.status holds no_plots_in_progress", _longer_run_status),
    Migration(3, "model_performance.too_few_labels", _flag_too_few_labels),
    Migration(4, "forecast basis and county normal; the normal's error", _forecast_basis),
    Migration(5, "county_forecasts, county_skill and latest_county_forecasts", _county_bulletins),
    Migration(
        6,
        "plot normal; drift signals, share outside training, means",
        _plot_normal_and_drift_signals,
    ),
)
LATEST_VERSION = MIGRATIONS[-1].version


def _applied_version(connection: sa.Connection) -> int:
    version = connection.execute(sa.select(sa.func.max(schema.schema_version.c.version)))
    return version.scalar_one() or 0


def upgrade(url: str | None = None) -> int:
    """Create or migrate every table and view (docs/DESIGN.md, "Database"); returns the schema
    version."""
    engine = get_engine(url)
    check_connection(engine)
    with database_errors(engine, "db upgrade"), writer(engine).begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(hashtext('nuru_yield.db'))")
        schema.schema_version.create(connection, checkfirst=True)
        current = _applied_version(connection)
        if current > LATEST_VERSION:
            raise DatabaseError(
                f"the database schema is at version {current}, newer than this code knows "
                f"({LATEST_VERSION}): upgrade nuru-yield"
            )
        for migration in MIGRATIONS:
            if migration.version > current:
                log.info("applying migration %d: %s", migration.version, migration.description)
                migration.apply(connection)
                connection.execute(
                    schema.schema_version.insert().values(
                        version=migration.version, applied_at=dt.datetime.now(dt.UTC)
                    )
                )
        return max(current, LATEST_VERSION)
