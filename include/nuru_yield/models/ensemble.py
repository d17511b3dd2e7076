"""The voting ensemble of log-link tree models, and the log-scale output of any candidate.

Every model predicts ``exp(margin)``: a Tweedie objective (xgboost ``reg:tweedie``,
lightgbm ``tweedie``) or a Tweedie GLM with a log link, so no forecast can fall below zero
whatever the inputs, and exact zeros (failed crops) are valid labels. The ensemble averages
its members on the log scale — a weighted geometric mean of their forecasts — which keeps
the ensemble's log forecast the weighted mean of the members': additive, so the members'
TreeSHAP values average into the ensemble's (``nuru_yield.models.treeshap``).

Registered models name this module's class in their serialized form: it must stay at this
import path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.ensemble import VotingRegressor
from sklearn.utils import Bunch
from sklearn.utils.validation import check_is_fitted


def log_prediction(estimator: Any, features: np.ndarray) -> np.ndarray:
    """The model's forecast on the log scale (its raw margin): ``log`` of ``predict``."""
    if isinstance(estimator, LogLinkVotingRegressor):
        return estimator.predict_log(features)
    if hasattr(estimator, "booster_"):  # lightgbm
        return np.asarray(estimator.predict(features, raw_score=True), dtype=np.float64)
    if hasattr(estimator, "get_booster"):  # xgboost, including its random forest
        return np.asarray(estimator.predict(features, output_margin=True), dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.log(np.asarray(estimator.predict(features), dtype=np.float64))


class LogLinkVotingRegressor(VotingRegressor):
    """``VotingRegressor`` whose forecast is ``exp`` of the weighted mean of its members'
    log-scale forecasts (see the module docstring)."""

    def predict_log(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        features = np.asarray(X, dtype=np.float64)
        return self.combine_log([log_prediction(m, features) for m in self.estimators_])

    def combine_log(self, member_margins: Sequence[np.ndarray]) -> np.ndarray:
        """The ensemble's log forecast from its members' (in ``estimators_`` order): their
        weighted mean."""
        return np.average(np.column_stack(member_margins), axis=1, weights=self._weights_not_none)

    def predict(self, X: Any) -> np.ndarray:
        return np.exp(self.predict_log(X))

    def assembled(self, fitted: Sequence[Any]) -> LogLinkVotingRegressor:
        """A fitted copy of this ensemble from members fitted one by one (``fitted``, in the
        order of ``estimators``): what :meth:`fit` makes, for members that report progress
        or stop early as they fit."""
        if len(fitted) != len(self.estimators):
            raise ValueError(f"expected {len(self.estimators)} fitted members, got {len(fitted)}")
        ensemble = clone(self)
        ensemble.estimators_ = list(fitted)
        ensemble.named_estimators_ = Bunch(
            **{name: member for (name, _), member in zip(self.estimators, fitted, strict=True)}
        )
        return ensemble
