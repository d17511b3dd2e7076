"""Candidate models: xgboost, lightgbm, a random forest, a linear baseline, their voting
ensemble, and the county normal (the county × season mean) they must beat.

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

import dataclasses
import itertools
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from nuru_yield.models.intervals import ConformalIntervals, calibrate
from nuru_yield.models.leads import LEAD_BANDS
from nuru_yield.models.normal import Blend, CountyNormal
from nuru_yield.names import MODEL_NAME
from nuru_yield.progress import Progress, track
from nuru_yield.training.dataset import TARGET, TemporalSplit, sampled_rows
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
    """Hyper-parameters shared by the candidates (tests shrink them for speed).

    Fitting half the rows with a learning rate of 0.15, the forest 100 rounds at 0.3, and
    stopping early cost 0.1–0.4% of hold-out RMSE per lead-time band against every row at
    0.08 (forest 150 rounds at 0.2), for a sixth of the time (``docs/DESIGN.md``,
    "Measurements"; ``nuru-yield bench train``)."""

    boosting_rounds: int = 500
    learning_rate: float = 0.15
    max_depth: int = 6
    num_leaves: int = 24
    min_leaf_rows: int = 40
    forest_rounds: int = 100
    forest_trees_per_round: int = 4
    forest_learning_rate: float = 0.3
    forest_depth: int = 6
    ridge_alpha: float = 1.0
    tweedie_variance_power: float = 1.2
    interactions: str = "pairwise"  # one of INTERACTIONS (see the module docstring)
    # The hold-out fit stops a tree member when this many rounds in a row have not lowered
    # its RMSE on the calibration seasons (None: every round); the refit grows the rounds
    # the hold-out kept: trees that added nothing on unseen seasons are not grown.
    early_stopping_rounds: int | None = 25
    # The share of the training set's rows the fits learn from (a reproducible hash picks
    # them, :func:`~nuru_yield.training.dataset.sampled_rows`); calibration and evaluation
    # use every row. A plot-season's rows at its eight lead times share one harvest.
    fit_row_share: float = 0.5
    monotone: tuple[tuple[str, int], ...] = tuple(MONOTONE_FEATURES.items())
    threads: int = 2
    seed: int = 42

    def __post_init__(self) -> None:
        if self.interactions not in INTERACTIONS:
            raise ValueError(f"interactions must be one of {INTERACTIONS}: {self.interactions!r}")


def ensemble_estimator(
    params: TrainingParams, monotone: Sequence[int], rounds: Mapping[str, int] | None = None
) -> Any:
    """The unfitted log-link voting ensemble over the three tree models (equal weights).

    ``monotone`` holds one of −1/0/+1 per feature: the direction in which more of that
    feature may move the forecast (e.g. a longer dry spell never raises it). ``rounds``
    overrides the boosting rounds of named members (the refit grows what the hold-out kept).
    """
    from lightgbm import LGBMRegressor
    from xgboost import XGBRegressor

    from nuru_yield.models.ensemble import LogLinkVotingRegressor

    constraints = tuple(int(sign) for sign in monotone)
    pairs = interaction_pairs(len(constraints)) if params.interactions == "pairwise" else None
    power = params.tweedie_variance_power
    rounds = dict(rounds or {})

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
                    n_estimators=rounds.get(XGBOOST, params.boosting_rounds),
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
                    n_estimators=rounds.get(LIGHTGBM, params.boosting_rounds),
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
                    n_estimators=rounds.get(RANDOM_FOREST, params.forest_rounds),
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


@dataclass(frozen=True)
class FittedEnsemble:
    """A fitted ensemble, the boosting rounds each tree member kept and the seconds each
    member's fit took."""

    ensemble: Any
    rounds: dict[str, int]
    seconds: dict[str, float]


def fit_ensemble(
    features: np.ndarray,
    target: np.ndarray,
    params: TrainingParams,
    monotone: Sequence[int],
    *,
    phase: str,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    rounds: Mapping[str, int] | None = None,
) -> FittedEnsemble:
    """Fit the ensemble's members one by one, each reporting its rounds, the time spent and
    the time left (``phase`` names the fit in those lines). With ``validation`` (the
    calibration seasons), a member stops once ``params.early_stopping_rounds`` rounds have
    not lowered its RMSE there and forecasts with its best round; ``rounds`` fixes the rounds
    instead (the refit)."""
    stopping = params.early_stopping_rounds if validation is not None else None
    return _fit_members(
        ensemble_estimator(params, monotone, rounds), features, target, phase, validation, stopping
    )


def refit_like(
    fitted: Any, features: np.ndarray, target: np.ndarray, *, phase: str
) -> FittedEnsemble:
    """A registered ensemble's recipe fitted on other rows: each member cloned — its
    hyper-parameters, constraints and the boosting rounds it grew — and fitted on
    ``features``, without early stopping (the county hindcasts' refits, one per season left
    out: ``nuru_yield.training.hindcast``)."""
    return _fit_members(fitted, features, target, phase, None, None)


def _fit_members(
    unfitted: Any,
    features: np.ndarray,
    target: np.ndarray,
    phase: str,
    validation: tuple[np.ndarray, np.ndarray] | None,
    stopping: int | None,
) -> FittedEnsemble:
    members = []
    kept: dict[str, int] = {}
    seconds: dict[str, float] = {}
    for index, (name, member) in enumerate(unfitted.estimators, start=1):
        label = f"{phase}, {index}/{len(unfitted.estimators)} {name} ({len(target):,} rows)"
        started = time.monotonic()
        fitted, kept[name] = _fit_member(member, features, target, validation, stopping, label)
        seconds[name] = time.monotonic() - started
        members.append(fitted)
    return FittedEnsemble(unfitted.assembled(members), kept, seconds)


def _fit_member(
    member: Any,
    features: np.ndarray,
    target: np.ndarray,
    validation: tuple[np.ndarray, np.ndarray] | None,
    stopping: int | None,
    label: str,
) -> tuple[Any, int]:
    """Fit one tree member with progress lines, stopping early on ``validation`` after
    ``stopping`` rounds without progress (with both given); returns it and the rounds it
    forecasts with."""
    import lightgbm
    from sklearn.base import clone

    member = clone(member)
    total = int(member.get_params()["n_estimators"])
    progress = Progress(f"{label}: boosting rounds", total, every_seconds=15.0)
    stopping = stopping if validation is not None else None
    if isinstance(member, lightgbm.LGBMRegressor):
        callbacks = [lambda env: progress.update(env.iteration + 1)]
        if stopping:
            callbacks.append(lightgbm.early_stopping(stopping, verbose=False))
        held_out = {} if validation is None else {"eval_X": validation[0], "eval_y": validation[1]}
        member.fit(features, target, eval_metric="rmse", callbacks=callbacks, **held_out)
        kept = int(member.best_iteration_) if stopping and member.best_iteration_ else total
    else:
        member.set_params(
            callbacks=[_xgboost_progress(progress)],
            early_stopping_rounds=stopping,
            eval_metric="rmse",
        )
        member.fit(
            features, target, eval_set=None if validation is None else [validation], verbose=False
        )
        # The callback is not part of the model (it would be serialised with it).
        member.set_params(callbacks=None, early_stopping_rounds=None)
        kept = int(member.best_iteration) + 1 if stopping else total
    if kept < total:
        _keep_rounds(member, kept)
    log.info("%s: %d of %d rounds kept, %.1fs", label, kept, total, progress.elapsed)
    return member, kept


def _keep_rounds(member: Any, rounds: int) -> None:
    """Drop the trees grown after the best round (early stopping grows ``patience`` more),
    so that every tree of the model counts: its forecasts, its TreeSHAP drivers and its
    logged form agree, whatever a library would do with a remembered "best iteration"."""
    import lightgbm

    if isinstance(member, lightgbm.LGBMRegressor):
        text = member.booster_.model_to_string(num_iteration=rounds)
        member._Booster = lightgbm.Booster(model_str=text)
        member._best_iteration = rounds
    else:  # xgboost: a slice of the booster keeps its trees and drops its best iteration
        member._Booster = member.get_booster()[:rounds]
    member.set_params(n_estimators=rounds)


def _xgboost_progress(progress: Progress) -> Any:
    """An xgboost training callback that reports each round to ``progress``."""
    from xgboost.callback import TrainingCallback

    class Report(TrainingCallback):
        def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            progress.update(epoch + 1)
            return False

    return Report()


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
class CandidateResult:
    """A fitted candidate with its blend toward the county normal, its calibrated intervals
    and its evaluation.

    ``model`` is the hold-out fit (training seasons only), whose blend, intervals and
    evaluation these are; ``refit`` is the same candidate refitted on every labelled season
    — what is registered, with ``refit_blend``: the same shares around the normal of every
    labelled season — for the ensemble only (refitting every candidate would double
    training)."""

    name: str
    model: Any  # a fitted estimator, or the CountyNormal
    blend: Blend | None  # None for the normal itself
    intervals: ConformalIntervals
    evaluation: dict[str, Any]
    predicted: np.ndarray  # on the evaluation rows, after the blend
    importances: dict[str, float] | None
    refit: Any = None
    refit_blend: Blend | None = None


@dataclass(frozen=True)
class Assessment:
    """Every candidate's result, the rounds each tree member kept, and the seconds each
    phase took (``hold-out fit/<member>``, ``calibration and evaluation``,
    ``refit/<member>``): what ``nuru-yield bench train`` reports and training logs."""

    results: list[CandidateResult]
    rounds: dict[str, int]
    seconds: dict[str, float]

    def __getitem__(self, name: str) -> CandidateResult:
        return next(result for result in self.results if result.name == name)


def _matrix(frame: pd.DataFrame, feature_columns: Sequence[str]) -> np.ndarray:
    return frame.loc[:, list(feature_columns)].to_numpy(dtype=np.float64)


def assess_candidates(
    split: TemporalSplit,
    feature_columns: Sequence[str],
    params: TrainingParams,
    bands: Sequence[int] = LEAD_BANDS,
) -> Assessment:
    """Fit every candidate on the training seasons (the tree members stopping early on the
    calibration seasons); on the calibration seasons learn each one's blend toward the
    county normal per lead-time band, then calibrate the intervals of the blended forecasts;
    evaluate on the evaluation seasons, per band beside the normal's error. Then refit the
    ensemble on every labelled season with the rounds the hold-out fit kept."""
    monotone = monotone_signs(feature_columns, dict(params.monotone))
    calibration, evaluation = split.calibration, split.evaluation
    actual = calibration[TARGET].to_numpy(dtype=np.float64)
    fitted_on = split.train[sampled_rows(split.train, params.fit_row_share)]
    train = _matrix(fitted_on, feature_columns)
    train_target = fitted_on[TARGET].to_numpy(dtype=np.float64)
    log.info(
        "hold-out fit: %s and %s on %d rows × %d features",
        ", ".join(TREE_MEMBERS),
        LINEAR,
        *train.shape,
    )
    holdout = fit_ensemble(
        train,
        train_target,
        params,
        monotone,
        phase="hold-out fit",
        validation=(_matrix(calibration, feature_columns), actual),
    )
    seconds = {f"hold-out fit/{name}": value for name, value in holdout.seconds.items()}
    started = time.monotonic()
    linear = linear_baseline(params).fit(train, train_target)
    seconds[f"hold-out fit/{LINEAR}"] = time.monotonic() - started
    normal = CountyNormal.fit(split.train)
    models: dict[str, Any] = {
        **holdout.ensemble.named_estimators_,
        LINEAR: linear,
        ENSEMBLE: holdout.ensemble,
        NAIVE: normal,
    }
    calibration_days = calibration["days_after_planting"].to_numpy()
    evaluation_days = evaluation["days_after_planting"].to_numpy()
    calibration_normal = normal.predict(calibration)
    evaluation_normal = normal.predict(evaluation)
    county_seasons = (
        calibration["county"].astype(str)
        + "/"
        + calibration["season"].astype(str)
        + "/"
        + calibration["season_year"].astype(str)
    ).to_numpy()

    started = time.monotonic()
    forecasts = _HeldOutForecasts(
        holdout.ensemble,
        _matrix(calibration, feature_columns),
        _matrix(evaluation, feature_columns),
    )
    results = []
    for name, model in track(models.items(), "calibrating and evaluating", len(models)):
        if name == NAIVE:
            blend = None
            calibrated, predicted = calibration_normal, evaluation_normal
        else:
            on_calibration, on_evaluation = forecasts.of(name, model)
            blend = Blend.fit(
                actual,
                on_calibration,
                calibration_days,
                normal,
                calibration_normal,
                county_seasons,
                bands,
            )
            calibrated = _blended(blend, on_calibration, calibration)
            predicted = _blended(blend, on_evaluation, evaluation)
        intervals = calibrate(actual, calibrated, calibration_days, bands)
        lower, upper = intervals.interval(predicted, evaluation_days)
        results.append(
            CandidateResult(
                name=name,
                model=model,
                blend=blend,
                intervals=intervals,
                evaluation=evaluate(
                    evaluation, predicted, bands, lower, upper, normal=evaluation_normal
                ),
                predicted=predicted,
                importances=None if name == NAIVE else feature_importances(model, feature_columns),
            )
        )
    seconds["calibration and evaluation"] = time.monotonic() - started

    refit = refit_ensemble(split, feature_columns, params, holdout.rounds)
    seconds.update({f"refit/{name}": value for name, value in refit.seconds.items()})
    ensemble = next(result for result in results if result.name == ENSEMBLE)
    results[results.index(ensemble)] = dataclasses.replace(
        ensemble,
        refit=refit.ensemble,
        refit_blend=ensemble.blend.with_normal(CountyNormal.fit(split.labelled))
        if ensemble.blend
        else None,
    )
    return Assessment(results, holdout.rounds, seconds)


def _blended(blend: Blend, model_forecast: np.ndarray, frame: pd.DataFrame) -> np.ndarray:
    """A model's forecasts of ``frame`` blended with the normal by lead-time band."""
    return blend.apply(
        model_forecast,
        frame["county"].to_numpy(),
        frame["season"].to_numpy(),
        frame["days_after_planting"].to_numpy(),
    ).forecast


class _HeldOutForecasts:
    """Each candidate's forecasts of the calibration and evaluation rows, the ensemble's
    made from its members' (each tree model runs over the rows once, not twice)."""

    def __init__(self, ensemble: Any, calibration: np.ndarray, evaluation: np.ndarray):
        self.ensemble = ensemble
        self.rows = (calibration, evaluation)
        self.margins: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def _margins(self, name: str, model: Any) -> tuple[np.ndarray, np.ndarray]:
        from nuru_yield.models.ensemble import log_prediction  # scikit-learn: at first use

        if name not in self.margins:
            calibration, evaluation = self.rows
            self.margins[name] = (
                log_prediction(model, calibration),
                log_prediction(model, evaluation),
            )
        return self.margins[name]

    def of(self, name: str, model: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(calibration, evaluation)`` forecasts (kg/ha) of candidate ``name``."""
        calibration, evaluation = self.rows
        if model is self.ensemble:
            members = [
                self._margins(member, fitted) for member, fitted in model.named_estimators_.items()
            ]
            return (
                np.exp(model.combine_log([margins[0] for margins in members])),
                np.exp(model.combine_log([margins[1] for margins in members])),
            )
        if name in self.ensemble.named_estimators_:
            on_calibration, on_evaluation = self._margins(name, model)
            return np.exp(on_calibration), np.exp(on_evaluation)
        return (
            np.asarray(model.predict(calibration), dtype=np.float64),
            np.asarray(model.predict(evaluation), dtype=np.float64),
        )


def refit_ensemble(
    split: TemporalSplit,
    feature_columns: Sequence[str],
    params: TrainingParams,
    rounds: Mapping[str, int] | None = None,
) -> FittedEnsemble:
    """The ensemble refitted on every labelled season, evaluation and calibration seasons
    included: the champion learns from the newest labels, growing each member's ``rounds``
    (what the hold-out fit kept). Its intervals stay those the hold-out fit calibrated and
    the evaluation verified (a model fitted on more seasons errs no more, so they err on the
    wide side)."""
    rows = split.labelled[sampled_rows(split.labelled, params.fit_row_share)]
    refit = fit_ensemble(
        _matrix(rows, feature_columns),
        rows[TARGET].to_numpy(dtype=np.float64),
        params,
        monotone_signs(feature_columns, dict(params.monotone)),
        phase="refit on every labelled season",
        rounds=rounds,
    )
    log.info("refitted %s in %.1fs", ENSEMBLE, sum(refit.seconds.values()))
    return refit
