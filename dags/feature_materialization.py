"""
### feature_materialization

Nightly season-to-date features for every plot-season in progress (docs/DESIGN.md, "Lake
layout" and "Scale-out").

For run date **D** it reads the raw contract (plots, weather, NDVI) from the lake and writes
`features/{D}/plot_features.parquet`, `rejected.parquet` (quarantined plot-seasons with a
reason) and `validation.json` (every great-expectations check and count, and per shard its
rows, seconds, peak memory and host).

Tasks: `prepare` fixes the run and validates the inputs every shard shares (weather cells,
daily weather) → `materialize_shard` is mapped over K shards (`hash(plot_id) mod K`, the
hash batch scoring uses; K = `FEATURE_SHARDS`), each reading only its plots, their NDVI
plot buckets and their cells' weather, and staging its part → `publish` is the one
validation gate over all shards and writes the partition, then updates the asset.

* **Gate:** the run fails, naming the check, when a bad share over all shards passes
  `VALIDATION_MAX_BAD_SHARE` (default 5%); bad input is not retried.
* **Run date:** the night is the run's partition key (`YYYY-MM-DD`): a scheduled run at
  00:00 UTC takes the UTC day that just ended, a backfill one run per night, a manual run
  the partition key it is given, or the `run_date` param; no catchup.
* **Rerun:** replaces exactly the `features/{D}/` partition; clearing one failed
  `materialize_shard` reruns just that shard (it replaces its own staged part). A shard
  that fails stops the run before `publish`: the partitions already published stay served.
* **Output:** `publish` updates the asset `plot_features` (`nuru://plot_features`): one
  event keyed by the night (its partition key), `extra = {run_id, uri, rows}`, which
  triggers the `batch_scoring` run of that night.
* **By hand:** `nuru-yield features --date D [--shards K]` runs the same steps in one process.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG

from nuru_yield.orchestration import (
    default_args,
    nightly_schedule,
    plot_features,
    run_date_params,
    sharded_night,
)

with DAG(
    dag_id="feature_materialization",
    schedule=nightly_schedule(),
    start_date=dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    default_args=default_args,
    params=run_date_params(),
    tags=["nuru-yield", "features"],
    doc_md=__doc__,
):
    sharded_night(
        "nuru_yield.features.materialize:FEATURES",
        shard_task_id="materialize_shard",
        outlet=plot_features,
    )
