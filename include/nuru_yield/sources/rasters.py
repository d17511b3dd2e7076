"""Checks and point sampling shared by the gridded products (CHIRPS, AgERA5).

A product's grid is checked against its published definition before a value is taken
(spacing, where its pixel centres fall, that it covers every weather cell), and values are
taken at the weather cells by index arithmetic on the checked axes: the grid is regular,
so the pixel holding a point is ``round((coordinate - first centre) / step)``. Reading
stays with the libraries (xarray + netCDF4, rasterio); this module only checks and indexes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nuru_yield.errors import DataValidationError

# Products keep float32: its 7 significant digits, rounded here to 3 decimals (0.001 mm,
# 0.001 °C, 0.001 MJ m-2), give back the decimal value a producer wrote.
DECIMALS = 3


@dataclass(frozen=True)
class Axis:
    """A regular coordinate axis: ``size`` pixel centres from ``first``, ``step`` apart
    (negative when the axis runs north to south)."""

    name: str
    first: float
    step: float
    size: int

    @classmethod
    def of(cls, name: str, values: np.ndarray, step: float, origin: float, where: str) -> Axis:
        """The axis of ``values``, checked to be regular with ``|step|`` spacing and
        centres at ``origin`` + k·step (the product's grid); ``where`` names the file."""
        values = np.asarray(values, dtype=np.float64)
        if values.size == 0:
            raise DataValidationError(f"{where}: the {name} axis is empty")
        spacing = np.diff(values) if values.size > 1 else np.array([step])
        if not np.allclose(np.abs(spacing), step, atol=step * 1e-3) or (
            values.size > 1 and not (np.all(spacing > 0) or np.all(spacing < 0))
        ):
            found = float(np.median(np.abs(spacing)))
            raise DataValidationError(
                f"{where}: {name} spacing is {found:g}°, not the product's {step:g}° grid"
            )
        offset = (values[0] - origin) / step
        if abs(offset - round(offset)) > 1e-2:
            raise DataValidationError(
                f"{where}: {name} pixel centres at {values[0]:.4f}… are not on the product's "
                f"grid (centres at {origin:g} + k × {step:g}°)"
            )
        return cls(name, float(values[0]), float(spacing[0]), int(values.size))

    @property
    def bounds(self) -> tuple[float, float]:
        ends = (self.first, self.first + self.step * (self.size - 1))
        half = abs(self.step) / 2
        return min(ends) - half, max(ends) + half

    def index(self, coordinates: np.ndarray) -> np.ndarray:
        """Index of the pixel holding each coordinate; −1 outside the axis."""
        position = np.rint((np.asarray(coordinates, dtype=np.float64) - self.first) / self.step)
        inside = (position >= 0) & (position < self.size)
        return np.where(inside, position, -1).astype(np.int64)


def pixel_indices(
    latitude: Axis, longitude: Axis, lat: np.ndarray, lon: np.ndarray, where: str
) -> tuple[np.ndarray, np.ndarray]:
    """Row and column of the pixel at each point; a grid that misses any point is an error
    naming how many and one of them (plots outside the grid would get no weather)."""
    rows, cols = latitude.index(lat), longitude.index(lon)
    outside = (rows < 0) | (cols < 0)
    if outside.any():
        first = int(np.flatnonzero(outside)[0])
        (south, north), (west, east) = latitude.bounds, longitude.bounds
        raise DataValidationError(
            f"{where}: the grid ({south:g}…{north:g}° N, {west:g}…{east:g}° E) does not "
            f"cover {int(outside.sum())} weather cell(s) with plots, e.g. "
            f"{lat[first]:.3f}, {lon[first]:.3f}"
        )
    return rows, cols


_PIXELS: dict[tuple[object, ...], tuple[np.ndarray, np.ndarray]] = {}


def grid_pixels(
    lat_values: np.ndarray,
    lon_values: np.ndarray,
    step: float,
    origin: float,
    lat: np.ndarray,
    lon: np.ndarray,
    where: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Row and column of the pixel at each point on a product grid given by its axes'
    values: :meth:`Axis.of` both axes, then :func:`pixel_indices`. The answer is kept for
    the next file on the same grid (a year of AgERA5 is 1,095 files on one grid)."""
    lat_values = np.asarray(lat_values, dtype=np.float64)
    lon_values = np.asarray(lon_values, dtype=np.float64)
    key = (lat_values.tobytes(), lon_values.tobytes(), step, origin, lat.tobytes(), lon.tobytes())
    found = _PIXELS.get(key)
    if found is None:
        latitude = Axis.of("latitude", lat_values, step, origin, where)
        longitude = Axis.of("longitude", lon_values, step, origin, where)
        found = pixel_indices(latitude, longitude, lat, lon, where)
        if len(_PIXELS) >= 8:
            _PIXELS.clear()
        _PIXELS[key] = found
    return found


def sample(values: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Values of a (…, rows, cols) array at the given pixels, read as one bounding window
    first (a product's grid is much larger than the area holding plots)."""
    if rows.size == 0:
        return np.empty((*values.shape[:-2], 0))
    r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    window = values[..., r0:r1, c0:c1]
    window = getattr(window, "values", window)  # an xarray DataArray's data
    return np.ma.asanyarray(window)[..., rows - r0, cols - c0]  # a netCDF4 mask is kept


def first_line(error: BaseException) -> str:
    """A library error's first line (netCDF and GDAL messages run over several), from the
    innermost error it was raised from: rasterio's "Read failed. See previous exception
    for details." is raised from GDAL's own, which says what failed ("got 1762 bytes,
    expected 3152": a truncated file)."""
    while (inner := error.__cause__ or error.__context__) is not None:
        error = inner
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
