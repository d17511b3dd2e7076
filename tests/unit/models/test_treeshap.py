"""Compiled TreeSHAP tables give the libraries' own numbers, for every member kind."""

from __future__ import annotations

import numpy as np
import pytest
from lightgbm import LGBMRegressor
from xgboost import XGBRegressor

from nuru_yield.models.intervals import ConformalIntervals
from nuru_yield.models.loaded import ServingModel, native_contributions
from nuru_yield.models.treeshap import compile_explainer
from nuru_yield.training.candidates import (
    TrainingParams,
    ensemble_estimator,
    interaction_pairs,
)

FEATURES = 6
PARAMS = TrainingParams(
    boosting_rounds=30,
    max_depth=4,
    num_leaves=12,
    min_leaf_rows=5,
    forest_rounds=8,
    forest_depth=4,
    threads=1,
)


def _data(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(rows, FEATURES))
    # Missing values in every column but the last two: one never missing in training (so
    # lightgbm compares a NaN there as 0.0) and one binary flag.
    features[:, :4][rng.random((rows, 4)) < 0.15] = np.nan
    features[:, 5] = rng.integers(0, 2, rows)
    filled = np.nan_to_num(features)
    signal = (
        2 * filled[:, 0] + filled[:, 1] * filled[:, 2] + filled[:, 3] ** 2 + 3 * filled[:, 5]
    ) + rng.normal(scale=0.5, size=rows)
    # Non-negative and multiplicative, with exact zeros: what the log-link models fit.
    target = np.exp(0.4 * signal) * 100
    target[signal < -3] = 0.0
    return features, target


@pytest.fixture(scope="module")
def ensemble():
    features, target = _data(4_000, seed=1)
    return ensemble_estimator(PARAMS, [1, 0, 0, 0, -1, 0]).fit(features, target)


@pytest.fixture(scope="module")
def rows() -> np.ndarray:
    features, _ = _data(1_500, seed=2)
    features[:50, 4] = np.nan  # missing where training never saw a missing value
    features[50:60] = np.nan  # entirely empty rows
    return features


def test_ensemble_and_each_member_match_native_treeshap(ensemble, rows):
    for estimator in [ensemble, *ensemble.estimators_]:
        explainer = compile_explainer(estimator, FEATURES)
        assert explainer is not None, type(estimator).__name__
        compiled = explainer.contributions(rows)
        assert compiled.shape == (len(rows), FEATURES + 1)
        np.testing.assert_allclose(
            compiled, native_contributions(estimator, rows), rtol=0, atol=1e-4
        )
        np.testing.assert_allclose(
            compiled.sum(axis=1), np.log(estimator.predict(rows)), rtol=0, atol=1e-4
        )


def test_contributions_carry_real_attribution(ensemble, rows):
    """Not a constant table: the strong features dominate, the pure-noise one does not."""
    compiled = compile_explainer(ensemble, FEATURES).contributions(rows)
    spread = np.abs(compiled[:, :FEATURES]).mean(axis=0)
    assert spread[0] > 0.3 and spread[5] > 0.3
    assert spread[4] < 0.2 * spread[0]


def test_interaction_pairs_cover_every_pair_once():
    assert interaction_pairs(3) == [[0, 1], [0, 2], [1, 2]]
    assert len(interaction_pairs(19)) == 19 * 18 // 2


def test_unconstrained_models_fall_back_to_native_treeshap(rows):
    features, target = _data(2_000, seed=3)
    free = [
        XGBRegressor(n_estimators=20, max_depth=5, n_jobs=1).fit(features, target),
        LGBMRegressor(n_estimators=20, num_leaves=31, verbose=-1, n_jobs=1).fit(features, target),
    ]
    for estimator in free:
        assert compile_explainer(estimator, FEATURES) is None
        model = ServingModel(
            estimator=estimator,
            feature_columns=tuple(f"f{i}" for i in range(FEATURES)),
            intervals=ConformalIntervals(0.8, (30,), (), ((0.5,),), ((1.5,),)),
        )
        np.testing.assert_array_equal(
            model.log_contributions(rows), native_contributions(estimator, rows)
        )


def _split_values(ensemble) -> dict[int, set[float]]:
    """Per feature, every split threshold of every member, as the libraries report them."""
    values: dict[int, set[float]] = {i: set() for i in range(FEATURES)}
    for name in ("xgboost", "random_forest"):
        frame = ensemble.named_estimators_[name].get_booster().trees_to_dataframe()
        splits = frame[frame["Feature"] != "Leaf"]
        for feature, threshold in zip(splits["Feature"], splits["Split"], strict=True):
            values[int(feature.removeprefix("f"))].add(float(threshold))
    frame = ensemble.named_estimators_["lightgbm"].booster_.trees_to_dataframe()
    splits = frame[frame["split_feature"].notna()]
    for feature, threshold in zip(splits["split_feature"], splits["threshold"], strict=True):
        values[int(feature.removeprefix("Column_"))].add(float(threshold))
    return values


def test_values_at_and_beside_every_threshold_take_the_libraries_branch(ensemble):
    """Exactness where it is hardest: xgboost rounds to float32 (ties to even) and compares
    with <, lightgbm compares float64 with <=. Rows take every threshold, its float64 and
    float32 neighbours and the exact float32 halfway points."""
    rng = np.random.default_rng(4)
    columns = []
    for thresholds in _split_values(ensemble).values():
        probes = set()
        for threshold in thresholds:
            single = np.float32(threshold)
            below, above = (np.nextafter(single, np.float32(side)) for side in (-np.inf, np.inf))
            probes |= {threshold, float(single), float(below), float(above)}
            probes |= {float(np.nextafter(threshold, side)) for side in (-np.inf, np.inf)}
            probes |= {(float(below) + float(single)) / 2, (float(single) + float(above)) / 2}
        columns.append(np.array(sorted(probes)))
    rows = max(len(column) for column in columns)
    matrix = np.column_stack([rng.permutation(np.resize(column, rows)) for column in columns])
    compiled = compile_explainer(ensemble, FEATURES).contributions(matrix)
    np.testing.assert_allclose(compiled.sum(axis=1), np.log(ensemble.predict(matrix)), atol=1e-4)
    np.testing.assert_allclose(compiled, native_contributions(ensemble, matrix), atol=1e-4)
