"""Candidate models: xgboost, lightgbm, a random forest, a linear baseline, their voting
ensemble, and the naive county × season mean they must beat.

Every model takes the float64 feature matrix in ``FEATURE_COLUMNS`` order (NaN = missing,
which the tree models route natively) and is fitted on arrays, not frames, so predicting
on an ``np.ndarray`` needs no column bookkeeping. The random forest is xgboost's (each
boosting round fits a bagged forest of ``forest_trees_per_round`` trees on the residuals)
so that every ensemble member has native TreeSHAP contributions.

Yields are non-negative by construction: every model has a log link (Tweedie objective for
the trees, a Tweedie GLM for the linear baseline; see ``nuru_yield.models.ensemble``), so a
forecast is ``exp`` of something and exact zeros — failed crops — are ordinary labels.
The Tweedie variance power 1.2 had the lowest hold-out RMSE of 1.2, 1.5 and 1.8
(``nuru-yield backtest``; the table is in ``docs/DESIGN.md``, "Measurements").

``TrainingParams.interactions`` chooses the tree shape. ``pairwise`` (the default) limits
every tree path to two distinct features (:func:`interaction_pairs`): a pairwise additive
model on the log scale whose exact TreeSHAP compiles to lookup tables
(``nuru_yield.models.treeshap``), so scoring explains a million plots in seconds. ``free``
lifts the limit: more accurate, explained by the libraries' native TreeSHAP at a measured
cost of hours per million plots on two cores (both in ``docs/DESIGN.md``, "Measurements").
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from nuru_yield.models.intervals import ConformalIntervals, calibrate
from nuru_yield.names import MODEL_NAME
from nuru_yield.progress import track
from nuru_yield.training.dataset import TARGET, TemporalSplit
from nuru_yield.training.evaluation import evaluate

log = logging.getLogger(__name__)

ENSEMBLE = MODEL_NAME  # the candidate that is registered is named like the model
XGBOOST = "xgboost"
LIGHTGBM = "lightgbm"
RANDOM_FOREST = "random_forest"
LINEAR = "linear_baseline"
NAIVE = "naive_reference"
TREE_MEMBERS = (XGBOOST, LIGHTGBM, RANDOM_FOREST)

# Agronomic directions the tree models must respect, whatever the noise in the data: with
# everything else equal, a longer dry spell never raises a forecast. Rain has no such
# direction — waterlogging lowers yields in the wet west — so it is left free, as is every
# feature not named here.
MONOTONE_FEATURES: dict[str, int] = {"max_dry_spell_days": -1}
INTERACTIONS = ("pairwise", "free")


def monotone_signs(
    feature_columns: Sequence[str], directions: Mapping[str, int] = MONOTONE_FEATURES
) -> list[int]:
    """One of −1/0/+1 per feature column, from ``directions`` (features not named: 0)."""
    return [directions.get(column, 0) for column in feature_columns]


def interaction_pairs(feature_count: int) -> list[list[int]]:
    """Every pair of feature indices: the interaction constraint that keeps each tree path
    to at most two distinct features (see the module docstring)."""
    return [list(pair) for pair in itertools.combinations(range(feature_count), 2)]


@dataclass(frozen=True)
class TrainingParams:
    """Hyper-parameters shared by the candidates (tests shrink them for speed)."""

    boosting_rounds: int = 500
    learning_rate: float = 0.08
    max_depth: int = 6
    num_leaves: int = 24
    min_leaf_rows: int = 40
    forest_rounds: int = 150
    forest_trees_per_round: int = 4
    forest_learning_rate: float = 0.2
    forest_depth: int = 6
    ridge_alpha: float = 1.0
    tweedie_variance_power: float = 1.2
    interactions: str = "pairwise"  # one of INTERACTIONS (see the module docstring)
    monotone: tuple[tuple[str, int], ...] = tuple(MONOTONE_FEATURES.items())
    threads: int = 2
    seed: int = 42

    def __post_init__(self) -> None:
        if self.interactions not in INTERACTIONS:
            raise ValueError(f"interactions must be one of {INTERACTIONS}: {self.interactions!r}")


def ensemble_estimator(params: TrainingParams, monotone: Sequence[int]) -> Any:
    """The unfitted log-link voting ensemble over the three tree models (equal weights).

    ``monotone`` holds one of −1/0/+1 per feature: the direction in which more of that
    feature may move the forecast (e.g. a longer dry spell never raises it).
    """
    from lightgbm import LGBMRegressor
    from xgboost import XGBRegressor

    from nuru_yield.models.ensemble import LogLinkVotingRegressor

    constraints = tuple(int(sign) for sign in monotone)
    pairs = interaction_pairs(len(constraints)) if params.interactions == "pairwise" else None
    power = params.tweedie_variance_power

    def xgboost_trees(**shape: Any) -> Any:
        return XGBRegressor(
            objective="reg:tweedie",
            tweedie_variance_power=power,
            min_child_weight=params.min_leaf_rows,
            tree_method="hist",
            monotone_constraints=constraints,
            # xgboost's scikit-learn wrapper rejects index lists on unnamed arrays; the
            # string form is what it passes to the booster anyway.
            interaction_constraints=None if pairs is None else str(pairs),
            n_jobs=params.threads,
            random_state=params.seed,
            **shape,
        )

    return LogLinkVotingRegressor(
        [
            (
                XGBOOST,
                xgboost_trees(
                    n_estimators=params.boosting_rounds,
                    learning_rate=params.learning_rate,
                    max_depth=params.max_depth,
                    subsample=0.8,
                    colsample_bytree=0.8,
                ),
            ),
            (
                LIGHTGBM,
                LGBMRegressor(
                    objective="tweedie",
                    tweedie_variance_power=power,
                    n_estimators=params.boosting_rounds,
                    learning_rate=params.learning_rate,
                    num_leaves=params.num_leaves,
                    min_child_samples=params.min_leaf_rows,
                    subsample=0.8,
                    subsample_freq=1,
                    colsample_bytree=0.8,
                    monotone_constraints=list(constraints),
                    interaction_constraints=pairs or "",
                    importance_type="gain",
                    n_jobs=params.threads,
                    random_state=params.seed,
                    verbose=-1,
                ),
            ),
            (
                RANDOM_FOREST,
                xgboost_trees(
                    n_estimators=params.forest_rounds,
                    num_parallel_tree=params.forest_trees_per_round,
                    learning_rate=params.forest_learning_rate,
                    max_depth=params.forest_depth,
                    subsample=0.632,
                    colsample_bynode=0.5,
                ),
            ),
        ]
    )


def linear_baseline(params: TrainingParams) -> Any:
    """Median imputation, standardisation and a ridge-penalised Tweedie GLM (log link).

    Like the ensemble, it reads its input as a plain matrix in the training column order:
    it is fitted on one, and MLflow's pyfunc (which checks the logged input example at
    logging time) hands it the signature's DataFrame, whose column names the imputer would
    otherwise warn about ("X has feature names, but SimpleImputer was fitted without")."""
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import TweedieRegressor
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    return Pipeline(
        [
            ("matrix", FunctionTransformer(np.asarray)),
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
            ("scale", StandardScaler()),
            (
                "glm",
                TweedieRegressor(
                    power=params.tweedie_variance_power,
                    link="log",
                    alpha=params.ridge_alpha,
                    max_iter=1000,
                ),
            ),
        ]
    )


def fit_candidates(
    features: np.ndarray, target: np.ndarray, params: TrainingParams, monotone: Sequence[int]
) -> dict[str, Any]:
    """Fit every model candidate. The ensemble is fitted once; its fitted members are the
    single tree candidates (no model is trained twice)."""
    rows, columns = features.shape
    log.info(
        "fitting %s and %s on %d rows × %d features", ", ".join(TREE_MEMBERS), LINEAR, rows, columns
    )
    started = time.monotonic()
    ensemble = ensemble_estimator(params, monotone).fit(features, target)
    fitted: dict[str, Any] = dict(ensemble.named_estimators_)
    fitted[LINEAR] = linear_baseline(params).fit(features, target)
    fitted[ENSEMBLE] = ensemble
    log.info("fitted every candidate in %.1fs", time.monotonic() - started)
    return fitted


def feature_importances(estimator: Any, feature_columns: Sequence[str]) -> dict[str, float]:
    """Importances normalised to sum to 1: the models' own (gain) for trees, |coefficient|
    on standardised features for the linear baseline, the members' mean for the ensemble."""
    if hasattr(estimator, "named_estimators_"):
        members = [feature_importances(m, feature_columns) for m in estimator.estimators_]
        raw = np.mean([[m[c] for c in feature_columns] for m in members], axis=0)
    elif hasattr(estimator, "named_steps"):
        raw = np.abs(estimator.named_steps["glm"].coef_)
    else:
        raw = np.asarray(estimator.feature_importances_, dtype=np.float64)
    total = float(np.sum(raw))
    shares = raw / total if total > 0 else np.zeros(len(feature_columns))
    return {column: float(share) for column, share in zip(feature_columns, shares, strict=True)}


@dataclass(frozen=True)
class NaiveReference:
    """Mean yield per county × season of the training rows — the reference every model must
    beat. Falls back to the season mean, then the overall mean, for unseen combinations."""

    by_county_season: dict[tuple[str, str], float]
    by_season: dict[str, float]
    overall: float

    @classmethod
    def fit(cls, frame: pd.DataFrame) -> NaiveReference:
        county_season = frame.groupby(["county", "season"], observed=True)[TARGET].mean()
        season = frame.groupby("season", observed=True)[TARGET].mean()
        return cls(
            by_county_season={(str(c), str(s)): float(v) for (c, s), v in county_season.items()},
            by_season={str(s): float(v) for s, v in season.items()},
            overall=float(frame[TARGET].mean()),
        )

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        counties = frame["county"].astype(str).to_numpy()
        seasons = frame["season"].astype(str).to_numpy()
        return np.array(
            [
                self.by_county_season.get((c, s), self.by_season.get(s, self.overall))
                for c, s in zip(counties, seasons, strict=True)
            ],
            dtype=np.float64,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "county_season_means": [
                {"county": c, "season": s, "mean_yield_kg_per_ha": v}
                for (c, s), v in sorted(self.by_county_season.items())
            ],
            "season_means": self.by_season,
            "overall_mean": self.overall,
        }


@dataclass(frozen=True)
class CandidateResult:
    """A fitted candidate with its calibrated intervals and its evaluation.

    ``model`` is the hold-out fit (training seasons only), whose intervals and evaluation
    these are; ``refit`` is the same candidate refitted on every labelled season — what is
    registered — for the ensemble only (refitting every candidate would double training)."""

    name: str
    model: Any  # a fitted estimator, or the NaiveReference
    intervals: ConformalIntervals
    evaluation: dict[str, Any]
    predicted: np.ndarray  # on the evaluation rows
    importances: dict[str, float] | None
    refit: Any = None


def _matrix(frame: pd.DataFrame, feature_columns: Sequence[str]) -> np.ndarray:
    return frame.loc[:, list(feature_columns)].to_numpy(dtype=np.float64)


def assess_candidates(
    split: TemporalSplit,
    feature_columns: Sequence[str],
    params: TrainingParams,
    buckets: Sequence[int],
) -> list[CandidateResult]:
    """Fit every candidate (and the naive reference) on the training seasons, calibrate its
    intervals on the calibration seasons and evaluate it on the evaluation seasons, per
    days-after-planting bucket; then refit the ensemble on every labelled season."""
    monotone = monotone_signs(feature_columns, dict(params.monotone))
    train_target = split.train[TARGET].to_numpy(dtype=np.float64)
    fitted = fit_candidates(_matrix(split.train, feature_columns), train_target, params, monotone)
    models: dict[str, Any] = {**fitted, NAIVE: NaiveReference.fit(split.train)}

    def predict(name: str, frame: pd.DataFrame) -> np.ndarray:
        # The naive reference looks up county and season; the models take the feature matrix.
        return models[name].predict(frame if name == NAIVE else _matrix(frame, feature_columns))

    results = []
    for name, model in track(models.items(), "calibrating and evaluating", len(models)):
        intervals = calibrate(
            split.calibration[TARGET].to_numpy(dtype=np.float64),
            predict(name, split.calibration),
            split.calibration["days_after_planting"].to_numpy(),
            buckets,
        )
        predicted = predict(name, split.evaluation)
        lower, upper = intervals.interval(
            predicted, split.evaluation["days_after_planting"].to_numpy()
        )
        results.append(
            CandidateResult(
                name=name,
                model=model,
                intervals=intervals,
                evaluation=evaluate(split.evaluation, predicted, buckets, lower, upper),
                predicted=predicted,
                importances=None if name == NAIVE else feature_importances(model, feature_columns),
                refit=refit_ensemble(split, feature_columns, params) if name == ENSEMBLE else None,
            )
        )
    return results


def refit_ensemble(
    split: TemporalSplit, feature_columns: Sequence[str], params: TrainingParams
) -> Any:
    """The ensemble refitted on every labelled season, evaluation and calibration seasons
    included: the champion learns from the newest labels. Its intervals stay those the
    hold-out fit calibrated and the evaluation verified (a model fitted on more seasons errs
    no more, so they err on the wide side)."""
    rows = split.labelled
    log.info("refitting %s on every labelled season (%d rows)", ENSEMBLE, len(rows))
    started = time.monotonic()
    refit = ensemble_estimator(params, monotone_signs(feature_columns, dict(params.monotone))).fit(
        _matrix(rows, feature_columns), rows[TARGET].to_numpy(dtype=np.float64)
    )
    log.info("refitted %s in %.1fs", ENSEMBLE, time.monotonic() - started)
    return refit
