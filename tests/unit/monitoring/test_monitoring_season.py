"""The season to date against the county's normal to date, and in words: what the drift
report calls a season signal and the county bulletin prints."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nuru_yield.monitoring.season import compare_to_normal, family_of, phrase, phrases


def _rows(county: str, season: str, n: int, **means: float) -> pd.DataFrame:
    """``n`` plots whose features average ``means`` (half a unit either side)."""
    spread = np.tile([-0.5, 0.5], n // 2)
    return pd.DataFrame(
        {"county": county, "season": season, **{name: v + spread for name, v in means.items()}}
    )


def test_each_county_and_season_is_set_beside_its_own_normal() -> None:
    current = pd.concat(
        [
            _rows("Makueni", "Long Rains", 40, precip_total=60.0, tmax_mean=31.5,
                  max_dry_spell_days=18.0, mean_ndvi=0.30),
            _rows("Bungoma", "Long Rains", 20, precip_total=210.0, tmax_mean=26.0,
                  max_dry_spell_days=4.0, mean_ndvi=0.55),
            _rows("Makueni", "Short Rains", 10, precip_total=300.0, tmax_mean=29.0,
                  max_dry_spell_days=9.0, mean_ndvi=0.40),
        ]
    )  # fmt: skip
    normal = pd.concat(
        [
            _rows("Makueni", "Long Rains", 100, precip_total=100.0, tmax_mean=30.0,
                  max_dry_spell_days=9.0, mean_ndvi=0.38),
            _rows("Bungoma", "Long Rains", 60, precip_total=200.0, tmax_mean=26.2,
                  max_dry_spell_days=5.0, mean_ndvi=0.56),
        ]
    )  # fmt: skip

    table = compare_to_normal(current, normal)

    keys = list(zip(table["county"], table["season"], strict=True))
    assert keys == [
        (None, "Long Rains"),
        ("Bungoma", "Long Rains"),
        ("Makueni", "Long Rains"),
        (None, "Short Rains"),
        ("Makueni", "Short Rains"),
    ]
    makueni = table.iloc[2]
    assert makueni["n_plots"] == 40 and makueni["n_normal"] == 100
    assert makueni["rain_mm"] == pytest.approx(60.0)
    assert makueni["rain_pct_of_normal"] == pytest.approx(60.0)
    assert makueni["tmax_departure_c"] == pytest.approx(1.5)
    assert makueni["ndvi_departure"] == pytest.approx(-0.08)
    everyone = table.iloc[0]  # all Long Rains plots against all of their normal
    assert everyone["n_plots"] == 60 and everyone["n_normal"] == 160
    assert everyone["rain_mm"] == pytest.approx((40 * 60 + 20 * 210) / 60)
    assert everyone["normal_rain_mm"] == pytest.approx((100 * 100 + 60 * 200) / 160)
    # Short Rains in Makueni has no history: no normal, said so, not guessed.
    short = table.iloc[4]
    assert short["n_normal"] == 0 and np.isnan(short["normal_rain_mm"])
    assert np.isnan(short["rain_pct_of_normal"]) and phrases(short) == []
    assert len(compare_to_normal(current, normal, overall=False)) == 3


def test_departures_in_the_words_of_a_bulletin() -> None:
    row = {
        "rain_mm": 60.0, "normal_rain_mm": 100.0,
        "tmax_c": 31.5, "normal_tmax_c": 30.0,
        "dry_spell_days": 18.0, "normal_dry_spell_days": 9.0,
        "ndvi": 0.30, "normal_ndvi": 0.38,
    }  # fmt: skip
    assert phrases(row) == [
        "rain 40% below the county's normal to date",
        "days 1.5 °C hotter than the county's normal to date",
        "longest dry spell 18 days against 9 normally",
        "vegetation (NDVI 0.30) 0.08 below the county's normal to date",
    ]
    wet = {**row, "rain_mm": 130.0, "tmax_c": 30.2, "dry_spell_days": 10.0, "ndvi": 0.39}
    assert phrases(wet) == [
        "rain 30% above the county's normal to date",
        "temperatures near the county's normal to date",
        "longest dry spell as usual (10 days)",
        "vegetation (NDVI) near the county's normal to date",
    ]
    assert phrase("rain", {**row, "rain_mm": 95.0}) == (
        "rain near the county's normal to date (95%)"
    )
    # Days after planting with hardly any normal rain: a percentage would shout, mm do not.
    assert phrase("rain", {**row, "rain_mm": 6.0, "normal_rain_mm": 2.0}) == (
        "rain 6 mm to date against a normal of 2 mm"
    )
    assert phrases(row, ["vegetation", "rain"])[0].startswith("vegetation")


def test_features_belong_to_the_phrase_they_are_told_in() -> None:
    assert family_of("precip_last_30d") == "rain"
    assert family_of("heat_days") == "heat"
    assert family_of("max_dry_spell_days") == "dry spells"
    assert family_of("ndvi_auc") == "vegetation"
    assert family_of("latitude") is None and family_of("planting_doy") is None
