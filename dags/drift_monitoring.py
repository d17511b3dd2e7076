"""
### drift_monitoring

Nightly drift monitoring, realized accuracy and the retraining trigger
(docs/DESIGN.md, "What the system does").

Runs for each night the asset `predictions` (`nuru://predictions`) announces (`batch_scoring`
published it): the run is keyed by that night, its partition key (or, by hand, a partition
key or the `run_date` param).

1. **monitor** — `nuru_yield.monitoring.monitor.run_monitoring(D)`: every model feature and the
   prediction compared with a crop-calendar-aware reference (historical plot-seasons of the
   same season type and county at the same days after planting), overall and per county;
   realized accuracy of labelled seasons into `model_performance`; rows in `drift_reports`,
   `monitoring/drift/{D}/drift_report.json` and `drift_report.html`. Alert reasons go to
   the task log.
2. **retraining_needed** — continues only when the run raised an alert (enough variables
   drifted, or realized accuracy worse than the champion's evaluation by the margin) and
   no earlier run triggered retraining within `ALERT_COOLDOWN_DAYS`.
3. **trigger_model_training** — starts `model_training` with `conf = {run_date, reason,
   triggered_by, drift_report}`; run id `drift_monitoring__{D}`, so a rerun of D never
   triggers twice. Its success, and any failure of this DAG, are announced by the
   configured notifier (`ALERT_CHANNEL` = `webhook` or `smtp`; off by default).

* **Rerun:** replaces exactly D's drift rows, report files and the realized accuracy of the
  recomputed seasons.
* **By hand:** `nuru-yield drift --date D` runs the same library function.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG, task

from nuru_yield.orchestration import (
    AlertNotifier,
    default_args,
    each_night_of,
    log_failure,
    predictions,
    resolve_run_date,
    run_date_params,
)

TRAINING_DAG_ID = "model_training"


def outcome(key: str) -> str:
    """A Jinja expression for one key of the ``monitor`` task's result."""
    return "{{ ti.xcom_pull(task_ids='monitor')['" + key + "'] }}"


with DAG(
    dag_id="drift_monitoring",
    schedule=each_night_of(predictions),
    start_date=dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    default_args={
        **default_args,
        "on_failure_callback": [
            log_failure,
            AlertNotifier(
                subject="nuru-yield drift_monitoring failed: {{ ti.task_id }} ({{ run_id }})",
                body="{{ exception }}",
            ),
        ],
    },
    params=run_date_params(),
    tags=["nuru-yield", "monitoring"],
    doc_md=__doc__,
):

    @task
    def monitor(**context: Any) -> dict[str, Any]:
        """Drift, realized accuracy, reports and the alert decision for the run date."""
        from nuru_yield.monitoring.monitor import run_monitoring

        return run_monitoring(resolve_run_date(context)).xcom()

    @task.short_circuit
    def retraining_needed(result: dict[str, Any]) -> bool:
        """Go on to the trigger only when this run raised an alert outside the cooldown."""
        return bool(result["trigger_training"])

    trigger_model_training = TriggerDagRunOperator(
        task_id="trigger_model_training",
        trigger_dag_id=TRAINING_DAG_ID,
        trigger_run_id="drift_monitoring__" + outcome("run_date"),
        skip_when_already_exists=True,
        conf={
            "run_date": outcome("run_date"),
            "reason": outcome("reason"),
            "triggered_by": "drift_monitoring",
            "drift_report": outcome("report"),
        },
        on_success_callback=AlertNotifier(
            subject=f"nuru-yield alert {outcome('run_date')}: retraining triggered",
            body=f"{outcome('reason')}\nreport: {outcome('html')}",
        ),
    )

    retraining_needed(monitor()) >> trigger_model_training
