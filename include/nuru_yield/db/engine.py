"""Engines for the predictions database, cached per URL, and one-line database errors.

* PostgreSQL always runs on psycopg 3, whatever driver the URL names: the documented
  ``postgresql+psycopg://``, the seed's ``postgresql+psycopg2://`` and a plain
  ``postgresql://`` all connect the same way (the loader needs psycopg 3's ``COPY`` in the
  same transaction as its other statements; psycopg2 is never imported).
* SQLite runs in WAL mode (readers never block the nightly load and keep seeing the old rows
  until it commits) with a busy timeout, and with real transactions: SQLAlchemy's recipe
  of emitting ``BEGIN`` ourselves, so DDL such as dropping a staging table is part of the
  transaction. Writers open theirs with ``BEGIN IMMEDIATE`` (:func:`writer`) so that a
  transaction which reads before it writes waits for the lock instead of failing.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa

from nuru_yield.config import get_settings
from nuru_yield.errors import DatabaseError, mask_passwords

SQLITE_BUSY_TIMEOUT_MS = 60_000
_IMMEDIATE = "nuru_sqlite_begin_immediate"

_engines: dict[str, sa.Engine] = {}
_engines_lock = threading.Lock()


def _normalized_url(url: str) -> sa.URL:
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "postgresql":
        return parsed.set(drivername="postgresql+psycopg")
    return parsed


def _configure_sqlite(engine: sa.Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # no implicit BEGIN: `_on_begin` emits it
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        immediate = connection.get_execution_options().get(_IMMEDIATE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _create_engine(url: sa.URL) -> sa.Engine:
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url)
        _configure_sqlite(engine)
        return engine
    return sa.create_engine(
        url,
        pool_pre_ping=True,
        connect_args={
            "connect_timeout": 10,
            "client_encoding": "utf8",
            "application_name": "nuru-yield",
        },
    )


def get_engine(url: str | None = None) -> sa.Engine:
    """The engine for ``url`` (default ``PREDICTIONS_DB_URL``), created once per URL."""
    if url is None:
        url = get_settings().predictions_db_url
    key = _normalized_url(url).render_as_string(hide_password=False)
    with _engines_lock:
        if key not in _engines:
            _engines[key] = _create_engine(_normalized_url(url))
        return _engines[key]


def dispose_engines() -> None:
    """Close every cached engine's connections and forget the engines (tests, forked workers)."""
    with _engines_lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


def writer(engine: sa.Engine) -> sa.Engine:
    """``engine`` for a transaction that writes: on SQLite it starts with ``BEGIN IMMEDIATE``."""
    return engine.execution_options(**{_IMMEDIATE: True})


def describe(engine: sa.Engine) -> str:
    """The engine's URL with the password masked, for messages."""
    return mask_passwords(engine.url.render_as_string(hide_password=False))


def _reason(error: BaseException) -> str:
    original = getattr(error, "orig", None) or error
    lines = [line.strip() for line in str(original).splitlines() if line.strip()]
    return lines[0] if lines else type(original).__name__


@contextlib.contextmanager
def database_errors(engine: sa.Engine, action: str) -> Iterator[None]:
    """Turn driver errors raised inside the block into a one-line :class:`DatabaseError`
    naming ``action`` and the (masked) URL; other exceptions pass through unchanged."""
    try:
        yield
    except (sa.exc.DBAPIError, psycopg.Error) as error:
        raise DatabaseError(f"{action} failed ({describe(engine)}): {_reason(error)}") from error


def check_connection(engine: sa.Engine) -> None:
    """Connect once; an unreachable or missing database raises :class:`DatabaseError`."""
    with (
        database_errors(engine, "connecting to the predictions database"),
        engine.connect() as connection,
    ):
        connection.exec_driver_sql("SELECT 1")
