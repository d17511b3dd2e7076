"""The ranges of the inputs a model was trained on, per lead-time band: fitted from the
training rows, carried in the model's metadata, and what monitoring counts tonight's rows
against."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from nuru_yield.models.ranges import MIN_BAND_ROWS, TrainingRanges


def _training_rows() -> pd.DataFrame:
    """Rain grows with days after planting: 0–400 mm in the 0–15 band's rows, 1,000–1,400 in
    the 60–90 band's; NDVI missing on a tenth of the rows; the 150+ band nearly empty."""
    rng = np.random.default_rng(0)
    early = pd.DataFrame(
        {
            "days_after_planting": rng.integers(0, 15, 4000),
            "precip_total": rng.uniform(0, 400, 4000),
        }
    )
    late = pd.DataFrame(
        {
            "days_after_planting": rng.integers(60, 90, 4000),
            "precip_total": rng.uniform(1000, 1400, 4000),
        }
    )
    sparse = pd.DataFrame({"days_after_planting": [160] * 10, "precip_total": [50.0] * 10})
    rows = pd.concat([early, late, sparse], ignore_index=True).astype(np.float64)
    rows["mean_ndvi"] = np.where(
        rng.random(len(rows)) < 0.1, np.nan, rng.uniform(0.2, 0.8, len(rows))
    )
    return rows


def test_ranges_are_the_training_rows_inner_99_percent_per_band() -> None:
    ranges = TrainingRanges.fit(_training_rows(), ["precip_total", "mean_ndvi"])
    early, late, last = ranges.bands.index(0), ranges.bands.index(60), ranges.bands.index(150)
    assert ranges.low[early, 0] == pytest.approx(2.0, abs=1.0)
    assert ranges.high[early, 0] == pytest.approx(398.0, abs=1.0)
    assert ranges.low[late, 0] == pytest.approx(1002.0, abs=1.5)
    assert ranges.high[late, 0] == pytest.approx(1398.0, abs=1.5)
    assert 0.2 < ranges.low[early, 1] < 0.21 and 0.79 < ranges.high[late, 1] < 0.8  # NaN ignored
    assert MIN_BAND_ROWS > 10 and np.isnan(ranges.low[last]).all()  # too few rows: no range
    assert np.isnan(ranges.high[ranges.bands.index(30)]).all()  # no rows


def test_tonights_values_are_outside_when_their_band_never_saw_them() -> None:
    """500 mm ten days after planting was never seen, though later bands saw far more; a
    missing value, a band without a range and a feature the model does not know are not
    checked."""
    ranges = TrainingRanges.fit(_training_rows(), ["precip_total", "mean_ndvi"])
    tonight = pd.DataFrame(
        {
            "days_after_planting": [10.0, 10.0, 70.0, 70.0, 40.0, 10.0],
            "precip_total": [500.0, 200.0, 500.0, 1200.0, 9999.0, np.nan],
            "mean_ndvi": [0.5, 0.95, 0.5, 0.5, 0.5, 0.5],
            "tmax_mean": [30.0] * 6,
        }
    )

    outside, checked = ranges.outside(tonight, ["precip_total", "mean_ndvi", "tmax_mean"])

    assert outside[:, 0].tolist() == [True, False, True, False, False, False]
    assert checked[:, 0].tolist() == [True, True, True, True, False, False]
    assert outside[:, 1].tolist() == [False, True, False, False, False, False]
    assert not checked[:, 2].any() and not outside[:, 2].any()


def test_ranges_travel_with_the_model_as_strict_json() -> None:
    ranges = TrainingRanges.fit(_training_rows(), ["precip_total", "mean_ndvi"])
    payload = json.loads(json.dumps(ranges.to_dict(), allow_nan=False))
    back = TrainingRanges.from_dict(payload)
    assert back.bands == ranges.bands and back.features == ranges.features
    np.testing.assert_array_equal(back.low, ranges.low)
    np.testing.assert_array_equal(back.high, ranges.high)
    assert payload["quantiles"] == [0.005, 0.995]
