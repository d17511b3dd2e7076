"""The raw_ingestion DAG: structure, and a real ``dag.test()`` run that ingests configured
products and announces the night on ``raw_inputs``."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from nuru_yield.config import reset_settings
from nuru_yield.lake import Lake
from nuru_yield.sample_data import formats
from tests.fixtures.airflow import parse_in_fresh_process

DAG_ID = "raw_ingestion"
NIGHT = dt.date(2025, 4, 10)  # after the DAG's start date


def test_parsing_imports_nothing_heavy() -> None:
    added = parse_in_fresh_process(DAG_ID)["added"]
    assert not [m for m in added if m.split(".")[0] in ("pandas", "numpy", "xarray", "rasterio")]


def test_dag_structure(load_dag: Any) -> None:
    from nuru_yield.orchestration import raw_inputs

    dag = load_dag(DAG_ID)
    assert dag.timetable.expression == "0 0 * * *" and "run_date" in dag.params
    assert dag.get_task("plan_chirps").upstream_task_ids == {"plots"}
    assert dag.get_task("plan_agera5").upstream_task_ids == {"publish_chirps"}
    assert dag.get_task("yields").upstream_task_ids == {"publish_agera5"}
    assert dag.get_task("announce_night").outlets == [raw_inputs]
    features = load_dag("feature_materialization")
    assert [a.name for a in features.timetable.asset_condition.objects] == ["raw_inputs"]


def test_a_night_ingests_the_configured_products_and_announces_them(
    load_dag: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    rng = np.random.default_rng(2)
    pd.DataFrame(
        {"plot_id": range(1, 21), "lat": rng.uniform(-1.5, -1.1, 20),
         "lon": rng.uniform(37.1, 37.5, 20), "altitude": 1500.0, "county": "Machakos",
         "season": "LR", "planting_date": "2025-03-25"}
    ).to_csv(tmp_path / "plots.csv", index=False)  # fmt: skip
    monkeypatch.setenv("PLOTS_SOURCE", str(tmp_path / "plots.csv"))
    monkeypatch.setenv("CHIRPS_SOURCE", str(tmp_path / "chirps"))
    reset_settings()
    lake = Lake.from_settings()
    from nuru_yield.sources.ingest import ingest

    ingest("plots")
    ids = lake.read_parquet("raw/weather_cells.parquet").column("cell_id").to_numpy()
    (tmp_path / "chirps").mkdir()
    days = [dt.date(2025, 3, 1) + dt.timedelta(days=d) for d in range(61)]  # to 30 April
    formats.write_chirps_year(tmp_path / "chirps", 2025, days, ids, np.ones((61, len(ids))))

    logical = dt.datetime.combine(NIGHT, dt.time(), tzinfo=dt.UTC)
    run = load_dag(DAG_ID).test(logical_date=logical)

    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert str(run.state) == "success", states
    assert states["announce_night"] == "success" and states["month_agera5"] == "skipped"
    weather = lake.read_parquet("raw/weather/year=2025/part-0.parquet").to_pandas()
    assert weather["date"].max() == NIGHT  # days after the night wait for the next one
    assert weather["date"].min() == dt.date(2025, 3, 1)
    with create_session() as session:
        events = (
            session.query(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .filter(AssetModel.name == "raw_inputs", AssetEvent.source_run_id == run.run_id)
            .all()
        )
    assert [event.extra["run_date"] for event in events] == [NIGHT.isoformat()]
