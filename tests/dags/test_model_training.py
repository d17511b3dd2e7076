"""The model_training DAG: parse-time hygiene, structure, and real ``dag.test()`` runs on
sample data — a first run promotes and updates ``champion_model``, a rerun on the same
labels is refused by the gate and updates nothing."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import sqlalchemy as sa

from nuru_yield.config import reset_settings
from nuru_yield.db.engine import get_engine
from nuru_yield.db.schema import county_skill, model_promotions
from nuru_yield.models.registry import mlflow_client
from nuru_yield.names import CHAMPION, MODEL_NAME
from nuru_yield.training import pipeline
from tests.fixtures.training import SAMPLE_TRAINING_DATE, TEST_PARAMS

DAG_ID = "model_training"
TASKS = ["build_training_set", "train_candidates", "evaluate", "gate", "promote", "county_skill"]


def test_dag_structure(dag_bag: Any, load_dag: Any) -> None:
    from nuru_yield.orchestration import champion_model

    assert dag_bag.import_errors == {}
    dag = load_dag(DAG_ID)
    assert [task.task_id for task in dag.topological_sort()] == TASKS
    assert dag.catchup is False and "run_date" in dag.params
    assert dag.timetable.asset_condition.name == "harvest_labels"
    assert dag.timetable.timetable.expression == "0 3 * * 1"
    assert dag.get_task("evaluate").upstream_task_ids == {"build_training_set", "train_candidates"}
    assert dag.get_task("county_skill").upstream_task_ids == {"promote", "build_training_set"}
    promote = dag.get_task("promote")
    assert [outlet.name for outlet in promote.outlets] == ["champion_model_moves"]
    assert champion_model not in dag.get_task("train_candidates").outlets


def test_harvest_labels_stay_unpartitioned_events_a_partitioned_one_would_start_no_training(
    unpause: Any,
) -> None:
    """``model_training`` runs weekly and on new labels: not a partitioned DAG, and Airflow
    3.3 queues no run of such a DAG for a partitioned event. So ``harvest_labels`` events
    carry their run date in ``extra`` (README, "Operations"), not as a partition key."""
    from airflow.assets.manager import AssetManager
    from airflow.models.asset import AssetDagRunQueue, AssetModel
    from airflow.utils.session import create_session

    unpause(DAG_ID)

    def queued(**event: Any) -> list[str]:
        with create_session() as session:
            labels = session.query(AssetModel).filter(AssetModel.name == "harvest_labels").one()
            AssetManager.register_asset_change(asset=labels, session=session, **event)
            session.flush()
            targets = [row.target_dag_id for row in session.query(AssetDagRunQueue).all()]
            session.rollback()
        return targets

    assert queued(partition_key="2025-06-15") == []
    assert queued(extra={"run_date": "2025-06-15"}) == [DAG_ID]


def _champion_events(run_id: str) -> list[dict[str, Any]]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        events = (
            session.query(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .filter(AssetModel.name == "champion_model", AssetEvent.source_run_id == run_id)
            .all()
        )
        return [dict(event.extra) for event in events]


def _aliases() -> dict[str, str]:
    aliases = mlflow_client().get_registered_model(MODEL_NAME).aliases
    return {alias: str(version) for alias, version in aliases.items()}


def _skill_rows() -> list[Any]:
    with get_engine().connect() as connection:
        return connection.execute(
            sa.select(
                county_skill.c.model_version,
                county_skill.c.county,
                county_skill.c.season,
                county_skill.c.lead_days,
                county_skill.c.computed_at,
            ).order_by(county_skill.c.county, county_skill.c.season, county_skill.c.lead_days)
        ).all()


def _states(run: Any) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


@pytest.mark.slow
def test_promotes_then_refuses_an_equal_retrain(
    load_dag: Any, sample_lake: Any, empty_registry: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The pipeline's own params, shrunk: the DAG path still passes its settings through.
    monkeypatch.setattr(
        pipeline, "TrainingParams", lambda **settings: dataclasses.replace(TEST_PARAMS, **settings)
    )
    # The sample data's few plots a county: count every county-season with 3 labels.
    monkeypatch.setenv("COUNTY_MIN_LABELS", "3")
    reset_settings()
    dag = load_dag(DAG_ID)
    conf = {"run_date": SAMPLE_TRAINING_DATE.isoformat()}

    first = dag.test(run_conf=conf, logical_date=None)

    assert str(first.state) == "success", _states(first)
    assert _states(first)["county_skill"] == "success"
    assert _aliases() == {CHAMPION: "1"}
    assert _champion_events(first.run_id) == [
        {"run_date": conf["run_date"], "model_name": MODEL_NAME, "version": "1"}
    ]
    skill = _skill_rows()
    assert skill and {row.model_version for row in skill} == {"1"}
    assert {row.lead_days for row in skill} == {30, 60, 90, 120}

    second = dag.test(run_conf=conf, logical_date=None)

    assert str(second.state) == "success", _states(second)
    assert _states(second)["county_skill"] == "skipped"  # not promoted: the skill stands
    assert _skill_rows() == skill
    assert _champion_events(second.run_id) == []
    assert _aliases() == {CHAMPION: "1"}
    with get_engine().connect() as connection:
        rows = connection.execute(
            sa.select(model_promotions.c.decision, model_promotions.c.dag_run_id).order_by(
                model_promotions.c.id
            )
        ).all()
    assert [tuple(row) for row in rows] == [
        ("promoted", first.run_id),
        ("refused", second.run_id),
    ]
