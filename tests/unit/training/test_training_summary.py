"""What ``nuru-yield train`` prints: the candidates, the gate's table by season and county,
and a decision line that names the run, so that ``nuru-yield promote --run-id`` can be given
it (the README's promotion step) without opening MLflow."""

from __future__ import annotations

from nuru_yield.training.pipeline import (
    CandidateRuns,
    PromotionOutcome,
    TrainingSummary,
    Verdict,
)

SEASON_COUNTY = "2024 Long Rains/Kitui"


def _metrics(rmse: float) -> dict[str, object]:
    return {
        "rmse": rmse,
        "mae": rmse * 0.7,
        "r2": 0.4,
        "mape": 0.7,
        "coverage": 0.8,
        "interval_width": 3000.0,
        "n": 1000,
        "season": {"2024 Long Rains": {"rmse": rmse, "n": 1000}},
        "county": {"Kitui": {"rmse": rmse, "n": 1000}},
        "season_county": {SEASON_COUNTY: {"rmse": rmse, "n": 1000}},
    }


def test_the_rendered_summary_names_the_run_to_promote() -> None:
    summary = TrainingSummary(
        training_set_uri="file:///lake/training/2025-06-15/training_set.parquet",
        candidates=CandidateRuns(
            runs={"Ensemble_VotingRegressor": "0123456789abcdef"},
            metrics={"Ensemble_VotingRegressor": _metrics(900.0)},
        ),
        verdict=Verdict(
            model_name="Ensemble_VotingRegressor",
            run_id="0123456789abcdef",
            evaluation_seasons=["2024 Long Rains"],
            candidate_version="3",
            champion_version=None,
            candidate=_metrics(900.0),
            champion=None,
            champion_error=None,
            naive=_metrics(1200.0),
            promote=True,
            reason="first version",
        ),
        outcome=PromotionOutcome(
            model_name="Ensemble_VotingRegressor",
            version="3",
            decision="promoted",
            alias_moved=True,
            reason="first version",
        ),
    )
    lines = summary.render().splitlines()
    assert lines[-1] == (
        "Ensemble_VotingRegressor v3 (run 0123456789abcdef): promoted — first version"
    )
    assert any(line.split()[:4] == ["2024", "Long", "Rains", "Kitui"] for line in lines)
