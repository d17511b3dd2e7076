"""
### model_training

Retrains the yield model and lets the champion/challenger gate decide whether it serves
(`docs/DESIGN.md`, "Models and the registry").

**build_training_set → train_candidates → evaluate → gate → promote → county_skill**

1. Feature rows at 30/60/90/120 days after planting and the full season for every
   labelled plot-season over by the run date → `training/{D}/training_set.parquet`.
2. xgboost, lightgbm, a random forest, a Tweedie GLM baseline and `Ensemble_VotingRegressor`
   (plus the naive county × season mean) as runs of the MLflow experiment
   `YieldPrediction_MultiModel`, every one on a log link (no forecast can be negative):
   fitted on earlier seasons, intervals calibrated on the next ones, evaluated on the
   newest labelled Long Rains and Short Rains seasons (never a random split). The ensemble
   is then refitted on every labelled season: that refit is what gets registered.
3. The refit is registered; the hold-out fits of it and of the current `@champion`, and
   the naive reference, are measured on the same evaluation rows, which neither learned.
4. The gate: promote only if RMSE improves by `PROMOTION_RMSE_MARGIN` (1%) and no season ×
   county gets worse by more than `PROMOTION_COUNTY_TOLERANCE` (5%); a season × county
   with fewer than 30 evaluation rows is reported as unchecked; a first version must beat
   the naive reference. The task log shows the evaluation table by season and county.
5. The decision, promoted or not, is a `model_promotions` row and tags on the version. A
   promotion moves `@champion` (the old one keeps `@previous`) and updates the asset
   `champion_model` (`nuru://champion_model`); a refusal leaves both alone.
6. `county_skill`, after a promotion only (skipped otherwise): the new champion's county
   hindcasts, leaving one labelled season out at a time, at 30/60/90/120 days after planting
   → `county_skill` (MAPE, normalised RMSE beside the naive county mean and the county trend,
   the county-level interval factors the nightly bulletin uses) and
   `training/{D}/county_hindcasts.parquet` (docs/DESIGN.md, "County bulletins").

* **Schedule:** Mondays 03:00 UTC, and whenever the asset `harvest_labels`
  (`nuru://harvest_labels`) is updated — post an event with `extra = {"run_date": …}` when
  new yields land in `raw/yields.parquet` (not a partition key: a partitioned event does
  not start a DAG that also runs weekly). Drift monitoring triggers it with
  `conf = {"run_date": …}`.
* **Run date:** the `run_date` param, else the logical date, else the label event's.
* **Rerun:** rewrites `training/{D}/`; retraining logs new runs and a new version, which
  the gate judges afresh (a near-identical retrain is refused: it is not 1% better).
* **By hand:** `nuru-yield train --date D` (the skill too, when it promotes); `nuru-yield
  skill --date D` for the champion's skill alone; `nuru-yield rollback` restores `@previous`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import DAG, AssetAlias, task

from nuru_yield.orchestration import (
    announce,
    champion_model,
    default_args,
    harvest_labels,
    resolve_run_date,
    run_date_params,
    weekly_or_on,
)

# Emitting through an alias lets `promote` update `champion_model` only when the alias moved.
champion_moves = AssetAlias(name="champion_model_moves", group="nuru-yield")

with DAG(
    dag_id="model_training",
    schedule=weekly_or_on(harvest_labels),
    start_date=dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    default_args={**default_args, "execution_timeout": dt.timedelta(hours=4)},
    params=run_date_params(),
    tags=["nuru-yield", "training"],
    doc_md=__doc__,
):

    @task
    def build_training_set(**context: Any) -> dict[str, Any]:
        """Labelled feature rows → the lake; the run date and the set's lake path."""
        from nuru_yield.training.pipeline import build_training_set as build

        return build(resolve_run_date(context)).xcom()

    @task
    def train_candidates(training_set: dict[str, Any]) -> dict[str, Any]:
        """Fit, calibrate, evaluate and log every candidate; their run ids and metrics."""
        from nuru_yield.training.pipeline import TrainingSet
        from nuru_yield.training.pipeline import train_candidates as train

        return train(TrainingSet.from_xcom(training_set)).xcom()

    @task
    def evaluate(training_set: dict[str, Any], candidates: dict[str, Any]) -> dict[str, Any]:
        """Register the ensemble; measure it, the champion and the naive reference alike."""
        from nuru_yield.training.pipeline import CandidateRuns, TrainingSet, evaluate_candidate

        ensemble_run = CandidateRuns.from_xcom(candidates).ensemble_run
        return evaluate_candidate(TrainingSet.from_xcom(training_set), ensemble_run).xcom()

    @task
    def gate(evaluation: dict[str, Any]) -> dict[str, Any]:
        """The verdict: promote or not, and why (the season × county table in the log)."""
        from nuru_yield.training.pipeline import Evaluation, decide_promotion

        return decide_promotion(Evaluation.from_xcom(evaluation)).xcom()

    @task(outlets=[champion_moves])
    def promote(
        verdict: dict[str, Any], training_set: dict[str, Any], **context: Any
    ) -> dict[str, Any]:
        """Record the verdict; on promotion move `@champion` and update `champion_model`."""
        from nuru_yield.training.pipeline import TrainingSet, Verdict, apply_decision

        outcome = apply_decision(Verdict.from_xcom(verdict), dag_run_id=context["run_id"])
        if outcome.alias_moved:
            announce(
                context,
                champion_model,
                TrainingSet.from_xcom(training_set).run_date,
                through=champion_moves,
                model_name=outcome.model_name,
                version=outcome.version,
            )
        return outcome.xcom()

    @task
    def county_skill(outcome: dict[str, Any], training_set: dict[str, Any]) -> dict[str, Any]:
        """The promoted champion's county hindcast skill (skipped without a promotion)."""
        from airflow.sdk.exceptions import AirflowSkipException

        from nuru_yield.training.hindcast import county_skill as measure
        from nuru_yield.training.pipeline import PromotionOutcome, TrainingSet

        promoted = PromotionOutcome.from_xcom(outcome)
        if not promoted.alias_moved:
            raise AirflowSkipException(
                f"v{promoted.version} was not promoted: the champion's skill stands"
            )
        run_date = TrainingSet.from_xcom(training_set).run_date
        return measure(run_date, version=promoted.version).xcom()

    training_set = build_training_set()
    candidates = train_candidates(training_set)
    county_skill(promote(gate(evaluate(training_set, candidates)), training_set), training_set)
