"""
### batch_scoring

Nightly forecasts for every plot-season in progress (docs/DESIGN.md, "Lake layout", "Database",
"Models and the registry" and "Scale-out").

For run date **D** it scores `features/{D}/plot_features.parquet` with the registered
`Ensemble_VotingRegressor@champion` (and `@challenger`, if set, in shadow:
`model_name = 'challenger'`, never served by default) and publishes:

* the `predictions` partition of D in the predictions database, swapped in atomically
  (readers see last night's rows or tonight's, never a mix), with the resolved model
  version, the calibrated 80% interval and the three strongest TreeSHAP drivers per row;
* the prediction log `monitoring/predictions/{D}/predictions.parquet` (rows + features);
* one `scoring_runs` row (versions, counts, timings, status, lake URIs).

Tasks: `prepare` resolves the aliases **once** and opens the run → `score_shard` is mapped
over K shards (`hash(plot_id) mod K`, K = `SCORING_SHARDS`, default 4; never one task per
plot), each streaming and staging its plots → `publish` swaps the partition in and updates
the asset `predictions`.

* **Trigger:** the asset `plot_features` (run date from the asset event), or by hand with
  the `run_date` param.
* **Rerun:** replaces exactly the partition of D; a run killed midway leaves the previous
  partition served (and the next run marks it failed). A database that is down fails the
  task, which retries with backoff; so does a night locked by another run of D.
* **Empty night:** features of D without any row fail `prepare` at once (no retry) and
  are recorded as `no_plots_in_progress` in `scoring_runs`; `/health` reports it.
* **By hand:** `nuru-yield score --date D [--shards K]` runs the same steps in one process.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import DAG, task

from nuru_yield.orchestration import (
    announce,
    default_args,
    plot_features,
    predictions,
    resolve_run_date,
    run_date_params,
)

with DAG(
    dag_id="batch_scoring",
    schedule=[plot_features],
    start_date=dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    default_args=default_args,
    params=run_date_params(),
    tags=["nuru-yield", "scoring"],
    doc_md=__doc__,
):

    @task
    def prepare(**context: Any) -> dict[str, Any]:
        """Check the features, resolve the model aliases once, open the run."""
        from nuru_yield.scoring.run import prepare_run

        return prepare_run(resolve_run_date(context), dag_run_id=context["run_id"]).xcom()

    @task
    def shard_numbers(plan: dict[str, Any]) -> list[int]:
        """0 … K-1: what `score_shard` is mapped over."""
        return list(range(plan["shards"]))

    @task
    def score_shard(shard: int, plan: dict[str, Any]) -> dict[str, Any]:
        """Stream, score and stage the plots of one shard; write its part of the log."""
        from nuru_yield.scoring.run import ScoringPlan
        from nuru_yield.scoring.run import score_shard as score_one_shard

        return score_one_shard(ScoringPlan.from_xcom(plan), shard).xcom()

    @task(outlets=[predictions])
    def publish(
        plan: dict[str, Any], shards: list[dict[str, Any]], **context: Any
    ) -> dict[str, Any]:
        """Assemble the log, swap the partition in, close the run, update the asset."""
        from nuru_yield.scoring.run import ScoringPlan, ShardResult, publish_run

        results = [ShardResult.from_xcom(shard) for shard in shards]
        published = publish_run(ScoringPlan.from_xcom(plan), results)
        announce(
            context,
            predictions,
            published.run_date,
            run_id=published.run_id,
            rows=published.rows,
            model_version=published.model_version,
            uri=published.prediction_log_uri,
        )
        return published.xcom()

    plan = prepare()
    scored = score_shard.partial(plan=plan).expand(shard=shard_numbers(plan))
    publish(plan, scored)
