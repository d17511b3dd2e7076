"""Plots and harvest labels into the raw contract, in K shards by plot bucket: a sharded
night (:mod:`nuru_yield.nightly`; ``hash(plot_id) mod K``, :mod:`nuru_yield.sharding`).

* :func:`prepare_tables` picks the products to ingest (the files given, else each
  configured source) and fingerprints each one: its files, its side files (plot-seasons CSV,
  DEM, county boundaries) and the settings that change how they are read. A product whose
  raw table was written from the same fingerprint is left as it is. The others' files are
  read once, as downloaded, and split by plot id into one staged part per shard and file
  (ids that are not whole numbers go to shard 0, which quarantines them), the plot-seasons
  CSVs alike: a shard holds all the rows of its plots.
* :func:`ingest_bucket` turns its shard's rows into contract rows (centroids and areas,
  altitudes, counties, plot-seasons; labels at the standard moisture) and quarantines the
  bad ones; it stages the good rows, the plots' boundaries and the quarantined rows, then
  its report.
* :func:`publish_tables` applies the bad-share rule per product over all shards:
  ``raw/rejected/{product}.parquet`` either way; passed, the raw table (and, for plots,
  ``raw/plot_geometries.parquet``) is assembled in one step, marked with its fingerprint;
  failed, nothing replaces the previous table.

:data:`PLOT_TABLES` names the three steps: ``nuru-yield ingest plots|yields`` runs them in
one process, the ``raw_ingestion`` DAG as tasks (before the weather: weather is sampled
where the plots are).
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from nuru_yield import names
from nuru_yield.config import get_settings
from nuru_yield.contract import PLOT_GEOMETRIES_SCHEMA, PLOTS_WITH_AREA_SCHEMA, YIELDS_SCHEMA
from nuru_yield.errors import DataValidationError
from nuru_yield.lake import Lake
from nuru_yield.nightly import (
    Night,
    NightPlan,
    NightResult,
    assemble,
    clear_parts,
    read_reports,
    stamped,
    write_report,
)
from nuru_yield.sharding import shard_or_zero
from nuru_yield.sources import plots, yields
from nuru_yield.sources.inputs import SourceFile, resolve
from nuru_yield.sources.tables import REASON, check_bad_share, read_csv, rejected_table
from nuru_yield.sources.tables import REJECTED_SCHEMA as REJECTED
from nuru_yield.steps import StepResult

if TYPE_CHECKING:
    from nuru_yield.config import Settings

log = logging.getLogger(__name__)

PRODUCTS = (plots.PRODUCT, yields.PRODUCT)
TARGETS = {plots.PRODUCT: names.RAW_PLOTS, yields.PRODUCT: names.RAW_YIELDS}
SCHEMAS = {plots.PRODUCT: PLOTS_WITH_AREA_SCHEMA, yields.PRODUCT: YIELDS_SCHEMA}
SEASONS = "plot_seasons"
# The fingerprint a raw table was written from, in its key-value metadata.
FINGERPRINT_KEY = "nuru_yield.source_files"
_REASONS_REPORTED = 20  # per shard and product: enough for the commonest three overall


@dataclass(frozen=True)
class TablesPlan(NightPlan):
    """What every step of one run shares: the products it rewrites and their files (names
    for messages, in the order of their staged parts), the fingerprints, side files and
    settings every shard reads the same way."""

    products: list[str]
    files: dict[str, list[str]]  # product (and plot_seasons) -> file names
    fingerprints: dict[str, str]
    unchanged: dict[str, int] = field(default_factory=dict)  # product -> its files
    dem: str = ""
    counties: str = ""
    columns: dict[str, str] = field(default_factory=dict)
    standard_moisture_pct: float = 12.5
    yields_unit: str = ""
    threshold: float = 0.05

    STEP = "plots and labels ingest"
    PREFIX = names.SOURCES_TABLES


@dataclass(frozen=True)
class TablesShardResult(StepResult):
    """What one shard staged, per product."""

    shard: int
    rows: dict[str, int]
    rejected: dict[str, int]


@dataclass(frozen=True)
class TablesResult(NightResult):
    """What a run published: per product its files, rows and quarantined rows, or that its
    files had not changed."""

    products: dict[str, dict[str, int]]
    unchanged: dict[str, int] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # product -> the error

    def raise_failures(self) -> None:
        """The error of the products that failed the bad-share rule, if any."""
        if self.failed:
            raise DataValidationError(" | ".join(self.failed.values()))

    @property
    def labels_changed(self) -> bool:
        """Whether ``raw/yields.parquet`` was rewritten (``harvest_labels`` then fires)."""
        return yields.PRODUCT in self.products

    def lines(self) -> list[str]:
        """One line per product, as ``nuru-yield ingest`` prints them."""
        lines = []
        for product in PRODUCTS:
            if product in self.products:
                done = self.products[product]
                lines.append(
                    f"{product}: {done['files']} file(s), {done['rows']:,} rows, "
                    f"{done['rejected']:,} quarantined"
                )
            elif product in self.unchanged:
                lines.append(
                    f"{product}: {self.unchanged[product]} file(s) unchanged since the last ingest"
                )
        return lines

    def event_extra(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "labels": self.products.get(yields.PRODUCT, {})}


def prepare_tables(
    run_date: dt.date,
    *,
    lake: Lake | None = None,
    settings: Settings | None = None,
    shards: int | None = None,
    dag_run_id: str | None = None,
    sources: Mapping[str, Sequence[str]] | None = None,
) -> TablesPlan:
    """Open a run for ``run_date``: fingerprint, compare, split (see the module docstring).
    ``sources``: product → files, folders, globs or ``s3://`` prefixes (``nuru-yield
    ingest``); None: every product with a configured source."""
    settings = settings or get_settings()
    lake = lake or Lake.from_settings(settings)
    wanted = _wanted(sources, settings)
    side = {
        name: resolve([source], settings) if (source := _source(name, settings)) else []
        for name in (SEASONS, "dem", "counties")
    }
    found = {product: resolve(patterns, settings) for product, patterns in wanted.items()}
    fingerprints = {
        product: _fingerprint(product, files, side, settings) for product, files in found.items()
    }
    unchanged = {
        product: len(found[product])
        for product in found
        if _written_from(lake, TARGETS[product]) == fingerprints[product]
    }
    for product, files in unchanged.items():
        log.info(
            "ingest %s: %d file(s) unchanged since the last ingest, nothing read", product, files
        )
    products = [product for product in PRODUCTS if product in found and product not in unchanged]
    staged: dict[str, list[SourceFile]] = {product: found[product] for product in products}
    if plots.PRODUCT in products:
        staged[SEASONS] = side[SEASONS]
    plan = TablesPlan(
        run_id=TablesPlan.new_run_id(run_date),
        run_date=run_date,
        shards=(shards or settings.ingest_shards) if products else 1,
        products=products,
        files={product: [source.name for source in files] for product, files in staged.items()},
        fingerprints={product: fingerprints[product] for product in products},
        unchanged=unchanged,
        dem=side["dem"][0].uri if side["dem"] else "",
        counties=side["counties"][0].uri if side["counties"] else "",
        columns=dict(settings.source_columns),
        standard_moisture_pct=settings.yield_standard_moisture_pct,
        yields_unit=settings.yields_unit,
        threshold=settings.validation_max_bad_share,
    )
    clear_parts(lake, plan)
    for product, files in staged.items():
        for index, source in enumerate(files):
            with source.local(settings) as path:
                _split(
                    lake,
                    plan,
                    f"{product}-{index:04d}",
                    _read_file(product, path, source.name),
                    source.name,
                )
    write_report(lake, plan, None, {"dag_run_id": dag_run_id})
    log.info(
        "ingest %s: run %s in %d shard(s)",
        ", ".join(products) or "nothing new",
        plan.run_id,
        plan.shards,
    )
    return plan


def _wanted(
    sources: Mapping[str, Sequence[str]] | None, settings: Settings
) -> dict[str, list[str]]:
    """Product → patterns: those given (products of this night only), else the configured."""
    if sources is not None:
        return {product: list(sources[product]) for product in PRODUCTS if product in sources}
    return {product: [source] for product in PRODUCTS if (source := _source(product, settings))}


def _source(name: str, settings: Settings) -> str:
    return str(getattr(settings, f"{name}_source"))


def _read_file(product: str, path: Path, name: str) -> pd.DataFrame:
    return plots.read_file(path, name) if product == plots.PRODUCT else read_csv(path, name)


def _split(lake: Lake, plan: TablesPlan, part: str, frame: pd.DataFrame, name: str) -> None:
    """Stage the rows of one file as ``part`` of each shard, by the hash of their plot id."""
    ids = plots.plot_ids(frame, name, plan.columns).astype("float64").to_numpy(na_value=np.nan)
    shard_of_row = shard_or_zero(ids, plan.shards)
    table = plots.to_arrow(frame)
    schema = stamped(table.schema, plan)
    for shard in range(plan.shards):
        rows = table.filter(pa.array(shard_of_row == shard)).replace_schema_metadata(
            schema.metadata
        )
        lake.write_parquet(plan.part(shard, part), rows)


def _fingerprint(
    product: str, files: list[SourceFile], side: dict[str, list[SourceFile]], settings: Settings
) -> str:
    """What a raw table is made of: its files, the side files and the settings that change
    how they are read (JSON, in the table's metadata)."""
    knobs: dict[str, Any] = {
        "columns": settings.source_columns,
        "threshold": settings.validation_max_bad_share,
    }
    if product == plots.PRODUCT:  # a reading rule: a new bound reads the files again
        knobs |= {"max_area_ha": plots.MAX_AREA_HA}
    if product == yields.PRODUCT:
        knobs |= {"moisture": settings.yield_standard_moisture_pct, "unit": settings.yields_unit}
    payload = {
        "product": product,
        "files": [[f.uri, f.fingerprint] for f in files],
        "extra": {
            name: [[f.uri, f.fingerprint] for f in found]
            for name, found in sorted(side.items())
            if product == plots.PRODUCT
        },
        "settings": knobs,
    }
    return json.dumps(payload, sort_keys=True)


def _written_from(lake: Lake, target: str) -> str | None:
    if not lake.exists(target):
        return None
    metadata = lake.open_parquet(target).schema_arrow.metadata or {}
    found = metadata.get(FINGERPRINT_KEY.encode())
    return found.decode() if found else None


def ingest_bucket(
    plan: TablesPlan,
    shard: int,
    *,
    lake: Lake | None = None,
    settings: Settings | None = None,
) -> TablesShardResult:
    """Contract rows of one shard's plots and labels, staged (see the module docstring)."""
    plan.checked(shard)
    settings = settings or get_settings()
    lake = lake or Lake.from_settings(settings)
    rows: dict[str, int] = {}
    rejected: dict[str, int] = {}
    report: dict[str, Any] = {}
    for product in plan.products:
        good, geometries, quarantined, total = _read_shard(lake, plan, shard, product, settings)
        lake.write_parquet(
            plan.part(shard, f"{product}-good"),
            good.cast(stamped(_with_fingerprint(SCHEMAS[product], plan, product), plan)),
        )
        if geometries is not None:
            lake.write_parquet(
                plan.part(shard, f"{product}-geometries"),
                geometries.cast(stamped(PLOT_GEOMETRIES_SCHEMA, plan)),
            )
        lake.write_parquet(
            plan.part(shard, f"{product}-rejected"),
            rejected_table(quarantined).cast(stamped(REJECTED, plan)),
        )
        rows[product], rejected[product] = good.num_rows, len(quarantined)
        reasons = collections.Counter(quarantined[REASON]).most_common(_REASONS_REPORTED)
        report[product] = {"rows": good.num_rows, "total": total, "rejected": len(quarantined),
                           "reasons": dict(reasons)}  # fmt: skip
    write_report(lake, plan, shard, report)
    log.info(
        "ingest %s shard %d/%d: %s", ", ".join(plan.products) or "nothing", shard, plan.shards,
        ", ".join(f"{p} {rows[p]:,} rows, {rejected[p]:,} quarantined" for p in plan.products),
    )  # fmt: skip
    return TablesShardResult(shard, rows, rejected)


def _read_shard(
    lake: Lake, plan: TablesPlan, shard: int, product: str, settings: Settings
) -> tuple[pa.Table, pa.Table | None, pd.DataFrame, int]:
    """One shard's rows of ``product`` read: (good, boundaries or None, quarantined, rows)."""

    def staged(name: str) -> list[tuple[pd.DataFrame, str]]:
        return [
            (plots.from_arrow(lake.read_parquet(plan.part(shard, f"{name}-{index:04d}"))), file)
            for index, file in enumerate(plan.files.get(name, []))
        ]

    if product == yields.PRODUCT:
        good, quarantined, total = yields.read_yields(
            staged(product),
            standard_moisture_pct=plan.standard_moisture_pct,
            unit=plan.yields_unit,
            mapping=plan.columns,
        )
        return good, None, quarantined, total
    with contextlib.ExitStack() as stack:

        def local(uri: str) -> tuple[Path, str] | None:
            if not uri:
                return None
            source = SourceFile(uri, "", 0)
            return stack.enter_context(source.local(settings)), source.name

        read = plots.read_plots(
            staged(product),
            seasons=staged(SEASONS),
            dem=local(plan.dem),
            counties=local(plan.counties),
            mapping=plan.columns,
        )
    return read.good, read.geometries, read.rejected, read.total


def _with_fingerprint(schema: pa.Schema, plan: TablesPlan, product: str) -> pa.Schema:
    """``schema`` marked with what the product's table is made of."""
    fingerprint = {FINGERPRINT_KEY.encode(): plan.fingerprints[product].encode()}
    return schema.with_metadata({**(schema.metadata or {}), **fingerprint})


def publish_tables(
    plan: TablesPlan,
    results: Sequence[TablesShardResult],
    *,
    lake: Lake | None = None,
    settings: Settings | None = None,
) -> TablesResult:
    """Per product, the bad-share rule over all shards, then the raw table (see the module
    docstring). Plots that fail the rule are an error (after the labels are published):
    weather and features need them. Labels that fail it are only the result's ``failed``:
    no night's forecasts wait for harvest labels (the DAG's ``announce_labels`` and
    ``nuru-yield ingest`` then fail, naming it, after the weather is in)."""
    lake = lake or Lake.from_settings(settings)
    _, *reports = read_reports(lake, plan, prepare=True)
    published: dict[str, dict[str, int]] = {}
    failures: dict[str, str] = {}
    for product in plan.products:
        counts = [report[product] for report in reports]
        total, bad = sum(c["total"] for c in counts), sum(c["rejected"] for c in counts)
        reasons: collections.Counter[str] = collections.Counter()
        for c in counts:
            reasons.update(c["reasons"])
        quarantine = names.rejected_raw_path(product)
        assemble(lake, plan, f"{product}-rejected", quarantine, REJECTED)
        try:
            check_bad_share(
                product, plan.files[product], bad, total, reasons, plan.threshold,
                lake.uri(quarantine),
            )  # fmt: skip
        except DataValidationError as error:
            failures[product] = str(error)
            continue
        if product == plots.PRODUCT:  # before the plots: their fingerprint marks the job done
            assemble(
                lake, plan, f"{product}-geometries", names.RAW_PLOT_GEOMETRIES,
                PLOT_GEOMETRIES_SCHEMA,
            )  # fmt: skip
        schema = _with_fingerprint(SCHEMAS[product], plan, product)
        _, rows = assemble(lake, plan, f"{product}-good", TARGETS[product], schema)
        published[product] = {"files": len(plan.files[product]), "rows": rows, "rejected": bad}
        log.info("ingest %s: %d rows from %d file(s), %d quarantined", product, rows,
                 len(plan.files[product]), bad)  # fmt: skip
    clear_parts(lake, plan)
    result = TablesResult(plan.run_id, plan.run_date, published, plan.unchanged, failures)
    if plots.PRODUCT in failures:
        raise DataValidationError(" | ".join(failures.values()))
    for failure in failures.values():
        log.error("%s", failure)
    return result


PLOT_TABLES = Night(TablesPlan, TablesShardResult, prepare_tables, ingest_bucket, publish_tables)
