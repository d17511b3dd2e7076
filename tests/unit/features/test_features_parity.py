"""The vectorised engine against two independent implementations of the same definitions:
a plain Python loop per plot-season, and the benchmark's hand-written DuckDB query."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from nuru_yield import names
from nuru_yield.dev.bench import features as bench
from nuru_yield.features.columns import FEATURE_COLUMNS
from nuru_yield.features.compute import training_rows
from nuru_yield.features.materialize import materialize
from nuru_yield.features.raw import RawInputs
from nuru_yield.lake import Lake

CUT_OFFS = (0, 1, 30, 61, None)


def messy_raw(seed: int = 11) -> RawInputs:
    """Four cells, 25 plot-seasons, and weather/NDVI with every kind of bad value."""
    rng = np.random.default_rng(seed)
    grid = pd.DataFrame(
        {
            "cell_id": [10, 11, 12, 13],
            "latitude": [0.0, 0.0, 0.3, 0.3],
            "longitude": [35.0, 35.3, 35.0, 35.3],
        }
    )
    n = 25
    plots = pd.DataFrame(
        {
            "plot_id": np.arange(1, n + 1),
            "latitude": rng.uniform(-0.1, 0.4, n),
            "longitude": rng.uniform(34.9, 35.4, n),
            "altitude": rng.uniform(1000, 2000, n),
            "county": "Siaya",
            "season": "Long Rains",
            "season_year": 2025,
            "planting_date": pd.Timestamp("2025-02-01")
            + pd.to_timedelta(rng.integers(0, 150, n), "D"),
        }
    )
    days = pd.date_range("2025-01-15", "2025-12-31")
    weather = pd.DataFrame(
        {
            "cell_id": np.repeat(grid["cell_id"], len(days)),
            "date": np.tile(days, len(grid)),
            "precip_mm": np.where(
                rng.random(len(grid) * len(days)) < 0.4,
                rng.gamma(0.7, 8.0, len(grid) * len(days)),
                0.0,
            ),
            "tmin_c": rng.normal(14, 4, len(grid) * len(days)),
            "tmax_c": rng.normal(29, 5, len(grid) * len(days)),
        }
    )
    size = len(weather)
    weather.loc[rng.random(size) < 0.04, "precip_mm"] = np.nan
    weather.loc[rng.random(size) < 0.01, "precip_mm"] = 900.0
    weather.loc[rng.random(size) < 0.02, "tmax_c"] = 5.0  # often below tmin: invalid pair
    weather.loc[rng.random(size) < 0.02, "tmin_c"] = None
    weather = weather[rng.random(size) > 0.03]  # missing days
    weather = pd.concat([weather, weather.sample(8, random_state=1)])  # duplicated days
    obs = 40 * n
    ndvi = pd.DataFrame(
        {
            "plot_id": rng.integers(1, n + 3, obs),  # a few plots without plot-season
            "date": pd.Timestamp("2025-01-20") + pd.to_timedelta(rng.integers(0, 330, obs), "D"),
            "ndvi": rng.uniform(-0.1, 0.95, obs).round(2),
            "cloud_fraction": rng.uniform(0, 1, obs),
        }
    )
    ndvi.loc[rng.random(obs) < 0.03, "ndvi"] = 5.0
    ndvi.loc[rng.random(obs) < 0.03, "ndvi"] = np.nan
    ndvi.loc[rng.random(obs) < 0.05, "cloud_fraction"] = np.nan
    ndvi.loc[rng.random(obs) < 0.02, "cloud_fraction"] = 1.7
    return RawInputs(plots=plots, cells=grid, weather=weather, ndvi=ndvi)


def _temperature_ok(row: pd.Series) -> bool:
    return bool(
        pd.notna(row["tmin_c"])
        and pd.notna(row["tmax_c"])
        and -30 <= row["tmin_c"] <= 60
        and -30 <= row["tmax_c"] <= 60
        and row["tmin_c"] <= row["tmax_c"]
    )


def naive_features(raw: RawInputs, plot: pd.Series, as_of: pd.Timestamp) -> dict[str, float]:
    """The feature definitions, one day and one observation at a time: every aggregate over
    planting → the as-of date or the day the crop's thermal time (mean temperature above
    8 °C) reaches 1,500 °C·d, whichever comes first."""
    lead_time = as_of
    lat, lon = math.radians(plot["latitude"]), math.radians(plot["longitude"])

    def distance(cell: pd.Series) -> float:
        clat, clon = math.radians(cell["latitude"]), math.radians(cell["longitude"])
        return math.acos(
            min(
                1.0,
                math.sin(lat) * math.sin(clat)
                + math.cos(lat) * math.cos(clat) * math.cos(lon - clon),
            )
        )

    cell = min((row for _, row in raw.cells.iterrows()), key=distance)["cell_id"]
    here = raw.weather[raw.weather["cell_id"] == cell]
    counts = here["date"].value_counts()
    by_day = here[here["date"].map(counts) == 1].set_index("date")
    start = plot["planting_date"]
    thermal = 0
    for day in pd.date_range(start, as_of):  # the season ends on the day maturity is reached
        row = by_day.loc[day] if day in by_day.index else None
        if row is not None and _temperature_ok(row):
            thermal += math.floor(max(0.0, (row["tmin_c"] + row["tmax_c"]) / 2 - 8) * 100 + 0.5)
        if thermal >= 150_000:  # hundredths of a °C·d
            as_of = day
            break
    days = pd.date_range(start, as_of)
    rain, gdd, tmax, run, longest, rainy, heat, recent, both = [], 0.0, [], 0, 0, 0, 0, [], 0
    for day in days:
        row = by_day.loc[day] if day in by_day.index else None
        p_ok = row is not None and pd.notna(row["precip_mm"]) and 0 <= row["precip_mm"] <= 500
        t_ok = row is not None and _temperature_ok(row)
        if p_ok:
            rain.append(row["precip_mm"])
            rainy += row["precip_mm"] >= 1
            if (as_of - day).days < 30:
                recent.append(row["precip_mm"])
        run = run + 1 if p_ok and row["precip_mm"] < 1 else 0
        longest = max(longest, run)
        if t_ok:
            gdd += max(0.0, (min(row["tmax_c"], 30) + max(row["tmin_c"], 10)) / 2 - 10)
            tmax.append(row["tmax_c"])
            heat += row["tmax_c"] > 35
        both += p_ok and t_ok
    o = raw.ndvi
    clear = o[
        (o["plot_id"] == plot["plot_id"])
        & (o["date"] >= start)
        & (o["date"] <= as_of)
        & o["ndvi"].between(-1, 1)
        & (o["cloud_fraction"].isna() | o["cloud_fraction"].between(0, 0.5))
    ].sort_values(["date", "ndvi"])
    values, dates = clear["ndvi"].to_numpy(), clear["date"].to_numpy()
    area = sum(
        (max(values[i] - 0.2, 0) + max(values[i - 1] - 0.2, 0))
        / 2
        * ((dates[i] - dates[i - 1]) / np.timedelta64(1, "D"))
        for i in range(1, len(values))
    )
    last = clear[clear["date"] > as_of - pd.Timedelta(days=30)]
    x = (last["date"] - as_of).dt.days.to_numpy(float)
    slope = np.polyfit(x, last["ndvi"], 1)[0] if len(set(x)) >= 2 else np.nan
    nan = float("nan")
    return {
        "precip_total": sum(rain) if rain else nan,
        "rainy_days": rainy if rain else nan,
        "max_dry_spell_days": longest if rain else nan,
        "precip_last_30d": sum(recent) if recent else nan,
        "gdd_sum": gdd if tmax else nan,
        "heat_days": heat if tmax else nan,
        "tmax_mean": np.mean(tmax) if tmax else nan,
        "weather_coverage": both / len(days),
        "mean_ndvi": values.mean() if len(values) else nan,
        "max_ndvi": values.max() if len(values) else nan,
        "ndvi_auc": area if len(values) else nan,
        "ndvi_slope_30d": slope,
        "n_clear_ndvi_obs": len(values),
        "days_after_planting": (lead_time - start).days,
        "planting_doy": start.day_of_year,
    }


def test_vectorised_features_match_a_plain_loop_at_every_cut_off() -> None:
    raw = messy_raw()
    rows = training_rows(raw, days_after_planting=CUT_OFFS, season_max_days=180)
    assert len(rows) == 25 * len(CUT_OFFS)
    plots = {plot["plot_id"]: plot for _, plot in raw.plots.iterrows()}
    for _, row in rows.iterrows():
        expected = naive_features(raw, plots[row["plot_id"]], row["as_of_date"])
        for name, value in expected.items():
            assert row[name] == pytest.approx(value, rel=1e-9, abs=1e-9, nan_ok=True), (
                name,
                row["plot_id"],
                row["days_after_planting"],
            )


def test_rows_of_one_plot_do_not_depend_on_file_order() -> None:
    raw = messy_raw()
    shuffled = RawInputs(
        plots=raw.plots.sample(frac=1, random_state=2),
        cells=raw.cells.sample(frac=1, random_state=2),
        weather=raw.weather.sample(frac=1, random_state=2),
        ndvi=raw.ndvi.sample(frac=1, random_state=2),
    )
    ordered = training_rows(raw, (45,)).set_index("plot_id").sort_index()
    again = training_rows(shuffled, (45,)).set_index("plot_id").sort_index()
    pd.testing.assert_frame_equal(ordered[FEATURE_COLUMNS], again[FEATURE_COLUMNS], rtol=1e-12)


def test_the_benchmark_reference_query_computes_the_same_features(tmp_path: Path) -> None:
    grid = bench.Grid(n_lat=8, n_lon=8)
    lake = Lake(f"file://{tmp_path / 'lake'}")
    bench.build_raw(lake, plots=400, grid=grid)
    materialize(bench.RUN_DATE, lake=lake)
    reference = tmp_path / "reference.parquet"
    bench.run_reference(str(lake.root), str(reference), 180, grid)

    agreement: dict[str, Any] = bench.compare(
        lake.root / names.features_path(bench.RUN_DATE), reference
    )
    assert agreement["common_rows"] == agreement["system_rows"] >= 390
    assert agreement["other_nearest_cell"] == 0
    assert max(agreement["max_abs_diff"].values()) < 1e-9, agreement["max_abs_diff"]
    assert (
        dt.date.fromisoformat(lake.read_json(names.validation_path(bench.RUN_DATE))["run_date"])
        == bench.RUN_DATE
    )
