"""``nuru-yield bench train --plots N``: where training time goes, against one bare LightGBM
fit on the same rows.

In a scratch space of its own (:func:`~nuru_yield.dev.scratch.scratch_space`: lake, MLflow
store and predictions database in a temporary home, whatever the settings of the calling
shell name), sample data for N plots over the demo's years, then, each in a fresh process:

* the training set of the demo's night (:func:`~nuru_yield.training.pipeline.build_training_set`),
* the candidates (:func:`~nuru_yield.training.pipeline.train_candidates`: the phases it
  reports — each tree member's hold-out fit with early stopping on the calibration seasons,
  the linear baseline, blending, calibration and evaluation, each member's refit, logging
  to MLflow),
* registration, evaluation against the champion and the gate
  (:func:`~nuru_yield.training.pipeline.evaluate_candidate`, ``decide_promotion``,
  ``apply_decision``),
* the promoted champion's county hindcasts (:func:`~nuru_yield.training.hindcast.county_skill`:
  a refit per labelled season left out, its phases), and
* the baseline: one LightGBM fit with the library's defaults (100 rounds, 31 leaves, no
  constraints, no early stopping) on the same hold-out rows, on the same two threads.

Prints seconds per phase and each one's ratio to the baseline, the rounds each member kept,
the hold-out RMSE by lead-time band beside the county normal's (so a faster recipe is seen
not to cost accuracy) and the county skill by lead time beside the naive mean's and the
trend's; the last line is one JSON object.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

from nuru_yield.dev.bench import emit, run_isolated
from nuru_yield.dev.scratch import scratch_space

log = logging.getLogger(__name__)

START_YEAR, END_YEAR = 2020, 2025
RUN_DATE = dt.date(2025, 6, 15)  # the Long Rains 2025 in progress: 2020 LR – 2024 SR labelled


def _sample_data(plots: int) -> int:
    from nuru_yield.db.migrations import upgrade
    from nuru_yield.lake import Lake
    from nuru_yield.sample_data.generator import generate_to_lake

    generate_to_lake(
        Lake.from_settings(), plots=plots, start_year=START_YEAR, end_year=END_YEAR, seed=42
    )
    upgrade()
    return plots


def _training_set() -> dict[str, Any]:
    from nuru_yield.training.pipeline import build_training_set

    return build_training_set(RUN_DATE).xcom()


def _candidates(training_set: dict[str, Any]) -> dict[str, Any]:
    from nuru_yield.training.pipeline import TrainingSet, train_candidates

    return train_candidates(TrainingSet.from_xcom(training_set)).xcom()


def _gate(training_set: dict[str, Any], run_id: str) -> dict[str, Any]:
    from nuru_yield.training.pipeline import (
        TrainingSet,
        apply_decision,
        decide_promotion,
        evaluate_candidate,
    )

    verdict = decide_promotion(evaluate_candidate(TrainingSet.from_xcom(training_set), run_id))
    apply_decision(verdict)
    return verdict.xcom()


def _county_skill() -> dict[str, Any]:
    from nuru_yield.training.hindcast import county_skill

    return county_skill(RUN_DATE).xcom()


def _bare_lightgbm(training_set: dict[str, Any]) -> int:
    """The baseline: a default LightGBM fit on the hold-out fit's rows."""
    import lightgbm

    from nuru_yield.features.columns import FEATURE_COLUMNS
    from nuru_yield.lake import Lake
    from nuru_yield.training.dataset import TARGET, temporal_split

    frame = Lake.from_settings().read_parquet(training_set["path"]).to_pandas()
    train = temporal_split(frame).train
    lightgbm.train(
        {"objective": "regression", "num_threads": 2, "verbose": -1},
        lightgbm.Dataset(train[FEATURE_COLUMNS].to_numpy(float), train[TARGET].to_numpy(float)),
    )
    return len(train)


def run(plots: int, workdir: Path | None = None) -> dict[str, Any]:
    """Measure training on ``plots`` plots in a scratch space under ``workdir`` (default: the
    system's temporary directory); prints the table and the JSON line, and returns the JSON
    object."""
    from nuru_yield.training.gate import band_checks, render_bands
    from nuru_yield.training.hindcast import CountySkill

    with scratch_space("bench train", parent=workdir) as space:
        log.info("bench train: sample data for %d plots in %s", plots, space.home)
        run_isolated(_sample_data, plots)
        built = run_isolated(_training_set)
        candidates = run_isolated(_candidates, built.result)
        gate = run_isolated(
            _gate, built.result, candidates.result["runs"]["Ensemble_VotingRegressor"]
        )
        skill = run_isolated(_county_skill) if gate.result["promote"] else None
        baseline = run_isolated(_bare_lightgbm, built.result)

    phases = {
        "training set": built.seconds,
        **candidates.result["seconds"],
        "registration, evaluation and gate": gate.seconds,
    }
    if skill is not None:
        phases.update(
            {f"county skill/{phase}": value for phase, value in skill.result["seconds"].items()}
        )
    total = sum(phases.values())
    print(f"bench train: {plots:,} plots, {baseline.result:,} hold-out rows")
    print(f"  {'phase':<40} {'seconds':>8} {'× bare LightGBM':>16}")
    for phase, seconds in [*phases.items(), ("total (nuru-yield train)", total)]:
        print(f"  {phase:<40} {seconds:>8.1f} {seconds / baseline.seconds:>16.1f}")
    print(f"  {'bare LightGBM fit (baseline)':<40} {baseline.seconds:>8.1f} {1.0:>16.1f}")
    print(f"  peak memory of the candidates step: {candidates.peak_rss_mb:,.0f} MB")
    print(
        "  rounds kept: "
        + ", ".join(f"{name} {rounds}" for name, rounds in candidates.result["rounds"].items())
    )
    print(render_bands(band_checks(gate.result["candidate"])))
    if skill is not None:
        print(CountySkill.from_xcom(skill.result).render())
    result = {
        "plots": plots,
        "holdout_rows": baseline.result,
        "seconds": round(total, 2),
        "phases": {phase: round(seconds, 2) for phase, seconds in phases.items()},
        "baseline_s": round(baseline.seconds, 2),
        "ratio": round(total / baseline.seconds, 1),
        "peak_rss_mb": round(candidates.peak_rss_mb, 1),
        "rounds": candidates.result["rounds"],
        "rmse": gate.result["candidate"]["rmse"],
        "decision": "promoted" if gate.result["promote"] else "refused",
        "county_skill": None if skill is None else skill.result["by_lead"],
    }
    emit(result)
    return result
