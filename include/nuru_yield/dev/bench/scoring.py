"""``nuru-yield bench scoring --plots N``: the nightly scorer end to end against bare
baselines measured in the same run, on the same data and models.

* ``seconds``: :func:`nuru_yield.scoring.run.score` — features parquet in → partition
  published in PostgreSQL + prediction log written (one process, fresh, so its peak RSS
  is its own);
* (a) ``baseline_predict_s``: the models' bare native predict on one in-memory matrix
  (plus ``baseline_contributions_s``: the libraries' native TreeSHAP, timed on a slice and
  scaled — what ``top_drivers`` would cost without the compiled tables);
* (b) ``baseline_ingest_s``: a bare binary COPY of the same output rows
  (:func:`nuru_yield.db.bare_ingest`);
* (c) ``naive_s``: pandas ``read_parquet`` → MLflow pyfunc ``predict`` →
  ``DataFrame.to_sql``, timed on a slice and scaled when N is large (``naive_rows`` says
  how many rows it really ran).

The synthetic plots and the labelled history the bench model is trained on come from
:func:`synthetic_features` (also used by the scoring tests).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import time
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

import numpy as np
import pyarrow as pa

from nuru_yield.dev.bench import emit, run_isolated
from nuru_yield.features.columns import FEATURE_COLUMNS, OUTPUT_SCHEMA
from nuru_yield.names import CHAMPION

COUNTIES = ("Bungoma", "Kakamega", "Machakos", "Murang'a", "Nakuru", "Trans Nzoia")
BENCH_DATE = dt.date(2025, 5, 1)
NAIVE_MAX_ROWS = 100_000
CONTRIBUTIONS_MAX_ROWS = 5_000


def _season_block(
    rng: np.random.Generator, plot_ids: np.ndarray, as_of: dt.date, season_year: int
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Feature columns of plot-seasons seen at ``as_of`` and the yield each would reach:
    rain drives yield (saturating), NDVI tracks the canopy, later dates know more."""
    n = len(plot_ids)
    county = plot_ids % len(COUNTIES)
    dap = rng.integers(1, 181, n)
    planting = np.datetime64(as_of) - dap.astype("timedelta64[D]")
    season_rain = rng.gamma(8, 70, len(COUNTIES))[county] * rng.lognormal(0, 0.3, n)
    maturity = rng.integers(100, 160, n)
    elapsed = np.minimum(dap / maturity, 1.0)
    potential = 7000 * (1 - np.exp(-season_rain / 450))
    management = rng.beta(4, 8, n) * 2.5
    harvest = potential * management * rng.lognormal(-0.02, 0.2, n)
    rain = season_rain * elapsed * rng.lognormal(0, 0.1, n)
    canopy = np.clip(potential / 7000 * np.sin(np.pi * elapsed * 0.8), 0, 1)
    ndvi = 0.2 + 0.6 * canopy + rng.normal(0, 0.03, n)
    altitude = 1200 + county * 150 + rng.normal(0, 50, n)
    cloudy = rng.random(n) < 0.1
    planting_doy = (planting - planting.astype("datetime64[Y]")).astype(np.int64) + 1
    columns = {
        "plot_id": plot_ids.astype(np.int64),
        "season_year": np.full(n, season_year, dtype=np.int64),
        "season": np.where(planting_doy < 200, "Long Rains", "Short Rains"),
        "county": np.asarray(COUNTIES)[county],
        "planting_date": planting.astype("datetime64[D]"),
        "as_of_date": np.full(n, np.datetime64(as_of), dtype="datetime64[D]"),
        "weather_cell_id": plot_ids // 50,
        "ndvi_missing": cloudy,
        "precip_total": rain,
        "rainy_days": rain / 9,
        "max_dry_spell_days": 30 / (1 + rain / 100),
        "precip_last_30d": rain * np.minimum(30 / dap, 1),
        "gdd_sum": 14.0 * dap,
        "heat_days": rng.poisson(1, n).astype(np.float64),
        "tmax_mean": 27 - (altitude - 1200) / 150,
        "weather_coverage": np.ones(n),
        "mean_ndvi": np.where(cloudy, np.nan, ndvi * 0.8),
        "max_ndvi": np.where(cloudy, np.nan, ndvi),
        "ndvi_auc": np.where(cloudy, np.nan, (ndvi - 0.2) * dap),
        "ndvi_slope_30d": np.where(cloudy, np.nan, rng.normal(0.002, 0.001, n)),
        "n_clear_ndvi_obs": np.maximum(dap // 10, 1).astype(np.float64),
        "days_after_planting": dap.astype(np.float64),
        "planting_doy": planting_doy.astype(np.float64),
        "altitude": altitude,
        "latitude": -1.0 + county * 0.4 + rng.normal(0, 0.05, n),
        "longitude": 35.0 + county * 0.5 + rng.normal(0, 0.05, n),
        "is_short_rains": (planting_doy >= 200).astype(np.float64),
    }
    return columns, np.round(harvest)


def synthetic_features(
    plots: int, run_date: dt.date = BENCH_DATE, seed: int = 0, batch_rows: int = 250_000
) -> Iterator[pa.RecordBatch]:
    """``plots`` in-progress plot-seasons on ``run_date`` (plot ids 0…plots-1), shaped like
    ``features/{D}/plot_features.parquet`` (``OUTPUT_SCHEMA``), in bounded batches."""
    rng = np.random.default_rng(seed)
    for start in range(0, plots, batch_rows):
        ids = np.arange(start, min(start + batch_rows, plots), dtype=np.int64)
        columns, _ = _season_block(rng, ids, run_date, run_date.year)
        yield pa.RecordBatch.from_pydict(columns, schema=OUTPUT_SCHEMA)


def synthetic_training_set(
    plots: int, first_year: int = 2019, last_year: int = 2024, seed: int = 1
) -> pa.Table:
    """Labelled rows (features + ``yield_kg_per_ha``) of past seasons, one cut-off each."""
    rng = np.random.default_rng(seed)
    tables = []
    for year in range(first_year, last_year + 1):
        for as_of in (dt.date(year, 7, 15), dt.date(year, 12, 31)):
            ids = np.arange(plots, dtype=np.int64)
            columns, harvest = _season_block(rng, ids, as_of, year)
            table = pa.Table.from_pydict(columns, schema=OUTPUT_SCHEMA)
            tables.append(table.append_column("yield_kg_per_ha", pa.array(harvest)))
    return pa.concat_tables(tables)


def train_model(training_rows: int, params: Any, alias: str = CHAMPION) -> str:
    """Train the candidates on synthetic history with training's own pipeline, register
    the ensemble and promote it to ``alias`` (recorded, as every alias move is); returns
    the version. Only ever in a scratch space (:func:`nuru_yield.dev.scratch.scratch_space`)
    whose database has the schema."""
    from nuru_yield.lake import Lake
    from nuru_yield.models.registry import mlflow_client, promote_version, register_run_model
    from nuru_yield.names import MODEL_NAME, training_set_path
    from nuru_yield.training.pipeline import TrainingSet, train_candidates

    lake = Lake.from_settings()
    training_set = TrainingSet(run_date=BENCH_DATE, path=training_set_path(BENCH_DATE))
    lake.write_parquet(training_set.path, synthetic_training_set(max(training_rows // 12, 1)))
    run_id = train_candidates(training_set, lake, params).ensemble_run
    client = mlflow_client()
    version = register_run_model(client, run_id, MODEL_NAME)
    reason = "benchmark model, trained on synthetic history in a scratch space"
    promote_version(client, MODEL_NAME, version, alias=alias, reason=reason, actor="bench")
    return version


def bench_params(model: str = "production", interactions: str = "pairwise") -> Any:
    """The bench model: training's production candidates, or ``tiny`` (a few shallow
    trees) for quick memory-scaling runs at millions of plots; ``interactions`` as the
    ``MODEL_INTERACTIONS`` setting (``free`` is explained by native TreeSHAP)."""
    from nuru_yield.training.candidates import TrainingParams

    if model == "tiny":
        return TrainingParams(
            boosting_rounds=10,
            max_depth=3,
            num_leaves=7,
            forest_rounds=3,
            forest_depth=3,
            interactions=interactions,
        )
    if model != "production":
        raise ValueError(f"unknown bench model {model!r}: use production or tiny")
    return TrainingParams(interactions=interactions)


def _features_matrix() -> tuple[Any, np.ndarray]:
    """The champion (threads pinned as the scorer pins them) and the bench features as one
    in-memory matrix (not timed)."""
    from nuru_yield.config import get_settings
    from nuru_yield.lake import Lake
    from nuru_yield.models.loaded import load_model
    from nuru_yield.names import MODEL_NAME, features_path
    from nuru_yield.scoring.batch import feature_matrix
    from nuru_yield.scoring.run import pin_threads, resolve_versions

    version, _ = resolve_versions(MODEL_NAME)
    model = load_model(f"models:/{MODEL_NAME}/{version}")
    pin_threads(model.estimator, get_settings().scoring_threads or os.cpu_count() or 1)
    table = Lake.from_settings().read_parquet(features_path(BENCH_DATE), columns=FEATURE_COLUMNS)
    batch = table.combine_chunks().to_batches()[0]
    return model, feature_matrix(batch, list(model.feature_columns))


def bare_predict() -> dict[str, float]:
    """(a): the models' native predict on one in-memory matrix; and their native TreeSHAP
    on (a slice of) the same matrix."""
    from nuru_yield.models.loaded import native_contributions

    model, matrix = _features_matrix()
    started = time.perf_counter()
    model.predict(matrix)
    predict_s = time.perf_counter() - started
    rows = min(len(matrix), CONTRIBUTIONS_MAX_ROWS)
    started = time.perf_counter()
    native_contributions(model.estimator, matrix[:rows])
    contributions_s = (time.perf_counter() - started) * len(matrix) / rows
    return {"predict_s": predict_s, "contributions_s": contributions_s, "contributions_rows": rows}


def bare_ingest() -> float:
    """(b): a bare binary COPY of the run's output rows (read from its log beforehand)."""
    from nuru_yield.db.engine import get_engine
    from nuru_yield.db.loader import bare_ingest as ingest
    from nuru_yield.db.schema import PREDICTION_COLUMNS
    from nuru_yield.lake import Lake
    from nuru_yield.names import prediction_log_path

    rows = Lake.from_settings().read_parquet(
        prediction_log_path(BENCH_DATE), columns=list(PREDICTION_COLUMNS)
    )
    engine = get_engine()
    started = time.perf_counter()
    ingest(engine, "bench_bare_ingest", rows)
    return time.perf_counter() - started


def naive(rows: int) -> float:
    """(c): pandas ``read_parquet`` → MLflow pyfunc ``predict`` → ``DataFrame.to_sql``, on
    the first ``rows`` plots (keys and forecast only: no interval, no drivers)."""
    import mlflow.pyfunc
    import pandas as pd

    from nuru_yield.db.engine import get_engine
    from nuru_yield.lake import Lake
    from nuru_yield.models.registry import mlflow_client
    from nuru_yield.names import MODEL_NAME, features_path
    from nuru_yield.scoring.run import resolve_versions

    mlflow_client()
    version, _ = resolve_versions(MODEL_NAME)
    path = Lake.from_settings().uri(features_path(BENCH_DATE)).removeprefix("file://")
    started = time.perf_counter()
    frame = pd.read_parquet(path).head(rows)
    model = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}/{version}")
    frame["predicted_yield_kg_per_ha"] = model.predict(frame[FEATURE_COLUMNS])
    columns = ["plot_id", "season_year", "season", "predicted_yield_kg_per_ha"]
    frame[columns].to_sql("bench_naive", get_engine(), if_exists="replace", index=False)
    return time.perf_counter() - started


def system(shards: int) -> dict[str, Any]:
    """The scorer end to end: features parquet in → partition published + log written."""
    from nuru_yield.scoring.run import score

    return score(BENCH_DATE, shards=shards).xcom()


def run_bench(
    plots: int,
    shards: int = 1,
    db_url: str | None = None,
    model: str = "production",
    interactions: str = "pairwise",
) -> dict[str, Any]:
    """Set up a scratch space (lake, registry, a PostgreSQL database on ``db_url``'s server
    or a throwaway one), model and features; time the system and the baselines, each in a
    fresh process; print and return the JSON result."""
    from nuru_yield.db.migrations import upgrade
    from nuru_yield.dev.local_services import scratch_database, throwaway_postgres
    from nuru_yield.dev.scratch import scratch_space
    from nuru_yield.lake import Lake
    from nuru_yield.names import features_path

    with contextlib.ExitStack() as stack:
        admin_url = db_url or stack.enter_context(throwaway_postgres())[0]
        database = stack.enter_context(scratch_database(admin_url))
        stack.enter_context(scratch_space("bench scoring", predictions_db_url=database))
        upgrade()
        params = bench_params(model, interactions)
        train_model(120_000, params)
        Lake.from_settings().write_parquet_batches(
            features_path(BENCH_DATE), OUTPUT_SCHEMA, synthetic_features(plots, BENCH_DATE)
        )
        scored = run_isolated(system, shards)
        bare = run_isolated(bare_predict).result
        ingest_s = run_isolated(bare_ingest).result
        naive_rows = min(plots, NAIVE_MAX_ROWS)
        naive_s = run_isolated(naive, naive_rows).result * plots / naive_rows
    seconds = scored.seconds
    bare_s = bare["predict_s"] + ingest_s
    result = {
        "plots": plots,
        "seconds": round(seconds, 2),
        "rows_per_s": round(plots / seconds),
        "peak_rss_mb": round(scored.peak_rss_mb),
        "baseline_predict_s": round(bare["predict_s"], 2),
        "baseline_ingest_s": round(ingest_s, 2),
        "naive_s": round(naive_s, 2),
        "naive_rows": naive_rows,
        "ratio_vs_bare": round(seconds / bare_s, 2),
        "speedup_vs_naive": round(naive_s / seconds, 2),
        "baseline_contributions_s": round(bare["contributions_s"], 2),
        "contributions_rows": bare["contributions_rows"],
        "ratio_vs_bare_with_native_contributions": round(
            seconds / (bare_s + bare["contributions_s"]), 3
        ),
        "shards": shards,
        "cpu_count": os.cpu_count(),
        "timings": scored.result["seconds"],
        "model": asdict(params),
    }
    emit(result)
    return result
