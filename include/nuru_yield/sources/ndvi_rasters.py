"""Per-plot NDVI from rasters: the zonal statistics every NDVI product shares.

A product reader (:mod:`nuru_yield.sources.modis`, :mod:`nuru_yield.sources.sentinel2`)
turns one scene into a :class:`Raster`: NDVI per pixel (NaN where not clear) and a pixel
state, ``CLEAR`` (a usable NDVI), ``MASKED`` (cloud, shadow, snow: the product's own
masks) or ``NO_DATA`` (fill, outside the swath or tile). This module turns the scenes of
one acquisition (a product and a date) into the raw contract's NDVI rows
(docs/DESIGN.md, "Raw input contract"; the rules are in its "NDVI from rasters"):

- Plots come in WGS84 and are reprojected, vertex by vertex, into the raster's own CRS (UTM,
  MODIS sinusoidal, ...): the raster is never resampled.
- A polygon's NDVI is the area-weighted mean of its clear pixels, each pixel weighted by the
  share of it the polygon covers (exactextract). A point's is the plain mean over a window
  of pixels around it (:func:`point_half_width_pixels`).
- ``cloud_fraction`` is the share of the plot without a clear pixel: masked, or not
  observed by the acquisition at all (a plot half off a swath edge counts that half).
  A plot whose cloud fraction passes ``CLEAR_MAX_CLOUD`` gets NDVI null: never a value
  made from a sliver of sky. A plot no scene of the acquisition observes gets no row.
- Scenes of one acquisition on the same pixel lattice (MODIS tiles of one sinusoidal grid,
  Sentinel-2 tiles of one UTM zone) form one mosaic: a plot straddling two tiles takes the
  pixels of both, and where tiles overlap a pixel counts once (the first scene by id that
  has data there). Scenes on different lattices (two UTM zones) are not mixed: a plot takes
  the lattice that observes most of it.

Everything here is pure: arrays in, arrays out; the readers and the writer do the I/O.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from nuru_yield.contract import CLEAR_MAX_CLOUD, NDVI_SCHEMA

if TYPE_CHECKING:
    from affine import Affine
    from rasterio.crs import CRS

CLEAR = 0
MASKED = 1
NO_DATA = 255

# A plot given as a point is summarised over the pixels within this many metres of it
# (rounded to whole pixels): 5 x 5 pixels of Sentinel-2 (50 m, a quarter hectare, inside a
# typical smallholder plot), the one pixel holding it at MODIS's 250 m.
POINT_HALF_WIDTH_M = 20.0
DECIMALS = 6  # of the rows' NDVI and cloud fraction
_METRES_PER_DEGREE = 111_320.0
# Two grids are one lattice when their pixel sizes agree to this relative difference and
# their origins differ by whole pixels to this fraction of a pixel. Files of one lattice do
# not agree exactly: GDAL derives a MODIS tile's pixel size from its corners (metres to 3
# decimals), so neighbouring tiles differ in the 10th digit, their origins by 1e-5 pixel.
_LATTICE_TOLERANCE = 1e-3


class BadScene(Exception):
    """A scene that cannot be used (unreadable, truncated, no or unknown CRS, a band
    missing, values outside the product's valid range): quarantined with this reason."""


@dataclass(frozen=True)
class Plots:
    """The plots to summarise, in WGS84 (longitude, latitude): polygons or points."""

    plot_id: np.ndarray  # int64
    geometry: np.ndarray  # shapely geometries

    def __post_init__(self) -> None:
        if len(self.plot_id) != len(self.geometry):
            raise ValueError("one geometry per plot id")

    @classmethod
    def from_points(
        cls, plot_id: Iterable[int], longitude: Iterable[float], latitude: Iterable[float]
    ) -> Plots:
        import shapely

        return cls(
            np.asarray(plot_id, dtype=np.int64),
            shapely.points(np.asarray(longitude, np.float64), np.asarray(latitude, np.float64)),
        )

    def __len__(self) -> int:
        return len(self.plot_id)

    def take(self, index: np.ndarray) -> Plots:
        return Plots(self.plot_id[index], self.geometry[index])

    @cached_property
    def is_polygon(self) -> np.ndarray:
        import shapely

        return np.isin(shapely.get_type_id(self.geometry), (3, 6))  # Polygon, MultiPolygon

    @cached_property
    def wgs84_bounds(self) -> np.ndarray:
        """(west, south, east, north) of each plot, one row per plot."""
        import shapely

        return shapely.bounds(self.geometry)

    def bounds(self) -> tuple[float, float, float, float] | None:
        """(west, south, east, north) of every plot; None when there is none."""
        if not len(self):
            return None
        box = self.wgs84_bounds
        return (
            float(np.nanmin(box[:, 0])),
            float(np.nanmin(box[:, 1])),
            float(np.nanmax(box[:, 2])),
            float(np.nanmax(box[:, 3])),
        )


@dataclass
class Raster:
    """One scene on its own grid, as a product reader returns it.

    ``ndvi`` is finite exactly where ``state`` is ``CLEAR`` (NaN elsewhere); ``transform``
    maps (col, row) to the CRS's (x, y) of a pixel's upper-left corner, north up.
    """

    ndvi: np.ndarray  # float32
    state: np.ndarray  # uint8: CLEAR, MASKED, NO_DATA
    transform: Affine
    crs: CRS

    def __post_init__(self) -> None:
        t = self.transform
        if self.ndvi.shape != self.state.shape or self.ndvi.ndim != 2:
            raise BadScene("NDVI and its mask are not one 2-D grid")
        if t.b != 0 or t.d != 0 or t.a <= 0 or t.e >= 0:
            raise BadScene("the grid is rotated or not north-up")

    @property
    def shape(self) -> tuple[int, int]:
        return self.state.shape  # type: ignore[return-value]

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) in the raster's CRS."""
        t, (height, width) = self.transform, self.shape
        return (t.c, t.f + t.e * height, t.c + t.a * width, t.f)


def assert_consistent(ndvi: np.ndarray, state: np.ndarray) -> np.ndarray:
    """Make ``ndvi`` NaN wherever ``state`` is not ``CLEAR`` and mark clear pixels without a
    finite value as no data; returns ``ndvi`` (float32), for the readers."""
    ndvi = np.asarray(ndvi, dtype=np.float32)
    clear = state == CLEAR
    state[clear & ~np.isfinite(ndvi)] = NO_DATA
    ndvi[state != CLEAR] = np.nan
    return ndvi


Pieces = Raster | Iterable[Raster]


@dataclass(frozen=True)
class Scene:
    """One scene of an acquisition, loaded only when its turn comes (bounded memory).

    ``load(bounds)`` reads it (``bounds``: the WGS84 box of the plots, so a reader can read
    just that window; None for all of it) or raises :class:`BadScene`: one
    :class:`Raster`, or an iterable of them, disjoint pieces of one grid (strips of rows of
    a large scene, read one at a time). A scene that fails part-way contributes nothing.
    """

    scene_id: str
    product: str
    date: dt.date
    source: str
    load: Callable[[tuple[float, float, float, float] | None], Pieces] = field(
        compare=False, repr=False
    )
    # What rebuilds the scene in another process (JSON: the reader's kind and its files;
    # nuru_yield.sources.ndvi.scene_from) and what checks it whole before any plot is read
    # (raises BadScene), so that every shard of a night sees the same scenes.
    ref: dict[str, str | None] = field(default_factory=dict, compare=False)
    check: Callable[[], None] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Quarantined:
    """A scene that was left out, and why."""

    scene_id: str
    source: str
    reason: str


@dataclass
class _Sums:
    """Per plot, over one lattice: observed, clear and clear-weighted NDVI areas, in pixels."""

    area: np.ndarray
    observed: np.ndarray
    clear: np.ndarray
    clear_sum: np.ndarray

    @classmethod
    def zeros(cls, n: int) -> _Sums:
        return cls(*(np.zeros(n) for _ in range(4)))


def acquisition_rows(
    scenes: Sequence[Scene], plots: Plots
) -> tuple[pa.Table, list[str], list[Quarantined]]:
    """The NDVI rows (``NDVI_SCHEMA``) of one acquisition: scenes of one product and date.

    Returns the rows (sorted by plot id), the ids of the scenes used and the scenes
    quarantined (with the reason). Scenes are read one at a time, in id order.
    """
    dates = {scene.date for scene in scenes}
    if len(dates) > 1:
        raise ValueError(f"one acquisition has one date, got {sorted(dates)}")
    bounds = plots.bounds()
    lattices: list[_Lattice] = []
    used: list[str] = []
    bad: list[Quarantined] = []
    for scene in sorted(scenes, key=lambda s: s.scene_id):
        try:
            loaded = scene.load(bounds)
            pieces = iter([loaded] if isinstance(loaded, Raster) else loaded)
            first = next(pieces, None)
            if first is not None:
                lattice = next((one for one in lattices if one.holds(first)), None)
                if lattice is None:
                    lattice = _Lattice(first, len(plots))
                    lattices.append(lattice)
                lattice.add(itertools.chain([first], pieces), plots)
        except BadScene as error:
            bad.append(Quarantined(scene.scene_id, scene.source, str(error)))
            continue
        used.append(scene.scene_id)
    date = next(iter(dates)) if dates else None
    return _rows(plots, [lattice.sums for lattice in lattices], date), used, bad


def same_lattice(a: Affine, a_crs: CRS, b: Affine, b_crs: CRS) -> bool:
    """Whether the pixels of two grids (transform, CRS) coincide where they overlap: the
    same CRS, pixel size and origin up to whole pixels (``_LATTICE_TOLERANCE``)."""
    for size, other_size in ((a.a, b.a), (a.e, b.e)):
        if abs(size - other_size) > _LATTICE_TOLERANCE * 1e-3 * abs(size):
            return False
    for origin, other_origin, size in ((a.c, b.c, a.a), (a.f, b.f, a.e)):
        offset = (origin - other_origin) / size
        if abs(offset - round(offset)) > _LATTICE_TOLERANCE:
            return False
    return bool(a_crs == b_crs)


class _Lattice:
    """The scenes of one acquisition on one pixel lattice, mosaicked as they come. Plots
    are projected into the lattice's CRS when a scene first comes near them (a Sentinel-2
    tile holds a few percent of a country's plots)."""

    def __init__(self, first: Raster, plots: int) -> None:
        self.first = first.transform, first.crs
        self.sums = _Sums.zeros(plots)
        self._area_known = np.zeros(plots, dtype=bool)
        self._observed: list[tuple[Affine, np.ndarray, int]] = []  # earlier scenes' data
        self._projected = np.empty(plots, dtype=object)
        self._box = np.full((plots, 4), np.nan)
        self._known = np.zeros(plots, dtype=bool)

    def holds(self, raster: Raster) -> bool:
        return same_lattice(*self.first, raster.transform, raster.crs)

    def add(self, pieces: Iterable[Raster], plots: Plots) -> None:
        """Add one scene, piece by piece; its sums count only once every piece is read
        (a scene that fails part-way adds nothing)."""
        staged: list[tuple[np.ndarray, _Sums]] = []
        masks: list[tuple[Affine, np.ndarray, int]] = []
        for raster in pieces:
            if not self.holds(raster):
                raise BadScene("the pieces of the scene are not on one grid")
            staged.append(self._sums_of(raster, plots))
            observed = np.packbits(raster.state != NO_DATA, axis=1)
            masks.append((raster.transform, observed, raster.shape[1]))
        for inside, sums in staged:
            self.sums.observed[inside] += sums.observed
            self.sums.clear[inside] += sums.clear
            self.sums.clear_sum[inside] += sums.clear_sum
            new = ~self._area_known[inside]
            self.sums.area[inside[new]] = sums.area[new]
            self._area_known[inside] = True
        self._observed.extend(masks)

    def _sums_of(self, raster: Raster, plots: Plots) -> tuple[np.ndarray, _Sums]:
        """The plots a piece meets and their sums over it (earlier scenes' pixels masked)."""
        import shapely

        _mask_seen(raster, self._observed)
        candidates = _candidates(plots, raster)
        todo = candidates[~self._known[candidates]]
        if todo.size:
            self._projected[todo] = project(plots.geometry[todo], raster.crs)
            self._box[todo] = shapely.bounds(self._projected[todo])
            self._known[todo] = True
        inside = candidates[_near(self._box[candidates], raster, plots.is_polygon[candidates])]
        if not inside.size:
            return inside, _Sums.zeros(0)
        return inside, plot_sums(
            raster, self._projected[inside], plots.is_polygon[inside], self._box[inside]
        )


def _candidates(plots: Plots, raster: Raster) -> np.ndarray:
    """Indices of the plots whose WGS84 bounds meet the raster's, widened by a point's
    window and two pixels (a coarse cut before the exact test in the raster's CRS)."""
    from rasterio.warp import transform_bounds

    if not len(plots) or raster.shape[0] == 0 or raster.shape[1] == 0:
        return np.zeros(0, dtype=np.int64)
    try:
        west, south, east, north = transform_bounds(
            raster.crs, "EPSG:4326", *raster.bounds, densify_pts=21
        )
    except Exception:
        raise BadScene(_unknown_crs(raster.crs)) from None
    latitude = max(abs(south), abs(north))
    pixels = (_half_width(raster) + 2) * raster.transform.a
    if raster.crs.is_geographic:
        margin_y = margin_x = pixels
    else:
        margin_y = pixels / _METRES_PER_DEGREE
        margin_x = margin_y / max(math.cos(math.radians(min(latitude, 89.0))), 1e-6)
    box = plots.wgs84_bounds
    with np.errstate(invalid="ignore"):
        near = (
            (box[:, 2] >= west - margin_x)
            & (box[:, 0] <= east + margin_x)
            & (box[:, 3] >= south - margin_y)
            & (box[:, 1] <= north + margin_y)
        )
    return np.flatnonzero(near)


def _mask_seen(raster: Raster, earlier: list[tuple[Affine, np.ndarray, int]]) -> None:
    """Mark as no data the pixels of ``raster`` that an earlier scene of the same lattice
    already observed: each pixel of a mosaic counts once. ``earlier`` holds each earlier
    scene's transform, observed mask packed by row (``np.packbits(axis=1)``: a bit per
    pixel, so a night of many 10 m tiles stays small) and width."""
    height, width = raster.shape
    for transform, packed, packed_width in earlier:
        col = round((transform.c - raster.transform.c) / raster.transform.a)
        row = round((transform.f - raster.transform.f) / raster.transform.e)
        r0, c0 = max(row, 0), max(col, 0)
        r1, c1 = min(row + packed.shape[0], height), min(col + packed_width, width)
        if r1 <= r0 or c1 <= c0:
            continue
        rows = np.unpackbits(packed[r0 - row : r1 - row], axis=1, count=packed_width)
        seen = rows[:, c0 - col : c1 - col].view(bool)
        raster.state[r0:r1, c0:c1][seen] = NO_DATA
        raster.ndvi[r0:r1, c0:c1][seen] = np.nan


def project(geometry: np.ndarray, crs: CRS) -> np.ndarray:
    """``geometry`` (WGS84 lon/lat) in ``crs``, every vertex transformed exactly (PROJ)."""
    import shapely
    from pyproj import CRS as ProjCRS
    from pyproj import Transformer

    try:
        target = ProjCRS.from_wkt(crs.to_wkt())
        transformer = Transformer.from_crs("EPSG:4326", target, always_xy=True)
    except Exception:
        raise BadScene(_unknown_crs(crs)) from None

    def transform(coords: np.ndarray) -> np.ndarray:
        x, y = transformer.transform(coords[:, 0], coords[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(geometry, transform)


def _unknown_crs(crs: CRS) -> str:
    from pyproj import CRS as ProjCRS

    try:
        name = ProjCRS.from_wkt(crs.to_wkt()).name
    except Exception:
        name = crs.to_string()[:60]
    return f"unknown CRS {name!r}: PROJ knows no way to it from WGS84"


def point_half_width_pixels(pixel_size: float, crs: CRS, latitude: float) -> int:
    """How many pixels on each side of a point's pixel its window takes:
    ``POINT_HALF_WIDTH_M`` in whole pixels (a geographic CRS's degrees taken at
    ``latitude``)."""
    if crs.is_geographic:
        pixel_size *= _METRES_PER_DEGREE * max(math.cos(math.radians(latitude)), 1e-6)
    return round(POINT_HALF_WIDTH_M / pixel_size)


def pixel_box(
    crs: CRS, transform: Affine, bounds: tuple[float, float, float, float]
) -> tuple[int, int, int, int]:
    """(col0, row0, col1, row1), not clipped, of the pixels a grid needs over ``bounds``
    (WGS84 lon/lat): the box in the grid's CRS, widened by a point's window and a pixel, so
    that a reader can read only that window."""
    from rasterio.warp import transform_bounds

    try:
        xmin, ymin, xmax, ymax = transform_bounds("EPSG:4326", crs, *bounds, densify_pts=21)
    except Exception:
        raise BadScene(_unknown_crs(crs)) from None
    pad = point_half_width_pixels(transform.a, crs, (bounds[1] + bounds[3]) / 2) + 1
    col0 = math.floor((xmin - transform.c) / transform.a) - pad
    col1 = math.ceil((xmax - transform.c) / transform.a) + pad
    row0 = math.floor((ymax - transform.f) / transform.e) - pad
    row1 = math.ceil((ymin - transform.f) / transform.e) + pad
    return col0, row0, col1, row1


def _half_width(raster: Raster) -> int:
    middle = (raster.bounds[1] + raster.bounds[3]) / 2  # a latitude when geographic
    return point_half_width_pixels(raster.transform.a, raster.crs, middle)


def _near(box: np.ndarray, raster: Raster, is_polygon: np.ndarray) -> np.ndarray:
    """Indices of the plots whose geometry (or point window) can touch the raster, from
    their bounds (``box``, in the raster's CRS)."""
    xmin, ymin, xmax, ymax = raster.bounds
    margin = np.where(is_polygon, 0.0, (_half_width(raster) + 1) * raster.transform.a)
    with np.errstate(invalid="ignore"):
        near = (
            (box[:, 2] + margin >= xmin)
            & (box[:, 0] - margin <= xmax)
            & (box[:, 3] + margin >= ymin)
            & (box[:, 1] - margin <= ymax)
        )
    return np.flatnonzero(near)


def plot_sums(
    raster: Raster, projected: np.ndarray, is_polygon: np.ndarray, box: np.ndarray
) -> _Sums:
    """Observed, clear and clear-weighted NDVI areas (in pixels) of each plot in one raster,
    and the plot's own area (polygons: its area in pixels; points: the window's pixels);
    ``box`` holds the plots' bounds in the raster's CRS."""
    sums = _Sums.zeros(len(projected))
    polygons = np.flatnonzero(is_polygon)
    points = np.flatnonzero(~is_polygon)
    if polygons.size:
        part = polygon_sums(raster, projected[polygons], box[polygons])
        for name in ("area", "observed", "clear", "clear_sum"):
            getattr(sums, name)[polygons] = getattr(part, name)
    if points.size:
        part = window_sums(raster, projected[points])
        for name in ("area", "observed", "clear", "clear_sum"):
            getattr(sums, name)[points] = getattr(part, name)
    return sums


def window_sums(raster: Raster, points: np.ndarray) -> _Sums:
    """Plain sums over the window of pixels around each point (``point_half_width_pixels``
    on each side of the pixel holding it); pixels off the raster are not observed."""
    import shapely

    half = _half_width(raster)
    t = raster.transform
    height, width = raster.shape
    x, y = shapely.get_x(points), shapely.get_y(points)
    col = np.floor((x - t.c) / t.a).astype(np.int64)
    row = np.floor((y - t.f) / t.e).astype(np.int64)
    sums = _Sums.zeros(len(points))
    sums.area[:] = (2 * half + 1) ** 2
    for dr in range(-half, half + 1):
        for dc in range(-half, half + 1):
            r, c = row + dr, col + dc
            inside = (r >= 0) & (r < height) & (c >= 0) & (c < width)
            state = np.full(len(points), NO_DATA, dtype=np.uint8)
            state[inside] = raster.state[r[inside], c[inside]]
            clear = state == CLEAR
            sums.observed += state != NO_DATA
            sums.clear += clear
            value = np.zeros(len(points))
            value[clear] = raster.ndvi[r[clear], c[clear]]
            sums.clear_sum += value
    return sums


def polygon_sums(raster: Raster, polygons: np.ndarray, box: np.ndarray) -> _Sums:
    """Area-weighted sums over each polygon (exactextract: every pixel weighted by the
    share of it inside the polygon); ``box`` holds the polygons' bounds in the raster's CRS.

    One pass over the NDVI (NaN where not clear) gives the clear area and sum. The observed
    area is the polygon's own area where every pixel of its bounding box lies in the raster
    with data (nearly every plot); only the others take a second, exact pass over the pixel
    states. This halves exactextract's per-plot cost against passing both rasters for all."""
    import shapely

    wkb = shapely.to_wkb(polygons)
    clear, clear_sum = coverage_sums(raster.ndvi, raster.bounds, wkb)
    area = shapely.area(polygons) / (raster.transform.a * -raster.transform.e)
    observed = area.copy()
    partial = np.flatnonzero(_may_miss_data(raster, box))
    if partial.size:
        observed[partial], _ = coverage_sums(
            raster.state, raster.bounds, wkb[partial], nodata=NO_DATA
        )
    return _Sums(area=area, observed=observed, clear=clear, clear_sum=clear_sum)


# Pixels per side of the blocks in which _may_miss_data looks for no data.
_NO_DATA_BLOCK = 16


def _may_miss_data(raster: Raster, box: np.ndarray) -> np.ndarray:
    """For each bounding box (in the raster's CRS): whether some of it lies off the raster
    or in a block of ``_NO_DATA_BLOCK`` pixels holding a no-data pixel. False proves that
    every pixel under the polygon has data; True only asks for the exact count."""
    t, (height, width) = raster.transform, raster.shape
    with np.errstate(invalid="ignore"):
        col0 = np.floor((box[:, 0] - t.c) / t.a)
        col1 = np.ceil((box[:, 2] - t.c) / t.a)
        row0 = np.floor((box[:, 3] - t.f) / t.e)
        row1 = np.ceil((box[:, 1] - t.f) / t.e)
        inside = (col0 >= 0) & (row0 >= 0) & (col1 <= width) & (row1 <= height)
    missing = raster.state == NO_DATA
    if not missing.any() or not inside.any():
        return ~inside
    size = _NO_DATA_BLOCK
    blocks = np.logical_or.reduceat(missing, np.arange(0, height, size), axis=0)
    blocks = np.logical_or.reduceat(blocks, np.arange(0, width, size), axis=1)
    table = np.zeros((blocks.shape[0] + 1, blocks.shape[1] + 1), dtype=np.int64)
    table[1:, 1:] = blocks.cumsum(axis=0).cumsum(axis=1)
    where = np.flatnonzero(inside)
    r0, c0 = row0[where].astype(np.int64) // size, col0[where].astype(np.int64) // size
    r1 = (row1[where].astype(np.int64) - 1) // size + 1
    c1 = (col1[where].astype(np.int64) - 1) // size + 1
    r1, c1 = np.maximum(r1, r0 + 1), np.maximum(c1, c0 + 1)  # a box of zero width
    holes = table[r1, c1] - table[r0, c1] - table[r1, c0] + table[r0, c0]
    result = ~inside
    result[where] = holes > 0
    return result


def coverage_sums(
    values: np.ndarray,
    bounds: tuple[float, float, float, float],
    wkb: Sequence[bytes],
    nodata: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """exactextract's ``count`` and ``sum`` of ``values`` (a north-up grid over ``bounds``,
    (xmin, ymin, xmax, ymax)) for each polygon (WKB, in the grid's CRS): the covered area of
    the pixels with a value (not NaN, not ``nodata``), in pixels, and their coverage-weighted
    sum. Features go in as WKB and results come out as arrays, without exactextract's
    GeoJSON/pandas adapters (several times the extraction itself on small plots)."""
    try:
        from exactextract import exact_extract
        from exactextract.raster import NumPyRasterSource
    except ImportError:  # no wheel on Linux aarch64 (requirements.in)
        raise BadScene(
            "plots given as polygons need exactextract, which is not installed on this "
            "platform (it has no wheel for Linux aarch64); give plots as points"
        ) from None
    source = NumPyRasterSource(values, *bounds, nodata=nodata, name="v")
    out = exact_extract(source, _WkbFeatures(wkb), ["count", "sum"], output=_ArrayWriter(len(wkb)))
    return out["count"], out["sum"]


def _rows(plots: Plots, lattices: list[_Sums], date: dt.date | None) -> pa.Table:
    """Rows for the plots some lattice observed: each takes the lattice observing most of
    it (the first on a tie)."""
    if not lattices or date is None:
        return NDVI_SCHEMA.empty_table()
    observed = np.stack([sums.observed for sums in lattices])
    best = np.argmax(observed, axis=0)
    pick = np.arange(len(plots))

    def take(name: str) -> np.ndarray:
        return np.stack([getattr(sums, name) for sums in lattices])[best, pick]

    seen = observed[best, pick] > 0
    area, clear, clear_sum = take("area")[seen], take("clear")[seen], take("clear_sum")[seen]
    with np.errstate(invalid="ignore", divide="ignore"):
        cloud = np.clip(1.0 - clear / area, 0.0, 1.0)
        ndvi = np.clip(clear_sum / clear, -1.0, 1.0)
    # Pixels hold float32 NDVI and exactextract float32 coverage fractions: 7 significant
    # digits, so 6 decimals drop their noise (a pixel of MODIS DN 4000 gives 0.4, not
    # 0.39999998) and keep more than any sensor resolves.
    ndvi, cloud = np.round(ndvi, DECIMALS), np.round(cloud, DECIMALS) + 0.0  # no -0.0
    usable = (clear > 0) & (cloud <= CLEAR_MAX_CLOUD)
    ids = plots.plot_id[seen]
    order = np.argsort(ids, kind="stable")
    return pa.table(
        {
            "plot_id": pa.array(ids[order], pa.int64()),
            "date": pa.array(np.full(len(ids), np.datetime64(date, "D")), pa.date32()),
            "ndvi": pa.array(ndvi[order], pa.float64(), mask=~usable[order]),
            "cloud_fraction": pa.array(cloud[order], pa.float64()),
        },
        schema=NDVI_SCHEMA,
    )


# --- exactextract adapters: WKB in, numpy arrays out. exactextract's feature-sequential
# processor reads the features in order and writes one result per feature, in the same
# order (also for a feature off the raster), so the n-th result is the n-th feature's. ---
def _exactextract_types() -> tuple[type, type, type]:
    from exactextract._exactextract import Feature
    from exactextract.feature import FeatureSource
    from exactextract.writer import Writer

    return Feature, FeatureSource, Writer


class _WkbFeatures:
    """An exactextract feature source over WKB geometries (the classes are built on call:
    exactextract may be absent)."""

    def __new__(cls, wkb: Sequence[bytes]) -> Any:
        feature_base, source_base, _ = _exactextract_types()

        class Feature(feature_base):  # type: ignore[misc, valid-type]
            __slots__ = ("wkb",)

            def __init__(self, geometry: bytes) -> None:
                feature_base.__init__(self)
                self.wkb = geometry

            def geometry(self) -> bytes:
                return self.wkb

            def set_geometry_format(self) -> str:
                return "wkb"

            def fields(self) -> list[str]:
                return []

        class Source(source_base):  # type: ignore[misc, valid-type]
            def __init__(self) -> None:
                source_base.__init__(self)

            def count(self) -> int:
                return len(wkb)

            def __iter__(self) -> Any:
                return map(Feature, wkb)

            def srs_wkt(self) -> None:
                return None

        return Source()


class _ArrayWriter:
    """An exactextract writer filling one float array per operation, the n-th result into
    element n."""

    def __new__(cls, n: int) -> Any:
        feature_base, _, writer_base = _exactextract_types()
        out: dict[str, np.ndarray] = {}

        class Sink(feature_base):  # type: ignore[misc, valid-type]
            def __init__(self) -> None:
                feature_base.__init__(self)
                self.index = 0

            def set(self, name: str, value: Any) -> None:
                out[name][self.index] = value

            def set_geometry(self, geometry: Any) -> None:
                pass

            def set_geometry_format(self) -> str:
                return "wkb"

        class Writer(writer_base):  # type: ignore[misc, valid-type]
            def __init__(self) -> None:
                writer_base.__init__(self)
                self.sink = Sink()

            def add_operation(self, op: Any) -> None:
                out[op.name] = np.zeros(n)

            def add_column(self, name: str) -> None:
                pass

            def write(self, feature: Any) -> None:
                feature.copy_to(self.sink)
                self.sink.index += 1

            def finish(self) -> None:
                if self.sink.index != n:
                    raise RuntimeError(f"exactextract wrote {self.sink.index} results of {n}")

            def features(self) -> dict[str, np.ndarray]:
                return out

        return Writer()
