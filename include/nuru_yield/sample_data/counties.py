"""Twelve Kenyan maize counties: where plots sit, their climate, soils and farm management.

Boxes are rough but real (decimal degrees, aligned on the 0.05° weather grid and
non-overlapping); altitudes, rainfall totals and seasonality approximate each county's
maize zone. Target ranges: about 2.5–3.5 t/ha in the western highlands and 0.6–1.2 t/ha in
the semi-arid east (the ``expected`` column of the sample-data summary); the central counties in between are held to 1.2–2.6 t/ha.
``yield_scale`` is the county effect (seed, fertiliser, pest pressure beyond the plot's own
management), calibrated once on 20 simulated years × 3 seeds so that long-run county means
sit mid-range; a six-year sample swings around them with the weather.
"""

from __future__ import annotations

from dataclasses import dataclass

from nuru_yield.sample_data.weather import RainClimate

LONG_RAINS = "Long Rains"
SHORT_RAINS = "Short Rains"
SEASONS = (LONG_RAINS, SHORT_RAINS)


@dataclass(frozen=True)
class Zone:
    name: str
    expected_t_ha: tuple[float, float]  # published range of county mean yields (t/ha)


HIGHLAND_WEST = Zone("highland west", (2.5, 3.5))
TRANSITION = Zone("central transition", (1.2, 2.6))
SEMI_ARID_EAST = Zone("semi-arid east", (0.6, 1.2))
NATIONAL_EXPECTED_T_HA = (1.5, 2.0)


@dataclass(frozen=True)
class County:
    name: str
    zone: Zone
    latitude: tuple[float, float]
    longitude: tuple[float, float]
    altitude_m: tuple[float, float]
    slope_deg: float  # direction (from east, counter-clockwise) in which the land rises
    plot_share: float  # of all plots
    short_rains: bool  # bimodal: plots also grow a Short Rains crop
    rain: RainClimate
    soil_mix: tuple[float, float, float]  # SandyLoam, Loam, ClayLoam (crop.SOILS order)
    management_mean: float  # mean of the plot's Beta management (yield-gap) factor
    yield_scale: float


# fmt: off
_ROWS = (
    # name           zone            latitude        longitude       altitude m    slope share  bimodal annual  LR    SR   mid  anom.sd  soils SL/L/CL     mgmt  scale
    ("Trans Nzoia",  HIGHLAND_WEST,  (0.85, 1.20),   (34.75, 35.20), (1800, 2100), 150, 0.12, False,  1150, 0.30, 0.05, 0.30, 0.12, (0.15, 0.45, 0.40), 0.32, 0.69),
    ("Uasin Gishu",  HIGHLAND_WEST,  (0.30, 0.80),   (35.00, 35.50), (1950, 2300),  30, 0.10, False,  1050, 0.30, 0.05, 0.28, 0.12, (0.10, 0.45, 0.45), 0.30, 0.76),
    ("Bungoma",      HIGHLAND_WEST,  (0.55, 0.95),   (34.35, 34.70), (1300, 1800),  60, 0.10, False,  1500, 0.33, 0.10, 0.25, 0.12, (0.15, 0.50, 0.35), 0.30, 0.69),
    ("Kakamega",     HIGHLAND_WEST,  (0.10, 0.50),   (34.55, 34.95), (1350, 1700),  20, 0.09, False,  1800, 0.33, 0.12, 0.25, 0.12, (0.15, 0.50, 0.35), 0.28, 0.74),
    ("Nakuru",       TRANSITION,     (-0.55, -0.05), (35.70, 36.20), (1850, 2400),  90, 0.09, False,   950, 0.35, 0.10, 0.22, 0.16, (0.30, 0.50, 0.20), 0.27, 0.65),
    ("Narok",        TRANSITION,     (-1.30, -0.85), (35.55, 36.00), (1800, 2150), 120, 0.07, False,   900, 0.40, 0.15, 0.10, 0.18, (0.30, 0.50, 0.20), 0.26, 0.67),
    ("Meru",         TRANSITION,     (-0.05, 0.30),  (37.55, 37.95), (1300, 1750), 200, 0.07, True,   1250, 0.38, 0.40, 0.02, 0.18, (0.25, 0.50, 0.25), 0.26, 0.72),
    ("Embu",         TRANSITION,     (-0.70, -0.40), (37.40, 37.70), (1150, 1550), 160, 0.05, True,   1100, 0.38, 0.40, 0.02, 0.20, (0.30, 0.50, 0.20), 0.24, 0.95),
    ("Tharaka-Nithi", SEMI_ARID_EAST, (-0.35, -0.10), (37.75, 38.15), (650, 1100), 180, 0.04, True,    850, 0.40, 0.46, 0.00, 0.24, (0.55, 0.35, 0.10), 0.20, 1.04),
    ("Machakos",     SEMI_ARID_EAST, (-1.55, -1.05), (37.10, 37.55), (1250, 1650), 100, 0.09, True,    850, 0.40, 0.47, 0.00, 0.24, (0.55, 0.35, 0.10), 0.20, 0.86),
    ("Makueni",      SEMI_ARID_EAST, (-2.35, -1.75), (37.45, 37.95), (850, 1350),  110, 0.09, True,    750, 0.38, 0.50, 0.00, 0.25, (0.60, 0.30, 0.10), 0.19, 1.08),
    ("Kitui",        SEMI_ARID_EAST, (-1.55, -0.95), (37.95, 38.45), (700, 1150),  200, 0.09, True,    850, 0.38, 0.50, 0.00, 0.25, (0.60, 0.30, 0.10), 0.19, 0.89),
)
# fmt: on

COUNTIES: tuple[County, ...] = tuple(
    County(*row[:8], RainClimate(*row[8:13]), *row[13:]) for row in _ROWS
)
