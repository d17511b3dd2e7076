"""CHIRPS v2.0 daily rainfall (Climate Hazards Center, UC Santa Barbara), as downloaded.

Two forms of the same 0.05° grid (docs/DESIGN.md, "Real sources"):

* the yearly NetCDF ``chirps-v2.0.{YYYY}.days_p05.nc``: variable ``precip`` (mm/day),
  dimensions ``time × latitude × longitude``, latitude running south to north, quasi-global
  (50° S–50° N), missing values ``_FillValue`` / ``missing_value`` −9999;
* the Africa daily GeoTIFF ``chirps-v2.0.{YYYY}.{MM}.{DD}.tif`` (also ``.tif.gz``): one
  float32 band in mm/day, WGS 84 (EPSG:4326), north-up (first row the northernmost),
  20° W–55° E × 40° S–40° N, nodata −9999.

Preliminary data (the CHC's ``prelim/`` folders, same file names) is replaced by final data
later: a file whose path has a ``prelim`` folder is version ``prelim``, any other ``final``.

Readers are pure: a local file and the weather cells in, a frame of ``cell_id``, ``date``,
``precip_mm`` out (fill values as nulls, never as rain). Anything off the product's
conventions raises :class:`~nuru_yield.errors.DataValidationError` naming the file.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from nuru_yield.errors import DataValidationError
from nuru_yield.grid import CELL_DEG
from nuru_yield.sources.rasters import DECIMALS, Axis, first_line, pixel_indices, sample

PRODUCT = "chirps"
VARIABLE = "precip"
FILL_VALUE = -9999.0
ORIGIN = CELL_DEG / 2  # pixel centres at 0.025 + k × 0.05 (edges on the 0.05° grid)
YEARLY = re.compile(r"^chirps-v2\.0\.(\d{4})\.days_p05\.nc$")
DAILY = re.compile(r"^chirps-v2\.0\.(\d{4})\.(\d{2})\.(\d{2})\.tif(\.gz)?$")
NAMING = "chirps-v2.0.YYYY.days_p05.nc or chirps-v2.0.YYYY.MM.DD.tif[.gz]"
# Units the NetCDF's ``precip`` may state for mm per day (CF spellings included).
MM_PER_DAY = {"mm/day", "mm day-1", "mm d-1", "mm/d", "mm day^-1", "kg m-2 day-1"}
# A day of CHIRPS rain above this is not rain (the wettest days on record are ~1,800 mm).
MAX_DAILY_MM = 2000.0


@dataclass(frozen=True)
class ChirpsFile:
    """What a CHIRPS file's name and path say: its form, year, day (daily files) and
    version."""

    yearly: bool
    year: int
    day: dt.date | None
    version: str


def describe(uri: str) -> ChirpsFile | None:
    """The file's form, dates and version from its name and path; None when it is not
    named as CHIRPS names its files."""
    name = uri.rstrip("/").rsplit("/", 1)[-1]
    version = "prelim" if "/prelim/" in f"/{uri.lower()}" else "final"
    if match := YEARLY.match(name):
        return ChirpsFile(True, int(match.group(1)), None, version)
    if match := DAILY.match(name):
        try:
            day = dt.date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
        except ValueError:
            return None
        return ChirpsFile(False, day.year, day, version)
    return None


def read_chirps(
    path: Path, name: str, cells: pd.DataFrame, days: list[dt.date] | None = None
) -> tuple[list[dt.date], np.ndarray]:
    """Daily rain of ``cells`` (``cell_id``, ``latitude``, ``longitude``: pixel centres)
    from one CHIRPS file: its days and their rain (days × cells, mm, fill values as NaN);
    ``days`` limits a yearly file to those days (None: all)."""
    described = describe(name)
    if described is None:
        raise DataValidationError(f"{name}: not a CHIRPS v2.0 file name ({NAMING})")
    if described.yearly:
        return _read_netcdf(path, name, described.year, cells, days)
    assert described.day is not None
    return _read_geotiff(path, name, described.day, cells)


def yearly_days(path: Path, name: str) -> list[dt.date]:
    """The days a yearly NetCDF holds (its ``time`` axis)."""
    with _open_netcdf(path, name) as dataset:
        return _days(dataset, name, int(YEARLY.match(name).group(1)))  # type: ignore[union-attr]


def _open_netcdf(path: Path, name: str):
    import xarray as xr

    try:
        return xr.open_dataset(path, engine="netcdf4", mask_and_scale=True, cache=False)
    except Exception as error:
        raise DataValidationError(
            f"{name}: not a readable NetCDF file ({first_line(error)})"
        ) from None


def _days(dataset, name: str, year: int) -> list[dt.date]:
    if "time" not in dataset.coords:
        raise DataValidationError(f"{name}: no time axis")
    try:
        days = [dt.date.fromisoformat(str(t)[:10]) for t in dataset["time"].values]
    except ValueError as error:
        raise DataValidationError(f"{name}: time axis is not dates ({error})") from None
    wrong = [day for day in days if day.year != year]
    if wrong:
        raise DataValidationError(f"{name}: holds {wrong[0]}, outside the year {year} it names")
    return days


def _read_netcdf(
    path: Path, name: str, year: int, cells: pd.DataFrame, wanted: list[dt.date] | None
) -> tuple[list[dt.date], np.ndarray]:
    with _open_netcdf(path, name) as dataset:
        if VARIABLE not in dataset:
            raise DataValidationError(
                f"{name}: no variable {VARIABLE!r} (has {', '.join(map(str, dataset.data_vars))})"
            )
        precip = dataset[VARIABLE]
        units = str(precip.attrs.get("units", "")).strip()
        if units.lower() not in MM_PER_DAY:
            raise DataValidationError(
                f"{name}: {VARIABLE} is in {units or 'no stated unit'!r}, not mm/day as CHIRPS "
                "publishes it (rain in metres or per hour is not converted silently)"
            )
        lat_name, lon_name = _axis_names(precip.dims, name)
        latitude = Axis.of("latitude", dataset[lat_name].values, CELL_DEG, ORIGIN, name)
        longitude = Axis.of("longitude", dataset[lon_name].values, CELL_DEG, ORIGIN, name)
        rows, cols = pixel_indices(
            latitude, longitude, cells["latitude"].to_numpy(), cells["longitude"].to_numpy(), name
        )
        days = _days(dataset, name, year)
        index = [i for i, day in enumerate(days) if wanted is None or day in set(wanted)]
        if wanted is not None and len(index) < len(set(wanted)):
            missing = sorted(set(wanted) - set(days))
            raise DataValidationError(f"{name}: has no day {missing[0]} ({len(missing)} missing)")
        ordered = precip.transpose("time", lat_name, lon_name)
        try:
            values = sample(ordered.isel(time=index), rows, cols)
        except Exception as error:
            raise DataValidationError(
                f"{name}: cannot read {VARIABLE} ({first_line(error)})"
            ) from None
    return [days[i] for i in index], _rain(name, values)


def _read_geotiff(
    path: Path, name: str, day: dt.date, cells: pd.DataFrame
) -> tuple[list[dt.date], np.ndarray]:
    import rasterio
    from rasterio.crs import CRS

    source = f"/vsigzip/{path}" if name.endswith(".gz") else str(path)
    try:
        with rasterio.open(source) as raster:
            if raster.crs is None or raster.crs != CRS.from_epsg(4326):
                raise DataValidationError(
                    f"{name}: CRS is {raster.crs or 'missing'}, not WGS 84 (EPSG:4326) as "
                    "CHIRPS serves its GeoTIFFs"
                )
            transform = raster.transform
            if transform.b or transform.d or transform.e >= 0:
                raise DataValidationError(f"{name}: not a north-up grid (transform {transform})")
            lon_centres = transform.c + transform.a * (np.arange(raster.width) + 0.5)
            lat_centres = transform.f + transform.e * (np.arange(raster.height) + 0.5)
            latitude = Axis.of("latitude", lat_centres, CELL_DEG, ORIGIN, name)
            longitude = Axis.of("longitude", lon_centres, CELL_DEG, ORIGIN, name)
            rows, cols = pixel_indices(
                latitude,
                longitude,
                cells["latitude"].to_numpy(),
                cells["longitude"].to_numpy(),
                name,
            )
            if rows.size:
                window = rasterio.windows.Window(
                    cols.min(), rows.min(), cols.max() - cols.min() + 1, rows.max() - rows.min() + 1
                )
                block = raster.read(1, window=window, masked=False).astype(np.float64)
                values = block[rows - rows.min(), cols - cols.min()][None, :]
            else:
                values = np.empty((1, 0))
            nodata = raster.nodata
    except DataValidationError:
        raise
    except Exception as error:
        raise DataValidationError(f"{name}: not a readable GeoTIFF ({first_line(error)})") from None
    if nodata is not None:
        values = np.where(values == nodata, np.nan, values)
    return [day], _rain(name, values)


def _axis_names(dims: tuple[str, ...], name: str) -> tuple[str, str]:
    lat = next((d for d in dims if d in ("latitude", "lat", "y")), None)
    lon = next((d for d in dims if d in ("longitude", "lon", "x")), None)
    if lat is None or lon is None or "time" not in dims:
        raise DataValidationError(
            f"{name}: {VARIABLE} has dimensions {dims}, not time × latitude × longitude"
        )
    return lat, lon


def _rain(name: str, values: np.ndarray) -> np.ndarray:
    """Rain (days × cells) with fill values as NaN; negative or impossible rain is an
    error."""
    values = np.asarray(values, dtype=np.float64)
    values[values == FILL_VALUE] = np.nan
    bad = ~np.isnan(values) & ((values < 0) | (values > MAX_DAILY_MM))
    if bad.any():
        raise DataValidationError(
            f"{name}: {int(bad.sum())} value(s) outside 0…{MAX_DAILY_MM:g} mm/day that are "
            f"not the fill value {FILL_VALUE:g} (e.g. {values[bad][0]:g}): not CHIRPS rain"
        )
    return np.round(values, DECIMALS)
