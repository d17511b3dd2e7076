"""``nuru-yield bench features --plots N``: feature materialization against one DuckDB query.

Builds the raw contract for N plot-seasons in progress on one date (a regular grid of
3,510 weather cells, 15 NDVI observations per plot-season, a sprinkling of bad rows and
bad observations), then times, each in a fresh process:

* the system: :func:`nuru_yield.features.materialize.materialize` (load, compute, GE validation gate,
  atomic writes), and
* the reference: one hand-written DuckDB SQL query computing the same aggregates over the
  same files and writing them to parquet (no validation, no quarantine; it finds the
  nearest cell by grid arithmetic, which only works for a regular grid).

The two outputs are compared row by row (logged), then one JSON line is printed last:
``plots, seconds, rows_per_s, peak_rss_mb, reference_s, ratio`` (= seconds / reference_s).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from nuru_yield import names
from nuru_yield.contract import CLEAR_MAX_CLOUD, NDVI_SCHEMA, PLOTS_SCHEMA
from nuru_yield.dev.bench import emit, run_isolated
from nuru_yield.features import columns as c
from nuru_yield.lake import Lake
from nuru_yield.raw_layout import write_ndvi_year

log = logging.getLogger(__name__)

RUN_DATE = dt.date(2025, 6, 30)
WEATHER_START = dt.date(2025, 1, 1)
PLANTING_FIRST, PLANTING_LAST = dt.date(2025, 3, 1), dt.date(2025, 5, 31)


@dataclass(frozen=True)
class Grid:
    """A regular weather grid: ``n_lat × n_lon`` cells ``step`` degrees apart."""

    step: float = 0.15
    lat0: float = -4.65
    lon0: float = 34.0
    n_lat: int = 65
    n_lon: int = 54


KENYA = Grid()  # 3,510 cells over Kenya
NDVI_OBS_PER_PLOT = 15
BAD_ROW_SHARE = 0.001  # per kind of bad plot row and bad observation
CHUNK_PLOTS = 500_000  # plots generated at a time: memory stays flat at any N


def build_raw(lake: Lake, plots: int, seed: int = 7, grid: Grid = KENYA) -> None:
    """Write the raw contract for ``plots`` Long Rains plot-seasons in progress on RUN_DATE,
    streaming ``CHUNK_PLOTS`` plots at a time (NDVI split into plot buckets)."""
    _write_cells_and_weather(lake, np.random.default_rng([seed, 0]), grid)
    chunks = range(0, plots, CHUNK_PLOTS)
    planting: list[np.ndarray] = []

    def plot_chunks() -> Iterator[pa.Table]:
        for start in chunks:
            rng = np.random.default_rng([seed, 1, start])
            table, dates = _plots(start, min(plots, start + CHUNK_PLOTS), rng, grid)
            planting.append(dates)
            yield table

    lake.write_parquet_batches(names.RAW_PLOTS, PLOTS_SCHEMA, plot_chunks())

    def ndvi_chunks() -> Iterator[pa.Table]:
        for start, dates in zip(chunks, planting, strict=True):
            yield _ndvi(start, dates, np.random.default_rng([seed, 2, start]))

    write_ndvi_year(lake, RUN_DATE.year, NDVI_SCHEMA, ndvi_chunks())


def _write_cells_and_weather(lake: Lake, rng: np.random.Generator, grid: Grid) -> None:
    row, col = np.meshgrid(np.arange(grid.n_lat), np.arange(grid.n_lon), indexing="ij")
    cell_id = (row * grid.n_lon + col).ravel()
    lake.write_parquet(
        names.RAW_WEATHER_CELLS,
        pa.table(
            {
                "cell_id": cell_id,
                "latitude": np.round(grid.lat0 + row.ravel() * grid.step, 6),
                "longitude": np.round(grid.lon0 + col.ravel() * grid.step, 6),
            }
        ),
    )
    n_days = (RUN_DATE - WEATHER_START).days + 1
    shape = (len(cell_id), n_days)
    precip = np.where(rng.random(shape) < 0.35, rng.gamma(0.8, 10.0, shape), 0.0)
    precip[rng.random(shape) < BAD_ROW_SHARE] = np.nan  # NaN rain days
    tmax = 27.0 + 4.0 * rng.standard_normal(shape)
    tmin = tmax - 9.0 - 3.0 * np.abs(rng.standard_normal(shape))
    day = np.datetime64(WEATHER_START) + np.arange(n_days)
    lake.write_parquet(
        names.weather_year_path(RUN_DATE.year),
        pa.table(
            {
                "cell_id": np.repeat(cell_id, n_days),
                "date": np.tile(day, len(cell_id)),
                "precip_mm": np.round(precip, 1).ravel(),
                "tmin_c": np.round(tmin, 1).ravel(),
                "tmax_c": np.round(tmax, 1).ravel(),
                "srad_mj_m2": pa.nulls(precip.size, pa.float64()),
            }
        ),
    )


def _plots(
    first: int, stop: int, rng: np.random.Generator, grid: Grid
) -> tuple[pa.Table, np.ndarray]:
    """Plot-seasons ``first + 1 … stop`` (ids) and their planting dates."""
    n = stop - first
    span = (PLANTING_LAST - PLANTING_FIRST).days + 1
    planting = np.datetime64(PLANTING_FIRST) + rng.integers(0, span, n)
    latitude = grid.lat0 + rng.random(n) * (grid.n_lat - 1) * grid.step
    plot_id = np.arange(first + 1, stop + 1, dtype=np.int64)
    bad = rng.random(n)
    latitude[bad < BAD_ROW_SHARE] = 95.0  # out of range
    plot_id[(bad >= BAD_ROW_SHARE) & (bad < 2 * BAD_ROW_SHARE)] = 1  # duplicate key
    missing_date = (bad >= 2 * BAD_ROW_SHARE) & (bad < 3 * BAD_ROW_SHARE)
    table = pa.table(
        {
            "plot_id": plot_id,
            "latitude": latitude,
            "longitude": grid.lon0 + rng.random(n) * (grid.n_lon - 1) * grid.step,
            "altitude": rng.uniform(300.0, 2800.0, n),
            "county": pa.array([f"County {k:02d}" for k in range(1, 48)]).take(
                rng.integers(0, 47, n)
            ),
            "season": pa.array(["Long Rains"] * n),
            "season_year": np.full(n, RUN_DATE.year),
            "planting_date": pa.array(planting, pa.date32(), mask=missing_date),
        },
        schema=PLOTS_SCHEMA,
    )
    return table, planting


def _ndvi(first: int, planting: np.ndarray, rng: np.random.Generator) -> pa.Table:
    """15 observations per plot (ids ``first + 1 …``), one per slice of [planting − 14 d,
    RUN_DATE] (rarely two on one day, where slices meet)."""
    n, k = len(planting), NDVI_OBS_PER_PLOT
    start = planting - np.timedelta64(14, "D")
    length = (np.datetime64(RUN_DATE) - start).astype(np.int64) + 1
    offset = ((np.arange(k) + rng.random((n, k))) * (length[:, None] / k)).astype(np.int64)
    date = start[:, None] + offset
    age = (date - planting[:, None]).astype(np.float64)
    ndvi = 0.2 + 0.6 / (1.0 + np.exp(-(age - 45.0) / 10.0)) + rng.normal(0.0, 0.04, (n, k))
    bad = rng.random((n, k))
    ndvi[bad < BAD_ROW_SHARE] = 5.0  # out of range
    ndvi[(bad >= BAD_ROW_SHARE) & (bad < 2 * BAD_ROW_SHARE)] = np.nan
    cloud = rng.beta(0.6, 1.2, (n, k))
    return pa.table(
        {
            "plot_id": np.repeat(np.arange(first + 1, first + n + 1, dtype=np.int64), k),
            "date": pa.array(date.ravel(), pa.date32()),
            "ndvi": ndvi.ravel(),
            "cloud_fraction": pa.array(cloud.ravel(), mask=rng.random(n * k) < 0.03),
        },
        schema=NDVI_SCHEMA,
    )


def reference_sql(root: Path, out: Path, season_max_days: int, grid: Grid = KENYA) -> str:
    """The hand-written baseline: every aggregate of the feature table in one query."""
    day = f"DATE '{RUN_DATE.isoformat()}'"
    start = f"DATE '{(RUN_DATE - dt.timedelta(days=season_max_days)).isoformat()}'"
    key = "plot_id, season_year, season"
    window = "cell_id, planting_date"
    row = f"round((p.latitude - {grid.lat0}) / {grid.step})"
    col = f"round((p.longitude - {grid.lon0}) / {grid.step})"
    return f"""
COPY (
WITH located AS (
    SELECT p.*, cell.cell_id
    FROM read_parquet('{root / names.RAW_PLOTS}') p
    JOIN read_parquet('{root / names.RAW_WEATHER_CELLS}') cell
      ON cell.cell_id = CAST({row} AS BIGINT) * {grid.n_lon} + CAST({col} AS BIGINT)
    WHERE p.planting_date BETWEEN {start} AND {day}
      AND {row} BETWEEN 0 AND {grid.n_lat - 1} AND {col} BETWEEN 0 AND {grid.n_lon - 1}
),
windows AS (  -- plots sharing a cell and a planting date share their weather window
    SELECT DISTINCT cell_id, planting_date FROM located
),
window_days AS (
    SELECT x.cell_id, x.planting_date, w.date, w.precip_mm, w.tmin_c, w.tmax_c,
           coalesce(isfinite(w.precip_mm)
                    AND w.precip_mm BETWEEN {c.PRECIP_RANGE_MM[0]} AND {c.PRECIP_RANGE_MM[1]},
                    false) AS p_ok,
           coalesce(w.tmin_c BETWEEN {c.TEMPERATURE_RANGE_C[0]} AND {c.TEMPERATURE_RANGE_C[1]}
                    AND w.tmax_c BETWEEN {c.TEMPERATURE_RANGE_C[0]} AND {c.TEMPERATURE_RANGE_C[1]}
                    AND w.tmin_c <= w.tmax_c, false) AS t_ok
    FROM windows x
    JOIN read_parquet('{root / names.RAW_WEATHER}/*/*.parquet') w
      ON w.cell_id = x.cell_id AND w.date BETWEEN x.planting_date AND {day}
),
ends AS (  -- the window stops on the day the crop's thermal time reaches maturity
    SELECT x.cell_id, x.planting_date, coalesce(min(t.date), {day}) AS window_end
    FROM windows x LEFT JOIN (
        SELECT {window}, date,
               sum(CASE WHEN t_ok
                        THEN CAST(floor(greatest((tmin_c + tmax_c) / 2 - {c.MATURITY_BASE_C}, 0)
                                        * {c.THERMAL_TIME_UNITS} + 0.5) AS BIGINT)
                        ELSE 0 END) OVER (PARTITION BY {window} ORDER BY date) AS thermal
        FROM window_days
    ) t ON t.cell_id = x.cell_id AND t.planting_date = x.planting_date
       AND t.thermal >= {round(c.MATURITY_THERMAL_TIME * c.THERMAL_TIME_UNITS)}
    GROUP BY x.cell_id, x.planting_date
),
daily AS (
    SELECT d.*, e.window_end FROM window_days d JOIN ends e USING ({window})
    WHERE d.date <= e.window_end
),
weather AS (
    SELECT {window},
        sum(precip_mm) FILTER (WHERE p_ok) AS precip_total,
        CASE WHEN bool_or(p_ok) THEN count(*) FILTER (WHERE p_ok AND precip_mm >= {c.RAINY_DAY_MM}) END
            AS rainy_days,
        sum(precip_mm) FILTER (WHERE p_ok AND date > window_end - {c.RECENT_DAYS})
            AS precip_last_30d,
        sum(greatest(0, (least(tmax_c, {c.GDD_CAP_C}) + greatest(tmin_c, {c.GDD_BASE_C})) / 2
                        - {c.GDD_BASE_C})) FILTER (WHERE t_ok) AS gdd_sum,
        CASE WHEN bool_or(t_ok) THEN count(*) FILTER (WHERE t_ok AND tmax_c > {c.HEAT_DAY_C}) END
            AS heat_days,
        avg(tmax_c) FILTER (WHERE t_ok) AS tmax_mean,
        count(*) FILTER (WHERE p_ok AND t_ok)
            / (date_diff('day', planting_date, any_value(window_end)) + 1) AS weather_coverage
    FROM daily GROUP BY {window}
),
dry AS (  -- gaps and islands: consecutive dry days share date - row_number()
    SELECT {window}, max(run) AS max_dry_spell_days FROM (
        SELECT {window}, count(*) AS run FROM (
            SELECT {window}, date - CAST(row_number() OVER (PARTITION BY {window} ORDER BY date)
                                         AS INTEGER) AS island
            FROM daily WHERE p_ok AND precip_mm < {c.RAINY_DAY_MM}
        ) GROUP BY {window}, island
    ) GROUP BY {window}
),
clear AS (
    SELECT l.plot_id, l.season_year, l.season, e.window_end, n.date, n.ndvi,
           lag(n.ndvi) OVER w AS previous_ndvi, lag(n.date) OVER w AS previous_date
    FROM located l
    JOIN ends e USING ({window})
    JOIN read_parquet('{root / names.RAW_NDVI}/**/*.parquet') n
      ON n.plot_id = l.plot_id AND n.date BETWEEN l.planting_date AND e.window_end
    WHERE isfinite(n.ndvi) AND n.ndvi BETWEEN -1 AND 1
      AND (n.cloud_fraction IS NULL OR n.cloud_fraction BETWEEN 0 AND {CLEAR_MAX_CLOUD})
    WINDOW w AS (PARTITION BY l.plot_id, l.season_year, l.season ORDER BY n.date, n.ndvi)
),
ndvi AS (
    SELECT {key}, avg(ndvi) AS mean_ndvi, max(ndvi) AS max_ndvi,
        coalesce(sum((greatest(ndvi - {c.NDVI_SOIL_BASELINE}, 0)
                      + greatest(previous_ndvi - {c.NDVI_SOIL_BASELINE}, 0)) / 2
                     * date_diff('day', previous_date, date)), 0) AS ndvi_auc,
        regr_slope(ndvi, date_diff('day', window_end, date))
            FILTER (WHERE date > window_end - {c.RECENT_DAYS}) AS ndvi_slope_30d,
        count(*) AS n_clear_ndvi_obs
    FROM clear GROUP BY {key}
)
SELECT l.plot_id, l.season_year, l.season, l.cell_id AS weather_cell_id,
       w.precip_total, w.rainy_days,
       CASE WHEN w.rainy_days IS NOT NULL THEN coalesce(d.max_dry_spell_days, 0) END
           AS max_dry_spell_days,
       w.precip_last_30d, w.gdd_sum, w.heat_days, w.tmax_mean, w.weather_coverage,
       n.mean_ndvi, n.max_ndvi, n.ndvi_auc, n.ndvi_slope_30d,
       coalesce(n.n_clear_ndvi_obs, 0) AS n_clear_ndvi_obs,
       date_diff('day', l.planting_date, {day}) AS days_after_planting,
       dayofyear(l.planting_date) AS planting_doy, l.altitude, l.latitude, l.longitude,
       CAST(l.season = 'Short Rains' AS DOUBLE) AS is_short_rains
FROM located l
LEFT JOIN weather w USING ({window})
LEFT JOIN dry d USING ({window})
LEFT JOIN ndvi n USING ({key})
) TO '{out}' (FORMAT parquet)
"""


def run_reference(root: str, out: str, season_max_days: int, grid: Grid = KENYA) -> None:
    """Run the reference query (in its own process, see :func:`run_isolated`)."""
    import duckdb

    with duckdb.connect() as connection:
        connection.execute(reference_sql(Path(root), Path(out), season_max_days, grid))


def run_system(lake_url: str, run_date: dt.date) -> int:
    """Materialize one date (in its own process); returns the rows written."""
    from nuru_yield.features.materialize import materialize

    return materialize(run_date, lake=Lake(lake_url)).rows


def compare(system: Path, reference: Path) -> dict[str, Any]:
    """Row-by-row agreement of the two outputs on the plot-seasons both produced."""
    import pandas as pd

    ours = pd.read_parquet(system)
    theirs = pd.read_parquet(reference)
    theirs = theirs[~theirs.duplicated(c.KEY_COLUMNS, keep=False)]
    both = ours.merge(theirs, on=c.KEY_COLUMNS, suffixes=("", "_ref"))
    same_cell = both["weather_cell_id"] == both["weather_cell_id_ref"]
    matched = both[same_cell]
    worst = {}
    for name in c.FEATURE_COLUMNS:
        a = matched[name].to_numpy(np.float64)
        b = matched[f"{name}_ref"].to_numpy(np.float64, na_value=np.nan)
        mismatch_nan = np.isnan(a) != np.isnan(b)
        diff = np.abs(np.nan_to_num(a) - np.nan_to_num(b))
        worst[name] = float(np.inf) if mismatch_nan.any() else float(diff.max(initial=0.0))
    return {
        "system_rows": len(ours),
        "reference_rows": len(theirs),
        "common_rows": len(both),
        "other_nearest_cell": int((~same_cell).sum()),
        "max_abs_diff": worst,
    }


def run(plots: int, workdir: Path | None = None, seed: int = 7) -> dict[str, Any]:
    """Build the data in a scratch space (in ``workdir``, default the system's temporary
    directory), time both sides, compare, emit the JSON line."""
    from nuru_yield.config import get_settings
    from nuru_yield.dev.scratch import scratch_space

    with scratch_space("bench features", parent=workdir) as space:
        season_max_days = get_settings().season_max_days
        lake = Lake.from_settings()
        log.info("bench features: building raw data for %d plot-seasons", plots)
        build_raw(lake, plots, seed)
        log.info("bench features: materializing %s", RUN_DATE)
        system = run_isolated(run_system, lake.url, RUN_DATE)
        log.info("bench features: reference DuckDB query")
        reference_out = space.home / "reference.parquet"
        reference = run_isolated(run_reference, str(lake.root), str(reference_out), season_max_days)
        agreement = compare(lake.root / names.features_path(RUN_DATE), reference_out)
        log.info(
            "bench features: system %.1fs (peak %.0f MB), reference %.1fs (peak %.0f MB); %s",
            system.seconds,
            system.peak_rss_mb,
            reference.seconds,
            reference.peak_rss_mb,
            agreement,
        )
    result = {
        "plots": plots,
        "seconds": round(system.seconds, 3),
        "rows_per_s": round(plots / system.seconds, 1),
        "peak_rss_mb": round(system.peak_rss_mb, 1),
        "reference_s": round(reference.seconds, 3),
        "ratio": round(system.seconds / reference.seconds, 3),
    }
    emit(result)
    return result
