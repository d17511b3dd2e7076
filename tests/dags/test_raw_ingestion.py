"""The raw_ingestion DAG: parse-time hygiene, structure, and real ``dag.test()`` runs that
ingest the configured products in their shards, announce the night on ``raw_inputs`` (keyed
by it: feature_materialization's run of that night is queued) and, when the labels changed,
``harvest_labels`` (unkeyed: model_training is queued)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from nuru_yield.config import reset_settings
from nuru_yield.lake import Lake
from nuru_yield.sample_data import formats, ndvi_rasters
from nuru_yield.sources.weather import weather_cells
from tests.fixtures.airflow import parse_in_fresh_process

DAG_ID = "raw_ingestion"
NIGHT = dt.date(2025, 4, 10)


def test_parsing_imports_nothing_heavy() -> None:
    parsed = parse_in_fresh_process(DAG_ID)
    heavy = ("pandas", "numpy", "xarray", "rasterio", "geopandas", "nuru_yield.sources")
    assert not [m for m in parsed["added"] if m.startswith(heavy)]
    assert parsed["new_engines"] == 0


def test_dag_structure(load_dag: Any) -> None:
    from airflow.sdk import PartitionedAssetTimetable
    from airflow.serialization.encoders import coerce_to_core_timetable

    from nuru_yield.orchestration import raw_inputs

    dag = load_dag(DAG_ID)
    assert dag.catchup is False and dag.max_active_runs == 1 and "run_date" in dag.params
    assert dag.timetable.expression == "0 0 * * *"
    # Not partitioned: its harvest_labels events must carry no key (test_orchestration.py).
    assert not coerce_to_core_timetable(dag.timetable).partitioned
    task = dag.get_task
    # Three sharded nights: plots and labels by plot bucket, NDVI rasters by ranges of plot
    # buckets, then weather by month.
    assert task("plots.ingest_bucket").upstream_task_ids == {"plots.prepare", "plots.shard_numbers"}
    assert task("ndvi.prepare").upstream_task_ids == {"plots.publish"}
    assert task("ndvi.ingest_buckets").upstream_task_ids == {"ndvi.prepare", "ndvi.shard_numbers"}
    assert task("ndvi.publish").outlets == []
    assert task("weather.prepare").upstream_task_ids == {"ndvi.publish"}
    assert task("weather.ingest_months").upstream_task_ids == {
        "weather.prepare",
        "weather.shard_numbers",
    }
    assert task("weather.publish").outlets == [raw_inputs]
    assert task("plots.publish").outlets == []
    labels = task("announce_labels")
    assert labels.upstream_task_ids == {"weather.publish", "plots.publish"}
    assert [outlet.name for outlet in labels.outlets] == ["harvest_label_updates"]
    for step in (
        "plots.prepare",
        "plots.ingest_bucket",
        "ndvi.ingest_buckets",
        "weather.ingest_months",
        "weather.publish",
    ):
        assert task(step).retries == 2 and task(step).on_failure_callback
    features = load_dag("feature_materialization")
    assert isinstance(features.timetable, PartitionedAssetTimetable)
    assert features.timetable.asset_condition == raw_inputs


def test_a_backfill_is_one_run_per_night_each_named_by_its_logical_date(load_dag: Any) -> None:
    """What ``airflow backfill create --dag-id raw_ingestion --from-date 2025-06-10
    --to-date 2025-06-14`` creates (README, "Operations"): a run for each night, whose
    logical date is the night its raw_inputs event then names."""
    from airflow.serialization.serialized_objects import DagSerialization

    dag = DagSerialization.from_dict(DagSerialization.to_dict(load_dag(DAG_ID)))
    infos = dag.iter_dagrun_infos_between(
        dt.datetime(2025, 6, 10, tzinfo=dt.UTC), dt.datetime(2025, 6, 14, tzinfo=dt.UTC)
    )
    assert [info.data_interval.start.date() for info in infos] == [
        dt.date(2025, 6, day) for day in range(10, 15)
    ]


@pytest.fixture
def sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Twenty plots near Machakos (a CSV), March and April 2025 of CHIRPS at their cells,
    a crop-cut CSV of 2024 and two MODIS composites over them, configured as the night's
    sources; INGEST_SHARDS=3."""
    rng = np.random.default_rng(2)
    plots = tmp_path / "plots.csv"
    pd.DataFrame(
        {"plot_id": range(1, 21), "lat": rng.uniform(-1.5, -1.1, 20),
         "lon": rng.uniform(37.1, 37.5, 20), "altitude": 1500.0, "county": "Machakos",
         "season": "LR", "planting_date": "2025-03-25"}
    ).to_csv(plots, index=False)  # fmt: skip
    cuts = tmp_path / "crop_cuts.csv"
    pd.DataFrame(
        {"plot_id": range(1, 21), "season": "LR", "year": 2024, "fresh_weight_kg": 9.0,
         "cut_area_m2": 25.0, "moisture_pct": 20.0}
    ).to_csv(cuts, index=False)  # fmt: skip
    chirps = tmp_path / "chirps"
    chirps.mkdir()
    ndvi = tmp_path / "ndvi"
    transform, shape = ndvi_rasters.modis_grid((37.1, -1.5, 37.5, -1.1))
    for first_day, value in ((dt.date(2025, 3, 22), 4000), (dt.date(2025, 4, 7), 5000)):
        ndvi_rasters.write_modis_composite(  # 22 March–6 April; 7–22 April: after the night
            ndvi / ndvi_rasters.modis_name(first_day, 21, 9), np.full(shape, value, np.int16),
            np.zeros(shape, np.int16), transform,
        )  # fmt: skip
    for name, path in (("PLOTS", plots), ("CHIRPS", chirps), ("YIELDS", cuts), ("NDVI", ndvi)):
        monkeypatch.setenv(f"{name}_SOURCE", str(path))
    monkeypatch.setenv("INGEST_SHARDS", "3")
    reset_settings()
    return {"plots": plots, "chirps": chirps, "cuts": cuts}


def _write_rain(lake: Lake, folder: Path) -> None:
    """March and April 2025 at the cells of the plots the night ingests."""
    from nuru_yield.sources.ingest import ingest

    ingest("plots", None, NIGHT, lake=lake)
    ids = weather_cells(lake)["cell_id"].to_numpy()
    days = [dt.date(2025, 3, 1) + dt.timedelta(days=d) for d in range(61)]
    formats.write_chirps_year(folder, 2025, days, ids, np.ones((61, len(ids))))


def _events(run_id: str, asset: str) -> list[Any]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        events = (
            session.query(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .filter(AssetModel.name == asset, AssetEvent.source_run_id == run_id)
            .all()
        )
        return [(event.partition_key, dict(event.extra)) for event in events]


def test_a_night_ingests_in_shards_and_announces_the_night_and_the_new_labels(
    load_dag: Any, unpause: Any, sources: dict[str, Path]
) -> None:
    from airflow.models.asset import AssetDagRunQueue, AssetPartitionDagRun
    from airflow.utils.session import create_session

    unpause("feature_materialization", "model_training")  # Airflow queues unpaused DAGs only
    lake = Lake.from_settings()
    _write_rain(lake, sources["chirps"])

    run = load_dag(DAG_ID).test(run_conf={"run_date": NIGHT.isoformat()}, logical_date=None)

    states = {(ti.task_id, ti.map_index): str(ti.state) for ti in run.get_task_instances()}
    assert str(run.state) == "success", states
    assert sorted(i for task, i in states if task == "plots.ingest_bucket") == [0, 1, 2]
    assert sorted(i for task, i in states if task == "ndvi.ingest_buckets") == [0, 1, 2]
    assert sorted(i for task, i in states if task == "weather.ingest_months") == [0, 1]
    ndvi = lake.read_parquet("raw/ndvi/year=2025").to_pandas()
    assert sorted(ndvi["plot_id"]) == list(range(1, 21))  # each plot's point, its pixel
    assert set(ndvi["date"]) == {dt.date(2025, 4, 6)} and set(ndvi["ndvi"]) == {0.4}
    weather = lake.read_parquet(lake.list("raw/weather/year=2025", ".parquet")).to_pandas()
    assert weather["date"].min() == dt.date(2025, 3, 1)
    assert weather["date"].max() == NIGHT  # days after the night wait for the next one
    assert lake.read_parquet("raw/yields.parquet").num_rows == 20
    assert lake.list("sources/tables/_parts") == lake.list("sources/weather/_parts") == []
    assert lake.list("sources/ndvi/_parts") == []
    # raw_inputs keyed by the night (feature_materialization's run of it is queued);
    # harvest_labels without a key (the weekly, unpartitioned training is queued).
    assert [key for key, _ in _events(run.run_id, "raw_inputs")] == [NIGHT.isoformat()]
    labels = _events(run.run_id, "harvest_labels")
    assert [(key, extra["run_date"], extra["labels"]["rows"]) for key, extra in labels] == [
        (None, NIGHT.isoformat(), 20)
    ]
    with create_session() as session:
        features = session.query(AssetPartitionDagRun.partition_key).filter(
            AssetPartitionDagRun.target_dag_id == "feature_materialization"
        )
        training = session.query(AssetDagRunQueue.target_dag_id)
        assert NIGHT.isoformat() in {key for (key,) in features}
        assert "model_training" in {dag_id for (dag_id,) in training}

    again = load_dag(DAG_ID).test(run_conf={"run_date": NIGHT.isoformat()}, logical_date=None)
    assert str(again.state) == "success"
    assert _events(again.run_id, "harvest_labels") == []  # the labels did not change
    assert len(_events(again.run_id, "raw_inputs")) == 1  # the night still goes on


def test_a_file_off_its_product_fails_the_shard_without_retry_and_keeps_the_raw_data(
    load_dag: Any, sources: dict[str, Path]
) -> None:
    lake = Lake.from_settings()
    _write_rain(lake, sources["chirps"])
    assert str(load_dag(DAG_ID).test(run_conf={"run_date": NIGHT.isoformat()},
                                     logical_date=None).state) == "success"  # fmt: skip
    before = {path: lake.read_bytes(path) for path in lake.list("raw/weather")}
    (sources["chirps"] / "chirps-v2.0.2025.days_p05.nc").write_bytes(b"not netcdf")

    run = load_dag(DAG_ID).test(run_conf={"run_date": NIGHT.isoformat()}, logical_date=None)

    states = {ti.task_id: (str(ti.state), ti.try_number) for ti in run.get_task_instances()}
    assert str(run.state) == "failed"
    assert states["weather.prepare"] == ("failed", 1)  # bad input is not retried
    assert states["announce_labels"][0] == "upstream_failed"
    assert {path: lake.read_bytes(path) for path in lake.list("raw/weather")} == before
    assert _events(run.run_id, "raw_inputs") == []


def test_labels_with_too_many_bad_rows_stop_no_night_but_fail_the_run(
    load_dag: Any, sources: dict[str, Path]
) -> None:
    """A bad crop-cut file must not cost the night its forecasts: plots, weather and
    raw_inputs go on; ``announce_labels`` fails naming the file; the labels stay as they
    were."""
    lake = Lake.from_settings()
    _write_rain(lake, sources["chirps"])
    frame = pd.read_csv(sources["cuts"])
    frame.loc[:5, "moisture_pct"] = 0.0  # 6 of 20 rows: 30% bad
    frame.to_csv(sources["cuts"], index=False)

    run = load_dag(DAG_ID).test(run_conf={"run_date": NIGHT.isoformat()}, logical_date=None)

    states = {ti.task_id: (str(ti.state), ti.try_number) for ti in run.get_task_instances()}
    assert str(run.state) == "failed"
    assert states["weather.publish"][0] == states["plots.publish"][0] == "success"
    assert states["announce_labels"] == ("failed", 1)  # bad input: not retried
    assert [key for key, _ in _events(run.run_id, "raw_inputs")] == [NIGHT.isoformat()]
    assert _events(run.run_id, "harvest_labels") == []
    assert not lake.exists("raw/yields.parquet")
    reasons = lake.read_parquet("raw/rejected/yields.parquet")["reason"].to_pylist()
    assert reasons == ["grain moisture 0.0% outside 5–50%"] * 6
