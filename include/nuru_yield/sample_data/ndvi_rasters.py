"""NDVI as the products deliver it, for the sample data, the benchmark and the tests:
MOD13Q1-style 16-day composites as COGs on the MODLAND sinusoidal grid, and Sentinel-2
L2A-like scenes (B04 and B08 at 10 m, SCL at 20 m, each a COG) in a static STAC catalog.
The readers (:mod:`nuru_yield.sources.modis`, :mod:`nuru_yield.sources.sentinel2`) take them
as they take the real files (docs/DESIGN.md, "NDVI from rasters")."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nuru_yield.sources.modis import COMPOSITE_DAYS, MODIS_FILL, SINUSOIDAL_PROJ4

if TYPE_CHECKING:
    import pyarrow as pa
    import pystac
    from affine import Affine
    from rasterio.crs import CRS

S2_COLLECTION = "sentinel-2-l2a"
# Sentinel-2 L2A's storage: reflectance × 10,000 + 1,000 (processing baseline 04.00 and
# later) in uint16, 0 = no data; SCL classes in uint8 at 20 m.
S2_BASELINE = "05.11"
S2_ADD_OFFSET = 1000
S2_QUANTIFICATION = 10_000
# Blocks as the products' COGs have them (LP DAAC-style 512, Sentinel-2 on AWS 1024).
_MODIS_BLOCK, _S2_BLOCK = 512, 1024


def _write_cog(
    path: Path,
    bands: Sequence[np.ndarray],
    crs: CRS | str,
    transform: Affine,
    nodata: float,
    block: int,
    descriptions: Sequence[str] = (),
    tags: dict[str, str] | None = None,
) -> Path:
    import rasterio

    first = bands[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(
        path, "w", driver="COG", width=first.shape[1], height=first.shape[0], count=len(bands),
        dtype=first.dtype, crs=crs, transform=transform, nodata=nodata, compress="deflate",
        blocksize=block, overviews="none",
    ) as out:  # fmt: skip
        for index, band in enumerate(bands, start=1):
            out.write(band, index)
        for index, description in enumerate(descriptions, start=1):
            out.set_band_description(index, description)
        if tags:
            out.update_tags(**tags)
    return path


def write_modis_composite(
    path: Path,
    ndvi_dn: np.ndarray,
    reliability: np.ndarray | None,
    transform: Affine,
    first_day: dt.date | None = None,
) -> Path:
    """A MOD13Q1-style composite: NDVI × 10,000 in int16 (fill −3000) and, when given, the
    pixel reliability layer as a second band (−1…3), on the sinusoidal grid at
    ``transform``; with ``first_day`` the 16-day period is in the tags, as GDAL keeps the
    HDF-EOS metadata (else the file name carries it)."""
    bands = [np.asarray(ndvi_dn, dtype=np.int16)]
    descriptions = ["250m 16 days NDVI"]
    if reliability is not None:
        bands.append(np.asarray(reliability, dtype=np.int16))
        descriptions.append("250m 16 days pixel reliability")
    tags = None
    if first_day is not None:
        last_day = first_day + dt.timedelta(days=COMPOSITE_DAYS - 1)
        tags = {
            "RANGEBEGINNINGDATE": first_day.isoformat(),
            "RANGEENDINGDATE": last_day.isoformat(),
        }
    return _write_cog(
        path, bands, SINUSOIDAL_PROJ4, transform, MODIS_FILL, _MODIS_BLOCK, descriptions, tags
    )


def modis_grid(
    bounds: tuple[float, float, float, float], margin: int = 2
) -> tuple[Affine, tuple[int, int]]:
    """The window of the MODLAND 250 m sinusoidal lattice covering ``bounds`` (WGS84 west,
    south, east, north) with ``margin`` pixels around: its transform and (rows, columns)."""
    import math

    from affine import Affine
    from pyproj import Transformer

    from nuru_yield.sources.modis import PIXEL_METRES

    west, south, east, north = bounds
    forward = Transformer.from_crs("EPSG:4326", SINUSOIDAL_PROJ4, always_xy=True)
    lons = np.array([west, east, west, east, (west + east) / 2, (west + east) / 2])
    lats = np.array([south, south, north, north, south, north])
    x, y = forward.transform(lons, lats)
    col0 = math.floor(min(x) / PIXEL_METRES) - margin
    col1 = math.ceil(max(x) / PIXEL_METRES) + margin
    row0 = math.floor(-max(y) / PIXEL_METRES) - margin
    row1 = math.ceil(-min(y) / PIXEL_METRES) + margin
    transform = Affine(
        PIXEL_METRES, 0.0, col0 * PIXEL_METRES, 0.0, -PIXEL_METRES, -row0 * PIXEL_METRES
    )
    return transform, (row1 - row0, col1 - col0)


def modis_name(first_day: dt.date, h: int, v: int, product: str = "MOD13Q1") -> str:
    """An LP DAAC-style granule name: ``MOD13Q1.A2025161.h21v08.061.tif``."""
    return f"{product}.A{first_day:%Y%j}.h{h:02d}v{v:02d}.061.tif"


def s2_dn(reflectance: np.ndarray) -> np.ndarray:
    """Reflectance as L2A stores it from processing baseline 04.00 (uint16, 1 at least)."""
    dn = np.rint(np.asarray(reflectance) * S2_QUANTIFICATION) + S2_ADD_OFFSET
    return np.clip(dn, 1, 65535).astype(np.uint16)


def write_s2_item(
    folder: Path,
    scene_id: str,
    red: np.ndarray,
    nir: np.ndarray,
    scl: np.ndarray,
    *,
    crs: CRS | str,
    x0: float,
    y0: float,
    when: dt.datetime,
    baseline: str = S2_BASELINE,
    collection: str = S2_COLLECTION,
    assets: Iterable[str] = ("B04", "B08", "SCL"),
) -> pystac.Item:
    """One L2A-like scene: ``red``/``nir`` (uint16 DN) on the 10 m grid whose upper-left
    corner is (``x0``, ``y0``) in ``crs``, ``scl`` on the 20 m grid from the same corner,
    written as COGs in ``folder``; the STAC item names them (``assets``: which to write, so
    a test can leave one out) with its footprint in WGS84, time and processing baseline."""
    import pystac
    import shapely
    from affine import Affine
    from pyproj import Transformer

    height, width = red.shape
    back = Transformer.from_crs(
        crs.to_wkt() if hasattr(crs, "to_wkt") else crs, "EPSG:4326", always_xy=True
    )
    xs = [x0, x0 + 10 * width, x0 + 10 * width, x0]
    ys = [y0 - 10 * height, y0 - 10 * height, y0, y0]
    lons, lats = back.transform(xs, ys)
    footprint = shapely.Polygon(list(zip(lons, lats, strict=True)))
    item = pystac.Item(
        scene_id,
        shapely.geometry.mapping(footprint),
        list(footprint.bounds),
        when,
        {"s2:processing_baseline": baseline},
        collection=collection,
    )
    files = {"B04": (red, 10), "B08": (nir, 10), "SCL": (scl, 20)}
    for key in assets:
        data, size = files[key]
        path = _write_cog(
            folder / f"{scene_id}_{key}.tif", [data], crs,
            Affine(size, 0, x0, 0, -size, y0), 0, _S2_BLOCK,
        )  # fmt: skip
        item.add_asset(key, pystac.Asset(str(path), media_type=pystac.MediaType.COG))
    return item


def write_stac_catalog(folder: Path, items: Iterable[pystac.Item], title: str) -> Path:
    """A self-contained static STAC catalog of ``items`` in ``folder``, every link and asset
    relative (so the folder can be moved or copied to S3 as it is); its ``catalog.json``."""
    import pystac

    catalog = pystac.Catalog("nuru-yield-scenes", title)
    for item in items:
        catalog.add_item(item)
    catalog.normalize_hrefs(str(folder))
    catalog.make_all_asset_hrefs_relative()
    catalog.save(pystac.CatalogType.SELF_CONTAINED)
    return folder / "catalog.json"


# --- the sample world's NDVI as rasters (`nuru-yield sample-data --formats real|both`) -----
MODIS_PERIOD_DAYS = 16  # MOD13Q1 periods start on days 1, 17, 33, … of each year
# (month, day) of the last year's scenes: the days before the demo's night (10 April), within
# NDVI_STAC_DAYS of it, so that the demo's night ingests them through the STAC path.
S2_SCENE_DAYS = ((3, 28), (4, 2), (4, 7))
S2_SCENE_METRES = 20_000.0
S2_MATCH_DAYS = 8  # a plot's observation this close to a scene's day is what it shows
S2_BACKGROUND_NDVI = 0.3


class SampleRasters:
    """The sample world's NDVI as the products deliver it, under ``folder``:

    * ``ndvi/``: MOD13Q1-style 16-day composites (``MOD13Q1.AYYYYDDD.kenya.061.tif``) on the
      sinusoidal grid over the plots, with the pixel reliability band. Each plot's pixels
      (those its square touches) hold its least cloudy observation of the period
      (maximum-value compositing keeps the clearest look): reliability good, or cloudy
      when more than half the plot was under cloud then; fill where the plot was not seen.
      Where two plots share a pixel, the larger id's value is there.
    * ``stac/``: a static STAC catalog of three Sentinel-2-like L2A scenes (28 March, 2 and
      7 April of the last year) over the plots of one 20 km square of the county with the most
      plots: each plot's 10 m pixels show its observation within ``S2_MATCH_DAYS`` days
      (SCL cloud where it was mostly cloudy), grassland elsewhere.

    Read by ``nuru-yield ingest ndvi`` (``NDVI_SOURCE``, ``NDVI_STAC_URL``).
    """

    def __init__(
        self,
        folder: Path,
        plot_id: np.ndarray,
        longitude: np.ndarray,
        latitude: np.ndarray,
        county: np.ndarray,
        area_ha: np.ndarray,
        last_year: int,
    ) -> None:
        import shapely

        from nuru_yield.sample_data.formats import plot_squares
        from nuru_yield.sources.ndvi_rasters import project

        self.folder = Path(folder)
        self.plot_id = np.asarray(plot_id, dtype=np.int64)
        self.longitude, self.latitude = np.asarray(longitude), np.asarray(latitude)
        self.county = np.asarray(county)
        self.last_year = last_year
        self.transform, self.shape = modis_grid(
            (self.longitude.min(), self.latitude.min(), self.longitude.max(), self.latitude.max())
        )
        from rasterio.crs import CRS

        squares = plot_squares(self.longitude, self.latitude, area_ha)  # as plots.geojson
        self.squares = squares
        box = shapely.bounds(project(squares, CRS.from_proj4(SINUSOIDAL_PROJ4)))
        self.pixels = _touched(self.transform, box)
        self.composites = 0
        self.scenes = 0

    def describe(self) -> str:
        return f"ndvi/ ({self.composites} composites), stac/ ({self.scenes} scenes)"

    def year(self, year: int, tables: Iterable[pa.Table]) -> Iterator[pa.Table]:
        """Pass the NDVI tables of ``year`` through; once they are all seen, write the
        year's composites (and in the last year, the scenes)."""
        import pyarrow as pa

        seen = []
        for table in tables:
            seen.append(table)
            yield table
        if not seen:
            return
        rows = pa.concat_tables(seen)
        observations = _observations(rows, self.plot_id)
        self._composites(year, *observations)
        if year == self.last_year:
            self._scenes(year, *observations)

    def _composites(
        self, year: int, plot: np.ndarray, day: np.ndarray, ndvi: np.ndarray, cloud: np.ndarray
    ) -> None:
        doy = np.array([d.timetuple().tm_yday for d in day])
        period = (doy - 1) // MODIS_PERIOD_DAYS
        clear_first = np.where(np.isnan(cloud), 0.5, cloud)  # an unknown mask: marginal
        order = np.lexsort((-ndvi, clear_first, period, plot))
        plot, period, ndvi, cloud = plot[order], period[order], ndvi[order], cloud[order]
        first = np.ones(len(plot), dtype=bool)
        first[1:] = (plot[1:] != plot[:-1]) | (period[1:] != period[:-1])
        plot, period, ndvi, cloud = plot[first], period[first], ndvi[first], cloud[first]
        dn = np.clip(np.rint(ndvi * 10_000), -2000, 10_000).astype(np.int16)
        reliability = np.where(cloud > 0.5, 3, np.where(np.isnan(cloud), 1, 0)).astype(np.int16)
        pixel_plot, rows, cols = self.pixels
        for p in np.unique(period):
            these = period == p
            value = np.full(len(self.plot_id), MODIS_FILL, dtype=np.int16)
            state = np.full(len(self.plot_id), -1, dtype=np.int16)
            value[plot[these]], state[plot[these]] = dn[these], reliability[these]
            seen = value[pixel_plot] != MODIS_FILL
            band = np.full(self.shape, MODIS_FILL, dtype=np.int16)
            layer = np.full(self.shape, -1, dtype=np.int16)
            band[rows[seen], cols[seen]] = value[pixel_plot[seen]]
            layer[rows[seen], cols[seen]] = state[pixel_plot[seen]]
            first_day = dt.date(year, 1, 1) + dt.timedelta(days=int(p) * MODIS_PERIOD_DAYS)
            name = f"MOD13Q1.A{first_day:%Y%j}.kenya.061.tif"
            write_modis_composite(self.folder / "ndvi" / name, band, layer, self.transform)
            self.composites += 1

    def _scenes(
        self, year: int, plot: np.ndarray, day: np.ndarray, ndvi: np.ndarray, cloud: np.ndarray
    ) -> None:
        import shapely
        from pyproj import CRS, Transformer
        from rasterio.crs import CRS as RasterCRS

        from nuru_yield.sources.ndvi_rasters import project

        counties, counts = np.unique(self.county, return_counts=True)
        busiest = self.county == counties[np.argmax(counts)]
        lon, lat = (
            float(np.median(self.longitude[busiest])),
            float(np.median(self.latitude[busiest])),
        )
        zone = int((lon + 180) // 6) + 1
        crs = CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)
        forward = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
        cx, cy = forward.transform(lon, lat)
        x0 = np.floor((cx - S2_SCENE_METRES / 2) / 20) * 20
        y0 = np.ceil((cy + S2_SCENE_METRES / 2) / 20) * 20
        size = int(S2_SCENE_METRES // 10)
        box = shapely.bounds(project(self.squares, RasterCRS.from_wkt(crs.to_wkt())))
        inside = np.flatnonzero(
            (box[:, 0] > x0) & (box[:, 2] < x0 + S2_SCENE_METRES)
            & (box[:, 3] < y0) & (box[:, 1] > y0 - S2_SCENE_METRES)
        )  # fmt: skip
        rng = np.random.default_rng(int(self.plot_id.sum()) % (2**32))
        items = []
        for month, day_of_month in S2_SCENE_DAYS:
            when = dt.date(year, month, day_of_month)
            values = S2_BACKGROUND_NDVI + rng.normal(0, 0.02, (size, size))
            scl = np.full((size // 2, size // 2), 4, np.uint8)
            for index in inside:
                mine = plot == index
                gap = np.abs(np.array([(d - when).days for d in day[mine]]))
                if not gap.size or gap.min() > S2_MATCH_DAYS:
                    continue
                pick = np.argmin(gap)
                xmin, ymin, xmax, ymax = box[index]
                c0, c1 = int(np.rint((xmin - x0) / 10)), int(np.rint((xmax - x0) / 10))
                r0, r1 = int(np.rint((y0 - ymax) / 10)), int(np.rint((y0 - ymin) / 10))
                values[r0:r1, c0:c1] = ndvi[mine][pick]
                if cloud[mine][pick] > 0.5:
                    scl[r0 // 2 : -(-r1 // 2), c0 // 2 : -(-c1 // 2)] = 9
            red = np.full((size, size), 0.05)
            nir = red * (1 + np.clip(values, -0.9, 0.95)) / (1 - np.clip(values, -0.9, 0.95))
            scene = write_s2_item(
                self.folder / "s2", f"S2A_T{zone}SYN_{when:%Y%m%d}_0_L2A", s2_dn(red),
                s2_dn(nir), scl, crs=crs.to_string(), x0=float(x0), y0=float(y0),
                when=dt.datetime(when.year, when.month, when.day, 7, 50, tzinfo=dt.UTC),
            )  # fmt: skip
            items.append(scene)
            self.scenes += 1
        write_stac_catalog(
            self.folder / "stac", items, "Sentinel-2-like scenes of the sample world"
        )


def _observations(
    rows: pa.Table, plot_id: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(plot index, day, ndvi, cloud fraction with NaN for unknown) of NDVI rows."""
    ids = rows.column("plot_id").to_numpy()
    cloud = rows.column("cloud_fraction").to_numpy(zero_copy_only=False).astype(np.float64)
    return (
        np.searchsorted(plot_id, ids),
        np.array(rows.column("date").to_pylist()),
        rows.column("ndvi").to_numpy(zero_copy_only=False).astype(np.float64),
        cloud,
    )


def _touched(transform: Affine, box: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(plot index, row, column) of every pixel each plot's bounds (``box``, in the grid's
    CRS; a plot is smaller than a pixel) touch, ordered by plot so larger ids write last."""
    col0 = np.floor((box[:, 0] - transform.c) / transform.a).astype(np.int64)
    col1 = np.floor((box[:, 2] - transform.c) / transform.a).astype(np.int64)
    row0 = np.floor((box[:, 3] - transform.f) / transform.e).astype(np.int64)
    row1 = np.floor((box[:, 1] - transform.f) / transform.e).astype(np.int64)
    plots, rows, cols = [], [], []
    for dr in (0, 1):
        for dc in (0, 1):
            plots.append(np.arange(len(box)))
            rows.append(np.minimum(row0 + dr, row1))
            cols.append(np.minimum(col0 + dc, col1))
    index = np.concatenate(plots)
    order = np.argsort(index, kind="stable")
    return index[order], np.concatenate(rows)[order], np.concatenate(cols)[order]
