"""What the API fault tests share: a PostgreSQL cluster of their own (they freeze and restart
it, which the session's shared server must never see), and concurrent HTTP calls that are
timed one by one."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from nuru_yield.dev.local_services import _as_postgres_user, throwaway_postgres
from nuru_yield.errors import NuruError
from tests.fixtures.services import unavailable

HANG = 10.0  # seconds: an answer later than this is a hang, whatever the goal (2 s)


@dataclass
class Cluster:
    """A throwaway PostgreSQL cluster that a test may freeze and restart."""

    admin_url: str
    data_dir: Path

    def postmaster(self) -> int:
        return int((self.data_dir / "postmaster.pid").read_text().split()[0])

    def processes(self) -> list[int]:
        """The postmaster and every process under it (backends, checkpointer, …)."""
        parents: dict[int, int] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                    parents[int(entry.name)] = int(stat[1])
        tree, frontier = [self.postmaster()], [self.postmaster()]
        while frontier:
            parent = frontier.pop()
            children = [pid for pid, ppid in parents.items() if ppid == parent]
            tree += children
            frontier += children
        return tree

    @contextlib.contextmanager
    def frozen(self) -> Iterator[list[int]]:
        """Every process of the server stopped (SIGSTOP), as a hung host or a network black
        hole looks to a client: connections stay open, nothing answers. Always resumed."""
        stopped: list[int] = []
        try:
            # The postmaster first, so it forks nothing new; then its children until a pass
            # finds none left running. A backend may exit between the listing and the
            # signal (a client closing its connection): it has nothing left to freeze.
            while pending := [pid for pid in self.processes() if pid not in stopped]:
                for pid in pending:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGSTOP)
                    stopped.append(pid)
            yield stopped
        finally:
            for pid in stopped:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)

    def restart(self) -> None:
        """``pg_ctl restart`` (fast: sessions are terminated), back up when it returns."""
        log_file = self.data_dir.parent / "restart.log"
        command = ["pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "-l", str(log_file)]
        subprocess.run(_as_postgres_user([*command, "restart"]), check=True, capture_output=True)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with contextlib.ExitStack() as stack:
        try:
            url, _ = stack.enter_context(throwaway_postgres())
        except NuruError as error:
            unavailable(str(error))
        engine = sa.create_engine(url)
        with engine.connect() as connection:
            data_dir = Path(connection.execute(sa.text("SHOW data_directory")).scalar_one())
        engine.dispose()
        yield Cluster(url, data_dir)


@dataclass(frozen=True)
class Answer:
    status: int  # 0: no answer at all (connection error or client timeout)
    seconds: float
    body: Any
    started: float  # time.monotonic() when the request was sent


def call(method: str, url: str, kwargs: dict[str, Any] | None = None) -> Answer:
    """One HTTP call on its own connection, timed; a hang shows as status 0 after 3x HANG."""
    started = time.monotonic()
    try:
        response = httpx.request(method, url, timeout=3 * HANG, **(kwargs or {}))
    except httpx.HTTPError as error:
        return Answer(0, time.monotonic() - started, repr(error), started)
    seconds = time.monotonic() - started
    try:
        body = response.json()
    except ValueError:
        body = response.text
    return Answer(response.status_code, seconds, body, started)


def concurrently(calls: list[tuple[str, str, dict[str, Any]]]) -> list[Answer]:
    """Make every call at once (one thread each); answers in the order of ``calls``."""
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = [pool.submit(call, *request) for request in calls]
        return [future.result() for future in futures]
