"""Stochastic daily weather on the 0.05° CHIRPS pixels (:mod:`nuru_yield.grid`) for Kenyan maize counties.

Rain: a bimodal (east) or long unimodal (west) climatology of expected daily rain, turned
into a two-state Markov chain of wet days with gamma amounts; wet-day occurrence is
correlated across the cells of a county, and every county-season gets a yearly anomaly
(shared in part nationally, larger in the semi-arid east, where droughts bite).
Temperature follows altitude (lapse rate −6.5 °C/km) with a small annual cycle, day-to-day
persistence and cooler, cloudier wet days. Radiation follows Hargreaves-Samani.

Everything is vectorised over cells; the only Python loop is over the days of a year.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LAPSE_C_PER_M = -0.0065
SEA_LEVEL_TMEAN_C = 31.0
_WET_DAY_PERSISTENCE = 0.3  # lag-1 autocorrelation of wet days
_GAMMA_SHAPE = 0.7  # daily amounts on wet days: gamma, mean from the climatology
_SPATIAL_CORRELATION = 0.75  # share of cell-days that follow the county's wet/dry draw


def climatological_tmean(altitude_m: np.ndarray | float) -> np.ndarray:
    """Annual mean air temperature (°C) at an altitude in equatorial Kenya."""
    return SEA_LEVEL_TMEAN_C + LAPSE_C_PER_M * np.asarray(altitude_m, dtype=float)


def extraterrestrial_radiation(day_of_year: np.ndarray, latitude: np.ndarray) -> np.ndarray:
    """Ra (MJ m⁻² day⁻¹), FAO-56 eq. 21; broadcasts days against latitudes."""
    j = np.asarray(day_of_year, dtype=float)
    phi = np.radians(np.asarray(latitude, dtype=float))
    dr = 1.0 + 0.033 * np.cos(2 * np.pi * j / 365.0)
    delta = 0.409 * np.sin(2 * np.pi * j / 365.0 - 1.39)
    omega = np.arccos(np.clip(-np.tan(phi) * np.tan(delta), -1.0, 1.0))
    return (
        24
        * 60
        / np.pi
        * 0.0820
        * dr
        * (omega * np.sin(phi) * np.sin(delta) + np.cos(phi) * np.cos(delta) * np.sin(omega))
    )


def hargreaves_et0(tmin_c: np.ndarray, tmax_c: np.ndarray, ra: np.ndarray) -> np.ndarray:
    """Reference evapotranspiration (mm/day) by Hargreaves, as AquaCrop needs it supplied."""
    tmean = (tmin_c + tmax_c) / 2.0
    return 0.0023 * 0.408 * ra * (tmean + 17.8) * np.sqrt(np.maximum(tmax_c - tmin_c, 0.0))


@dataclass(frozen=True)
class RainClimate:
    """Expected daily rain (mm) through the year: a dry-season floor plus seasonal bumps."""

    annual_mm: float
    long_rains_share: float  # of annual rain in the Long Rains bump (peak mid-April)
    short_rains_share: float  # in the Short Rains bump (peak mid-November)
    mid_year_share: float  # in the July–August bump of the western highlands
    anomaly_sd: float  # sd of the log seasonal anomaly (larger in the semi-arid east)


_BUMPS = (  # (peak day of year, width in days) of the long rains, short rains, mid-year rains
    (110.0, 32.0),
    (318.0, 26.0),
    (210.0, 45.0),
)


def expected_daily_rain(climate: RainClimate, days: np.ndarray) -> np.ndarray:
    """Climatological mean rain (mm/day) on each day of year in ``days``."""
    shares = (climate.long_rains_share, climate.short_rains_share, climate.mid_year_share)
    floor = 1.0 - sum(shares)
    mean = np.full(days.shape, floor * climate.annual_mm / 365.0)
    for (peak, width), share in zip(_BUMPS, shares, strict=True):
        distance = (days - peak + 182.5) % 365.0 - 182.5  # wraps around the new year
        bump = np.exp(-0.5 * (distance / width) ** 2)
        mean += share * climate.annual_mm * bump / (width * np.sqrt(2 * np.pi))
    return mean


@dataclass(frozen=True)
class Cells:
    """The weather cells that hold at least one plot (static per run)."""

    cell_id: np.ndarray
    latitude: np.ndarray
    longitude: np.ndarray
    altitude: np.ndarray
    county: np.ndarray  # index into COUNTIES
    rain_scale: np.ndarray  # persistent local multiplier (slopes, rain shadows)
    # The cell whose temperature and radiation each cell shares: the first cell of its
    # AgERA5 0.1° pixel (real temperature comes from that coarser grid, see grid.py).
    temperature_cell: np.ndarray


@dataclass(frozen=True)
class DailyWeather:
    """One calendar year of weather, arrays shaped (days, cells)."""

    year: int
    precip_mm: np.ndarray
    tmin_c: np.ndarray
    tmax_c: np.ndarray
    srad_mj_m2: np.ndarray

    @property
    def tmean_c(self) -> np.ndarray:
        return (self.tmin_c + self.tmax_c) / 2.0


# Days of year that belong to each rainy season's anomaly: Long Rains from mid-February to
# July, Short Rains from August to the end of January of the next year.
_LONG_RAINS_DAYS = (46, 213)


@dataclass(frozen=True)
class Anomalies:
    """Multiplicative rain anomaly per (season year, season, county); mean one.

    Part of each anomaly is national (an El Niño or La Niña year wets or dries every county
    at once), the rest is county-specific; its spread is set per county, so the semi-arid
    east swings most and has the droughts.
    """

    first_year: int
    values: np.ndarray  # (years, 2, counties)

    @classmethod
    def draw(cls, rng: np.random.Generator, years: range, spread: np.ndarray) -> Anomalies:
        shape = (len(years), 2, len(spread))
        national = rng.standard_normal((len(years), 2, 1))
        local = rng.standard_normal(shape)
        z = 0.65 * national + np.sqrt(1 - 0.65**2) * local
        return cls(years.start, np.exp(spread * z - spread**2 / 2))

    def for_days(self, year: int, day_of_year: np.ndarray) -> np.ndarray:
        """Anomaly (days, counties) in force on each day of ``year``."""
        row = year - self.first_year
        short_prev, long_now, short_now = self.values[row - 1, 1], *self.values[row]
        low, high = _LONG_RAINS_DAYS
        early = (day_of_year < low)[:, None]
        long_season = ((day_of_year >= low) & (day_of_year < high))[:, None]
        return np.where(early, short_prev, np.where(long_season, long_now, short_now))


def simulate_year(
    cells: Cells,
    climates: list[RainClimate],
    anomalies: Anomalies,
    year: int,
    rng: np.random.Generator,
) -> DailyWeather:
    """Daily precip, temperature and radiation of every cell for one calendar year."""
    days = 366 if year % 4 == 0 else 365  # Kenya's calendar is Gregorian; 2100 is far
    doy = np.arange(1, days + 1)
    n_cells, counties = len(cells.cell_id), cells.county
    n_counties = len(climates)

    climatology = np.stack([expected_daily_rain(c, doy.astype(float)) for c in climates], axis=1)
    mean_rain = (climatology * anomalies.for_days(year, doy))[:, counties] * cells.rain_scale
    p_wet = np.clip(1.0 - np.exp(-mean_rain / 8.0), 0.01, 0.85)
    wet_amount = mean_rain / p_wet
    p_after_wet = p_wet + _WET_DAY_PERSISTENCE * (1.0 - p_wet)
    p_after_dry = p_wet * (1.0 - _WET_DAY_PERSISTENCE)

    # Wet-day draws are correlated across a county's cells (one rain-bearing system): each
    # cell-day takes the county's uniform draw with probability _SPATIAL_CORRELATION.
    county_draw = rng.random((days, n_counties))[:, counties]
    own_draw = rng.random((days, n_cells))
    uniform = np.where(rng.random((days, n_cells)) < _SPATIAL_CORRELATION, county_draw, own_draw)
    amounts = rng.gamma(_GAMMA_SHAPE, 1.0, (days, n_cells)) * wet_amount / _GAMMA_SHAPE
    temp_shock = 0.8 * rng.standard_normal((days, n_counties))[:, counties]
    temp_shock += 0.6 * rng.standard_normal((days, n_cells))

    wet = np.zeros((days, n_cells), dtype=bool)
    temp_anomaly = np.zeros((days, n_cells))
    previous_wet = uniform[0] < p_wet[0]
    previous_anomaly = temp_shock[0]
    for day in range(days):  # a Markov chain in time, vectorised over cells
        threshold = np.where(previous_wet, p_after_wet[day], p_after_dry[day])
        previous_wet = wet[day] = uniform[day] < threshold
        previous_anomaly = temp_anomaly[day] = (
            0.7 * previous_anomaly + np.sqrt(1 - 0.7**2) * temp_shock[day]
        )
    precip = np.where(wet, amounts, 0.0)

    year_offset = rng.normal(0.0, 0.3, n_counties)[counties]
    annual_cycle = 1.2 * np.cos(2 * np.pi * (doy - 60) / 365.0)[:, None]
    tmean = (
        climatological_tmean(cells.altitude) + year_offset + annual_cycle + temp_anomaly - 0.7 * wet
    )
    diurnal = np.clip(12.5 - 4.0 * wet + rng.normal(0.0, 1.0, (days, n_cells)), 4.0, 18.0)
    tmax, tmin = tmean + diurnal / 2, tmean - diurnal / 2
    ra = extraterrestrial_radiation(doy[:, None], cells.latitude[None, :])
    srad = np.clip(0.16 * np.sqrt(diurnal) * ra * rng.normal(1.0, 0.05, (days, n_cells)), 4, 32)
    shared = cells.temperature_cell
    return DailyWeather(year, precip, tmin[:, shared], tmax[:, shared], srad[:, shared])
