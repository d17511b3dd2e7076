"""AgERA5 daily temperature and radiation (Copernicus C3S, CDS dataset
``sis-agrometeorological-indicators``), as downloaded.

One NetCDF per variable per day, named
``{Variable-Name}_C3S-glob-agric_AgERA5_{YYYYMMDD}_final-v{1.0|1.1|2.0}.nc`` (the variable's
name with dashes; inside, with underscores), on a global 0.1° grid of pixel centres at
multiples of 0.1° (``lat`` / ``lon``, or ``latitude`` / ``longitude`` in files from the
newer CDS), one ``time`` step, temperatures in K, solar radiation in J m⁻² d⁻¹
(docs/DESIGN.md, "Real sources"). Read with netCDF4 directly: a year is 1,095 small files,
and xarray's dataset machinery cost 10 ms per file against 2.4 ms (measured here).

The weather contract's ``tmax_c`` / ``tmin_c`` come from the 24-hour extremes
(``Temperature_Air_2m_Max_24h`` / ``Temperature_Air_2m_Min_24h``: the daily extremes a
degree-day formula means); where a day has only the day-time maximum / night-time minimum
(``…_Max_Day_Time`` / ``…_Min_Night_Time``) those are used. ``srad_mj_m2`` comes from
``Solar_Radiation_Flux``. For one day and variable the newest product version wins.
Temperatures are taken from the AgERA5 pixel at the weather cell's centre.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from nuru_yield.errors import DataValidationError
from nuru_yield.sources.rasters import DECIMALS, first_line, grid_pixels, sample

PRODUCT = "agera5"
STEP_DEG = 0.1
KELVIN = 273.15
NAME = re.compile(
    r"^(?P<variable>[A-Za-z0-9-]+)_C3S-glob-agric_AgERA5_(?P<day>\d{8})_final-v(?P<version>\d+\.\d+)\.nc$"
)
NAMING = "{Variable-Name}_C3S-glob-agric_AgERA5_YYYYMMDD_final-vX.Y.nc"
# Contract column ← AgERA5 variables, preferred first.
COLUMNS: dict[str, tuple[str, ...]] = {
    "tmax_c": ("Temperature_Air_2m_Max_24h", "Temperature_Air_2m_Max_Day_Time"),
    "tmin_c": ("Temperature_Air_2m_Min_24h", "Temperature_Air_2m_Min_Night_Time"),
    "srad_mj_m2": ("Solar_Radiation_Flux",),
}
VARIABLES = {variable: column for column, names in COLUMNS.items() for variable in names}
# Plausible 2 m air temperature in K; a file whose values sit below this range is in °C.
KELVIN_RANGE = (180.0, 340.0)
J_PER_DAY = {"j m-2 d-1", "j m-2 day-1", "j m**-2 d**-1", "j/m2/d", "j m-2"}


@dataclass(frozen=True)
class Agera5File:
    """What an AgERA5 file's name says."""

    variable: str  # with underscores, as inside the file
    day: dt.date
    version: str

    @property
    def column(self) -> str | None:
        """The contract column it feeds (None: a variable the pipeline does not use)."""
        return VARIABLES.get(self.variable)

    @property
    def rank(self) -> tuple[int, tuple[int, ...]]:
        """Which file wins for a day and column: the preferred variable, then the newest
        version."""
        assert self.column is not None
        preference = COLUMNS[self.column].index(self.variable)
        return (-preference, tuple(int(part) for part in self.version.split(".")))


def describe(uri: str) -> Agera5File | None:
    """The variable, day and version of an AgERA5 file from its name; None when it is not
    named as the CDS names AgERA5 files."""
    match = NAME.match(uri.rstrip("/").rsplit("/", 1)[-1])
    if match is None:
        return None
    try:
        day = dt.datetime.strptime(match.group("day"), "%Y%m%d").date()
    except ValueError:
        return None
    return Agera5File(match.group("variable").replace("-", "_"), day, match.group("version"))


def read_agera5(path: Path, name: str, cells: pd.DataFrame) -> tuple[Agera5File, np.ndarray]:
    """The values of one AgERA5 file at ``cells``' centres, in the contract's units
    (°C, MJ m⁻² d⁻¹; fill values as NaN), with what the file is."""
    described = describe(name)
    if described is None or described.column is None:
        raise DataValidationError(
            f"{name}: not an AgERA5 file of a variable the pipeline uses ({NAMING}; "
            f"variables {', '.join(sorted(VARIABLES))})"
        )
    import netCDF4

    try:
        dataset = netCDF4.Dataset(path)
    except Exception as error:
        raise DataValidationError(
            f"{name}: not a readable NetCDF file ({first_line(error)})"
        ) from None
    with dataset:
        if described.variable not in dataset.variables:
            present = [v for v in dataset.variables if v not in dataset.dimensions]
            raise DataValidationError(
                f"{name}: no variable {described.variable!r} (has {', '.join(present) or 'none'})"
            )
        variable = dataset.variables[described.variable]
        dims = variable.dimensions
        lat_name = next((d for d in dims if d in ("lat", "latitude")), None)
        lon_name = next((d for d in dims if d in ("lon", "longitude")), None)
        if lat_name is None or lon_name is None or dims[-2:] != (lat_name, lon_name):
            raise DataValidationError(f"{name}: dimensions {dims} are not (time,) lat, lon")
        shown = _days(dataset, name)
        if shown != [described.day.isoformat()]:
            raise DataValidationError(
                f"{name}: holds day(s) {', '.join(shown) or 'none'}, not the "
                f"{described.day} its name gives"
            )
        rows, cols = grid_pixels(
            _axis_values(dataset.variables[lat_name]),
            _axis_values(dataset.variables[lon_name]),
            STEP_DEG,
            0.0,
            cells["latitude"].to_numpy(np.float64),
            cells["longitude"].to_numpy(np.float64),
            name,
        )
        units = str(getattr(variable, "units", "")).strip()
        try:
            values = _values(variable, rows, cols)
        except Exception as error:
            raise DataValidationError(f"{name}: cannot read values ({first_line(error)})") from None
    return described, np.round(_converted(name, described, units, values), DECIMALS)


def _axis_values(variable) -> np.ndarray:
    variable.set_auto_mask(False)
    return variable[:]


# Attributes under which netCDF4's masking (CF: fill values, valid range) and unpacking
# (scale, offset) do more than compare with the fill value.
_MASKED = ("scale_factor", "add_offset", "valid_min", "valid_max", "valid_range")


def _values(variable, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """The variable at the pixels as float64, its fill values NaN. A float variable whose
    only missing marker is its fill value (AgERA5's) is read unmasked and its fill value
    replaced (numpy masked arrays cost more than the read); any other through netCDF4's
    masking and unpacking."""
    import netCDF4

    if any(hasattr(variable, attribute) for attribute in _MASKED):
        picked = sample(variable, rows, cols)  # masked where the file's markers are
        return np.ma.filled(np.ma.asarray(picked, dtype=np.float64), np.nan).reshape(-1)
    variable.set_auto_mask(False)
    values = np.asarray(sample(variable, rows, cols), dtype=np.float64).reshape(-1)
    default = netCDF4.default_fillvals.get(variable.dtype.str[1:])
    for marker in (
        getattr(variable, "_FillValue", default),
        getattr(variable, "missing_value", None),
    ):
        if marker is not None:
            values[values == np.float64(np.asarray(marker, dtype=variable.dtype))] = np.nan
    return values


def _days(dataset, name: str) -> list[str]:
    """The file's days as ISO dates (its ``time`` axis decoded with its units)."""
    if "time" not in dataset.variables:
        return []
    time = dataset.variables["time"]
    try:
        epoch, unit = _time_axis(str(time.units), str(getattr(time, "calendar", "standard")))
        values = np.atleast_1d(np.asarray(_axis_values(time), dtype=np.float64))
        if epoch is None:
            import netCDF4

            stamps = netCDF4.num2date(
                values, time.units, time.calendar, only_use_cftime_datetimes=False
            )
        else:
            stamps = [epoch + unit * float(value) for value in values]
    except Exception as error:
        raise DataValidationError(f"{name}: time axis is not dates ({first_line(error)})") from None
    return [stamp.isoformat()[:10] for stamp in np.atleast_1d(stamps)]


@functools.lru_cache(maxsize=16)
def _time_axis(units: str, calendar: str) -> tuple[dt.datetime | None, dt.timedelta]:
    """The epoch and the length of one unit of a CF time axis, decoded by cftime once per
    units and calendar; no epoch (decode every value) where units are not all alike long
    (calendars other than the proleptic Gregorian, or the standard one before 1583)."""
    import netCDF4

    first, second = netCDF4.num2date(
        [0, 1], units, calendar, only_use_cftime_datetimes=False, only_use_python_datetimes=True
    )
    uniform = calendar.lower() == "proleptic_gregorian" or (
        calendar.lower() in ("standard", "gregorian") and first.year > 1582
    )
    return (first if uniform else None), second - first


def _converted(name: str, file: Agera5File, units: str, values: np.ndarray) -> np.ndarray:
    """Kelvin to °C, J to MJ; a file in other units is an error naming what it says."""
    valid = values[~np.isnan(values)]
    if file.column == "srad_mj_m2":
        if units.lower() not in J_PER_DAY:
            raise DataValidationError(
                f"{name}: {file.variable} is in {units or 'no stated unit'!r}, not J m-2 d-1 "
                "as AgERA5 publishes it"
            )
        if valid.size and (valid.min() < 0 or valid.max() > 5e7):
            raise DataValidationError(
                f"{name}: solar radiation {valid.min():g}…{valid.max():g} J m-2 d-1 is not "
                "a daily total"
            )
        return values / 1e6
    low, high = KELVIN_RANGE
    if units != "K":
        raise DataValidationError(
            f"{name}: {file.variable} is in {units or 'no stated unit'!r}, not K as AgERA5 "
            "publishes it (a file already in °C is not converted silently)"
        )
    if valid.size and (valid.min() < low or valid.max() > high):
        hint = " — already °C?" if valid.max() < low else ""
        raise DataValidationError(
            f"{name}: temperatures {valid.min():g}…{valid.max():g} are not air temperatures "
            f"in K ({low:g}…{high:g}){hint}"
        )
    return values - KELVIN
