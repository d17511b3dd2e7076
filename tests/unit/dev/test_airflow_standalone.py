"""Stopping Airflow's processes: nothing may outlive ``standalone()``, not even a component
that ignores SIGTERM in a session of its own (as Airflow's components run) and whose parent
has died, so that it is no longer in the process tree."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import textwrap
import uuid

import psutil
import pytest

from nuru_yield.dev.airflow_standalone import STANDALONE_MARK, _stop_tree

# A parent that starts a child in a new session which ignores SIGTERM, and exits once the
# child says it has installed its handler: the child is re-parented out of the tree.
PARENT = textwrap.dedent(
    """
    import subprocess, sys
    stubborn = (
        "import os, signal, sys, time\\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\\n"
        "print(os.getpid(), flush=True)\\n"
        "time.sleep(600)\\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", stubborn], stdout=subprocess.PIPE, start_new_session=True
    )
    print(child.stdout.readline().decode().strip(), flush=True)
    """
)


def start_orphan(mark: str) -> tuple[subprocess.Popen[bytes], psutil.Process]:
    env = {**os.environ, STANDALONE_MARK: mark}
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT], stdout=subprocess.PIPE, env=env, start_new_session=True
    )
    assert parent.stdout is not None
    orphan = psutil.Process(int(parent.stdout.readline()))
    parent.stdout.close()
    parent.wait()
    return parent, orphan


def running(process: psutil.Process) -> bool:
    return process.is_running() and process.status() != psutil.STATUS_ZOMBIE


def test_stop_kills_an_orphan_that_ignores_sigterm(caplog: pytest.LogCaptureFixture) -> None:
    mark = uuid.uuid4().hex
    parent, orphan = start_orphan(mark)
    try:
        assert running(orphan)
        assert orphan.ppid() != parent.pid  # out of the tree: only the mark finds it

        with caplog.at_level(logging.WARNING, logger="nuru_yield.dev.airflow_standalone"):
            _stop_tree(parent, mark, grace=1)

        assert not running(orphan)
        assert f"1 process(es) still running 1s after SIGTERM; killing {orphan.pid}" in caplog.text
    finally:
        with contextlib.suppress(psutil.NoSuchProcess):
            orphan.kill()


def test_stop_leaves_processes_of_another_run_alone() -> None:
    parent, other = start_orphan(uuid.uuid4().hex)
    try:
        _stop_tree(parent, uuid.uuid4().hex, grace=1)
        assert running(other)
    finally:
        other.kill()


def test_each_celery_worker_reports_its_own_name_as_its_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import socket

    from nuru_yield.dev.airflow_standalone import WORKER_NAME, worker_hostname

    monkeypatch.delenv(WORKER_NAME, raising=False)
    assert worker_hostname() == socket.getfqdn()
    monkeypatch.setenv(WORKER_NAME, "worker-b")
    assert worker_hostname() == "worker-b"
