"""
### feature_materialization

Nightly season-to-date features for every plot-season in progress (DESIGN §1, §5).

For run date **D** it reads the raw contract (plots, weather, NDVI) from the lake and writes
`features/{D}/plot_features.parquet`, `rejected.parquet` (quarantined plot-seasons with a
reason) and `validation.json` (every great-expectations check and count). The run fails,
naming the check, when a bad share passes `VALIDATION_MAX_BAD_SHARE` (default 5%); bad
input is not retried.

* **Run date:** the `run_date` param if given, else the logical date. Each run covers
  the UTC day that just ended (runs start at 00:00 UTC); no catchup.
* **Rerun:** replaces exactly the `features/{D}/` partition.
* **Output:** the last task updates the asset `plot_features` (`nuru://plot_features`)
  with `extra = {run_date, uri, rows}`, which triggers `batch_scoring`.
* **By hand:** `nuru-yield features --date D` runs the same library function.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import DAG, task

from nuru_yield.orchestration import (
    announce,
    default_args,
    nightly_schedule,
    plot_features,
    resolve_run_date,
    run_date_params,
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

    @task
    def materialize_features(**context: Any) -> dict[str, Any]:
        """Load, compute, validate and write the partition; returns its URIs and counts."""
        from nuru_yield.features import materialize
        from nuru_yield.lake import Lake

        return materialize(Lake.from_settings(), resolve_run_date(context)).as_dict()

    @task(outlets=[plot_features])
    def publish_plot_features(result: dict[str, Any], **context: Any) -> str:
        """Check the written partition and announce it on the `plot_features` asset."""
        from nuru_yield.features import published_partition
        from nuru_yield.lake import Lake

        partition = published_partition(Lake.from_settings(), result["run_date"])
        announce(context, plot_features, **partition)
        return partition["uri"]

    publish_plot_features(materialize_features())
