"""``nuru-yield ingest <product>`` and the ``raw_ingestion`` DAG: each product's files into
the raw contract, in the order the products depend on each other (plots first: weather is
sampled where plots are; NDVI and labels name plots).

Plots and labels are one step each (:func:`ingest_table`): read every file, quarantine bad
rows, write the contract table atomically. Its metadata records the files' fingerprints,
so a night whose files did not change reads nothing. Gridded weather goes month by month
(:mod:`nuru_yield.sources.weather`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from nuru_yield import names
from nuru_yield.config import get_settings
from nuru_yield.errors import MissingInputError
from nuru_yield.lake import Lake
from nuru_yield.sources import agera5, chirps, plots, yields
from nuru_yield.sources.inputs import SourceFile, resolve
from nuru_yield.sources.tables import write_raw
from nuru_yield.sources.weather import cells_table, ingest_weather, weather_cells
from nuru_yield.steps import StepResult

if TYPE_CHECKING:
    from nuru_yield.config import Settings

log = logging.getLogger(__name__)

# Every product, in the order a night ingests them.
PRODUCTS = (plots.PRODUCT, chirps.PRODUCT, agera5.PRODUCT, yields.PRODUCT)
FILES_KEY = "nuru_yield.source_files"


@dataclass(frozen=True)
class IngestResult(StepResult):
    """What one product's ingest did (small, for XCom and the CLI)."""

    product: str
    files: int
    rows: int = 0
    rejected: int = 0
    unchanged: bool = False
    years: list[int] = field(default_factory=list)
    days_read: int = 0

    def render(self) -> str:
        if self.unchanged:
            return f"{self.product}: {self.files} file(s) unchanged since the last ingest"
        if self.product in (chirps.PRODUCT, agera5.PRODUCT):
            years = ", ".join(map(str, self.years)) or "none"
            return (
                f"{self.product}: {self.files} file(s), {self.days_read:,} day(s) read; "
                f"raw weather rebuilt for {years}"
            )
        return f"{self.product}: {self.files} file(s), {self.rows:,} rows, {self.rejected:,} quarantined"


def configured(product: str, settings: Settings) -> str:
    """The configured source of ``product`` ('' when none)."""
    return str(getattr(settings, f"{product}_source"))


def ingest(
    product: str,
    paths: Sequence[str] | None = None,
    run_date: dt.date | None = None,
    *,
    lake: Lake | None = None,
    settings: Settings | None = None,
) -> IngestResult:
    """Ingest ``product`` from ``paths`` (default: its configured source)."""
    settings = settings or get_settings()
    lake = lake or Lake.from_settings(settings)
    if product not in PRODUCTS:
        raise ValueError(f"unknown product {product!r}; choose from {', '.join(PRODUCTS)}")
    if product in (chirps.PRODUCT, agera5.PRODUCT):
        done = ingest_weather(product, paths, run_date, lake=lake, settings=settings)
        return IngestResult(
            product, len(resolve(paths or [configured(product, settings)], settings)),
            years=done.years, days_read=done.days_read,
        )  # fmt: skip
    return ingest_table(product, paths, lake=lake, settings=settings)


def ingest_configured(
    run_date: dt.date, *, lake: Lake | None = None, settings: Settings | None = None
) -> list[IngestResult]:
    """Every product with a configured source, in order (the ``raw_ingestion`` DAG's step
    when run by hand); products with none are left as they are."""
    settings = settings or get_settings()
    lake = lake or Lake.from_settings(settings)
    done = []
    for product in PRODUCTS:
        if configured(product, settings):
            done.append(ingest(product, None, run_date, lake=lake, settings=settings))
        else:
            log.info("ingest %s: no %s_SOURCE configured, left as it is", product, product.upper())
    return done


def ingest_table(
    product: str,
    paths: Sequence[str] | None = None,
    *,
    lake: Lake | None = None,
    settings: Settings | None = None,
) -> IngestResult:
    """Plots (and their seasons, DEM, counties) or harvest labels into the raw contract."""
    settings = settings or get_settings()
    lake = lake or Lake.from_settings(settings)
    patterns = list(paths or [])
    if not patterns:
        if not configured(product, settings):
            raise MissingInputError(
                f"no {product} files given and {product.upper()}_SOURCE is not set"
            )
        patterns = [configured(product, settings)]
    files = resolve(patterns, settings)
    extra: dict[str, list[SourceFile]] = {}
    if product == plots.PRODUCT:
        for name in ("plot_seasons", "dem", "counties"):
            source = str(getattr(settings, f"{name}_source"))
            extra[name] = resolve([source], settings) if source else []
    target = names.RAW_PLOTS if product == plots.PRODUCT else names.RAW_YIELDS
    fingerprint = _fingerprint(files, extra, settings, product)
    if _unchanged(lake, target, fingerprint):
        log.info("ingest %s: %d file(s) unchanged, nothing read", product, len(files))
        return IngestResult(product, len(files), unchanged=True)
    with contextlib.ExitStack() as stack:

        def local(sources: list[SourceFile]) -> list[tuple]:
            return [(stack.enter_context(s.local(settings)), s.name) for s in sources]

        if product == plots.PRODUCT:
            read = plots.read_plots(
                local(files),
                seasons=local(extra["plot_seasons"]),
                dem=next(iter(local(extra["dem"])), None),
                counties=next(iter(local(extra["counties"])), None),
                mapping=settings.source_columns,
            )
            good, rejected, total = read.good, read.rejected, read.total
        else:
            good, rejected, total = yields.read_yields(
                local(files),
                standard_moisture_pct=settings.yield_standard_moisture_pct,
                unit=settings.yields_unit,
                mapping=settings.source_columns,
            )
    stamped = good.replace_schema_metadata({FILES_KEY: fingerprint})
    _, rows = write_raw(
        lake, product, target, stamped, rejected, total,
        settings.validation_max_bad_share, [f.name for f in files],
    )  # fmt: skip
    if product == plots.PRODUCT:
        lake.write_parquet(names.RAW_WEATHER_CELLS, cells_table(weather_cells(lake)))
    log.info(
        "ingest %s: %d rows from %d file(s), %d quarantined",
        product,
        rows,
        len(files),
        len(rejected),
    )
    return IngestResult(product, len(files), rows, len(rejected))


def _fingerprint(
    files: list[SourceFile], extra: dict[str, list[SourceFile]], settings: Settings, product: str
) -> str:
    """What the table is made of: its files, the side files and the settings that change
    how they are read."""
    knobs = {
        "columns": settings.source_columns,
        "moisture": settings.yield_standard_moisture_pct,
        "unit": settings.yields_unit,
        "threshold": settings.validation_max_bad_share,
    }
    payload = {
        "product": product,
        "files": [[f.uri, f.fingerprint] for f in files],
        "extra": {k: [[f.uri, f.fingerprint] for f in v] for k, v in sorted(extra.items())},
        "settings": knobs,
    }
    return json.dumps(payload, sort_keys=True)


def _unchanged(lake: Lake, target: str, fingerprint: str) -> bool:
    if not lake.exists(target):
        return False
    metadata = lake.open_parquet(target).schema_arrow.metadata or {}
    return metadata.get(FILES_KEY.encode(), b"").decode() == fingerprint
