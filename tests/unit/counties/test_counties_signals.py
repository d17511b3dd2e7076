"""Season signals: rain and heat to date against the same windows of earlier years."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from nuru_yield.counties.signals import (
    MIN_NORMAL_YEARS,
    earlier_windows,
    normal_to_date,
    sample,
    season_signals,
    signal_text,
)

EPOCH = dt.date(1970, 1, 1)


def _day(date: dt.date) -> int:
    return (date - EPOCH).days


def test_earlier_windows_are_the_same_days_of_earlier_years() -> None:
    planting = np.array(["2024-02-29", "2025-03-20"], dtype="datetime64[D]")
    windows = earlier_windows(planting, dt.date(2025, 4, 10), years=2)

    first = windows[(windows["row"] == 0) & (windows["years_back"] == 1)].iloc[0]
    assert first["start"] == _day(dt.date(2023, 2, 28))  # 29 February → 28 February
    assert first["end"] == _day(dt.date(2024, 4, 10))
    second = windows[(windows["row"] == 1) & (windows["years_back"] == 2)].iloc[0]
    assert (second["start"], second["end"]) == (
        _day(dt.date(2023, 3, 20)),
        _day(dt.date(2023, 4, 10)),
    )
    assert len(windows) == 4


def test_the_normal_counts_covered_years_only() -> None:
    windows = pd.DataFrame(
        {
            "row": [0, 0, 0, 0, 1, 1],
            "precip_total": [100.0, 200.0, 300.0, 900.0, 50.0, 60.0],
            "tmax_mean": [28.0, 29.0, 30.0, 40.0, 25.0, 26.0],
            "heat_days": [0.0, 1.0, 2.0, 9.0, 0.0, 0.0],
            "weather_coverage": [1.0, 0.95, 1.0, 0.5, 1.0, 1.0],  # the 900 mm year: half seen
        }
    )
    normal = normal_to_date(windows, rows=3)

    assert normal["normal_years"].tolist() == [3, 2, 0]
    assert normal.loc[0, "precip_total"] == pytest.approx(200.0)
    assert normal.loc[0, "tmax_mean"] == pytest.approx(29.0)
    assert MIN_NORMAL_YEARS == 3 and normal.loc[1:, "precip_total"].isna().all()


def test_a_dry_county_gets_a_signal_a_normal_one_none() -> None:
    current = pd.DataFrame(
        {
            "county": ["Makueni", "Makueni", "Bungoma"],
            "season": "Long Rains",
            "season_year": 2025,
            "precip_total": [50.0, 70.0, 300.0],
            "tmax_mean": [31.0, 31.0, 26.0],
            "heat_days": [3.0, 5.0, 0.0],
        }
    )
    normal = pd.DataFrame(
        {
            "normal_years": [5, 5, 5],
            "precip_total": [100.0, 100.0, 290.0],
            "tmax_mean": [29.5, 29.5, 26.2],
            "heat_days": [1.0, 1.0, 0.0],
        }
    )
    signals = season_signals(current, normal).set_index("county")

    dry = signals.loc["Makueni"]
    assert dry["rain_pct_of_normal"] == pytest.approx(60.0)
    assert dry["heat_days"] == pytest.approx(4.0) and dry["normal_heat_days"] == pytest.approx(1.0)
    assert dry["season_signal"].startswith("rain 40% below the county's normal to date (60 mm")
    assert "1.5 °C hotter" in dry["season_signal"]
    assert pd.isna(signals.loc["Bungoma", "season_signal"])


def test_signal_text_thresholds() -> None:
    assert signal_text(81.0, 100.0, 81.0, 25.0, 25.5) is None
    assert signal_text(130.0, 100.0, 130.0, np.nan, np.nan) == (
        "rain 30% above the county's normal to date (130 mm against 100)"
    )
    assert "1.0 °C cooler" in signal_text(np.nan, np.nan, np.nan, 24.0, 25.0)


def test_the_sample_is_the_same_plots_every_night() -> None:
    frame = pd.DataFrame(
        {
            "plot_id": np.arange(1000),
            "county": np.where(np.arange(1000) < 600, "Kitui", "Embu"),
            "season": "Long Rains",
            "season_year": 2025,
        }
    )
    picked = sample(frame, per_group=50)
    again = sample(frame.sample(frac=1.0, random_state=1), per_group=50)

    assert picked.groupby("county").size().to_dict() == {"Embu": 50, "Kitui": 50}
    assert sorted(picked["plot_id"]) == sorted(again["plot_id"])
    assert picked["plot_id"].max() > 500  # spread over the ids, not the first fifty
