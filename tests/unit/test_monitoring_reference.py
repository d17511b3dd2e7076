"""The crop-calendar-aware reference: strata, allocation and the history pool."""

from __future__ import annotations

import pandas as pd

from nuru_yield.monitoring.reference import allocate, current_strata, history_pool, window_cut


def test_window_cut_is_the_window_centre() -> None:
    assert window_cut([0, 6, 7, 13, 14], 7).tolist() == [3, 3, 10, 10, 17]
    assert window_cut([45.0, 46.0], 1).tolist() == [45, 46]


def _current() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "season": ["Long Rains"] * 6 + ["Short Rains"] * 2,
            "season_year": [2024] * 6 + [2023] * 2,
            "county": ["Bungoma"] * 4 + ["Kitui"] * 2 + ["Kitui"] * 2,
            "days_after_planting": [40.0, 40.0, 41.0, 90.0, 40.0, 40.0, 150.0, 150.0],
        }
    )


def test_strata_count_current_rows() -> None:
    strata = current_strata(_current(), window_days=1)
    counts = {tuple(row[:4]): row[4] for row in strata.itertuples(index=False)}
    assert counts == {
        ("Long Rains", 2024, "Bungoma", 40): 2,
        ("Long Rains", 2024, "Bungoma", 41): 1,
        ("Long Rains", 2024, "Bungoma", 90): 1,
        ("Long Rains", 2024, "Kitui", 40): 2,
        ("Short Rains", 2023, "Kitui", 150): 2,
    }


def test_allocation_keeps_current_proportions_within_what_history_holds() -> None:
    strata = current_strata(_current(), window_days=1)
    available = pd.Series(
        {
            ("Long Rains", 2024, "Bungoma"): 1000,
            ("Long Rains", 2024, "Kitui"): 30,  # a thin history caps its strata
            ("Short Rains", 2023, "Kitui"): 1000,
        }
    )
    target = allocate(strata, available, max_rows=800).set_index(["season", "county", "cut"])[
        "target"
    ]
    assert target[("Long Rains", "Bungoma", 40)] == 200  # 2 of 8 current rows
    assert target[("Long Rains", "Bungoma", 41)] == 100
    assert target[("Long Rains", "Kitui", 40)] == 30
    assert target[("Short Rains", "Kitui", 150)] == 200


def test_history_pool_is_same_season_type_in_earlier_years() -> None:
    plots = pd.DataFrame(
        {
            "season": ["Long Rains", "Long Rains", "Long Rains", "Short Rains", "Long Rains"],
            "season_year": [2018, 2019, 2023, 2023, 2024],
        }
    )
    pool = history_pool(plots, "Long Rains", 2024, years=5)
    assert pool["season_year"].tolist() == [2019, 2023]
