"""Pure parts of model training: split, intervals, metrics, gate, label checks, and how
the fitted candidates behave. No MLflow, no database."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from nuru_yield.errors import TrainingError
from nuru_yield.features.columns import FEATURE_COLUMNS
from nuru_yield.models.intervals import ConformalIntervals, calibrate, training_buckets
from nuru_yield.models.loaded import ServingModel
from nuru_yield.training.candidates import (
    ENSEMBLE,
    LINEAR,
    NAIVE,
    TREE_MEMBERS,
    CandidateResult,
    NaiveReference,
    assess_candidates,
    linear_baseline,
)
from nuru_yield.training.dataset import season_rank, split_labels, temporal_split
from nuru_yield.training.evaluation import flat_metrics, regression_metrics
from nuru_yield.training.gate import county_checks, decide
from nuru_yield.training.tracking import input_example
from tests.fixtures.training import TEST_PARAMS, synthetic_training_frame

BUCKETS = training_buckets((30, 60, 90, 120, None), season_max_days=180)


# --- temporal split -----------------------------------------------------------------------
def _seasons(part: pd.DataFrame) -> set[tuple[int, str]]:
    return set(part[["season_year", "season"]].itertuples(index=False, name=None))


def test_split_evaluates_the_newest_season_of_each_kind_and_calibrates_on_the_two_before():
    frame = synthetic_training_frame(plots=10, first_year=2019, last_year=2022)
    split = temporal_split(frame)

    assert _seasons(split.evaluation) == {(2022, "Long Rains"), (2022, "Short Rains")}
    assert _seasons(split.calibration) == {(2021, "Long Rains"), (2021, "Short Rains")}
    assert max(season_rank(split.train)) < min(season_rank(split.calibration))
    assert len(split.train) + len(split.calibration) + len(split.evaluation) == len(frame)
    assert len(split.labelled) == len(frame)  # the registered model learns from all of it
    described = split.describe()
    assert described["eval_seasons"] == "2022 Long Rains, 2022 Short Rains"
    assert described["refit_seasons"].startswith("2019 Long Rains") and described[
        "refit_seasons"
    ].endswith("2022 Short Rains")


def test_a_kind_without_recent_labels_is_still_evaluated_and_nothing_newer_trains():
    frame = synthetic_training_frame(plots=10, first_year=2018, last_year=2022)
    short_rains = frame["season"] == "Short Rains"
    frame = frame[~(short_rains & frame["season_year"].isin([2021, 2022]))]
    split = temporal_split(frame)

    assert _seasons(split.evaluation) == {(2020, "Short Rains"), (2022, "Long Rains")}
    assert _seasons(split.calibration) == {(2019, "Short Rains"), (2020, "Long Rains")}
    # 2021 Long Rains lies between the evaluated seasons: not in the hold-out fit, refitted.
    assert (2021, "Long Rains") not in _seasons(split.train) | _seasons(split.calibration)
    assert (2021, "Long Rains") in _seasons(split.labelled)


def test_split_needs_labels_and_two_seasons_before_the_evaluated_ones():
    frame = synthetic_training_frame(plots=5, first_year=2020, last_year=2020)
    with pytest.raises(TrainingError, match="at least 2 seasons before the evaluated"):
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
    dap = np.repeat([30, 90, 180], 6000)
    log_spread = np.select([dap == 30, dap == 90], [0.5, 0.3], 0.15)

    def draw() -> tuple[np.ndarray, np.ndarray]:
        # Multiplicative errors, as for real yields; low forecasts also fail outright more
        # often, so their ratios spread wider (what the level groups are for).
        predicted = rng.uniform(200, 5000, len(dap))
        actual = predicted * rng.lognormal(0.0, log_spread * (1 + 300 / predicted))
        actual[rng.random(len(dap)) < np.where(predicted < 1000, 0.06, 0.01)] = 0.0
        return predicted, actual

    predicted, actual = draw()
    intervals = calibrate(actual, predicted, dap, BUCKETS)

    spread = dict(
        zip(
            intervals.buckets,
            np.subtract(intervals.upper_factors, intervals.lower_factors).mean(axis=1),
            strict=True,
        )
    )
    assert spread[30] > spread[90] > spread[180]
    assert spread[60] == spread[30]  # no calibration rows: borrows the earlier bucket's
    assert spread[120] == spread[90]
    assert len(intervals.level_edges) == 4  # forecast quintiles

    # Fresh rows from the same process: 80% coverage in every bucket, for small and large
    # forecasts alike.
    new_predicted, new_actual = draw()
    lower, upper = intervals.interval(new_predicted, dap)
    inside = (new_actual >= lower) & (new_actual <= upper)
    lowest, highest = intervals.level_edges[0], intervals.level_edges[-1]
    for rows in (dap == 30, dap == 90, dap == 180, new_predicted < lowest, new_predicted > highest):
        assert 0.77 <= inside[rows].mean() <= 0.83


def test_small_calibration_groups_take_their_buckets_factors():
    rng = np.random.default_rng(2)
    predicted = rng.uniform(500, 3000, 120)  # 24 rows per level group: too few to trust
    actual = predicted * rng.lognormal(0, 0.3, 120)
    intervals = calibrate(actual, predicted, np.full(120, 45), BUCKETS)
    for factors in (intervals.lower_factors, intervals.upper_factors):
        assert all(len(set(row)) == 1 for row in factors)  # one pooled value per bucket


def test_every_interval_holds_its_forecast_and_never_goes_below_zero():
    rng = np.random.default_rng(7)
    dap = rng.integers(0, 200, 5000)
    predicted = rng.lognormal(6.5, 1.5, 5000)  # 10 kg/ha to tens of t/ha
    # Calibration seasons that only ever over-forecast, or only under-forecast, or failed.
    for actual in (predicted * 1.5, predicted * 0.5, np.zeros(5000)):
        intervals = calibrate(actual, predicted, dap, BUCKETS)
        lower, upper = intervals.interval(predicted, dap)
        assert np.all(lower >= 0)
        assert np.all(lower <= predicted) and np.all(predicted <= upper)
    # All failed crops: the lower end is zero, the interval still holds the forecast.
    assert np.all(np.asarray(intervals.lower_factors) == 0.0)


def test_intervals_refuse_factors_that_could_exclude_the_forecast():
    with pytest.raises(ValueError, match="0 ≤ lower ≤ 1 ≤ upper"):
        ConformalIntervals(0.8, (30,), (), ((1.2,),), ((1.5,),))
    with pytest.raises(ValueError, match="buckets × level groups"):
        ConformalIntervals(0.8, (30, 60), (), ((0.5,),), ((1.5,),))
    with pytest.raises(ValueError, match="positive forecasts"):
        calibrate(np.array([100.0]), np.array([-5.0]), np.array([30]), BUCKETS)


def test_intervals_round_trip():
    intervals = ConformalIntervals(
        0.8, (30, 90), (1000.0,), ((0.1, 0.2), (0.5, 0.6)), ((2.5, 2.1), (1.5, 1.4))
    )
    again = ConformalIntervals.from_dict(intervals.to_dict())
    assert again == intervals
    days = np.array([10, 45, 100, 100])
    lower, upper = again.interval(np.array([500.0, 500.0, 500.0, 2000.0]), days)
    assert lower == pytest.approx([50.0, 50.0, 250.0, 1200.0])  # day 10 is the first bucket
    assert upper == pytest.approx([1250.0, 1250.0, 750.0, 2800.0])


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
        "season_county": {"2024 Long Rains/Murang'a": {"rmse": 3.0}},
    }
    flat = flat_metrics(evaluation)
    assert flat["county/Murang_a/rmse"] == 1.0
    assert flat["season_county/2024 Long Rains/Murang_a/rmse"] == 3.0
    assert flat["dap/30/rmse"] == 2.0
    assert "county/Murang_a/r2" not in flat  # NaN left out


# --- the gate -----------------------------------------------------------------------------
LR, SR = "2024 Long Rains", "2024 Short Rains"


def _gate(rmse: float, cells: dict[tuple[str, str], float], n: int = 100) -> dict:
    return {
        "rmse": rmse,
        "season_county": {f"{s}/{c}": {"rmse": v, "n": n} for (s, c), v in cells.items()},
    }


def test_first_version_must_beat_the_naive_reference():
    naive = _gate(1000.0, {(LR, "A"): 1000.0})
    assert decide(_gate(900.0, {}), None, naive, margin=0.01, tolerance=0.05).promote
    refused = decide(_gate(1000.0, {}), None, naive, margin=0.01, tolerance=0.05)
    assert not refused.promote
    assert "naive reference" in refused.reason


def test_gate_needs_the_margin_and_no_season_county_beyond_tolerance():
    cells = [(LR, "Highland"), (SR, "East"), (LR, "East"), (LR, "tiny")]
    champion = _gate(1000.0, dict.fromkeys(cells, 1000.0))
    naive = _gate(2000.0, {})
    kwargs = {"margin": 0.01, "tolerance": 0.05, "champion_version": "3"}

    too_small = decide(_gate(995.0, dict.fromkeys(cells[:3], 990.0)), champion, naive, **kwargs)
    assert not too_small.promote
    assert "not 1.0% better than champion v3" in too_small.reason

    # Better overall, but the Long-Rains-only highland county is 8% worse: refused, named.
    worse = _gate(950.0, {cells[0]: 1080.0, cells[1]: 850.0, cells[2]: 900.0})
    county_worse = decide(worse, champion, naive, **kwargs)
    assert not county_worse.promote
    assert "2024 Long Rains Highland +8.0%" in county_worse.reason

    better = _gate(950.0, {cells[0]: 1040.0, cells[1]: 900.0, cells[2]: 900.0, cells[3]: 1500.0})
    better["season_county"][f"{LR}/tiny"]["n"] = 5  # too few rows to veto …
    promoted = decide(better, champion, naive, **kwargs)
    assert promoted.promote
    assert "worst: 2024 Long Rains Highland +4.0%" in promoted.reason
    # … and reported as unchecked, never silently passed.
    assert "not checked, fewer than 30 evaluation rows: 2024 Long Rains tiny (n=5)" in (
        promoted.reason
    )
    checks = {
        (c.season, c.county): c.status for c in county_checks(better, champion, tolerance=0.05)
    }
    assert checks == {
        cells[0]: "ok",
        cells[1]: "ok",
        cells[2]: "ok",
        cells[3]: "too_few_rows",
    }


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
        assert set(result.evaluation["season"]) == {"2023 Long Rains", "2023 Short Rains"}
        assert 0.6 < result.evaluation["overall"]["coverage"] < 0.95, name
        if name != NAIVE:
            assert sum(result.importances.values()) == pytest.approx(1.0)
    # The ensemble's members are the fitted single candidates, not refits.
    assert results[ENSEMBLE].model.named_estimators_["xgboost"] is results["xgboost"].model


def test_the_ensemble_is_refitted_on_every_labelled_season(assessed):
    frame, results = assessed
    ensemble = results[ENSEMBLE]
    assert ensemble.refit is not None and ensemble.refit is not ensemble.model
    assert all(result.refit is None for name, result in results.items() if name != ENSEMBLE)
    # It learned from the evaluation seasons the hold-out fit never saw.
    newest = frame[frame["season_year"] == 2023]
    matrix = newest[FEATURE_COLUMNS].to_numpy(np.float64)
    actual = newest["yield_kg_per_ha"].to_numpy()

    def rmse(model) -> float:
        return float(np.sqrt(np.mean((model.predict(matrix) - actual) ** 2)))

    assert rmse(ensemble.refit) < rmse(ensemble.model)


def test_no_candidate_can_forecast_below_zero_whatever_the_inputs(assessed):
    frame, results = assessed
    rng = np.random.default_rng(3)
    rows = frame.sample(300, random_state=1)[FEATURE_COLUMNS].to_numpy(np.float64)
    hostile = np.vstack(
        [
            rows * rng.choice([-50.0, 0.0, 50.0], size=rows.shape),  # far outside training
            np.full((5, len(FEATURE_COLUMNS)), np.nan),
            np.zeros((5, len(FEATURE_COLUMNS))),
        ]
    )
    for name, result in results.items():
        if name == NAIVE:
            continue
        model = ServingModel(result.model, tuple(FEATURE_COLUMNS), result.intervals)
        predicted = model.predict(np.nan_to_num(hostile) if name == LINEAR else hostile)
        assert np.all(np.isfinite(predicted)) and np.all(predicted > 0), name
        lower, upper = model.interval(predicted, np.full(len(predicted), 45))
        assert np.all((lower >= 0) & (lower <= predicted) & (predicted <= upper)), name


def test_a_longer_dry_spell_never_raises_the_forecast(assessed):
    frame, results = assessed
    model = _serving(results[ENSEMBLE])
    rows = frame[frame["days_after_planting"] == 90].sample(50, random_state=2)
    base = model.predict(model.features(rows))
    for extra_days in (5.0, 15.0, 40.0):
        drier = rows.assign(max_dry_spell_days=rows["max_dry_spell_days"] + extra_days)
        assert np.all(model.predict(model.features(drier)) <= base * (1 + 1e-9))


def test_plot_id_alone_changes_nothing(assessed):
    frame, results = assessed
    model = _serving(results[ENSEMBLE])
    rows = frame.sample(200, random_state=0)
    relabelled = rows.assign(plot_id=rows["plot_id"] + 1_000_003)
    np.testing.assert_array_equal(
        model.predict(model.features(rows)), model.predict(model.features(relabelled))
    )


def test_drivers_in_kg_per_ha_add_up_to_the_forecast(assessed):
    frame, results = assessed
    model = _serving(results[ENSEMBLE])
    features = model.features(frame.head(50))
    log_phi = model.log_contributions(features)
    assert log_phi.shape == (50, len(FEATURE_COLUMNS) + 1)
    np.testing.assert_allclose(np.exp(log_phi.sum(axis=1)), model.predict(features), rtol=1e-5)
    explained = model.explain(features)
    np.testing.assert_allclose(explained.forecast, model.predict(features), rtol=1e-5)
    np.testing.assert_allclose(
        explained.baseline + explained.contributions.sum(axis=1), explained.forecast, rtol=1e-9
    )
    # Each kg/ha driver keeps the sign and the rank of its log-scale value.
    assert np.array_equal(np.sign(explained.contributions), np.sign(log_phi[:, :-1]))
    assert np.array_equal(
        np.argsort(-np.abs(explained.contributions), axis=1, kind="stable"),
        np.argsort(-np.abs(log_phi[:, :-1]), axis=1, kind="stable"),
    )


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


def test_linear_baseline_reads_the_signature_dataframe_without_a_feature_name_warning():
    """MLflow's pyfunc predicts the logged input example (a DataFrame with the feature
    names) when the model is logged; the baseline, fitted on a matrix, takes it silently and
    answers exactly as for the matrix."""
    frame = synthetic_training_frame(plots=30, first_year=2019, last_year=2020)
    matrix = frame.loc[:, list(FEATURE_COLUMNS)].to_numpy(dtype=np.float64)
    model = linear_baseline(TEST_PARAMS).fit(matrix, frame["yield_kg_per_ha"].to_numpy())
    example = input_example(frame, FEATURE_COLUMNS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "X has feature names, but SimpleImputer was fitted …"
        predicted = model.predict(example)
    np.testing.assert_allclose(predicted, model.predict(example.to_numpy()))
