"""Airflow glue shared by the DAGs — the one module outside ``dags/`` that imports Airflow.

Only DAG files import it, so it imports ``airflow.sdk`` at module level and nothing heavy:
tasks import the library lazily and call one function each.

Assets (logical URIs, independent of where the lake lives; see :func:`announce`):

==================  ===========================  ==========================================
asset               URI                          updated by
==================  ===========================  ==========================================
``plot_features``   ``nuru://plot_features``     ``feature_materialization``, one event a
                                                 night: its partition key
``predictions``     ``nuru://predictions``       ``batch_scoring``, likewise
``champion_model``  ``nuru://champion_model``    ``model_training``, when the alias moves
``harvest_labels``  ``nuru://harvest_labels``    a person or a loader, when new yields land
                                                 (``extra = {"run_date": "YYYY-MM-DD"}``)
==================  ===========================  ==========================================

The nights are Airflow's own partitions (:data:`NIGHT_KEY`, ``YYYY-MM-DD``):
``feature_materialization`` runs on a partitioned cron (:func:`nightly_schedule`: at 00:00
UTC, the night that just ended), ``batch_scoring`` and ``drift_monitoring`` on each night
of their upstream asset (:func:`each_night_of`), so a run of either is keyed by the night it
works on (the UI shows it on each run), a backfill creates one run per night, and clearing a
night's run reprocesses that night downstream too.

Run dates (:func:`resolve_run_date`): the ``run_date`` param when given, else the run's
partition key (the night), else its logical date (the weekly training), else the
``run_date`` of the ``harvest_labels`` event that triggered it, else a clear error.

:func:`sharded_night` wires a sharded nightly step (:class:`nuru_yield.nightly.Night`) as
``prepare → shard × K → publish``; every nightly DAG with shards calls it.
"""

from __future__ import annotations

import datetime as dt
import importlib
import logging
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow.sdk import (
    Asset,
    AssetAlias,
    AssetOrTimeSchedule,
    BaseNotifier,
    CronPartitionTimetable,
    CronTriggerTimetable,
    Param,
    PartitionedAssetTimetable,
    PartitionedAtRuntime,
    task,
)
from airflow.sdk.definitions.retry_policy import (
    ExceptionRetryPolicy,
    RetryAction,
    RetryDecision,
    RetryRule,
)

from nuru_yield.errors import RegistryUnavailableError

if TYPE_CHECKING:
    from nuru_yield.nightly import Night

log = logging.getLogger("nuru_yield.orchestration")

plot_features = Asset(name="plot_features", uri="nuru://plot_features", group="nuru-yield")
predictions = Asset(name="predictions", uri="nuru://predictions", group="nuru-yield")
champion_model = Asset(name="champion_model", uri="nuru://champion_model", group="nuru-yield")
harvest_labels = Asset(name="harvest_labels", uri="nuru://harvest_labels", group="nuru-yield")

# A night as a partition key: its run date, as `--date` and the `run_date` param spell it.
NIGHT_KEY = "%Y-%m-%d"
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


def nightly_schedule() -> CronPartitionTimetable | PartitionedAtRuntime:
    """``feature_materialization``: at 00:00 UTC a run for the night (UTC day) that just
    ended, keyed by it (``run_offset=-1``: the partition one tick before the run). Without
    time schedules, runs come only from triggers, which may name their night as the
    partition key."""
    if not _TIME_SCHEDULES:
        return PartitionedAtRuntime()
    return CronPartitionTimetable("0 0 * * *", timezone="UTC", run_offset=-1, key_format=NIGHT_KEY)


def each_night_of(asset: Asset) -> PartitionedAssetTimetable:
    """A run for each night ``asset`` announces, keyed by that night (``batch_scoring``,
    ``drift_monitoring``)."""
    return PartitionedAssetTimetable(assets=asset)


def weekly_or_on(asset: Asset) -> AssetOrTimeSchedule | Asset:
    """``model_training``: Mondays 03:00 UTC, or whenever ``asset`` is updated."""
    if not _TIME_SCHEDULES:
        return asset
    return AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("0 3 * * 1", timezone="UTC"), assets=asset
    )


def run_date_params() -> dict[str, Param]:
    """The ``run_date`` param every DAG accepts (manual runs)."""
    return {
        "run_date": Param(
            None,
            type=["null", "string"],
            pattern=_DATE.pattern,
            description="Run date YYYY-MM-DD; empty = the run's partition key (its night) or "
            "logical date.",
        )
    }


def resolve_run_date(context: Mapping[str, Any]) -> dt.date:
    """The run date of a task: param, partition key, logical date or triggering asset event
    (see the module docstring). A param and a partition key that disagree are refused.

    Logged, so the task log of a run whose id names no night (Airflow's own
    ``asset_triggered__<time>``, which no task can rename or annotate) says which it is."""
    params = context.get("params") or {}
    given = params.get("run_date")
    key = context.get("partition_key")
    if given:
        run_date = _checked(str(given), "the run_date param")
        if key and _checked(str(key), "the partition key") != run_date:
            raise ValueError(
                f"the run_date param {given} and the run's partition key {key} name different "
                "nights: give one of them"
            )
        return _announced(run_date, "the run_date param")
    if key:
        return _announced(_checked(str(key), "the partition key"), "the partition key")
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
        "no run date: pass the run_date param (YYYY-MM-DD) or a partition key; this run has "
        "no logical date and no triggering asset event with a run_date"
    )


def announce(
    context: Mapping[str, Any],
    asset: Asset,
    run_date: dt.date,
    *,
    through: AssetAlias | None = None,
    **extra: Any,
) -> None:
    """Emit the event of ``asset`` that this task updated for ``run_date``, with ``extra``.

    The event's partition key is the night (:data:`NIGHT_KEY`): the runs it triggers
    downstream are keyed by it. An event emitted ``through`` an alias (so that it is emitted
    only when the task says so) cannot carry a partition key in Airflow 3.3
    (``add_partitions`` refuses aliases): it carries ``run_date`` in ``extra``."""
    events = context["outlet_events"]
    if through is not None:
        events[through].add(asset, extra={"run_date": run_date.isoformat(), **extra})
        return
    events[asset].add_partitions(run_date.strftime(NIGHT_KEY))
    events[asset].extra = extra


class AlertNotifier(BaseNotifier):
    """Delivers an alert on the channel of the settings (webhook, SMTP, or off)."""

    template_fields = ("subject", "body")

    def __init__(self, subject: str, body: str) -> None:
        super().__init__()
        self.subject = subject
        self.body = body

    def notify(self, context: Any) -> None:
        from nuru_yield.config import get_settings
        from nuru_yield.monitoring.alerts import deliver

        deliver(self.subject, self.body, get_settings())


def sharded_night(night: str, *, shard_task_id: str, outlet: Asset) -> Any:
    """Wire a sharded nightly step into the DAG being defined: ``prepare`` →
    ``shard_numbers`` → ``shard_task_id`` mapped over the plan's K shards → ``publish``,
    which announces the published partition on ``outlet`` (:func:`announce`). Returns
    ``publish``'s output (its result's XCom), for tasks that follow it.

    ``night`` names the step's :class:`~nuru_yield.nightly.Night` as ``"module:NAME"``
    (``"nuru_yield.features.materialize:FEATURES"``): the tasks import it when they run,
    so that parsing the DAG file imports no pipeline code. Call it inside ``with DAG(...)``.
    """

    @task
    def prepare(**context: Any) -> dict[str, Any]:
        """Open the night's run: fix its plan (id, shards, what they share)."""
        step = _night(night)
        return step.prepare(resolve_run_date(context), dag_run_id=context["run_id"]).xcom()

    @task
    def shard_numbers(plan: dict[str, Any]) -> list[int]:
        """0 … K-1: what the shard task is mapped over."""
        return list(range(plan["shards"]))

    @task(task_id=shard_task_id)
    def run_shard(shard: int, plan: dict[str, Any]) -> dict[str, Any]:
        """Compute and stage one shard of the night."""
        step = _night(night)
        return step.shard(step.plan.from_xcom(plan), shard).xcom()

    @task(outlets=[outlet])
    def publish(
        plan: dict[str, Any], shards: list[dict[str, Any]], **context: Any
    ) -> dict[str, Any]:
        """Assemble the shards' parts, publish the partition, announce it."""
        step = _night(night)
        results = [step.shard_result.from_xcom(shard) for shard in shards]
        published = step.publish(step.plan.from_xcom(plan), results)
        announce(context, outlet, published.run_date, **published.event_extra())
        return published.xcom()

    planned = prepare()
    staged = run_shard.partial(plan=planned).expand(shard=shard_numbers(planned))
    return publish(planned, staged)


def _night(name: str) -> Night[Any, Any]:
    """The :class:`~nuru_yield.nightly.Night` named ``"module:NAME"``."""
    module, _, attribute = name.partition(":")
    return getattr(importlib.import_module(module), attribute)


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
