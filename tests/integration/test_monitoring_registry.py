"""The registry side of monitoring: the reference prediction comes from the very model
version that scored the night, tonight's inputs are checked against the ranges that version
was trained on, and realized accuracy is judged against its own evaluation metrics in MLflow
(the session's trained rounds, see ``tests.fixtures``)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from nuru_yield.dev.bench.scoring import synthetic_features
from nuru_yield.features.columns import FEATURE_COLUMNS
from nuru_yield.models.loaded import load_model
from nuru_yield.models.ranges import TrainingRanges
from nuru_yield.monitoring.drift import PREDICTION
from nuru_yield.monitoring.monitor import evaluation_metrics, forecaster, scoring_model
from nuru_yield.names import MODEL_NAME
from tests.fixtures.scoring import Registry
from tests.fixtures.training import TrainedRounds


def _features() -> pd.DataFrame:
    batches = synthetic_features(200, dt.date(2025, 5, 1), seed=3, batch_rows=100)
    return pd.concat(batch.to_pandas() for batch in batches)


def test_reference_is_predicted_by_the_version_that_scored(registry: Registry) -> None:
    scored = pd.DataFrame({"model_version": [registry.candidate] * 3, PREDICTION: 1.0})
    scorer = scoring_model(scored)
    assert scorer is not None and scorer.version == registry.candidate
    predict = forecaster(scorer)
    features = _features()
    model = load_model(f"models:/{MODEL_NAME}/{registry.candidate}")
    expected = model.predict(model.features(features))
    np.testing.assert_allclose(predict(features), expected)
    champion = load_model(f"models:/{MODEL_NAME}/{registry.champion}")
    assert not np.allclose(predict(features), champion.predict(champion.features(features)))


def test_unloadable_version_leaves_the_prediction_unreferenced(registry: Registry) -> None:
    assert scoring_model(pd.DataFrame({"model_version": ["999"], PREDICTION: 1.0})) is None
    assert scoring_model(pd.DataFrame({"model_version": [registry.champion]})) is None


def test_the_version_carries_the_ranges_of_the_rows_it_was_fitted_on(
    registry: Registry, rounds: TrainedRounds
) -> None:
    """The registered refit's ranges are those of every labelled row of its training set;
    its hold-out fit's, those of the training seasons only (fitted again here from the
    logged training set, they agree)."""
    from nuru_yield.models.loaded import holdout_uri
    from nuru_yield.training.dataset import temporal_split

    uri = f"models:/{MODEL_NAME}/{registry.champion}"
    served, holdout = load_model(uri), load_model(holdout_uri(uri))
    assert served.ranges is not None and holdout.ranges is not None
    rows = rounds.lake.read_parquet(rounds.good_set.path).to_pandas()
    split = temporal_split(rows)
    for model, fitted_on in ((served, split.labelled), (holdout, split.train)):
        expected = TrainingRanges.fit(fitted_on, FEATURE_COLUMNS)
        assert model.ranges.features == tuple(FEATURE_COLUMNS)
        np.testing.assert_allclose(model.ranges.low, expected.low)
        np.testing.assert_allclose(model.ranges.high, expected.high)
    assert not np.allclose(served.ranges.high, holdout.ranges.high, equal_nan=True)


def test_evaluation_metrics_per_lead_time_come_from_the_versions_run(registry: Registry) -> None:
    metrics = evaluation_metrics([registry.champion, "999"])
    assert set(metrics) == {registry.champion}  # an unknown version is skipped, not fatal
    champion = metrics[registry.champion]
    assert champion["rmse"] > 0
    assert any(key.startswith("dap/") and key.endswith("/rmse") for key in champion)
