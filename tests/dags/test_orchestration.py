"""The Airflow glue shared by every DAG: run dates, nights as partitions, default arguments,
assets."""

from __future__ import annotations

import datetime as dt
import logging
from types import SimpleNamespace

import pytest
from airflow.sdk import AssetAlias
from airflow.sdk.execution_time.context import OutletEventAccessors

from nuru_yield.errors import DataValidationError, LakeError, MissingInputError
from nuru_yield.orchestration import (
    announce,
    champion_model,
    default_args,
    log_failure,
    nightly_schedule,
    plot_features,
    predictions,
    resolve_run_date,
)

LOGICAL = dt.datetime(2025, 6, 30, 0, 0, tzinfo=dt.UTC)


def event(run_date: str | None) -> SimpleNamespace:
    return SimpleNamespace(extra={"run_date": run_date} if run_date else {})


def test_the_run_date_param_wins_over_the_logical_date() -> None:
    context = {"params": {"run_date": "2025-05-01"}, "logical_date": LOGICAL}
    assert resolve_run_date(context) == dt.date(2025, 5, 1)


def test_without_a_param_the_logical_date_is_the_run_date() -> None:
    no_param = {"params": {"run_date": None}, "logical_date": LOGICAL}
    assert resolve_run_date(no_param) == dt.date(2025, 6, 30)


def test_a_partitioned_run_takes_its_partition_key_as_the_night(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A scheduled or asset-triggered run of a nightly DAG has no logical date: its night is
    its partition key."""
    context = {"params": {"run_date": None}, "logical_date": None, "partition_key": "2025-06-29"}
    with caplog.at_level(logging.INFO, logger="nuru_yield.orchestration"):
        assert resolve_run_date(context) == dt.date(2025, 6, 29)
    assert "night 2025-06-29 (run date from the partition key)" in caplog.text
    agreeing = {**context, "params": {"run_date": "2025-06-29"}}
    assert resolve_run_date(agreeing) == dt.date(2025, 6, 29)


def test_asset_triggered_runs_take_the_newest_run_date_of_their_events(
    caplog: pytest.LogCaptureFixture,
) -> None:
    events = {plot_features: [event("2025-06-29"), event("2025-06-30")], predictions: [event(None)]}
    context = {"params": {}, "logical_date": None, "triggering_asset_events": events}
    with caplog.at_level(logging.INFO, logger="nuru_yield.orchestration"):
        assert resolve_run_date(context) == dt.date(2025, 6, 30)
    # Airflow names such a run `asset_triggered__<time>`: the task log names the night.
    assert "night 2025-06-30 (run date from the triggering asset event)" in caplog.text


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"params": {"run_date": "30/06/2025"}}, "the run_date param '30/06/2025' is not a date"),
        ({"params": {"run_date": "2025-02-30"}}, "is not a date YYYY-MM-DD"),
        ({"params": {}, "logical_date": None, "triggering_asset_events": {}}, "no run date"),
        ({"params": {}, "partition_key": "2025-06-29T00:00:00"}, "the partition key '2025-06-29T"),
        (
            {"params": {"run_date": "2025-06-28"}, "partition_key": "2025-06-29"},
            "the run_date param 2025-06-28 and the run's partition key 2025-06-29 name different",
        ),
    ],
)
def test_a_missing_or_malformed_run_date_is_a_clear_error(
    context: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        resolve_run_date(context)


def test_announce_keys_the_asset_event_by_the_night() -> None:
    events = OutletEventAccessors()
    announce({"outlet_events": events}, plot_features, dt.date(2025, 6, 30), rows=3)
    assert events[plot_features].partition_keys == {"2025-06-30"}
    assert events[plot_features].extra == {"rows": 3}  # the night is no hand-made extra


def test_an_event_through_an_alias_cannot_carry_a_partition_key_so_it_carries_the_date() -> None:
    """Airflow 3.3 refuses partition keys on alias events (``promote`` emits
    ``champion_model`` through one, only when the alias moved): ``announce`` puts the run
    date in ``extra`` there, as before partitions."""
    moves = AssetAlias(name="champion_model_moves")
    events = OutletEventAccessors()
    with pytest.raises(TypeError, match="not supported on asset alias"):
        events[moves].add_partitions("2025-06-30")
    announce(
        {"outlet_events": events}, champion_model, dt.date(2025, 6, 30), through=moves, version="3"
    )
    (emitted,) = events[moves].asset_alias_events
    assert emitted.dest_asset_key.name == "champion_model"
    assert emitted.extra == {"run_date": "2025-06-30", "version": "3"}


def test_the_nightly_schedule_runs_after_each_night_named_by_its_logical_date() -> None:
    """What the scheduler asks the timetable of ``raw_ingestion``, the night's first DAG: a
    run at 00:00 UTC for the UTC day that ended, that day its logical date (the run date).
    Not partitioned: a partitioned run keys every event it emits, and its ``harvest_labels``
    event would then start no ``model_training``."""
    from airflow.serialization.encoders import coerce_to_core_timetable
    from airflow.timetables.base import TimeRestriction

    timetable = coerce_to_core_timetable(nightly_schedule())
    night = dt.datetime(2025, 6, 14, tzinfo=dt.UTC)
    scheduled = timetable.next_dagrun_info_v2(
        last_dagrun_info=None, restriction=TimeRestriction(night, None, catchup=True)
    )
    assert scheduled.data_interval.start == night
    assert scheduled.run_after == night + dt.timedelta(days=1)
    assert scheduled.partition_key is None and not timetable.partitioned


def test_default_args_retry_with_backoff_and_log_failures(caplog: pytest.LogCaptureFixture) -> None:
    assert default_args["owner"] == "nuru-yield" and default_args["retries"] >= 1
    assert default_args["retry_exponential_backoff"] > 1
    assert default_args["execution_timeout"] > dt.timedelta(0)
    policy = default_args["retry_policy"]
    assert policy.evaluate(DataValidationError("bad"), 1, 3).action.value == "fail"
    assert policy.evaluate(MissingInputError("no features"), 1, 3).action.value == "fail"
    assert policy.evaluate(LakeError("flaky"), 1, 3).action.value == "default"
    ti = SimpleNamespace(dag_id="d", task_id="t", run_id="r", try_number=2)
    with caplog.at_level(logging.ERROR, logger="nuru_yield.orchestration"):
        log_failure({"ti": ti, "exception": RuntimeError("boom")})
    assert "dag=d task=t run_id=r try=2: boom" in caplog.text


# Parsing a DAG file must stay cheap and side-effect free (the DAG processor re-parses every
# file every few seconds): no data or ML library, no pipeline module, no connection.
HEAVY_AT_PARSE = (
    "pandas", "numpy", "pyarrow", "scipy", "sklearn", "mlflow", "matplotlib", "sqlalchemy",
    "great_expectations", "duckdb", "xgboost", "lightgbm", "psycopg", "psycopg2", "boto3",
)  # fmt: skip
PIPELINE_PACKAGES = tuple(
    f"nuru_yield.{name}" for name in ("features", "db", "training", "scoring", "monitoring")
)


@pytest.mark.parametrize(
    "dag_id", ["feature_materialization", "batch_scoring", "drift_monitoring", "model_training"]
)
def test_dag_file_parses_without_heavy_imports_or_connections(dag_id: str) -> None:
    from tests.fixtures.airflow import parse_in_fresh_process

    report = parse_in_fresh_process(dag_id)
    heavy = [
        module
        for module in report["added"]
        if module.split(".")[0] in HEAVY_AT_PARSE or module.startswith(PIPELINE_PACKAGES)
    ]
    assert heavy == []
    assert report["new_engines"] == 0
    assert "nuru_yield.orchestration" in report["added"]  # the probe really loaded the DAG
