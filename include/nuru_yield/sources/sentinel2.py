"""Sentinel-2 L2A scenes through STAC: a STAC API (pystac-client) or a static catalog on
disk or S3 (pystac), loaded with odc-stac on each scene's own 10 m grid.

The conventions (docs/DESIGN.md, "NDVI from rasters", with their sources):

- Bands: red ``B04`` and near-infrared ``B08`` at 10 m (asset keys ``B04``/``B08``, or
  ``red``/``nir`` as Earth Search names them), the scene classification ``SCL`` (``scl``) at
  20 m, brought to the 10 m grid by nearest neighbour (the grids nest: exact).
- Reflectance = DN × scale + offset. An asset's STAC raster extension (``raster:bands``
  ``scale``/``offset``) says how it is stored and wins; else processing baseline 04.00 and
  later (from 25 January 2022) add ``BOA_ADD_OFFSET`` = −1000 DN, so reflectance =
  (DN − 1000) / 10000, and earlier baselines DN / 10000. DN 0 is no data.
- SCL: 0 no data and 1 saturated/defective are no data; 2 dark features/topographic shadow,
  3 cloud shadow, 8 and 9 cloud (medium, high probability), 10 thin cirrus and 11 snow/ice
  are masked (cloud, shadow, snow); 4 vegetation, 5 not vegetated, 6 water and 7
  unclassified are clear. A pixel whose reflectances do not give an NDVI within −1…1
  (dark water and shadow can be negative after the offset) is no data.
- A scene is dated by its local solar day (UTC time + longitude / 15 h), as odc-stac groups
  scenes by ``solar_day``.
- Bad input (quarantined, one reason): an item without the expected assets, an asset that
  cannot be read.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from nuru_yield.sources.ndvi_rasters import (
    CLEAR,
    MASKED,
    NO_DATA,
    BadScene,
    Quarantined,
    Raster,
    Scene,
    assert_consistent,
    pixel_box,
)
from nuru_yield.sources.rasters import first_line

if TYPE_CHECKING:
    import pystac

    from nuru_yield.config import Settings

ASSETS = {"red": ("B04", "red"), "nir": ("B08", "nir"), "scl": ("SCL", "scl")}
SCL_NO_DATA = (0, 1)
SCL_MASKED = (2, 3, 8, 9, 10, 11)
SCL_CLEAR = (4, 5, 6, 7)
OFFSET_BASELINE = "04.00"
BOA_ADD_OFFSET = -1000
QUANTIFICATION = 10_000


KIND = "stac"  # a scene's ref: rebuilt by item_scene(read_item_file(source))


def stac_scenes(
    source: str,
    collection: str,
    bounds: tuple[float, float, float, float] | None,
    *,
    days: tuple[dt.date, dt.date] | None = None,
    settings: Settings | None = None,
) -> tuple[list[Scene], list[Quarantined]]:
    """The scenes of ``collection`` over ``bounds`` (WGS84), acquired within ``days``
    (first, last) when given, in a STAC API or catalog; items without a time are left out
    with the reason."""
    scenes, bad = [], []
    for item in search(source, collection, bounds, days=days, settings=settings):
        href = item.get_self_href() or f"{source}#{item.id}"
        try:
            scenes.append(item_scene(item, href))
        except BadScene as error:
            bad.append(Quarantined(item.id, href, str(error)))
    return scenes, bad


def item_scene(item: pystac.Item, href: str) -> Scene:
    """One item as a scene (``href``: where its JSON is read again); :class:`BadScene`
    without a time. Its check opens each band and reads its last block."""
    return Scene(
        scene_id=item.id,
        product=item.collection_id or "sentinel-2-l2a",
        date=solar_day(item),
        source=href,
        load=_loader(item),
        ref={"kind": KIND, "source": href},
        check=lambda: check_item(item),
    )


def read_item_file(href: str, settings: Settings | None = None) -> pystac.Item:
    """The item whose JSON is at ``href`` (a file, ``s3://`` or a STAC API's URL)."""
    import pystac

    try:
        return pystac.Item.from_file(href, stac_io=_stac_io(href, settings))
    except Exception as error:
        raise BadScene(f"cannot read the item {href}: {first_line(error)}") from None


def check_item(item: pystac.Item) -> None:
    """:class:`BadScene` unless every band the scene needs is there, opens, has a CRS and
    reads to its last block (a truncated file fails)."""
    import rasterio
    from rasterio.windows import Window

    for role in ASSETS:
        href = item.assets[_asset(item, role)].get_absolute_href()
        try:
            with rasterio.open(href) as band:
                if band.crs is None:
                    raise BadScene(f"{href}: no CRS")
                height, width = band.block_shapes[0]
                col = (band.width - 1) // width * width
                row = (band.height - 1) // height * height
                band.read(1, window=Window(col, row, band.width - col, band.height - row))
        except BadScene:
            raise
        except Exception as error:
            raise BadScene(f"cannot read {href}: {first_line(error)}") from None


def search(
    source: str,
    collection: str,
    bounds: tuple[float, float, float, float] | None,
    *,
    days: tuple[dt.date, dt.date] | None = None,
    settings: Settings | None = None,
) -> list[pystac.Item]:
    """Items of ``collection`` intersecting ``bounds`` and acquired within ``days``: a STAC
    API's search, or every item of a static catalog (``catalog.json``, local or ``s3://``)
    filtered the same way."""
    import pystac

    if source.startswith(("http://", "https://")) and not source.endswith(".json"):
        from pystac_client import Client

        when = None if days is None else f"{days[0]:%Y-%m-%d}/{days[1]:%Y-%m-%d}T23:59:59Z"
        found = Client.open(source).search(collections=[collection], bbox=bounds, datetime=when)
        return sorted(found.items(), key=lambda item: item.id)
    catalog = pystac.Catalog.from_file(source, stac_io=_stac_io(source, settings))
    items = []
    for item in catalog.get_items(recursive=True):
        if item.collection_id != collection or not _intersects(item.bbox, bounds):
            continue
        when = item.datetime or item.common_metadata.start_datetime
        if days is not None and when is not None and not days[0] <= when.date() <= days[1]:
            continue
        items.append(item)
    return sorted(items, key=lambda item: item.id)


def _intersects(bbox: Sequence[float] | None, bounds: tuple[float, ...] | None) -> bool:
    if bbox is None or bounds is None:
        return True
    return not (
        bbox[2] < bounds[0] or bbox[0] > bounds[2] or bbox[3] < bounds[1] or bbox[1] > bounds[3]
    )


def _stac_io(source: str, settings: Settings | None) -> Any:
    """pystac's reader, taught ``s3://`` (the lake's endpoint and keys)."""
    import pystac

    if not source.startswith("s3://"):
        return pystac.StacIO.default()
    from nuru_yield.sources.inputs import _s3_client

    client = _s3_client(settings)

    class S3StacIO(pystac.stac_io.DefaultStacIO):
        def read_text(self, source: Any, *args: Any, **kwargs: Any) -> str:
            href = str(source)
            if href.startswith("s3://"):
                bucket, key = href[5:].split("/", 1)
                return client.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
            return super().read_text(source, *args, **kwargs)

    return S3StacIO()


def solar_day(item: pystac.Item) -> dt.date:
    """The scene's local solar date: its UTC time plus longitude / 15 hours."""
    when = item.datetime or item.common_metadata.start_datetime
    if when is None:
        raise BadScene(f"item {item.id} has no datetime")
    west, _, east, _ = item.bbox or (0.0, 0.0, 0.0, 0.0)
    return (when + dt.timedelta(hours=(west + east) / 2 / 15)).date()


def _loader(item: pystac.Item) -> Any:
    def load(bounds: tuple[float, float, float, float] | None) -> Iterator[Raster]:
        return read_item(item, bounds)

    return load


def _asset(item: pystac.Item, role: str) -> str:
    for key in ASSETS[role]:
        if key in item.assets:
            return key
    raise BadScene(f"item {item.id} has no {role} asset (looked for {', '.join(ASSETS[role])})")


def reflectance_scale(item: pystac.Item, key: str) -> tuple[float, float]:
    """(scale, offset) turning an asset's DN into reflectance (see the module docstring)."""
    bands = item.assets[key].extra_fields.get("raster:bands") or []
    if bands and ("scale" in bands[0] or "offset" in bands[0]):
        return float(bands[0].get("scale", 1.0)), float(bands[0].get("offset", 0.0))
    baseline = str(item.properties.get("s2:processing_baseline", "00.00"))
    offset = BOA_ADD_OFFSET if baseline >= OFFSET_BASELINE else 0
    return 1.0 / QUANTIFICATION, offset / QUANTIFICATION


# Rows of the 10 m grid loaded at a time: a 10,980-pixel-wide strip of 2,048 rows holds
# about 200 MB while it is computed, whatever the scene's size.
STRIP_ROWS = 2048


def read_item(
    item: pystac.Item, bounds: tuple[float, float, float, float] | None
) -> Iterator[Raster]:
    """One scene's NDVI and SCL states on its red band's own grid (the window over
    ``bounds`` when given), strip by strip of ``STRIP_ROWS`` rows; :class:`BadScene` when
    it cannot be read."""
    import odc.stac
    import rasterio
    from odc.geo.geobox import GeoBox

    keys = {role: _asset(item, role) for role in ASSETS}
    href = item.assets[keys["red"]].get_absolute_href()
    try:
        with rasterio.open(href) as red:
            crs, transform, (height, width) = red.crs, red.transform, red.shape
    except Exception as error:
        raise BadScene(f"cannot read {href}: {first_line(error)}") from None
    if crs is None:
        raise BadScene(f"{href}: no CRS")
    if bounds is None:
        row0, col0, row1, col1 = 0, 0, height, width
    else:
        c0, r0, c1, r1 = pixel_box(crs, transform, bounds)
        row0, col0 = max(r0, 0), max(c0, 0)
        row1, col1 = min(r1, height), min(c1, width)
    if row1 <= row0 or col1 <= col0:
        return
    grid = GeoBox((height, width), transform, crs)
    scales = reflectance_scale(item, keys["red"]), reflectance_scale(item, keys["nir"])
    for start in range(row0, row1, STRIP_ROWS):
        geobox = grid[start : min(start + STRIP_ROWS, row1), col0:col1]
        try:
            data = odc.stac.load(
                [item],
                bands=list(keys.values()),
                geobox=geobox,
                resampling={keys["scl"]: "nearest", "*": "nearest"},
                dtype=_native_types(item, keys),
                chunks=None,
            )
        except Exception as error:
            raise BadScene(f"cannot load the scene: {first_line(error)}") from None
        red, nir = (data[keys[role]].values[0] for role in ("red", "nir"))
        scl = data[keys["scl"]].values[0]
        del data
        ndvi, state = scene_ndvi(red, nir, scl, *scales)
        yield Raster(ndvi, state, geobox.affine, crs)


# L2A's own storage types, for assets whose STAC entry does not declare one (odc-stac would
# load them as float32: twice the memory of a 10 m band, and no data as NaN, not DN 0).
NATIVE_TYPES = {"red": "uint16", "nir": "uint16", "scl": "uint8"}


def _native_types(item: pystac.Item, keys: dict[str, str]) -> dict[str, str]:
    types = {}
    for role, key in keys.items():
        bands = item.assets[key].extra_fields.get("raster:bands") or [{}]
        if "data_type" not in bands[0]:
            types[key] = NATIVE_TYPES[role]
    return types


# SCL class → pixel state (classes outside 0…11 are no data).
_SCL_STATE = np.full(256, NO_DATA, dtype=np.uint8)
_SCL_STATE[list(SCL_CLEAR)] = CLEAR
_SCL_STATE[list(SCL_MASKED)] = MASKED
# Rows computed at a time: the float32 temporaries of a 10,980-pixel-wide strip stay ~25 MB.
_ROWS = 512


def scene_ndvi(
    red: np.ndarray,
    nir: np.ndarray,
    scl: np.ndarray,
    red_scale: tuple[float, float],
    nir_scale: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray]:
    """NDVI (float32, NaN where not clear) and pixel states of one scene from its red and
    near-infrared DN, their (scale, offset) and SCL on the same grid (see the module
    docstring), computed in blocks of rows: memory is the output plus a block."""
    ndvi = np.empty(red.shape, dtype=np.float32)
    if scl.dtype != np.uint8:  # a catalog declaring SCL as another type
        with np.errstate(invalid="ignore"):
            scl = np.where((scl >= 0) & (scl <= 255), scl, 0).astype(np.uint8)
    state = _SCL_STATE[scl]
    for start in range(0, red.shape[0], _ROWS):
        rows = slice(start, start + _ROWS)
        out = ndvi[rows]
        r = red[rows].astype(np.float32)
        r *= np.float32(red_scale[0])
        r += np.float32(red_scale[1])
        n = nir[rows].astype(np.float32)
        n *= np.float32(nir_scale[0])
        n += np.float32(nir_scale[1])
        with np.errstate(invalid="ignore", divide="ignore"):
            np.subtract(n, r, out=out)
            n += r
            out /= n
            undefined = (red[rows] == 0) | (nir[rows] == 0) | ~((out >= -1.0) & (out <= 1.0))
        block_state = state[rows]
        block_state[(block_state == CLEAR) & undefined] = NO_DATA
    return assert_consistent(ndvi, state), state
