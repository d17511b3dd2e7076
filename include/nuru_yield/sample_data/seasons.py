"""Plots and plot-seasons: where plots are, when they are planted, what they yield.

Plots keep their place, soil and management across seasons. Each plot-season is planted
after its weather cell's rains set in, and its water-limited yield and canopy curve come
from the AquaCrop response table evaluated on that plot-season's own weather; farm yield
is that potential times the plot's management factor, the county effect and noise.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from nuru_yield.grid import agera5_pixel, cell_centre, cell_id, cell_index
from nuru_yield.sample_data.counties import COUNTIES, LONG_RAINS, SHORT_RAINS
from nuru_yield.sample_data.crop import SILKING_WINDOW, SOILS, CropResponse, maturity_days
from nuru_yield.sample_data.weather import Cells, DailyWeather, climatological_tmean

_MANAGEMENT_CONCENTRATION = 8.0  # Beta(a, b) with a + b = 8: a wide spread between farms
_YIELD_NOISE_SD = 0.30  # lognormal, per plot-season (pests, lodging, measurement)
_COUNTY_SEASON_SD = 0.08  # lognormal, per county-season (armyworm, disease outbreaks)
_ONSET_RAIN_MM = 20.0  # onset: the first 3-day spell with this much rain
# (month, day) windows: where onset is searched, and the planting dates a season allows.
_ONSET_SEARCH = {LONG_RAINS: ((3, 1), (5, 10)), SHORT_RAINS: ((10, 1), (12, 1))}
_PLANTING_WINDOW = {LONG_RAINS: ((3, 1), (5, 31)), SHORT_RAINS: ((10, 1), (12, 31))}


@dataclass(frozen=True)
class Plots:
    """Static plot attributes, one entry per plot (index = plot_id - 1)."""

    plot_id: np.ndarray
    latitude: np.ndarray
    longitude: np.ndarray
    altitude: np.ndarray
    county: np.ndarray  # index into COUNTIES
    cell: np.ndarray  # index into Cells
    soil: np.ndarray  # index into crop.SOILS
    management: np.ndarray  # share of the water-limited potential the farm reaches
    maturity_days: np.ndarray  # of the variety the farmer grows

    def __len__(self) -> int:
        return len(self.plot_id)


def _county_array(field: str) -> np.ndarray:
    return np.array([getattr(county, field) for county in COUNTIES], dtype=float)


def terrain_altitude(county: np.ndarray, latitude: np.ndarray, longitude: np.ndarray) -> np.ndarray:
    """A fixed smooth landscape per county: a slope across its box plus rolling hills."""
    lat_box, lon_box, alt = (
        _county_array(f)[county] for f in ("latitude", "longitude", "altitude_m")
    )
    angle = np.radians(_county_array("slope_deg")[county])
    lat_mid, lon_mid = lat_box.mean(axis=1), lon_box.mean(axis=1)
    half = np.hypot(np.ptp(lat_box, axis=1), np.ptp(lon_box, axis=1)) / 2
    rise = ((longitude - lon_mid) * np.cos(angle) + (latitude - lat_mid) * np.sin(angle)) / half
    hills = np.sin(37.0 * latitude + 11.0) * np.cos(29.0 * longitude - 5.0)
    position = np.clip(0.5 + 0.45 * rise + 0.12 * hills, 0.0, 1.0)
    return alt[:, 0] + (alt[:, 1] - alt[:, 0]) * position


def make_plots(n: int, rng: np.random.Generator) -> tuple[Plots, Cells]:
    """Place ``n`` plots in the counties and derive the weather cells that hold them."""
    shares = _county_array("plot_share")
    county = rng.choice(len(COUNTIES), size=n, p=shares / shares.sum())
    lat_box = _county_array("latitude")[county]
    lon_box = _county_array("longitude")[county]
    latitude = rng.uniform(lat_box[:, 0], lat_box[:, 1])
    longitude = rng.uniform(lon_box[:, 0], lon_box[:, 1])
    altitude = terrain_altitude(county, latitude, longitude) + rng.normal(0.0, 15.0, n)

    rows, cols = cell_index(latitude, longitude)
    ids, first, cell = np.unique(cell_id(rows, cols), return_index=True, return_inverse=True)
    cell_lat, cell_lon = cell_centre(rows[first], cols[first])
    pixel_lat, pixel_lon = agera5_pixel(cell_lat, cell_lon)
    _, leader, pixel = np.unique(
        pixel_lat * 100_000 + pixel_lon, return_index=True, return_inverse=True
    )
    cells = Cells(
        cell_id=ids,
        latitude=cell_lat,
        longitude=cell_lon,
        altitude=terrain_altitude(county[first], cell_lat, cell_lon),
        county=county[first],
        rain_scale=rng.lognormal(-(0.1**2) / 2, 0.1, len(ids)),
        temperature_cell=leader[pixel],
    )

    mix = np.cumsum(np.array([c.soil_mix for c in COUNTIES]), axis=1)[county]
    soil = np.minimum((rng.random(n)[:, None] > mix).sum(axis=1), len(SOILS) - 1)
    mean = _county_array("management_mean")[county]
    management = rng.beta(mean * _MANAGEMENT_CONCENTRATION, (1 - mean) * _MANAGEMENT_CONCENTRATION)
    plots = Plots(
        plot_id=np.arange(1, n + 1, dtype=np.int64),
        latitude=latitude,
        longitude=longitude,
        altitude=altitude,
        county=county,
        cell=cell,
        soil=soil,
        management=management,
        maturity_days=maturity_days(climatological_tmean(altitude)),
    )
    return plots, cells


# Maize plot sizes of Kenyan smallholders: a median near 0.4 ha, most between 0.15 and 1.2 ha
# (log-normal; a few farms reach several hectares).
_AREA_MEDIAN_HA = 0.4
_AREA_LOG_SD = 0.6
_AREA_RANGE_HA = (0.05, 6.0)


def plot_areas(n: int, rng: np.random.Generator) -> np.ndarray:
    """The area of each of ``n`` plots (hectares, two decimals): a stream of its own, so that
    adding it changed no other draw of a seed."""
    areas = np.exp(rng.normal(np.log(_AREA_MEDIAN_HA), _AREA_LOG_SD, n))
    return np.round(np.clip(areas, *_AREA_RANGE_HA), 2)


class WeatherHistory:
    """Daily rain and mean temperature of every cell over all simulated years, with running
    sums so that any window's total is two lookups (vectorised over plot-seasons)."""

    def __init__(self, years: list[DailyWeather]) -> None:
        self.first_day = dt.date(years[0].year, 1, 1)
        self.precip = np.concatenate([w.precip_mm for w in years]).astype(np.float32)
        tmean = np.concatenate([w.tmean_c for w in years])
        zero = np.zeros((1, self.precip.shape[1]))
        self._rain_sum = np.concatenate([zero, np.cumsum(self.precip, axis=0, dtype=float)])
        self._temp_sum = np.concatenate([zero, np.cumsum(tmean, axis=0)])

    def day(self, date: dt.date) -> int:
        """Index of ``date`` in the daily arrays."""
        return (date - self.first_day).days

    def rain(self, start: np.ndarray, end: np.ndarray, cell: np.ndarray) -> np.ndarray:
        """Rain (mm) from day ``start`` up to (not including) ``end``, per element."""
        return self._rain_sum[end, cell] - self._rain_sum[start, cell]

    def mean_temperature(self, start: np.ndarray, end: np.ndarray, cell: np.ndarray) -> np.ndarray:
        return (self._temp_sum[end, cell] - self._temp_sum[start, cell]) / (end - start)

    def onset(self, first: int, last: int) -> np.ndarray:
        """Per cell, the first day in [first, last] whose 3-day rain reaches the onset mark,
        or ``last`` where the rains never set in."""
        three_day = self._rain_sum[first + 3 : last + 4] - self._rain_sum[first : last + 1]
        started = three_day >= _ONSET_RAIN_MM
        return np.where(started.any(axis=0), first + started.argmax(axis=0), last)


@dataclass(frozen=True)
class SeasonBlock:
    """Plot-seasons of one season (a chunk of plots), arrays aligned by row."""

    season: str
    season_year: int
    plot: np.ndarray  # index into Plots
    planting_day: np.ndarray  # index into WeatherHistory days
    maturity_days: np.ndarray
    yield_kg_ha: np.ndarray


def _window(
    history: WeatherHistory, year: int, window: tuple[tuple[int, int], ...]
) -> tuple[int, int]:
    (m0, d0), (m1, d1) = window
    return history.day(dt.date(year, m0, d0)), history.day(dt.date(year, m1, d1))


def simulate_season(
    plots: Plots,
    plot: np.ndarray,
    season: str,
    year: int,
    history: WeatherHistory,
    response: CropResponse,
    county_effect: np.ndarray,
    rng: np.random.Generator,
) -> tuple[SeasonBlock, np.ndarray]:
    """Planting and farm yield of plots ``plot`` in one season, plus their water-limited
    canopy cover at crop.CANOPY_KNOTS (rows × 11; only the NDVI needs it, so it is not kept).

    ``county_effect`` is this season's multiplier per county (calibrated scale times the
    county-season shock).
    """
    cell = plots.cell[plot]
    onset = history.onset(*_window(history, year, _ONSET_SEARCH[season]))[cell]
    earliest, latest = _window(history, year, _PLANTING_WINDOW[season])
    planting = np.clip(onset + rng.gamma(2.0, 4.0, len(plot)).astype(np.int64), earliest, latest)
    maturity = plots.maturity_days[plot]
    harvest = planting + maturity
    silking_start = planting + np.rint(SILKING_WINDOW[0] * maturity).astype(np.int64)
    silking_end = planting + np.rint(SILKING_WINDOW[1] * maturity).astype(np.int64)

    rain = history.rain(planting, harvest, cell)
    share = history.rain(silking_start, silking_end, cell) / np.maximum(rain, 1.0)
    tmean = history.mean_temperature(planting, harvest, cell)
    potential, canopy = response.interpolate(plots.soil[plot], tmean, rain, share)

    noise = rng.lognormal(-(_YIELD_NOISE_SD**2) / 2, _YIELD_NOISE_SD, len(plot))
    farm_yield = potential * plots.management[plot] * county_effect[plots.county[plot]] * noise
    block = SeasonBlock(
        season=season,
        season_year=year,
        plot=plot,
        planting_day=planting,
        maturity_days=maturity,
        yield_kg_ha=np.round(farm_yield),
    )
    return block, canopy


def county_effects(rng: np.random.Generator) -> np.ndarray:
    """This county-season's yield multiplier per county: calibrated scale × outbreak shock."""
    shock = rng.lognormal(-(_COUNTY_SEASON_SD**2) / 2, _COUNTY_SEASON_SD, len(COUNTIES))
    return _county_array("yield_scale") * shock
