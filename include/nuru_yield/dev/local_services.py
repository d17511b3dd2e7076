"""Throwaway local services for benchmarks, the demo's Airflow and the tests: a free
loopback port, a PostgreSQL cluster of our own, a scratch database on it, a Redis server
(the Celery broker of a distributed Airflow)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nuru_yield.errors import NuruError


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def check_port_free(host: str, port: int, purpose: str) -> None:
    """Raise a one-line :class:`NuruError` naming ``host:port`` when it cannot be bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            sock.bind((host, port))
        except OSError as error:
            raise NuruError(
                f"port {port} on {host} is not free ({error.strerror.lower()}): needed by "
                f"{purpose}; stop what uses it or choose another port"
            ) from None


def _as_postgres_user(command: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root: run its tools as the postgres user.
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def _run(command: list[str], log_file: Path | None = None) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        output = log_file.read_text() if log_file and log_file.exists() else ""
        reason = (output or result.stderr or result.stdout).strip().splitlines()[-1:]
        raise NuruError(f"{Path(command[0]).name} failed: {' '.join(reason)[:300]}")


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[tuple[str, int]]:
    """A PostgreSQL cluster of our own on a free loopback port (durability off: it is
    thrown away); yields an admin URL and the postmaster's pid, removes everything after."""
    if not (shutil.which("initdb") and shutil.which("pg_ctl")):
        raise NuruError(
            "PostgreSQL is needed: put initdb/pg_ctl on PATH "
            "(Debian: apt-get install postgresql) or pass --db-url"
        )
    root = Path(tempfile.mkdtemp(prefix="nuru-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    data, port, log_file = root / "data", free_port(), root / "log"
    try:
        _run(
            _as_postgres_user(
                ["initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"]
            )
        )
        options = (
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c full_page_writes=off"
        )
        # With -l the server's output goes to a file, not to our pipe (which would never close).
        start = ["pg_ctl", "-D", str(data), "-o", options, "-l", str(log_file), "-w", "start"]
        _run(_as_postgres_user(start), log_file)
        postmaster = int((data / "postmaster.pid").read_text().split()[0])
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", postmaster
    finally:
        subprocess.run(
            _as_postgres_user(["pg_ctl", "-D", str(data), "-m", "immediate", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def scratch_database(admin_url: str) -> Iterator[str]:
    """A new, empty database on the server of ``admin_url``, dropped afterwards."""
    import sqlalchemy as sa

    from nuru_yield.db.engine import dispose_engines

    name = f"nuru_scratch_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.make_url(admin_url).set(database=name).render_as_string(False)
    finally:
        dispose_engines()
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextlib.contextmanager
def throwaway_redis(timeout: float = 30.0) -> Iterator[str]:
    """A Redis server of our own on a free loopback port, nothing persisted; yields its URL
    (``redis://127.0.0.1:PORT/0``) and stops it afterwards."""
    server = shutil.which("redis-server")
    if server is None:
        raise NuruError(
            "Redis is needed: put redis-server on PATH (Debian: apt-get install redis-server)"
        )
    root = Path(tempfile.mkdtemp(prefix="nuru-redis-"))
    port = free_port()
    log_file = root / "redis.log"
    command = [server, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(root)]
    command += ["--save", "", "--appendonly", "no", "--logfile", str(log_file)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while not _answers_ping(port):
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log_file.read_text(errors="replace").strip().splitlines()[-1:]
                raise NuruError(f"redis-server did not start: {' '.join(tail)[:300]}")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop_process(process, timeout=10)
        shutil.rmtree(root, ignore_errors=True)


def stop_process(process: subprocess.Popen[Any], timeout: float = 15.0) -> None:
    """Stop a server this process started: SIGTERM, then SIGKILL if it is still running
    after ``timeout`` seconds; returns once it is gone (reaped)."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False
