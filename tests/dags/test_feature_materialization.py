"""The feature_materialization DAG: parse-time hygiene, structure, and real ``dag.test()`` runs."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from nuru_yield import names
from nuru_yield.config import reset_settings
from nuru_yield.dev.bench.features import RUN_DATE, Grid, build_raw
from nuru_yield.lake import Lake

DAG_ID = "feature_materialization"
SMALL_GRID = Grid(n_lat=6, n_lon=6)


def test_dag_bag_has_no_import_errors(dag_bag: Any) -> None:
    assert dag_bag.import_errors == {}
    assert DAG_ID in dag_bag.dag_ids


def test_dag_structure(load_dag: Any) -> None:
    from airflow.sdk import PartitionedAssetTimetable

    from nuru_yield.orchestration import plot_features, raw_inputs

    dag = load_dag(DAG_ID)
    assert dag.catchup is False
    assert "nightly" in (dag.doc_md or "").lower() and dag.tags
    # One run for each night raw_ingestion announces (raw_inputs), keyed by it.
    assert isinstance(dag.timetable, PartitionedAssetTimetable)
    assert dag.timetable.asset_condition == raw_inputs
    assert "run_date" in dag.params
    prepare, shard, publish = (dag.get_task(t) for t in ("prepare", "materialize_shard", "publish"))
    assert shard.upstream_task_ids == {"prepare", "shard_numbers"}
    assert publish.upstream_task_ids == {"prepare", "materialize_shard"}
    for task in (prepare, shard, publish):
        assert task.retries == 2 and task.owner == "nuru-yield"
        assert task.execution_timeout is not None and task.on_failure_callback
    assert plot_features in publish.outlets
    assert shard.outlets == [] and prepare.outlets == []


def _task_states(run: Any) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def test_dag_test_writes_the_partition_and_announces_the_night_downstream(
    load_dag: Any, unpause: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.models.asset import AssetEvent, AssetModel, AssetPartitionDagRun
    from airflow.utils.session import create_session

    unpause("batch_scoring")  # Airflow queues runs of unpaused DAGs only
    monkeypatch.setenv("FEATURE_SHARDS", "3")
    reset_settings()
    lake = Lake.from_settings()
    build_raw(lake, plots=300, grid=SMALL_GRID)
    logical = dt.datetime.combine(RUN_DATE, dt.time(), tzinfo=dt.UTC)

    run = load_dag(DAG_ID).test(logical_date=logical)

    assert str(run.state) == "success", _task_states(run)
    shards = [ti.map_index for ti in run.get_task_instances() if ti.task_id == "materialize_shard"]
    assert sorted(shards) == [0, 1, 2]
    table = pq.read_table(lake.root / names.features_path(RUN_DATE))
    rejected = pq.read_table(lake.root / names.rejected_path(RUN_DATE))
    assert table.num_rows + rejected.num_rows == 300 and table.num_rows >= 290
    assert pc.all(pc.equal(table["as_of_date"], RUN_DATE)).as_py()
    assert lake.read_json(names.validation_path(RUN_DATE))["status"] == "passed"
    with create_session() as session:
        events = (
            session.query(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .filter(AssetModel.name == "plot_features", AssetEvent.source_run_id == run.run_id)
            .all()
        )
        # The event's partition key is the night; Airflow queues batch_scoring's run of it.
        queued = (
            session.query(AssetPartitionDagRun.partition_key)
            .filter(AssetPartitionDagRun.target_dag_id == "batch_scoring")
            .all()
        )
    assert [event.partition_key for event in events] == [RUN_DATE.isoformat()]
    assert events[0].extra["rows"] == table.num_rows and "run_date" not in events[0].extra
    assert RUN_DATE.isoformat() in {key for (key,) in queued}
    report = lake.read_json(names.validation_path(RUN_DATE))
    assert [shard["shard"] for shard in report["shards"]] == [0, 1, 2]
    assert sum(shard["rows"] for shard in report["shards"]) == table.num_rows
    assert lake.list("features/_parts") == []


def test_failing_validation_fails_the_task_without_retries(load_dag: Any) -> None:
    lake = Lake.from_settings()
    build_raw(lake, plots=300, grid=SMALL_GRID)
    plots = lake.read_parquet(names.RAW_PLOTS)
    county = plots["county"].to_pylist()
    county[::4] = [None] * len(county[::4])  # 25% of plot-seasons without a county
    lake.write_parquet(names.RAW_PLOTS, plots.set_column(4, "county", [county]))

    run = load_dag(DAG_ID).test(run_conf={"run_date": RUN_DATE.isoformat()}, logical_date=None)

    states = _task_states(run)
    assert str(run.state) == "failed"
    assert states == {
        "prepare": "success",
        "shard_numbers": "success",
        "materialize_shard": "success",
        "publish": "failed",
    }
    report = lake.read_json(names.validation_path(RUN_DATE))
    assert report["status"] == "failed" and "plots.missing_county" in report["failed_checks"]
    assert not lake.exists(names.features_path(RUN_DATE))


def test_a_failing_shard_fails_the_run_and_leaves_the_published_partition(
    load_dag: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyarrow as pa

    from nuru_yield.contract import NDVI_PLOT_BUCKETS
    from nuru_yield.sharding import shard_buckets

    monkeypatch.setenv("FEATURE_SHARDS", "2")
    reset_settings()
    lake = Lake.from_settings()
    build_raw(lake, plots=300, grid=SMALL_GRID)
    conf = {"run_date": RUN_DATE.isoformat()}
    assert str(load_dag(DAG_ID).test(run_conf=conf, logical_date=None).state) == "success"
    published = {p: lake.read_bytes(p) for p in lake.list(f"features/{RUN_DATE}")}
    # A raw NDVI file that only shard 1 reads, and cannot: no contract columns.
    bucket = shard_buckets(1, 2, NDVI_PLOT_BUCKETS)[0]
    lake.write_parquet(names.ndvi_bucket_path(RUN_DATE.year, bucket, "bad"), pa.table({"x": [1]}))

    run = load_dag(DAG_ID).test(run_conf=conf, logical_date=None)

    assert str(run.state) == "failed"
    shards = {ti.map_index: str(ti.state) for ti in run.get_task_instances() if ti.map_index >= 0}
    assert shards == {0: "success", 1: "failed"}
    assert _task_states(run)["publish"] == "upstream_failed"
    assert {p: lake.read_bytes(p) for p in lake.list(f"features/{RUN_DATE}")} == published
