"""One process at a time per run date: the lock that keeps two scoring runs of one night
apart, and tells a run that is still alive from one whose process is gone.

PostgreSQL: a session-level advisory lock keyed by (namespace, run date) on a connection of
its own, held for as long as the step runs; the server drops it when the process or its
connection dies, so a run that holds no lock is not running. The connection's
``application_name`` names the holder (``nuru-yield score 2025-05-01 pid 123@host``), which is
what a refused run reports. SQLite (one machine): ``flock`` on a file next to the database,
whose content names the holder; the kernel drops it with the process.

Locks are shared or exclusive: the steps that change what a night is (opening a run,
publishing it) take the lock exclusively, the shards that stage rows in parallel take it
shared. A process that already holds a date's lock exclusively may take it again (the
one-process ``nuru-yield score`` runs every step inside its own lock).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import sqlalchemy as sa

from nuru_yield.db.engine import database_errors
from nuru_yield.errors import RunInProgressError

# First key of every advisory lock of this package ("nuru" in ASCII): keeps them apart from
# other applications' advisory locks on the same database.
_NAMESPACE = 0x6E757275
_POLL_SECONDS = 0.2

_held: dict[tuple[str, dt.date], tuple[bool, int]] = {}  # → (exclusive, depth)
_held_lock = threading.Lock()


def describe_holder(step: str, run_date: dt.date) -> str:
    """How this process names itself as a lock holder: the step, date, pid and host."""
    return f"nuru-yield {step} {run_date} pid {os.getpid()}@{socket.gethostname()}"


@contextlib.contextmanager
def run_date_lock(
    engine: sa.Engine,
    run_date: dt.date,
    *,
    step: str,
    shared: bool = False,
    wait_seconds: float = 0.0,
) -> Iterator[None]:
    """Hold ``run_date``'s lock (exclusively unless ``shared``) for the block.

    Waits at most ``wait_seconds`` (0: not at all), then raises
    :class:`~nuru_yield.errors.RunInProgressError` naming the holder.
    """
    key = (engine.url.render_as_string(hide_password=False), run_date)
    with _held_lock:
        exclusive, depth = _held.get(key, (False, 0))
        if depth and (exclusive or shared):
            _held[key] = (exclusive, depth + 1)
            nested = True
        else:
            nested = False
    if nested:
        try:
            yield
        finally:
            _release_nested(key)
        return
    backend = _PostgresLock if engine.dialect.name == "postgresql" else _FileLock
    lock = backend(engine, run_date, describe_holder(step, run_date), shared)
    lock.acquire(wait_seconds)
    with _held_lock:
        _held[key] = (not shared, 1)
    try:
        yield
    finally:
        with _held_lock:
            del _held[key]
        lock.release()


def _release_nested(key: tuple[str, dt.date]) -> None:
    with _held_lock:
        exclusive, depth = _held[key]
        _held[key] = (exclusive, depth - 1)


def is_free(engine: sa.Engine, run_date: dt.date) -> bool:
    """True when no other process holds ``run_date``'s lock (this one may)."""
    try:
        with run_date_lock(engine, run_date, step="check"):
            return True
    except RunInProgressError:
        return False


class _PostgresLock:
    def __init__(self, engine: sa.Engine, run_date: dt.date, holder: str, shared: bool) -> None:
        self.engine = engine
        self.run_date = run_date
        self.holder = holder
        self.suffix = "_shared" if shared else ""
        self.key = {"ns": _NAMESPACE, "day": run_date.toordinal()}
        self.connection: sa.Connection | None = None

    def acquire(self, wait_seconds: float) -> None:
        with database_errors(self.engine, f"locking run date {self.run_date}"):
            connection = self.engine.connect()
            try:
                got = self._lock(connection, wait_seconds)
            except BaseException:
                connection.close()
                raise
        if not got:
            holders = self._holders(connection)
            connection.close()
            raise RunInProgressError(_refusal(self.run_date, holders, wait_seconds))
        self.connection = connection

    def _lock(self, connection: sa.Connection, wait_seconds: float) -> bool:
        """Take the lock; each statement commits, so the session never idles in a transaction
        (the advisory lock belongs to the session and outlives the commits)."""
        name = {"name": self.holder[:63]}  # PostgreSQL keeps 63 bytes of it
        connection.execute(sa.text("SELECT set_config('application_name', :name, false)"), name)
        connection.commit()
        if wait_seconds <= 0:
            lock = sa.text(f"SELECT pg_try_advisory_lock{self.suffix}(:ns, :day)")
            got = bool(connection.execute(lock, self.key).scalar())
            connection.commit()
            return got
        timeout = {"ms": f"{max(1, round(wait_seconds * 1000))}ms"}
        connection.execute(sa.text("SELECT set_config('lock_timeout', :ms, false)"), timeout)
        try:
            connection.execute(
                sa.text(f"SELECT pg_advisory_lock{self.suffix}(:ns, :day)"), self.key
            )
        except sa.exc.OperationalError as error:
            connection.rollback()
            if isinstance(error.orig, psycopg.errors.LockNotAvailable):
                return False
            raise
        connection.commit()
        return True

    def _holders(self, connection: sa.Connection) -> list[str]:
        rows = connection.execute(
            sa.text(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.granted AND l.classid::bigint = :ns "
                "AND l.objid::bigint = :day AND l.objsubid = 2 ORDER BY a.backend_start"
            ),
            self.key,
        ).scalars()
        holders = [name or "an unnamed session" for name in rows]
        connection.rollback()
        return holders

    def release(self) -> None:
        if self.connection is None:
            return
        with contextlib.suppress(sa.exc.SQLAlchemyError, psycopg.Error):
            self.connection.execute(
                sa.text(f"SELECT pg_advisory_unlock{self.suffix}(:ns, :day)"), self.key
            )
            self.connection.execute(sa.text("RESET application_name"))
            self.connection.execute(sa.text("RESET lock_timeout"))
            self.connection.commit()
        self.connection.close()
        self.connection = None


class _FileLock:
    def __init__(self, engine: sa.Engine, run_date: dt.date, holder: str, shared: bool) -> None:
        self.run_date = run_date
        self.holder = holder
        self.mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        self.path = _lock_file(engine, run_date)
        self.handle: int | None = None

    def acquire(self, wait_seconds: float) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(handle, self.mode | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = Path(self.path).read_text(errors="replace").strip()
                    os.close(handle)
                    holders = [holder] if holder else []
                    raise RunInProgressError(
                        _refusal(self.run_date, holders, wait_seconds)
                    ) from None
                time.sleep(_POLL_SECONDS)
        if self.mode == fcntl.LOCK_EX:
            os.ftruncate(handle, 0)
            os.pwrite(handle, self.holder.encode(), 0)
        self.handle = handle

    def release(self) -> None:
        if self.handle is not None:
            if self.mode == fcntl.LOCK_EX:
                os.ftruncate(self.handle, 0)
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            os.close(self.handle)
            self.handle = None


def _lock_file(engine: sa.Engine, run_date: dt.date) -> Path:
    database = engine.url.database
    if database and database != ":memory:":
        folder = Path(database).expanduser().resolve().parent / ".nuru-locks"
    else:
        folder = Path(tempfile.gettempdir()) / "nuru-yield-locks"
    return folder / f"run-{run_date}.lock"


def _refusal(run_date: dt.date, holders: list[str], wait_seconds: float) -> str:
    who = ", ".join(holders) if holders else "another process"
    waited = f" after waiting {wait_seconds:g}s" if wait_seconds > 0 else ""
    return (
        f"run date {run_date} is busy{waited}: held by {who}; "
        "try again when it has finished (SCORING_LOCK_WAIT_SECONDS waits for it)"
    )
