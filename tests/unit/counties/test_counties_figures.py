"""County figures: area-weighted means, the county record and where a forecast stands in it
(% of the five-year and long-term means, percentile, lowest-on-record flags)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nuru_yield.counties.figures import (
    MIN_RECORD,
    county_means,
    county_record,
    labelled_plot_seasons,
    record_before,
    standing,
)


def _plots(values: list[float], areas: list[float] | None, county: str = "Kitui") -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "county": county,
            "season": "Long Rains",
            "season_year": 2025,
            "value": values,
        }
    )
    return frame if areas is None else frame.assign(area_ha=areas)


def test_a_county_mean_weighs_plots_by_area_when_every_area_is_known() -> None:
    means = county_means(_plots([1000.0, 3000.0], [3.0, 1.0]), "value")

    assert means["value"].tolist() == [pytest.approx(1500.0)]  # (3000 + 3000) / 4 ha
    assert means["area_weighted"].tolist() == [True]
    assert means["area_ha"].tolist() == [pytest.approx(4.0)]
    assert means["n"].tolist() == [2]


@pytest.mark.parametrize("areas", [None, [3.0, np.nan], [3.0, 0.0]])
def test_one_unknown_area_makes_every_plot_weigh_the_same(areas: list[float] | None) -> None:
    means = county_means(_plots([1000.0, 3000.0], areas), "value")

    assert means["value"].tolist() == [pytest.approx(2000.0)]
    assert means["area_weighted"].tolist() == [False]
    assert np.isnan(means["area_ha"].iloc[0])


def test_groups_are_weighted_each_on_its_own() -> None:
    frame = pd.concat(
        [_plots([1000.0, 3000.0], [3.0, 1.0]), _plots([500.0, 700.0], [np.nan, 1.0], "Embu")]
    )
    means = county_means(frame, "value").set_index("county")

    assert means.loc["Kitui", "value"] == pytest.approx(1500.0)
    assert means.loc["Embu", "value"] == pytest.approx(600.0)


def test_the_record_keeps_county_seasons_with_enough_labels() -> None:
    plots = pd.DataFrame(
        {
            "plot_id": [1, 2, 3, 1],
            "season_year": [2020, 2020, 2020, 2021],
            "season": "Long Rains",
            "county": "Kitui",
            "area_ha": 1.0,
        }
    )
    labels = pd.DataFrame(
        {
            "plot_id": [1, 2, 3, 1, 9],
            "season_year": [2020, 2020, 2020, 2021, 2021],
            "season": "Long Rains",
            "yield_kg_per_ha": [600.0, 900.0, 1200.0, 500.0, 4000.0],
        }
    )
    placed = labelled_plot_seasons(labels, plots, "yield_kg_per_ha")
    assert sorted(placed["plot_id"]) == [1, 1, 2, 3]  # plot 9 is in no county

    record = county_record(placed, "yield_kg_per_ha", min_labels=2)

    assert record[["season_year", "yield_kg_per_ha", "n"]].values.tolist() == [[2020, 900.0, 3]]


def test_standing_against_the_record() -> None:
    record = [1000.0, 1400.0, 1200.0, 1800.0, 1600.0, 2000.0]  # oldest first
    place = standing(1100.0, record)

    assert place.record_seasons == 6
    assert place.mean_5yr == pytest.approx(1600.0)  # the last five
    assert place.mean_lt == pytest.approx(1500.0)
    assert place.pct_of_5yr_mean == pytest.approx(100 * 1100 / 1600)
    assert place.pct_of_lt_mean == pytest.approx(100 * 1100 / 1500)
    assert place.hist_percentile == pytest.approx(100 * 1 / 6)
    assert place.lowest_on_record is False
    assert place.lowest3_on_record is True  # below 1400, the third lowest


def test_lowest_on_record_and_ties_count_half() -> None:
    assert standing(900.0, [1000.0, 1200.0, 1400.0, 1500.0, 1600.0]).lowest_on_record is True
    assert standing(1200.0, [1000.0, 1200.0, 1400.0]).hist_percentile == pytest.approx(50.0)
    assert standing(1700.0, [1000.0, 1200.0, 1400.0]).hist_percentile == pytest.approx(100.0)


def test_a_short_record_gives_no_comparison() -> None:
    short = standing(1000.0, [1200.0] * (MIN_RECORD - 1))
    assert short.record_seasons == MIN_RECORD - 1
    assert short.pct_of_5yr_mean is None and short.hist_percentile is None
    assert short.lowest_on_record is None
    # Three seasons compare, but "among the three lowest" would be true of anything.
    three = standing(5000.0, [1200.0, 1300.0, 1400.0])
    assert three.lowest_on_record is False and three.lowest3_on_record is None


def test_the_record_before_a_season_is_of_its_kind_and_earlier() -> None:
    record = pd.DataFrame(
        {
            "county": "Kitui",
            "season": ["Long Rains", "Short Rains", "Long Rains", "Long Rains"],
            "season_year": [2021, 2021, 2020, 2025],
            "yield_kg_per_ha": [800.0, 500.0, 700.0, 100.0],
        }
    )
    assert record_before(record, "Kitui", "Long Rains", 2025, "yield_kg_per_ha") == [700.0, 800.0]
