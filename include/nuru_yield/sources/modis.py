"""MODIS 16-day NDVI composites (MOD13Q1 / MYD13Q1 style) as GeoTIFF or COG files.

The conventions (LP DAAC's MOD13Q1 user guide and layer table; docs/DESIGN.md, "NDVI from
rasters"): the ``250m 16 days NDVI`` layer is int16 NDVI × 10,000 (scale 0.0001), fill
−3000, valid range −2000…10000; the ``pixel reliability`` layer is −1 fill/no data, 0 good,
1 marginal, 2 snow/ice, 3 cloudy. Files come on the MODIS sinusoidal grid (tiles ``hHHvVV``)
or reprojected (e.g. AppEEARS' GeoTIFFs, in WGS84); the reader takes whatever CRS the file
declares.

- A scale and offset the file declares are honoured; an integer file declaring none gets
  MODIS's 0.0001. A float file holds NDVI itself (valid range −1…1).
- Pixel reliability, when given, masks snow/ice and cloud (``MASKED``) and fill (``NO_DATA``);
  good and marginal pixels are clear. It comes as a band of the same file (its description
  names "reliability") or as a sibling file whose name has ``pixel_reliability`` where the
  NDVI file's has ``NDVI`` (AppEEARS' naming).
- The date: a composite is dated by the last day of its 16-day period, so that no nightly
  forecast uses a pixel acquired after its run date. The period comes from the tags
  ``RANGEBEGINNINGDATE``/``RANGEENDINGDATE`` (HDF-EOS metadata kept by GDAL) or the file
  name: ``A2025161`` (LP DAAC granules) or ``doy2025161`` (AppEEARS), year and day of year
  of the period's first day.
- Bad input (one reason per file, quarantined; ``BadScene``): not readable or truncated, no
  CRS or one PROJ does not know, no NDVI band, a reliability layer on another grid or with
  values outside −1…3, NDVI values outside the valid range (in the window read), no
  date. The last block of a file is always read, so a truncated file is refused.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
from collections.abc import Sequence
from pathlib import PurePosixPath
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
    import rasterio
    from affine import Affine

# The MODLAND sinusoidal grid (modis-land.gsfc.nasa.gov/GCTP.html and the MODLAND tile
# calculator notes): a sphere of radius 6,371,007.181 m, 36 x 18 tiles of 10° x 10° at the
# equator numbered hHHvVV from the upper left, 4,800 x 4,800 pixels a tile at "250 m".
SINUSOIDAL_PROJ4 = "+proj=sinu +R=6371007.181 +nadgrids=@null +wktext +units=m"
SPHERE_RADIUS = 6_371_007.181
TILE_METRES = 2 * math.pi * SPHERE_RADIUS / 36
TILE_PIXELS = 4800
PIXEL_METRES = TILE_METRES / TILE_PIXELS  # 231.656358… m

MODIS_SCALE = 1e-4
MODIS_FILL = -3000
MODIS_VALID_DN = (-2000, 10000)
COMPOSITE_DAYS = 16
KIND = "composite"  # a scene's ref: rebuilt by composite_scene
RELIABILITY_FILL, RELIABILITY_SNOW, RELIABILITY_CLOUDY = -1, 2, 3
_RELIABILITY_STATE = {-1: NO_DATA, 0: CLEAR, 1: CLEAR, 2: MASKED, 3: MASKED}
_NAME_DATE = re.compile(r"(?:\.A|doy)(\d{4})(\d{3})(?!\d)")
_PRODUCT = re.compile(r"\b(M[OY]D13Q1)", re.IGNORECASE)
_RELIABILITY_TOKEN = "pixel_reliability"
_NDVI_TOKEN = "NDVI"


def tile_transform(h: int, v: int) -> Affine:
    """The affine transform of MODLAND sinusoidal tile ``hHHvVV`` at 250 m."""
    from affine import Affine

    x0, y0 = (h - 18) * TILE_METRES, (9 - v) * TILE_METRES
    return Affine(PIXEL_METRES, 0.0, x0, 0.0, -PIXEL_METRES, y0)


def composite_scenes(paths: Sequence[str]) -> tuple[list[Scene], list[Quarantined]]:
    """The composites among ``paths`` (reliability files are paired with their NDVI file,
    not scenes of their own) and the files left out, with the reason."""
    names = {str(path) for path in paths}
    scenes, bad = [], []
    for path in sorted(names):
        name = PurePosixPath(path).name
        if _RELIABILITY_TOKEN in name.lower():
            partner = _ndvi_partner(path)
            if partner not in names:
                bad.append(
                    Quarantined(_stem(path), path, "a reliability layer without its NDVI file")
                )
            continue
        try:
            scenes.append(composite_scene(path, _reliability_partner(path, names)))
        except BadScene as error:
            bad.append(Quarantined(_stem(path), path, str(error)))
    return scenes, bad


def composite_scene(path: str, reliability: str | None) -> Scene:
    """One composite (and its reliability file, if any) as a scene; :class:`BadScene`
    without a date. Its check reads it whole (CRS, bands, valid range, the reliability
    layer's grid, the last block)."""
    _, last_day = composite_period(path)
    return Scene(
        scene_id=_stem(path),
        product=product_of(path),
        date=last_day,
        source=path,
        load=_loader(path, reliability),
        ref={"kind": KIND, "source": path, "reliability": reliability},
        check=lambda: _check(path, reliability),
    )


def _check(path: str, reliability: str | None) -> None:
    check_composite(path, reliability)


def check_composite(path: str, reliability_path: str | None = None) -> None:
    """:class:`BadScene` unless the whole file is usable, as every shard of a night will
    then take it: a CRS PROJ can reach from WGS84, an NDVI band whose every stored value is
    fill or in the valid range, a reliability layer (band or file) with values −1…3 on the
    same grid, every block readable to the last. Stored numbers are checked as they are:
    no float copy of the tile."""
    from nuru_yield.sources.ndvi_rasters import project

    with _open(path) as dataset:
        if dataset.crs is None:
            raise BadScene("no CRS")
        project(np.empty(0, dtype=object), dataset.crs)
        ndvi_band = _band(dataset, "ndvi", required=True)
        reliability_band = _band(dataset, "reliability", required=False)
        whole = _window(dataset, None)
        _missing(dataset, ndvi_band, _read(dataset, ndvi_band, whole))
        if reliability_band is not None:
            _check_reliability(_read(dataset, reliability_band, whole))
        grid = (dataset.crs, dataset.transform, dataset.shape)
    if reliability_path is not None:
        with _open(reliability_path) as layer:
            if (layer.crs, layer.transform, layer.shape) != grid:
                raise BadScene(f"{reliability_path}: the reliability layer is on another grid")
            _check_reliability(_read(layer, 1, whole))


def _stem(path: str) -> str:
    name = PurePosixPath(path).name
    for suffix in (".tiff", ".tif", ".TIF", ".TIFF"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _ndvi_partner(path: str) -> str:
    name = PurePosixPath(path).name
    index = name.lower().index(_RELIABILITY_TOKEN)
    return str(
        PurePosixPath(path).with_name(
            name[:index] + _NDVI_TOKEN + name[index + len(_RELIABILITY_TOKEN) :]
        )
    )


def _reliability_partner(path: str, given: set[str]) -> str | None:
    """The sibling reliability file of an NDVI file: among the paths given, or beside it on
    disk."""
    name = PurePosixPath(path).name
    if _NDVI_TOKEN not in name:
        return None
    sibling = str(PurePosixPath(path).with_name(name.replace(_NDVI_TOKEN, _RELIABILITY_TOKEN, 1)))
    if sibling in given or ("://" not in sibling and os.path.exists(sibling)):
        return sibling
    return None


def product_of(path: str) -> str:
    """``mod13q1`` or ``myd13q1`` from the file name (Terra and Aqua composites are 8 days
    apart and kept apart), else ``modis``."""
    match = _PRODUCT.search(PurePosixPath(path).name)
    return match.group(1).lower() if match else "modis"


def composite_period(path: str, tags: dict[str, str] | None = None) -> tuple[dt.date, dt.date]:
    """(first, last) day of a composite's 16-day period, from its tags or file name."""
    if tags is None:
        match = _NAME_DATE.search(PurePosixPath(path).name)
        if match is None:
            tags = _tags(path)
        else:
            year, day = int(match.group(1)), int(match.group(2))
            if not 1 <= day <= 366:
                raise BadScene(f"day of year {day} in the file name is not a day")
            first = dt.date(year, 1, 1) + dt.timedelta(days=day - 1)
            return first, first + dt.timedelta(days=COMPOSITE_DAYS - 1)
    begin, end = tags.get("RANGEBEGINNINGDATE"), tags.get("RANGEENDINGDATE")
    try:
        if begin:
            first = dt.date.fromisoformat(begin[:10])
            last = (
                dt.date.fromisoformat(end[:10])
                if end
                else first + dt.timedelta(days=COMPOSITE_DAYS - 1)
            )
            return first, last
    except ValueError:
        raise BadScene(f"unreadable composite dates in the tags: {begin!r}, {end!r}") from None
    raise BadScene(
        "no composite date: neither AYYYYDDD / doyYYYYDDD in the file name nor "
        "RANGEBEGINNINGDATE in the tags"
    )


def _open(path: str) -> rasterio.DatasetReader:
    import rasterio

    try:
        return rasterio.open(path)
    except Exception as error:
        raise BadScene(f"not a readable raster: {first_line(error)}") from None


def _tags(path: str) -> dict[str, str]:
    with _open(path) as dataset:
        return dataset.tags()


def _loader(path: str, reliability: str | None) -> Any:
    def load(bounds: tuple[float, float, float, float] | None) -> Raster:
        return read_composite(path, reliability, bounds)

    return load


def read_composite(
    path: str,
    reliability_path: str | None = None,
    bounds: tuple[float, float, float, float] | None = None,
) -> Raster:
    """One composite as a :class:`Raster` (only the window over ``bounds``, WGS84 lon/lat,
    when given) or :class:`BadScene`."""
    with _open(path) as dataset:
        if dataset.crs is None:
            raise BadScene("no CRS")
        ndvi_band = _band(dataset, "ndvi", required=True)
        reliability_band = _band(dataset, "reliability", required=False)
        window = _window(dataset, bounds)
        dn = _read(dataset, ndvi_band, window)
        ndvi, state = _ndvi(dataset, ndvi_band, dn)
        if reliability_band is not None:
            _apply_reliability(state, _read(dataset, reliability_band, window))
        transform, crs = dataset.window_transform(window), dataset.crs
        grid = (dataset.crs, dataset.transform, dataset.shape)
    if reliability_path is not None:
        with _open(reliability_path) as layer:
            if (layer.crs, layer.transform, layer.shape) != grid:
                raise BadScene(f"{reliability_path}: the reliability layer is on another grid")
            _apply_reliability(state, _read(layer, 1, window))
    return Raster(assert_consistent(ndvi, state), state, transform, crs)


def _band(dataset: rasterio.DatasetReader, word: str, required: bool) -> int | None:
    """The band whose description names ``word``; a one-band file's only band is NDVI."""
    if word == "ndvi" and dataset.count == 1:
        return 1
    for index, description in enumerate(dataset.descriptions, start=1):
        if description and word in description.lower():
            return index
    if required:
        raise BadScene(f"no NDVI band among {dataset.count} (descriptions {dataset.descriptions})")
    return None


def _window(dataset: rasterio.DatasetReader, bounds: tuple[float, float, float, float] | None):
    """The window of ``dataset`` over ``bounds`` (WGS84), widened by a point's window and
    a pixel; empty when they do not meet."""
    from rasterio.windows import Window

    if bounds is None:
        return Window(0, 0, dataset.width, dataset.height)
    col0, row0, col1, row1 = pixel_box(dataset.crs, dataset.transform, bounds)
    col0, row0 = max(col0, 0), max(row0, 0)
    col1, row1 = min(col1, dataset.width), min(row1, dataset.height)
    return Window(col0, row0, max(col1 - col0, 0), max(row1 - row0, 0))


def _read(dataset: rasterio.DatasetReader, band: int, window: Any) -> np.ndarray:
    """The band over ``window``; its last block is read too, so that a truncated file is
    refused even when the plots' window survived the truncation."""
    from rasterio.windows import Window

    height, width = dataset.block_shapes[band - 1]
    col = (dataset.width - 1) // width * width
    row = (dataset.height - 1) // height * height
    last = Window(col, row, dataset.width - col, dataset.height - row)
    try:
        dataset.read(band, window=last)
        return dataset.read(band, window=window)
    except Exception as error:
        raise BadScene(f"unreadable or truncated: {first_line(error)}") from None


def _missing(dataset: rasterio.DatasetReader, band: int, dn: np.ndarray) -> np.ndarray:
    """Where the stored numbers are fill; :class:`BadScene` when any other is outside the
    valid range (scale, offset, fill honoured). Integers are checked as stored, against the
    valid range brought back to stored numbers: one pass, no float copy of the tile."""
    scale, offset = _scaling(dataset, band, dn.dtype)
    nodata = dataset.nodatavals[band - 1]
    if np.issubdtype(dn.dtype, np.integer):
        low, high = (value * MODIS_SCALE for value in MODIS_VALID_DN)
        ends = sorted(((low - offset) / scale, (high - offset) / scale))
        stored_low, stored_high = math.ceil(ends[0] - 1e-6), math.floor(ends[1] + 1e-6)
        missing = dn == (MODIS_FILL if nodata is None else nodata)
        outside = (dn < stored_low) | (dn > stored_high)
    else:
        low, high = -1.0, 1.0
        missing = ~np.isfinite(dn) if nodata is None else (dn == nodata) | ~np.isfinite(dn)
        with np.errstate(invalid="ignore"):
            scaled = dn * scale + offset
            outside = (scaled < low - 1e-6) | (scaled > high + 1e-6)
    outside &= ~missing
    if outside.any():
        example = dn[outside][0]
        raise BadScene(
            f"{int(outside.sum()):,} pixels outside the valid range {low:g}…{high:g} "
            f"(e.g. stored {example}, scale {scale:g}, offset {offset:g})"
        )
    return missing


def _scaling(dataset: rasterio.DatasetReader, band: int, dtype: np.dtype) -> tuple[float, float]:
    """(scale, offset) of the stored numbers: declared, else MODIS's 0.0001 for integers."""
    scale, offset = dataset.scales[band - 1], dataset.offsets[band - 1]
    if np.issubdtype(dtype, np.integer) and scale == 1.0 and offset == 0.0:
        scale = MODIS_SCALE
    return scale, offset


def _ndvi(
    dataset: rasterio.DatasetReader, band: int, dn: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """NDVI values (float32) and pixel states from the stored numbers (:func:`_missing`)."""
    missing = _missing(dataset, band, dn)
    scale, offset = _scaling(dataset, band, dn.dtype)
    values = dn.astype(np.float32)
    values *= np.float32(scale)
    values += np.float32(offset)
    state = np.full(dn.shape, CLEAR, dtype=np.uint8)
    state[missing] = NO_DATA
    return values, state


# Pixel reliability −1…3 → state, indexed by reliability + 1.
_RELIABILITY_LOOKUP = np.array(
    [_RELIABILITY_STATE[value] for value in range(-1, 4)], dtype=np.uint8
)


def _check_reliability(reliability: np.ndarray) -> None:
    if reliability.size and (reliability.min() < -1 or reliability.max() > 3):
        unknown = reliability[(reliability < -1) | (reliability > 3)][0]
        raise BadScene(f"pixel reliability outside -1…3 (e.g. {unknown}): not MOD13Q1's layer")


def _apply_reliability(state: np.ndarray, reliability: np.ndarray) -> None:
    if reliability.shape != state.shape:
        raise BadScene("the reliability layer does not match the NDVI grid")
    _check_reliability(reliability)
    from_layer = _RELIABILITY_LOOKUP[(reliability + 1).astype(np.intp, copy=False)]
    # NO_DATA (255) is the largest state: a fill pixel stays no data whatever the layer says.
    np.maximum(state, from_layer, out=state)
