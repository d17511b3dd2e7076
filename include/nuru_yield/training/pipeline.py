"""The training steps, each called by one ``model_training`` DAG task and chained by
``nuru-yield train``: build set → train candidates → evaluate → gate → promote.

Each step returns a frozen result (:class:`~nuru_yield.steps.StepResult`) of lake paths, run
ids, versions and small metric dicts (XCom-sized), never frames. Every step is idempotent
for its run date: the training set is rewritten in place; retraining logs new runs and a new
version, and the gate compares it afresh.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd

from nuru_yield.config import get_settings
from nuru_yield.errors import DataValidationError, LakeError, RegistryError, TrainingError
from nuru_yield.features.columns import FEATURE_COLUMNS
from nuru_yield.features.raw import load_raw
from nuru_yield.lake import Lake
from nuru_yield.models.leads import LEAD_BANDS
from nuru_yield.models.loaded import ServingModel, holdout_uri, load_model
from nuru_yield.models.normal import CountyNormal
from nuru_yield.models.registry import (
    Decision,
    alias_version,
    mlflow_client,
    promote_version,
    record_decision,
    register_run_model,
)
from nuru_yield.names import (
    CHAMPION,
    MODEL_NAME,
    RAW_YIELDS,
    rejected_labels_path,
    training_set_path,
)
from nuru_yield.steps import StepResult
from nuru_yield.training.candidates import ENSEMBLE, TrainingParams, assess_candidates
from nuru_yield.training.dataset import (
    labelled_training_rows,
    seasons_of,
    split_labels,
    temporal_split,
)
from nuru_yield.training.evaluation import evaluate, format_metric
from nuru_yield.training.gate import (
    band_checks,
    county_checks,
    decide,
    gate_metrics,
    render_bands,
    render_checks,
)
from nuru_yield.training.hindcast import CountySkill, county_skill
from nuru_yield.training.tracking import log_training_round

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingSet(StepResult):
    """The labelled feature rows built for a run date: a lake path."""

    run_date: dt.date
    path: str


@dataclass(frozen=True)
class CandidateRuns(StepResult):
    """One training round: the MLflow run of each candidate and its hold-out metrics, the
    boosting rounds each tree member kept and the seconds each phase took."""

    runs: dict[str, str]
    metrics: dict[str, dict[str, Any]]
    rounds: dict[str, int]
    seconds: dict[str, float]

    @property
    def ensemble_run(self) -> str:
        """The run of the candidate that gets registered (the voting ensemble)."""
        return self.runs[ENSEMBLE]


@dataclass(frozen=True)
class Evaluation(StepResult):
    """The registered candidate, the champion and the naive reference measured on the same
    evaluation rows (metrics as :func:`~nuru_yield.training.gate.gate_metrics` makes them)."""

    model_name: str
    run_id: str
    evaluation_seasons: list[str]
    candidate_version: str
    champion_version: str | None
    candidate: dict[str, Any]
    champion: dict[str, Any] | None
    champion_error: str | None
    naive: dict[str, Any]


@dataclass(frozen=True)
class Verdict(Evaluation):
    """The gate's decision on an evaluation, and why."""

    promote: bool
    reason: str


@dataclass(frozen=True)
class PromotionOutcome(StepResult):
    """What the promote step recorded; ``alias_moved`` when ``@champion`` now points at it."""

    model_name: str
    version: str
    decision: str
    alias_moved: bool
    reason: str


def build_training_set(run_date: dt.date, lake: Lake | None = None) -> TrainingSet:
    """Feature rows of each labelled plot-season over by ``run_date``, one cut-off drawn in
    every lead-time band, written to :func:`training_set_path` (quarantined labels next to
    it). The predictions database's schema is made current first (idempotent): the gate
    records its decision there, minutes of fitting later."""
    from nuru_yield.db.migrations import upgrade

    lake = lake or Lake.from_settings()
    settings = get_settings()
    upgrade(settings.predictions_db_url)
    try:
        labels = lake.read_parquet(RAW_YIELDS).to_pandas()
    except LakeError:
        raise TrainingError(
            f"no harvest labels: {lake.uri(RAW_YIELDS)} cannot be read, nothing to train on"
        ) from None
    good, rejected = split_labels(labels)
    lake.write_parquet(rejected_labels_path(run_date), rejected)
    if len(rejected):
        share = len(rejected) / len(labels)
        log.warning("%d of %d labels quarantined (%.1f%%)", len(rejected), len(labels), share * 100)
        if share > settings.validation_max_bad_share:
            counts = rejected["reason"].str.split(";").explode().value_counts()
            raise DataValidationError(
                f"{share:.1%} of harvest labels are bad (threshold "
                f"{settings.validation_max_bad_share:.1%}): "
                + ", ".join(f"{reason} {count}" for reason, count in counts.items())
            )
    frame = labelled_training_rows(load_raw(lake), good, run_date, settings.season_max_days)
    if frame.empty:
        raise TrainingError(
            f"no labelled plot-season was over by {run_date.isoformat()}: nothing to train on"
        )
    path = training_set_path(run_date)
    lake.write_parquet(path, frame)
    log.info("training set: %d rows → %s", len(frame), lake.uri(path))
    return TrainingSet(run_date=run_date, path=path)


def train_candidates(
    training_set: TrainingSet,
    lake: Lake | None = None,
    params: TrainingParams | None = None,
) -> CandidateRuns:
    """Fit, calibrate and evaluate every candidate on the temporal split of the training
    set and log each as a run."""
    lake = lake or Lake.from_settings()
    params = params or TrainingParams(interactions=get_settings().model_interactions)
    split = temporal_split(lake.read_parquet(training_set.path).to_pandas())
    log.info("temporal split: %s", split.describe())
    assessment = assess_candidates(split, FEATURE_COLUMNS, params, LEAD_BANDS)
    started = time.monotonic()
    runs = log_training_round(
        assessment,
        split,
        run_date=training_set.run_date,
        params=params,
        feature_columns=FEATURE_COLUMNS,
        training_set_uri=lake.uri(training_set.path),
    )
    seconds = {**assessment.seconds, "logging to MLflow": time.monotonic() - started}
    log.info(
        "training phases: %s",
        ", ".join(f"{phase} {value:.1f}s" for phase, value in seconds.items()),
    )
    return CandidateRuns(
        runs=runs,
        metrics={result.name: result.evaluation["overall"] for result in assessment.results},
        rounds=assessment.rounds,
        seconds=seconds,
    )


def _metrics_on(model: ServingModel, rows: pd.DataFrame, normal: np.ndarray) -> dict[str, Any]:
    """The gate's metrics of ``model``'s forecasts (blended as scoring blends them) beside
    ``normal``, the county normal's forecasts of the same rows."""
    forecast = model.forecast(rows).forecast
    lower, upper = model.interval(forecast, rows["days_after_planting"].to_numpy())
    return gate_metrics(evaluate(rows, forecast, LEAD_BANDS, lower, upper, normal=normal))


def evaluate_candidate(
    training_set: TrainingSet,
    run_id: str,
    lake: Lake | None = None,
    model_name: str = MODEL_NAME,
) -> Evaluation:
    """Register the candidate run's model (its refit on every labelled season) and measure
    the hold-out fits of it and of the current ``@champion``, and the naive reference, on
    the same evaluation rows: the newest Long Rains and Short Rains seasons of the set,
    which neither hold-out fit learned from."""
    lake = lake or Lake.from_settings()
    split = temporal_split(lake.read_parquet(training_set.path).to_pandas())
    rows = split.evaluation
    client = mlflow_client()
    version = register_run_model(client, run_id, model_name)
    candidate = load_model(holdout_uri(f"models:/{model_name}/{version}"))
    champion_version = alias_version(client, model_name, CHAMPION)
    normal = CountyNormal.fit(split.train).predict(rows)
    champion_metrics = champion_error = None
    if champion_version is not None:
        try:
            champion = load_model(holdout_uri(f"models:/{model_name}/{champion_version}"))
            missing = sorted(set(champion.feature_columns) - set(rows.columns))
            if missing:
                raise RegistryError(f"it needs features the set lacks: {', '.join(missing)}")
            champion_metrics = _metrics_on(champion, rows, normal)
        except RegistryError as error:
            champion_error = (
                f"champion v{champion_version} cannot be evaluated ({error}): "
                "compare by hand and use `nuru-yield promote`"
            )
    return Evaluation(
        model_name=model_name,
        run_id=run_id,
        evaluation_seasons=seasons_of(rows),
        candidate_version=version,
        champion_version=champion_version,
        candidate=_metrics_on(candidate, rows, normal),
        champion=champion_metrics,
        champion_error=champion_error,
        naive=gate_metrics(evaluate(rows, normal, LEAD_BANDS, normal=normal)),
    )


def decide_promotion(evaluation: Evaluation) -> Verdict:
    """The gate's verdict on :func:`evaluate_candidate`'s result, with the configured
    ``PROMOTION_RMSE_MARGIN`` and ``PROMOTION_COUNTY_TOLERANCE``."""
    settings = get_settings()
    measured = {field.name: getattr(evaluation, field.name) for field in fields(Evaluation)}
    if evaluation.champion_error:
        return Verdict(**measured, promote=False, reason=evaluation.champion_error)
    decision = decide(
        evaluation.candidate,
        evaluation.champion,
        evaluation.naive,
        margin=settings.promotion_rmse_margin,
        tolerance=settings.promotion_county_tolerance,
        champion_version=evaluation.champion_version,
    )
    verdict = Verdict(**measured, promote=decision.promote, reason=decision.reason)
    log.info("gate, RMSE (kg/ha) by season and county:\n%s", gate_table(verdict))
    log.info("gate, RMSE (kg/ha) by days after planting:\n%s", band_table(verdict))
    log.info("%s: %s", "promote" if decision.promote else "refuse", decision.reason)
    return verdict


def gate_table(evaluation: Evaluation) -> str:
    """The evaluation table by season and county, for people (the task log, the CLI): the
    candidate against the champion, or the naive reference for a first version."""
    other = evaluation.champion
    return render_checks(
        county_checks(
            evaluation.candidate,
            other or evaluation.naive,
            tolerance=get_settings().promotion_county_tolerance,
        ),
        f"champion v{evaluation.champion_version}" if other else "naive",
    )


def band_table(evaluation: Evaluation) -> str:
    """The candidate's evaluation by lead-time band beside the county normal's, for people."""
    return render_bands(band_checks(evaluation.candidate))


def _label(version: str | None) -> str:
    return f"v{version}" if version else "none"


def apply_decision(verdict: Verdict, dag_run_id: str | None = None) -> PromotionOutcome:
    """Record the gate's verdict and, if it promotes, move ``champion`` (the old champion
    becomes ``previous``). A champion that moved since the evaluation voids a promotion."""
    client = mlflow_client()
    name, version = verdict.model_name, verdict.candidate_version
    compared_with = verdict.champion_version
    current = alias_version(client, name, CHAMPION)
    promote, reason = verdict.promote, verdict.reason
    if promote and current != compared_with:
        promote = False
        reason = (
            f"@{CHAMPION} moved from {_label(compared_with)} to {_label(current)} during the "
            f"evaluation; not promoted (retrain to compare with the new champion)"
        )
    # With no champion yet, the other side of the comparison is the naive reference.
    other = verdict.champion or {"reference": "naive county × season mean", **verdict.naive}
    if promote:
        decision = promote_version(
            client,
            name,
            version,
            reason=reason,
            candidate_metrics=verdict.candidate,
            champion_metrics=other,
            dag_run_id=dag_run_id,
        )
    else:
        decision = record_decision(
            client,
            Decision(
                model_name=name,
                alias=CHAMPION,
                decision="refused",
                reason=reason,
                candidate_version=version,
                previous_version=current,
                candidate_metrics=verdict.candidate,
                champion_metrics=other,
            ),
            dag_run_id=dag_run_id,
        )
    log.info("%s", decision.summary())
    return PromotionOutcome(
        model_name=name,
        version=version,
        decision=decision.decision,
        alias_moved=decision.alias_moved,
        reason=decision.reason,
    )


@dataclass(frozen=True)
class TrainingSummary:
    """Every step's result of one ``nuru-yield train``."""

    training_set_uri: str
    candidates: CandidateRuns
    verdict: Verdict
    outcome: PromotionOutcome
    # The promoted version's county hindcast skill (None without a promotion), or why it
    # could not be computed (the promotion stands).
    skill: CountySkill | None = None
    skill_error: str | None = None

    def render(self) -> str:
        """Candidates' hold-out metrics, the gate's evaluation table by season and county,
        and its decision, for the CLI (kg/ha whole, shares to two decimals)."""
        table = pd.DataFrame(self.candidates.metrics).T
        table = table[["rmse", "mae", "r2", "mape", "coverage", "interval_width", "n"]]
        table = table.sort_values("rmse").apply(
            lambda column: column.map(lambda value: format_metric(str(column.name), value))
        )
        outcome = self.outcome
        candidates = self.candidates
        lines = [
            f"training set: {self.training_set_uri}",
            "seconds by phase: "
            + ", ".join(f"{phase} {value:,.1f}" for phase, value in candidates.seconds.items()),
            "boosting rounds kept (the hold-out fit stopped where the calibration seasons "
            "stopped improving): "
            + ", ".join(f"{name} {rounds}" for name, rounds in candidates.rounds.items()),
            f"hold-out evaluation on {', '.join(self.verdict.evaluation_seasons)}:",
            table.to_string(),
            "gate, RMSE (kg/ha) by season and county:",
            gate_table(self.verdict),
            "gate, RMSE (kg/ha) by days after planting, beside the county normal's:",
            band_table(self.verdict),
            f"{outcome.model_name} v{outcome.version} (run {self.verdict.run_id}): "
            f"{outcome.decision} — {outcome.reason}",
        ]
        if self.skill is not None:
            lines.append(self.skill.render())
        if self.skill_error is not None:
            lines.append(f"county skill not computed: {self.skill_error}")
        return "\n".join(lines)


def train(
    run_date: dt.date,
    lake: Lake | None = None,
    params: TrainingParams | None = None,
    dag_run_id: str | None = None,
) -> TrainingSummary:
    """Every step in order (what ``nuru-yield train --date D`` runs), and the county
    hindcast skill of a version it promotes."""
    lake = lake or Lake.from_settings()
    training_set = build_training_set(run_date, lake)
    candidates = train_candidates(training_set, lake, params)
    evaluation = evaluate_candidate(training_set, candidates.ensemble_run, lake)
    verdict = decide_promotion(evaluation)
    outcome = apply_decision(verdict, dag_run_id)
    summary = TrainingSummary(lake.uri(training_set.path), candidates, verdict, outcome)
    if not outcome.alias_moved:
        return summary
    try:
        skill = county_skill(run_date, lake=lake, version=outcome.version)
    except Exception as error:  # the promotion stands; the skill can be computed again
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        log.error("county skill of v%s failed: %s", outcome.version, reason, exc_info=True)
        return dataclasses.replace(
            summary,
            skill_error=f"{reason} (run `nuru-yield skill --date {run_date.isoformat()}`)",
        )
    return dataclasses.replace(summary, skill=skill)
