"""The blend toward the county normal: learned per lead-time band on held-out seasons, never
on noise, exact for the drivers, and what each forecast says it rests on."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nuru_yield.models.leads import LEAD_BANDS, band_label, lead_band
from nuru_yield.models.loaded import Explanation
from nuru_yield.models.normal import BLENDED, MODEL, NORMAL, Blend, CountyNormal, basis_of

NORMAL_KG = 2000.0
COUNTIES = [f"county-{index}" for index in range(12)]


def _held_out(days: int, model_skill: float, rows: int = 2400, seed: int = 0):
    """Rows of one band: yields spread around a 2,000 kg/ha normal by a county-season shock
    and plot noise; the model sees ``model_skill`` of the shock (0: none, pure noise)."""
    rng = np.random.default_rng(seed)
    county = rng.integers(len(COUNTIES), size=rows)
    shock = rng.normal(0, 500, len(COUNTIES))[county]
    actual = NORMAL_KG + shock + rng.normal(0, 400, rows)
    noise = rng.normal(0, 600, rows) * (1 - model_skill)
    model = NORMAL_KG + model_skill * shock + noise
    clusters = np.array([COUNTIES[c] for c in county], dtype=object)
    return actual, model, np.full(rows, days), clusters


def _normal() -> CountyNormal:
    return CountyNormal({}, {"Long Rains": NORMAL_KG}, NORMAL_KG)


def _fit(parts):
    actual, model, days, clusters = (np.concatenate(values) for values in zip(*parts, strict=True))
    normal = _normal()
    return Blend.fit(actual, model, days, normal, np.full(len(actual), NORMAL_KG), clusters)


def test_bands_are_fine_early_and_named_for_people() -> None:
    assert LEAD_BANDS == (0, 15, 30, 45, 60, 90, 120, 150)
    assert lead_band(np.array([0, 9, 14, 15, 29, 30, 59, 60, 89, 149, 150, 400])).tolist() == [
        0, 0, 0, 15, 15, 30, 45, 60, 60, 120, 150, 150
    ]  # fmt: skip
    assert [band_label(b) for b in (0, 15, 60, 150)] == ["0–15", "15–30", "60–90", "150+"]


def test_a_useless_model_falls_back_to_the_normal_and_a_skilled_one_is_trusted() -> None:
    blend = _fit([_held_out(5, 0.0, seed=1), _held_out(70, 0.9, seed=2)])
    weights = dict(zip(blend.bands, blend.weights, strict=True))
    assert weights[0] <= 0.2  # noise: mostly the normal
    assert weights[60] == 1.0  # skill: the model alone
    assert weights[30] == 1.0  # no rows: the model


def test_no_shrinking_on_a_gain_within_the_noise() -> None:
    """A model nearly as good as the harvest itself is not pulled toward the normal because
    a share of 0.95 happens to score a little better on the calibration seasons."""
    rng = np.random.default_rng(0)
    county = rng.integers(len(COUNTIES), size=2400)
    actual = NORMAL_KG + rng.normal(0, 500, len(COUNTIES))[county] + rng.normal(0, 400, 2400)
    model = actual + rng.normal(0, 100, 2400)
    normal = np.full(len(actual), NORMAL_KG)
    errors = {w: np.mean((w * model + (1 - w) * normal - actual) ** 2) for w in (0.95, 1.0)}
    assert errors[0.95] < errors[1.0]  # the best share on these rows is below 1…
    clusters = np.array(COUNTIES, dtype=object)[county]
    blend = Blend.fit(actual, model, np.full(2400, 100), _normal(), normal, clusters)
    assert blend.weights[LEAD_BANDS.index(90)] == 1.0  # …but not beyond doubt


def test_apply_blends_by_band_and_says_what_each_forecast_rests_on() -> None:
    blend = Blend(LEAD_BANDS, (0.0, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0), _normal())
    blended = blend.apply(
        np.array([1000.0, 1000.0, 1000.0]),
        ["Kitui", "Kitui", "Kitui"],
        ["Long Rains"] * 3,
        np.array([3, 20, 40]),
    )
    assert blended.forecast.tolist() == [2000.0, 1500.0, 1000.0]
    assert blended.basis.tolist() == [NORMAL, BLENDED, MODEL]
    assert blended.normal.tolist() == [NORMAL_KG] * 3
    assert basis_of(np.array([1.0, 0.35, 0.0])).tolist() == [MODEL, BLENDED, NORMAL]


def test_the_blend_travels_with_the_model() -> None:
    frame = pd.DataFrame(
        {
            "county": ["A", "A", "B"],
            "season": ["Long Rains", "Long Rains", "Short Rains"],
            "yield_kg_per_ha": [1000.0, 3000.0, 500.0],
        }
    )
    blend = Blend(LEAD_BANDS, (0.25, 0.5, 1, 1, 1, 1, 1, 1), CountyNormal.fit(frame))
    again = Blend.from_dict(blend.to_dict())
    assert again == blend
    assert again.normal.values(
        ["A", "B", "C"], ["Long Rains", "Short Rains", "Short Rains"]
    ).tolist() == [
        2000.0,
        500.0,
        500.0,
    ]


def test_drivers_stay_exact_for_the_blended_forecast() -> None:
    rng = np.random.default_rng(4)
    contributions = rng.normal(0, 200, (5, 3))
    baseline = np.full(5, 1500.0)
    explanation = Explanation(baseline + contributions.sum(axis=1), baseline, contributions)
    blend = Blend(LEAD_BANDS, (0.0, 0.4, 1, 1, 1, 1, 1, 1), _normal())
    blended = blend.apply(
        explanation.forecast, ["X"] * 5, ["Long Rains"] * 5, np.array([1, 16, 20, 40, 90])
    )
    around = explanation.around(blended)
    np.testing.assert_allclose(around.baseline + around.contributions.sum(axis=1), blended.forecast)
    np.testing.assert_allclose(around.contributions[0], 0.0)  # the normal alone: no drivers
    np.testing.assert_allclose(around.contributions[1], 0.4 * contributions[1])
    np.testing.assert_allclose(around.contributions[3:], contributions[3:])
    assert around.baseline[3] == pytest.approx(1500.0)


def test_folding_where_the_plot_lies_into_its_normal_keeps_the_drivers_exact() -> None:
    """The plot normal is the blended baseline plus the static features' contributions; the
    season's features stay the drivers, unchanged, and the two still add up to the forecast."""
    rng = np.random.default_rng(5)
    contributions = rng.normal(0, 200, (6, 4))
    baseline = np.full(6, 1500.0)
    explanation = Explanation(baseline + contributions.sum(axis=1), baseline, contributions)
    blend = Blend(LEAD_BANDS, (0.0, 0.4, 1, 1, 1, 1, 1, 1), _normal())
    blended = blend.apply(
        explanation.forecast, ["X"] * 6, ["Long Rains"] * 6, np.array([1, 16, 40, 60, 90, 120])
    )
    static = [False, True, False, True]  # e.g. rain, latitude, NDVI, altitude

    folded = explanation.around(blended).folded(static)

    np.testing.assert_allclose(folded.forecast, blended.forecast)
    np.testing.assert_allclose(folded.baseline + folded.contributions.sum(axis=1), folded.forecast)
    np.testing.assert_array_equal(folded.contributions[:, [1, 3]], 0.0)
    np.testing.assert_allclose(folded.contributions[2:, [0, 2]], contributions[2:, [0, 2]])
    np.testing.assert_allclose(folded.contributions[1, [0, 2]], 0.4 * contributions[1, [0, 2]])
    # The plot normal: the county normal where the forecast is the normal alone; elsewhere
    # the model's baseline moved by where the plot lies, shrunk toward the county normal.
    assert folded.baseline[0] == pytest.approx(NORMAL_KG)
    located = baseline[2:] + contributions[2:, 1] + contributions[2:, 3]
    np.testing.assert_allclose(folded.baseline[2:], located)
    shrunk = 0.4 * (1500.0 + contributions[1, 1] + contributions[1, 3]) + 0.6 * NORMAL_KG
    assert folded.baseline[1] == pytest.approx(shrunk)
