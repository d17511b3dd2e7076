"""Logging a training round to the experiment: a parent run per training date and one
child run per candidate with its parameters, metrics, model, importances and plots."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from importlib.metadata import version
from typing import Any

import numpy as np
import pandas as pd

from nuru_yield.models.metadata import HOLDOUT_ARTIFACT, MODEL_ARTIFACT, model_metadata
from nuru_yield.models.normal import Blend
from nuru_yield.models.ranges import TrainingRanges
from nuru_yield.models.registry import experiment_id, mlflow_client
from nuru_yield.progress import track
from nuru_yield.training.candidates import NAIVE, Assessment, CandidateResult, TrainingParams
from nuru_yield.training.dataset import TemporalSplit, seasons_of
from nuru_yield.training.evaluation import flat_metrics, residuals_figure

# Pinned from the running environment: MLflow would otherwise infer them by loading each
# model again in a subprocess.
_MODEL_PACKAGES = ("mlflow", "scikit-learn", "xgboost", "lightgbm", "skops")


def input_example(
    frame: pd.DataFrame, feature_columns: Sequence[str], rows: int = 5
) -> pd.DataFrame:
    """A few real rows as float64, each with one feature missing: the logged signature must
    accept NaN anywhere (cloud-masked NDVI, gaps in weather) — docs/NOTES.md, "Known traps"."""
    example = frame.loc[: rows - 1, list(feature_columns)].astype(np.float64).reset_index(drop=True)
    for row in range(len(example)):
        example.iat[row, row % len(feature_columns)] = np.nan
    return example


def _log_model(
    estimator: Any,
    artifact: str,
    example: pd.DataFrame,
    metadata: dict[str, Any],
) -> None:
    import mlflow
    import skops.io
    from mlflow.models import infer_signature

    signature = infer_signature(example, estimator.predict(example.to_numpy()))
    # skops (safe loading) needs the non-sklearn types named up front; they are exactly the
    # ones this model is made of.
    trusted = skops.io.get_untrusted_types(data=skops.io.dumps(estimator))
    mlflow.sklearn.log_model(
        estimator,
        name=artifact,
        serialization_format="skops",
        skops_trusted_types=trusted,
        signature=signature,
        input_example=example,
        metadata=metadata,
        pip_requirements=[f"{package}=={version(package)}" for package in _MODEL_PACKAGES],
    )


def _log_models(
    result: CandidateResult,
    split: TemporalSplit,
    example: pd.DataFrame,
    feature_columns: Sequence[str],
    ranges: tuple[TrainingRanges, TrainingRanges],
) -> None:
    """The candidate's fit as ``model``; for a refitted one, the refit as ``model`` and the
    hold-out fit as ``holdout_model``, both with the intervals and blend shares the hold-out
    calibrated (each blended with the normal of the seasons it was fitted on), and ``ranges``
    the input ranges of the training seasons' rows and of every labelled row."""
    train_ranges, labelled_ranges = ranges

    def metadata(
        fitted_on: pd.DataFrame,
        blend: Blend | None,
        fitted_ranges: TrainingRanges,
        holdout: str | None = None,
    ) -> dict[str, Any]:
        return model_metadata(
            result.name,
            feature_columns,
            result.intervals,
            seasons_of(fitted_on),
            blend,
            holdout,
            fitted_ranges,
        )

    hold_out = metadata(split.train, result.blend, train_ranges)
    if result.refit is None:
        _log_model(result.model, MODEL_ARTIFACT, example, hold_out)
        return
    _log_model(result.model, HOLDOUT_ARTIFACT, example, hold_out)
    _log_model(
        result.refit,
        MODEL_ARTIFACT,
        example,
        metadata(split.labelled, result.refit_blend, labelled_ranges, HOLDOUT_ARTIFACT),
    )


def log_training_round(
    assessment: Assessment,
    split: TemporalSplit,
    *,
    run_date: dt.date,
    params: TrainingParams,
    feature_columns: Sequence[str],
    training_set_uri: str,
) -> dict[str, str]:
    """Log every candidate as a child run of one parent run, the parent with the rounds the
    tree members kept and the seconds each phase took; returns ``{candidate: run_id}`` (the
    parent under ``"parent"``)."""
    results = assessment.results
    import mlflow

    client = mlflow_client()
    experiment = experiment_id(client)
    common_params: dict[str, Any] = {
        **split.describe(),
        "run_date": run_date.isoformat(),
        "training_set": training_set_uri,
        "feature_count": len(feature_columns),
    }
    example = input_example(split.evaluation, feature_columns)
    ranges = (
        TrainingRanges.fit(split.train, feature_columns),
        TrainingRanges.fit(split.labelled, feature_columns),
    )
    run_ids: dict[str, str] = {}
    with mlflow.start_run(
        experiment_id=experiment,
        run_name=f"training {run_date.isoformat()}",
        tags={"nuru.run_date": run_date.isoformat()},
    ) as parent:
        run_ids["parent"] = parent.info.run_id
        mlflow.log_params(common_params)
        mlflow.log_params(
            {f"rounds_kept/{name}": value for name, value in assessment.rounds.items()}
        )
        mlflow.log_metrics(
            {
                f"seconds/{phase.replace(' ', '_')}": value
                for phase, value in assessment.seconds.items()
            }
        )
        mlflow.log_dict(
            {r.name: r.evaluation["overall"] for r in results}, "candidates_overall.json"
        )
        for result in track(results, "logging candidate runs"):
            with mlflow.start_run(
                experiment_id=experiment,
                run_name=result.name,
                nested=True,
                tags={"nuru.run_date": run_date.isoformat(), "nuru.candidate": result.name},
            ) as run:
                run_ids[result.name] = run.info.run_id
                # The model goes first: logging a model copies the run's metrics logged
                # so far onto it, reading each metric's history one query at a time.
                if result.name == NAIVE:
                    mlflow.log_dict(result.model.to_dict(), "naive_reference.json")
                else:
                    if result.blend is not None:
                        mlflow.log_dict(result.blend.to_dict(), "blend.json")
                    _log_models(result, split, example, feature_columns, ranges)
                    mlflow.log_params(dataclasses.asdict(params))
                mlflow.log_params(common_params)
                mlflow.log_metrics(flat_metrics(result.evaluation))
                mlflow.log_dict(result.evaluation, "evaluation.json")
                mlflow.log_dict(result.intervals.to_dict(), "intervals.json")
                mlflow.log_figure(
                    residuals_figure(
                        split.evaluation,
                        result.predicted,
                        result.intervals.buckets,
                        result.name,
                    ),
                    "residuals.png",
                )
                if result.importances is not None:
                    ranked = dict(sorted(result.importances.items(), key=lambda kv: -kv[1]))
                    mlflow.log_dict(ranked, "feature_importances.json")
    return run_ids
