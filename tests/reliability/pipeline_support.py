"""Helpers of the pipeline fault tests (``test_pipeline_*``): the database a test scores
into, real ``nuru-yield`` processes, and what a night looks like from the outside — the
run served by the ``predictions`` partition, the run recorded in the prediction log, and
the ``scoring_runs`` rows."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from typing import Any

import sqlalchemy as sa

from tests.fixtures import killed_scoring
from tests.fixtures.scoring import RUN_DATE


def cli(
    *args: str, env: dict[str, str] | None = None, kill: dict[str, Any] | None = None
) -> subprocess.Popen:
    """``nuru-yield ARGS`` in a process of its own (killable for real; not a fork of this
    one: MLflow's background threads make forked children hang). ``kill``: where the
    process SIGKILLs itself (the arguments of :func:`tests.fixtures.killed_scoring.command`)."""
    command = [sys.executable, "-m", "nuru_yield", *args]
    return subprocess.Popen(
        killed_scoring.command(list(args), **kill) if kill else command,
        env={**os.environ, **(env or {})},
        cwd=killed_scoring.REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_cli(
    *args: str,
    env: dict[str, str] | None = None,
    kill: dict[str, Any] | None = None,
    timeout: float = 300,
):
    """Run ``nuru-yield ARGS`` to the end (or its death); (return code, stdout, stderr)."""
    process = cli(*args, env=env, kill=kill)
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def score_cli(
    day: dt.date = RUN_DATE,
    shards: int = 2,
    env: dict[str, str] | None = None,
    kill: dict[str, Any] | None = None,
):
    return run_cli("score", "--date", str(day), "--shards", str(shards), env=env, kill=kill)


def error_lines(stderr: str) -> list[str]:
    """What a person sees of a failure: the lines that are not log records."""
    return [
        line
        for line in stderr.splitlines()
        if line.strip() and not line[:4].isdigit()  # log records start with the year
    ]


def rows(sql: str, **params: object) -> list[sa.Row]:
    from nuru_yield.db.engine import get_engine

    with get_engine().connect() as connection:
        return connection.execute(sa.text(sql), params).all()


def served_run(day: dt.date = RUN_DATE) -> set[str]:
    """The run ids of the rows served for ``day`` (one, unless a night were mixed)."""
    return {
        r.run_id for r in rows("SELECT DISTINCT run_id FROM predictions WHERE run_date = :d", d=day)
    }


def logged_run(day: dt.date = RUN_DATE) -> set[str]:
    """The run ids of the rows in the prediction log of ``day`` (empty without a log)."""
    from nuru_yield.lake import Lake
    from nuru_yield.names import prediction_log_path

    lake = Lake.from_settings()
    if not lake.exists(prediction_log_path(day)):
        return set()
    return set(
        lake.read_parquet(prediction_log_path(day), columns=["run_id"])["run_id"].to_pylist()
    )


def runs() -> dict[str, sa.Row]:
    """``scoring_runs`` by run id, in the order they started."""
    return {
        r.run_id: r
        for r in rows(
            "SELECT run_id, run_date, status, message FROM scoring_runs ORDER BY started_at"
        )
    }
