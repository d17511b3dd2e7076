"""
### raw_ingestion

Nightly: each configured product, as downloaded, into the raw contract (docs/DESIGN.md,
"Real sources"), then the asset `raw_inputs`, which starts `feature_materialization` for
the same night.

Three sharded steps, each `prepare → shard × K → publish` (K = `INGEST_SHARDS`):

1. **plots** — plots (`PLOTS_SOURCE`, with `PLOT_SEASONS_SOURCE`, `DEM_SOURCE`,
   `COUNTIES_SOURCE`) and harvest labels (`YIELDS_SOURCE`): `prepare` reads each changed
   file once and splits it by plot bucket (the shard hash of the plot id); `ingest_bucket`
   turns one bucket's rows into contract rows and quarantines bad ones; `publish` applies
   the bad-share rule and writes `raw/plots.parquet`, `raw/plot_geometries.parquet`,
   `raw/yields.parquet`.
2. **ndvi** — NDVI rasters: MOD13Q1-style composites (`NDVI_SOURCE`) and Sentinel-2 L2A
   scenes of a STAC API or static catalog (`NDVI_STAC_URL`, `NDVI_STAC_COLLECTION`, the
   last `NDVI_STAC_DAYS`): `prepare` lists the scenes, skips those already ingested (by
   id) and checks the others whole, quarantining bad ones; `ingest_buckets` computes each
   acquisition's per-plot NDVI and cloud fraction for its range of plot buckets; `publish`
   moves the files into `raw/ndvi/` and records each acquisition's scenes.
3. **weather** — CHIRPS (`CHIRPS_SOURCE`) and AgERA5 (`AGERA5_SOURCE`), sampled at the
   CHIRPS pixels that hold plots: `prepare` lists the months with a day that is new or
   whose file changed; `ingest_months` reads its share of them; `publish` rebuilds the raw
   weather years that changed and announces `raw_inputs`.

Then `announce_labels` updates the asset `harvest_labels` when the labels changed, which
starts `model_training` (weather first: training reads it).

* **Labels with too many bad rows** stop no night: the plots, the weather and `raw_inputs`
  go on, then `announce_labels` fails naming the file (the run is red; the previous labels
  stay).

* **Unconfigured products** are left as they are (a team writing parts of the raw contract
  itself still gets its nightly features).
* **Bad input** (a file off its product's conventions, too many bad rows) fails the task in
  one line naming the file; nothing of that product is replaced; not retried.
* **Run date:** the `run_date` param, else the logical date (scheduled: the UTC day that
  just ended); weather days after it are left for the next night. Not a partitioned DAG:
  its `harvest_labels` event must carry no partition key to start `model_training`; its
  `raw_inputs` event carries the night as its key.
* **Rerun:** idempotent: unchanged files are not read again and give byte-identical raw
  files; a killed run leaves the previous raw data in place; clearing one failed shard
  reruns just that shard.
* **By hand:** `nuru-yield ingest all --date D` runs the same steps in one process;
  `nuru-yield ingest <product> PATH…` one product from given files.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import DAG, AssetAlias, TaskGroup, task

from nuru_yield.orchestration import (
    announce,
    default_args,
    harvest_labels,
    nightly_schedule,
    raw_inputs,
    run_date_params,
    sharded_night,
)

# Emitting through an alias lets `announce_labels` update `harvest_labels` only when the
# labels changed.
label_updates = AssetAlias(name="harvest_label_updates", group="nuru-yield")

with DAG(
    dag_id="raw_ingestion",
    schedule=nightly_schedule(),
    start_date=dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    default_args=default_args,
    params=run_date_params(),
    tags=["nuru-yield", "ingestion"],
    doc_md=__doc__,
):
    with TaskGroup("plots") as plot_tables:
        tables = sharded_night(
            "nuru_yield.sources.plot_tables:PLOT_TABLES", shard_task_id="ingest_bucket"
        )
    with TaskGroup("ndvi") as ndvi:
        sharded_night("nuru_yield.sources.ndvi:NDVI", shard_task_id="ingest_buckets")
    with TaskGroup("weather") as weather:
        sharded_night(
            "nuru_yield.sources.weather:WEATHER", shard_task_id="ingest_months", outlet=raw_inputs
        )

    @task(outlets=[label_updates])
    def announce_labels(published: dict[str, Any], **context: Any) -> bool:
        """Update `harvest_labels` if the labels changed (the night in its `extra`); fail,
        naming the file, if they had too many bad rows (the night went on without them)."""
        from nuru_yield.sources.plot_tables import TablesResult

        result = TablesResult.from_xcom(published)
        if result.labels_changed:
            announce(context, harvest_labels, result.run_date, through=label_updates,
                     **result.event_extra())  # fmt: skip
        result.raise_failures()
        return result.labels_changed

    plot_tables >> ndvi >> weather >> announce_labels(tables)
