"""Batch scoring end to end on SQLite and on a real PostgreSQL: rows, intervals, drivers,
idempotent reruns, shadow scoring, a load killed by SIGKILL, and one-line failures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from typing import Any

import pytest
import sqlalchemy as sa

from nuru_yield.config import reset_settings
from nuru_yield.errors import DatabaseError, MissingInputError
from tests.fixtures import killed_scoring
from tests.fixtures.scoring import PLOTS, RUN_DATE, Registry, write_features


def _rows(sql: str) -> list[sa.Row]:
    from nuru_yield.db.engine import get_engine

    with get_engine().connect() as connection:
        return connection.execute(sa.text(sql)).all()


def _predictions(model_name: str = "champion") -> list[sa.Row]:
    return _rows(
        "SELECT plot_id, season_year, season, model_version, predicted_yield_kg_per_ha, "
        "yield_lower, yield_upper, interval_level, top_drivers, run_id, days_after_planting "
        f"FROM predictions WHERE model_name = '{model_name}' ORDER BY plot_id"
    )


def _drivers(value: object) -> list[dict]:
    return json.loads(value) if isinstance(value, str) else value  # JSON text on SQLite


def test_score_publishes_every_in_progress_plot(registry: Registry, database: str) -> None:
    from nuru_yield.features.columns import FEATURE_COLUMNS
    from nuru_yield.lake import Lake
    from nuru_yield.names import prediction_log_path
    from nuru_yield.scoring.run import score

    write_features()
    summary = score(RUN_DATE, shards=3)

    rows = _predictions()
    assert len(rows) == PLOTS == summary.plots_scored
    assert len({(r.plot_id, r.season_year, r.season) for r in rows}) == PLOTS
    assert {r.model_version for r in rows} == {registry.champion}
    assert {r.run_id for r in rows} == {summary.run_id}
    for row in rows:
        assert row.yield_lower < row.predicted_yield_kg_per_ha < row.yield_upper
        assert row.interval_level == pytest.approx(0.8)
        drivers = _drivers(row.top_drivers)
        assert len(drivers) == 3
        assert {d["feature"] for d in drivers} <= set(FEATURE_COLUMNS)
        sizes = [abs(d["contribution"]) for d in drivers]
        assert sizes == sorted(sizes, reverse=True)
    assert not _predictions("challenger")

    latest = _rows("SELECT COUNT(*) FROM latest_predictions")[0][0]
    assert latest == PLOTS
    run = _rows("SELECT * FROM scoring_runs")
    assert len(run) == 1
    assert run[0].status == "success"
    assert run[0].plots_scored == PLOTS
    assert run[0].model_version == registry.champion
    assert run[0].prediction_log_uri == summary.prediction_log_uri

    lake = Lake.from_settings()
    logged = lake.read_parquet(prediction_log_path(RUN_DATE))
    assert logged.num_rows == PLOTS
    assert set(FEATURE_COLUMNS) <= set(logged.column_names)
    assert set(logged.column("run_id").to_pylist()) == {summary.run_id}
    assert lake.list("monitoring/predictions/_parts") == []


def test_rerun_gives_the_same_rows_without_duplicates(registry: Registry, database: str) -> None:
    from nuru_yield.scoring.run import score

    write_features()
    first = score(RUN_DATE, shards=1)
    before = {r.plot_id: r.predicted_yield_kg_per_ha for r in _predictions()}
    second = score(RUN_DATE, shards=4)
    after = _predictions()

    assert first.run_id != second.run_id
    assert len(after) == PLOTS
    assert {r.plot_id: r.predicted_yield_kg_per_ha for r in after} == pytest.approx(before)
    assert {r.run_id for r in after} == {second.run_id}
    statuses = _rows("SELECT status FROM scoring_runs ORDER BY started_at")
    assert [s.status for s in statuses] == ["success", "success"]


def test_one_process_loads_the_models_once_for_all_its_shards(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``nuru-yield score`` runs every shard in one process: the first shard loads the
    models (its timing says so) and the others use them; an Airflow shard loads its own."""
    from nuru_yield.scoring import run
    from nuru_yield.scoring.run import score

    loads: list[str] = []
    load_models = run.load_models

    def counted(plan: Any, settings: Any) -> Any:
        loads.append(plan.run_id)
        return load_models(plan, settings)

    monkeypatch.setattr(run, "load_models", counted)
    write_features()
    result = score(RUN_DATE, shards=3)
    assert loads == [result.run_id]
    assert result.seconds["load_models"] > 0


def test_retried_publish_of_one_shard_finds_its_moved_log(registry: Registry) -> None:
    """With one shard the log part is moved into place, not rewritten: a publish retried
    after the move still succeeds; a publish whose part is gone fails with a clear line."""
    from nuru_yield.errors import LakeError
    from nuru_yield.lake import Lake
    from nuru_yield.names import prediction_log_path
    from nuru_yield.scoring.run import prepare_run, publish_run, score_shard

    write_features()
    plan = prepare_run(RUN_DATE, shards=1)
    shard = score_shard(plan, 0)
    first = publish_run(plan, [shard])
    retried = publish_run(plan, [shard])
    assert first.rows == retried.rows == PLOTS
    log = Lake.from_settings().read_parquet(prediction_log_path(RUN_DATE))
    assert set(log.column("run_id").to_pylist()) == {plan.run_id}

    other = prepare_run(RUN_DATE, shards=1)  # never scored: no part, the log is not its own
    with pytest.raises(LakeError, match=r"parts of shards \[0\] are missing"):
        publish_run(other, [shard])
    assert {r.run_id for r in _predictions()} == {plan.run_id}


def test_shadow_rows_only_with_a_challenger(registry: Registry, database: str) -> None:
    from nuru_yield.models.registry import mlflow_client
    from nuru_yield.names import CHALLENGER, MODEL_NAME
    from nuru_yield.scoring.run import score

    write_features()
    score(RUN_DATE, shards=2)
    assert not _predictions("challenger")

    mlflow_client().set_registered_model_alias(MODEL_NAME, CHALLENGER, registry.candidate)
    summary = score(RUN_DATE, shards=2)
    shadow = _predictions("challenger")
    assert len(shadow) == len(_predictions("champion")) == PLOTS
    assert {r.model_version for r in shadow} == {registry.candidate}
    assert summary.challenger_version == registry.candidate
    served = _rows("SELECT DISTINCT model_name FROM latest_predictions")
    assert [r.model_name for r in served] == ["champion"]


def _score_in_subprocess(env: dict[str, str], **kill: Any) -> subprocess.CompletedProcess[str]:
    """``nuru-yield score`` in a process of its own that kills itself for real where ``kill``
    says (:func:`tests.fixtures.killed_scoring.command`). (Not a fork of this process:
    MLflow's background threads make forked children hang.)"""
    return subprocess.run(
        killed_scoring.command(["score", "--date", str(RUN_DATE), "--shards", "2"], **kill),
        env={**os.environ, **env},
        cwd=killed_scoring.REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_a_load_killed_midway_leaves_the_previous_partition(
    registry: Registry, database: str
) -> None:
    from nuru_yield.scoring.run import score

    write_features()
    served = score(RUN_DATE, shards=2).run_id

    # 240 plots in 2 shards, 40 rows a batch: the child is killed by SIGKILL when its first
    # shard's load asks for a third batch, two batches into the open load transaction.
    killed = _score_in_subprocess({"SCORING_BATCH_ROWS": "40"}, after_batches=2)

    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert killed_scoring.KILLED_MID_LOAD in killed.stderr
    rows = _predictions()
    assert len(rows) == PLOTS
    assert {r.run_id for r in rows} == {served}
    assert [r.status for r in _rows("SELECT status FROM scoring_runs ORDER BY started_at")] == [
        "success",
        "running",  # the killed run: it never got to record an outcome
    ]

    rerun = score(RUN_DATE, shards=2)
    rows = _predictions()
    assert len(rows) == PLOTS
    assert {r.run_id for r in rows} == {rerun.run_id}
    # The rerun found the killed run's process gone (no one held the night's lock).
    assert [r.status for r in _rows("SELECT status FROM scoring_runs ORDER BY started_at")] == [
        "success",
        "failed",
        "success",
    ]


def test_missing_features_fail_with_one_clear_line(
    registry: Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    from nuru_yield.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["score", "--date", str(RUN_DATE)])
    assert exited.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: no features for 2025-05-01")


def test_missing_champion_fails_with_one_clear_line(registry: Registry) -> None:
    from nuru_yield.models.registry import mlflow_client
    from nuru_yield.names import CHAMPION, MODEL_NAME
    from nuru_yield.scoring.run import score

    write_features()
    mlflow_client().delete_registered_model_alias(MODEL_NAME, CHAMPION)
    with pytest.raises(MissingInputError, match="has no @champion version"):
        score(RUN_DATE)


def test_database_down_is_a_clear_database_error(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nuru_yield.scoring.run import score
    from tests.fixtures.services import free_port

    write_features()
    monkeypatch.setenv(
        "PREDICTIONS_DB_URL", f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nuru"
    )
    reset_settings()
    with pytest.raises(DatabaseError, match=r"127\.0\.0\.1") as raised:
        score(RUN_DATE)
    assert "\n" not in str(raised.value)


def test_a_night_with_an_impossible_forecast_is_refused_and_the_last_one_stays_served(
    registry: Registry, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The models cannot produce such a night (the unit tests show why); if a bug ever did,
    the scoring-time check refuses it whole: nothing of it is published."""
    from nuru_yield.errors import ForecastIntegrityError
    from nuru_yield.models.intervals import ConformalIntervals
    from nuru_yield.scoring.run import score

    write_features()
    served = score(RUN_DATE, shards=2).run_id
    broken = ConformalIntervals.interval

    def interval_above_the_forecast(self, predicted, days_after_planting):
        lower, upper = broken(self, predicted, days_after_planting)
        return lower + predicted, upper + predicted  # lower > forecast on every row

    monkeypatch.setattr(ConformalIntervals, "interval", interval_above_the_forecast)
    with pytest.raises(ForecastIntegrityError, match=r"rows: \d[\d,]* outside its interval"):
        score(RUN_DATE, shards=2)
    assert {r.run_id for r in _predictions()} == {served}
    statuses = [r.status for r in _rows("SELECT status FROM scoring_runs ORDER BY started_at")]
    assert statuses == ["success", "failed"]
