"""Realized accuracy arithmetic: RMSE, MAE, bias and coverage per season × version × lead."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from nuru_yield.monitoring.accuracy import (
    combine,
    error_sums,
    finalize,
    fresh_rows,
    realized_accuracy,
)

BUCKETS = (30, 60, 90, 120, 180)


def _forecasts(dap: list[int], predicted: list[float], plots: list[int], version: str = "3"):
    n = len(dap)
    return pd.DataFrame(
        {
            "plot_id": plots,
            "season_year": [2024] * n,
            "season": ["Long Rains"] * n,
            "model_name": ["champion"] * n,
            "model_version": [version] * n,
            "days_after_planting": dap,
            "predicted_yield_kg_per_ha": predicted,
            "yield_lower": [p - 200 for p in predicted],
            "yield_upper": [p + 200 for p in predicted],
        }
    )


LABELS = pd.DataFrame(
    {
        "plot_id": [1, 2, 3],
        "season_year": [2024] * 3,
        "season": ["Long Rains"] * 3,
        "yield_kg_per_ha": [1000.0, 2000.0, 3000.0],
    }
)


def test_metrics_by_hand() -> None:
    # Plot 1 over-forecast by 100 (inside ±200), plot 2 under by 300 (outside), plot 3 exact;
    # all at 45 days after planting → the 30-day lead-time bucket. Plot 9 has no label.
    forecasts = _forecasts([45, 50, 59, 45], [1100.0, 1700.0, 3000.0, 500.0], [1, 2, 3, 9])
    (row,) = realized_accuracy(forecasts, LABELS, BUCKETS).to_dict(orient="records")
    assert row["lead_time_days"] == 30 and row["n"] == 3
    assert row["rmse"] == pytest.approx(math.sqrt((100**2 + 300**2 + 0) / 3))
    assert row["mae"] == pytest.approx(400 / 3)
    assert row["bias"] == pytest.approx((100 - 300 + 0) / 3)
    assert row["coverage"] == pytest.approx(2 / 3)
    assert row["too_few_labels"]  # 3 labelled forecasts: reported, flagged


def test_groups_with_enough_labels_are_not_flagged() -> None:
    many = pd.concat([LABELS.assign(plot_id=LABELS["plot_id"] + 10 * k) for k in range(10)])
    forecasts = _forecasts([45] * len(many), [1000.0] * len(many), many["plot_id"].tolist())
    (row,) = realized_accuracy(forecasts, many, BUCKETS).to_dict(orient="records")
    assert row["n"] == 30 and not row["too_few_labels"]


def test_groups_by_lead_time_and_version() -> None:
    forecasts = pd.concat(
        [
            _forecasts([20, 95], [1000.0, 2500.0], [1, 2]),  # before 30 → first bucket; 95 → 90
            _forecasts([150], [3000.0], [3], version="4"),
        ]
    )
    result = realized_accuracy(forecasts, LABELS, BUCKETS).set_index(
        ["model_version", "lead_time_days"]
    )
    assert sorted(result.index.tolist()) == [("3", 30), ("3", 90), ("4", 120)]
    assert result.loc[("3", 90), "bias"] == pytest.approx(500.0)
    assert result.loc[("4", 120), "rmse"] == 0.0


def test_partial_sums_combine_to_the_whole() -> None:
    rng = np.random.default_rng(2)
    plots = rng.integers(1, 4, 300).tolist()
    forecasts = _forecasts(
        rng.integers(10, 170, 300).tolist(), rng.normal(2000, 600, 300).tolist(), plots
    )
    whole = realized_accuracy(forecasts, LABELS, BUCKETS)
    chunks = (forecasts.iloc[start : start + 43] for start in range(0, 300, 43))
    parts = combine(error_sums(chunk, LABELS, BUCKETS) for chunk in chunks)
    pd.testing.assert_frame_equal(finalize(parts), whole)


def test_missing_interval_gives_no_coverage() -> None:
    forecasts = _forecasts([40], [1000.0], [1]).assign(yield_lower=np.nan, yield_upper=np.nan)
    (row,) = realized_accuracy(forecasts, LABELS, BUCKETS).to_dict(orient="records")
    assert row["n"] == 1 and math.isnan(row["coverage"])


def test_no_labels_no_rows() -> None:
    assert realized_accuracy(_forecasts([40], [1.0], [9]), LABELS, BUCKETS).empty
    assert finalize(combine([])).empty


def test_fresh_rows_are_new_changed_or_already_reported_for_the_date() -> None:
    forecasts = _forecasts([40, 70, 100], [1000.0, 2000.0, 3000.0], [1, 2, 3])
    performance = realized_accuracy(forecasts, LABELS, BUCKETS)  # leads 30, 60, 90; n = 1
    before = performance.iloc[[0, 1]].assign(n=[1, 5])  # 30 unchanged, 60 changed, 90 new
    assert fresh_rows(performance, before, before.iloc[:0])["lead_time_days"].tolist() == [60, 90]
    # A rerun of the date: nothing differs from the table any more, but the first run's
    # report listed lead 60 as fresh with the same n.
    reported = performance.iloc[[1]]
    assert fresh_rows(performance, performance, reported)["lead_time_days"].tolist() == [60]
    assert fresh_rows(performance, performance, reported.assign(n=9)).empty
