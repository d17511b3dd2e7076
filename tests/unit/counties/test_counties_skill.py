"""Hindcast skill: errors, the naive and trend baselines, county-level conformal factors and
the lead a night's skill is read at."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nuru_yield.counties.skill import (
    MIN_OWN_INTERVAL_SEASONS,
    MIN_SKILL_SEASONS,
    OWN,
    POOLED,
    baselines,
    errors,
    nearest_lead,
    skill_by_lead,
    skill_table,
    trend_prediction,
)
from nuru_yield.models.intervals import conformal_factors


def test_trend_is_the_least_squares_line_of_the_other_seasons() -> None:
    assert trend_prediction([2020, 2021, 2022], [1000, 1100, 1200], 2024) == pytest.approx(1400)
    assert trend_prediction([2020, 2022, 2023], [900, 1100, 1300], 2021) == pytest.approx(
        np.polyval(np.polyfit([2020, 2022, 2023], [900, 1100, 1300], 1), 2021)
    )
    assert np.isnan(trend_prediction([2020, 2021], [1000, 1100], 2022))  # too few


def test_baselines_leave_the_season_out() -> None:
    record = pd.DataFrame(
        {
            "county": ["Kitui"] * 4 + ["Embu"] * 2,
            "season": "Long Rains",
            "season_year": [2020, 2021, 2022, 2023, 2020, 2021],
            "yield_kg_per_ha": [1000.0, 1100.0, 1200.0, 1300.0, 500.0, 700.0],
        }
    )
    out = baselines(record, "yield_kg_per_ha")

    assert out.index.tolist() == record.index.tolist()
    assert out["naive"].tolist()[:4] == pytest.approx([1200, 1166.6667, 1133.3333, 1100])
    assert out["trend"].tolist()[:4] == pytest.approx([1000, 1100, 1200, 1300])  # a perfect line
    assert out["naive"].tolist()[4:] == [700.0, 500.0]
    assert out["trend"].isna().tolist()[4:] == [True, True]  # one other season: no trend


def test_errors_are_mape_and_rmse_over_the_mean() -> None:
    mape, nrmse = errors(np.array([900.0, 1300.0]), np.array([1000.0, 1000.0]))
    assert mape == pytest.approx(20.0)
    assert nrmse == pytest.approx(np.sqrt((100**2 + 300**2) / 2) / 1000)
    assert all(np.isnan(errors(np.array([np.nan]), np.array([1.0]))))


def _hindcasts(
    seasons: int, county: str = "Kitui", noise: float = 0.1, seed: int = 0
) -> pd.DataFrame:
    rng = np.random.default_rng([seed, seasons])
    actual = rng.uniform(800, 1600, seasons)
    return pd.DataFrame(
        {
            "county": county,
            "season": "Long Rains",
            "season_year": np.arange(2000, 2000 + seasons),
            "lead_days": 60,
            "forecast": actual * rng.lognormal(0, noise, seasons),
            "actual": actual,
            "naive": actual.mean(),
            "trend": actual * 1.3,
        }
    )


def test_skill_table_compares_the_model_with_both_baselines() -> None:
    hindcasts = _hindcasts(6)
    row = skill_table(hindcasts).iloc[0]

    assert row["n_seasons"] == 6
    mape, nrmse = errors(hindcasts["forecast"].to_numpy(), hindcasts["actual"].to_numpy())
    assert row["skill_mape"] == pytest.approx(mape)
    assert row["skill_nrmse"] == pytest.approx(nrmse)
    assert row["trend_nrmse"] == pytest.approx(
        0.3 * np.sqrt(np.mean(hindcasts["actual"] ** 2)) / hindcasts["actual"].mean()
    )
    assert bool(row["beats_naive"]) is bool(row["skill_nrmse"] < row["naive_nrmse"])
    assert bool(row["beats_trend"]) is True


def test_a_model_worse_than_the_county_mean_does_not_beat_it() -> None:
    hindcasts = _hindcasts(6, noise=0.6).assign(naive=lambda f: f["actual"] * 1.01)
    beats = skill_table(hindcasts).iloc[0]["beats_naive"]
    assert beats is not None and bool(beats) is False


def test_too_few_seasons_give_no_skill() -> None:
    row = skill_table(_hindcasts(MIN_SKILL_SEASONS - 1)).iloc[0]
    assert np.isnan(row["skill_nrmse"]) and row["beats_naive"] is None


def test_county_intervals_are_conformal_on_county_figures() -> None:
    """A county with nine seasons or more gets its own factors; the others share those of
    every county-season of the kind at that lead — not a sum of plot intervals."""
    long = _hindcasts(MIN_OWN_INTERVAL_SEASONS, "Kitui", noise=0.05)
    short = _hindcasts(5, "Embu", noise=0.4)
    table = skill_table(pd.concat([long, short], ignore_index=True)).set_index("county")

    own = conformal_factors((long["actual"] / long["forecast"]).to_numpy())
    assert table.loc["Kitui", "interval_scope"] == OWN
    assert (table.loc["Kitui", "lower_factor"], table.loc["Kitui", "upper_factor"]) == own
    both = pd.concat([long, short])
    pooled = conformal_factors((both["actual"] / both["forecast"]).to_numpy())
    assert table.loc["Embu", "interval_scope"] == POOLED
    assert table.loc["Embu", "interval_seasons"] == len(both)
    assert (table.loc["Embu", "lower_factor"], table.loc["Embu", "upper_factor"]) == pooled
    assert table.loc["Embu", "lower_factor"] <= 1 <= table.loc["Embu", "upper_factor"]


def test_pooled_factors_cover_about_eight_in_ten_county_seasons() -> None:
    rng = np.random.default_rng(3)
    frames = [_hindcasts(6, f"County {i}", noise=0.25, seed=i) for i in range(40)]
    hindcasts = pd.concat(frames, ignore_index=True)
    table = skill_table(hindcasts)
    lower, upper = table["lower_factor"].iloc[0], table["upper_factor"].iloc[0]
    fresh = 1000 * rng.lognormal(0, 0.25, 4000)  # new county-seasons, same errors
    covered = np.mean((fresh >= 1000 * lower) & (fresh <= 1000 * upper))
    assert 0.74 <= covered <= 0.88


def test_skill_by_lead_counts_the_counties_beating_the_mean() -> None:
    table = pd.DataFrame(
        {
            "county": ["A", "B", "C"],
            "season": "Long Rains",
            "lead_days": 30,
            "skill_mape": [10.0, 20.0, 30.0],
            "skill_nrmse": [0.1, 0.2, np.nan],
            "naive_nrmse": [0.2, 0.1, 0.3],
            "trend_nrmse": [0.3, 0.3, 0.3],
            "beats_naive": [True, False, None],
        }
    )
    row = skill_by_lead(table).iloc[0]
    assert (row["counties"], row["beats_naive"]) == (2, 1)
    assert row["skill_nrmse"] == pytest.approx(0.15)


@pytest.mark.parametrize(("days", "lead"), [(0, 30), (44, 30), (45, 30), (46, 60), (200, 120)])
def test_the_nearest_hindcast_lead(days: int, lead: int) -> None:
    assert nearest_lead(days) == lead
