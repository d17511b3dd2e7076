"""``nuru-yield ingest``: raw ingestion's sharded nights run in one process, as the
``raw_ingestion`` DAG runs them as tasks: first plots and harvest labels
(:data:`~nuru_yield.sources.plot_tables.PLOT_TABLES`, by plot bucket), then NDVI rasters
(:data:`~nuru_yield.sources.ndvi.NDVI`, by plot bucket), then CHIRPS and AgERA5
(:data:`~nuru_yield.sources.weather.WEATHER`, by month): NDVI is computed for each plot and
weather is sampled where the plots are.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from nuru_yield.config import get_settings
from nuru_yield.errors import MissingInputError
from nuru_yield.lake import Lake
from nuru_yield.nightly import run_night
from nuru_yield.sources import agera5, chirps, plots, yields
from nuru_yield.sources.ndvi import NDVI
from nuru_yield.sources.plot_tables import PLOT_TABLES, TablesResult
from nuru_yield.sources.weather import WEATHER, WeatherResult

if TYPE_CHECKING:
    from nuru_yield.config import Settings

log = logging.getLogger(__name__)

# Every product, in the order a night ingests them; a product's night.
PRODUCTS = (plots.PRODUCT, yields.PRODUCT, chirps.PRODUCT, agera5.PRODUCT)
NIGHTS = {plots.PRODUCT: PLOT_TABLES, yields.PRODUCT: PLOT_TABLES,
          chirps.PRODUCT: WEATHER, agera5.PRODUCT: WEATHER}  # fmt: skip


def configured(product: str, settings: Settings) -> str:
    """The configured source of ``product`` ('' when none)."""
    return str(getattr(settings, f"{product}_source"))


def ingest(
    product: str,
    paths: Sequence[str] | None,
    run_date: dt.date,
    *,
    lake: Lake | None = None,
    settings: Settings | None = None,
    shards: int | None = None,
) -> TablesResult | WeatherResult:
    """Ingest ``product`` from ``paths`` (default: its configured source) for the night
    ``run_date`` (weather days after it are left for later)."""
    if product not in PRODUCTS:
        raise ValueError(f"unknown product {product!r}; choose from {', '.join(PRODUCTS)}")
    settings = settings or get_settings()
    patterns = list(paths or [])
    if not patterns:
        if not configured(product, settings):
            raise MissingInputError(
                f"no {product} files given and {product.upper()}_SOURCE is not set "
                "(a file, a folder, a glob or an s3:// prefix)"
            )
        patterns = [configured(product, settings)]
    done = run_night(
        NIGHTS[product], run_date, lake=lake, settings=settings, shards=shards,
        sources={product: patterns},
    )  # fmt: skip
    if isinstance(done, TablesResult):
        done.raise_failures()
    return done


def ingest_all(
    run_date: dt.date,
    *,
    lake: Lake | None = None,
    settings: Settings | None = None,
    shards: int | None = None,
) -> list[str]:
    """Every product with a configured source, the nights in order (what the
    ``raw_ingestion`` DAG runs); products without one are left as they are. One line per
    product ingested. Labels that fail the bad-share rule are an error after the weather is
    in, as in the DAG."""
    settings = settings or get_settings()
    lake = lake or Lake.from_settings(settings)
    for product in PRODUCTS:
        if not configured(product, settings):
            log.info("ingest %s: no %s_SOURCE configured, left as it is", product, product.upper())
    if not (settings.ndvi_source or settings.ndvi_stac_url):
        log.info("ingest ndvi: neither NDVI_SOURCE nor NDVI_STAC_URL configured, left as it is")
    tables = run_night(PLOT_TABLES, run_date, lake=lake, settings=settings, shards=shards)
    ndvi = run_night(NDVI, run_date, lake=lake, settings=settings, shards=shards)
    weather = run_night(WEATHER, run_date, lake=lake, settings=settings, shards=shards)
    tables.raise_failures()
    return tables.lines() + ndvi.lines() + weather.lines()
