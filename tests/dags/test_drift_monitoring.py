"""The drift_monitoring DAG: parse-time hygiene, structure, and ``dag.test()`` runs in which
a quiet season stops at the short-circuit, a drought without evidence against the model is a
season signal that stops there too, and inputs outside the champion's training ranges
trigger ``model_training``."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from nuru_yield.lake import Lake
from nuru_yield.models.leads import LEAD_BANDS
from nuru_yield.models.ranges import TrainingRanges
from nuru_yield.names import drift_report_path, features_path
from tests.integration.test_monitoring_season import RUN_DATE, apply_drought, generate

DAG_ID = "drift_monitoring"


def test_dag_structure(load_dag: Any) -> None:
    from airflow.sdk import PartitionedAssetTimetable

    from nuru_yield.orchestration import log_failure, predictions

    dag = load_dag(DAG_ID)
    assert isinstance(dag.timetable, PartitionedAssetTimetable)  # a run for each night
    assert dag.timetable.asset_condition == predictions
    assert dag.catchup is False and "run_date" in dag.params and dag.doc_md
    trigger = dag.get_task("trigger_model_training")
    assert trigger.trigger_dag_id == "model_training"
    assert trigger.upstream_task_ids == {"retraining_needed"}
    assert dag.get_task("retraining_needed").upstream_task_ids == {"monitor"}
    notifier = trigger.on_success_callback[0]
    assert type(notifier).__name__ == "AlertNotifier"
    callbacks = dag.get_task("monitor").on_failure_callback
    assert callbacks[0] is log_failure and type(callbacks[1]).__name__ == "AlertNotifier"


@pytest.fixture
def season_features(nuru_home: Path) -> Lake:
    """This test's lake: generated raw inputs and the features of the run date."""
    from nuru_yield.features.compute import season_to_date
    from nuru_yield.features.raw import load_raw

    lake = Lake.from_settings()
    generate(lake.root, seed=31, plots=500, start_year=2021)
    lake.write_parquet(
        features_path(RUN_DATE), season_to_date(load_raw(lake), RUN_DATE, 180).features
    )
    return lake


def _states(run: Any) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def _training_runs() -> list[Any]:
    from airflow.models import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        runs = session.query(DagRun).filter(DagRun.dag_id == "model_training").all()
        session.expunge_all()
    return runs


@pytest.mark.slow
def test_a_drought_is_a_season_signal_and_inputs_never_trained_on_trigger_training(
    season_features: Lake, load_dag: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nuru_yield.db.migrations import upgrade
    from nuru_yield.features.compute import season_to_date
    from nuru_yield.features.raw import load_raw

    monkeypatch.setenv("DRIFT_REFERENCE_YEARS", "3")
    upgrade()
    dag = load_dag(DAG_ID)
    conf = {"run_date": RUN_DATE.isoformat()}
    stopped = {
        "monitor": "success",
        "retraining_needed": "success",
        "trigger_model_training": "skipped",
    }

    quiet = dag.test(run_conf=conf, logical_date=None)

    assert _states(quiet) == stopped
    report = season_features.read_json(drift_report_path(RUN_DATE))
    assert report["alert"]["raised"] is False and "model evidence" not in report["finding"]

    apply_drought(season_features)
    drought = season_to_date(load_raw(season_features), RUN_DATE, 180).features
    season_features.write_parquet(features_path(RUN_DATE), drought)

    # No model scored the night (features only): nothing tells inputs outside its training.
    dry = dag.test(run_conf=conf, logical_date=None)

    assert _states(dry) == stopped
    report = season_features.read_json(drift_report_path(RUN_DATE))
    assert report["finding"] == "season signal"
    assert {"precip_total", "gdd_sum", "max_ndvi"} <= set(report["drifted"])
    # Nothing scored, so no county bulletin: the season to date is the bulletin's to state.
    assert report["season_to_date"] == [] and report["season_signals"] == []
    assert _training_runs() == []

    # A champion that only ever saw 5–9 m of rain: tonight's is below anything it learned.
    bands = len(LEAD_BANDS)
    wet = TrainingRanges(
        LEAD_BANDS, ("precip_total",), np.full((bands, 1), 5000.0), np.full((bands, 1), 9000.0)
    )
    champion = SimpleNamespace(ranges=wet)
    monkeypatch.setattr("nuru_yield.monitoring.monitor.scoring_model", lambda current: champion)

    alarmed = dag.test(run_conf=conf, logical_date=None)

    assert set(_states(alarmed).values()) == {"success"}, _states(alarmed)
    report = season_features.read_json(drift_report_path(RUN_DATE))
    assert report["finding"] == "season signal and model evidence"
    assert report["alert"]["trigger_training"] is True
    (training,) = _training_runs()
    assert training.run_id == f"drift_monitoring__{RUN_DATE.isoformat()}"
    assert training.conf["run_date"] == RUN_DATE.isoformat()
    assert training.conf["triggered_by"] == "drift_monitoring"
    assert training.conf["reason"].startswith(
        "inputs outside the training range: precip_total 100.0% of tonight's values"
    )
