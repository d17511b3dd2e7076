"""CHIRPS and AgERA5 into the raw weather, incrementally, in K shards of months: a sharded
night (:mod:`nuru_yield.nightly`).

* :func:`prepare_weather` resolves each product's files (the files given, else the
  configured source), finds the day(s) each holds and picks, per day (and AgERA5 variable),
  the file that wins (CHIRPS: final over preliminary, a daily file over the yearly one;
  AgERA5: the preferred variable, then the newest version). It compares that with what each
  month's stored part says it was built from (file, fingerprint and version per day, and the
  weather cells it was sampled at) and lists the months (of a product) with a day that is new
  or whose file changed: only those are read, spread over the shards.
* :func:`ingest_months` reads the changed days of its months at the weather cells (every
  0.05° CHIRPS pixel that holds a plot of ``raw/plots.parquet``), keeps each month's other
  days as stored, and stages the month, its manifest in the file's metadata.
* :func:`publish_weather` moves each staged month into
  ``sources/{product}/year=YYYY/month=MM.parquet``, then rebuilds
  ``raw/weather/year=YYYY/part-0.parquet`` for every year whose stored months changed since
  the file was written (rain and temperature joined on cell and day),
  ``raw/weather_cells.parquet`` and ``raw/weather_sources.parquet`` (which file and version
  each day came from). Every file is written atomically, sorted, with no time stamp, so
  ingesting the same files twice gives byte-identical raw partitions, and an ingest killed
  anywhere leaves the previous raw weather in place (a rerun finishes the job).

:data:`WEATHER` names the three steps: ``nuru-yield ingest chirps|agera5`` runs them in one
process, the ``raw_ingestion`` DAG as tasks (after the plots).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

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
class WeatherPlan(NightPlan):
    """One weather run: its products, the (product, month) units each shard reads
    (``{product}-{YYYY}-{MM}``), and counts for messages. The day-by-day plan is the prepare
    step's report (too large for XCom: thousands of AgERA5 files a year)."""

    products: list[str]
    units: list[list[str]]  # per shard
    files: dict[str, int] = field(default_factory=dict)
    days: dict[str, int] = field(default_factory=dict)
    missing: dict[str, list[str]] = field(default_factory=dict)  # see _missing_days

    STEP = "weather ingest"
    PREFIX = names.SOURCES_WEATHER

    def units_of(self, shard: int) -> list[str]:
        """The units shard ``shard`` reads."""
        return self.units[self.checked(shard)]


@dataclass(frozen=True)
class WeatherShardResult(StepResult):
    """What one shard staged: its units and the days it read, per product."""

    shard: int
    units: list[str]
    days_read: dict[str, int]


@dataclass(frozen=True)
class WeatherResult(NightResult):
    """What a run published: per product its files and the days read; the raw weather
    years rebuilt."""

    files: dict[str, int]
    days_read: dict[str, int]
    years: list[int]
    uris: list[str] = field(default_factory=list)
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
    """Which months of which product to read (see the module docstring); days after
    ``run_date`` are left for a later night. ``sources``: product → files, folders, globs or
    ``s3://`` prefixes (``nuru-yield ingest``); None: every product with a configured
    source."""
    settings = settings or get_settings()
    lake = lake or Lake.from_settings(settings)
    wanted_sources = _wanted(sources, settings)
    work: dict[str, dict[str, Any]] = {}
    files: dict[str, int] = {}
    days: dict[str, int] = {}
    missing: dict[str, list[str]] = {}
    cells_hash = _cells_hash(weather_cells(lake)) if wanted_sources else ""
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
        work |= _changed_months(lake, product, wanted, cells_hash)
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


def _balanced(work: dict[str, dict[str, Any]], shards: int) -> list[list[str]]:
    """The units spread over ``shards`` with about the same number of values to read each
    (a month of AgERA5 is three files a day, of CHIRPS one yearly file or a file a day):
    the largest unit first, each to the shard with the least so far. Each shard's units in
    order."""
    load = [0] * shards
    spread: list[list[str]] = [[] for _ in range(shards)]
    for unit in sorted(work, key=lambda unit: (-_cost(work[unit]), unit)):
        lightest = load.index(min(load))
        spread[lightest].append(unit)
        load[lightest] += _cost(work[unit])
    return [sorted(units) for units in spread]


def _cost(unit: dict[str, Any]) -> int:
    """What a unit reads: its (day, column) entries to read."""
    read = set(unit["read"])
    return sum(entry["date"] in read for entry in unit["entries"])


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


def _wanted(
    sources: Mapping[str, Sequence[str]] | None, settings: Settings
) -> dict[str, list[str]]:
    """Product → patterns: those given (products of this night only), else the configured."""
    if sources is not None:
        return {product: list(sources[product]) for product in PRODUCTS if product in sources}
    configured = {chirps.PRODUCT: settings.chirps_source, agera5.PRODUCT: settings.agera5_source}
    return {product: [source] for product, source in configured.items() if source}


def _changed_months(
    lake: Lake, product: str, wanted: dict[tuple[str, str], dict[str, str]], cells_hash: str
) -> dict[str, dict[str, Any]]:
    """Unit → the days to read and every day's entry, for each month of ``product`` with a
    day that is new or whose file changed (every day when the cells changed)."""
    by_month: dict[str, dict[tuple[str, str], dict[str, str]]] = defaultdict(dict)
    for key, entry in wanted.items():
        by_month[key[0][:7]][key] = entry
    work = {}
    for month, entries in sorted(by_month.items()):
        stored = _stored_manifest(lake, product, month)
        merged = {**stored["entries"], **entries}
        changed = {day for (day, column), entry in entries.items()
                   if stored["entries"].get((day, column)) != entry}  # fmt: skip
        if stored["cells"] != cells_hash:
            changed |= {day for day, _ in merged}
        if changed:
            work[f"{product}-{month}"] = {
                "read": sorted(changed),
                "entries": [{"date": d, "column": c, **e} for (d, c), e in sorted(merged.items())],
            }
    return work


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
        for unit in units:
            product = unit.split("-", 1)[0]
            table, read = _read_month(lake, product, unit, prepared, cells, settings)
            lake.write_parquet(plan.part(shard, unit), table.cast(stamped(table.schema, plan)))
            days_read[product] += read
    write_report(lake, plan, shard, {"units": units, "days_read": days_read})
    log.info("ingest weather shard %d/%d: %s", shard, plan.shards, ", ".join(units) or "nothing")
    return WeatherShardResult(shard, units, days_read)


def _read_month(
    lake: Lake,
    product: str,
    unit: str,
    prepared: dict[str, Any],
    cells: pd.DataFrame,
    settings: Settings,
) -> tuple[pa.Table, int]:
    """One month of ``product`` at the cells: its changed days read, its other days as
    stored, its manifest in the metadata; and how many days were read."""
    work = prepared["work"][unit]
    read = set(work["read"])
    columns = PRODUCT_COLUMNS[product]
    by_file: dict[str, list[dict[str, str]]] = defaultdict(list)
    for entry in work["entries"]:
        if entry["date"] in read:
            by_file[entry["file"]].append(entry)
    days = sorted(read)
    ids = cells["cell_id"].to_numpy(np.int64)
    grids = {column: np.full((len(days), len(ids)), np.nan) for column in columns}
    position = {day: i for i, day in enumerate(days)}
    fingerprints = {e["file"]: e["fingerprint"] for e in work["entries"]}
    for uri, entries in sorted(by_file.items()):
        source = SourceFile(uri, fingerprints[uri], 0)
        with source.local(settings) as path:
            if product == chirps.PRODUCT:
                wanted = sorted({dt.date.fromisoformat(e["date"]) for e in entries})
                found, rain = chirps.read_chirps(path, source.name, cells, wanted)
                for day, values in zip(found, rain, strict=True):
                    grids["precip_mm"][position[day.isoformat()]] = values
            else:
                file, values = agera5.read_agera5(path, source.name, cells)
                grids[file.column][position[file.day.isoformat()]] = values
    schema = _month_schema(product)
    dates = pa.array(np.repeat(np.array(days, dtype="datetime64[D]"), len(ids))).cast(pa.date32())
    fresh = pa.Table.from_arrays(
        [pa.array(np.tile(ids, len(days))), dates]
        + [pa.array(grid.ravel(), mask=np.isnan(grid.ravel())) for grid in grids.values()],
        schema=schema,
    )
    month = unit.split("-", 1)[1]
    path = names.source_month_path(product, int(month[:4]), int(month[5:]))
    kept = _stored_rows(lake, path, schema, fresh.column("date").unique(), ids)
    table = pa.concat_tables([kept, fresh]).sort_by(
        [("date", "ascending"), ("cell_id", "ascending")]
    )
    manifest = json.dumps({"cells": prepared["cells"], "entries": work["entries"]}, sort_keys=True)
    log.info("ingest %s %s: %d day(s) read, %d rows", product, month, len(days), len(table))
    return table.replace_schema_metadata({MANIFEST_KEY: manifest}), len(days)


def _month_schema(product: str) -> pa.Schema:
    return pa.schema(
        [WEATHER_SCHEMA.field("cell_id"), WEATHER_SCHEMA.field("date")]
        + [WEATHER_SCHEMA.field(column) for column in PRODUCT_COLUMNS[product]]
    )


def _stored_rows(
    lake: Lake, path: str, schema: pa.Schema, read: pa.Array, ids: np.ndarray
) -> pa.Table:
    """The stored rows of the days not read again (``read``), at the current cells only."""
    if not lake.exists(path):
        return schema.empty_table()
    stored = lake.read_parquet(path).select(schema.names).cast(schema)
    keep = pc.and_(
        pc.invert(pc.is_in(stored.column("date"), value_set=read)),
        pc.is_in(stored.column("cell_id"), value_set=pa.array(ids)),
    )
    return stored.filter(keep)


# --- publish -------------------------------------------------------------------------------
def publish_weather(
    plan: WeatherPlan,
    results: Sequence[WeatherShardResult],
    *,
    lake: Lake | None = None,
    settings: Settings | None = None,
) -> WeatherResult:
    """Move the staged months into place, then rebuild the raw weather years whose stored
    months changed, the weather cells and the day-by-day sources table (see the module
    docstring). Without a weather product, the raw weather is left as it is (a team may
    write it itself)."""
    lake = lake or Lake.from_settings(settings)
    if not plan.products:
        clear_parts(lake, plan)
        return WeatherResult(plan.run_id, plan.run_date, {}, {}, [])
    _, *reports = read_reports(lake, plan, prepare=True)
    for shard in range(plan.shards):
        for unit in plan.units_of(shard):
            product, month = unit.split("-", 1)
            place(lake, plan, shard, unit,
                  names.source_month_path(product, int(month[:4]), int(month[5:])))  # fmt: skip
    cells = weather_cells(lake)
    lake.write_parquet(names.RAW_WEATHER_CELLS, cells_table(cells))
    years = sorted(
        {
            int(path.split("year=")[1][:4])
            for product in PRODUCTS
            for path in lake.list(f"{names.SOURCES}/{product}", ".parquet")
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
    clear_parts(lake, plan)
    days_read = {
        product: sum(report["days_read"].get(product, 0) for report in reports)
        for product in plan.products
    }
    log.info("ingest weather: raw weather rebuilt for %s", rebuilt or "no year")
    return WeatherResult(
        plan.run_id, plan.run_date, plan.files, days_read, rebuilt, uris, plan.missing
    )


def _stamp(lake: Lake, parts: dict[str, list[str]]) -> str:
    """What a raw weather year is built from: each stored month's manifest."""
    digest = hashlib.sha256()
    for product, paths in sorted(parts.items()):
        for path in paths:
            metadata = lake.open_parquet(path).schema_arrow.metadata or {}
            digest.update(f"{product}:{path}:".encode() + metadata.get(MANIFEST_KEY.encode(), b""))
    return digest.hexdigest()[:32]


def _weather_year(lake: Lake, parts: dict[str, list[str]], cells: pd.DataFrame) -> pa.Table:
    """A year of raw weather: each product's stored months at the current cells, joined
    on cell and day (a column no product gave is null), sorted by day and cell."""
    ids = pa.array(cells["cell_id"].to_numpy(np.int64))
    joined: pa.Table | None = None
    for product in PRODUCTS:
        if not parts[product]:
            continue
        schema = _month_schema(product)
        table = lake.read_parquet(parts[product]).select(schema.names).cast(schema)
        table = table.filter(pc.is_in(table.column("cell_id"), value_set=ids))
        joined = (
            table
            if joined is None
            else joined.join(
                table, keys=["cell_id", "date"], join_type="full outer", coalesce_keys=True
            )
        )
    assert joined is not None, "a year without a stored month"
    columns = [
        joined.column(field.name) if field.name in joined.column_names
        else pa.nulls(joined.num_rows, field.type)
        for field in WEATHER_SCHEMA
    ]  # fmt: skip
    table = pa.Table.from_arrays(columns, schema=WEATHER_SCHEMA)
    return table.sort_by([("date", "ascending"), ("cell_id", "ascending")])


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


WEATHER = Night(WeatherPlan, WeatherShardResult, prepare_weather, ingest_months, publish_weather)
