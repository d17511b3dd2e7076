"""The PostgreSQL init script against a throwaway server: the databases and roles it makes,
the read-only role of the API (which reads tables created later, and writes nothing) and
the dashboards' SQL run as that role."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from tests.fixtures.services import unavailable
from tests.unit.deploy.stack import INIT_SQL_SCRIPT, dashboard_queries, runnable_sql


@pytest.fixture
def initialised_cluster(postgres_server: str) -> Iterator[dict[str, str]]:
    """The init script run against the test server; its databases and roles dropped after."""
    from sqlalchemy.engine import make_url

    if shutil.which("psql") is None:
        unavailable("psql not on PATH")
    admin = make_url(postgres_server)
    environment = {
        **os.environ,
        "PGHOST": admin.host,
        "PGPORT": str(admin.port),
        "POSTGRES_USER": admin.username,
        "AIRFLOW_DB_PASSWORD": "a",
        "MLFLOW_DB_PASSWORD": "m",
        "NURU_DB_PASSWORD": "n",
        "NURU_API_DB_PASSWORD": "r",
    }
    result = subprocess.run(
        ["bash", str(INIT_SQL_SCRIPT)], env=environment, capture_output=True, text=True
    )
    try:
        assert result.returncode == 0, result.stderr
        yield {
            role: admin.set(username=user, database=db).render_as_string(hide_password=False)
            for role, user, db in (
                ("owner", "nuru", "nuru"),
                ("reader", "nuru_api", "nuru"),
                ("reader_airflow", "nuru_api", "airflow"),
            )
        }
    finally:
        drops = [
            f"DROP DATABASE IF EXISTS {db} WITH (FORCE)" for db in ("airflow", "mlflow", "nuru")
        ]
        drops.append("DROP ROLE IF EXISTS airflow, mlflow, nuru, nuru_api")
        subprocess.run(
            ["psql", "-U", admin.username, "-d", "postgres"]
            + [arg for drop in drops for arg in ("-c", drop)],
            env=environment,
            capture_output=True,
        )


@pytest.mark.postgres
def test_read_only_role_reads_tables_created_later_and_writes_nothing(
    initialised_cluster: dict[str, str],
) -> None:
    import sqlalchemy as sa

    from nuru_yield.db.migrations import upgrade

    assert upgrade(initialised_cluster["owner"]) >= 1
    owner = sa.create_engine(initialised_cluster["owner"])
    reader = sa.create_engine(initialised_cluster["reader"])
    try:
        with owner.begin() as conn:  # a partition created later, as the loader does
            conn.execute(
                sa.text(
                    "CREATE TABLE predictions_p20250501 PARTITION OF predictions "
                    "FOR VALUES IN ('2025-05-01')"
                )
            )
            conn.execute(
                sa.text(
                    "INSERT INTO predictions (run_date, plot_id, season_year, season, "
                    "model_name, model_version, county, predicted_yield_kg_per_ha, run_id, "
                    "scored_at) VALUES ('2025-05-01', 7, 2025, 'Long Rains', 'champion', '3', "
                    "'Bungoma', 2500, 'r1', now())"
                )
            )
        with reader.connect() as conn:
            row = conn.execute(sa.text("SELECT plot_id, county FROM latest_predictions")).one()
            assert tuple(row) == (7, "Bungoma")
            assert conn.execute(sa.text("SELECT count(*) FROM predictions_p20250501")).scalar()
            for title, target in dashboard_queries():
                try:
                    conn.exec_driver_sql(runnable_sql(target["rawSql"])).fetchall()
                except sa.exc.DBAPIError as error:
                    pytest.fail(f"dashboard panel {title!r}: {error.orig}")
        with reader.connect() as conn, pytest.raises(sa.exc.DBAPIError) as read_only:
            conn.exec_driver_sql("DELETE FROM predictions")
        assert type(read_only.value.orig).__name__ == "ReadOnlySqlTransaction"
        # Read-only transactions are only a default: the grants are what forbid writes.
        for statement in (
            "DELETE FROM predictions",
            "INSERT INTO drift_reports (run_date, feature, statistic, drifted, status, "
            "n_current, n_reference) VALUES ('2025-05-01', 'x', 'psi', false, 'ok', 1, 1)",
            "CREATE TABLE scratch (x int)",
        ):
            with reader.connect() as conn, pytest.raises(sa.exc.DBAPIError) as denied:
                conn.exec_driver_sql("SET TRANSACTION READ WRITE")
                conn.exec_driver_sql(statement)
            assert type(denied.value.orig).__name__ == "InsufficientPrivilege", statement
        with pytest.raises(sa.exc.OperationalError, match="permission denied"):
            sa.create_engine(initialised_cluster["reader_airflow"]).connect()
    finally:
        owner.dispose()
        reader.dispose()
