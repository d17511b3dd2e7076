"""A night's county rows: figures, interval from county-level factors, production, plot
share, statuses and the plain message when the model has not beaten the county mean."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nuru_yield.counties.forecasts import (
    NO_SKILL,
    OK,
    SHORT_RECORD,
    TOO_FEW_PLOTS,
    county_forecasts,
)
from nuru_yield.counties.signals import SIGNAL_COLUMNS
from nuru_yield.counties.skill import SKILL_COLUMNS

SEASON = ("Long Rains", 2025)


def _scored(
    county: str, n: int, forecast: float, days: int, area: float | None = 0.5
) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "plot_id": np.arange(n),
            "county": county,
            "season": SEASON[0],
            "season_year": SEASON[1],
            "days_after_planting": days,
            "predicted_yield_kg_per_ha": forecast,
        }
    )
    return frame if area is None else frame.assign(area_ha=area)


def _record(county: str, years: range, value: float = 1000.0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "county": county,
            "season": SEASON[0],
            "season_year": list(years),
            "yield_kg_per_ha": [value + 100 * i for i in range(len(years))],
            "n": 50,
        }
    )


def _skill(county: str, lead: int, nrmse: float, naive: float) -> dict:
    return {
        **dict.fromkeys(SKILL_COLUMNS),
        "county": county,
        "season": SEASON[0],
        "lead_days": lead,
        "n_seasons": 5,
        "skill_mape": 12.0,
        "skill_nrmse": nrmse,
        "naive_nrmse": naive,
        "trend_nrmse": 0.3,
        "beats_naive": nrmse < naive,
        "lower_factor": 0.8,
        "upper_factor": 1.25,
    }


def _rows(scored: pd.DataFrame, record: pd.DataFrame, skill: list[dict], plot_seasons=None):
    return county_forecasts(
        scored,
        plot_seasons,
        record,
        pd.DataFrame(skill, columns=SKILL_COLUMNS),
        pd.DataFrame(columns=["county", "season", "season_year", *SIGNAL_COLUMNS]),
        min_plots=30,
        target="yield_kg_per_ha",
    ).set_index("county")


def test_a_county_with_record_and_skill() -> None:
    scored = _scored("Kitui", 40, 900.0, days=62)
    record = _record("Kitui", range(2019, 2025))  # 1000 … 1500
    skill = [_skill("Kitui", 30, 0.2, 0.3), _skill("Kitui", 60, 0.15, 0.3)]
    planted = pd.DataFrame(
        {"county": ["Kitui"], "season": SEASON[0], "season_year": SEASON[1], "n": [80]}
    )

    row = _rows(scored, record, skill, planted).loc["Kitui"]

    assert row["status"] == OK and row["message"] is None
    assert (row["n_plots"], row["plot_share"], row["lead_days"]) == (40, 0.5, 62)
    assert row["forecast_kg_per_ha"] == pytest.approx(900.0)
    assert row["production_t"] == pytest.approx(900.0 * 20 / 1000)  # 40 plots × 0.5 ha
    assert row["skill_lead_days"] == 60
    assert (row["lower_kg_per_ha"], row["upper_kg_per_ha"]) == pytest.approx((720.0, 1125.0))
    assert row["pct_of_5yr_mean"] == pytest.approx(100 * 900 / 1300)  # 1100 … 1500
    assert bool(row["lowest_on_record"]) and bool(row["beats_naive"])


def test_too_few_plots_give_no_figure() -> None:
    row = _rows(_scored("Embu", 12, 900.0, 40), _record("Embu", range(2019, 2025)), []).loc["Embu"]

    assert row["status"] == TOO_FEW_PLOTS
    assert row["n_plots"] == 12
    assert pd.isna(row["forecast_kg_per_ha"]) and pd.isna(row["pct_of_5yr_mean"])
    assert "only 12 plots scored" in row["message"]


def test_a_short_record_and_no_skill_say_so() -> None:
    row = _rows(
        _scored("Embu", 30, 900.0, 40, area=None), _record("Embu", range(2023, 2025)), []
    ).loc["Embu"]

    assert row["status"] == SHORT_RECORD
    assert pd.isna(row["pct_of_5yr_mean"]) and pd.isna(row["lower_kg_per_ha"])
    assert pd.isna(row["production_t"])
    message = row["message"]
    assert "2 earlier Long Rains season(s) on record" in message
    assert "no hindcast skill" in message and "no production" in message

    no_skill = _rows(_scored("Embu", 30, 900.0, 40), _record("Embu", range(2019, 2025)), [])
    assert no_skill.loc["Embu", "status"] == NO_SKILL


def test_the_bulletin_says_plainly_when_the_model_has_not_beaten_the_county_mean() -> None:
    rows = _rows(
        _scored("Makueni", 50, 700.0, 33),
        _record("Makueni", range(2019, 2025)),
        [_skill("Makueni", 30, 0.31, 0.28)],
    )
    row = rows.loc["Makueni"]

    assert not row["beats_naive"] and row["status"] == OK
    assert "has not beaten the county's average yield" in row["message"]
    assert "0.31 against 0.28" in row["message"]
