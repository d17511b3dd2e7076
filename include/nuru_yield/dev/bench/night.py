"""``nuru-yield bench night --plots N [--shards K] [--parallel P]``: one whole night —
features, scoring, publish — in shards, each step in a process of its own as an Airflow
task would run, against a bare read of the same raw inputs measured in the same run.

Builds a synthetic raw lake of N plot-seasons in progress (the generator of ``bench
features``: 3,510 weather cells, 15 NDVI scenes per plot-season, NDVI in plot buckets), a
throwaway PostgreSQL and a champion model (the generator and model of ``bench scoring``),
then runs, timing each step and measuring each process's peak RSS:

    features:  prepare → K shards (P at a time) → publish
    scoring:   prepare → K shards (P at a time) → publish

K defaults to one shard per 250,000 plot-seasons (memory per shard stays flat in N); P
(default 1) is how many run at once, as an executor with P slots would (LocalExecutor on
this machine). ``local_executor_wall_s`` is the wall time of the night so run; ``seconds`` the sum of the
steps' wall times (the night on one slot), ``cpu_seconds`` their CPU time (on a shared
machine the steadier figure to compare sizes by).
``simulated_wall_s`` is the night on W one-slot workers computed from the measured times:
the serial steps plus, for each sharded stage, shards handed out in order to the first free
worker (Airflow's own scheduling latency, a few seconds per task, is not included).

The baseline (``baseline_read_s``) streams every raw file the night reads once, with no
computation: the I/O floor; ``ratio`` = serial seconds / baseline.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import heapq
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nuru_yield.dev.bench import Measured, emit, run_isolated, run_isolated_many

log = logging.getLogger(__name__)

PLOTS_PER_SHARD = 250_000
SIMULATED_WORKERS = (1, 2, 4, 8, 16, 32)


def default_shards(plots: int) -> int:
    return max(1, -(-plots // PLOTS_PER_SHARD))


# --- the steps, each run in a fresh process, passing results as the DAG tasks do (XCom) -----
def features_prepare(run_date: dt.date, shards: int) -> dict[str, Any]:
    from nuru_yield.features.materialize import prepare_features

    return prepare_features(run_date, shards=shards).xcom()


def features_shard(plan: dict[str, Any], shard: int) -> dict[str, Any]:
    from nuru_yield.features.materialize import FeaturePlan, materialize_shard

    return materialize_shard(FeaturePlan.from_xcom(plan), shard).xcom()


def features_publish(plan: dict[str, Any], shards: list[dict[str, Any]]) -> dict[str, Any]:
    from nuru_yield.features.materialize import FeaturePlan, FeatureShardResult, publish_features

    results = [FeatureShardResult.from_xcom(shard) for shard in shards]
    return publish_features(FeaturePlan.from_xcom(plan), results).xcom()


def scoring_prepare(run_date: dt.date, shards: int) -> dict[str, Any]:
    from nuru_yield.scoring.run import prepare_run

    return prepare_run(run_date, shards=shards).xcom()


def scoring_shard(plan: dict[str, Any], shard: int) -> dict[str, Any]:
    from nuru_yield.scoring.plan import ScoringPlan
    from nuru_yield.scoring.run import score_shard

    return score_shard(ScoringPlan.from_xcom(plan), shard).xcom()


def scoring_publish(plan: dict[str, Any], shards: list[dict[str, Any]]) -> dict[str, Any]:
    from nuru_yield.scoring.plan import ScoringPlan, ShardResult
    from nuru_yield.scoring.run import publish_run

    results = [ShardResult.from_xcom(shard) for shard in shards]
    return publish_run(ScoringPlan.from_xcom(plan), results).xcom()


def read_raw_inputs(lake_url: str) -> int:
    """The baseline: stream every raw plot and NDVI file once (rows read)."""
    from nuru_yield.lake import Lake
    from nuru_yield.names import RAW_NDVI, RAW_PLOTS

    lake = Lake(lake_url)
    rows = 0
    for path in [RAW_PLOTS, *lake.list(RAW_NDVI, ".parquet")]:
        for batch in lake.open_parquet(path).iter_batches(batch_size=1 << 20):
            rows += batch.num_rows
    return rows


# --- the night ----------------------------------------------------------------------------
def makespan(seconds: Sequence[float], workers: int) -> float:
    """Finish time of tasks handed out in order, each to the first free of ``workers``."""
    free = [0.0] * max(1, min(workers, len(seconds)))
    for duration in seconds:
        heapq.heappush(free, heapq.heappop(free) + duration)
    return max(free)


def simulate(serial_s: float, stages: Sequence[Sequence[float]], workers: int) -> float:
    """The night on ``workers`` one-slot workers: serial steps plus each stage's makespan."""
    return serial_s + sum(makespan(stage, workers) for stage in stages)


def _summary(step: Measured) -> dict[str, float]:
    return {
        "seconds": round(step.seconds, 2),
        "cpu_s": round(step.cpu_seconds, 2),
        "peak_rss_mb": round(step.peak_rss_mb),
    }


def run_night(run_date: dt.date, shards: int, parallel: int) -> dict[str, Any]:
    """Run the six steps in processes of their own; every timing and peak RSS."""
    started = time.perf_counter()
    log.info("bench night: features in %d shard(s), %d at a time", shards, parallel)
    f_prepare = run_isolated(features_prepare, run_date, shards)
    f_shards, _ = run_isolated_many(
        features_shard, [(f_prepare.result, s) for s in range(shards)], parallel
    )
    f_publish = run_isolated(features_publish, f_prepare.result, [step.result for step in f_shards])
    log.info("bench night: scoring %d plot-seasons", f_publish.result["rows"])
    s_prepare = run_isolated(scoring_prepare, run_date, shards)
    s_shards, _ = run_isolated_many(
        scoring_shard, [(s_prepare.result, s) for s in range(shards)], parallel
    )
    s_publish = run_isolated(scoring_publish, s_prepare.result, [step.result for step in s_shards])
    wall = time.perf_counter() - started
    serial_steps = [f_prepare, f_publish, s_prepare, s_publish]
    stages = [[step.seconds for step in f_shards], [step.seconds for step in s_shards]]
    serial_s = sum(step.seconds for step in serial_steps)
    return {
        "rows": f_publish.result["rows"],
        "rejected": f_publish.result["rejected"],
        "scored_rows": s_publish.result["rows"],
        "local_executor_wall_s": round(wall, 2),
        "seconds": round(serial_s + sum(map(sum, stages)), 2),
        "cpu_seconds": round(sum(s.cpu_seconds for s in [*serial_steps, *f_shards, *s_shards]), 2),
        "stages": {
            "features_prepare": _summary(f_prepare),
            "features_shards": [_summary(step) for step in f_shards],
            "features_publish": _summary(f_publish),
            "scoring_prepare": _summary(s_prepare),
            "scoring_shards": [_summary(step) for step in s_shards],
            "scoring_publish": _summary(s_publish),
        },
        "stage_seconds": {
            "features_prepare": round(f_prepare.seconds, 2),
            "features_shards": round(sum(stages[0]), 2),
            "features_publish": round(f_publish.seconds, 2),
            "scoring_prepare": round(s_prepare.seconds, 2),
            "scoring_shards": round(sum(stages[1]), 2),
            "scoring_publish": round(s_publish.seconds, 2),
        },
        "peak_rss_mb": {
            "features_shard": round(max(step.peak_rss_mb for step in f_shards)),
            "scoring_shard": round(max(step.peak_rss_mb for step in s_shards)),
            "any_step": round(max(s.peak_rss_mb for s in [*serial_steps, *f_shards, *s_shards])),
        },
        "simulated_wall_s": {
            str(workers): round(simulate(serial_s, stages, workers), 1)
            for workers in SIMULATED_WORKERS
        },
    }


def run_bench(
    plots: int,
    shards: int | None = None,
    parallel: int = 1,
    db_url: str | None = None,
    model: str = "production",
    workdir: Path | None = None,
) -> dict[str, Any]:
    """Set up a scratch space (in ``workdir``, default the system's temporary directory:
    the lake of 10M plot-seasons takes ~5 GB), its database and model; run the night and
    the baseline; print JSON."""
    from nuru_yield.db.migrations import upgrade
    from nuru_yield.dev.bench.features import RUN_DATE, build_raw
    from nuru_yield.dev.bench.scoring import bench_params, train_model
    from nuru_yield.dev.local_services import scratch_database, throwaway_postgres
    from nuru_yield.dev.scratch import scratch_space
    from nuru_yield.lake import Lake

    shards = shards or default_shards(plots)
    threads = max(1, (os.cpu_count() or 1) // parallel)
    with contextlib.ExitStack() as stack:
        admin_url = db_url or stack.enter_context(throwaway_postgres())[0]
        database = stack.enter_context(scratch_database(admin_url))
        space = stack.enter_context(
            scratch_space(
                "bench night",
                parent=workdir,
                predictions_db_url=database,
                extra={"SCORING_THREADS": str(threads)},  # P shards at a time share the cores
            )
        )
        lake = Lake.from_settings()
        started = time.perf_counter()
        log.info("bench night: raw lake of %d plot-seasons", plots)
        build_raw(lake, plots)
        generate_s = time.perf_counter() - started
        upgrade()
        params = bench_params(model)
        train_model(120_000, params)
        night = run_night(RUN_DATE, shards, parallel)
        baseline = run_isolated(read_raw_inputs, lake.url)
        disk_gb = sum(f.stat().st_size for f in space.home.rglob("*") if f.is_file()) / 1e9
    result = {
        "plots": plots,
        "shards": shards,
        "parallel": parallel,
        **night,
        "baseline_read_s": round(baseline.seconds, 2),
        "ratio": round(night["seconds"] / baseline.seconds, 1),
        "generate_s": round(generate_s, 1),
        "lake_and_mlflow_gb": round(disk_gb, 2),
        "run_date": RUN_DATE.isoformat(),
        "model": model,
        "cpu_count": os.cpu_count(),
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    emit(result)
    return result
