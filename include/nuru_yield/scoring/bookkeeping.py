"""The ``scoring_runs`` table (docs/DESIGN.md, "Database"): one row per scoring run, opened by
``prepare_run`` and closed by ``publish_run`` or marked failed, and the closing of the runs
whose process is gone (:func:`close_abandoned_runs`)."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa

from nuru_yield.db.engine import database_errors, writer
from nuru_yield.db.locks import is_free
from nuru_yield.db.schema import predictions, scoring_runs
from nuru_yield.errors import NoPlotsInProgressError
from nuru_yield.lake import Lake
from nuru_yield.names import (
    CHAMPION,
    MODEL_NAME,
    PREDICTION_LOG,
    features_path,
    parts_root,
    pending_log_path,
    prediction_log_path,
    rejected_path,
)
from nuru_yield.nightly import run_of
from nuru_yield.scoring.plan import (
    FAILED,
    NO_PLOTS_IN_PROGRESS,
    RUNNING,
    SUCCESS,
    ScoringPlan,
)

log = logging.getLogger(__name__)


def open_run(engine: sa.Engine, plan: ScoringPlan, dag_run_id: str | None) -> None:
    """Insert the run's row, ``running``."""
    with database_errors(engine, "recording the scoring run"), writer(engine).begin() as c:
        c.execute(
            scoring_runs.insert().values(
                run_id=plan.run_id,
                run_date=plan.run_date,
                model_name=plan.model_name,
                model_version=plan.champion_version,
                challenger_version=plan.challenger_version,
                status=RUNNING,
                shards=plan.shards,
                started_at=plan.started_at,
                features_uri=plan.features_uri,
                dag_run_id=dag_run_id,
            )
        )


def record_empty_night(
    engine: sa.Engine, lake: Lake, day: dt.date, run_id: str, dag_run_id: str | None
) -> NoPlotsInProgressError:
    """Record the night as ``no_plots_in_progress``; the error to raise. Nothing is
    published: the previous predictions stay served."""
    message = (
        f"no plot-season in progress on {day}: {lake.uri(features_path(day))} has no rows; "
        "nothing was published (are the plots of the running season in raw/plots.parquet?)"
    )
    now = dt.datetime.now(dt.UTC)
    with database_errors(engine, "recording the scoring run"), writer(engine).begin() as c:
        c.execute(
            scoring_runs.insert().values(
                run_id=run_id,
                run_date=day,
                model_name=MODEL_NAME,
                status=NO_PLOTS_IN_PROGRESS,
                plots_scored=0,
                plots_rejected=rejected_count(lake, day),
                started_at=now,
                finished_at=now,
                duration_s=0.0,
                features_uri=lake.uri(features_path(day)),
                dag_run_id=dag_run_id,
                message=message,
            )
        )
    return NoPlotsInProgressError(message)


def update_run(engine: sa.Engine, run_id: str, **values: Any) -> None:
    with database_errors(engine, f"updating scoring run {run_id}"), writer(engine).begin() as c:
        c.execute(scoring_runs.update().where(scoring_runs.c.run_id == run_id).values(**values))


def fail_run(engine: sa.Engine, plan: ScoringPlan, message: str) -> None:
    """Mark a run failed (best effort: the database may be what failed). A retried step
    that then succeeds is recorded by ``publish_run``, which closes the run."""
    try:
        update_run(
            engine,
            plan.run_id,
            status=FAILED,
            finished_at=dt.datetime.now(dt.UTC),
            message=message[:2000],
        )
    except Exception as error:  # the original failure matters more than this one
        log.warning("could not mark run %s failed: %s", plan.run_id, error)


@contextlib.contextmanager
def recording_failure(engine: sa.Engine, plan: ScoringPlan) -> Iterator[None]:
    """Record an exception leaving the block as the run's failure, then re-raise it."""
    try:
        yield
    except Exception as error:
        fail_run(engine, plan, str(error).splitlines()[0] if str(error) else type(error).__name__)
        raise


def close_abandoned_runs(
    lake: Lake, engine: sa.Engine, *, closed_by: str, by_airflow: bool = False
) -> list[str]:
    """Close the runs whose process is gone; returns their run ids.

    A ``running`` row whose run date's lock nobody holds belongs to a process that died
    (killed, or its machine lost) before recording an outcome. If the swap went through
    (the partition holds its rows), its assembled log is moved into place and the row
    becomes ``success``; otherwise it becomes ``failed`` and its log is deleted. A run of an
    Airflow DAG is idle between its tasks, so only another Airflow run (``by_airflow``)
    closes those rows: the DAG runs one run at a time. A log left by a run whose rows are
    served (a publish that failed or died after its swap) is moved into place too.
    """
    with database_errors(engine, "reading scoring runs"), engine.connect() as c:
        running = c.execute(
            sa.select(
                scoring_runs.c.run_id, scoring_runs.c.run_date, scoring_runs.c.dag_run_id
            ).where(scoring_runs.c.status == RUNNING)
        ).all()
    left = _pending_logs(lake)
    closed = []
    for run in running:
        if (run.dag_run_id is None or by_airflow) and is_free(engine, run.run_date):
            _close(lake, engine, run.run_id, run.run_date, left.pop(run.run_id, None), closed_by)
            closed.append(run.run_id)
    for run_id, day in left.items():
        if served_run_id(engine, day) == run_id and is_free(engine, day):
            _close(lake, engine, run_id, day, day, closed_by)
            closed.append(run_id)
    return closed


def _pending_logs(lake: Lake) -> dict[str, dt.date]:
    """Run id → run date of every assembled log waiting for its swap (:func:`pending_log_path`)."""
    pending = {}
    for day in lake.partition_dates(parts_root(PREDICTION_LOG)):
        run_id = run_of(lake, pending_log_path(day))
        if run_id is not None:
            pending[run_id] = day
    return pending


def _close(
    lake: Lake,
    engine: sa.Engine,
    run_id: str,
    day: dt.date,
    pending_day: dt.date | None,
    closed_by: str,
) -> None:
    if served_run_id(engine, day) == run_id:
        if pending_day is not None:
            lake.move(pending_log_path(day), prediction_log_path(day))
        update_run(
            engine,
            run_id,
            status=SUCCESS,
            plots_scored=_served_plots(engine, day),
            finished_at=dt.datetime.now(dt.UTC),
            prediction_log_uri=lake.uri(prediction_log_path(day)),
            message=f"published; its process ended before recording it (closed by run {closed_by})",
        )
        log.warning("run %s had published %s before its process ended: closed", run_id, day)
        return
    if pending_day is not None:
        lake.delete(pending_log_path(day))
    update_run(
        engine,
        run_id,
        status=FAILED,
        finished_at=dt.datetime.now(dt.UTC),
        message=(
            f"abandoned: its process ended without recording an outcome (killed?); nothing "
            f"of it is served (closed by run {closed_by})"
        ),
    )
    log.warning("run %s for %s was abandoned by its process: marked failed", run_id, day)


def rejected_count(lake: Lake, day: dt.date) -> int | None:
    """Rows the feature run of ``day`` quarantined (None without its ``rejected.parquet``)."""
    path = rejected_path(day)
    return lake.open_parquet(path).metadata.num_rows if lake.exists(path) else None


def served_run_id(engine: sa.Engine, day: dt.date) -> str | None:
    """The run whose rows the partition of ``day`` holds (None when it is empty)."""
    with database_errors(engine, "checking published predictions"), engine.connect() as c:
        return c.execute(
            sa.select(predictions.c.run_id).where(predictions.c.run_date == day).limit(1)
        ).scalar()


def _served_plots(engine: sa.Engine, day: dt.date) -> int:
    with database_errors(engine, "counting published predictions"), engine.connect() as c:
        return c.execute(
            sa.select(sa.func.count()).where(
                predictions.c.run_date == day, predictions.c.model_name == CHAMPION
            )
        ).scalar_one()
