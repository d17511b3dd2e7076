"""The feature gate against inputs that used to pass it and hurt later: plot ids the scorer
cannot shard, an empty plots table, a stalled or missing weather feed, and planting dates
outside their season (in the future or in another season) that were skipped silently.
Each runs in one feature shard and in three: the gate judges the night, not a shard."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from nuru_yield import names
from nuru_yield.config import reset_settings
from nuru_yield.errors import DataValidationError
from nuru_yield.features.checks import NDVI_CHECKS, failing_any, misdated_in_current_season
from nuru_yield.features.materialize import materialize
from nuru_yield.features.raw import RawInputs
from nuru_yield.features.validation import validate
from nuru_yield.lake import Lake
from nuru_yield.names import MAX_PLOT_ID
from tests.unit.features.test_features import AS_OF, plot
from tests.unit.features.test_features_materialize import ten_plots, write_raw


@pytest.fixture(params=[1, 3], ids=["1 shard", "3 shards"])
def lake(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Lake:
    monkeypatch.setenv("FEATURE_SHARDS", str(request.param))
    reset_settings()
    return Lake.from_settings()


def _with_plots(inputs: RawInputs, plots: pd.DataFrame) -> RawInputs:
    return RawInputs(plots, inputs.cells, inputs.weather, inputs.ndvi)


def _rejected(lake: Lake) -> dict[int, str]:
    rows = lake.read_parquet(names.rejected_path(AS_OF)).to_pylist()
    return {row["plot_id"]: row["reason"] for row in rows}


def test_plot_ids_outside_the_sharding_range_are_quarantined(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VALIDATION_MAX_BAD_SHARE", "0.3")
    reset_settings()
    inputs = ten_plots()
    plots = inputs.plots.copy()
    plots.loc[plots["plot_id"] == 0, "plot_id"] = MAX_PLOT_ID + 1
    plots.loc[plots["plot_id"] == 1, "plot_id"] = -5
    plots.loc[plots["plot_id"] == 2, "plot_id"] = MAX_PLOT_ID  # the largest shardable id
    write_raw(lake, _with_plots(inputs, plots))

    result = materialize(AS_OF, lake=lake)

    assert (result.rows, result.rejected) == (8, 2)
    assert _rejected(lake) == {MAX_PLOT_ID + 1: "plot_id_out_of_range", -5: "plot_id_out_of_range"}
    features = lake.read_parquet(names.features_path(AS_OF))["plot_id"].to_pylist()
    assert MAX_PLOT_ID in features and min(features) >= 0
    counts = lake.read_json(names.validation_path(AS_OF))["counts"]
    assert counts["rejected_by_reason"] == {"plot_id_out_of_range": 2}


def test_an_empty_plots_table_fails_the_gate_by_name(lake: Lake) -> None:
    inputs = ten_plots()
    write_raw(lake, _with_plots(inputs, inputs.plots.iloc[:0]))

    with pytest.raises(DataValidationError) as failure:
        materialize(AS_OF, lake=lake)

    assert str(failure.value) == (
        "validation failed: plots.no_plot_seasons: raw/plots.parquet holds no plot-season "
        "of the season years 2023–2025"
    )
    report = lake.read_json(names.validation_path(AS_OF))
    assert report["status"] == "failed" and "plots.no_plot_seasons" in report["failed_checks"]
    assert not lake.exists(names.features_path(AS_OF))


def _weather_until(inputs: RawInputs, last: str) -> RawInputs:
    weather = inputs.weather[inputs.weather["date"] <= pd.Timestamp(last)]
    return RawInputs(inputs.plots, inputs.cells, weather, inputs.ndvi)


def test_a_stalled_weather_feed_fails_naming_the_check_the_last_date_and_counts(
    lake: Lake,
) -> None:
    write_raw(lake, _weather_until(ten_plots(), "2025-04-10"))  # 20 days before AS_OF

    with pytest.raises(DataValidationError) as failure:
        materialize(AS_OF, lake=lake)

    message = str(failure.value)
    assert message.startswith("validation failed: plot_features.weather_not_current: ")
    assert "10 of 10 plot-seasons in progress" in message
    assert (
        "the newest at their weather cells is 2025-04-10" in message
        and "run date 2025-04-30" in message
    )
    assert "WEATHER_MAX_LAG_DAYS" in message and "\n" not in message
    counts = lake.read_json(names.validation_path(AS_OF))["counts"]
    assert counts["weather_latest_date"] == "2025-04-10"
    assert counts["plot_features_without_current_weather"] == 10


def test_weather_within_the_allowed_lag_passes_and_the_lag_is_a_setting(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_raw(lake, _weather_until(ten_plots(), "2025-04-27"))  # 3 days behind: allowed
    assert materialize(AS_OF, lake=lake).rows == 10

    monkeypatch.setenv("WEATHER_MAX_LAG_DAYS", "2")
    reset_settings()
    with pytest.raises(DataValidationError, match="weather_not_current"):
        materialize(AS_OF, lake=lake)

    monkeypatch.setenv("WEATHER_MAX_LAG_DAYS", "30")  # a feed known to lag weeks
    reset_settings()
    write_raw(lake, _weather_until(ten_plots(), "2025-04-10"))
    assert materialize(AS_OF, lake=lake).rows == 10


def test_no_weather_rows_in_the_window_is_a_validation_failure(lake: Lake) -> None:
    inputs = ten_plots()
    old = inputs.weather.assign(date=inputs.weather["date"] - pd.Timedelta(days=800))
    write_raw(lake, RawInputs(inputs.plots, inputs.cells, old, inputs.ndvi))

    with pytest.raises(DataValidationError) as failure:
        materialize(AS_OF, lake=lake)

    message = str(failure.value)
    assert "plot_features.weather_not_current" in message
    assert "their weather cells have none since 2024-11-01" in message


def test_planting_dates_outside_a_running_season_are_quarantined_not_skipped(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VALIDATION_MAX_BAD_SHARE", "0.5")
    reset_settings()
    inputs = ten_plots()
    extra = pd.DataFrame(
        [
            # Long Rains 2025 is under way; September is after its window (and in the future).
            plot(plot_id=50, planting_date=pd.Timestamp("2025-09-15")),
            # In the window but after the run date: not yet in progress, not bad.
            plot(plot_id=51, planting_date=pd.Timestamp("2025-05-10")),
            # Short Rains 2024 is still under way; May 2024 is another season's date.
            plot(plot_id=52, season="Short Rains", season_year=2024, planting_date="2024-05-01"),
            # Short Rains 2025 has not opened yet: nothing to say about it tonight.
            plot(plot_id=53, season="Short Rains", season_year=2025, planting_date="2025-06-01"),
        ]
    ).astype({"planting_date": "datetime64[ns]"})
    write_raw(lake, _with_plots(inputs, pd.concat([inputs.plots, extra], ignore_index=True)))

    result = materialize(AS_OF, lake=lake)

    assert (result.rows, result.rejected) == (10, 2)
    assert _rejected(lake) == {
        50: "planting_date_outside_season",
        52: "planting_date_outside_season",
    }
    counts = lake.read_json(names.validation_path(AS_OF))["counts"]
    assert counts["rejected_by_reason"] == {"planting_date_outside_season": 2}


def test_a_misdated_season_is_reported_only_while_it_runs() -> None:
    plots = pd.DataFrame(
        [plot(plot_id=1, season="Long Rains", season_year=2025, planting_date="2025-11-01")]
    ).astype({"planting_date": "datetime64[ns]"})

    def reported(day: str) -> bool:
        return bool(misdated_in_current_season(plots, dt.date.fromisoformat(day), 180)[0])

    # The Long Rains 2025 window opens on 1 February; a planting in it runs until late January.
    assert not reported("2025-01-31")
    assert reported("2025-02-01") and reported("2025-06-01")
    assert reported("2026-01-27")  # 31 July + 180 days
    assert not reported("2026-01-28")


def test_out_of_range_plot_ids_are_quarantined_by_shard_0_and_reach_no_scoring_shard(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from nuru_yield.scoring.run import _shard_batches

    monkeypatch.setenv("FEATURE_SHARDS", "3")
    monkeypatch.setenv("VALIDATION_MAX_BAD_SHARE", "0.3")
    reset_settings()
    lake = Lake.from_settings()
    inputs = ten_plots()
    plots = inputs.plots.copy()
    plots.loc[plots["plot_id"] == 6, "plot_id"] = MAX_PLOT_ID + 1  # 6 hashes to shard 2
    plots.loc[plots["plot_id"] == 4, "plot_id"] = -5  # 4 hashes to shard 1
    write_raw(lake, _with_plots(inputs, plots))

    materialize(AS_OF, lake=lake)

    assert _rejected(lake) == {MAX_PLOT_ID + 1: "plot_id_out_of_range", -5: "plot_id_out_of_range"}
    report = lake.read_json(names.validation_path(AS_OF))
    assert [shard["rejected"] for shard in report["shards"]] == [2, 0, 0]
    assert report["counts"]["plot_seasons_read"] == 11  # ten in progress, one of 2024
    # Scoring hashes every plot id it reads (and refuses one out of range): each of its
    # shards reads its own plots, and none of them holds a quarantined id.
    path = names.features_path(AS_OF)
    scored = [
        batch["plot_id"].to_numpy()
        for shard in range(3)
        for batch in _shard_batches(lake, path, shard, 3, 1000)
    ]
    assert sorted(np.concatenate(scored)) == [0, 1, 2, 3, 5, 7, 8, 9]


def test_shards_without_plot_seasons_do_not_fail_a_night_that_has_some(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FEATURE_SHARDS", "3")
    reset_settings()
    lake = Lake.from_settings()
    inputs = ten_plots()
    write_raw(lake, _with_plots(inputs, inputs.plots[inputs.plots["plot_id"].isin([0, 2, 5])]))

    result = materialize(AS_OF, lake=lake)  # shards 1 and 2 read no plot-season

    assert result.rows == 3
    report = lake.read_json(names.validation_path(AS_OF))
    assert [shard["plot_seasons"] for shard in report["shards"]] == [3, 0, 0]
    assert report["counts"]["plot_seasons_read"] == 3


def test_a_cloudy_observation_without_ndvi_is_not_a_bad_row() -> None:
    """NDVI from rasters leaves a plot mostly under cloud without a value; only a clear
    observation without one is bad, in the quarantine mask and the gate's counts alike."""
    ndvi = pd.DataFrame(
        {
            "plot_id": [1, 2, 3, 4],
            "date": pd.to_datetime(["2025-06-01"] * 4),
            "ndvi": [0.6, None, None, None],
            "cloud_fraction": [0.1, 0.8, 0.2, None],  # cloudy, clear, unknown
        }
    )
    assert failing_any(ndvi, NDVI_CHECKS).tolist() == [False, False, True, True]
    report = validate(
        ndvi=ndvi,
        threshold=0.6,
        season_max_days=180,
        max_cell_distance_km=50.0,
        run_date=dt.date(2025, 6, 15),
        weather_max_lag_days=3,
    )
    [missing] = [c for c in report.checks if c.check == "ndvi_missing"]
    assert (missing.element_count, missing.unexpected_count) == (3, 2)
    assert report.counts["ndvi_rows_dropped"] == 2 and report.counts["ndvi_rows_cloudy"] == 1
