"""The pure scoring of a record batch: feature matrix, TreeSHAP drivers, interval, row
schema; and the shard split of the features stream."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pyarrow as pa
import pytest

from nuru_yield.db.loader import PREDICTION_ARROW_SCHEMA
from nuru_yield.dev.bench.scoring import synthetic_features, synthetic_training_set
from nuru_yield.features.columns import FEATURE_COLUMNS, OUTPUT_SCHEMA, STATIC_FEATURES
from nuru_yield.scoring.batch import (
    LOG_SCHEMA,
    RunStamp,
    drivers_json,
    feature_matrix,
    log_batch,
    score_batch,
)

RUN_DATE = dt.date(2025, 5, 1)


def test_drivers_are_the_three_largest_absolute_contributions_in_order() -> None:
    contributions = np.array(
        [
            [10.0, -50.0, 3.0, 20.0],
            [0.5, -0.31, -0.04, 7.26],
        ]
    )
    features = np.array([[1.5, np.nan, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]])
    drivers = [
        json.loads(text) for text in drivers_json(contributions, features, list("abcd")).to_pylist()
    ]

    assert drivers[0] == [
        {"feature": "b", "value": None, "contribution": -50.0},
        {"feature": "d", "value": 4.0, "contribution": 20.0},
        {"feature": "a", "value": 1.5, "contribution": 10.0},
    ]
    assert drivers[1] == [
        {"feature": "d", "value": 8.0, "contribution": 7.3},
        {"feature": "a", "value": 5.0, "contribution": 0.5},
        {"feature": "b", "value": 6.0, "contribution": -0.3},
    ]


def test_feature_matrix_keeps_column_order_and_turns_nulls_into_nan() -> None:
    batch = pa.RecordBatch.from_pydict(
        {"x": pa.array([1.0, None]), "y": pa.array([3.0, 4.0]), "z": pa.array([9.0, 9.0])}
    )
    matrix = feature_matrix(batch, ["y", "x"])
    assert matrix.dtype == np.float64 and matrix.flags.c_contiguous
    np.testing.assert_array_equal(matrix, [[3.0, 1.0], [4.0, np.nan]])


@pytest.fixture(scope="module")
def serving_model():
    """A small fitted ensemble of training's own candidates, as scoring loads it."""
    from nuru_yield.models.intervals import ConformalIntervals
    from nuru_yield.models.loaded import ServingModel
    from nuru_yield.training.candidates import TrainingParams, ensemble_estimator, monotone_signs

    rows = synthetic_training_set(plots=60).to_pandas()
    params = TrainingParams(
        boosting_rounds=10, max_depth=3, num_leaves=7, forest_rounds=3, forest_depth=3, threads=1
    )
    estimator = ensemble_estimator(params, monotone_signs(FEATURE_COLUMNS)).fit(
        rows[FEATURE_COLUMNS].to_numpy(np.float64), rows["yield_kg_per_ha"].to_numpy()
    )
    intervals = ConformalIntervals(
        level=0.8,
        buckets=(30, 60, 90),
        level_edges=(1500.0,),
        lower_factors=((0.4, 0.5), (0.5, 0.6), (0.6, 0.7)),
        upper_factors=((1.8, 1.6), (1.6, 1.5), (1.5, 1.4)),
    )
    return ServingModel(estimator, tuple(FEATURE_COLUMNS), intervals, "Ensemble", "7")


def test_score_batch_builds_prediction_rows_from_native_contributions(serving_model) -> None:
    features = next(synthetic_features(500, RUN_DATE, seed=3))
    stamp = RunStamp(RUN_DATE, "run-1", dt.datetime(2025, 5, 2, 1, tzinfo=dt.UTC))

    rows = score_batch(features, serving_model, "champion", stamp)

    assert rows.schema == PREDICTION_ARROW_SCHEMA
    assert rows.num_rows == 500
    table = rows.to_pydict()
    assert set(table["model_version"]) == {"7"} and set(table["model_name"]) == {"champion"}
    assert set(table["run_id"]) == {"run-1"} and set(table["run_date"]) == {RUN_DATE}
    predicted = np.asarray(table["predicted_yield_kg_per_ha"])
    matrix = feature_matrix(features, FEATURE_COLUMNS)
    np.testing.assert_allclose(predicted, serving_model.predict(matrix), rtol=1e-5)
    assert (np.asarray(table["yield_lower"]) < predicted).all()
    assert (predicted < np.asarray(table["yield_upper"])).all()
    # The drivers are the model's own TreeSHAP contributions, in kg/ha, of what the season
    # changes; where the plot lies is folded into its plot normal: the plot normal and every
    # season contribution add up to the forecast.
    explained = serving_model.explain(matrix)
    contributions = explained.contributions
    static = np.isin(FEATURE_COLUMNS, STATIC_FEATURES)
    plot_normal = np.asarray(table["plot_normal_kg_per_ha"])
    np.testing.assert_allclose(
        plot_normal, explained.baseline + contributions[:, static].sum(axis=1), rtol=1e-9
    )
    np.testing.assert_allclose(plot_normal + contributions[:, ~static].sum(axis=1), predicted)
    for row in (0, 137, 499):
        drivers = json.loads(table["top_drivers"][row])
        assert len(drivers) == 3
        for driver in drivers:
            column = FEATURE_COLUMNS.index(driver["feature"])
            assert driver["contribution"] == pytest.approx(contributions[row, column], abs=0.05)
        strongest = np.sort(np.abs(contributions[row, ~static]))[::-1][:3]
        assert [abs(d["contribution"]) for d in drivers] == pytest.approx(strongest, abs=0.05)

    logged = log_batch(rows, features)
    assert logged.schema == LOG_SCHEMA
    np.testing.assert_array_equal(
        logged.column("precip_total").to_numpy(), features.column("precip_total").to_numpy()
    )


def test_where_the_plot_lies_is_in_its_normal_never_among_its_drivers(serving_model) -> None:
    """Location, altitude and season kind rank among this model's three largest contributions
    on some rows, yet no driver is one of them: a support team reads what the season changed,
    from the plot's own normal."""
    features = next(synthetic_features(500, RUN_DATE, seed=4))
    stamp = RunStamp(RUN_DATE, "run-3", dt.datetime(2025, 5, 2, 1, tzinfo=dt.UTC))

    table = score_batch(features, serving_model, "champion", stamp).to_pydict()

    contributions = serving_model.explain(feature_matrix(features, FEATURE_COLUMNS)).contributions
    top_three = np.argsort(-np.abs(contributions), axis=1)[:, :3]
    static = [FEATURE_COLUMNS.index(name) for name in STATIC_FEATURES]
    assert np.isin(top_three, static).any(axis=1).sum() >= 10
    named = {d["feature"] for text in table["top_drivers"] for d in json.loads(text)}
    assert named and not named & set(STATIC_FEATURES)


def test_score_batch_blends_early_forecasts_with_the_county_normal(serving_model) -> None:
    """A model logged with a blend: forecasts are ``w × model + (1 − w) × normal`` by lead
    band, each row says its basis and normal, and the drivers still add up exactly."""
    import dataclasses

    from nuru_yield.models.leads import LEAD_BANDS
    from nuru_yield.models.normal import Blend, CountyNormal

    normal = CountyNormal({}, {"Long Rains": 2500.0, "Short Rains": 1500.0}, 2000.0)
    weights = (0.0, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
    blended_model = dataclasses.replace(serving_model, blend=Blend(LEAD_BANDS, weights, normal))
    features = next(synthetic_features(400, RUN_DATE, seed=5))
    stamp = RunStamp(RUN_DATE, "run-2", dt.datetime(2025, 5, 2, 1, tzinfo=dt.UTC))

    table = score_batch(features, blended_model, "champion", stamp).to_pydict()

    days = np.asarray(table["days_after_planting"])
    season = np.asarray(table["season"])
    expected_normal = np.where(season == "Long Rains", 2500.0, 1500.0)
    model_alone = serving_model.predict(feature_matrix(features, FEATURE_COLUMNS))
    weight = np.select([days < 15, days < 30], [0.0, 0.5], 1.0)
    predicted = np.asarray(table["predicted_yield_kg_per_ha"])
    np.testing.assert_allclose(
        predicted, weight * model_alone + (1 - weight) * expected_normal, rtol=1e-5
    )
    np.testing.assert_allclose(table["normal_kg_per_ha"], expected_normal)
    assert set(np.asarray(table["basis"])[days < 15]) <= {"normal"}
    assert set(np.asarray(table["basis"])[(days >= 15) & (days < 30)]) <= {"blended"}
    assert set(np.asarray(table["basis"])[days >= 30]) == {"model"}
    assert (days < 30).any() and (days >= 30).any()
    for row in np.flatnonzero(days >= 15)[:20]:
        drivers = json.loads(table["top_drivers"][row])
        assert all(np.isfinite(driver["contribution"]) for driver in drivers)
    # From the plot normal, exactly: the normal alone has no driver and its plot normal is the
    # county's; a blend's plot normal lies between the model's own and the county's.
    explained = serving_model.explain(feature_matrix(features, FEATURE_COLUMNS))
    static = np.isin(FEATURE_COLUMNS, STATIC_FEATURES)
    own = explained.baseline + explained.contributions[:, static].sum(axis=1)
    season_sum = explained.contributions[:, ~static].sum(axis=1)
    row_weight = np.select(
        [
            features["days_after_planting"].to_numpy() < 15,
            features["days_after_planting"].to_numpy() < 30,
        ],
        [0.0, 0.5],
        1.0,
    )
    plot_normal = np.asarray(table["plot_normal_kg_per_ha"])
    np.testing.assert_allclose(plot_normal, row_weight * own + (1 - row_weight) * expected_normal)
    np.testing.assert_allclose(plot_normal + row_weight * season_sum, predicted)


def test_pin_threads_reaches_every_member(serving_model) -> None:
    from nuru_yield.scoring.run import pin_threads

    pin_threads(serving_model.estimator, 1)
    assert {member.get_params()["n_jobs"] for member in serving_model.estimator.estimators_} == {1}


def test_shards_split_the_features_stream_without_overlap(nuru_home) -> None:
    from nuru_yield.lake import Lake
    from nuru_yield.names import features_path
    from nuru_yield.scoring.run import _shard_batches

    lake = Lake.from_settings()
    path = features_path(RUN_DATE)
    lake.write_parquet_batches(
        path, OUTPUT_SCHEMA, synthetic_features(1000, RUN_DATE, batch_rows=300)
    )
    seen = [
        batch.column("plot_id").to_pylist()
        for shard in range(3)
        for batch in _shard_batches(lake, path, shard, 3, batch_rows=300)
    ]
    ids = [plot for batch in seen for plot in batch]
    assert sorted(ids) == list(range(1000))
    assert all(len(batch) < 1000 for batch in seen)


def test_a_night_with_an_impossible_forecast_is_refused() -> None:
    from nuru_yield.errors import ForecastIntegrityError
    from nuru_yield.scoring.batch import check_forecasts

    good = np.array([100.0, 0.0, 2500.0])
    check_forecasts(good, good * 0.5, good * 2, "champion v1")  # zero yields are fine
    bad = {
        "1 negative": (np.array([-5.0, 10.0]), np.array([-9.0, 5.0]), np.array([1.0, 20.0])),
        "1 outside its interval": (
            np.array([50.0, 10.0]),
            np.array([60.0, 5.0]),
            np.array([70.0, 20.0]),
        ),
        "1 not finite": (np.array([np.nan, 10.0]), np.array([0.0, 5.0]), np.array([1.0, 20.0])),
    }
    for expected, (predicted, lower, upper) in bad.items():
        with pytest.raises(ForecastIntegrityError, match=f"of 2 rows: {expected}\\)"):
            check_forecasts(predicted, lower, upper, "champion v1")


def test_score_batch_refuses_a_model_that_can_forecast_below_zero(serving_model) -> None:
    """A yield-scale model (an old squared-error registration promoted by hand, say) is
    read as log-scale: its forecasts are absurd, and the night is refused, not stored."""
    from xgboost import XGBRegressor

    from nuru_yield.errors import ForecastIntegrityError
    from nuru_yield.models.loaded import ServingModel

    rows = synthetic_training_set(plots=30).to_pandas()
    yield_scale = XGBRegressor(n_estimators=5, max_depth=3, n_jobs=1).fit(
        rows[FEATURE_COLUMNS].to_numpy(np.float64), rows["yield_kg_per_ha"].to_numpy()
    )
    model = ServingModel(yield_scale, tuple(FEATURE_COLUMNS), serving_model.intervals, "Old", "1")
    stamp = RunStamp(RUN_DATE, "run-2", dt.datetime(2025, 5, 2, 1, tzinfo=dt.UTC))
    features = next(synthetic_features(200, RUN_DATE, seed=4))
    with pytest.raises(ForecastIntegrityError, match="champion v1 produced impossible"):
        score_batch(features, model, "champion", stamp)


def test_driver_values_carry_no_float_noise() -> None:
    contributions = np.array([[5.0, -1.0, 0.5]])
    features = np.array([[86.39999999999999, 35.7703471234, 0.2447]])
    drivers = json.loads(drivers_json(contributions, features, ["rain", "lon", "ndvi"])[0].as_py())
    assert [d["value"] for d in drivers] == [86.4, 35.770347, 0.2447]
