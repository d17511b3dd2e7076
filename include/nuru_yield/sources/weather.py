"""CHIRPS and AgERA5 into the raw weather, incrementally, in K shards of months: a sharded
night (:mod:`nuru_yield.nightly`).

The raw weather of an ingested year is one file a month, ``raw/weather/year=YYYY/month-MM.parquet``
(every weather cell on every day a product has, all weather columns), whose metadata keeps
its manifest: the weather cells it was sampled at and, for each day and column, the file,
fingerprint, variable and version it came from.

* :func:`prepare_weather` resolves each product's files (the files given, else the
  configured source), finds the day(s) each holds and picks, per day and column, the file
  that wins (CHIRPS: final over preliminary, a daily file over the yearly one; AgERA5: the
  preferred variable, then the newest version). It compares that with each month's manifest
  and lists the months with a (day, column) that is new or whose file changed (every one of
  the month's when the cells changed): only those are read, spread over the shards by what
  they read.
* :func:`ingest_months` reads the changed days and columns of its months at the weather
  cells (every 0.05° CHIRPS pixel that holds a plot of ``raw/plots.parquet``; AgERA5 at the
  pixel holding the cell's centre), keeps each month's other values as they are, and stages
  the month.
* :func:`publish_weather` moves each staged month into place (a year's other files, such as
  a ``part-0.parquet`` written before ingestion was configured, are removed: the ingested
  months replace them), then writes ``raw/weather_cells.parquet`` and
  ``raw/weather_sources.parquet`` (which file and version each day came from). Every file is
  written atomically: ingesting the same files again rewrites nothing, and an ingest killed
  anywhere leaves the previous raw weather in place (a rerun finishes the job).

:data:`WEATHER` names the three steps: ``nuru-yield ingest chirps|agera5`` runs them in one
process, the ``raw_ingestion`` DAG as tasks (after the plots).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from nuru_yield import names
from nuru_yield.config import get_settings
from nuru_yield.contract import CELLS_SCHEMA, WEATHER_SCHEMA
from nuru_yield.errors import DataValidationError, LakeError, MissingInputError
from nuru_yield.grid import cell_centre, cell_id, cell_index, cell_rows_cols
from nuru_yield.lake import Lake
from nuru_yield.nightly import (
    Night,
    NightPlan,
    NightResult,
    clear_parts,
    place,
    read_reports,
    stamped,
    write_report,
)
from nuru_yield.sources import agera5, chirps
from nuru_yield.sources.inputs import SourceFile, resolve
from nuru_yield.steps import StepResult

if TYPE_CHECKING:
    from nuru_yield.config import Settings

log = logging.getLogger(__name__)

PRODUCTS = (chirps.PRODUCT, agera5.PRODUCT)
COLUMNS = [name for name in WEATHER_SCHEMA.names if name not in ("cell_id", "date")]
MANIFEST_KEY = "nuru_yield.sources"
MONTH_FILE = re.compile(r"/year=(\d{4})/month-(\d{2})\.parquet$")
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
class WeatherPlan(NightPlan):
    """One weather run: its products, the months (``YYYY-MM``) each shard reads, and counts
    for messages. The day-by-day plan is the prepare step's report (too large for XCom:
    thousands of AgERA5 files a year)."""

    products: list[str]
    units: list[list[str]]  # per shard
    files: dict[str, int] = field(default_factory=dict)
    days: dict[str, int] = field(default_factory=dict)
    missing: dict[str, list[str]] = field(default_factory=dict)  # see _missing_days

    STEP = "weather ingest"
    PREFIX = names.SOURCES_WEATHER

    def units_of(self, shard: int) -> list[str]:
        """The months shard ``shard`` reads."""
        return self.units[self.checked(shard)]


@dataclass(frozen=True)
class WeatherShardResult(StepResult):
    """What one shard staged: its months and the days it read, per product."""

    shard: int
    units: list[str]
    days_read: dict[str, int]


@dataclass(frozen=True)
class WeatherResult(NightResult):
    """What a run published: per product its files and the days read; the years whose raw
    weather changed."""

    files: dict[str, int]
    days_read: dict[str, int]
    years: list[int]
    missing: dict[str, list[str]] = field(default_factory=dict)

    def lines(self) -> list[str]:
        """One line per product, as ``nuru-yield ingest`` prints them, and one per column
        with days no file gives."""
        years = ", ".join(map(str, self.years)) or "none"
        return [
            f"{product}: {files} file(s), {self.days_read.get(product, 0):,} day(s) read; "
            f"raw weather rebuilt for {years}"
            for product, files in self.files.items()
        ] + [
            f"{what}: missing on {count} day(s), {first} … {last} (no file gives them)"
            for what, (count, first, last) in self.missing.items()
        ]


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


# --- prepare ---------------------------------------------------------------------------------
def prepare_weather(
    run_date: dt.date,
    *,
    lake: Lake | None = None,
    settings: Settings | None = None,
    shards: int | None = None,
    dag_run_id: str | None = None,
    sources: Mapping[str, Sequence[str]] | None = None,
) -> WeatherPlan:
    """Which months to read (see the module docstring); days after ``run_date`` are left for
    a later night. ``sources``: product → files, folders, globs or ``s3://`` prefixes
    (``nuru-yield ingest``); None: every product with a configured source."""
    settings = settings or get_settings()
    lake = lake or Lake.from_settings(settings)
    wanted_sources = _wanted(sources, settings)
    given: dict[tuple[str, str], dict[str, str]] = {}
    files: dict[str, int] = {}
    days: dict[str, int] = {}
    missing: dict[str, list[str]] = {}
    for product, patterns in wanted_sources.items():
        found = resolve(patterns, settings)
        wanted = {
            key: entry
            for key, entry in _winners(product, found, settings).items()
            if key[0] <= run_date.isoformat()
        }
        if not wanted:
            raise DataValidationError(
                f"no {product} day to ingest in {', '.join(patterns)} up to {run_date}"
            )
        files[product], days[product] = len(found), len({day for day, _ in wanted})
        missing |= {f"{product} {c}": gap for c, gap in _missing_days(product, wanted).items()}
        given |= wanted
    cells_hash = _cells_hash(weather_cells(lake)) if wanted_sources else ""
    work = _changed_months(lake, given, cells_hash)
    count = max(1, min(shards or settings.ingest_shards, len(work)))
    plan = WeatherPlan(
        run_id=WeatherPlan.new_run_id(run_date),
        run_date=run_date,
        shards=count,
        products=list(wanted_sources),
        units=_balanced(work, count),
        files=files,
        days=days,
        missing=missing,
    )
    clear_parts(lake, plan)
    write_report(lake, plan, None, {"cells": cells_hash, "work": work, "dag_run_id": dag_run_id})
    log.info(
        "ingest %s: %s; %d month(s) with new or changed days in %d shard(s): %s",
        ", ".join(plan.products) or "no weather product",
        ", ".join(f"{p} {files[p]} file(s), {days[p]} day(s)" for p in plan.products) or "-",
        len(work), plan.shards, ", ".join(sorted(work)) or "none",
    )  # fmt: skip
    return plan


def _wanted(
    sources: Mapping[str, Sequence[str]] | None, settings: Settings
) -> dict[str, list[str]]:
    """Product → patterns: those given (products of this night only), else the configured."""
    if sources is not None:
        return {product: list(sources[product]) for product in PRODUCTS if product in sources}
    configured = {chirps.PRODUCT: settings.chirps_source, agera5.PRODUCT: settings.agera5_source}
    return {product: [source] for product, source in configured.items() if source}


def _changed_months(
    lake: Lake, given: dict[tuple[str, str], dict[str, str]], cells_hash: str
) -> dict[str, dict[str, Any]]:
    """Month → the (day, column) pairs to read and every (day, column)'s entry (the
    manifest's, with the files given now winning), for each month with a pair that is new or
    whose file changed, or every pair of the month when the cells changed (the files the
    manifest names are read again, whichever product was given)."""
    by_month: dict[str, dict[tuple[str, str], dict[str, str]]] = defaultdict(dict)
    for key, entry in given.items():
        by_month[key[0][:7]][key] = entry
    work = {}
    for month, entries in sorted(by_month.items()):
        stored = _manifest(lake, month)
        merged = {**stored["entries"], **entries}
        if stored["cells"] != cells_hash:
            read = set(merged)
        else:
            read = {key for key, entry in entries.items() if stored["entries"].get(key) != entry}
        if read:
            work[month] = {
                "read": sorted(read),
                "entries": [{"date": d, "column": c, **e} for (d, c), e in sorted(merged.items())],
            }
    return work


def _manifest(lake: Lake, month: str) -> dict[str, Any]:
    """The cells and the (day, column) entries a raw weather month was built from."""
    path = names.weather_month_path(int(month[:4]), int(month[5:]))
    if not lake.exists(path):
        return {"cells": None, "entries": {}}
    metadata = lake.open_parquet(path).schema_arrow.metadata or {}
    stored = json.loads(metadata.get(MANIFEST_KEY.encode(), b'{"entries": []}'))
    keys = ("product", "file", "fingerprint", "variable", "version")
    return {
        "cells": stored.get("cells"),
        "entries": {(e["date"], e["column"]): {k: e[k] for k in keys} for e in stored["entries"]},
    }


def _balanced(work: dict[str, dict[str, Any]], shards: int) -> list[list[str]]:
    """The months spread over ``shards`` with about as many values to read each (a month
    of AgERA5 is three files a day, of CHIRPS one yearly file or a file a day): the largest
    first, each to the shard with the least so far. Each shard's months in order."""
    load = [0] * shards
    spread: list[list[str]] = [[] for _ in range(shards)]
    for month in sorted(work, key=lambda month: (-len(work[month]["read"]), month)):
        lightest = load.index(min(load))
        spread[lightest].append(month)
        load[lightest] += len(work[month]["read"])
    return [sorted(months) for months in spread]


def _missing_days(
    product: str, wanted: dict[tuple[str, str], dict[str, str]]
) -> dict[str, list[str]]:
    """Per column of ``product`` the files give, the days between the product's first and
    last day that no file gives (a hole in the download: said, never filled in), as
    ``[count, first, last]``. Solar radiation is optional: a product without any has no
    hole in it."""
    dates = sorted({dt.date.fromisoformat(day) for day, _ in wanted})
    every = {(dates[0] + dt.timedelta(days=d)).isoformat()
             for d in range((dates[-1] - dates[0]).days + 1)}  # fmt: skip
    holes = {}
    for column in sorted({column for _, column in wanted}):
        gap = sorted(every - {day for day, given in wanted if given == column})
        if gap:
            holes[column] = [str(len(gap)), gap[0], gap[-1]]
            log.warning(
                "ingest %s: %s missing on %d day(s) between %s and %s (%s … %s): no file "
                "gives them; those days have no value", product, column, len(gap),
                dates[0], dates[-1], gap[0], gap[-1],
            )  # fmt: skip
    return holes


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
    base = {"product": product, "file": source.uri, "fingerprint": source.fingerprint}
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


# --- the months ------------------------------------------------------------------------------
def ingest_months(
    plan: WeatherPlan,
    shard: int,
    *,
    lake: Lake | None = None,
    settings: Settings | None = None,
) -> WeatherShardResult:
    """Read the changed days of the shard's months and stage each month (see the module
    docstring)."""
    units = plan.units_of(shard)
    settings = settings or get_settings()
    lake = lake or Lake.from_settings(settings)
    days_read: dict[str, int] = dict.fromkeys(plan.products, 0)
    if units:
        prepared = lake.read_json(plan.report(None))
        if prepared.get("run_id") != plan.run_id:
            raise LakeError(
                f"{plan.STEP} {plan.run_date}: run {prepared.get('run_id')} was prepared since "
                f"run {plan.run_id}; rerun from prepare"
            )
        cells = weather_cells(lake)
        if _cells_hash(cells) != prepared["cells"]:
            raise DataValidationError(
                f"the plots changed since ingest run {plan.run_id} was prepared: rerun from prepare"
            )
        for month in units:
            table, read = _read_month(lake, month, prepared, cells, settings)
            lake.write_parquet(
                plan.part(shard, f"month-{month}"), table.cast(stamped(table.schema, plan))
            )
            for product, count in read.items():
                days_read[product] = days_read.get(product, 0) + count
    write_report(lake, plan, shard, {"units": units, "days_read": days_read})
    log.info("ingest weather shard %d/%d: %s", shard, plan.shards, ", ".join(units) or "nothing")
    return WeatherShardResult(shard, units, days_read)


def _read_month(
    lake: Lake, month: str, prepared: dict[str, Any], cells: pd.DataFrame, settings: Settings
) -> tuple[pa.Table, dict[str, int]]:
    """One month at the cells: its changed (day, column) pairs read from their files, its
    other values as they are, its manifest in the metadata; and the days read per
    product."""
    work = prepared["work"][month]
    entries = {(e["date"], e["column"]): e for e in work["entries"]}
    read = [tuple(pair) for pair in work["read"]]
    ids = cells["cell_id"].to_numpy(np.int64)
    days = np.array(sorted({day for day, _ in entries}), dtype="datetime64[D]")
    path = names.weather_month_path(int(month[:4]), int(month[5:]))
    stored = lake.read_parquet(path).select(WEATHER_SCHEMA.names) if lake.exists(path) else None
    grids = _grids(stored, ids, days, COLUMNS)  # the values kept as they are
    position = {str(day): i for i, day in enumerate(days)}
    by_file: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for day, column in read:
        grids[column][position[day]] = np.nan
        by_file[entries[(day, column)]["file"]].append((day, column))
    for uri, pairs in sorted(by_file.items()):
        source = SourceFile(uri, entries[pairs[0]]["fingerprint"], 0)
        with source.local(settings) as local:
            if entries[pairs[0]]["product"] == chirps.PRODUCT:
                wanted = sorted({dt.date.fromisoformat(day) for day, _ in pairs})
                found, rain = chirps.read_chirps(local, source.name, cells, wanted)
                for day, values in zip(found, rain, strict=True):
                    grids["precip_mm"][position[day.isoformat()]] = values
            else:
                file, values = agera5.read_agera5(local, source.name, cells)
                grids[file.column][position[file.day.isoformat()]] = values
    table = _dense_table(ids, days, grids, WEATHER_SCHEMA)
    manifest = json.dumps({"cells": prepared["cells"], "entries": work["entries"]}, sort_keys=True)
    counts: dict[str, set[str]] = defaultdict(set)
    for day, column in read:
        counts[entries[(day, column)]["product"]].add(day)
    log.info("ingest weather %s: %d (day, column) value(s) read", month, len(read))
    return table.replace_schema_metadata({MANIFEST_KEY: manifest}), {
        product: len(found_days) for product, found_days in counts.items()
    }


def _grids(
    table: pa.Table | None, ids: np.ndarray, days: np.ndarray, columns: Sequence[str]
) -> dict[str, np.ndarray]:
    """Each column of ``table`` on a days × cells grid (``days``, ``ids``: sorted), NaN where
    the table has no value (or no row); rows of other cells or days are left out."""
    grids = {column: np.full((len(days), len(ids)), np.nan) for column in columns}
    if table is None or not table.num_rows:
        return grids
    day = table.column("date").to_numpy()
    cell = table.column("cell_id").to_numpy()
    i = np.minimum(np.searchsorted(days, day), len(days) - 1)
    j = np.minimum(np.searchsorted(ids, cell), len(ids) - 1)
    known = (days[i] == day) & (ids[j] == cell)
    for column in columns:
        values = table.column(column).to_numpy()  # nulls as NaN
        grids[column][i[known], j[known]] = values[known]
    return grids


def _dense_table(
    ids: np.ndarray, days: np.ndarray, grids: dict[str, np.ndarray], schema: pa.Schema
) -> pa.Table:
    """Rows of every cell on every day, sorted by day and cell, each column from its grid
    (NaN as null; a column without a grid null)."""
    rows = len(days) * len(ids)
    dates = pa.array(np.repeat(days.astype("datetime64[D]"), len(ids))).cast(pa.date32())
    arrays = [pa.array(np.tile(ids, len(days))), dates]
    for column in list(schema)[2:]:
        grid = grids.get(column.name)
        if grid is None:
            arrays.append(pa.nulls(rows, column.type))
        else:
            values = grid.ravel()
            arrays.append(pa.array(values, mask=np.isnan(values)))
    return pa.Table.from_arrays(arrays, schema=schema)


# --- publish -------------------------------------------------------------------------------
def publish_weather(
    plan: WeatherPlan,
    results: Sequence[WeatherShardResult],
    *,
    lake: Lake | None = None,
    settings: Settings | None = None,
) -> WeatherResult:
    """Move the staged months into place, then write the weather cells and the day-by-day
    sources table (see the module docstring). Without a weather product, the raw weather is
    left as it is (a team may write it itself)."""
    lake = lake or Lake.from_settings(settings)
    if not plan.products:
        clear_parts(lake, plan)
        return WeatherResult(plan.run_id, plan.run_date, {}, {}, [])
    _, *reports = read_reports(lake, plan, prepare=True)
    for shard in range(plan.shards):
        for month in plan.units_of(shard):
            path = names.weather_month_path(int(month[:4]), int(month[5:]))
            place(lake, plan, shard, f"month-{month}", path)
    years = sorted({int(month[:4]) for units in plan.units for month in units})
    for year in years:  # the ingested months are the year's raw weather
        for path in lake.list(f"{names.RAW_WEATHER}/year={year}", ".parquet"):
            if not MONTH_FILE.search(f"/{path}"):
                log.warning("ingest weather: %s replaced by the ingested months", lake.uri(path))
                lake.delete(path)
    lake.write_parquet(names.RAW_WEATHER_CELLS, cells_table(weather_cells(lake)))
    lake.write_parquet(names.RAW_WEATHER_SOURCES, _sources_table(lake))
    clear_parts(lake, plan)
    days_read = {
        product: sum(report["days_read"].get(product, 0) for report in reports)
        for product in plan.products
    }
    log.info("ingest weather: raw weather rebuilt for %s", years or "no year")
    return WeatherResult(plan.run_id, plan.run_date, plan.files, days_read, years, plan.missing)


def _sources_table(lake: Lake) -> pa.Table:
    """Which file, version and variable each day and column of the raw weather came from:
    the manifests of every ingested month."""
    rows = []
    for path in lake.list(names.RAW_WEATHER, ".parquet"):
        if MONTH_FILE.search(f"/{path}"):
            metadata = lake.open_parquet(path).schema_arrow.metadata or {}
            rows += json.loads(metadata.get(MANIFEST_KEY.encode(), b'{"entries": []}'))["entries"]
    frame = pd.DataFrame(rows, columns=SOURCES_SCHEMA.names)
    frame["date"] = pd.to_datetime(frame["date"]).dt.date
    frame = frame.sort_values(["product", "date", "column"])
    return pa.Table.from_pandas(frame, schema=SOURCES_SCHEMA, preserve_index=False)


WEATHER = Night(WeatherPlan, WeatherShardResult, prepare_weather, ingest_months, publish_weather)
