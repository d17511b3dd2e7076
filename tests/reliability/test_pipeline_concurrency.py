"""Two scoring runs of the same night at once: the run date's lock lets one work and makes
the other refuse in one line naming the holder (or wait for it, when told to), on SQLite
(a file lock) and PostgreSQL (an advisory lock). Never a raw unique violation, never two
runs both claiming the night."""

from __future__ import annotations

import datetime as dt
import time

import pytest
import sqlalchemy as sa

from nuru_yield.db.locks import describe_holder, is_free, run_date_lock
from nuru_yield.errors import RunInProgressError
from tests.fixtures.scoring import PLOTS, RUN_DATE, Registry, write_features
from tests.fixtures.services import wait_until
from tests.reliability.pipeline_support import (
    cli,
    error_lines,
    logged_run,
    runs,
    score_cli,
    served_run,
)

HOLDER = describe_holder("test", RUN_DATE)


def _engine() -> sa.Engine:
    from nuru_yield.db.engine import get_engine
    from nuru_yield.db.migrations import upgrade

    upgrade()
    return get_engine()


def test_a_second_run_of_a_locked_night_refuses_in_one_line_naming_the_holder(
    registry: Registry, database: str
) -> None:
    write_features()
    with run_date_lock(_engine(), RUN_DATE, step="test"):
        code, _, err = score_cli()
    assert code == 75
    assert error_lines(err) == [
        f"error: run date {RUN_DATE} is busy: held by {HOLDER}; try again when it has "
        "finished (SCORING_LOCK_WAIT_SECONDS waits for it)"
    ]
    assert runs() == {} and served_run() == set()  # it changed nothing
    assert is_free(_engine(), RUN_DATE)  # the lock went with its holder


def test_other_nights_are_not_locked_and_shards_share_a_night(database: str) -> None:
    engine = _engine()
    with run_date_lock(engine, RUN_DATE, step="test"):
        assert is_free(engine, RUN_DATE + dt.timedelta(days=1))
    with run_date_lock(engine, RUN_DATE, step="test", shared=True):
        # A second shared holder is fine in-process too (nested), but an exclusive
        # request from a process that holds the lock only shared is refused.
        with run_date_lock(engine, RUN_DATE, step="test", shared=True):
            pass
        with pytest.raises(RunInProgressError), run_date_lock(engine, RUN_DATE, step="publish"):
            pass
    assert is_free(engine, RUN_DATE)


@pytest.mark.postgres
@pytest.mark.parametrize("database", ["postgres"], indirect=True)
def test_a_waiting_run_proceeds_when_the_holder_finishes(registry: Registry, database: str) -> None:
    write_features()
    engine = _engine()
    waiting = (
        "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
        "AND objid::bigint = :day"
    )
    with run_date_lock(engine, RUN_DATE, step="test"):
        process = cli("score", "--date", str(RUN_DATE), env={"SCORING_LOCK_WAIT_SECONDS": "300"})

        def queued() -> bool:
            with engine.connect() as connection:
                count = connection.execute(sa.text(waiting), {"day": RUN_DATE.toordinal()})
                return count.scalar_one() == 1

        wait_until(queued, "the second run waiting for the lock", timeout=120)
        assert process.poll() is None
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-2000:]
    assert f"{PLOTS:,} plots scored" in out
    assert [row.status for row in runs().values()] == ["success"]


@pytest.mark.postgres
@pytest.mark.parametrize("database", ["postgres"], indirect=True)
def test_two_runs_started_together_never_both_claim_the_night(
    registry: Registry, database: str
) -> None:
    write_features()
    started = time.monotonic()
    processes = [cli("score", "--date", str(RUN_DATE), "--shards", "2") for _ in range(2)]
    outcomes = [(p.wait(timeout=600), p.communicate()[1]) for p in processes]
    print(
        f"two concurrent runs: {time.monotonic() - started:.1f}s, codes {[c for c, _ in outcomes]}"
    )

    codes = sorted(code for code, _ in outcomes)
    assert codes in ([0, 0], [0, 75])  # one after the other, or one refused
    for code, err in outcomes:
        assert "Traceback" not in err and "UniqueViolation" not in err
        if code == 75:
            (line,) = error_lines(err)
            assert line.startswith(f"error: run date {RUN_DATE} is busy: held by nuru-yield ")
    statuses = [row.status for row in runs().values()]
    assert statuses == ["success"] * codes.count(0)
    assert len(served_run()) == 1 and served_run() == logged_run()
