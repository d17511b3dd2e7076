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
* **Trigger:** each night the asset `raw_inputs` announces (`raw_ingestion`, nightly at
  00:00 UTC for the UTC day that just ended): the run is keyed by that night (its partition
  key); by hand with a partition key or the `run_date` param; no catchup.
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
    each_night_of,
    plot_features,
    raw_inputs,
    run_date_params,
    sharded_night,
)

with DAG(
    dag_id="feature_materialization",
    schedule=each_night_of(raw_inputs),
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
