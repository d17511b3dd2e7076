"""Pure parts of model training: split, intervals, metrics, gate, label checks, and how
the fitted candidates behave. No MLflow, no database."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nuru_yield.errors import TrainingError
from nuru_yield.features import FEATURE_COLUMNS
from nuru_yield.training.candidates import (
    ENSEMBLE,
    LINEAR,
    NAIVE,
    TREE_MEMBERS,
    CandidateResult,
    NaiveReference,
    assess_candidates,
)
from nuru_yield.training.dataset import season_rank, split_labels, temporal_split
from nuru_yield.training.evaluation import flat_metrics, regression_metrics
from nuru_yield.training.gate import decide
from nuru_yield.training.intervals import ConformalIntervals, calibrate, training_buckets
from nuru_yield.training.serving import ServingModel
from tests.fixtures.training import TEST_PARAMS, synthetic_training_frame

BUCKETS = training_buckets((30, 60, 90, 120, None), season_max_days=180)


# --- temporal split -----------------------------------------------------------------------
def test_split_is_by_season_latest_evaluates_the_two_before_calibrate():
    frame = synthetic_training_frame(plots=10, first_year=2019, last_year=2022)
    split = temporal_split(frame)

    def seasons(part: pd.DataFrame) -> set[tuple[int, str]]:
        return set(part[["season_year", "season"]].itertuples(index=False, name=None))

    assert seasons(split.evaluation) == {(2022, "Short Rains")}
    assert seasons(split.calibration) == {(2021, "Short Rains"), (2022, "Long Rains")}
    assert max(season_rank(split.train)) < min(season_rank(split.calibration))
    assert len(split.train) + len(split.calibration) + len(split.evaluation) == len(frame)
    assert split.describe()["eval_seasons"] == "2022 Short Rains"


def test_split_needs_labels_and_three_seasons():
    frame = synthetic_training_frame(plots=5, first_year=2020, last_year=2020)
    with pytest.raises(TrainingError, match="at least 3 seasons"):
        temporal_split(frame)
    with pytest.raises(TrainingError, match="no labelled rows"):
        temporal_split(frame.iloc[:0])


def test_bad_labels_are_quarantined_with_a_reason():
    labels = pd.DataFrame(
        {
            "plot_id": [1, 2, 3, 3, 4],
            "season_year": [2020] * 5,
            "season": ["Long Rains"] * 5,
            "yield_kg_per_ha": [1500.0, -3.0, 900.0, 950.0, None],
        }
    )
    good, rejected = split_labels(labels)
    assert good["plot_id"].tolist() == [1]
    reasons = dict(zip(rejected["plot_id"], rejected["reason"], strict=True))
    assert reasons[2] == "yield_out_of_range"
    assert reasons[3] == "duplicate_label"
    assert reasons[4] == "missing_yield"


# --- intervals ----------------------------------------------------------------------------
def test_conformal_intervals_cover_and_narrow_with_days_after_planting():
    rng = np.random.default_rng(1)
    dap = np.repeat([30, 90, 180], 4000)
    relative_spread = np.select([dap == 30, dap == 90], [0.5, 0.3], 0.15)

    def draw() -> tuple[np.ndarray, np.ndarray]:
        # Errors proportional to the forecast (plus the floor), as for real yields.
        predicted = rng.uniform(200, 5000, len(dap))
        noise = rng.normal(0, 1, len(dap)) * relative_spread * (predicted + 300)
        return predicted, predicted + noise

    predicted, actual = draw()
    intervals = calibrate(actual, predicted, dap, BUCKETS, scale_floor=300)

    width = dict(
        zip(
            intervals.buckets,
            np.subtract(intervals.upper_offsets, intervals.lower_offsets),
            strict=True,
        )
    )
    assert width[30] > width[90] > width[180]
    assert width[60] == width[30]  # no calibration rows: borrows the earlier bucket's
    assert width[120] == width[90]

    # Fresh rows from the same process: 80% coverage in every bucket, for small and large
    # forecasts alike.
    new_predicted, new_actual = draw()
    lower, upper = intervals.interval(new_predicted, dap)
    inside = (new_actual >= lower) & (new_actual <= upper)
    for rows in (dap == 30, dap == 90, dap == 180, new_predicted < 1500, new_predicted > 3500):
        assert 0.77 <= inside[rows].mean() <= 0.83


def test_intervals_round_trip_and_never_go_below_zero():
    intervals = ConformalIntervals(0.8, (30, 90), (-0.8, -0.3), (0.9, 0.35), scale_floor=300)
    again = ConformalIntervals.from_dict(intervals.to_dict())
    assert again == intervals
    # A 500 kg/ha forecast has scale 800: offsets × 800 around it.
    lower, upper = again.interval(np.array([500.0, 500.0, 500.0]), np.array([10, 45, 100]))
    assert lower == pytest.approx([0.0, 0.0, 260.0])  # before day 30 counts as the first bucket
    assert upper == pytest.approx([1220.0, 1220.0, 780.0])


# --- metrics ------------------------------------------------------------------------------
def test_regression_metrics_and_mlflow_names():
    actual = np.array([1000.0, 2000.0, 3000.0, 50.0])
    predicted = np.array([1100.0, 1800.0, 3000.0, 150.0])
    metrics = regression_metrics(actual, predicted, actual - 150, actual + 50)
    assert metrics["rmse"] == pytest.approx(np.sqrt((100**2 + 200**2 + 0 + 100**2) / 4))
    assert metrics["mae"] == pytest.approx(100.0)
    # MAPE skips the failed crop (50 kg/ha): (0.1 + 0.1 + 0) / 3
    assert metrics["mape"] == pytest.approx(0.2 / 3)
    assert metrics["coverage"] == 1.0

    evaluation = {
        "overall": metrics,
        "county": {"Murang'a": {"rmse": 1.0, "r2": float("nan")}},
        "dap": {"30": {"rmse": 2.0}},
    }
    flat = flat_metrics(evaluation)
    assert flat["county/Murang_a/rmse"] == 1.0
    assert flat["dap/30/rmse"] == 2.0
    assert "county/Murang_a/r2" not in flat  # NaN left out


# --- the gate -----------------------------------------------------------------------------
def _gate(rmse: float, counties: dict[str, float], n: int = 100) -> dict:
    return {"rmse": rmse, "county": {c: {"rmse": v, "n": n} for c, v in counties.items()}}


def test_first_version_must_beat_the_naive_reference():
    naive = _gate(1000.0, {"A": 1000.0})
    assert decide(_gate(900.0, {}), None, naive, margin=0.01, tolerance=0.05).promote
    refused = decide(_gate(1000.0, {}), None, naive, margin=0.01, tolerance=0.05)
    assert not refused.promote
    assert "naive reference" in refused.reason


def test_gate_needs_the_margin_and_no_county_beyond_tolerance():
    champion = _gate(1000.0, {"A": 1000.0, "B": 1000.0, "tiny": 1000.0})
    naive = _gate(2000.0, {})
    kwargs = {"margin": 0.01, "tolerance": 0.05, "champion_version": "3"}

    too_small = decide(_gate(995.0, {"A": 990.0, "B": 1000.0}), champion, naive, **kwargs)
    assert not too_small.promote
    assert "not 1.0% better than champion v3" in too_small.reason

    # Better overall, but county B is 8% worse: refused, and the reason names B.
    county_worse = decide(_gate(950.0, {"A": 850.0, "B": 1080.0}), champion, naive, **kwargs)
    assert not county_worse.promote
    assert "B +8.0%" in county_worse.reason

    better = _gate(950.0, {"A": 900.0, "B": 1040.0, "tiny": 1500.0})
    better["county"]["tiny"]["n"] = 5  # too few rows to veto
    promoted = decide(better, champion, naive, **kwargs)
    assert promoted.promote
    assert "worst: B +4.0%" in promoted.reason


# --- fitted candidates --------------------------------------------------------------------
@pytest.fixture(scope="module")
def assessed() -> tuple[pd.DataFrame, dict[str, CandidateResult]]:
    frame = synthetic_training_frame(plots=80)
    results = assess_candidates(temporal_split(frame), FEATURE_COLUMNS, TEST_PARAMS, BUCKETS)
    return frame, {result.name: result for result in results}


def _serving(result: CandidateResult) -> ServingModel:
    return ServingModel(result.model, tuple(FEATURE_COLUMNS), result.intervals)


def test_every_candidate_is_assessed_and_models_beat_the_naive_reference(assessed):
    _, results = assessed
    assert set(results) == {*TREE_MEMBERS, LINEAR, ENSEMBLE, NAIVE}
    naive_rmse = results[NAIVE].evaluation["overall"]["rmse"]
    assert results[ENSEMBLE].evaluation["overall"]["rmse"] < 0.9 * naive_rmse
    for name, result in results.items():
        assert set(result.evaluation["dap"]) == {str(b) for b in BUCKETS}
        assert 0.6 < result.evaluation["overall"]["coverage"] < 0.95, name
        if name != NAIVE:
            assert sum(result.importances.values()) == pytest.approx(1.0)
    # The ensemble's members are the fitted single candidates, not refits.
    assert results[ENSEMBLE].model.named_estimators_["xgboost"] is results["xgboost"].model


def test_more_rain_never_lowers_the_forecast_of_a_water_stressed_plot(assessed):
    frame, results = assessed
    model = _serving(results[ENSEMBLE])
    dry = frame[frame["days_after_planting"] == 90].nsmallest(20, "precip_total")
    base = model.predict(model.features(dry))
    for extra_mm in (50.0, 150.0, 300.0):
        wetter = dry.assign(
            precip_total=dry["precip_total"] + extra_mm,
            precip_last_30d=dry["precip_last_30d"] + extra_mm / 3,
        )
        assert np.all(model.predict(model.features(wetter)) >= base - 1e-6)


def test_plot_id_alone_changes_nothing(assessed):
    frame, results = assessed
    model = _serving(results[ENSEMBLE])
    rows = frame.sample(200, random_state=0)
    relabelled = rows.assign(plot_id=rows["plot_id"] + 1_000_003)
    np.testing.assert_array_equal(
        model.predict(model.features(rows)), model.predict(model.features(relabelled))
    )


def test_native_contributions_add_up_to_the_forecast(assessed):
    frame, results = assessed
    model = _serving(results[ENSEMBLE])
    features = model.features(frame.head(50))
    contributions = model.contributions(features)
    assert contributions.shape == (50, len(FEATURE_COLUMNS) + 1)
    np.testing.assert_allclose(contributions.sum(axis=1), model.predict(features), rtol=1e-4)


def test_naive_reference_falls_back_for_unseen_combinations():
    frame = pd.DataFrame(
        {
            "county": ["A", "A", "B"],
            "season": ["Long Rains", "Long Rains", "Short Rains"],
            "yield_kg_per_ha": [1000.0, 3000.0, 500.0],
        }
    )
    naive = NaiveReference.fit(frame)
    unseen = pd.DataFrame({"county": ["A", "C", "C"], "season": ["Long Rains"] * 2 + ["Dry"]})
    assert naive.predict(unseen).tolist() == [2000.0, 2000.0, 1500.0]
