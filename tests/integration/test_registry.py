"""The registry side of training against MLflow on SQLite and a real predictions database:
the gate's decisions, aliases, audit rows and tags, rollback, the seed's promotion script,
and the loader scoring uses."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest
import sqlalchemy as sa

from nuru_yield.cli import main
from nuru_yield.config import reset_settings
from nuru_yield.db.engine import get_engine
from nuru_yield.db.migrations import upgrade
from nuru_yield.db.schema import model_promotions
from nuru_yield.errors import RegistryError, TrainingError
from nuru_yield.models.leads import LEAD_BANDS, lead_band
from nuru_yield.models.loaded import holdout_uri, load_model
from nuru_yield.models.registry import alias_version, mlflow_client, promote_run, rollback
from nuru_yield.names import CHAMPION, MODEL_NAME, PREVIOUS, RAW_YIELDS
from nuru_yield.training.candidates import NAIVE
from nuru_yield.training.dataset import seasons_of, temporal_split
from nuru_yield.training.pipeline import (
    PromotionOutcome,
    apply_decision,
    build_training_set,
    decide_promotion,
    evaluate_candidate,
)
from tests.fixtures.training import SAMPLE_TRAINING_DATE, TrainedRounds

REPO = Path(__file__).resolve().parents[2]


def _gate(rounds: TrainedRounds, which: str) -> PromotionOutcome:
    training_set = rounds.good_set if which == "good" else rounds.degraded_set
    run_id = getattr(rounds, which).ensemble_run
    evaluation = evaluate_candidate(training_set, run_id, rounds.lake)
    return apply_decision(decide_promotion(evaluation), dag_run_id="manual__test")


def _promotions() -> list[dict[str, Any]]:
    with get_engine().connect() as connection:
        rows = connection.execute(sa.select(model_promotions).order_by(model_promotions.c.id))
        return [dict(row._mapping) for row in rows]


def _aliases() -> dict[str, str]:
    return {k: str(v) for k, v in mlflow_client().get_registered_model(MODEL_NAME).aliases.items()}


def _tags(version: str) -> dict[str, str]:
    return mlflow_client().get_model_version(MODEL_NAME, version).tags


def _stages() -> dict[str, str]:
    """Version → registry stage, for the versions that have one."""
    versions = mlflow_client().search_model_versions(f"name = '{MODEL_NAME}'")
    return {str(v.version): v.current_stage for v in versions if v.current_stage != "None"}


def _latest_production() -> list[str]:
    """The seed guide's lookup: ``get_latest_versions(stages=["Production"])``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # stages are deprecated in MLflow
        found = mlflow_client().get_latest_versions(MODEL_NAME, stages=["Production"])
    return [str(version.version) for version in found]


def test_first_version_is_promoted_when_it_beats_the_naive_reference(rounds):
    outcome = _gate(rounds, "good")

    assert outcome.decision == "promoted"
    assert outcome.alias_moved
    assert _aliases() == {CHAMPION: "1"}
    [row] = _promotions()
    assert row["decision"] == "promoted"
    assert row["candidate_version"] == "1"
    assert row["previous_version"] is None
    assert row["dag_run_id"] == "manual__test"
    assert "naive reference" in row["reason"]
    assert row["champion_metrics"]["reference"].startswith("naive")
    assert row["candidate_metrics"]["rmse"] < row["champion_metrics"]["rmse"]
    assert _tags("1")["nuru.decision"] == "promoted"


def test_gate_refuses_a_degraded_candidate_and_records_why(rounds):
    _gate(rounds, "good")
    outcome = _gate(rounds, "degraded")

    assert outcome.decision == "refused"
    assert not outcome.alias_moved
    assert _aliases() == {CHAMPION: "1"}  # untouched, and no `previous`
    refused = _promotions()[-1]
    assert refused["decision"] == "refused"
    assert refused["candidate_version"] == "2"
    assert refused["previous_version"] == "1"
    assert "not 1.0% better than champion v1" in refused["reason"]
    assert refused["candidate_metrics"]["rmse"] > refused["champion_metrics"]["rmse"]
    tags = _tags("2")
    assert tags["nuru.decision"] == "refused"
    assert tags["nuru.decision_reason"] == refused["reason"]


def test_better_candidate_is_promoted_and_the_old_champion_becomes_previous(rounds):
    manual = promote_run(rounds.degraded.ensemble_run, MODEL_NAME, "Production")
    assert (manual.decision, manual.candidate_version) == ("promoted", "1")

    outcome = _gate(rounds, "good")

    assert outcome.decision == "promoted"
    assert _aliases() == {CHAMPION: "2", PREVIOUS: "1"}
    gate_row = _promotions()[-1]
    assert (gate_row["candidate_version"], gate_row["previous_version"]) == ("2", "1")
    assert gate_row["actor"] == "gate"
    assert "vs champion v1's" in gate_row["reason"]


def test_rollback_restores_previous_and_is_recorded(rounds, capsys):
    promote_run(rounds.degraded.ensemble_run)
    _gate(rounds, "good")

    assert _latest_production() == ["2"]
    capsys.readouterr()
    main(["rollback"])

    summary = f"{MODEL_NAME} v1: rolled_back (@champion was v2) — rollback: v1 restored"
    assert capsys.readouterr().out.startswith(summary)
    assert _aliases() == {CHAMPION: "1", PREVIOUS: "2"}
    assert _stages() == {"1": "Production", "2": "Archived"}
    assert _latest_production() == ["1"]
    assert load_model(f"models:/{MODEL_NAME}@{CHAMPION}").version == "1"
    row = _promotions()[-1]
    assert (row["decision"], row["actor"]) == ("rolled_back", "cli")
    assert (row["candidate_version"], row["previous_version"]) == ("1", "2")
    assert _tags("1")["nuru.decision"] == "rolled_back"
    assert rollback(MODEL_NAME).decision == "rolled_back"  # and back: v2 is @champion again
    assert _aliases() == {CHAMPION: "2", PREVIOUS: "1"}


def test_rollback_without_previous_fails_in_one_line(rounds, capsys):
    _gate(rounds, "good")
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        main(["rollback"])
    assert exited.value.code == 1
    error = capsys.readouterr().err
    assert error.strip() == f"error: {MODEL_NAME} has no @{PREVIOUS} version to roll back to"
    assert _aliases() == {CHAMPION: "1"}
    assert len(_promotions()) == 1


def test_champion_moved_during_evaluation_voids_the_promotion(rounds):
    evaluation = evaluate_candidate(rounds.good_set, rounds.good.ensemble_run, rounds.lake)
    promote_run(rounds.degraded.ensemble_run)  # lands between evaluation and decision

    outcome = apply_decision(decide_promotion(evaluation))

    assert outcome.decision == "refused"
    assert "moved from none to v2" in outcome.reason
    assert _aliases() == {CHAMPION: "2"}


def test_seed_script_registers_the_run_and_moves_the_production_alias(rounds, nuru_home):
    run_id = rounds.good.ensemble_run
    script = REPO / "scripts" / "promote_model_to_production.py"
    done = subprocess.run(
        [sys.executable, str(script), "--run-id", run_id, "--model-name", MODEL_NAME],
        capture_output=True,
        text=True,
        env={**os.environ, "NURU_HOME": str(nuru_home)},
        cwd=nuru_home,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    summary = f"{MODEL_NAME} v1: promoted (@champion was none)"
    assert summary in done.stdout
    said = done.stdout + done.stderr
    assert said.count("promoted") == 1, said  # the summary once, not also as a log line
    assert _aliases() == {CHAMPION: "1"}
    assert _latest_production() == ["1"]  # the seed guide finds the champion by its stage
    [row] = _promotions()
    assert row["reason"] == f"manual promotion of run {run_id} (stage Production → @champion)"
    assert row["candidate_metrics"]["rmse"] > 0

    again = promote_run(run_id, MODEL_NAME, "Production")
    assert again.summary() == f"{MODEL_NAME} v1: unchanged — v1 is already @champion; nothing to do"
    assert not again.alias_moved
    assert len(_promotions()) == 1 and _aliases() == {CHAMPION: "1"}


def test_seed_script_from_a_python_without_the_project(tmp_path):
    """Run by a Python that lacks the package (a fresh shell), the script hands over to the
    project's .venv; its usage line names the script alone. Without a .venv beside it, it
    says how to run it, in one line."""
    script = REPO / "scripts" / "promote_model_to_production.py"
    outside = [str(Path(sys.base_prefix) / "bin" / "python3"), "-I", "-S"]
    done = subprocess.run([*outside, str(script), "--help"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Usage: promote_model_to_production.py [OPTIONS]")

    copy = tmp_path / "scripts" / script.name
    copy.parent.mkdir()
    copy.write_text(script.read_text())
    done = subprocess.run([*outside, str(copy), "--run-id", "x"], capture_output=True, text=True)
    assert done.returncode == 1
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("error: the nuru_yield package is not installed for this Python")
    assert "make setup" in line


def test_promote_refuses_unknown_stages_and_runs_without_a_model(rounds, capsys):
    good, naive = rounds.good.ensemble_run, rounds.good.runs[NAIVE]
    for argv, message in [
        (["--run-id", good, "--stage", "Archived"], "error: unknown stage 'Archived': use "),
        (["--run-id", naive], f"error: run {naive} has no model logged by nuru-yield training"),
        (["--run-id", "0123456789abcdef"], "error: no MLflow run '0123456789abcdef'"),
    ]:
        with pytest.raises(SystemExit) as exited:
            main(["promote", *argv])
        assert exited.value.code == RegistryError.exit_code
        [line] = capsys.readouterr().err.strip().splitlines()
        assert line.startswith(message)
    assert alias_version(mlflow_client(), MODEL_NAME, CHAMPION) is None
    assert _promotions() == []


def test_staging_moves_the_challenger_alias_only(rounds):
    _gate(rounds, "good")
    decision = promote_run(rounds.degraded.ensemble_run, stage="Staging")
    assert (decision.alias, decision.candidate_version) == ("challenger", "2")
    assert _aliases() == {CHAMPION: "1", "challenger": "2"}
    assert _stages() == {"1": "Production", "2": "Staging"}


def test_champion_is_the_refit_and_its_holdout_fit_reproduces_the_logged_evaluation(rounds):
    _gate(rounds, "good")
    uri = f"models:/{MODEL_NAME}@{CHAMPION}"
    served, holdout = load_model(uri), load_model(holdout_uri(uri))
    assert (served.name, served.version) == (MODEL_NAME, "1")
    assert served.run_id == holdout.run_id == rounds.good.ensemble_run
    assert served.intervals == holdout.intervals  # calibrated once, on held-out seasons

    split = temporal_split(rounds.lake.read_parquet(rounds.good_set.path).to_pandas())
    rows, actual = split.evaluation, split.evaluation["yield_kg_per_ha"].to_numpy()
    logged = mlflow_client().get_run(served.run_id).data.metrics

    def measured(model) -> tuple[float, float]:
        predicted = model.predict(model.features(rows))
        lower, upper = model.interval(predicted, rows["days_after_planting"].to_numpy())
        assert np.all((lower >= 0) & (lower <= predicted) & (predicted <= upper))
        rmse = float(np.sqrt(np.mean((predicted - actual) ** 2)))
        return rmse, float(np.mean((actual >= lower) & (actual <= upper)))

    rmse, coverage = measured(holdout)
    assert rmse == pytest.approx(logged["rmse"], rel=1e-9)
    assert coverage == pytest.approx(logged["coverage"])
    # The served model learned the evaluation seasons too.
    assert measured(served)[0] < rmse
    seasons = {
        artifact: mlflow.models.get_model_info(f"runs:/{served.run_id}/{artifact}").metadata[
            "fitted_seasons"
        ]
        for artifact in ("model", "holdout_model")
    }
    assert seasons["model"] == seasons_of(split.labelled)
    assert seasons["holdout_model"] == seasons_of(split.train)


@pytest.mark.postgres
def test_decisions_are_recorded_on_postgresql(rounds, postgres_url, monkeypatch):
    monkeypatch.setenv("PREDICTIONS_DB_URL", postgres_url)
    reset_settings()
    upgrade()
    _gate(rounds, "good")
    _gate(rounds, "degraded")
    assert [row["decision"] for row in _promotions()] == ["promoted", "refused"]
    assert _promotions()[1]["candidate_metrics"]["county"]


def test_no_labels_is_a_clear_error_and_promotes_nothing(sample_lake, empty_registry, capsys):
    sample_lake.delete(RAW_YIELDS)
    with pytest.raises(SystemExit) as exited:
        main(["train", "--date", SAMPLE_TRAINING_DATE.isoformat()])
    assert exited.value.code == TrainingError.exit_code
    last_line = capsys.readouterr().err.strip().splitlines()[-1]
    assert last_line.startswith("error: no harvest labels: ")
    assert mlflow_client().search_registered_models() == []
    assert _promotions() == []


def test_training_makes_a_new_databases_schema_before_it_fits(
    sample_lake, postgres_url, monkeypatch
):
    """A fresh PostgreSQL: the gate's decision, minutes after the training set, once found no
    `model_promotions` table (and left a registered version without a gate record)."""
    monkeypatch.setenv("PREDICTIONS_DB_URL", postgres_url)
    reset_settings()
    assert "model_promotions" not in sa.inspect(get_engine()).get_table_names()
    build_training_set(SAMPLE_TRAINING_DATE, sample_lake)
    tables = set(sa.inspect(get_engine()).get_table_names())
    assert {"model_promotions", "county_skill", "predictions"} <= tables


def test_training_set_uses_only_seasons_over_by_the_run_date(sample_lake):
    with pytest.raises(TrainingError, match="no labelled plot-season was over by 2021-06-01"):
        build_training_set(dt.date(2021, 6, 1), sample_lake)

    training_set = build_training_set(SAMPLE_TRAINING_DATE, sample_lake)
    assert training_set.run_date == SAMPLE_TRAINING_DATE
    frame = sample_lake.read_parquet(training_set.path).to_pandas()
    assert frame["yield_kg_per_ha"].notna().all()
    assert frame["season_year"].max() == 2023  # 2024's seasons are in progress, unlabelled
    # Every plot-season is cut once inside each lead-time band, at the same days in a rerun.
    bands = frame.groupby(["plot_id", "season_year", "season"])["days_after_planting"].agg(
        lambda days: tuple(lead_band(days.to_numpy()))
    )
    assert set(bands) == {LEAD_BANDS}
    assert frame["days_after_planting"].between(0, 180).all()
    assert frame["days_after_planting"].nunique() > 100  # every night of a season, not 5 cut-offs
    again = sample_lake.read_parquet(build_training_set(SAMPLE_TRAINING_DATE, sample_lake).path)
    assert again.to_pandas().equals(frame)


def test_the_client_turns_mlflows_artifact_progress_bars_off_unless_asked(nuru_home, monkeypatch):
    """`nuru-yield train` and task logs once showed a progress bar per model file."""
    from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR

    monkeypatch.delenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", raising=False)
    mlflow_client()
    assert MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.get() is False
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "true")
    mlflow_client()
    assert MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.get() is True


def test_cli_train_promotes_a_first_champion(sample_lake, empty_registry, capsys):
    """`nuru-yield train` on the sample data: candidates, the gate's table by season and
    county, a first version promoted against the naive reference (recorded), then its county
    skill (none here: no county of the 150 plots has 30 labels a season)."""
    main(["train", "--date", SAMPLE_TRAINING_DATE.isoformat()])

    out = capsys.readouterr().out
    assert "gate, RMSE (kg/ha) by season and county:" in out
    lines = out.strip().splitlines()
    decision = next(line for line in lines if line.startswith(f"{MODEL_NAME} v1 (run "))
    assert "): promoted — " in decision, decision
    skill = lines[lines.index(decision) + 1 :]
    assert skill[0].startswith(f"county skill of {MODEL_NAME} v1: hindcasts leaving out each of 0")
    assert "  (no county with enough labelled seasons)" in skill
    assert _aliases() == {CHAMPION: "1"}
    [row] = _promotions()
    assert (row["decision"], row["candidate_version"]) == ("promoted", "1")


def test_cli_backtest_prints_a_recipe_by_lead_time(sample_lake, capsys):
    day = SAMPLE_TRAINING_DATE.isoformat()
    main(["backtest", "--date", day, "--recipe", "pairwise+dry"])

    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith(f"backtest for {day}: by lead-time band (days after planting")
    assert "pairwise+dry" in lines[2] and "hold-out (gate)" in lines[2]
    assert lines[-1] == ("RMSE cost against the 'free' recipe: not measured (add --recipe free)")
