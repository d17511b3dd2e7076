"""Engines: cached per URL, SQLite in WAL mode, and unreachable databases as one clear line."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from nuru_yield.db.engine import (
    SQLITE_BUSY_TIMEOUT_MS,
    check_connection,
    database_errors,
    dispose_engines,
    get_engine,
)
from nuru_yield.errors import DatabaseError
from tests.fixtures.services import free_port


@pytest.fixture(autouse=True)
def _fresh_engines() -> Iterator[None]:
    yield
    dispose_engines()


def test_default_engine_is_sqlite_under_nuru_home_in_wal_mode(nuru_home: Path) -> None:
    engine = get_engine()
    assert engine is get_engine()
    assert engine is get_engine(f"sqlite:///{nuru_home.resolve() / 'predictions.db'}")
    check_connection(engine)  # creates NURU_HOME on the way
    assert (nuru_home / "predictions.db").exists()
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == SQLITE_BUSY_TIMEOUT_MS


def test_sqlite_transactions_include_ddl(tmp_path: Path) -> None:
    engine = get_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with pytest.raises(RuntimeError), engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        raise RuntimeError("roll back")
    assert "t" not in sa.inspect(engine).get_table_names()


def test_postgres_urls_run_on_psycopg3_whatever_driver_they_name() -> None:
    engine = get_engine("postgresql+psycopg://nuru:pw@127.0.0.1:5432/nuru")
    assert engine.dialect.driver == "psycopg"
    # The seed's psycopg2 spelling and a plain URL are accepted: the same engine.
    assert engine is get_engine("postgresql+psycopg2://nuru:pw@127.0.0.1:5432/nuru")
    assert engine is get_engine("postgresql://nuru:pw@127.0.0.1:5432/nuru")


def test_unreachable_database_is_one_line_with_the_password_masked() -> None:
    port = free_port()  # nothing listens there
    engine = get_engine(f"postgresql+psycopg2://nuru:hunter2@127.0.0.1:{port}/nuru")
    with pytest.raises(DatabaseError) as raised:
        check_connection(engine)
    message = str(raised.value)
    assert "\n" not in message
    assert f"127.0.0.1:{port}/nuru" in message
    assert "refused" in message.lower()
    assert "hunter2" not in message and "***" in message


def test_database_errors_lets_other_exceptions_through(tmp_path: Path) -> None:
    engine = get_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with pytest.raises(KeyError), database_errors(engine, "anything"):
        raise KeyError("not a database problem")
    expected = r"^reading t failed \(sqlite:///.*\): no such table"
    with (
        pytest.raises(DatabaseError, match=expected),
        database_errors(engine, "reading t"),
        engine.connect() as connection,
    ):
        connection.exec_driver_sql("SELECT * FROM t")
