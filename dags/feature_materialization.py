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
* **Schedule:** whenever `raw_ingestion` announces the night's raw inputs (asset
  `raw_inputs`, nightly after 00:00 UTC); no catchup.
* **Run date:** the `run_date` param if given, else that of the `raw_inputs` event (the
  UTC day that just ended).
* **Rerun:** replaces exactly the `features/{D}/` partition; clearing one failed
  `materialize_shard` reruns just that shard (it replaces its own staged part). A shard
  that fails stops the run before `publish`: the partitions already published stay served.
* **Output:** `publish` updates the asset `plot_features` (`nuru://plot_features`) with
  `extra = {run_date, uri, rows}`, which triggers `batch_scoring`.
* **By hand:** `nuru-yield features --date D [--shards K]` runs the same steps in one process.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import DAG, task

from nuru_yield.orchestration import (
    announce,
    default_args,
    plot_features,
    raw_inputs,
    resolve_run_date,
    run_date_params,
)

with DAG(
    dag_id="feature_materialization",
    schedule=[raw_inputs],
    start_date=dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    default_args=default_args,
    params=run_date_params(),
    tags=["nuru-yield", "features"],
    doc_md=__doc__,
):

    @task
    def prepare(**context: Any) -> dict[str, Any]:
        """Fix the run (id, shards, window) and validate the inputs every shard shares."""
        from nuru_yield.features.materialize import prepare_features
        from nuru_yield.lake import Lake

        return prepare_features(Lake.from_settings(), resolve_run_date(context)).xcom()

    @task
    def shard_numbers(plan: dict[str, Any]) -> list[int]:
        """0 … K-1: what `materialize_shard` is mapped over."""
        return list(range(plan["shards"]))

    @task
    def materialize_shard(shard: int, plan: dict[str, Any]) -> dict[str, Any]:
        """Read, compute and validate one shard's plot-seasons; stage its part."""
        from nuru_yield.features.materialize import FeaturePlan
        from nuru_yield.features.materialize import materialize_shard as materialize_one_shard

        return materialize_one_shard(FeaturePlan.from_xcom(plan), shard).xcom()

    @task(outlets=[plot_features])
    def publish(plan: dict[str, Any], **context: Any) -> dict[str, Any]:
        """The gate over all shards; write the partition; announce it on `plot_features`."""
        from nuru_yield.features.materialize import FeaturePlan, publish_features

        published = publish_features(FeaturePlan.from_xcom(plan))
        announce(
            context,
            plot_features,
            published.run_date,
            uri=published.features_uri,
            rows=published.rows,
        )
        return published.xcom()

    plan = prepare()
    staged = materialize_shard.partial(plan=plan).expand(shard=shard_numbers(plan))
    staged >> publish(plan)
