"""Column contracts: the raw tables (docs/DESIGN.md, "Raw input contract") and the feature
table (docs/DESIGN.md, "Lake layout").

Agronomic constants live here too, so the library, the tests and the benchmark's
reference query share one definition of "a rainy day" or "a clear NDVI observation".
"""

from __future__ import annotations

import pyarrow as pa

from nuru_yield.contract import WEATHER_SCHEMA as RAW_WEATHER_SCHEMA

KEY_COLUMNS = ["plot_id", "season_year", "season"]
SEASONS = ("Long Rains", "Short Rains")

# Weather aggregates over the window planting date → as-of date (both inclusive).
WEATHER_FEATURES = [
    "precip_total",
    "rainy_days",
    "max_dry_spell_days",
    "precip_last_30d",
    "gdd_sum",
    "heat_days",
    "tmax_mean",
    "weather_coverage",
]
# NDVI aggregates over the clear observations of the same window.
NDVI_FEATURES = ["mean_ndvi", "max_ndvi", "ndvi_auc", "ndvi_slope_30d", "n_clear_ndvi_obs"]
PLOT_FEATURES = [
    "days_after_planting",
    "planting_doy",
    "altitude",
    "latitude",
    "longitude",
    "is_short_rains",
]
# The numeric model inputs, all float64, in this order.
FEATURE_COLUMNS = WEATHER_FEATURES + NDVI_FEATURES + PLOT_FEATURES
# What stays the same from one season of a plot to the next: where it is and which rains it
# is planted in. A forecast's drivers are the other features (rain, heat, dry spells,
# vegetation, planting date: what a season changes); these are folded into the plot's own
# normal (docs/DESIGN.md, "Models and the registry", Drivers), and their drift is a change in
# the mix of plots, not in the season.
STATIC_FEATURES = ["altitude", "latitude", "longitude", "is_short_rains"]
# Counts of what the feeds delivered in the window, not of what the crop met: a feed one to
# three days behind (which the feature gate allows) gives values no training row, cut from
# complete history, ever had — news about the feed, not about the model.
FEED_COVERAGE_FEATURES = ["weather_coverage", "n_clear_ndvi_obs"]
# Carried along for joins, reports and per-county metrics; not model inputs.
CONTEXT_COLUMNS = ["county", "planting_date", "as_of_date", "weather_cell_id", "ndvi_missing"]
OUTPUT_COLUMNS = KEY_COLUMNS + CONTEXT_COLUMNS + FEATURE_COLUMNS

OUTPUT_SCHEMA = pa.schema(
    [
        ("plot_id", pa.int64()),
        ("season_year", pa.int64()),
        ("season", pa.string()),
        ("county", pa.string()),
        ("planting_date", pa.date32()),
        ("as_of_date", pa.date32()),
        ("weather_cell_id", pa.int64()),
        ("ndvi_missing", pa.bool_()),
        *[(name, pa.float64()) for name in FEATURE_COLUMNS],
    ]
)

# Raw contract (docs/DESIGN.md, "Raw input contract"): columns read and the types they are cast to (the optional
# radiation column is not used by any feature).
WEATHER_SCHEMA = pa.schema([field for field in RAW_WEATHER_SCHEMA if field.name != "srad_mj_m2"])

# Agronomy (docs/NOTES.md, "Agronomy and accuracy"): a rainy day has at least 1 mm; maize GDD
# uses the 30/10 °C method.
RAINY_DAY_MM = 1.0
GDD_BASE_C = 10.0
GDD_CAP_C = 30.0
HEAT_DAY_C = 35.0
RECENT_DAYS = 30  # window of precip_last_30d and ndvi_slope_30d, ending with the window
# A crop's own season ends at physiological maturity: when its thermal time since planting
# (daily mean air temperature above 8 °C, summed) reaches what a local variety needs. Kenyan
# farmers choose varieties that fill their season (long-season hybrids in the cool highlands,
# short ones in the hot east), so one figure holds across zones. Feature windows stop there:
# a Short Rains crop planted in November is harvested by March, and the April rain of the
# next Long Rains says nothing about it.
MATURITY_BASE_C = 8.0
MATURITY_THERMAL_TIME = 1500.0
# Daily thermal time is counted in whole hundredths of a °C·d (rounded half up): integer
# sums are exact in every implementation, where float sums that land on the threshold
# could end a season a day apart.
THERMAL_TIME_UNITS = 100
NDVI_SOIL_BASELINE = 0.2  # ndvi_auc integrates NDVI above bare soil

# Plausible value ranges; values outside are bad observations (dropped and counted).
PRECIP_RANGE_MM = (0.0, 500.0)
TEMPERATURE_RANGE_C = (-30.0, 60.0)
ALTITUDE_RANGE_M = (-500.0, 6000.0)
