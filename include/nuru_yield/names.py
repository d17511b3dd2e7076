"""The names every part of Nuru Yield shares: the model registry's names and aliases, and the
lake's path layout (docs/DESIGN.md, "Lake layout" and "Models and the registry").

Training, scoring, monitoring, the API, the database and the DAGs all use these names and
must not depend on each other to get them, so this module imports nothing but the standard
library (a test checks it) and holds no logic beyond building a path from a date.
"""

from __future__ import annotations

import datetime as dt

# --- the model registry (MLflow) ------------------------------------------------------------
EXPERIMENT_NAME = "YieldPrediction_MultiModel"
# The registered model: the log-link voting ensemble, also its candidate's name in training.
MODEL_NAME = "Ensemble_VotingRegressor"
# Aliases: the model scoring serves, the one it replaced (for `nuru-yield rollback`), and
# the one scored in shadow. ``predictions.model_name`` stores the alias that scored a row.
CHAMPION = "champion"
PREVIOUS = "previous"
CHALLENGER = "challenger"

# --- Airflow: the DAGs of one night, in the order they run (each is dags/<dag id>.py) --------
NIGHT_DAGS = ("raw_ingestion", "feature_materialization", "batch_scoring", "drift_monitoring")
# Where the Forecasts view's app is mounted in Airflow's API server (nuru_yield.ui), and its
# page in Airflow's UI: /plugin/<FORECASTS_ROUTE>.
FORECASTS_MOUNT = "/nuru-forecasts"
FORECASTS_ROUTE = "forecasts"

# --- the lake: raw input contract -----------------------------------------------------------
RAW_PLOTS = "raw/plots.parquet"
RAW_WEATHER_CELLS = "raw/weather_cells.parquet"
RAW_WEATHER = "raw/weather"
RAW_NDVI = "raw/ndvi"
RAW_YIELDS = "raw/yields.parquet"
# Plot boundaries (``plot_id``, ``geometry``: WKB in WGS 84), when plots are polygons: what
# NDVI from rasters averages over (nuru_yield.sources.ndvi); without it, the plots' points.
RAW_PLOT_GEOMETRIES = "raw/plot_geometries.parquet"
# Written by `nuru-yield ingest` (nuru_yield.sources): each plot's boundary (above), which
# file and version each day of raw weather came from, and the rows an ingest quarantined
# (row + reason + file).
RAW_WEATHER_SOURCES = "raw/weather_sources.parquet"
RAW_REJECTED = "raw/rejected"
# Where raw ingestion stages its shards' parts (never read by features).
SOURCES = "sources"
# Its two sharded nights' prefixes (``{prefix}/_parts/{D}/``).
SOURCES_TABLES = f"{SOURCES}/tables"
SOURCES_WEATHER = f"{SOURCES}/weather"
# NDVI rasters' night stages there too, and keeps one ledger per acquisition: the scenes it
# was made from (nuru_yield.sources.ndvi).
SOURCES_NDVI = f"{SOURCES}/ndvi"

# --- the lake: what the pipeline writes, one partition per run date -------------------------
FEATURES = "features"
TRAINING = "training"
PREDICTION_LOG = "monitoring/predictions"
DRIFT = "monitoring/drift"
BULLETINS = "monitoring/bulletins"

# Key-value metadata of a parquet file assembled from shard parts: JSON list of the first
# row group of each part, and one past the last (``Lake.assemble_parquet``).
PART_ROW_GROUPS = "nuru_yield.part_row_groups"

# --- plots -----------------------------------------------------------------------------------
# The largest plot id the pipeline stores: the shard hash (``nuru_yield.sharding``) takes ids
# 0 … 2**31-1, feature runs quarantine the others and the API refuses them (422).
MAX_PLOT_ID = 2**31 - 1


def _day(date: dt.date) -> str:
    """``YYYY-MM-DD`` of a run date; a string is refused, so that a caller that skipped
    parsing one fails here rather than writing under a path nobody reads."""
    if not isinstance(date, dt.date) or isinstance(date, dt.datetime):
        raise TypeError(f"a run date is a datetime.date, not {type(date).__name__} {date!r}")
    return date.isoformat()


def weather_year_path(year: int, part: str = "part-0") -> str:
    return f"{RAW_WEATHER}/year={year}/{part}.parquet"


def weather_month_path(year: int, month: int) -> str:
    """One month of ingested raw weather (``nuru-yield ingest chirps|agera5``)."""
    return weather_year_path(year, f"month-{month:02d}")


def rejected_raw_path(product: str) -> str:
    """The rows the last ingest of ``product`` quarantined, each with its reason."""
    return f"{RAW_REJECTED}/{product}.parquet"


def ndvi_ledger_path(product: str, date: dt.date) -> str:
    """The scenes one NDVI acquisition (a product and a date) was last made from."""
    return f"{SOURCES_NDVI}/{product}-{_day(date).replace('-', '')}.json"


def ndvi_year_dir(year: int) -> str:
    return f"{RAW_NDVI}/year={year}"


def ndvi_year_path(year: int, part: str = "part-0") -> str:
    """A file of one year's NDVI not yet split by plot bucket (the layout before
    ``nuru-yield lake upgrade``; still read, more slowly: see :mod:`nuru_yield.raw_layout`)."""
    return f"{ndvi_year_dir(year)}/{part}.parquet"


def ndvi_bucket_path(year: int, bucket: int, part: str = "part-0") -> str:
    """A file of one year's NDVI for the plots of one bucket (docs/DESIGN.md, "Raw input
    contract")."""
    return f"{ndvi_year_dir(year)}/plot_bucket={bucket:03d}/{part}.parquet"


def partition_dir(prefix: str, date: dt.date) -> str:
    """The ``{prefix}/{date}/`` partition a nightly step publishes."""
    return f"{prefix}/{_day(date)}"


def parts_root(prefix: str) -> str:
    """Where the sharded runs of a nightly step stage their partitions, one folder a night
    (:func:`parts_dir`). ``_parts`` is invisible to dataset readers and to
    ``Lake.partition_dates`` of ``prefix``."""
    return f"{prefix}/_parts"


def parts_dir(prefix: str, date: dt.date) -> str:
    """Where the shards of a sharded step stage the ``{prefix}/{date}/`` partition until one
    publish step assembles it."""
    return f"{parts_root(prefix)}/{_day(date)}"


def run_part_path(prefix: str, date: dt.date, name: str) -> str:
    """A file the run as a whole stages for the ``{prefix}/{date}/`` partition (the prepare
    step's report, an assembled file waiting to be moved into place)."""
    return f"{parts_dir(prefix, date)}/{name}"


def shard_part_path(
    prefix: str,
    date: dt.date,
    shard: int,
    shards: int,
    name: str = "part",
    suffix: str = ".parquet",
) -> str:
    """What shard ``shard`` of ``shards`` stages for the ``{prefix}/{date}/`` partition."""
    return f"{parts_dir(prefix, date)}/{name}-{shard:04d}-of-{shards:04d}{suffix}"


def features_path(date: dt.date) -> str:
    return f"{partition_dir(FEATURES, date)}/plot_features.parquet"


def rejected_path(date: dt.date) -> str:
    return f"{partition_dir(FEATURES, date)}/rejected.parquet"


def validation_path(date: dt.date) -> str:
    return f"{partition_dir(FEATURES, date)}/validation.json"


def training_set_path(date: dt.date) -> str:
    """The training set built for a run date (passed between the training DAG's tasks)."""
    return f"{partition_dir(TRAINING, date)}/training_set.parquet"


def rejected_labels_path(date: dt.date) -> str:
    """The harvest labels quarantined while building that training set."""
    return f"{partition_dir(TRAINING, date)}/rejected_labels.parquet"


def prediction_log_path(date: dt.date) -> str:
    return f"{partition_dir(PREDICTION_LOG, date)}/predictions.parquet"


def pending_log_path(date: dt.date) -> str:
    """The night's prediction log assembled from the shards' parts, until the run's partition
    swap is done (then it is moved to :func:`prediction_log_path`); the run that assembled it
    is in its metadata (``nuru_yield.nightly.run_of``)."""
    return run_part_path(PREDICTION_LOG, date, "assembled.parquet")


def drift_report_path(date: dt.date) -> str:
    return f"{partition_dir(DRIFT, date)}/drift_report.json"


def drift_html_path(date: dt.date) -> str:
    return f"{partition_dir(DRIFT, date)}/drift_report.html"


def bulletin_html_path(date: dt.date) -> str:
    """The night's county bulletin, a self-contained page a person can mail as it is."""
    return f"{partition_dir(BULLETINS, date)}/bulletin.html"


def bulletin_csv_path(date: dt.date) -> str:
    """The night's ``county_forecasts`` rows as CSV, next to the bulletin."""
    return f"{partition_dir(BULLETINS, date)}/county_forecasts.csv"


def county_hindcasts_path(date: dt.date) -> str:
    """The county hindcasts behind a model's skill, computed with the training of that date."""
    return f"{partition_dir(TRAINING, date)}/county_hindcasts.parquet"
