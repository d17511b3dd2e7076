"""``nuru-yield bench ingest --plots N``: raw ingestion of one year of Kenya-wide CHIRPS and
AgERA5 for N plots, against bare numpy sampling of the same rasters at the same points.

Writes, in a scratch space: N plots as a GeoParquet (a 30 m square each, spread over
Kenya, with their season, planting date, altitude and county), and one year of the weather
products over a window covering Kenya (what an area request to the CHC or the CDS gives):
CHIRPS v2.0's yearly NetCDF and AgERA5's 1,095 daily NetCDFs (Tmax, Tmin, solar
radiation). Then, each in a fresh process:

* the system, as ``nuru-yield ingest all`` runs it: the plots night (the file read once
  and split by plot bucket; per bucket centroids and areas in an equal-area projection,
  checks, quarantine; raw plots and boundaries assembled), then the weather night (every
  file checked against its product and sampled at the weather cells, the months staged and
  placed, the raw weather year rebuilt) — ``INGEST_SHARDS`` shards one after the other;
* the baseline, bare numpy: the points the system published (its centroids) mapped to
  pixel rows and columns once per grid, then every file opened (netCDF4), its window read
  and indexed at every point, summed into one float64 per point and variable: no checks,
  nothing written;
* the same baseline at the weather cells' centres instead of the plots' points (each
  0.05° pixel once, as the system samples): the tighter bound.

The last line is one JSON object: ``plots, cells, files, seconds`` (the weather night),
``cpu_seconds, baseline_s, baseline_cpu_s, ratio`` (seconds / baseline_s, the baseline at
the plots' points), ``cpu_ratio``, ``cells_baseline_s, cells_ratio`` (against the baseline
at the cells), the plots night's ``plots_s, plots_cpu_s``, and the peaks: ``peak_rss_mb``
(the larger of the two nights'), ``weather_peak_rss_mb``, ``plots_peak_rss_mb``,
``baseline_peak_rss_mb``.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

import numpy as np

from nuru_yield.dev.bench import emit, run_isolated
from nuru_yield.grid import cell_id, cell_index

log = logging.getLogger(__name__)

YEAR = 2024
RUN_DATE = dt.date(YEAR, 12, 31)
# Kenya's extent (Natural Earth admin-0): where the bench's plots lie.
SOUTH, NORTH, WEST, EAST = -4.6, 4.9, 34.0, 41.8
HALF_SIDE_DEG = 0.000135  # a 30 m square
AGERA5_COLUMNS = ("tmax_c", "tmin_c", "srad_mj_m2")


def write_world(folder: Path, plots: int, seed: int = 11) -> dict[str, list[str]]:
    """The plots and one year of CHIRPS and AgERA5 over Kenya in ``folder``; the files of
    each product (as ``nuru-yield ingest`` takes them)."""
    import geopandas as gpd
    import pandas as pd
    import shapely

    from nuru_yield.sample_data import formats

    rng = np.random.default_rng(seed)
    lat = rng.uniform(SOUTH, NORTH, plots)
    lon = rng.uniform(WEST, EAST, plots)
    planting = pd.Timestamp(YEAR, 3, 1) + pd.to_timedelta(rng.integers(0, 80, plots), unit="D")
    boxes = shapely.box(lon - HALF_SIDE_DEG, lat - HALF_SIDE_DEG,
                        lon + HALF_SIDE_DEG, lat + HALF_SIDE_DEG)  # fmt: skip
    gpd.GeoDataFrame(
        {
            "PlotID": np.arange(1, plots + 1),
            "season": "Long Rains",
            "planting_date": planting.strftime("%Y-%m-%d"),
            "altitude_m": np.round(rng.uniform(900, 2200, plots), 1),
            "county": "Kenya",
        },
        geometry=boxes,
        crs="EPSG:4326",
    ).to_parquet(folder / "plots.parquet")
    # Every 0.05° pixel of the window: a dense, Kenya-wide grid of each product.
    rows, cols = cell_index(np.array([SOUTH, NORTH]), np.array([WEST, EAST]))
    grid_rows, grid_cols = np.meshgrid(
        np.arange(rows[0], rows[1] + 1), np.arange(cols[0], cols[1] + 1), indexing="ij"
    )
    ids = cell_id(grid_rows.ravel(), grid_cols.ravel())
    days = [dt.date(YEAR, 1, 1) + dt.timedelta(days=d) for d in range(366)]
    for name in ("chirps", "agera5"):
        (folder / name).mkdir(exist_ok=True)
    shape = (len(days), len(ids))
    rain = np.where(rng.random(shape) < 0.35, rng.gamma(0.8, 10.0, shape), 0.0)
    formats.write_chirps_year(folder / "chirps", YEAR, days, ids, np.round(rain, 1))
    base = {"tmax_c": 27.0, "tmin_c": 15.0, "srad_mj_m2": 20.0}
    for day in days:
        for column in AGERA5_COLUMNS:
            values = np.round(base[column] + rng.normal(0, 2, len(ids)), 1)
            formats.write_agera5_day(folder / "agera5", day, column, ids, values)
    return {
        "plots": [str(folder / "plots.parquet")],
        "chirps": [str(folder / "chirps")],
        "agera5": [str(folder / "agera5")],
    }


def run_night(night: str, lake_url: str, sources: dict[str, list[str]]) -> dict[str, Any]:
    """One of raw ingestion's nights for RUN_DATE from ``sources`` (in its own process);
    what it published."""
    from nuru_yield.lake import Lake
    from nuru_yield.nightly import run_night as run
    from nuru_yield.sources.plot_tables import PLOT_TABLES
    from nuru_yield.sources.weather import WEATHER

    step = {"plots": PLOT_TABLES, "weather": WEATHER}[night]
    return run(step, RUN_DATE, lake=Lake(lake_url), sources=sources).xcom()


def run_baseline(folder: str, lake_url: str, at: str) -> int:
    """Bare numpy sampling (in its own process): every file of the year at every point
    (``at``: ``plots``, the plots' centroids; ``cells``, the weather cells' centres); the
    number of files read."""
    import netCDF4

    from nuru_yield.lake import Lake
    from nuru_yield.names import RAW_PLOTS, RAW_WEATHER_CELLS

    table = RAW_PLOTS if at == "plots" else RAW_WEATHER_CELLS
    points = Lake(lake_url).read_parquet(table, columns=["latitude", "longitude"])
    lat = points.column("latitude").to_numpy()
    lon = points.column("longitude").to_numpy()
    sums: dict[str, np.ndarray] = {}
    files = 0
    pixels: dict[tuple[float, float], tuple[np.ndarray, np.ndarray]] = {}

    def at_points(variable: Any, lat_axis: np.ndarray, lon_axis: np.ndarray) -> np.ndarray:
        step_lat, step_lon = lat_axis[1] - lat_axis[0], lon_axis[1] - lon_axis[0]
        key = (float(lat_axis[0]), float(lon_axis[0]))
        if key not in pixels:
            pixels[key] = (
                np.rint((lat - lat_axis[0]) / step_lat).astype(np.int64),
                np.rint((lon - lon_axis[0]) / step_lon).astype(np.int64),
            )
        rows, cols = pixels[key]
        return variable[..., rows, cols]

    for path in sorted(Path(folder).rglob("*.nc")):
        with netCDF4.Dataset(path) as dataset:
            name = next(v for v in dataset.variables if v not in dataset.dimensions)
            variable = dataset.variables[name]
            variable.set_auto_mask(False)
            dims = variable.dimensions
            lat_axis = dataset.variables[dims[-2]][:]
            lon_axis = dataset.variables[dims[-1]][:]
            for step in range(variable.shape[0]):  # a day at a time (a yearly file: 366)
                values = at_points(variable[step], lat_axis, lon_axis)
                sums[name] = sums.get(name, 0.0) + values.astype(np.float64)
        files += 1
    return files


def run_bench(plots: int, workdir: Path | None = None, shards: int | None = None) -> dict[str, Any]:
    """Write the world in a scratch space (in ``workdir``, default the system's temporary
    directory), time both nights and the baseline, emit the JSON line."""
    from nuru_yield.dev.scratch import scratch_space
    from nuru_yield.lake import Lake

    extra = {"INGEST_SHARDS": str(shards)} if shards else {}
    with scratch_space("bench ingest", parent=workdir, extra=extra) as space:
        folder = space.home / "products"
        folder.mkdir()
        log.info("bench ingest: writing %d plots and a year of CHIRPS and AgERA5", plots)
        sources = write_world(folder, plots)
        lake = Lake.from_settings()
        log.info("bench ingest: the plots night")
        plot_night = run_isolated(run_night, "plots", lake.url, sources)
        log.info("bench ingest: the weather night")
        weather = run_isolated(run_night, "weather", lake.url, sources)
        log.info("bench ingest: the baselines")
        baseline = run_isolated(run_baseline, str(folder), lake.url, "plots")
        at_cells = run_isolated(run_baseline, str(folder), lake.url, "cells")
        cells = lake.open_parquet("raw/weather_cells.parquet").metadata.num_rows
    result = {
        "plots": plots,
        "cells": cells,
        "files": baseline.result,
        "seconds": round(weather.seconds, 3),
        "cpu_seconds": round(weather.cpu_seconds, 3),
        "peak_rss_mb": round(max(weather.peak_rss_mb, plot_night.peak_rss_mb), 1),
        "baseline_s": round(baseline.seconds, 3),
        "baseline_cpu_s": round(baseline.cpu_seconds, 3),
        "ratio": round(weather.seconds / baseline.seconds, 3),
        "cpu_ratio": round(weather.cpu_seconds / max(baseline.cpu_seconds, 1e-9), 3),
        "cells_baseline_s": round(at_cells.seconds, 3),
        "cells_baseline_cpu_s": round(at_cells.cpu_seconds, 3),
        "cells_ratio": round(weather.seconds / at_cells.seconds, 3),
        "cells_cpu_ratio": round(weather.cpu_seconds / max(at_cells.cpu_seconds, 1e-9), 3),
        "plots_s": round(plot_night.seconds, 3),
        "plots_cpu_s": round(plot_night.cpu_seconds, 3),
        "plots_peak_rss_mb": round(plot_night.peak_rss_mb, 1),
        "weather_peak_rss_mb": round(weather.peak_rss_mb, 1),
        "baseline_peak_rss_mb": round(baseline.peak_rss_mb, 1),
    }
    log.info(
        "bench ingest: weather %.1fs (peak %.0f MB) vs bare numpy %.1fs at the plots "
        "(%.2fx), %.1fs at the cells (%.2fx); plots %.1fs (peak %.0f MB)", weather.seconds,
        weather.peak_rss_mb, baseline.seconds, result["ratio"], at_cells.seconds,
        result["cells_ratio"], plot_night.seconds, plot_night.peak_rss_mb,
    )  # fmt: skip
    emit(result)
    return result
