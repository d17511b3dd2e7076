"""Stopping Airflow's process tree: nothing may outlive ``standalone()``, not even a
component that ignores SIGTERM in a session of its own (as Airflow's components run)."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap

import psutil
import pytest

from nuru_yield.airflow_standalone import _stop_tree

# A parent that starts a grandchild in a new session which ignores SIGTERM, reports
# "ready" once the grandchild has installed its handler, then waits.
PARENT = textwrap.dedent(
    """
    import subprocess, sys
    stubborn = (
        "import signal, sys, time\\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\\n"
        "print('ready', flush=True)\\n"
        "time.sleep(600)\\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", stubborn], stdout=sys.stdout, start_new_session=True
    )
    child.wait()
    """
)


def test_stop_tree_kills_a_grandchild_that_ignores_sigterm(
    caplog: pytest.LogCaptureFixture,
) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", PARENT], stdout=subprocess.PIPE, start_new_session=True
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == b"ready"
    tree = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    assert len(tree) == 2

    with caplog.at_level(logging.WARNING, logger="nuru_yield.airflow_standalone"):
        _stop_tree(process, grace=1)
    process.stdout.close()

    assert process.returncode is not None
    assert [
        member for member in tree if member.is_running() and member.status() != psutil.STATUS_ZOMBIE
    ] == []
    assert "after SIGTERM; killing" in caplog.text
    assert str(tree[1].pid) in caplog.text
