"""Season signals: a county's rain and heat so far this season against its normal to date
(pure functions; docs/DESIGN.md, "County bulletins").

The one definition of "the season to date against the normal to date", and its one wording.
The scoring night's county step computes it (``scoring.counties``) into ``county_forecasts``;
the bulletin, the API, the Forecasts view and the drift report (``monitoring.report``) all
state those rows, so they cannot disagree about a county's night. (Drift's crop-calendar
reference, ``monitoring.reference``, is a sample of other plot-seasons to compare
distributions with, not a normal to quote.)

A dry season is news for a county agriculture officer, not a fault of the model: the
bulletin says "rain 40% below the county's normal to date". For each plot-season of a
sample of the county's (:func:`sample`), the normal to date is the same window — its planting
day to the run date, cut at the crop's season end as the features are — in each of the
:data:`NORMAL_YEARS` years before, at the plot's own weather cell
(``features.compute.weather_aggregates``: the features' own window sums); a year counts when
its weather covers :data:`MIN_COVERAGE` of the window. A plot-season with fewer than
:data:`MIN_NORMAL_YEARS` such years has no normal. The county's figures are means over the
sampled plot-seasons that have one: rain (mm since planting), mean daily maximum
temperature and days above 35 °C, each beside its normal; rain as % of normal.

A departure of :data:`RAIN_SIGNAL_PCT` % or more in rain, or :data:`HEAT_SIGNAL_C` °C or
more in the mean daily maximum, is a signal, worded for people in ``season_signal``.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from nuru_yield.counties.figures import COUNTY_SEASON

NORMAL_YEARS = 10
MIN_NORMAL_YEARS = 3
MIN_COVERAGE = 0.9
SAMPLE_PER_COUNTY_SEASON = 200
RAIN_SIGNAL_PCT = 20.0
HEAT_SIGNAL_C = 1.0
# What a window's weather gives (columns of ``weather_aggregates``).
RAIN, TMAX, HEAT, COVERAGE = "precip_total", "tmax_mean", "heat_days", "weather_coverage"
SIGNAL_COLUMNS = [
    "rain_mm",
    "normal_rain_mm",
    "rain_pct_of_normal",
    "tmax_c",
    "normal_tmax_c",
    "heat_days",
    "normal_heat_days",
    "normal_years",
    "season_signal",
]


def sample(frame: pd.DataFrame, per_group: int = SAMPLE_PER_COUNTY_SEASON) -> pd.DataFrame:
    """Up to ``per_group`` rows of each county-season: those whose plot id hashes lowest,
    so that the same plots are sampled every night of the season."""
    ids = frame["plot_id"].to_numpy(np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        spread = (ids * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(11)
    ranked = frame.assign(_rank=spread).sort_values([*COUNTY_SEASON, "_rank"])
    kept = ranked.groupby(COUNTY_SEASON, observed=True).head(per_group)
    return kept.drop(columns="_rank").reset_index(drop=True)


def earlier_windows(
    planting: np.ndarray, as_of: dt.date, years: int = NORMAL_YEARS
) -> pd.DataFrame:
    """The window ``planting … as_of`` of each row moved back 1 … ``years`` years (29
    February → 28 February): ``row``, ``years_back``, ``start`` and ``end`` as days since
    1970-01-01."""
    planted = pd.DatetimeIndex(np.asarray(planting, dtype="datetime64[D]"))
    epoch = pd.Timestamp("1970-01-01")
    parts = []
    for back in range(1, years + 1):
        offset = pd.DateOffset(years=back)
        parts.append(
            pd.DataFrame(
                {
                    "row": np.arange(len(planted)),
                    "years_back": back,
                    "start": ((planted - offset) - epoch).days.to_numpy(np.int64),
                    "end": (pd.Timestamp(as_of) - offset - epoch).days,
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def normal_to_date(windows: pd.DataFrame, rows: int) -> pd.DataFrame:
    """Per row 0 … ``rows``-1: the mean rain, mean daily maximum and heat days of its
    earlier windows (``row`` and the :func:`~nuru_yield.features.compute.weather_aggregates`
    columns) whose weather covers :data:`MIN_COVERAGE` of them, and how many years count;
    NaN with fewer than :data:`MIN_NORMAL_YEARS`."""
    covered = windows[windows[COVERAGE] >= MIN_COVERAGE]
    means = covered.groupby("row")[[RAIN, TMAX, HEAT]].mean()
    counts = covered.groupby("row").size()
    out = pd.DataFrame(index=pd.RangeIndex(rows))
    out["normal_years"] = counts.reindex(out.index, fill_value=0).to_numpy(np.int64)
    enough = out["normal_years"].to_numpy() >= MIN_NORMAL_YEARS
    for column in (RAIN, TMAX, HEAT):
        values = means[column].reindex(out.index).to_numpy(np.float64)
        out[column] = np.where(enough, values, np.nan)
    return out


def season_signals(current: pd.DataFrame, normal: pd.DataFrame) -> pd.DataFrame:
    """:data:`SIGNAL_COLUMNS` per county-season from the sampled plot-seasons' weather this
    season (``current``: the county-season keys and rain, daily maximum, heat days) and their
    :func:`normal_to_date` (``normal``, aligned row by row)."""
    has = normal["normal_years"].to_numpy() >= MIN_NORMAL_YEARS
    rows = current[has].assign(
        _rain_normal=normal.loc[has, RAIN].to_numpy(),
        _tmax_normal=normal.loc[has, TMAX].to_numpy(),
        _heat_normal=normal.loc[has, HEAT].to_numpy(),
        _years=normal.loc[has, "normal_years"].to_numpy(),
    )
    grouped = rows.groupby(COUNTY_SEASON, observed=True, sort=True).agg(
        rain_mm=(RAIN, "mean"),
        normal_rain_mm=("_rain_normal", "mean"),
        tmax_c=(TMAX, "mean"),
        normal_tmax_c=("_tmax_normal", "mean"),
        heat_days=(HEAT, "mean"),
        normal_heat_days=("_heat_normal", "mean"),
        normal_years=("_years", "min"),
    )
    grouped = grouped.reset_index()
    with np.errstate(invalid="ignore", divide="ignore"):
        grouped["rain_pct_of_normal"] = np.where(
            grouped["normal_rain_mm"] > 0,
            100 * grouped["rain_mm"] / grouped["normal_rain_mm"],
            np.nan,
        )
    grouped["season_signal"] = [
        signal_text(*values)
        for values in grouped[
            ["rain_mm", "normal_rain_mm", "rain_pct_of_normal", "tmax_c", "normal_tmax_c"]
        ].itertuples(index=False)
    ]
    return grouped[[*COUNTY_SEASON, *SIGNAL_COLUMNS]]


def signal_text(
    rain: float, rain_normal: float, rain_pct: float, tmax: float, tmax_normal: float
) -> str | None:
    """The season signal in words ("rain 40% below the county's normal to date (120 mm
    against 200)"), or None when rain and heat are within the thresholds of normal."""
    said = []
    if np.isfinite(rain_pct) and abs(rain_pct - 100) >= RAIN_SIGNAL_PCT:
        way = "below" if rain_pct < 100 else "above"
        said.append(
            f"rain {abs(100 - rain_pct):.0f}% {way} the county's normal to date "
            f"({rain:,.0f} mm against {rain_normal:,.0f})"
        )
    if np.isfinite(tmax) and np.isfinite(tmax_normal) and abs(tmax - tmax_normal) >= HEAT_SIGNAL_C:
        way = "hotter" if tmax > tmax_normal else "cooler"
        said.append(
            f"days {abs(tmax - tmax_normal):.1f} °C {way} than the county's normal to date "
            f"(mean maximum {tmax:.1f} °C against {tmax_normal:.1f})"
        )
    return "; ".join(said) or None
