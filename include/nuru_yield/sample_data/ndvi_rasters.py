"""NDVI as the products deliver it, for the sample data, the benchmark and the tests:
MOD13Q1-style 16-day composites as COGs on the MODLAND sinusoidal grid, and Sentinel-2
L2A-like scenes (B04 and B08 at 10 m, SCL at 20 m, each a COG) in a static STAC catalog.
The readers (:mod:`nuru_yield.sources.modis`, :mod:`nuru_yield.sources.sentinel2`) take them
as they take the real files (docs/DESIGN.md, "NDVI from rasters")."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nuru_yield.sources.modis import COMPOSITE_DAYS, MODIS_FILL, SINUSOIDAL_PROJ4

if TYPE_CHECKING:
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
