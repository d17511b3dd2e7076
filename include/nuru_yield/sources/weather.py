"""Gridded weather into the raw contract, incrementally: plan → one step per month → publish.

* :func:`plan_weather` resolves a product's files (CHIRPS or AgERA5), finds the day(s) each
  holds and picks, per day (and AgERA5 variable), the file that wins (CHIRPS: final over
  preliminary, a daily file over the yearly one; AgERA5: the preferred variable, then the
  newest version). It compares that with what each month's stored part says it was built
  from (file, fingerprint, version per day, and the weather cells it was sampled at) and
  lists the months with a day that is new or whose file changed: only those are read.
* :func:`ingest_month` reads the changed days of one month at the weather cells (every
  0.05° CHIRPS pixel that holds a plot of ``raw/plots.parquet``), keeps the month's other
  days as stored, and replaces ``sources/{product}/year=YYYY/month=MM.parquet`` in one step,
  its manifest in the file's metadata.
* :func:`publish_weather` rebuilds ``raw/weather/year=YYYY/part-0.parquet`` for every year
  whose stored months changed since the file was written (rain and temperature joined on
  cell and day), and ``raw/weather_sources.parquet``: which file and version each day came
  from. Every file is written atomically, sorted, with no time stamp, so ingesting the same
  files twice gives byte-identical raw partitions, and an ingest killed anywhere leaves the
  previous raw weather in place (a rerun finishes the job).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from nuru_yield import names
from nuru_yield.config import get_settings
from nuru_yield.contract import CELLS_SCHEMA, WEATHER_SCHEMA
from nuru_yield.errors import DataValidationError, MissingInputError
from nuru_yield.grid import cell_centre, cell_id, cell_index, cell_rows_cols
from nuru_yield.lake import Lake
from nuru_yield.sources import agera5, chirps
from nuru_yield.sources.inputs import SourceFile, resolve
from nuru_yield.steps import StepResult

if TYPE_CHECKING:
    from nuru_yield.config import Settings

log = logging.getLogger(__name__)

PRODUCTS = (chirps.PRODUCT, agera5.PRODUCT)
PRODUCT_COLUMNS = {chirps.PRODUCT: ["precip_mm"], agera5.PRODUCT: list(agera5.COLUMNS)}
MANIFEST_KEY = "nuru_yield.sources"
STAMP_KEY = "nuru_yield.weather_inputs"
SOURCES_SCHEMA = pa.schema(
    [
        ("product", pa.string()),
        ("date", pa.date32()),
        ("column", pa.string()),
        ("variable", pa.string()),
        ("file", pa.string()),
        ("fingerprint", pa.string()),
        ("version", pa.string()),
    ]
)


@dataclass(frozen=True)
class WeatherPlan(StepResult):
    """One weather ingest: the product, the months to read, and where the day-by-day plan
    is staged (too large for XCom: thousands of AgERA5 files a year)."""

    run_id: str
    product: str
    months: list[str] = field(default_factory=list)  # "YYYY-MM"
    files: int = 0
    days: int = 0

    @property
    def plan_path(self) -> str:
        return f"{names.SOURCES}/_runs/{self.product}-{self.run_id}.json"


@dataclass(frozen=True)
class MonthResult(StepResult):
    product: str
    month: str
    days_read: int
    rows: int


@dataclass(frozen=True)
class WeatherResult(StepResult):
    """What publish wrote: the raw years rebuilt and the days the product now holds."""

    product: str
    years: list[int]
    days_read: int
    uris: list[str] = field(default_factory=list)


def weather_cells(lake: Lake) -> pd.DataFrame:
    """The weather cells: every 0.05° CHIRPS pixel that holds a plot of the raw plots table
    (``cell_id`` from the pixel's place on the global grid, centre coordinates), sorted."""
    if not lake.exists(names.RAW_PLOTS):
        raise MissingInputError(
            f"no plots in {lake.uri(names.RAW_PLOTS)}: ingest plots first "
            "(`nuru-yield ingest plots`), weather is sampled where plots are"
        )
    plots = lake.read_parquet(names.RAW_PLOTS, columns=["latitude", "longitude"])
    lat = plots.column("latitude").to_numpy(zero_copy_only=False).astype(np.float64)
    lon = plots.column("longitude").to_numpy(zero_copy_only=False).astype(np.float64)
    located = np.isfinite(lat) & np.isfinite(lon) & (np.abs(lat) <= 90) & (np.abs(lon) <= 180)
    ids = np.unique(cell_id(*cell_index(lat[located], lon[located])))
    centre_lat, centre_lon = cell_centre(*cell_rows_cols(ids))
    return pd.DataFrame(
        {"cell_id": ids, "latitude": np.round(centre_lat, 6), "longitude": np.round(centre_lon, 6)}
    )


def cells_table(cells: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(cells, schema=CELLS_SCHEMA, preserve_index=False)


def _cells_hash(cells: pd.DataFrame) -> str:
    return hashlib.sha256(cells["cell_id"].to_numpy(np.int64).tobytes()).hexdigest()[:16]


# --- plan -----------------------------------------------------------------------------------
def plan_weather(
    product: str,
    paths: Sequence[str] | None = None,
    run_date: dt.date | None = None,
    *,
    lake: Lake | None = None,
    settings: Settings | None = None,
) -> WeatherPlan:
    """Which months of ``product`` to read (see the module docstring). ``paths`` default to
    the product's configured source; with ``run_date``, days after it are left for later."""
    if product not in PRODUCTS:
        raise ValueError(f"unknown weather product {product!r}")
    settings = settings or get_settings()
    lake = lake or Lake.from_settings(settings)
    patterns = list(paths or _configured(product, settings))
    files = resolve(patterns, settings)
    cells = weather_cells(lake)
    wanted = _winners(product, files, settings)
    if run_date is not None:
        wanted = {key: entry for key, entry in wanted.items() if key[0] <= run_date.isoformat()}
    if not wanted:
        raise DataValidationError(
            f"no {product} day to ingest in {', '.join(patterns)}"
            + (f" up to {run_date}" if run_date else "")
        )
    by_month: dict[str, dict[tuple[str, str], dict[str, str]]] = defaultdict(dict)
    for key, entry in wanted.items():
        by_month[key[0][:7]][key] = entry
    cells_hash = _cells_hash(cells)
    work: dict[str, dict[str, Any]] = {}
    for month, entries in sorted(by_month.items()):
        stored = _stored_manifest(lake, product, month)
        merged = {**stored["entries"], **entries}
        changed = sorted(
            {
                day
                for (day, column), entry in entries.items()
                if stored["entries"].get((day, column)) != entry
            }
            | (set(day for day, _ in merged) if stored["cells"] != cells_hash else set())
        )
        if changed:
            work[month] = {
                "read": changed,
                "entries": [{"date": d, "column": c, **e} for (d, c), e in sorted(merged.items())],
            }
    run_id = uuid.uuid4().hex[:12]
    plan = WeatherPlan(
        run_id=run_id,
        product=product,
        months=sorted(work),
        files=len(files),
        days=len({day for day, _ in wanted}),
    )
    lake.write_json(plan.plan_path, {"run_id": run_id, "cells": cells_hash, "months": work})
    log.info(
        "ingest %s: %d file(s), %d day(s); %d month(s) with new or changed days: %s",
        product, plan.files, plan.days, len(plan.months), ", ".join(plan.months) or "none",
    )  # fmt: skip
    return plan


def _configured(product: str, settings: Settings) -> list[str]:
    source = {chirps.PRODUCT: settings.chirps_source, agera5.PRODUCT: settings.agera5_source}
    if not source[product]:
        raise MissingInputError(
            f"no {product} files given and {product.upper()}_SOURCE is not set "
            "(a folder, a glob or an s3:// prefix)"
        )
    return [source[product]]


def _winners(
    product: str, files: list[SourceFile], settings: Settings
) -> dict[tuple[str, str], dict[str, str]]:
    """(day, contract column) → the entry of the file that provides it."""
    best: dict[tuple[str, str], tuple[tuple[Any, ...], dict[str, str]]] = {}
    for source in files:
        for key, rank, entry in _entries(product, source, settings):
            if key not in best or rank > best[key][0]:
                best[key] = (rank, entry)
    return {key: entry for key, (_, entry) in best.items()}


def _entries(product: str, source: SourceFile, settings: Settings) -> list[tuple[Any, ...]]:
    base = {"file": source.uri, "fingerprint": source.fingerprint}
    if product == chirps.PRODUCT:
        described = chirps.describe(source.uri)
        if described is None:
            raise DataValidationError(
                f"{source.name}: not a CHIRPS v2.0 file name ({chirps.NAMING})"
            )
        if described.yearly:
            with source.local(settings) as path:
                days = chirps.yearly_days(path, source.name)
        else:
            assert described.day is not None
            days = [described.day]
        rank = (described.version == "final", not described.yearly, source.uri)
        entry = {**base, "variable": chirps.VARIABLE, "version": described.version}
        return [((day.isoformat(), "precip_mm"), rank, entry) for day in days]
    file = agera5.describe(source.uri)
    if file is None or file.column is None:
        raise DataValidationError(
            f"{source.name}: not an AgERA5 file of a variable the pipeline uses ({agera5.NAMING})"
        )
    entry = {**base, "variable": file.variable, "version": f"final-v{file.version}"}
    return [((file.day.isoformat(), file.column), (*file.rank, source.uri), entry)]


def _stored_manifest(lake: Lake, product: str, month: str) -> dict[str, Any]:
    path = names.source_month_path(product, int(month[:4]), int(month[5:]))
    if not lake.exists(path):
        return {"cells": None, "entries": {}}
    metadata = lake.open_parquet(path).schema_arrow.metadata or {}
    stored = json.loads(metadata.get(MANIFEST_KEY.encode(), b'{"entries": []}'))
    return {
        "cells": stored.get("cells"),
        "entries": {
            (e["date"], e["column"]): {
                k: e[k] for k in ("file", "fingerprint", "variable", "version")
            }
            for e in stored["entries"]
        },
    }


# --- one month ------------------------------------------------------------------------------
def ingest_month(
    plan: WeatherPlan,
    month: str,
    *,
    lake: Lake | None = None,
    settings: Settings | None = None,
) -> MonthResult:
    """Read the changed days of one month and replace its stored part (see the module
    docstring)."""
    settings = settings or get_settings()
    lake = lake or Lake.from_settings(settings)
    staged = lake.read_json(plan.plan_path)
    if staged["run_id"] != plan.run_id:
        raise DataValidationError(f"{plan.plan_path} belongs to run {staged['run_id']}")
    work = staged["months"][month]
    cells = weather_cells(lake)
    if _cells_hash(cells) != staged["cells"]:
        raise DataValidationError(
            f"the plots changed since ingest {plan.run_id} was planned: plan it again"
        )
    read = set(work["read"])
    columns = PRODUCT_COLUMNS[plan.product]
    by_file: dict[str, list[dict[str, str]]] = defaultdict(list)
    for entry in work["entries"]:
        if entry["date"] in read:
            by_file[entry["file"]].append(entry)
    days = sorted(read)
    fresh = pd.DataFrame(
        {
            "cell_id": np.tile(cells["cell_id"].to_numpy(np.int64), len(days)),
            "date": np.repeat(np.array(days, dtype="datetime64[D]"), len(cells)),
        }
    )
    for column in columns:
        fresh[column] = np.nan
    position = {day: i for i, day in enumerate(days)}
    fingerprints = {e["file"]: e["fingerprint"] for e in work["entries"]}
    for uri, entries in sorted(by_file.items()):
        source = SourceFile(uri, fingerprints[uri], 0)
        with source.local(settings) as path:
            if plan.product == chirps.PRODUCT:
                wanted = sorted({dt.date.fromisoformat(e["date"]) for e in entries})
                frame = chirps.read_chirps(path, source.name, cells, wanted)
                for day, values in frame.groupby("date", sort=True)["precip_mm"]:
                    start = position[day.date().isoformat()] * len(cells)
                    fresh.loc[start : start + len(cells) - 1, "precip_mm"] = values.to_numpy()
            else:
                file, values = agera5.read_agera5(path, source.name, cells)
                start = position[file.day.isoformat()] * len(cells)
                fresh.loc[start : start + len(cells) - 1, file.column] = values
    year, number = int(month[:4]), int(month[5:])
    path = names.source_month_path(plan.product, year, number)
    kept = _stored_rows(lake, path, columns, read, cells)
    table = pa.Table.from_pandas(
        pd.concat([kept, fresh], ignore_index=True).sort_values(["date", "cell_id"]),
        schema=_month_schema(plan.product),
        preserve_index=False,
    )
    manifest = {"cells": staged["cells"], "entries": work["entries"]}
    lake.write_parquet(
        path, table.replace_schema_metadata({MANIFEST_KEY: json.dumps(manifest, sort_keys=True)})
    )
    log.info("ingest %s %s: %d day(s) read, %d rows", plan.product, month, len(days), len(table))
    return MonthResult(plan.product, month, len(days), table.num_rows)


def _month_schema(product: str) -> pa.Schema:
    return pa.schema(
        [WEATHER_SCHEMA.field("cell_id"), WEATHER_SCHEMA.field("date")]
        + [WEATHER_SCHEMA.field(column) for column in PRODUCT_COLUMNS[product]]
    )


def _stored_rows(
    lake: Lake, path: str, columns: list[str], read: set[str], cells: pd.DataFrame
) -> pd.DataFrame:
    """The stored rows of the days not read again (at the current cells only)."""
    if not lake.exists(path):
        return pd.DataFrame(columns=["cell_id", "date", *columns])
    stored = lake.read_parquet(path).to_pandas(date_as_object=False)
    keep = ~stored["date"].dt.strftime("%Y-%m-%d").isin(read) & stored["cell_id"].isin(
        cells["cell_id"]
    )
    return stored[keep]


# --- publish --------------------------------------------------------------------------------
def publish_weather(
    plan: WeatherPlan, *, lake: Lake | None = None, settings: Settings | None = None
) -> WeatherResult:
    """Rebuild the raw weather years whose stored months changed, the weather cells and
    the day-by-day sources table (see the module docstring)."""
    lake = lake or Lake.from_settings(settings)
    cells = weather_cells(lake)
    lake.write_parquet(names.RAW_WEATHER_CELLS, cells_table(cells))
    years = sorted(
        {
            int(path.split("year=")[1][:4])
            for path in lake.list(names.SOURCES, ".parquet")
            if "year=" in path
        }
    )
    rebuilt, uris = [], []
    for year in years:
        parts = {
            product: lake.list(f"{names.SOURCES}/{product}/year={year}", ".parquet")
            for product in PRODUCTS
        }
        stamp = _stamp(lake, parts)
        target = names.weather_year_path(year)
        if lake.exists(target):
            metadata = lake.open_parquet(target).schema_arrow.metadata or {}
            if metadata.get(STAMP_KEY.encode(), b"").decode() == stamp:
                continue
        table = _weather_year(lake, parts, cells)
        uris.append(lake.write_parquet(target, table.replace_schema_metadata({STAMP_KEY: stamp})))
        rebuilt.append(year)
    lake.write_parquet(names.RAW_WEATHER_SOURCES, _sources_table(lake))
    lake.delete(plan.plan_path)
    log.info("ingest %s: raw weather rebuilt for %s", plan.product, rebuilt or "no year")
    return WeatherResult(plan.product, rebuilt, 0, uris)


def _stamp(lake: Lake, parts: dict[str, list[str]]) -> str:
    """What a raw weather year is built from: each stored month's manifest."""
    digest = hashlib.sha256()
    for product, paths in sorted(parts.items()):
        for path in paths:
            metadata = lake.open_parquet(path).schema_arrow.metadata or {}
            digest.update(f"{product}:{path}:".encode() + metadata.get(MANIFEST_KEY.encode(), b""))
    return digest.hexdigest()[:32]


def _weather_year(lake: Lake, parts: dict[str, list[str]], cells: pd.DataFrame) -> pa.Table:
    frames = []
    for product in PRODUCTS:
        if parts[product]:
            frame = lake.read_parquet(parts[product]).to_pandas(date_as_object=False)
            frames.append(frame[frame["cell_id"].isin(cells["cell_id"])])
    merged = frames[0]
    for frame in frames[1:]:
        merged = merged.merge(frame, on=["cell_id", "date"], how="outer")
    for column in WEATHER_SCHEMA.names:
        if column not in merged:
            merged[column] = np.nan
    merged = merged.sort_values(["date", "cell_id"])[WEATHER_SCHEMA.names]
    return pa.Table.from_pandas(merged, schema=WEATHER_SCHEMA, preserve_index=False)


def _sources_table(lake: Lake) -> pa.Table:
    rows = []
    for product in PRODUCTS:
        for path in lake.list(f"{names.SOURCES}/{product}", ".parquet"):
            metadata = lake.open_parquet(path).schema_arrow.metadata or {}
            stored = json.loads(metadata.get(MANIFEST_KEY.encode(), b'{"entries": []}'))
            rows.extend({"product": product, **entry} for entry in stored["entries"])
    frame = pd.DataFrame(rows, columns=SOURCES_SCHEMA.names)
    frame["date"] = pd.to_datetime(frame["date"]).dt.date
    frame = frame.sort_values(["product", "date", "column"])
    return pa.Table.from_pandas(frame, schema=SOURCES_SCHEMA, preserve_index=False)


def ingest_weather(
    product: str,
    paths: Sequence[str] | None = None,
    run_date: dt.date | None = None,
    *,
    lake: Lake | None = None,
    settings: Settings | None = None,
) -> WeatherResult:
    """Plan, ingest every month that needs it and publish, in this process
    (``nuru-yield ingest chirps|agera5``)."""
    settings = settings or get_settings()
    lake = lake or Lake.from_settings(settings)
    plan = plan_weather(product, paths, run_date, lake=lake, settings=settings)
    read = sum(
        ingest_month(plan, month, lake=lake, settings=settings).days_read for month in plan.months
    )
    published = publish_weather(plan, lake=lake, settings=settings)
    return WeatherResult(product, published.years, read, published.uris)
