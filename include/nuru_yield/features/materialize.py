"""The ``features/{D}/`` partition in K shards: prepare → shard × K → publish (the I/O edge).

A sharded night (:mod:`nuru_yield.nightly`: the plan, the staged parts, the run's mark, the
assembly), with the same shards as batch scoring (``hash(plot_id) mod K``,
:mod:`nuru_yield.sharding`):

* :func:`prepare_features` fixes the run (id, K, window, threshold, weather lag) in a small
  JSON-able :class:`FeaturePlan`, clears what an earlier attempt staged, splits the
  plot-seasons that can be in progress into one staged file per shard (one streaming pass
  over ``raw/plots.parquet`` and its years of history, instead of one per shard; ids that
  cannot be hashed go to shard 0, which quarantines them), and validates once what every
  shard shares: the weather cells, the window's daily weather, and the number of
  plot-seasons read for the night (none fails ``plots.no_plot_seasons``). Its report
  (checks, the raw NDVI files not split by plot bucket, seconds) is staged for publish.
* :func:`materialize_shard` reads only its shard of the raw inputs (its plot-seasons, the
  NDVI of its plot buckets, the weather of its plots' cells), computes their features and
  validates its slice (plot-seasons, NDVI, output, how current its plots' weather is). It
  stages three parts under ``features/_parts/{D}/``: features, quarantined rows, and its
  validation report — the report last, so its presence means the shard is done. Memory
  grows with the shard, not with the lake; a rerun of a shard replaces its parts.
* :func:`publish_features` is the one validation gate over the whole run: every check is
  judged on the counts summed over the shards (:func:`~.validation.combine`). Passed: the
  features parts are assembled into ``plot_features.parquet`` (row groups aligned with the
  shards, so a scoring shard with the same K reads only its own), then ``rejected.parquet``
  and ``validation.json`` last; the parts are removed. Failed: ``rejected.parquet`` and
  ``validation.json`` are written for diagnosis, any ``plot_features.parquet`` of an earlier
  run is deleted (so no stale table looks current) and
  :class:`~nuru_yield.errors.DataValidationError` is raised. A shard that fails stops the
  run before publish: the partitions already published stay as they were.

:data:`FEATURES` names the three steps: :func:`materialize` runs them in one process
(``nuru-yield features``), the ``feature_materialization`` DAG as tasks.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib
import logging
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from nuru_yield import names
from nuru_yield.config import get_settings
from nuru_yield.contract import PLOTS_SCHEMA
from nuru_yield.features.checks import MAX_CELL_DISTANCE_KM
from nuru_yield.features.columns import OUTPUT_SCHEMA
from nuru_yield.features.compute import season_to_date
from nuru_yield.features.raw import load_raw, load_shared, split_plots
from nuru_yield.features.validation import ValidationReport, combine, validate
from nuru_yield.lake import Lake
from nuru_yield.nightly import (
    Night,
    NightPlan,
    NightResult,
    assemble,
    clear_parts,
    read_reports,
    run_night,
    stamped,
    write_report,
)
from nuru_yield.progress import peak_rss_mb
from nuru_yield.raw_layout import (
    UNBUCKETED_NDVI_REMOVED_IN,
    UPGRADE_COMMAND,
    unbucketed_ndvi_files,
)
from nuru_yield.steps import StepResult

if TYPE_CHECKING:
    from nuru_yield.config import Settings

log = logging.getLogger(__name__)

REJECTED_SCHEMA = PLOTS_SCHEMA.append(pa.field("reason", pa.string()))
PLOTS_PART, FEATURES_PART, REJECTED_PART = "plots", "plot_features", "rejected"


@dataclass(frozen=True)
class FeaturePlan(NightPlan):
    """What every step of one feature run shares (passed between Airflow tasks via XCom):
    the shards read these values, not their own settings, so that all of them agree."""

    season_max_days: int
    threshold: float
    weather_max_lag_days: int

    STEP = "features"
    PREFIX = names.FEATURES

    @property
    def window_start(self) -> dt.date:
        """First day any plot-season in progress on the run date can need."""
        return self.run_date - dt.timedelta(days=self.season_max_days)


@dataclass(frozen=True)
class FeatureShardResult(StepResult):
    """What one shard staged (small, for XCom and ``validation.json``)."""

    shard: int
    plot_seasons: int
    rows: int
    rejected: int
    seconds: dict[str, float] = field(default_factory=dict)
    peak_rss_mb: float = 0.0
    host: str = ""


@dataclass(frozen=True)
class MaterializeResult(NightResult):
    """What a run published: URIs and row counts."""

    features_uri: str
    rejected_uri: str
    validation_uri: str
    rows: int
    rejected: int
    shards: int = 1

    def event_extra(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "uri": self.features_uri, "rows": self.rows}


def prepare_features(
    run_date: dt.date,
    *,
    lake: Lake | None = None,
    settings: Settings | None = None,
    shards: int | None = None,
    dag_run_id: str | None = None,
) -> FeaturePlan:
    """Open a feature run for ``run_date`` (see the module docstring)."""
    started = time.perf_counter()
    settings = settings or get_settings()
    lake = lake or Lake.from_settings(settings)
    plan = FeaturePlan(
        run_id=FeaturePlan.new_run_id(run_date),
        run_date=run_date,
        shards=shards or settings.feature_shards,
        season_max_days=settings.season_max_days,
        threshold=settings.validation_max_bad_share,
        weather_max_lag_days=settings.weather_max_lag_days,
    )
    preload = _import_in_background("great_expectations")
    clear_parts(lake, plan)
    unbucketed = unbucketed_ndvi_files(lake, range(plan.window_start.year, run_date.year + 1))
    if unbucketed:
        log.warning(
            "features %s: %d raw NDVI file(s) are not split by plot bucket, so every shard "
            "reads them in full (%s); run `%s` (release %s stops reading them)",
            run_date,
            len(unbucketed),
            ", ".join(unbucketed[:3]),
            UPGRADE_COMMAND,
            UNBUCKETED_NDVI_REMOVED_IN,
        )
    # One pass over the plot-seasons, so that no shard reads the whole table.
    plot_seasons = sum(
        rows for _, rows in split_plots(lake, plan.window_start, run_date, plan.parts(PLOTS_PART))
    )
    cells, weather = load_shared(lake, plan.window_start, run_date)
    preload.join()
    report = validate(
        cells=cells,
        weather=weather,
        threshold=plan.threshold,
        season_max_days=plan.season_max_days,
        max_cell_distance_km=MAX_CELL_DISTANCE_KM,
        run_date=run_date,
        weather_max_lag_days=plan.weather_max_lag_days,
        plot_seasons_read=plot_seasons,
    )
    del cells, weather
    write_report(
        lake,
        plan,
        None,
        {
            **report.to_json(),
            "dag_run_id": dag_run_id,
            "unbucketed_ndvi_files": unbucketed,
            "seconds": round(time.perf_counter() - started, 3),
        },
    )
    log.info("features %s: run %s in %d shard(s)", run_date, plan.run_id, plan.shards)
    return plan


def materialize_shard(
    plan: FeaturePlan,
    shard: int,
    *,
    lake: Lake | None = None,
    settings: Settings | None = None,
) -> FeatureShardResult:
    """Compute, validate and stage the features of one shard (see the module docstring)."""
    plan.checked(shard)
    lake = lake or Lake.from_settings(settings)
    day = plan.run_date
    seconds: dict[str, float] = {}
    preload = _import_in_background("great_expectations")
    with _timed(seconds, "load", shard):
        raw = load_raw(
            lake,
            plan.window_start,
            day,
            shard=shard,
            shards=plan.shards,
            plots_path=plan.part(shard, PLOTS_PART),
        )
    with _timed(seconds, "compute", shard):
        result = season_to_date(raw, day, plan.season_max_days, MAX_CELL_DISTANCE_KM)
    with _timed(seconds, "validate", shard):
        preload.join()
        report = validate(
            plots=result.plots,
            ndvi=raw.ndvi,
            features=result.features,
            threshold=plan.threshold,
            season_max_days=plan.season_max_days,
            max_cell_distance_km=MAX_CELL_DISTANCE_KM,
            run_date=day,
            weather_max_lag_days=plan.weather_max_lag_days,
            features_weather=raw.weather,
        )
    with _timed(seconds, "write", shard):
        features = pa.Table.from_pandas(
            result.features, schema=stamped(OUTPUT_SCHEMA, plan), preserve_index=False
        )
        lake.write_parquet(plan.part(shard, FEATURES_PART), features)
        rejected = pa.Table.from_pandas(
            result.rejected, schema=stamped(REJECTED_SCHEMA, plan), preserve_index=False
        )
        lake.write_parquet(plan.part(shard, REJECTED_PART), rejected)
    outcome = FeatureShardResult(
        shard=shard,
        plot_seasons=len(result.plots),
        rows=len(result.features),
        rejected=len(result.rejected),
        seconds=seconds,
        peak_rss_mb=round(peak_rss_mb(), 1),
        host=socket.gethostname(),
    )
    write_report(lake, plan, shard, report.to_json())
    log.info(
        "features %s shard %d/%d: %d plot-seasons, %d rejected, peak %.0f MB (%s)",
        day, shard, plan.shards, outcome.rows, outcome.rejected, outcome.peak_rss_mb,
        ", ".join(f"{step} {s:.1f}s" for step, s in seconds.items()),
    )  # fmt: skip
    return outcome


def publish_features(
    plan: FeaturePlan,
    results: Sequence[FeatureShardResult],
    *,
    lake: Lake | None = None,
    settings: Settings | None = None,
) -> MaterializeResult:
    """The gate over every shard, then the partition (see the module docstring)."""
    lake = lake or Lake.from_settings(settings)
    day = plan.run_date
    started = time.perf_counter()
    done = _already_published(lake, plan)
    if done is not None:
        return done
    inputs, *shard_reports = read_reports(lake, plan, prepare=True)
    report = combine(
        [ValidationReport.from_json(r) for r in [inputs, *shard_reports]],
        run_date=day,
        season_max_days=plan.season_max_days,
        weather_max_lag_days=plan.weather_max_lag_days,
    )
    features_path = names.features_path(day)
    if report.passed:
        features_uri, rows = assemble(lake, plan, FEATURES_PART, features_path, OUTPUT_SCHEMA)
    else:
        lake.delete(features_path)
        features_uri, rows = lake.uri(features_path), 0
    rejected_uri, rejected = assemble(
        lake, plan, REJECTED_PART, names.rejected_path(day), REJECTED_SCHEMA
    )
    _remove_strays(lake, day)
    seconds = {"prepare": inputs["seconds"]}
    for step in ("load", "compute", "validate", "write"):
        seconds[step] = round(sum(r.seconds.get(step, 0.0) for r in results), 3)
    seconds["publish"] = round(time.perf_counter() - started, 3)
    payload = {
        "run_date": day.isoformat(),
        "run_id": plan.run_id,
        "dag_run_id": inputs["dag_run_id"],
        **report.to_json(),
        "seconds": seconds,
        "shards": [r.xcom() for r in results],
        "unbucketed_ndvi_files": inputs["unbucketed_ndvi_files"],
    }
    validation_uri = lake.write_json(names.validation_path(day), payload)
    clear_parts(lake, plan)
    log.info(
        "features %s: %d rows, %d rejected over %d shard(s), %s (peak %.0f MB per shard)",
        day,
        rows,
        rejected,
        plan.shards,
        "passed" if report.passed else "FAILED",
        max(r.peak_rss_mb for r in results),
    )
    report.raise_on_failure()
    return MaterializeResult(
        run_id=plan.run_id,
        run_date=day,
        features_uri=features_uri,
        rejected_uri=rejected_uri,
        validation_uri=validation_uri,
        rows=rows,
        rejected=rejected,
        shards=plan.shards,
    )


FEATURES = Night(
    FeaturePlan, FeatureShardResult, prepare_features, materialize_shard, publish_features
)


def materialize(
    run_date: dt.date,
    *,
    lake: Lake | None = None,
    settings: Settings | None = None,
    shards: int | None = None,
) -> MaterializeResult:
    """Prepare, compute every shard and publish, in this process (``nuru-yield features``)."""
    return run_night(FEATURES, run_date, lake=lake, settings=settings, shards=shards)


def _already_published(lake: Lake, plan: FeaturePlan) -> MaterializeResult | None:
    """The result of this run when its ``validation.json`` is already written (a retried
    publish whose first try got that far); None otherwise."""
    path = names.validation_path(plan.run_date)
    if not lake.exists(path):
        return None
    payload = lake.read_json(path)
    if payload.get("run_id") != plan.run_id:
        return None
    report = ValidationReport.from_json(payload)
    report.raise_on_failure()
    features = names.features_path(plan.run_date)
    return MaterializeResult(
        run_id=plan.run_id,
        run_date=plan.run_date,
        features_uri=lake.uri(features),
        rejected_uri=lake.uri(names.rejected_path(plan.run_date)),
        validation_uri=lake.uri(path),
        rows=lake.open_parquet(features).metadata.num_rows,
        rejected=lake.open_parquet(names.rejected_path(plan.run_date)).metadata.num_rows,
        shards=plan.shards,
    )


def _import_in_background(module: str) -> threading.Thread:
    """Start importing ``module`` in a thread, to overlap with loading and computing.

    Importing great-expectations costs seconds of CPU. The thread only imports; the heavy
    modules of the main thread (numpy, pandas, pyarrow, scipy.spatial) are imported before
    it starts. A failed import raises again, in the main thread, where the module is used.
    """

    def load() -> None:
        with contextlib.suppress(ImportError):
            importlib.import_module(module)

    thread = threading.Thread(target=load, name=f"import-{module}", daemon=True)
    thread.start()
    return thread


def _remove_strays(lake: Lake, day: dt.date) -> None:
    """Delete files of the partition that this run does not write (a rerun replaces it)."""
    ours = {names.features_path(day), names.rejected_path(day), names.validation_path(day)}
    for path in lake.list(names.partition_dir(names.FEATURES, day)):
        if path not in ours:
            lake.delete(path)


@contextmanager
def _timed(seconds: dict[str, float], step: str, shard: int) -> Iterator[None]:
    started = time.perf_counter()
    log.info("features shard %d: %s…", shard, step)
    yield
    seconds[step] = round(time.perf_counter() - started, 3)
