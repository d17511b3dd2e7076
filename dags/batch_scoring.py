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
* one `scoring_runs` row (versions, counts, timings, status, lake URIs);
* the county forecasts of D (`county_forecasts`: per county × season, % of normal, an 80%
  interval calibrated at county level, the hindcast skill, season signals) and the bulletin
  `monitoring/bulletins/{D}/bulletin.html` and `county_forecasts.csv` (docs/DESIGN.md,
  "County bulletins").

Tasks: `prepare` resolves the aliases **once** and opens the run → `score_shard` is mapped
over K shards (`hash(plot_id) mod K`, K = `SCORING_SHARDS`, default 4; never one task per
plot), each streaming and staging its plots → `publish` swaps the partition in and updates
the asset `predictions` (one event keyed by the night, `extra = {run_id, rows,
model_version, uri}`), which triggers the `drift_monitoring` run of that night →
`county_bulletin`: nothing to do when `publish` wrote the county forecasts; when that step
failed (the plot forecasts stay published, `scoring_runs.message` says why), it runs it again
and fails — red in the grid, retried with backoff — while it still fails.

* **Trigger:** each night the asset `plot_features` announces: the run is keyed by that
  night (its partition key); by hand with a partition key or the `run_date` param.
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
    default_args,
    each_night_of,
    plot_features,
    predictions,
    run_date_params,
    sharded_night,
)

with DAG(
    dag_id="batch_scoring",
    schedule=each_night_of(plot_features),
    start_date=dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    default_args=default_args,
    params=run_date_params(),
    tags=["nuru-yield", "scoring"],
    doc_md=__doc__,
):
    published = sharded_night(
        "nuru_yield.scoring.run:SCORING", shard_task_id="score_shard", outlet=predictions
    )

    @task
    def county_bulletin(published: dict[str, Any]) -> dict[str, Any]:
        """The county forecasts and bulletin, again if `publish` could not write them."""
        from nuru_yield.scoring.plan import ScoringResult
        from nuru_yield.scoring.run import county_bulletin as write_again

        night = ScoringResult.from_xcom(published)
        written = write_again(night)
        if written is not None:
            return written.xcom()
        return {"run_date": night.run_date.isoformat(), "bulletin": night.bulletin_uri}

    county_bulletin(published)
