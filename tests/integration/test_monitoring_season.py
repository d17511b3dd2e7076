"""Drift on seasons of the sample-data generator: an unshifted season stays quiet, a
simulated drought (rain × 0.4, +2 °C) flags precipitation, GDD and NDVI features.

The helpers here (a generated lake, the drought, a stand-in model, a prediction log) are
shared with the end-to-end and DAG tests of the monitoring.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from nuru_yield.features.columns import FEATURE_COLUMNS, NDVI_SOIL_BASELINE
from nuru_yield.features.compute import season_to_date
from nuru_yield.features.raw import RawInputs, load_raw
from nuru_yield.lake import Lake
from nuru_yield.monitoring.drift import PREDICTION, detect_drift
from nuru_yield.monitoring.reference import ReferenceSpec, matched_reference
from nuru_yield.monitoring.statistics import DriftRule
from nuru_yield.names import RAW_NDVI, RAW_WEATHER, prediction_log_path
from nuru_yield.sample_data.generator import generate_to_lake

RUN_DATE = dt.date(2024, 6, 30)  # Long Rains 2024 about 30–120 days after planting
DROUGHT_FROM = dt.date(2024, 3, 1)
RAIN_FACTOR, WARMING_C = 0.4, 2.0
# The generator draws NDVI from its AquaCrop canopy before any weather is shifted, so NDVI
# cannot respond by itself: the drought scales greenness above bare soil by 0.5 — milder
# than the generator's own AquaCrop table, whose canopy peak at 40% of 520–700 mm of season
# rain is 0.2–0.5 of the unstressed one.
GREENNESS_FACTOR = 0.5

RULE = DriftRule()  # the defaults of the settings: PSI > 0.25, at least 100 rows
VARIABLES = [*FEATURE_COLUMNS, PREDICTION]  # 19 model features and the prediction
PRECIPITATION = {"precip_total", "precip_last_30d"}
GDD = {"gdd_sum"}
NDVI = {"mean_ndvi", "max_ndvi", "ndvi_auc"}


def generate(
    root: Path, seed: int, plots: int = 800, start_year: int = 2019, label_2024: bool = False
) -> Lake:
    """A local lake of the sample-data generator up to the 2024 seasons (labelled only
    when ``label_2024``)."""
    lake = Lake(root.as_uri())
    generate_to_lake(
        lake,
        plots=plots,
        start_year=start_year,
        end_year=2024,
        seed=seed,
        label_last_year=label_2024,
    )
    return lake


def apply_drought(lake: Lake, since: dt.date = DROUGHT_FROM) -> None:
    """Rewrite the raw weather and NDVI from ``since`` on: rain × 0.4, +2 °C, and greenness
    above bare soil × 0.5 (see :data:`GREENNESS_FACTOR`)."""
    for path in lake.list(RAW_WEATHER, ".parquet") + lake.list(RAW_NDVI, ".parquet"):
        table = pq.read_table(lake.root / path)
        after = pc.greater_equal(table["date"], pa.scalar(since, pa.date32()))
        if "precip_mm" in table.column_names:
            changes = {
                "precip_mm": pc.multiply(table["precip_mm"], RAIN_FACTOR),
                "tmin_c": pc.add(table["tmin_c"], WARMING_C),
                "tmax_c": pc.add(table["tmax_c"], WARMING_C),
            }
        else:
            green = pc.subtract(table["ndvi"], NDVI_SOIL_BASELINE)
            after = pc.and_(after, pc.greater(green, 0.0))
            shrunk = pc.add(pc.multiply(green, GREENNESS_FACTOR), NDVI_SOIL_BASELINE)
            changes = {"ndvi": shrunk}
        for name, changed in changes.items():
            index = table.schema.get_field_index(name)
            table = table.set_column(index, name, pc.if_else(after, changed, table[name]))
        lake.write_parquet(path, table)


def stand_in_model(frame: pd.DataFrame) -> np.ndarray:
    """A fixed response of yield to season rain and greenness, standing in for the champion
    (the same function predicts the current and the reference rows)."""
    rain = frame["precip_total"].to_numpy(np.float64, na_value=0.0)
    green = frame["max_ndvi"].to_numpy(np.float64, na_value=NDVI_SOIL_BASELINE)
    return np.maximum(300.0 + 2.5 * rain + 4000.0 * (green - NDVI_SOIL_BASELINE), 0.0)


def write_prediction_log(lake: Lake, features: pd.DataFrame, run_date: dt.date) -> pd.DataFrame:
    """D's prediction log as batch scoring writes it (``LOG_SCHEMA``), by the stand-in model."""
    from nuru_yield.scoring.batch import LOG_SCHEMA

    predicted = stand_in_model(features)
    log = features.assign(
        run_date=run_date,
        model_name="champion",
        model_version="1",
        predicted_yield_kg_per_ha=predicted,
        yield_lower=predicted * 0.6,
        yield_upper=predicted * 1.4,
        interval_level=0.8,
        top_drivers="[]",
        run_id=f"test-{run_date.isoformat()}",
        basis="model",
        normal_kg_per_ha=2000.0,
        plot_normal_kg_per_ha=2050.0,
    )
    columns = [name for name in LOG_SCHEMA.names if name != "scored_at"]
    table = pa.Table.from_pandas(log[columns], preserve_index=False).append_column(
        "scored_at", pa.array([dt.datetime(2024, 7, 1, tzinfo=dt.UTC)] * len(log))
    )
    lake.write_parquet(
        prediction_log_path(run_date), table.select(LOG_SCHEMA.names).cast(LOG_SCHEMA)
    )
    return log


def _drifted(raw: RawInputs, reference: pd.DataFrame) -> set[str]:
    current = season_to_date(raw, RUN_DATE, season_max_days=180).features
    current[PREDICTION] = stand_in_model(current)
    drifts = detect_drift(reference, current, VARIABLES, RULE, by_county=False)
    assert all(d.comparison.status != "insufficient data" for d in drifts)
    return {d.variable for d in drifts if d.drifted}


@pytest.mark.slow
@pytest.mark.parametrize("seed", [11, 12])
def test_drought_flags_rain_gdd_and_ndvi_while_an_unshifted_season_stays_quiet(
    tmp_path: Path, seed: int
) -> None:
    lake = generate(tmp_path / "lake", seed)
    raw = load_raw(lake)
    current = season_to_date(raw, RUN_DATE, season_max_days=180).features
    reference, described = matched_reference(raw, current, RUN_DATE, ReferenceSpec(seed=seed))
    assert described["strata"][0]["reference_years"] == [2019, 2020, 2021, 2022, 2023]
    reference[PREDICTION] = stand_in_model(reference)

    unshifted = _drifted(raw, reference)
    apply_drought(lake)
    drought = _drifted(load_raw(lake), reference)

    assert len(unshifted) <= len(VARIABLES) // 20, unshifted  # at most 1 in 20
    assert drought >= PRECIPITATION | GDD | NDVI, drought
    assert PREDICTION in drought


def test_drought_rewrites_only_what_it_should(tmp_path: Path) -> None:
    lake = Lake((tmp_path / "lake").as_uri())
    days = pa.array([dt.date(2024, 2, 28), dt.date(2024, 3, 1)], pa.date32())
    weather = pa.table(
        {"cell_id": [1, 1], "date": days, "precip_mm": [10.0, 10.0], "tmin_c": [15.0, 15.0],
         "tmax_c": [28.0, 28.0], "srad_mj_m2": [20.0, None]}
    )  # fmt: skip
    ndvi = pa.table(
        {"plot_id": [1, 1, 1], "date": pa.array([*days.to_pylist(), dt.date(2024, 3, 1)],
         pa.date32()), "ndvi": [0.7, 0.7, 0.1], "cloud_fraction": [0.0, 0.0, 0.9]}
    )  # fmt: skip
    lake.write_parquet(f"{RAW_WEATHER}/year=2024/part-0.parquet", weather)
    lake.write_parquet(f"{RAW_NDVI}/year=2024/part-0.parquet", ndvi)
    apply_drought(lake)
    weather = pq.read_table(lake.root / f"{RAW_WEATHER}/year=2024/part-0.parquet").to_pydict()
    ndvi = pq.read_table(lake.root / f"{RAW_NDVI}/year=2024/part-0.parquet").to_pydict()
    assert weather["precip_mm"] == [10.0, 4.0]
    assert weather["tmax_c"] == [28.0, 30.0] and weather["srad_mj_m2"] == [20.0, None]
    assert ndvi["ndvi"] == pytest.approx([0.7, 0.45, 0.1])  # bare soil and clouds unchanged


def test_reference_is_matched_by_season_county_planting_window_and_calendar(
    tmp_path: Path,
) -> None:
    lake = generate(tmp_path / "lake", seed=5, plots=300, start_year=2021)
    raw = load_raw(lake)
    current = season_to_date(raw, RUN_DATE, season_max_days=180).features
    reference, described = matched_reference(raw, current, RUN_DATE, ReferenceSpec(max_rows=3000))
    assert set(reference["season"]) == {"Long Rains"}
    assert set(reference["season_year"]) == {2021, 2022, 2023}
    # A few current plots were planted in a week no earlier plot of their county was.
    without = described["current_rows_without_history"]
    assert without < 0.05 * len(current)
    # Seen on 30 June of their own year, or on planting day by a later planter.
    seen = pd.to_datetime(reference["as_of_date"])
    on_day = (seen.dt.month == 6) & (seen.dt.day == 30)
    assert (on_day | (reference["days_after_planting"] == 0)).all()
    # The same county × planting-week mix as tonight's rows that have a history, within
    # rounding, and so about the same days after planting.
    mix = _mix(current)
    covered = mix[mix.index.isin(_mix(reference).index)]
    assert covered.sum() == pytest.approx(1 - without / len(current))
    difference = (_mix(reference) - covered / covered.sum()).abs().max()
    assert difference < 0.002
    dap = reference["days_after_planting"].mean() - current["days_after_planting"].mean()
    assert abs(dap) < 3


def _mix(frame: pd.DataFrame) -> pd.Series:
    day = pd.to_datetime(frame["planting_date"]).dt.day_of_year - 1
    return frame.groupby([frame["county"], day // 7]).size() / len(frame)
