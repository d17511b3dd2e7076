"""What scoring loads: a registered model with its feature order and calibrated intervals.

Each logged candidate carries, in its MLmodel ``metadata``, the ``FEATURE_COLUMNS`` order it
was fitted on and its conformal interval offsets, so :func:`load_model` rebuilds exactly the
predictions, intervals and TreeSHAP contributions that training evaluated — scoring
re-derives nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from nuru_yield.errors import RegistryError
from nuru_yield.training.intervals import INTERVAL_METHOD, ConformalIntervals
from nuru_yield.training.treeshap import PairwiseExplainer, compile_explainer

if TYPE_CHECKING:
    import pandas as pd

MODEL_ARTIFACT = "model"


def model_metadata(
    candidate: str, feature_columns: Sequence[str], intervals: ConformalIntervals
) -> dict[str, Any]:
    """The MLmodel ``metadata`` logged with every candidate (read back by :func:`load_model`)."""
    return {
        "candidate": candidate,
        "feature_columns": list(feature_columns),
        "intervals": intervals.to_dict(),
    }


def checked_metadata(metadata: dict[str, Any] | None, source: str) -> dict[str, Any]:
    """``metadata`` if it is that of a model logged by training, else a RegistryError."""
    if not metadata or "feature_columns" not in metadata or "intervals" not in metadata:
        raise RegistryError(
            f"{source} has no model logged by nuru-yield training "
            "(no feature/interval metadata): scoring could not use it"
        )
    method = metadata["intervals"].get("method")
    if method != INTERVAL_METHOD:
        raise RegistryError(
            f"{source} has intervals of method {method!r}, this version reproduces "
            f"{INTERVAL_METHOD!r} only"
        )
    return metadata


@dataclass(frozen=True)
class ServingModel:
    """A fitted native estimator with its feature order, intervals and registry identity."""

    estimator: Any
    feature_columns: tuple[str, ...]
    intervals: ConformalIntervals
    name: str | None = None
    version: str | None = None
    run_id: str | None = None

    def features(self, frame: pd.DataFrame) -> np.ndarray:
        """The float64 feature matrix of ``frame`` in this model's column order."""
        return frame.loc[:, list(self.feature_columns)].to_numpy(dtype=np.float64)

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Point forecasts (kg/ha) for a float64 matrix in ``feature_columns`` order."""
        return np.asarray(self.estimator.predict(features), dtype=np.float64)

    def interval(
        self, predicted: np.ndarray, days_after_planting: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The calibrated interval around ``predicted`` (see :class:`ConformalIntervals`)."""
        return self.intervals.interval(predicted, days_after_planting)

    def contributions(self, features: np.ndarray) -> np.ndarray:
        """Exact TreeSHAP contributions: shape ``(rows, len(feature_columns) + 1)``, the last
        column the bias; each row sums to the prediction. A pairwise model (every model
        training fits now) is explained from compiled tables; any other tree model by its
        library's native implementation, a voting ensemble's being its members' averaged
        with its weights."""
        features = np.asarray(features, dtype=np.float64)
        if self.explainer is not None:
            return self.explainer.contributions(features)
        return native_contributions(self.estimator, features)

    @cached_property
    def explainer(self) -> PairwiseExplainer | None:
        """The compiled TreeSHAP tables, or ``None`` for a model that is not pairwise."""
        return compile_explainer(self.estimator, len(self.feature_columns))


def native_contributions(estimator: Any, features: np.ndarray) -> np.ndarray:
    """TreeSHAP contributions from the libraries' own (slow, exact) implementations."""
    if hasattr(estimator, "named_estimators_"):
        members = [native_contributions(member, features) for member in estimator.estimators_]
        return np.average(members, axis=0, weights=estimator.weights)
    if hasattr(estimator, "booster_"):  # lightgbm
        return np.asarray(estimator.booster_.predict(features, pred_contrib=True))
    if hasattr(estimator, "get_booster"):  # xgboost, including its random forest
        import xgboost

        matrix = xgboost.DMatrix(features, missing=np.nan)
        return np.asarray(estimator.get_booster().predict(matrix, pred_contribs=True))
    raise TypeError(f"{type(estimator).__name__} has no native TreeSHAP contributions")


def load_model(uri: str) -> ServingModel:
    """Load a logged model: ``models:/<name>@<alias>``, ``models:/<name>/<version>``,
    ``runs:/<run_id>/model`` or a local directory. An alias is resolved once, here, and the
    resolved version is what :attr:`ServingModel.version` reports."""
    import mlflow
    from mlflow.models import Model

    from nuru_yield.training.registry import mlflow_client, resolve_model_uri

    client = mlflow_client()
    name, version = resolve_model_uri(client, uri) if uri.startswith("models:/") else (None, None)
    if name is not None:
        uri = f"models:/{name}/{version}"
    local = mlflow.artifacts.download_artifacts(artifact_uri=uri)
    logged = Model.load(local)
    metadata = checked_metadata(logged.metadata, uri)
    return ServingModel(
        estimator=mlflow.sklearn.load_model(local),
        feature_columns=tuple(metadata["feature_columns"]),
        intervals=ConformalIntervals.from_dict(metadata["intervals"]),
        name=name,
        version=version,
        run_id=logged.run_id,
    )
