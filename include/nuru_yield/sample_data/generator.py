"""Write the raw contract (docs/DESIGN.md, "Raw input contract") for a synthetic Kenya to the
lake, and summarise it.

Order of work, in bounded memory: plots and weather cells; daily weather year by year (each
year written as soon as it exists; one extra year is simulated, not written, so that Short
Rains crops of the last year can finish); then plot-seasons in chunks of plots, whose NDVI
scenes are written one calendar year at a time, split into plot buckets; finally plots and
harvest labels.
Every random draw comes from a generator seeded by (seed, purpose, year, season, chunk), so a
seed gives identical files whatever else changes around it.
"""

from __future__ import annotations

import collections
import datetime as dt
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from nuru_yield import names
from nuru_yield.contract import (
    CELLS_SCHEMA,
    NDVI_SCHEMA,
    PLOTS_WITH_AREA_SCHEMA,
    WEATHER_SCHEMA,
    YIELDS_SCHEMA,
)
from nuru_yield.lake import Lake
from nuru_yield.progress import track
from nuru_yield.raw_layout import write_ndvi_year
from nuru_yield.sample_data import ndvi, seasons
from nuru_yield.sample_data.counties import (
    COUNTIES,
    LONG_RAINS,
    NATIONAL_EXPECTED_T_HA,
    SEASONS,
    SHORT_RAINS,
)
from nuru_yield.sample_data.crop import load_response
from nuru_yield.sample_data.formats import RealFormats
from nuru_yield.sample_data.ndvi_rasters import SampleRasters
from nuru_yield.sample_data.weather import Anomalies, Cells, DailyWeather, simulate_year

CHUNK_PLOTS = 50_000
_EPOCH = dt.date(1970, 1, 1)
# Small shares of missing values the validation gate has to catch (nullable srad is normal).
_MISSING_PRECIP_SHARE = 0.001
_MISSING_SRAD_SHARE = 0.003


@dataclass(frozen=True)
class CountyMean:
    county: str
    zone: str
    expected_t_ha: tuple[float, float]
    mean_t_ha: float
    season_t_ha: dict[str, float]  # only the seasons the county grows
    plot_seasons: int


@dataclass
class SampleDataSummary:
    """What was written and how the simulated yields (every plot-season) came out."""

    plots: int
    start_year: int
    end_year: int
    seed: int
    files: list[tuple[str, int]] = field(default_factory=list)  # (URI, rows)
    counties: list[CountyMean] = field(default_factory=list)
    season_t_ha: dict[str, float] = field(default_factory=dict)
    year_season_t_ha: dict[tuple[int, str], float] = field(default_factory=dict)
    national_t_ha: float = float("nan")
    labelled: int = 0
    seconds: float = 0.0
    real_formats: str = ""  # where and what, when also written as the real products

    def render(self) -> str:
        lines = [
            f"sample data: {self.plots:,} plots, {self.start_year}-{self.end_year}, "
            f"seed {self.seed}, {self.seconds:.1f}s",
            "files:",
            *(f"  {uri}  {rows:,} rows" for uri, rows in self.files),
            *([f"as the real products: {self.real_formats}"] if self.real_formats else []),
            f"harvest labels: {self.labelled:,} plot-seasons",
            "mean simulated yield, t/ha (every plot-season, all years):",
            f"  {'county':<15}{'zone':<20}{'expected':>10}{'mean':>7}{'LR':>7}{'SR':>7}",
        ]
        for c in self.counties:
            lr, sr = (c.season_t_ha.get(s) for s in SEASONS)
            lines.append(
                f"  {c.county:<15}{c.zone:<20}{_range(c.expected_t_ha):>10}{c.mean_t_ha:>7.2f}"
                f"{_fmt(lr):>7}{_fmt(sr):>7}"
            )
        lines.append(
            f"  {'national':<35}{_range(NATIONAL_EXPECTED_T_HA):>10}{self.national_t_ha:>7.2f}"
            f"{_fmt(self.season_t_ha.get(LONG_RAINS)):>7}"
            f"{_fmt(self.season_t_ha.get(SHORT_RAINS)):>7}"
        )
        by_year = "  ".join(
            f"{year} {''.join(w[0] for w in season.split())} {value:.2f}"
            for (year, season), value in sorted(self.year_season_t_ha.items())
        )
        lines.append(f"by season: {by_year}")
        return "\n".join(lines)


def _range(bounds: tuple[float, float]) -> str:
    return f"{bounds[0]:.1f}-{bounds[1]:.1f}"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _rng(seed: int, *stream: int) -> np.random.Generator:
    """The generator of one purpose/year/season/chunk stream (any int seed, negatives too)."""
    return np.random.default_rng([seed % 2**64, *stream])


def _dates(history_day: np.ndarray, first_day: dt.date) -> pa.Array:
    epoch_day = history_day + (first_day - _EPOCH).days
    return pa.array(epoch_day.astype(np.int32), type=pa.date32())


def _with_nulls(values: np.ndarray, missing: np.ndarray) -> pa.Array:
    return pa.array(values, type=pa.float64(), mask=missing)


def _weather_table(weather: DailyWeather, cells: Cells, rng: np.random.Generator) -> pa.Table:
    days, n_cells = weather.precip_mm.shape
    first = dt.date(weather.year, 1, 1)
    rows = days * n_cells
    return pa.table(
        {
            "cell_id": np.tile(cells.cell_id, days),
            "date": _dates(np.repeat(np.arange(days), n_cells), first),
            "precip_mm": _with_nulls(
                np.round(weather.precip_mm.ravel(), 1), rng.random(rows) < _MISSING_PRECIP_SHARE
            ),
            "tmin_c": np.round(weather.tmin_c.ravel(), 1),
            "tmax_c": np.round(weather.tmax_c.ravel(), 1),
            "srad_mj_m2": _with_nulls(
                np.round(weather.srad_mj_m2.ravel(), 1), rng.random(rows) < _MISSING_SRAD_SHARE
            ),
        },
        schema=WEATHER_SCHEMA,
    )


def _strings(index: np.ndarray, names: list[str]) -> pa.Array:
    return pa.DictionaryArray.from_arrays(pa.array(index, type=pa.int32()), pa.array(names)).cast(
        pa.string()
    )


def generate_to_lake(
    lake: Lake,
    *,
    plots: int,
    start_year: int,
    end_year: int,
    seed: int,
    label_share: float = 0.7,
    label_last_year: bool = False,
    real_formats: Path | None = None,
    raw_contract: bool = True,
) -> SampleDataSummary:
    """Generate the raw inputs for ``plots`` plots over ``start_year``–``end_year``.

    Harvest labels go to a random ``label_share`` of plot-seasons; the seasons of
    ``end_year`` are in progress and get none unless ``label_last_year``. With
    ``real_formats``, the same world is also written there as the real products
    (:class:`~nuru_yield.sample_data.formats.RealFormats`; its NDVI as composites and
    Sentinel-2-like scenes: :class:`~nuru_yield.sample_data.ndvi_rasters.SampleRasters`)
    for ``nuru-yield ingest``; with ``raw_contract=False`` as well, only there: everything
    reaches the lake through the adapters (the demo's real path).
    """
    if plots < 1 or end_year < start_year or not 0.0 <= label_share <= 1.0:
        raise ValueError("need plots >= 1, end_year >= start_year and 0 <= label_share <= 1")
    if not raw_contract and real_formats is None:
        raise ValueError("without the raw contract, the real formats are the only output")
    started = time.monotonic()
    summary = SampleDataSummary(plots, start_year, end_year, seed)
    plot_table, cells = seasons.make_plots(plots, _rng(seed, 0))
    write = _writer(lake, summary, raw_contract)
    write(0, names.RAW_WEATHER_CELLS, _cells_table(cells))

    areas = seasons.plot_areas(plots, _rng(seed, 9))
    real = RealFormats(real_formats, end_year) if real_formats is not None else None
    rasters = (
        SampleRasters(
            real_formats, plot_table.plot_id, plot_table.longitude, plot_table.latitude,
            plot_table.county, areas, end_year,
        )
        if real_formats is not None
        else None
    )  # fmt: skip
    history = _write_weather(cells, summary, seed, real, write)
    run = _SeasonRun(plot_table, history, seed)
    for year in range(start_year, end_year + 1):
        tables = run.scenes(year) if rasters is None else rasters.year(year, run.scenes(year))
        if not raw_contract:  # the NDVI reaches the lake through its rasters only
            collections.deque(tables, maxlen=0)
            continue
        buckets = write_ndvi_year(lake, year, NDVI_SCHEMA, tables)
        summary.files.append(
            (lake.uri(names.ndvi_year_dir(year)), sum(rows for _, rows in buckets))
        )
    blocks = run.blocks
    plot_seasons = _plots_table(blocks, plot_table, history, areas)
    write(0, names.RAW_PLOTS, plot_seasons)
    labels = _labels(
        blocks, plot_table.plot_id, end_year, label_share, label_last_year, _rng(seed, 7)
    )
    write(len(summary.files), names.RAW_YIELDS, labels)
    if real is not None and rasters is not None:
        real.plots(plot_seasons)
        real.labels(labels, _rng(seed, 8))
        summary.real_formats = f"{real.describe()}, {rasters.describe()}"
    summary.labelled = labels.num_rows
    _summarise_yields(blocks, plot_table, summary)
    summary.seconds = time.monotonic() - started
    return summary


def _writer(
    lake: Lake, summary: SampleDataSummary, raw_contract: bool
) -> Callable[[int, str, pa.Table], None]:
    """What writes a raw-contract table to the lake and lists it at a place in the summary
    (nothing without ``raw_contract``)."""

    def write(place: int, path: str, table: pa.Table) -> None:
        if raw_contract:
            summary.files.insert(place, _write(lake, path, table))

    return write


def _write_weather(
    cells: Cells,
    summary: SampleDataSummary,
    seed: int,
    real: RealFormats | None,
    write: Callable[[int, str, pa.Table], None],
) -> seasons.WeatherHistory:
    """Simulate and write each year's weather; keep rain and temperature for the seasons.

    One year beyond ``end_year`` is simulated but not written: the last Short Rains crops
    need it to finish.
    """
    first, last = summary.start_year, summary.end_year
    spread = np.array([county.rain.anomaly_sd for county in COUNTIES])
    anomalies = Anomalies.draw(_rng(seed, 1), range(first - 1, last + 2), spread)
    climates = [county.rain for county in COUNTIES]
    years = []
    for year in track(range(first, last + 2), "weather, by year"):
        weather = simulate_year(cells, climates, anomalies, year, _rng(seed, 2, year))
        if year <= last:
            table = _weather_table(weather, cells, _rng(seed, 3, year))
            write(len(summary.files), names.weather_year_path(year), table)
            if real is not None:
                real.weather(year, table)
        years.append(weather)
    return seasons.WeatherHistory(years)


@dataclass
class _SeasonRun:
    """Simulates plot-seasons chunk by chunk and streams their NDVI, one year at a time.

    Short Rains crops run into the next year: their scenes after New Year are carried over
    into that year's file (those after the last year are dropped).
    """

    plots: seasons.Plots
    history: seasons.WeatherHistory
    seed: int
    blocks: list[seasons.SeasonBlock] = field(default_factory=list)
    carried: list[pa.Table] = field(default_factory=list)
    last_scene: np.ndarray = field(init=False)  # per plot, day of its latest scene so far

    def __post_init__(self) -> None:
        self.last_scene = np.full(len(self.plots), np.iinfo(np.int64).min // 2)

    def scenes(self, year: int) -> Iterator[pa.Table]:
        """NDVI tables of calendar year ``year``; simulates that year's seasons on the way."""
        carried, self.carried = self.carried, []
        yield from carried
        bimodal = np.array([county.short_rains for county in COUNTIES])
        members = {
            LONG_RAINS: np.arange(len(self.plots)),
            SHORT_RAINS: np.flatnonzero(bimodal[self.plots.county]),
        }
        tasks = [
            (s, season, chunk)
            for s, season in enumerate(SEASONS)
            for chunk in range(0, len(members[season]), CHUNK_PLOTS)
        ]
        effects = [seasons.county_effects(_rng(self.seed, 4, year, s)) for s in range(2)]
        boundary = self.history.day(dt.date(year + 1, 1, 1))
        for s, season, chunk in track(tasks, f"plot-seasons and NDVI, {year}"):
            block, canopy = seasons.simulate_season(
                self.plots,
                members[season][chunk : chunk + CHUNK_PLOTS],
                season,
                year,
                self.history,
                load_response(),
                effects[s],
                _rng(self.seed, 5, year, s, chunk),
            )
            self.blocks.append(block)
            observed = ndvi.observe(
                block,
                canopy,
                self.plots,
                self.history,
                _rng(self.seed, 6, year, s, chunk),
                not_before=self.last_scene[block.plot] + ndvi.MIN_REVISIT_DAYS,
            )
            np.maximum.at(self.last_scene, observed.plot, observed.day)
            in_year = observed.day < boundary
            self.carried.append(self._ndvi_table(observed, ~in_year))
            yield self._ndvi_table(observed, in_year)

    def _ndvi_table(self, scenes: ndvi.Observations, keep: np.ndarray) -> pa.Table:
        cloud = scenes.cloud_fraction[keep]
        return pa.table(
            {
                "plot_id": self.plots.plot_id[scenes.plot[keep]],
                "date": _dates(scenes.day[keep], self.history.first_day),
                "ndvi": np.round(scenes.ndvi[keep], 4),
                "cloud_fraction": _with_nulls(cloud, np.isnan(cloud)),
            },
            schema=NDVI_SCHEMA,
        )


def _cells_table(cells: Cells) -> pa.Table:
    return pa.table(
        {"cell_id": cells.cell_id, "latitude": cells.latitude, "longitude": cells.longitude},
        schema=CELLS_SCHEMA,
    )


def _plots_table(
    blocks: list[seasons.SeasonBlock],
    plot_table: seasons.Plots,
    history: seasons.WeatherHistory,
    areas: np.ndarray,
) -> pa.Table:
    """The plot-season rows of the contract, with each plot's ``area_ha``."""
    plot = np.concatenate([b.plot for b in blocks])
    season = np.concatenate([np.full(len(b.plot), SEASONS.index(b.season)) for b in blocks])
    return pa.table(
        {
            "plot_id": plot_table.plot_id[plot],
            "latitude": np.round(plot_table.latitude[plot], 6),
            "longitude": np.round(plot_table.longitude[plot], 6),
            "altitude": np.round(plot_table.altitude[plot], 1),
            "county": _strings(plot_table.county[plot], [c.name for c in COUNTIES]),
            "season": _strings(season, list(SEASONS)),
            "season_year": np.concatenate([np.full(len(b.plot), b.season_year) for b in blocks]),
            "planting_date": _dates(
                np.concatenate([b.planting_day for b in blocks]), history.first_day
            ),
            "area_ha": areas[plot],
        },
        schema=PLOTS_WITH_AREA_SCHEMA,
    )


def _labels(
    blocks: list[seasons.SeasonBlock],
    plot_ids: np.ndarray,
    end_year: int,
    share: float,
    last_year: bool,
    rng: np.random.Generator,
) -> pa.Table:
    """Harvest yields of a random ``share`` of finished plot-seasons."""
    tables = []
    for block in blocks:
        if block.season_year == end_year and not last_year:
            continue
        keep = rng.random(len(block.plot)) < share
        n = int(keep.sum())
        tables.append(
            pa.table(
                {
                    "plot_id": plot_ids[block.plot[keep]],
                    "season": pa.array([block.season] * n, type=pa.string()),
                    "season_year": np.full(n, block.season_year, dtype=np.int64),
                    "yield_kg_per_ha": block.yield_kg_ha[keep],
                },
                schema=YIELDS_SCHEMA,
            )
        )
    return pa.concat_tables(tables) if tables else YIELDS_SCHEMA.empty_table()


def _summarise_yields(
    blocks: list[seasons.SeasonBlock], plot_table: seasons.Plots, summary: SampleDataSummary
) -> None:
    import pandas as pd

    frame = pd.DataFrame(
        {
            "county": np.concatenate([plot_table.county[b.plot] for b in blocks]),
            "season": np.concatenate([np.full(len(b.plot), b.season) for b in blocks]),
            "year": np.concatenate([np.full(len(b.plot), b.season_year) for b in blocks]),
            "t_ha": np.concatenate([b.yield_kg_ha for b in blocks]) / 1000.0,
        }
    )
    summary.national_t_ha = float(frame["t_ha"].mean())
    summary.season_t_ha = frame.groupby("season")["t_ha"].mean().to_dict()
    summary.year_season_t_ha = frame.groupby(["year", "season"])["t_ha"].mean().to_dict()
    by_county = frame.groupby("county")["t_ha"].agg(["mean", "size"])
    by_county_season = frame.groupby(["county", "season"])["t_ha"].mean()
    for index, row in by_county.iterrows():
        county = COUNTIES[index]
        summary.counties.append(
            CountyMean(
                county=county.name,
                zone=county.zone.name,
                expected_t_ha=county.zone.expected_t_ha,
                mean_t_ha=float(row["mean"]),
                season_t_ha=by_county_season.loc[index].to_dict(),
                plot_seasons=int(row["size"]),
            )
        )


def _write(lake: Lake, path: str, table: pa.Table) -> tuple[str, int]:
    return lake.write_parquet(path, table), table.num_rows
