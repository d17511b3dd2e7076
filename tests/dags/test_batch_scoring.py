"""The batch_scoring DAG: parse-time hygiene, structure, and a real ``dag.test()`` run that
publishes the partition and updates the ``predictions`` asset."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from tests.fixtures.scoring import PLOTS, RUN_DATE, Registry, write_features

DAG_ID = "batch_scoring"


def test_dag_structure(dag_bag: Any, load_dag: Any) -> None:
    from airflow.sdk import PartitionedAssetTimetable

    from nuru_yield.orchestration import plot_features, predictions

    assert dag_bag.import_errors == {}
    dag = load_dag(DAG_ID)
    assert dag.catchup is False and dag.max_active_runs == 1
    assert "run_date" in dag.params
    # One run for each night plot_features announces, keyed by it.
    assert isinstance(dag.timetable, PartitionedAssetTimetable)
    assert dag.timetable.asset_condition == plot_features
    shard = dag.get_task("score_shard")
    assert shard.upstream_task_ids == {"prepare", "shard_numbers"}
    assert dag.get_task("publish").upstream_task_ids == {"prepare", "score_shard"}
    assert dag.get_task("county_bulletin").upstream_task_ids == {"publish"}
    assert predictions in dag.get_task("publish").outlets
    assert shard.retries == 2 and shard.retry_exponential_backoff


def test_dag_test_publishes_the_partition_and_announces_the_night(
    load_dag: Any, registry: Registry, monkeypatch: Any
) -> None:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    from nuru_yield.config import reset_settings
    from nuru_yield.db.engine import get_engine

    monkeypatch.setenv("SCORING_SHARDS", "3")
    reset_settings()
    write_features()

    run = load_dag(DAG_ID).test(run_conf={"run_date": RUN_DATE.isoformat()}, logical_date=None)

    states = {(ti.task_id, ti.map_index): str(ti.state) for ti in run.get_task_instances()}
    assert str(run.state) == "success", states
    assert sorted(index for task, index in states if task == "score_shard") == [0, 1, 2]
    with get_engine().connect() as connection:
        published = connection.execute(
            sa.text("SELECT model_version, COUNT(*) FROM predictions GROUP BY model_version")
        ).all()
        status = connection.execute(sa.text("SELECT status, shards FROM scoring_runs")).all()
    assert [tuple(row) for row in published] == [(registry.champion, PLOTS)]
    assert [tuple(row) for row in status] == [("success", 3)]
    assert states[("county_bulletin", -1)] == "success"  # publish wrote them: nothing to redo
    with get_engine().connect() as connection:
        counties = connection.execute(sa.text("SELECT SUM(n_plots) FROM county_forecasts"))
        assert counties.scalar() == PLOTS
    with create_session() as session:
        events = (
            session.query(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .filter(AssetModel.name == "predictions", AssetEvent.source_run_id == run.run_id)
            .all()
        )
    assert [(event.partition_key, event.extra["rows"]) for event in events] == [
        (RUN_DATE.isoformat(), PLOTS)
    ]


def test_an_empty_night_fails_the_dag_run_without_retries(
    load_dag: Any, registry: Registry, monkeypatch: Any
) -> None:
    """Nothing in progress: the run is red in the UI at once (no retry can create plots),
    and ``scoring_runs`` names the outcome."""
    from nuru_yield.db.engine import get_engine
    from nuru_yield.features.columns import OUTPUT_SCHEMA
    from nuru_yield.lake import Lake
    from nuru_yield.names import features_path

    Lake.from_settings().write_parquet(features_path(RUN_DATE), OUTPUT_SCHEMA.empty_table())

    run = load_dag(DAG_ID).test(run_conf={"run_date": RUN_DATE.isoformat()}, logical_date=None)

    states = {ti.task_id: (str(ti.state), ti.try_number) for ti in run.get_task_instances()}
    assert str(run.state) == "failed", states
    assert states["prepare"] == ("failed", 1)
    with get_engine().connect() as connection:
        outcome = connection.execute(sa.text("SELECT status, message FROM scoring_runs")).one()
    assert outcome.status == "no_plots_in_progress"
    assert outcome.message.startswith(f"no plot-season in progress on {RUN_DATE}")
