"""
### raw_ingestion

Nightly: each configured product, as downloaded, into the raw contract (docs/DESIGN.md,
"Real sources"), then the asset `raw_inputs`, which starts `feature_materialization` for
the same night.

Tasks, in the order the products depend on each other: `plots` (PLOTS_SOURCE, with
PLOT_SEASONS_SOURCE, DEM_SOURCE, COUNTIES_SOURCE) → for CHIRPS and AgERA5 each
`plan_<product>` (which months hold a day that is new or whose file changed) →
`month_<product>` mapped over those months → `publish_<product>` (the raw weather years
rebuilt) → `yields` (YIELDS_SOURCE) → `announce`.

* **Unconfigured products** are left as they are (a team writing parts of the raw contract
  itself still gets its nightly features).
* **Bad input** (a file off its product's conventions, too many bad rows) fails the task in
  one line naming the file; nothing of that product is replaced; not retried.
* **Run date:** the `run_date` param, else the logical date (the UTC day that just ended);
  days after it are left for the next night.
* **Rerun:** idempotent: unchanged files are not read again and give byte-identical raw
  files; a killed run leaves the previous raw data in place.
* **By hand:** `nuru-yield ingest all --date D` runs the same steps in one process;
  `nuru-yield ingest <product> PATH…` one product from given files.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import DAG, task

from nuru_yield.orchestration import (
    announce,
    default_args,
    nightly_schedule,
    raw_inputs,
    resolve_run_date,
    run_date_params,
)

WEATHER_PRODUCTS = ("chirps", "agera5")

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

    @task(trigger_rule="none_failed")
    def table(product: str, **context: Any) -> dict[str, Any] | None:
        """Plots or harvest labels from their configured files (None: not configured)."""
        from nuru_yield.config import get_settings
        from nuru_yield.sources.ingest import configured, ingest

        resolve_run_date(context)
        if not configured(product, get_settings()):
            return None
        return ingest(product).xcom()

    @task
    def plan(product: str, **context: Any) -> dict[str, Any] | None:
        """The months of a gridded product with new or changed days (None: not configured)."""
        from nuru_yield.config import get_settings
        from nuru_yield.sources.ingest import configured
        from nuru_yield.sources.weather import plan_weather

        if not configured(product, get_settings()):
            return None
        return plan_weather(product, run_date=resolve_run_date(context)).xcom()

    @task
    def months(planned: dict[str, Any] | None) -> list[str]:
        return list(planned["months"]) if planned else []

    @task
    def month(month: str, planned: dict[str, Any]) -> dict[str, Any]:
        """Read one month's new or changed days; replace its stored part."""
        from nuru_yield.sources.weather import WeatherPlan, ingest_month

        return ingest_month(WeatherPlan.from_xcom(planned), month).xcom()

    # A product with no month to read maps over nothing (its month tasks are skipped): what
    # follows still runs, unless something failed.
    @task(trigger_rule="none_failed")
    def publish(planned: dict[str, Any] | None) -> dict[str, Any] | None:
        """Rebuild the raw weather years whose months changed."""
        from nuru_yield.sources.weather import WeatherPlan, publish_weather

        if not planned:
            return None
        return publish_weather(WeatherPlan.from_xcom(planned)).xcom()

    @task(outlets=[raw_inputs], trigger_rule="none_failed")
    def announce_night(**context: Any) -> str:
        """The night's raw contract is in place: start feature_materialization."""
        run_date = resolve_run_date(context)
        announce(context, raw_inputs, run_date)
        return run_date.isoformat()

    previous = table.override(task_id="plots")("plots")
    for product in WEATHER_PRODUCTS:
        planned = plan.override(task_id=f"plan_{product}")(product)
        staged = (
            month.override(task_id=f"month_{product}")
            .partial(planned=planned)
            .expand(month=months.override(task_id=f"months_{product}")(planned))
        )
        published = publish.override(task_id=f"publish_{product}")(planned)
        previous >> planned
        staged >> published
        previous = published
    labels = table.override(task_id="yields")("yields")
    previous >> labels >> announce_night()
