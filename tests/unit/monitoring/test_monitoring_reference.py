"""The crop-calendar-aware reference: strata, allocation, history and the calendar."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from nuru_yield.monitoring.reference import (
    allocate,
    current_strata,
    draw,
    history,
    same_day_years_before,
    season_day,
    seen_on,
)

RUN_DATE = dt.date(2024, 6, 30)


def test_season_day_counts_from_new_year_of_the_season_year() -> None:
    planting = np.array(["2024-01-01", "2024-03-10", "2025-01-05"], dtype="datetime64[D]")
    assert season_day(planting, np.array([2024, 2024, 2024])).tolist() == [0, 69, 370]


def test_same_calendar_day_in_earlier_years() -> None:
    assert same_day_years_before(dt.date(2024, 6, 30), 3) == dt.date(2021, 6, 30)
    assert same_day_years_before(dt.date(2024, 2, 29), 1) == dt.date(2023, 2, 28)
    days = seen_on(RUN_DATE, np.array([1, 2, 1]))
    assert (days.astype("datetime64[D]").astype(str)).tolist() == [
        "2023-06-30",
        "2022-06-30",
        "2023-06-30",
    ]


def _current() -> pd.DataFrame:
    # Planted on 2024-04-01 (season day 91, window 13) or 2024-04-08 (day 98, window 14).
    return pd.DataFrame(
        {
            "season": ["Long Rains"] * 4,
            "season_year": [2024] * 4,
            "county": ["Bungoma", "Bungoma", "Bungoma", "Kitui"],
            "days_after_planting": [90, 90, 83, 90],
        }
    )


def test_strata_are_county_and_planting_window_from_days_after_planting() -> None:
    strata = allocate(current_strata(_current(), RUN_DATE, window_days=7), max_rows=400)
    rows = {tuple(r[2:4]): (r[4], r[5]) for r in strata.itertuples(index=False)}
    assert rows == {("Bungoma", 13): (2, 200), ("Bungoma", 14): (1, 100), ("Kitui", 13): (1, 100)}


def _plots() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "season": ["Long Rains"] * 5 + ["Short Rains"],
            "season_year": [2018, 2021, 2023, 2023, 2024, 2023],
            "county": ["Bungoma"] * 6,
            # window 13 in each year (season day 91–97) except the 2023 plot of 20 April
            "planting_date": pd.to_datetime(
                ["2018-04-02", "2021-04-03", "2023-04-05", "2023-04-20", "2024-04-01", "2023-04-02"]
            ),
        }
    )


def test_history_is_same_season_county_and_window_in_the_years_before() -> None:
    strata = allocate(current_strata(_current(), RUN_DATE, window_days=7), max_rows=400)
    pool = history(_plots(), strata, years=5, window_days=7)
    assert sorted(pool["planting_date"].dt.strftime("%Y-%m-%d")) == ["2021-04-03", "2023-04-05"]
    assert set(pool["stratum_year"]) == {2024} and set(pool["target"]) == {200}


def test_thin_history_is_drawn_with_replacement_to_keep_the_mix() -> None:
    pool = pd.DataFrame(
        {
            "season": ["Long Rains"] * 12,
            "stratum_year": [2024] * 12,
            "county": ["Bungoma"] * 2 + ["Kitui"] * 10,
            "planting_window": [13] * 12,
            "target": [6] * 2 + [4] * 10,
            "plot_id": range(12),
        }
    )
    picked = draw(pool, np.random.default_rng(0))
    counts = picked.groupby("county").size().to_dict()
    assert counts == {"Bungoma": 6, "Kitui": 4}
    assert set(picked.loc[picked["county"] == "Bungoma", "plot_id"]) <= {0, 1}
    assert picked.loc[picked["county"] == "Kitui", "plot_id"].is_unique
