"""What scoring loads: a registered model with its feature order and calibrated intervals.

Each logged candidate carries, in its MLmodel ``metadata``, the ``FEATURE_COLUMNS`` order it
was fitted on, its conformal interval factors, its link and the seasons it learned from, so
:func:`load_model` rebuilds exactly the predictions, intervals and TreeSHAP contributions
that training evaluated — scoring re-derives nothing.

Every model forecasts on the log scale (``nuru_yield.models.ensemble``). Its exact TreeSHAP
values are log-scale too: they sum to the log forecast. :meth:`ServingModel.explain` turns
them into kg/ha by the logarithmic mean ``L`` of the forecast ``f`` and the baseline ``b``
(the model's forecast with no feature known, ``exp`` of the bias): ``φ_j · L`` with ``L =
(f − b) / (ln f − ln b)``. Since ``Σ φ_j = ln f − ln b``, the kg/ha contributions sum
exactly to ``f − b``; each keeps its sign, and their order by size is the log-scale order
(the log-mean Divisia decomposition of index-number theory).

A model logged with a blend (:mod:`nuru_yield.models.normal`) forecasts ``w × model + (1 −
w) × county normal`` by lead-time band; :meth:`Explanation.around` keeps the drivers exact
for the blended forecast, and the intervals were calibrated on blended forecasts.

What a support team reads is the forecast's departure from the plot's own normal:
:meth:`Explanation.folded` moves the contributions of the features that do not change from
one season to the next (where the plot is, which rains: ``STATIC_FEATURES``) into the
baseline, which becomes the **plot normal** — the county normal adjusted for the plot's
location —, and leaves as drivers what a season changes (rain, heat, dry spells, vegetation,
planting date). Still exact: ``forecast = plot normal + Σ drivers``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from nuru_yield.models.intervals import ConformalIntervals
from nuru_yield.models.metadata import checked_metadata
from nuru_yield.models.normal import MODEL, Blend, Blended
from nuru_yield.models.ranges import TrainingRanges
from nuru_yield.models.registry import mlflow_client, resolve_model_uri
from nuru_yield.models.treeshap import PairwiseExplainer, compile_explainer

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Explanation:
    """Forecasts (kg/ha) with their exact drivers: ``baseline + contributions.sum(axis=1)``
    equals ``forecast`` (see the module docstring)."""

    forecast: np.ndarray
    baseline: np.ndarray
    contributions: np.ndarray  # rows × features, kg/ha

    def around(self, blended: Blended) -> Explanation:
        """The explanation of the blended forecast ``w·f + (1 − w)·n`` of this one: drivers
        scaled by ``w`` around the baseline ``w·b + (1 − w)·n`` (still exact)."""
        weight = blended.weight
        shrunk = weight < 1.0
        baseline = np.where(
            shrunk, weight * self.baseline + (1.0 - weight) * blended.normal, self.baseline
        )
        return Explanation(blended.forecast, baseline, self.contributions * weight[:, None])

    def folded(self, static: Sequence[bool]) -> Explanation:
        """The same forecasts explained from the plot normal: the contributions of the
        ``static`` features (one flag per column) added to the baseline, theirs set to 0; the
        others are unchanged. ``baseline + contributions.sum(axis=1)`` is still ``forecast``."""
        static = np.asarray(static, dtype=bool)
        baseline = self.baseline + self.contributions[:, static].sum(axis=1)
        return Explanation(self.forecast, baseline, np.where(static, 0.0, self.contributions))


def logarithmic_mean(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(a − b) / (ln a − ln b)`` of positive arrays, ``a`` where they are equal."""
    step = np.log(a) - np.log(b)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(step == 0, 1.0, np.expm1(step) / step)
    return b * ratio


@dataclass(frozen=True)
class ServingModel:
    """A fitted native estimator with its feature order, intervals and registry identity."""

    estimator: Any
    feature_columns: tuple[str, ...]
    intervals: ConformalIntervals
    name: str | None = None
    version: str | None = None
    run_id: str | None = None
    blend: Blend | None = field(default=None, kw_only=True)
    ranges: TrainingRanges | None = field(default=None, kw_only=True)  # of its training rows

    def features(self, frame: pd.DataFrame) -> np.ndarray:
        """The float64 feature matrix of ``frame`` in this model's column order."""
        return frame.loc[:, list(self.feature_columns)].to_numpy(dtype=np.float64)

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Point forecasts (kg/ha, never negative) for a float64 matrix in
        ``feature_columns`` order."""
        return np.asarray(self.estimator.predict(features), dtype=np.float64)

    def blended(
        self,
        model_forecast: np.ndarray,
        county: Sequence[Any],
        season: Sequence[Any],
        days_after_planting: np.ndarray,
    ) -> Blended:
        """The model's forecasts blended with the county normal by lead-time band (see
        :mod:`~nuru_yield.models.normal`); a model logged without a blend keeps its own
        (``basis`` model, no normal)."""
        if self.blend is not None:
            return self.blend.apply(model_forecast, county, season, days_after_planting)
        model_forecast = np.asarray(model_forecast, dtype=np.float64)
        rows = len(model_forecast)
        return Blended(
            model_forecast, np.full(rows, np.nan), np.ones(rows), np.full(rows, MODEL, object)
        )

    def forecast(self, rows: pd.DataFrame) -> Blended:
        """Forecasts for feature rows that carry ``county``, ``season`` and
        ``days_after_planting``: what scoring publishes, without the drivers."""
        return self.blended(
            self.predict(self.features(rows)),
            rows["county"].to_numpy(),
            rows["season"].to_numpy(),
            rows["days_after_planting"].to_numpy(),
        )

    def interval(
        self, predicted: np.ndarray, days_after_planting: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The calibrated interval around ``predicted`` (see :class:`ConformalIntervals`)."""
        return self.intervals.interval(predicted, days_after_planting)

    def log_contributions(self, features: np.ndarray) -> np.ndarray:
        """Exact TreeSHAP contributions on the log scale: shape ``(rows,
        len(feature_columns) + 1)``, the last column the bias; each row sums to the log
        forecast. A pairwise model is explained from compiled tables; any other tree model
        by its library's native implementation, a voting ensemble's being its members'
        averaged with its weights."""
        features = np.asarray(features, dtype=np.float64)
        if self.explainer is not None:
            return self.explainer.contributions(features)
        return native_contributions(self.estimator, features)

    def explain(self, features: np.ndarray) -> Explanation:
        """Forecasts and their kg/ha drivers from one pass over the trees."""
        log_phi = self.log_contributions(features)
        forecast = np.exp(log_phi.sum(axis=1))
        baseline = np.exp(log_phi[:, -1])
        scale = logarithmic_mean(forecast, baseline)
        return Explanation(forecast, baseline, log_phi[:, :-1] * scale[:, None])

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


def holdout_uri(uri: str) -> str:
    """The fit behind a logged model that learned from its training seasons only: its run's
    hold-out fit when the model is a refit (``holdout_artifact`` in its metadata), else the
    model itself. The gate compares these, on seasons neither side was fitted on."""
    import mlflow

    info = mlflow.models.get_model_info(uri)
    holdout = (info.metadata or {}).get("holdout_artifact")
    return f"runs:/{info.run_id}/{holdout}" if holdout else uri


def load_model(uri: str) -> ServingModel:
    """Load a logged model: ``models:/<name>@<alias>``, ``models:/<name>/<version>``,
    ``runs:/<run_id>/model`` or a local directory. An alias is resolved once, here, and the
    resolved version is what :attr:`ServingModel.version` reports."""
    import mlflow
    from mlflow.models import Model

    client = mlflow_client()
    name, version = resolve_model_uri(client, uri) if uri.startswith("models:/") else (None, None)
    if name is not None:
        uri = f"models:/{name}/{version}"
    local = mlflow.artifacts.download_artifacts(artifact_uri=uri)
    logged = Model.load(local)
    metadata = checked_metadata(logged.metadata, uri)
    blend, ranges = metadata.get("blend"), metadata.get("feature_ranges")
    return ServingModel(
        estimator=mlflow.sklearn.load_model(local),
        feature_columns=tuple(metadata["feature_columns"]),
        intervals=ConformalIntervals.from_dict(metadata["intervals"]),
        name=name,
        version=version,
        run_id=logged.run_id,
        blend=None if blend is None else Blend.from_dict(blend),
        ranges=None if ranges is None else TrainingRanges.from_dict(ranges),
    )
