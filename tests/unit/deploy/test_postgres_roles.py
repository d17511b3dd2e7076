"""The PostgreSQL init script against a server of its own: the databases and roles it makes,
the read-only role of the API (which reads tables created later, and has no way to write)
and the dashboards' SQL run as that role; what the stack does as the owner and the reader."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from tests.fixtures.services import unavailable
from tests.unit.deploy.stack import INIT_SQL_SCRIPT, dashboard_queries, runnable_sql


@pytest.fixture(scope="module")
def init_server() -> Iterator[str]:
    """A PostgreSQL 15 server of these tests' own: the init script changes what every role may
    do on the whole server (CONNECT on postgres and template1), which the session's shared
    server must not see. Yields its admin URL."""
    from nuru_yield.dev.local_services import throwaway_postgres
    from nuru_yield.errors import NuruError

    if shutil.which("psql") is None:
        unavailable("psql not on PATH")
    with contextlib.ExitStack() as stack:
        try:
            url, _ = stack.enter_context(throwaway_postgres())
        except NuruError as error:
            unavailable(str(error))
        yield url


@pytest.fixture
def initialised_cluster(init_server: str) -> Iterator[dict[str, str]]:
    """The init script run against the test server, as the postgres image runs it on a new
    volume; its databases and roles dropped after. URLs by name: ``owner`` (nuru on nuru),
    ``reader`` (nuru_api on nuru), ``admin`` (the superuser on nuru) and ``reader_DB`` for
    every other database."""
    from sqlalchemy.engine import make_url

    admin = make_url(init_server)
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
        urls = {
            role: admin.set(username=user, database=db).render_as_string(hide_password=False)
            for role, user, db in (
                ("owner", "nuru", "nuru"),
                ("reader", "nuru_api", "nuru"),
                ("admin", admin.username, "nuru"),
                *((f"reader_{db}", "nuru_api", db) for db in OTHER_DATABASES),
            )
        }
        yield urls
    finally:
        from nuru_yield.db.engine import dispose_engines

        dispose_engines()
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


OTHER_DATABASES = ("postgres", "template1", "airflow", "mlflow")


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


def _write_attempts(
    tables: dict[str, str],
    views: list[str],
    sequences: list[str],
    large_object: int,
    extensions: list[str],
) -> list[str]:
    """Every way we know for a role to change something on the server, for these tables
    (name -> one of its columns), views, sequences, an existing large object, and the
    extensions the server could install."""
    attempts = []
    for name, column in tables.items():
        attempts += [
            f"INSERT INTO {name} DEFAULT VALUES",
            f"UPDATE {name} SET {column} = {column}",
            f"DELETE FROM {name}",
            f"TRUNCATE {name}",
            f"SELECT * FROM {name} FOR UPDATE",
            f"SELECT * FROM {name} FOR KEY SHARE",
            f"LOCK TABLE {name} IN ROW EXCLUSIVE MODE",
            f"COPY {name} FROM PROGRAM 'true'",
            f"COPY {name} FROM '/dev/null'",
            f"ALTER TABLE {name} ADD COLUMN nuru_api_x int",
            f"CREATE INDEX ON {name} ({column})",
            f"DROP TABLE {name}",
            f"COMMENT ON TABLE {name} IS 'x'",
            f"REINDEX TABLE {name}",
        ]
    for name in views:  # (not updatable: DML on them fails before any privilege is checked)
        attempts += [
            f"CREATE OR REPLACE VIEW {name} AS SELECT 1 AS x",
            f"ALTER VIEW {name} RENAME TO nuru_api_v",
            f"DROP VIEW {name}",
            f"COMMENT ON VIEW {name} IS 'x'",
        ]
    for sequence in sequences:
        attempts += [f"SELECT nextval('{sequence}')", f"SELECT setval('{sequence}', 1000)"]
    attempts += [
        # Large objects: new ones, the server's files, and one that exists.
        "SELECT lo_from_bytea(0, 'x')",
        "SELECT lo_create(0)",
        "SELECT lo_creat(-1)",
        "SELECT lo_import('/etc/hostname')",
        f"SELECT lo_export({large_object}, '/tmp/nuru_api_lo')",
        f"SELECT lo_put({large_object}, 0, 'x')",
        f"SELECT lo_open({large_object}, 131072)",  # INV_WRITE
        f"SELECT lo_unlink({large_object})",
        # The server's files and programs.
        "COPY (SELECT 1) TO PROGRAM 'true'",
        "COPY (SELECT 1) TO '/tmp/nuru_api_copy'",
        # New objects, also temporary ones.
        "CREATE TABLE public.nuru_api_t (x int)",
        "CREATE TEMP TABLE nuru_api_t (x int)",
        "CREATE TEMP VIEW nuru_api_v AS SELECT 1",
        "CREATE SCHEMA nuru_api_s",
        "CREATE FUNCTION public.nuru_api_f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "CREATE FUNCTION pg_temp.nuru_api_f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "CREATE TYPE public.nuru_api_type AS (x int)",
        "CREATE PUBLICATION nuru_api_p",
        "CREATE ROLE nuru_api_r",
        "CREATE EVENT TRIGGER nuru_api_e ON ddl_command_start EXECUTE FUNCTION pg_backend_pid()",
        "DO $$ BEGIN EXECUTE 'DELETE FROM predictions'; END $$",
        *(f"CREATE EXTENSION {extension}" for extension in extensions),
        # Functions with side effects: locks the pipeline waits for, WAL, server state.
        "SELECT pg_advisory_lock(1)",
        "SELECT pg_advisory_lock(1, 2)",
        "SELECT pg_advisory_lock_shared(1)",
        "SELECT pg_advisory_xact_lock(1)",
        "SELECT pg_try_advisory_lock(1)",
        "SELECT pg_try_advisory_lock_shared(1, 2)",
        "SELECT pg_try_advisory_xact_lock(1)",
        "SELECT pg_logical_emit_message(true, 'nuru', 'x')",
        "SELECT pg_logical_emit_message(false, 'nuru', 'x'::bytea)",
        "SELECT pg_stat_reset()",
        "SELECT pg_stat_reset_shared('bgwriter')",
        "SELECT pg_switch_wal()",
        "SELECT pg_create_restore_point('x')",
        "SELECT pg_reload_conf()",
        "SELECT pg_replication_origin_create('x')",
        "SELECT pg_create_physical_replication_slot('nuru_api_slot')",
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'postgres'",
        "CHECKPOINT",
    ]
    return attempts


@pytest.mark.postgres
def test_read_only_role_has_no_way_to_write(initialised_cluster: dict[str, str]) -> None:
    """nuru_api (the API, Grafana) tries every write path it might have, in a session that
    turned read-only mode off: each is refused for lack of privilege. It can reach no other
    database, holds no role, and owns nothing afterwards. (PostgreSQL 15 lets any role change
    its own password and session defaults, NOTIFY, and run ANALYZE/VACUUM, which skip what it
    does not own: the last two are checked to do nothing.)"""
    import sqlalchemy as sa

    from nuru_yield.db.migrations import upgrade

    upgrade(initialised_cluster["owner"])
    admin = sa.create_engine(initialised_cluster["admin"], isolation_level="AUTOCOMMIT")
    reader = sa.create_engine(initialised_cluster["reader"])
    reader_autocommit = reader.execution_options(isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(
                "CREATE TABLE predictions_p20250501 PARTITION OF predictions "
                "FOR VALUES IN ('2025-05-01')"
            )
            conn.exec_driver_sql("ALTER TABLE predictions_p20250501 OWNER TO nuru")
            large_object = conn.exec_driver_sql("SELECT lo_from_bytea(0, 'the owner''s')").scalar()
            conn.exec_driver_sql(f"ALTER LARGE OBJECT {large_object} OWNER TO nuru")
            tables = dict(
                conn.exec_driver_sql(
                    "SELECT c.relname, min(a.attname) FROM pg_class c "
                    "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 "
                    "WHERE c.relnamespace = 'public'::regnamespace "
                    "AND c.relkind IN ('r', 'p') GROUP BY c.relname"
                ).all()
            )
            views = list(
                conn.exec_driver_sql(
                    "SELECT relname FROM pg_class WHERE relkind IN ('v', 'm') "
                    "AND relnamespace = 'public'::regnamespace"
                ).scalars()
            )
            sequences = list(
                conn.exec_driver_sql(
                    "SELECT relname FROM pg_class WHERE relkind = 'S' "
                    "AND relnamespace = 'public'::regnamespace"
                ).scalars()
            )
            extensions = list(
                conn.exec_driver_sql(
                    "SELECT name FROM pg_available_extensions WHERE installed_version IS NULL "
                    "AND name IN ('dblink', 'postgres_fdw', 'adminpack', 'hstore', 'pgcrypto')"
                ).scalars()
            )
        assert {"predictions", "predictions_p20250501", "scoring_runs", "county_forecasts"} <= set(
            tables
        )
        assert sorted(views) == ["latest_county_forecasts", "latest_predictions"]
        assert "model_promotions_id_seq" in sequences

        attempts = _write_attempts(tables, views, sequences, large_object, extensions)
        allowed = []
        for statement in attempts:
            with reader.connect() as conn:
                conn.exec_driver_sql("SET TRANSACTION READ WRITE")  # grants alone must stop it
                try:
                    conn.exec_driver_sql(statement)
                    allowed.append(statement)
                except sa.exc.DBAPIError as error:
                    if type(error.orig).__name__ != "InsufficientPrivilege":
                        allowed.append(f"{statement}: {error.orig}")
        for statement in ("CREATE DATABASE nuru_api_db", "ALTER SYSTEM SET work_mem = '1GB'"):
            with reader_autocommit.connect() as conn:
                conn.exec_driver_sql("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE")
                try:
                    conn.exec_driver_sql(statement)
                    allowed.append(statement)
                except sa.exc.DBAPIError as error:
                    if type(error.orig).__name__ != "InsufficientPrivilege":
                        allowed.append(f"{statement}: {error.orig}")
        assert allowed == [], f"{len(allowed)} of {len(attempts) + 2} attempts were not refused"

        # What PostgreSQL accepts from anyone, and does nothing for this role.
        notices: list[str] = []
        with reader_autocommit.connect() as conn:
            conn.connection.driver_connection.add_notice_handler(
                lambda notice: notices.append(notice.message_primary)
            )
            conn.exec_driver_sql("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE")
            for statement in (
                "VACUUM predictions_p20250501",
                "ANALYZE predictions_p20250501",
                "GRANT SELECT ON predictions TO PUBLIC",
            ):
                conn.exec_driver_sql(statement)
        assert len(notices) == 3 and "skipping" in notices[0] and "skipping" in notices[1]
        assert notices[2] == 'no privileges were granted for "predictions"'

        for database in OTHER_DATABASES:
            with pytest.raises(sa.exc.OperationalError, match="permission denied for database"):
                sa.create_engine(initialised_cluster[f"reader_{database}"]).connect()

        with admin.connect() as conn:
            owned = conn.exec_driver_sql(
                "SELECT (SELECT count(*) FROM pg_class WHERE relowner = r.oid) "
                "+ (SELECT count(*) FROM pg_proc WHERE proowner = r.oid) "
                "+ (SELECT count(*) FROM pg_namespace WHERE nspowner = r.oid) "
                "+ (SELECT count(*) FROM pg_type WHERE typowner = r.oid) "
                "+ (SELECT count(*) FROM pg_largeobject_metadata WHERE lomowner = r.oid) "
                "FROM pg_roles r WHERE rolname = 'nuru_api'"
            ).scalar()
            assert owned == 0
            assert (
                conn.exec_driver_sql("SELECT count(*) FROM pg_largeobject_metadata").scalar() == 1
            )
            assert not conn.exec_driver_sql(
                "SELECT has_table_privilege('public', 'predictions', 'SELECT')"
            ).scalar()
            attributes = conn.exec_driver_sql(
                "SELECT rolsuper OR rolcreaterole OR rolcreatedb OR rolreplication OR rolbypassrls, "
                "(SELECT count(*) FROM pg_auth_members m WHERE m.member = r.oid) "
                "FROM pg_roles r WHERE rolname = 'nuru_api'"
            ).one()
            assert tuple(attributes) == (False, 0)  # pg_write_server_files & co. included
            rights = conn.exec_driver_sql(
                "SELECT datname, has_database_privilege('nuru_api', datname, 'CONNECT'), "
                "has_database_privilege('nuru_api', datname, 'CREATE'), "
                "has_database_privilege('nuru_api', datname, 'TEMPORARY') "
                "FROM pg_database WHERE datallowconn ORDER BY datname"
            ).all()
            assert [tuple(row) for row in rights] == [
                (name, name == "nuru", False, False) for name in sorted(("nuru", *OTHER_DATABASES))
            ]
    finally:
        admin.dispose()
        reader.dispose()


@pytest.mark.postgres
def test_api_reads_through_the_role_and_the_pipeline_locks_as_the_owner(
    initialised_cluster: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the init script takes away is nothing the stack uses: the pipeline (nuru) loads
    partitions and takes its run-date locks, and every API route answers through nuru_api."""
    import datetime as dt

    from nuru_yield.db.locks import run_date_lock
    from tests.integration.test_api_support import (
        API_KEY,
        LATEST_NIGHT,
        PROMOTIONS,
        PredictionsDb,
        auth,
        known_rows,
        serving,
    )

    db = PredictionsDb(initialised_cluster["owner"])
    db.load(known_rows())  # the loader's advisory lock, as the owner
    db.add_promotions()
    with run_date_lock(db.engine, dt.date(2025, 5, 1), step="test"):
        pass
    with run_date_lock(db.engine, dt.date(2025, 5, 1), step="test", shared=True):
        pass
    with serving(
        monkeypatch,
        initialised_cluster["owner"],
        API_DB_URL=initialised_cluster["reader"],
        API_KEY=API_KEY,
    ) as client:
        calls = {
            "predict": client.post("/predict", json={"plot_id": 1}, headers=auth()),
            "batch": client.post(
                "/predict/batch", json={"plots": [{"plot_id": 1}, {"plot_id": 3}]}, headers=auth()
            ),
            "history": client.get("/predictions/1", params={"as_of": "2025-04-02"}, headers=auth()),
            "models": client.get("/models", headers=auth()),
            "reload": client.post("/models/reload", headers=auth()),
            "health": client.get("/health", headers=auth()),
            "metrics": client.get("/metrics"),
        }
    assert {name: call.status_code for name, call in calls.items()} == dict.fromkeys(calls, 200)
    assert calls["batch"].json()["found"] == 2
    assert calls["health"].json()["latest_run_date"] == str(LATEST_NIGHT)
    assert len(calls["models"].json()["promotions"]) == len(PROMOTIONS)
    db.engine.dispose()
