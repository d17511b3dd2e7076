"""Airflow glue shared by the four DAGs — the one module outside ``dags/`` that imports Airflow.

Only DAG files import it, so it imports ``airflow.sdk`` at module level and nothing heavy:
tasks import the library lazily and call one function each.

Assets (logical URIs, independent of where the lake lives; the concrete lake URI and the
run date of each update travel in the asset event's ``extra``, see :func:`announce`):

=================  ==========================  ===========================================
asset              URI                         updated by
=================  ==========================  ===========================================
``raw_inputs``     ``nuru://raw_inputs``       ``raw_ingestion`` (the night's raw contract)
``plot_features``  ``nuru://plot_features``    ``feature_materialization`` (one partition)
``predictions``    ``nuru://predictions``      ``batch_scoring``
``champion_model`` ``nuru://champion_model``   ``model_training`` (when the alias moves)
=================  ==========================  ===========================================

Run dates (:func:`resolve_run_date`): the ``run_date`` param when given, else the DAG
run's logical date, else the ``run_date`` of the asset event that triggered the run
(asset-triggered runs have no logical date), else a clear error.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
from collections.abc import Mapping
from typing import Any

from airflow.sdk import (
    Asset,
    AssetOrTimeSchedule,
    CronDataIntervalTimetable,
    CronTriggerTimetable,
    Param,
)
from airflow.sdk.definitions.retry_policy import (
    ExceptionRetryPolicy,
    RetryAction,
    RetryDecision,
    RetryRule,
)

from nuru_yield.errors import RegistryUnavailableError

log = logging.getLogger("nuru_yield.orchestration")

raw_inputs = Asset(name="raw_inputs", uri="nuru://raw_inputs", group="nuru-yield")
plot_features = Asset(name="plot_features", uri="nuru://plot_features", group="nuru-yield")
predictions = Asset(name="predictions", uri="nuru://predictions", group="nuru-yield")
champion_model = Asset(name="champion_model", uri="nuru://champion_model", group="nuru-yield")

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def log_failure(context: Mapping[str, Any]) -> None:
    """``on_failure_callback``: one clear log line naming the task, the run and the error."""
    ti = context.get("ti") or context.get("task_instance")
    log.error(
        "nuru-yield task failed: dag=%s task=%s run_id=%s try=%s: %s",
        getattr(ti, "dag_id", "?"),
        getattr(ti, "task_id", "?"),
        getattr(ti, "run_id", "?"),
        getattr(ti, "try_number", "?"),
        context.get("exception") or "unknown error",
    )


class PipelineRetryPolicy(ExceptionRetryPolicy):
    """The rules below, and: an unreachable MLflow registry is retried once, not on every
    try — its client already gave up after bounded attempts, so a second miss five minutes
    later is an outage for a person, not a blip."""

    def evaluate(
        self,
        exception: BaseException,
        try_number: int,
        max_tries: int,
        context: Any = None,
    ) -> RetryDecision:
        if isinstance(exception, RegistryUnavailableError) and try_number > 1:
            return RetryDecision.fail("MLflow still unreachable after one retry")
        return super().evaluate(exception, try_number, max_tries, context)


# Bad data, bad settings, missing inputs (features, a champion, plots in progress), a
# registry that refused an operation (corrupt store, missing artifact) and impossible
# forecasts fail the same way on every try: no retries. Anything else (lake or database
# hiccups, a night locked by another run) retries with backoff.
NO_RETRY_ON_BAD_INPUT = PipelineRetryPolicy(
    rules=[
        RetryRule(
            exception="nuru_yield.errors.RegistryUnavailableError",
            action=RetryAction.RETRY,
            retry_delay=dt.timedelta(minutes=5),
            reason="MLflow did not answer: one more try in 5 minutes",
        ),
        RetryRule(
            exception=[
                "nuru_yield.errors.DataValidationError",
                "nuru_yield.errors.ConfigError",
                "nuru_yield.errors.MissingInputError",
                "nuru_yield.errors.RegistryError",
                "nuru_yield.errors.ForecastIntegrityError",
            ],
            action=RetryAction.FAIL,
            reason="bad or missing input data, bad settings, a refused registry operation or "
            "impossible forecasts: retrying cannot help",
        ),
    ]
)

default_args: dict[str, Any] = {
    "owner": "nuru-yield",
    "retries": 2,
    "retry_delay": dt.timedelta(minutes=2),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": dt.timedelta(minutes=30),
    "execution_timeout": dt.timedelta(hours=2),
    "on_failure_callback": log_failure,
    "retry_policy": NO_RETRY_ON_BAD_INPUT,
}


# ``NURU_SCHEDULES=manual`` (set by ``make demo`` and the end-to-end test) turns the time
# schedules off while keeping the Asset triggers: unpausing a DAG then starts no run for last
# night or last Monday, and runs are triggered for a chosen date instead.
_TIME_SCHEDULES = os.environ.get("NURU_SCHEDULES", "on") != "manual"


def nightly_schedule() -> CronDataIntervalTimetable | None:
    """``raw_ingestion``: 00:00 UTC, each run covering the UTC day that just ended (its
    ``raw_inputs`` event then starts ``feature_materialization`` for that night)."""
    return CronDataIntervalTimetable("0 0 * * *", timezone="UTC") if _TIME_SCHEDULES else None


def weekly_or_on(asset: Asset) -> AssetOrTimeSchedule | Asset:
    """``model_training``: Mondays 03:00 UTC, or whenever ``asset`` is updated."""
    if not _TIME_SCHEDULES:
        return asset
    return AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("0 3 * * 1", timezone="UTC"), assets=asset
    )


def run_date_params() -> dict[str, Param]:
    """The ``run_date`` param every DAG accepts (manual and asset-triggered runs)."""
    return {
        "run_date": Param(
            None,
            type=["null", "string"],
            pattern=_DATE.pattern,
            description="Run date YYYY-MM-DD; empty = the run's logical date.",
        )
    }


def resolve_run_date(context: Mapping[str, Any]) -> dt.date:
    """The run date of a task: param, logical date or triggering asset event.

    Logged, so the task log of a run whose id names no night (Airflow's own
    ``asset_triggered__<time>``, which no task can rename or annotate) says which it is."""
    params = context.get("params") or {}
    given = params.get("run_date")
    if given:
        return _announced(_checked(str(given), "the run_date param"), "the run_date param")
    logical = context.get("logical_date")
    if logical is not None:
        return _announced(logical.date(), "the logical date")
    events = context.get("triggering_asset_events") or {}
    dates = sorted(
        str(event.extra["run_date"])
        for asset_events in events.values()
        for event in asset_events
        if event.extra and event.extra.get("run_date")
    )
    if dates:
        source = "the triggering asset event"
        return _announced(_checked(dates[-1], source), source)
    raise ValueError(
        "no run date: pass the run_date param (YYYY-MM-DD); this run has no logical date "
        "and no triggering asset event with a run_date"
    )


def announce(context: Mapping[str, Any], asset: Asset, run_date: dt.date, **extra: Any) -> None:
    """Attach the run date (``YYYY-MM-DD``, and e.g. the lake URI) to the asset event this
    task emits."""
    context["outlet_events"][asset].extra = {"run_date": run_date.isoformat(), **extra}


def _announced(run_date: dt.date, source: str) -> dt.date:
    log.info("night %s (run date from %s)", run_date, source)
    return run_date


def _checked(value: str, source: str) -> dt.date:
    try:
        if _DATE.match(value):
            return dt.date.fromisoformat(value)
    except ValueError:
        pass
    raise ValueError(f"{source} {value!r} is not a date YYYY-MM-DD")
