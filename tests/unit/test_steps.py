"""One run-date type and one XCom shape (docs/DESIGN.md, "Layout"): every step's frozen
result goes to XCom as JSON-friendly values and comes back equal; the library's paths refuse
a run date that was never parsed."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import pytest

from nuru_yield import names
from nuru_yield.features.materialize import FeaturePlan, FeatureShardResult
from nuru_yield.scoring.plan import ScoringPlan, ScoringResult, ShardResult
from nuru_yield.steps import StepResult
from nuru_yield.training.pipeline import CandidateRuns, PromotionOutcome, TrainingSet, Verdict

NIGHT = dt.date(2025, 6, 30)
RESULTS: list[StepResult] = [
    FeaturePlan("20250630-abc", NIGHT, 4, 240, 0.05, 3),
    FeatureShardResult(1, 10, 9, 1, {"load": 0.5}, 210.3, "worker-1"),
    ScoringPlan(
        "20250630-def",
        NIGHT,
        2,
        names.MODEL_NAME,
        "7",
        None,
        "file:///lake/features/2025-06-30/plot_features.parquet",
        dt.datetime(2025, 6, 30, 0, 5, 1, 250, tzinfo=dt.UTC),
    ),
    ShardResult(0, 5, 10, {"score": 1.5}),
    ScoringResult("20250630-def", NIGHT, "7", "8", 5, None, 10, "file:///log", {"total": 2.0}),
    TrainingSet(NIGHT, "training/2025-06-30/training_set.parquet"),
    CandidateRuns({names.MODEL_NAME: "run1"}, {names.MODEL_NAME: {"rmse": 900.0}}),
    Verdict(
        names.MODEL_NAME,
        "run1",
        ["2024 Long Rains"],
        "3",
        None,
        {"rmse": 900.0},
        None,
        None,
        {"rmse": 1200.0},
        True,
        "first version",
    ),
    PromotionOutcome(names.MODEL_NAME, "3", "promoted", True, "first version"),
]


@pytest.mark.parametrize("result", RESULTS, ids=lambda result: type(result).__name__)
def test_a_result_survives_a_trip_through_xcom(result: StepResult) -> None:
    assert dataclasses.is_dataclass(result)
    assert type(result).__dataclass_params__.frozen  # type: ignore[attr-defined]
    payload = json.loads(json.dumps(result.xcom()))  # what XCom stores: JSON
    assert type(result).from_xcom(payload) == result


def test_dates_and_times_travel_as_iso_strings() -> None:
    plan = next(result for result in RESULTS if isinstance(result, ScoringPlan))
    payload = plan.xcom()
    assert payload["run_date"] == "2025-06-30"
    assert payload["started_at"] == "2025-06-30T00:05:01.000250+00:00"
    assert ScoringPlan.from_xcom(payload).started_at == plan.started_at


def test_a_result_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        RESULTS[0].run_date = dt.date(2025, 7, 1)  # type: ignore[misc]


def test_a_payload_missing_a_field_names_it() -> None:
    payload = TrainingSet(NIGHT, "training/x.parquet").xcom()
    del payload["path"]
    with pytest.raises(TypeError, match="path"):
        TrainingSet.from_xcom(payload)


@pytest.mark.parametrize(
    ("given", "kind"), [("2025-06-30", "str"), (dt.datetime(2025, 6, 30, 12), "datetime")]
)
def test_lake_paths_take_a_date_and_refuse_anything_else(given: object, kind: str) -> None:
    assert names.features_path(NIGHT) == "features/2025-06-30/plot_features.parquet"
    with pytest.raises(TypeError, match=f"a run date is a datetime.date, not {kind}"):
        names.features_path(given)  # type: ignore[arg-type]
