"""The registry side of monitoring: the reference prediction comes from the very model
version that scored the night, and realized accuracy is judged against that version's own
evaluation metrics in MLflow (the session's trained rounds, see ``tests.fixtures``)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from nuru_yield.dev.bench.scoring import synthetic_features
from nuru_yield.models.loaded import load_model
from nuru_yield.monitoring.drift import PREDICTION
from nuru_yield.monitoring.monitor import champion_predictor, evaluation_metrics
from nuru_yield.names import MODEL_NAME
from tests.fixtures.scoring import Registry


def _features() -> pd.DataFrame:
    batches = synthetic_features(200, dt.date(2025, 5, 1), seed=3, batch_rows=100)
    return pd.concat(batch.to_pandas() for batch in batches)


def test_reference_is_predicted_by_the_version_that_scored(registry: Registry) -> None:
    scored = pd.DataFrame({"model_version": [registry.candidate] * 3, PREDICTION: 1.0})
    predict = champion_predictor(scored)
    assert predict is not None
    features = _features()
    model = load_model(f"models:/{MODEL_NAME}/{registry.candidate}")
    expected = model.predict(model.features(features))
    np.testing.assert_allclose(predict(features), expected)
    champion = load_model(f"models:/{MODEL_NAME}/{registry.champion}")
    assert not np.allclose(predict(features), champion.predict(champion.features(features)))


def test_unloadable_version_leaves_the_prediction_unreferenced(registry: Registry) -> None:
    assert champion_predictor(pd.DataFrame({"model_version": ["999"], PREDICTION: 1.0})) is None
    assert champion_predictor(pd.DataFrame({"model_version": [registry.champion]})) is None


def test_evaluation_metrics_per_lead_time_come_from_the_versions_run(registry: Registry) -> None:
    metrics = evaluation_metrics([registry.champion, "999"])
    assert set(metrics) == {registry.champion}  # an unknown version is skipped, not fatal
    champion = metrics[registry.champion]
    assert champion["rmse"] > 0
    assert any(key.startswith("dap/") and key.endswith("/rmse") for key in champion)
