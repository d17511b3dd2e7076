"""A scoring run killed (SIGKILL, a real process) at every step, on SQLite and PostgreSQL.

After each kill the night is whole — the ``predictions`` partition holds one run's rows,
the prediction log holds the same run's rows, or (killed between the swap and the move of
the log) the served run's assembled log, marked with its run id, waits for the next run to
move it in — and the next run closes the killed run's ``scoring_runs`` row: ``failed`` when
nothing of it is served, ``success`` when its swap had gone through. Never ``running``
forever.
"""

from __future__ import annotations

import signal
from pathlib import Path
from urllib.parse import urlparse

import pytest

from nuru_yield.db.engine import get_engine
from nuru_yield.lake import Lake
from nuru_yield.names import PREDICTION_LOG, parts_dir, parts_root, pending_log_path
from nuru_yield.nightly import run_of
from nuru_yield.scoring.bookkeeping import close_abandoned_runs
from tests.fixtures.scoring import PLOTS, RUN_DATE, Registry, write_features
from tests.reliability.pipeline_support import (
    logged_run,
    runs,
    score_cli,
    served_run,
)

# Where each kill lands (tests.fixtures.killed_scoring), the settings of the killed run,
# and whether its rows are served afterwards.
KILLS = [
    ("prepared", {"at": "prepared"}, {}, False),  # run opened, nothing staged
    ("mid-load", {"after_batches": 2}, {"SCORING_BATCH_ROWS": "40"}, False),
    ("assembling", {"at": "assembling"}, {}, False),  # publishing: the log half written
    ("before_swap", {"at": "before_swap"}, {}, False),  # log assembled, not swapped
    ("after_swap", {"at": "after_swap"}, {}, True),  # swapped, log not moved in
    ("after_log", {"at": "after_log"}, {}, True),  # swapped and logged, run not closed
]


def _temporary_files(lake: Lake, folder: str = parts_root(PREDICTION_LOG)) -> list[str]:
    """The ``.tmp-…`` files of killed writers below a folder of the lake (by default the
    prediction log's staging folder), which ``Lake.list`` does not show."""
    return sorted(path.name for path in _local(lake, folder).rglob(".tmp-*"))


def _local(lake: Lake, folder: str) -> Path:
    return Path(urlparse(lake.uri(folder)).path)


def _night_is_whole(lake: Lake) -> str:
    """The served run; fails unless the log agrees with it or its log waits to be moved in."""
    (served,) = served_run()
    logged = logged_run()
    assert logged == {served} or run_of(lake, pending_log_path(RUN_DATE)) == served, (
        f"served {served}, logged {logged}, and no pending log of {served}"
    )
    return served


def test_kills_at_every_step_leave_a_whole_night_and_are_closed_by_the_next_run(
    registry: Registry, database: str
) -> None:
    """Every kill point on PostgreSQL (production); on SQLite the one between the swap and
    the log (each kill is a process of its own: seconds each)."""
    from nuru_yield.scoring.run import score

    kills = KILLS if database == "postgres" else [k for k in KILLS if k[0] == "after_swap"]
    lake = Lake.from_settings()
    write_features()
    first = score(RUN_DATE, shards=2).run_id
    assert served_run() == logged_run() == {first}
    previous_served, killed, left_behind = first, [], []
    for point, kill, env, swapped in kills:
        code, _, err = score_cli(env=env, kill=kill)
        assert code == -signal.SIGKILL, f"{point}: {err[-1500:]}"
        assert "killing this process" in err, point
        (run_id,) = set(runs()) - {first, *killed}
        killed.append(run_id)
        if point in ("mid-load", "assembling"):  # killed while writing a file of the log
            left_behind.append(_temporary_files(lake))
        served = _night_is_whole(lake)
        assert served == (run_id if swapped else previous_served), point
        assert runs()[run_id].status == "running", point  # it never recorded an outcome
        if point == "after_swap":
            # The window between the swap and the move of the log: the next run (here its
            # first step, called directly) moves the served run's log into place.
            assert logged_run() == {previous_served}
            assert close_abandoned_runs(lake, get_engine(), closed_by="test") == [run_id]
            assert logged_run() == served_run() == {run_id}
            assert not lake.exists(pending_log_path(RUN_DATE))
        previous_served = served

    final = score(RUN_DATE, shards=2)
    assert served_run() == logged_run() == {final.run_id}
    assert final.rows == PLOTS
    statuses = {run_id: row.status for run_id, row in runs().items()}
    assert [statuses[run_id] for run_id in killed] == [
        "success" if swapped else "failed" for *_, swapped in kills
    ]
    assert "running" not in statuses.values()
    messages = [runs()[run_id].message for run_id in killed]
    assert all("closed by run" in message for message in messages)
    assert lake.list("monitoring/predictions/_parts") == []
    if database == "postgres":  # the kills left temporary files; the later runs cleared them
        assert [len(files) for files in left_behind] == [1, 1]
    assert _temporary_files(lake) == []


@pytest.mark.parametrize("point", ["before_swap", "after_swap"])
def test_a_publish_failing_around_the_swap_keeps_log_and_partition_together(
    registry: Registry, database: str, point: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A publish that raises (rather than dies) before or after its swap: the log still
    agrees with what is served once the run's own retry (or the next run) has run."""
    from nuru_yield.errors import LakeError
    from nuru_yield.scoring import run as scoring_run
    from nuru_yield.scoring.run import prepare_run, publish_run, score, score_shard

    lake = Lake.from_settings()
    write_features()
    first = score(RUN_DATE, shards=2).run_id
    plan = prepare_run(RUN_DATE, shards=2)
    shards = [score_shard(plan, shard) for shard in range(2)]

    def fail(at: str, batches_sent: int = 0) -> None:
        if at == point:
            raise LakeError(f"injected failure at {at}")

    monkeypatch.setattr(scoring_run, "reached", fail)
    with pytest.raises(LakeError, match="injected"):
        publish_run(plan, shards)
    assert runs()[plan.run_id].status == "failed"
    served = _night_is_whole(lake)
    assert served == (plan.run_id if point == "after_swap" else first)

    monkeypatch.undo()
    retried = publish_run(plan, shards)  # what Airflow's retry of the task does
    assert retried.rows == 2 * PLOTS / 2  # champion rows only: no challenger
    assert served_run() == logged_run() == {plan.run_id}
    assert runs()[plan.run_id].status == "success"


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_a_publish_clears_what_killed_writers_of_its_night_left(
    registry: Registry, database: str
) -> None:
    """A shard attempt killed while writing its part of the log leaves a temporary file; the
    retried shard succeeds and the run's publish (which holds the night's lock: no writer of
    the night is alive) removes it. Another night's staging folder is not its business."""
    import datetime as dt

    from nuru_yield.scoring.run import prepare_run, publish_run, score_shard

    lake = Lake.from_settings()
    write_features()
    plan = prepare_run(RUN_DATE, shards=2)
    night, other = (parts_dir(PREDICTION_LOG, day) for day in (RUN_DATE, dt.date(2025, 1, 1)))
    for folder in (night, other):  # as a writer killed mid-write leaves it
        _local(lake, folder).mkdir(parents=True, exist_ok=True)
        (_local(lake, folder) / ".tmp-0123456789abcdef.parquet").write_bytes(b"PAR1")
    publish_run(plan, [score_shard(plan, shard) for shard in range(2)])
    assert served_run() == logged_run() == {plan.run_id}
    assert _temporary_files(lake, night) == []
    assert _temporary_files(lake, other) == [".tmp-0123456789abcdef.parquet"]
