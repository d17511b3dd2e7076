"""Feature arithmetic, the nearest-cell join and quarantine, on tiny hand-made raw tables."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
import pytest

from nuru_yield.features.cells import nearest_cells
from nuru_yield.features.columns import FEATURE_COLUMNS, KEY_COLUMNS, OUTPUT_COLUMNS
from nuru_yield.features.compute import season_to_date, training_rows
from nuru_yield.features.raw import RawInputs

AS_OF = dt.date(2025, 4, 30)
PLANTED = dt.date(2025, 4, 1)


def plot(**overrides: Any) -> dict[str, Any]:
    row = {
        "plot_id": 1,
        "latitude": 0.0,
        "longitude": 35.0,
        "altitude": 1500.0,
        "county": "Kisumu",
        "season": "Long Rains",
        "season_year": 2025,
        "planting_date": pd.Timestamp(PLANTED),
    }
    return {**row, **overrides}


def cells(*coordinates: tuple[float, float], first_id: int = 100) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "cell_id": range(first_id, first_id + len(coordinates)),
            "latitude": [lat for lat, _ in coordinates],
            "longitude": [lon for _, lon in coordinates],
        }
    )


def weather(
    cell_id: int,
    first: dt.date,
    precip: list[float],
    tmin: list[float] | float = 15.0,
    tmax: list[float] | float = 28.0,
) -> pd.DataFrame:
    n = len(precip)
    return pd.DataFrame(
        {
            "cell_id": cell_id,
            "date": pd.date_range(first, periods=n),
            "precip_mm": precip,
            "tmin_c": np.broadcast_to(tmin, n).astype(float),
            "tmax_c": np.broadcast_to(tmax, n).astype(float),
        }
    )


def ndvi(*observations: tuple[int, dt.date, float, float | None]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "plot_id": [o[0] for o in observations],
            "date": pd.to_datetime([o[1] for o in observations]),
            "ndvi": [o[2] for o in observations],
            "cloud_fraction": pd.array([o[3] for o in observations], dtype="Float64").astype(float),
        },
        columns=["plot_id", "date", "ndvi", "cloud_fraction"],
    )


NO_NDVI = ndvi()


def raw(
    plots: list[dict[str, Any]],
    weather_rows: pd.DataFrame,
    ndvi_rows: pd.DataFrame = NO_NDVI,
    grid: pd.DataFrame | None = None,
) -> RawInputs:
    frame = pd.DataFrame(plots)
    frame["planting_date"] = pd.to_datetime(frame["planting_date"])
    return RawInputs(
        plots=frame,
        cells=cells((0.0, 35.0)) if grid is None else grid,
        weather=weather_rows,
        ndvi=ndvi_rows,
    )


def one_row(inputs: RawInputs, as_of: dt.date = AS_OF) -> pd.Series:
    features = season_to_date(inputs, as_of, season_max_days=180).features
    assert len(features) == 1
    return features.iloc[0]


def test_gdd_heat_days_and_tmax_mean_from_known_days() -> None:
    # GDD = max(0, (min(Tmax, 30) + max(Tmin, 10)) / 2 - 10): 10, 10, 5, 0 (floored), 15
    tmax = [35.0, 25.0, 20.0, 9.0, 36.0]
    tmin = [5.0, 15.0, 8.0, 2.0, 20.0]
    row = one_row(
        raw([plot()], weather(100, PLANTED, [0.0] * 5, tmin, tmax)), PLANTED + dt.timedelta(4)
    )
    assert row["gdd_sum"] == pytest.approx(40.0)
    assert row["heat_days"] == 1.0  # only 36 °C is above 35 °C
    assert row["tmax_mean"] == pytest.approx(np.mean(tmax))
    assert row["days_after_planting"] == 4.0 and row["weather_coverage"] == 1.0


def test_rain_totals_rainy_days_and_a_known_dry_spell() -> None:
    precip = [5.0, 0.0, 0.0, 0.0, 2.0, 0.5, 0.0, 3.0, 0.9, 0.0]  # dry: < 1 mm
    row = one_row(raw([plot()], weather(100, PLANTED, precip)), PLANTED + dt.timedelta(9))
    assert row["precip_total"] == pytest.approx(sum(precip))
    assert row["rainy_days"] == 3.0
    assert row["max_dry_spell_days"] == 3.0  # days 2-4; 0.5 + 0.0 is 2, 0.9 + 0.0 is 2


def test_dry_spell_running_at_planting_counts_from_planting_and_ends_at_as_of() -> None:
    before = [0.0] * 20  # 20 dry days before planting do not count
    inside = [0.0, 0.0, 4.0, 0.0, 0.0, 0.0, 0.0]  # 2 from planting, then 4 up to as-of
    row = one_row(
        raw([plot()], weather(100, PLANTED - dt.timedelta(20), before + inside + [0.0] * 9)),
        PLANTED + dt.timedelta(6),
    )
    assert row["max_dry_spell_days"] == 4.0
    assert row["precip_total"] == 4.0 and row["days_after_planting"] == 6.0


def test_a_nan_rain_day_is_dropped_counted_out_of_coverage_and_breaks_a_dry_spell() -> None:
    precip = [0.0, 0.0, np.nan, 0.0, 0.0, 0.0, 7.0, -3.0]  # -3 mm is out of range
    row = one_row(raw([plot()], weather(100, PLANTED, precip)), PLANTED + dt.timedelta(7))
    assert row["precip_total"] == 7.0
    assert row["max_dry_spell_days"] == 3.0  # not 5: the NaN day is not known to be dry
    assert row["weather_coverage"] == pytest.approx(6 / 8)
    assert row["gdd_sum"] == pytest.approx(8 * 11.5)  # temperatures of those days still count


def test_precip_last_30d_covers_the_30_days_ending_on_the_as_of_date() -> None:
    precip = [1.0] * 40 + [100.0]  # the day after as-of must not count
    row = one_row(raw([plot()], weather(100, PLANTED, precip)), PLANTED + dt.timedelta(39))
    assert row["precip_total"] == 40.0
    assert row["precip_last_30d"] == 30.0
    assert row["rainy_days"] == 40.0 and row["max_dry_spell_days"] == 0.0


def test_ndvi_features_use_only_clear_valid_observations_inside_the_window() -> None:
    observations = ndvi(
        (1, PLANTED - dt.timedelta(3), 0.9, 0.0),  # before planting
        (1, PLANTED + dt.timedelta(2), 0.3, 0.1),
        (1, PLANTED + dt.timedelta(12), 0.5, None),  # unknown cloud cover counts as clear
        (1, PLANTED + dt.timedelta(15), 0.95, 0.8),  # cloudy
        (1, PLANTED + dt.timedelta(16), 5.0, 0.0),  # impossible NDVI
        (1, PLANTED + dt.timedelta(18), np.nan, 0.0),
        (1, PLANTED + dt.timedelta(22), 0.7, 0.5),  # 0.5 is still clear
        (1, AS_OF + dt.timedelta(1), 0.9, 0.0),  # after as-of
        (2, PLANTED + dt.timedelta(5), 0.8, 0.0),  # another plot
    )
    row = one_row(raw([plot()], weather(100, PLANTED, [0.0] * 30), observations))
    assert row["n_clear_ndvi_obs"] == 3.0 and not row["ndvi_missing"]
    assert row["mean_ndvi"] == pytest.approx(0.5)
    assert row["max_ndvi"] == pytest.approx(0.7)
    # trapezoids of NDVI above 0.2: (0.1 + 0.3) / 2 * 10 days + (0.3 + 0.5) / 2 * 10 days
    assert row["ndvi_auc"] == pytest.approx(6.0)
    # the last 30 days (Apr 1-30) hold all three: least-squares slope per day
    days, values = np.array([2.0, 12.0, 22.0]), np.array([0.3, 0.5, 0.7])
    assert row["ndvi_slope_30d"] == pytest.approx(np.polyfit(days, values, 1)[0])


def test_ndvi_slope_needs_two_dates_in_the_last_30_days() -> None:
    as_of = dt.date(2025, 5, 20)  # the last 30 days start on Apr 21
    observations = ndvi((1, dt.date(2025, 4, 5), 0.3, 0.0), (1, dt.date(2025, 5, 10), 0.6, 0.0))
    row = one_row(raw([plot()], weather(100, PLANTED, [0.0] * 50), observations), as_of)
    assert np.isnan(row["ndvi_slope_30d"])
    assert row["n_clear_ndvi_obs"] == 2.0 and row["mean_ndvi"] == pytest.approx(0.45)


def test_a_plot_without_clear_ndvi_still_gets_a_row_with_nan_ndvi_features() -> None:
    observations = ndvi(
        (1, PLANTED + dt.timedelta(5), 0.6, 0.9), (1, PLANTED + dt.timedelta(9), 7.0, 0.0)
    )
    row = one_row(raw([plot()], weather(100, PLANTED, [2.0] * 30), observations))
    assert row["ndvi_missing"] and row["n_clear_ndvi_obs"] == 0.0
    assert all(
        np.isnan(row[name]) for name in ("mean_ndvi", "max_ndvi", "ndvi_auc", "ndvi_slope_30d")
    )
    assert row["precip_total"] == 60.0  # weather features are unaffected


def test_output_columns_types_and_plot_features() -> None:
    short = plot(
        plot_id=2, season="Short Rains", season_year=2024, planting_date=pd.Timestamp("2024-11-20")
    )
    inputs = raw([plot(), short], weather(100, dt.date(2024, 11, 1), [1.0] * 200))
    features = season_to_date(inputs, dt.date(2025, 1, 15), season_max_days=180).features
    assert list(features.columns) == OUTPUT_COLUMNS
    assert all(features[name].dtype == np.float64 for name in FEATURE_COLUMNS)
    assert features["plot_id"].tolist() == [2]  # the Long Rains plot is not planted yet
    row = features.iloc[0]
    assert row["planting_doy"] == 325.0 and row["days_after_planting"] == 56.0
    assert row["is_short_rains"] == 1.0 and row["weather_cell_id"] == 100
    assert row["as_of_date"] == pd.Timestamp("2025-01-15")


def test_in_progress_means_planted_on_or_before_as_of_and_at_most_season_max_days() -> None:
    plots = [
        plot(plot_id=1, planting_date=pd.Timestamp(AS_OF)),  # day 0
        plot(plot_id=2, planting_date=pd.Timestamp(AS_OF + dt.timedelta(1))),  # future
        plot(plot_id=3, planting_date=pd.Timestamp("2025-02-01")),  # day 88 of at most 88
        plot(plot_id=4, planting_date=pd.Timestamp("2025-02-01"), season_year=2024),
    ]
    inputs = raw(plots, weather(100, dt.date(2025, 1, 1), [0.0] * 150))
    result = season_to_date(inputs, AS_OF, season_max_days=88)
    assert sorted(result.features["plot_id"]) == [1, 3]
    assert result.rejected["plot_id"].tolist() == [4]  # Long Rains 2024 planted in 2025


def test_nearest_cell_join_is_great_circle_and_skips_invalid_cells() -> None:
    grid = pd.DataFrame(
        {
            "cell_id": [1, 2, 3, 4, 4],
            "latitude": [0.0, 0.0, 1.0, 0.5, 0.6],  # cell 4 is duplicated: both unusable
            "longitude": [35.0, 35.1, 35.0, 35.05, 35.0],
        }
    )
    ids, km = nearest_cells(
        grid,
        np.array([0.01, 0.0, 0.9, np.nan, 0.45]),
        np.array([35.04, 35.09, 35.0, 35.0, 35.03]),
    )
    assert ids.tolist() == [1, 2, 3, -1, 1]
    assert km[0] == pytest.approx(np.hypot(0.01, 0.04) * 111.195, rel=1e-3)
    assert np.isnan(km[3])
    # At 60° N a degree of longitude is half a degree of latitude: flat lat/lon would pick 8.
    ids, _ = nearest_cells(cells((60.0, 10.6), (60.4, 10.0), first_id=7), [60.0], [10.0])
    assert ids.tolist() == [7]


def test_each_plot_joins_its_own_nearest_cell() -> None:
    grid = cells((0.0, 35.0), (2.0, 37.0))
    rows = pd.concat(
        [weather(100, PLANTED, [1.0] * 30), weather(101, PLANTED, [3.0] * 30)], ignore_index=True
    )
    plots = [plot(plot_id=7, latitude=1.9, longitude=36.8), plot(plot_id=8, latitude=0.1)]
    features = season_to_date(raw(plots, rows, grid=grid), AS_OF, 180).features
    assert features.set_index("plot_id")["weather_cell_id"].to_dict() == {7: 101, 8: 100}
    assert features.set_index("plot_id")["precip_total"].to_dict() == {7: 90.0, 8: 30.0}


BAD_ROWS = {
    "missing_plot_id": {"plot_id": None},
    "missing_season": {"season": None},
    "invalid_season": {"season": "Masika"},
    "missing_season_year": {"season_year": None},
    "missing_planting_date": {"planting_date": None},
    "missing_county": {"county": None},
    "missing_latitude": {"latitude": None},
    "missing_longitude": {"longitude": None},
    "latitude_out_of_range": {"latitude": 95.0},
    "longitude_out_of_range": {"longitude": 200.0},
    "altitude_out_of_range": {"altitude": 9000.0},
    "planting_date_outside_season": {"planting_date": pd.Timestamp("2025-01-10")},
    "no_weather_cell_nearby": {"latitude": 3.0},
    "duplicate_key": {"plot_id": 1},
}


@pytest.mark.parametrize("reason", sorted(BAD_ROWS))
def test_each_quarantine_reason(reason: str) -> None:
    good = plot(plot_id=1)
    bad = plot(**{"plot_id": 2, **BAD_ROWS[reason]})
    result = season_to_date(
        raw([good, bad], weather(100, dt.date(2025, 1, 1), [0.0] * 150)), AS_OF, 180
    )
    rejected = result.rejected
    expected = 2 if reason == "duplicate_key" else 1  # every copy of a duplicated key
    assert rejected["reason"].tolist() == [reason] * expected
    assert result.features["plot_id"].tolist() == ([] if reason == "duplicate_key" else [1])


def test_a_row_failing_several_checks_lists_every_reason() -> None:
    bad = plot(plot_id=2, county=None, altitude=-900.0)
    result = season_to_date(raw([plot(), bad], weather(100, PLANTED, [0.0] * 30)), AS_OF, 180)
    assert result.rejected["reason"].tolist() == ["missing_county;altitude_out_of_range"]


def test_training_rows_are_the_serving_rows_at_each_cut_off() -> None:
    rng = np.random.default_rng(3)
    rows = weather(100, dt.date(2025, 3, 1), list(rng.gamma(0.5, 6.0, 260).round(1)))
    observations = ndvi(
        *[(1, PLANTED + dt.timedelta(d), 0.2 + d / 300, 0.1) for d in range(0, 200, 9)]
    )
    inputs = raw([plot()], rows, observations)
    training = training_rows(inputs, days_after_planting=(30, 90, None), season_max_days=180)
    assert training["days_after_planting"].tolist() == [30.0, 90.0, 180.0]
    for _, row in training.iterrows():
        served = one_row(inputs, PLANTED + dt.timedelta(int(row["days_after_planting"])))
        pd.testing.assert_series_equal(
            row[FEATURE_COLUMNS], served[FEATURE_COLUMNS], check_names=False
        )
        assert row[KEY_COLUMNS].tolist() == served[KEY_COLUMNS].tolist()


def test_same_day_observations_give_the_same_curve_in_any_file_order() -> None:
    rows = [
        (1, PLANTED + dt.timedelta(2), 0.3, 0.1),
        (1, PLANTED + dt.timedelta(12), 0.6, 0.1),
        (1, PLANTED + dt.timedelta(12), 0.4, 0.2),
        (1, PLANTED + dt.timedelta(20), 0.5, 0.1),
    ]
    rain = weather(100, PLANTED, [0.0] * 30)
    forward = one_row(raw([plot()], rain, ndvi(*rows)))
    backward = one_row(raw([plot()], rain, ndvi(*rows[::-1])))
    assert forward[FEATURE_COLUMNS].equals(backward[FEATURE_COLUMNS])
    # Same-day values in increasing order: 0.3 → 0.4 (10 days), 0.4 → 0.6 (0 days), 0.6 → 0.5
    assert forward["ndvi_auc"] == pytest.approx((0.1 + 0.2) / 2 * 10 + (0.4 + 0.3) / 2 * 8)
