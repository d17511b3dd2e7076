"""``nuru-yield bench ingest --ndvi --plots N``: NDVI from rasters against bare exactextract.

Builds, in a scratch space: N plot polygons over Kenya (quadrilaterals of 0.1–2 ha, median
0.4 ha, in WGS84) as the raw contract's plots and ``raw/plot_geometries.parquet``; one
16-day MOD13Q1 composite over Kenya as the four sinusoidal tiles that cover it (h21v08,
h21v09, h22v08, h22v09: 4,800 × 4,800 int16 NDVI and pixel reliability, tiled and
compressed COGs, with cloud, marginal and fill pixels); and one Sentinel-2 L2A scene
(B04/B08 10,980 × 10,980 at 10 m, SCL at 20 m, UTM 37S, with cloud, shadow, water and a
no-data swath edge) in a static STAC catalog. Then it times, each in a fresh process:

* the system as the ``raw_ingestion`` DAG runs it: the NDVI night's prepare (which reads
  each composite whole to check it), each of K shards (a range of plot buckets) and
  publish, each in a process of its own: seconds and peak memory of each;
* the system for all plots in one process (``nuru-yield ingest ndvi --shards 1``);
* the bare baseline: rasterio reads the same two bands of each tile, numpy masks fill and
  unreliable pixels, PROJ projects the polygons, exactextract gives each one's clear area
  and NDVI sum (:func:`nuru_yield.sources.ndvi_rasters.coverage_sums`: the cheapest way to
  drive it, WKB in, arrays out); no manifest, no quarantine, no mosaic, no rows written;
* one Sentinel-2 scene through the catalog (system) and the same bare steps on its three
  files (B04/B08 at 10 m, SCL repeated onto the 10 m grid): seconds per scene.

The rows are compared with the bare means and cloud fractions (logged, and in the output).
The last line printed is one JSON object: ``plots``, ``shards``, ``modis`` (wall and CPU
``seconds``/``cpu_s``, ``peak_mb`` and the bare's ``bare_s``/``bare_cpu_s``/
``bare_peak_mb``, ``ratio`` and ``cpu_ratio``; per shard ``shard_seconds``, ``shard_cpu_s``,
``shard_peak_mb``, ``prepare_s``, ``publish_s``, and the night's sum over the bare's,
``shards_ratio``/``shards_cpu_ratio``),
``sentinel2`` (``plots_in_scene`` and the same timings for one scene) and ``agreement``.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from nuru_yield import names
from nuru_yield.contract import PLOTS_SCHEMA
from nuru_yield.dev.bench import emit, run_isolated
from nuru_yield.lake import Lake

log = logging.getLogger(__name__)

FIRST_DAY = dt.date(2025, 6, 10)  # MOD13Q1 period 2025-161: 10-25 June
RUN_DATE = dt.date(2025, 6, 30)  # the night: the composite and the scene are before it
KENYA = (34.0, -4.6, 41.0, 4.6)  # west, south, east, north: where the plots are
MODIS_TILES = ((21, 8), (21, 9), (22, 8), (22, 9))
S2_CRS = "EPSG:32737"
S2_X0, S2_Y0 = 199_980.0, 10_000_000.0  # a Sentinel-2 tile corner (UTM 37S, Nyeri)
S2_PIXELS = 10_980
S2_WHEN = dt.datetime(2025, 6, 14, 7, 55, tzinfo=dt.UTC)
CHUNK = 250_000  # plots generated at a time
HIGHLANDS_SHARE = 0.1


def plot_polygons(
    first: int, n: int, seed: int, s2_pixels: int = S2_PIXELS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Plots ``first + 1 … first + n``: their centres (lon, lat) and polygons (WGS84):
    quadrilaterals of 0.1–2 ha (median 0.4 ha), turned and a little irregular; one in
    ``HIGHLANDS_SHARE`` in the Sentinel-2 scene's footprint (dense maize country), the
    others anywhere over Kenya."""
    import shapely
    from pyproj import Transformer

    rng = np.random.default_rng([seed, first])
    west, south, east, north = KENYA
    lon = rng.uniform(west, east, n)
    lat = rng.uniform(south, north, n)
    back = Transformer.from_crs(S2_CRS, "EPSG:4326", always_xy=True)
    edge = 10.0 * s2_pixels
    (s2_west, s2_east), (s2_south, s2_north) = back.transform(
        [S2_X0 + 100, S2_X0 + edge - 100], [S2_Y0 - edge + 100, S2_Y0 - 100]
    )
    dense = rng.random(n) < HIGHLANDS_SHARE
    lon[dense] = rng.uniform(s2_west, s2_east, dense.sum())
    lat[dense] = rng.uniform(s2_south, s2_north, dense.sum())
    side = np.sqrt(np.clip(rng.lognormal(np.log(4_000.0), 0.5, n), 1_000.0, 20_000.0))
    angle = rng.uniform(0.0, np.pi / 2, n)
    corners = []
    for k in range(4):
        radius = side / np.sqrt(2) * rng.uniform(0.85, 1.15, n)
        turn = angle + np.pi / 4 + k * np.pi / 2
        dx, dy = radius * np.cos(turn), radius * np.sin(turn)
        corners.append(
            np.column_stack(
                [lon + dx / (111_320.0 * np.cos(np.radians(lat))), lat + dy / 111_320.0]
            )
        )
    rings = np.stack([*corners, corners[0]], axis=1)
    return lon, lat, shapely.polygons(rings)


def build_plots(lake: Lake, plots: int, seed: int, s2_pixels: int = S2_PIXELS) -> None:
    """``raw/plots.parquet`` and ``raw/plot_geometries.parquet`` for ``plots`` plots."""
    import shapely

    tables, shapes = [], []
    for first in range(0, plots, CHUNK):
        n = min(CHUNK, plots - first)
        lon, lat, polygons = plot_polygons(first, n, seed, s2_pixels)
        ids = np.arange(first + 1, first + n + 1, dtype=np.int64)
        tables.append(
            pa.table(
                {
                    "plot_id": ids,
                    "latitude": lat,
                    "longitude": lon,
                    "altitude": np.full(n, 1500.0),
                    "county": pa.array(["Nyeri"] * n),
                    "season": pa.array(["Long Rains"] * n),
                    "season_year": np.full(n, FIRST_DAY.year),
                    "planting_date": pa.array(np.full(n, np.datetime64("2025-03-25")), pa.date32()),
                },
                schema=PLOTS_SCHEMA,
            )
        )
        shapes.append(pa.table({"plot_id": ids, "geometry": shapely.to_wkb(polygons)}))
    lake.write_parquet(names.RAW_PLOTS, pa.concat_tables(tables))
    lake.write_parquet(names.RAW_PLOT_GEOMETRIES, pa.concat_tables(shapes))


def _field(rng: np.random.Generator, shape: tuple[int, int], cell: int) -> np.ndarray:
    """A smooth random field in 0…1: noise on a coarse grid, repeated to ``shape``."""
    coarse = rng.random((-(-shape[0] // cell), -(-shape[1] // cell)), dtype=np.float32)
    return np.repeat(np.repeat(coarse, cell, axis=0), cell, axis=1)[: shape[0], : shape[1]]


def build_modis(folder: Path, seed: int) -> list[str]:
    """The four tiles of one composite over Kenya; their paths."""
    from nuru_yield.sample_data.ndvi_rasters import modis_name, write_modis_composite
    from nuru_yield.sources.modis import TILE_PIXELS, tile_transform

    paths = []
    shape = (TILE_PIXELS, TILE_PIXELS)
    for h, v in MODIS_TILES:
        rng = np.random.default_rng([seed, h, v])
        ndvi = 0.15 + 0.7 * _field(rng, shape, 40) + rng.normal(0, 0.03, shape).astype(np.float32)
        dn = np.clip(np.rint(ndvi * 10_000), -2000, 10_000).astype(np.int16)
        reliability = np.where(_field(rng, shape, 25) < 0.15, 3, 0).astype(np.int16)
        reliability[rng.random(shape) < 0.05] = 1  # marginal: clear
        if (h, v) == (22, 9):  # the Indian Ocean: fill
            dn[1200:, 2400:] = -3000
            reliability[1200:, 2400:] = -1
        path = folder / modis_name(FIRST_DAY, h, v)
        paths.append(str(write_modis_composite(path, dn, reliability, tile_transform(h, v))))
    return paths


def build_sentinel2(folder: Path, seed: int, pixels: int = S2_PIXELS) -> str:
    """One L2A scene (``pixels`` a side at 10 m) in a static STAC catalog; the catalog's
    path."""
    from nuru_yield.sample_data.ndvi_rasters import (
        s2_dn,
        write_s2_item,
        write_stac_catalog,
    )

    rng = np.random.default_rng([seed, 2])
    shape = (pixels, pixels)
    red = s2_dn(0.03 + 0.1 * _field(rng, shape, 64))
    nir = s2_dn(0.2 + 0.3 * _field(rng, shape, 64))
    half = (pixels // 2, pixels // 2)
    scl = np.full(half, 4, np.uint8)  # vegetation
    cover = _field(rng, half, 40)
    scl[cover < 0.12] = 9  # cloud
    scl[(cover >= 0.12) & (cover < 0.16)] = 3  # cloud shadow
    scl[(cover >= 0.16) & (cover < 0.2)] = 5  # bare soil
    scl[cover > 0.98] = 6  # water
    rows = np.arange(half[0])[:, None]
    edge = np.arange(half[1])[None, :] < (half[1] // 6 + rows // 8)  # the swath's edge
    scl[edge] = 0
    red[np.repeat(np.repeat(edge, 2, axis=0), 2, axis=1)[:pixels, :pixels]] = 0
    item = write_s2_item(
        folder / "s2", f"S2A_T37MBU_{S2_WHEN:%Y%m%d}_0_L2A", red, nir, scl,
        crs=S2_CRS, x0=S2_X0, y0=S2_Y0, when=S2_WHEN,
    )  # fmt: skip
    return str(write_stac_catalog(folder / "stac", [item], "bench scenes"))


# --- the timed parts (module-level: run in fresh processes) ---------------------------------
def system_modis(lake_url: str, paths: list[str]) -> dict[str, Any]:
    """The whole night on the composite, every plot in this one process."""
    from nuru_yield.sources.ndvi import ingest_ndvi

    return ingest_ndvi(paths, lake=Lake(lake_url), run_date=RUN_DATE, shards=1).xcom()


def system_prepare(lake_url: str, paths: list[str], shards: int) -> dict[str, Any]:
    """The night's prepare step (the raw_ingestion DAG's ``ndvi.prepare``)."""
    from nuru_yield.sources.ndvi import prepare_ndvi

    plan = prepare_ndvi(RUN_DATE, lake=Lake(lake_url), shards=shards, sources={"ndvi": paths})
    return plan.xcom()


def system_shard(lake_url: str, plan: dict[str, Any], shard: int) -> dict[str, Any]:
    """One shard of the night (``ndvi.ingest_buckets``)."""
    from nuru_yield.sources.ndvi import NdviPlan, ingest_ndvi_shard

    return ingest_ndvi_shard(NdviPlan.from_xcom(plan), shard, lake=Lake(lake_url)).xcom()


def system_publish(
    lake_url: str, plan: dict[str, Any], results: list[dict[str, Any]]
) -> dict[str, Any]:
    """The night's publish step (``ndvi.publish``)."""
    from nuru_yield.sources.ndvi import NdviPlan, NdviShardResult, publish_ndvi

    done = [NdviShardResult.from_xcom(result) for result in results]
    return publish_ndvi(NdviPlan.from_xcom(plan), done, lake=Lake(lake_url)).xcom()


def system_sentinel2(lake_url: str, catalog: str) -> dict[str, Any]:
    """The night on the STAC catalog's scene, every plot in this one process."""
    from nuru_yield.sample_data.ndvi_rasters import S2_COLLECTION
    from nuru_yield.sources.ndvi import ingest_ndvi

    return ingest_ndvi(
        stac=catalog, collection=S2_COLLECTION, lake=Lake(lake_url), run_date=RUN_DATE, shards=1
    ).xcom()


def _forget(lake: Lake) -> None:
    """Remove what a night wrote (raw NDVI and ledgers), so that the next one computes."""
    for prefix in (names.RAW_NDVI, names.SOURCES_NDVI):
        for path in lake.list(prefix):
            lake.delete(path)


def _bare_polygons(geometries: str) -> tuple[np.ndarray, np.ndarray]:
    import pyarrow.parquet as pq
    import shapely

    table = pq.read_table(geometries)
    ids = table.column("plot_id").to_numpy()
    return ids, shapely.from_wkb(table.column("geometry").to_numpy(zero_copy_only=False))


def _bare_window(dataset: Any, shapes: np.ndarray, multiple: int = 1) -> Any:
    """The window of ``dataset`` holding the polygons (in its CRS) that meet it, in whole
    blocks of ``multiple`` pixels; None when none does."""
    import shapely
    from rasterio.windows import Window

    box = shapely.bounds(shapes)
    left, bottom, right, top = dataset.bounds
    meet = (box[:, 2] >= left) & (box[:, 0] <= right) & (box[:, 3] >= bottom) & (box[:, 1] <= top)
    if not meet.any():
        return None
    t = dataset.transform
    col0 = math.floor((box[meet, 0].min() - t.c) / t.a) // multiple * multiple
    row0 = math.floor((box[meet, 3].max() - t.f) / t.e) // multiple * multiple
    col1 = -(-math.ceil((box[meet, 2].max() - t.c) / t.a) // multiple) * multiple
    row1 = -(-math.ceil((box[meet, 1].min() - t.f) / t.e) // multiple) * multiple
    col0, row0 = max(col0, 0), max(row0, 0)
    col1, row1 = min(col1, dataset.width), min(row1, dataset.height)
    return Window(col0, row0, col1 - col0, row1 - row0)


def _bare_extract(
    shapes: np.ndarray, ndvi: np.ndarray, transform: Any, clear: np.ndarray, total: np.ndarray
) -> None:
    """Add one raster's clear area and NDVI sum to each polygon's (in its CRS)."""
    import shapely

    from nuru_yield.sources.ndvi_rasters import coverage_sums

    height, width = ndvi.shape
    bounds = (transform.c, transform.f + transform.e * height, transform.c + transform.a * width,
              transform.f)  # fmt: skip
    box = shapely.bounds(shapes)
    inside = np.flatnonzero(
        (box[:, 2] >= bounds[0]) & (box[:, 0] <= bounds[2])
        & (box[:, 3] >= bounds[1]) & (box[:, 1] <= bounds[3])
    )  # fmt: skip
    count, value = coverage_sums(ndvi, bounds, shapely.to_wkb(shapes[inside]))
    clear[inside] += count
    total[inside] += value


def bare_modis(geometries: str, paths: list[str]) -> dict[str, np.ndarray]:
    """The bare baseline on the composite: per plot id, mean NDVI and cloud fraction. Each
    tile is read over the window holding its plots, as the system reads it."""
    import rasterio
    import shapely

    from nuru_yield.sources.ndvi_rasters import project

    ids, polygons = _bare_polygons(geometries)
    clear, total = np.zeros(len(ids)), np.zeros(len(ids))
    shapes = None
    for path in paths:
        with rasterio.open(path) as dataset:
            if shapes is None:  # the tiles share the sinusoidal CRS
                shapes = project(polygons, dataset.crs)
            window = _bare_window(dataset, shapes)
            if window is None:
                continue
            dn, reliability = dataset.read(1, window=window), dataset.read(2, window=window)
            transform = dataset.window_transform(window)
        ndvi = dn.astype(np.float32) * np.float32(1e-4)
        ndvi[(dn == -3000) | (reliability < 0) | (reliability > 1)] = np.nan
        _bare_extract(shapes, ndvi, transform, clear, total)
    assert shapes is not None
    area = shapely.area(shapes) / (transform.a * -transform.e)
    return _bare_rows(ids, clear, total, area)


def bare_sentinel2(geometries: str, catalog: str) -> dict[str, np.ndarray]:
    """The bare baseline on the scene: its three files read over the plots' window, NDVI
    where SCL is 4–7 (SCL's 20 m pixels repeated onto the 10 m grid)."""
    import pystac
    import rasterio
    import shapely

    from nuru_yield.sources.ndvi_rasters import project

    ids, polygons = _bare_polygons(geometries)
    [item] = pystac.Catalog.from_file(catalog).get_items(recursive=True)
    href = {key: item.assets[key].get_absolute_href() for key in ("B04", "B08", "SCL")}
    with rasterio.open(href["B04"]) as dataset:
        west, south, east, north = item.bbox
        near = shapely.intersects(polygons, shapely.box(west, south, east, north))
        ids, polygons = ids[near], polygons[near]
        shapes = project(polygons, dataset.crs)
        window = _bare_window(dataset, shapes, multiple=2)  # whole 20 m SCL pixels
        if window is None:
            return _bare_rows(ids[:0], np.zeros(0), np.zeros(0), np.ones(0))
        red = dataset.read(1, window=window)
        transform = dataset.window_transform(window)
    with rasterio.open(href["B08"]) as dataset:
        nir = dataset.read(1, window=window)
    with rasterio.open(href["SCL"]) as dataset:
        half = rasterio.windows.Window(
            window.col_off // 2, window.row_off // 2, -(-window.width // 2), -(-window.height // 2)
        )
        scl = dataset.read(1, window=half)
    scl = np.repeat(np.repeat(scl, 2, axis=0), 2, axis=1)[: red.shape[0], : red.shape[1]]
    r = (red.astype(np.float32) - 1000) / 10_000
    n = (nir.astype(np.float32) - 1000) / 10_000
    with np.errstate(invalid="ignore", divide="ignore"):
        ndvi = (n - r) / (n + r)
    ndvi[(red == 0) | (nir == 0) | (scl < 4) | (scl > 7) | ~(np.abs(ndvi) <= 1)] = np.nan
    clear, total = np.zeros(len(ids)), np.zeros(len(ids))
    _bare_extract(shapes, ndvi, transform, clear, total)
    area = shapely.area(shapes) / (transform.a * -transform.e)
    return _bare_rows(ids, clear, total, area)


def _bare_rows(
    ids: np.ndarray, clear: np.ndarray, total: np.ndarray, area: np.ndarray
) -> dict[str, np.ndarray]:
    seen = clear > 0
    return {
        "plot_id": ids[seen],
        "ndvi": total[seen] / clear[seen],
        "cloud_fraction": np.clip(1.0 - clear[seen] / area[seen], 0.0, 1.0),
    }


def agreement(lake: Lake, product: str, bare: dict[str, np.ndarray]) -> dict[str, Any]:
    """The system's rows of ``product`` against the bare means (plots clear enough to have
    an NDVI in both) and cloud fractions."""
    import pyarrow.dataset as ds

    files = [
        str(lake.root / path)
        for path in lake.list(names.RAW_NDVI, ".parquet")
        if path.rsplit("/", 1)[-1].startswith(product)
    ]
    rows = ds.dataset(files, format="parquet").to_table().sort_by("plot_id")
    ids = rows.column("plot_id").to_numpy()
    where = np.searchsorted(bare["plot_id"], ids)
    found = (where < len(bare["plot_id"])) & (
        bare["plot_id"][np.minimum(where, len(bare["plot_id"]) - 1)] == ids
    )
    ndvi = rows.column("ndvi").to_numpy(zero_copy_only=False)
    both = found & np.isfinite(ndvi.astype(np.float64))
    cloud = rows.column("cloud_fraction").to_numpy()
    return {
        "rows": len(ids),
        "bare_rows": len(bare["plot_id"]),
        "compared": int(both.sum()),
        "max_abs_ndvi_diff": float(
            np.abs(ndvi[both].astype(np.float64) - bare["ndvi"][where[both]]).max(initial=0.0)
        ),
        "max_abs_cloud_diff": float(
            np.abs(cloud[found] - bare["cloud_fraction"][where[found]]).max(initial=0.0)
        ),
    }


def _timing(system: Any, bare: Any) -> dict[str, float]:
    """Wall and CPU seconds and peak memory of the system and the bare baseline, and their
    ratios (CPU: what a busy, shared machine changes least)."""
    return {
        "seconds": round(system.seconds, 3),
        "cpu_s": round(system.cpu_seconds, 3),
        "peak_mb": round(system.peak_rss_mb, 1),
        "bare_s": round(bare.seconds, 3),
        "bare_cpu_s": round(bare.cpu_seconds, 3),
        "bare_peak_mb": round(bare.peak_rss_mb, 1),
        "ratio": round(system.seconds / bare.seconds, 3),
        "cpu_ratio": round(system.cpu_seconds / max(bare.cpu_seconds, 1e-9), 3),
    }


def run(
    plots: int, shards: int = 8, workdir: Path | None = None, seed: int = 7,
    s2_pixels: int = S2_PIXELS,
) -> dict[str, Any]:  # fmt: skip
    """Build the data in a scratch space, time every part, compare, emit the JSON line."""
    from nuru_yield.dev.bench import run_isolated_many
    from nuru_yield.dev.scratch import scratch_space

    with scratch_space("bench ingest --ndvi", parent=workdir) as space:
        lake = Lake.from_settings()
        log.info("bench ingest --ndvi: %d plot polygons, four MODIS tiles, one S2 scene", plots)
        build_plots(lake, plots, seed, s2_pixels)
        tiles = build_modis(space.home / "modis", seed)
        catalog = build_sentinel2(space.home, seed, s2_pixels)
        geometries = str(lake.root / names.RAW_PLOT_GEOMETRIES)

        log.info("bench ingest --ndvi: MODIS, prepare, %d shards, publish", shards)
        prepared = run_isolated(system_prepare, lake.url, tiles, shards)
        plan = prepared.result
        per_shard, _ = run_isolated_many(
            system_shard, [(lake.url, plan, k) for k in range(plan["shards"])], parallel=1
        )
        published = run_isolated(system_publish, lake.url, plan, [m.result for m in per_shard])
        _forget(lake)
        log.info("bench ingest --ndvi: MODIS, all plots in one process")
        system = run_isolated(system_modis, lake.url, tiles)
        log.info("bench ingest --ndvi: MODIS, bare exactextract")
        bare = run_isolated(bare_modis, geometries, tiles)
        modis_agreement = agreement(lake, "mod13q1", bare.result)

        log.info("bench ingest --ndvi: one Sentinel-2 scene")
        s2 = run_isolated(system_sentinel2, lake.url, catalog)
        s2_bare = run_isolated(bare_sentinel2, geometries, catalog)
        s2_agreement = agreement(lake, "sentinel-2-l2a", s2_bare.result)
    shard_seconds = [round(m.seconds, 3) for m in per_shard]
    result = {
        "plots": plots,
        "shards": shards,
        "modis": {
            "tiles": len(tiles),
            **_timing(system, bare),
            "prepare_s": round(prepared.seconds, 3),
            "publish_s": round(published.seconds, 3),
            "shard_seconds": shard_seconds,
            "shard_cpu_s": [round(m.cpu_seconds, 3) for m in per_shard],
            "shard_peak_mb": [round(m.peak_rss_mb, 1) for m in per_shard],
            "shards_ratio": round(
                (prepared.seconds + sum(shard_seconds) + published.seconds) / bare.seconds, 3
            ),
            "shards_cpu_ratio": round(
                (
                    prepared.cpu_seconds
                    + sum(m.cpu_seconds for m in per_shard)
                    + published.cpu_seconds
                )
                / max(bare.cpu_seconds, 1e-9),
                3,
            ),
        },
        "sentinel2": {
            "scenes": 1,
            "pixels": s2_pixels,
            "plots_in_scene": s2_agreement["rows"],
            **_timing(s2, s2_bare),
        },
        "agreement": {"modis": modis_agreement, "sentinel2": s2_agreement},
    }
    log.info("bench ingest --ndvi: %s", result)
    emit(result)
    return result
