"""Data checks, declared once and used twice.

Each :class:`Check` yields a boolean mask of the rows that fail it (used to quarantine
plot-seasons with a reason and to drop bad observations from the aggregates) and the
equivalent great-expectations expectation (used by :mod:`nuru_yield.features.validation`
for the gate and the counts in ``validation.json``). Both follow GE's semantics: value
checks ignore missing values, which have their own ``not_null`` checks.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from nuru_yield.contract import CLEAR_MAX_CLOUD
from nuru_yield.features.columns import (
    ALTITUDE_RANGE_M,
    GDD_BASE_C,
    GDD_CAP_C,
    KEY_COLUMNS,
    PRECIP_RANGE_MM,
    SEASONS,
    TEMPERATURE_RANGE_C,
)
from nuru_yield.names import MAX_PLOT_ID

if TYPE_CHECKING:
    from great_expectations.expectations import Expectation

Kind = Literal["not_null", "between", "in_set", "unique", "not_greater", "null"]
# Which values a failed observation check invalidates: the whole row or one variable.
Scope = Literal["row", "precip", "temperature"]

# Months in which a season's planting is plausible: Long Rains Feb–Jul of the season year,
# Short Rains Sep of the season year to Jan of the next (planting is Mar–May / Oct–Dec).
SEASON_PLANTING_WINDOWS = {
    "Long Rains": ((0, 2, 1), (0, 7, 31)),
    "Short Rains": ((0, 9, 1), (1, 1, 31)),
}
# Plots farther than this from every weather cell cannot be given weather features.
MAX_CELL_DISTANCE_KM = 50.0


@dataclass(frozen=True)
class Check:
    """One named data check; ``name`` doubles as the quarantine reason."""

    name: str
    kind: Kind
    columns: tuple[str, ...]
    low: float | None = None
    high: float | None = None
    values: tuple[Any, ...] = field(default=())
    scope: Scope = "row"
    allowed_share: float | None = None
    """Share of failing rows the gate tolerates; ``None`` = the configured threshold."""
    unless_above: float | None = None
    """A ``not_null`` check with two columns exempts rows whose second column is above this
    (a cloudy NDVI observation has no value: it is not a bad row)."""

    @property
    def column(self) -> str:
        return self.columns[0]

    def failing(self, frame: pd.DataFrame) -> np.ndarray:
        """Boolean mask of the rows of ``frame`` that fail this check."""
        if self.kind == "unique":
            keys = frame[list(self.columns)]
            all_missing = keys.isna().all(axis=1).to_numpy()
            return keys.duplicated(keep=False).to_numpy() & ~all_missing
        values = frame[self.column]
        present = values.notna().to_numpy()
        if self.kind == "not_null" and self.unless_above is not None:
            other = frame[self.columns[1]].to_numpy(np.float64, na_value=np.nan)
            with np.errstate(invalid="ignore"):
                return ~present & ~(other > self.unless_above)
        if self.kind == "not_null":
            return ~present
        if self.kind == "null":
            return present
        if self.kind == "between":
            numbers = values.to_numpy(dtype=np.float64, na_value=np.nan)
            low = -np.inf if self.low is None else self.low
            high = np.inf if self.high is None else self.high
            with np.errstate(invalid="ignore"):
                inside = (numbers >= low) & (numbers <= high)
            return present & ~inside
        if self.kind == "in_set":
            return present & ~values.isin(self.values).to_numpy()
        if self.kind == "not_greater":
            other = frame[self.columns[1]]
            both = present & other.notna().to_numpy()
            with np.errstate(invalid="ignore"):
                greater = values.to_numpy(np.float64, na_value=np.nan) > other.to_numpy(
                    np.float64, na_value=np.nan
                )
            return both & greater
        raise ValueError(f"unknown check kind {self.kind!r}")

    def expectation(self, mostly: float) -> Expectation:
        """The great-expectations 1.x expectation with the same semantics as :meth:`failing`."""
        import great_expectations.expectations as gxe

        meta = {"check": self.name}
        if self.kind == "unique" and len(self.columns) == 1:
            return gxe.ExpectColumnValuesToBeUnique(column=self.column, mostly=mostly, meta=meta)
        if self.kind == "unique":
            return gxe.ExpectCompoundColumnsToBeUnique(
                column_list=list(self.columns), mostly=mostly, meta=meta
            )
        if self.kind == "not_null" and self.unless_above is not None:
            from great_expectations.expectations.row_conditions import Column

            other = Column(self.columns[1])
            return gxe.ExpectColumnValuesToNotBeNull(
                column=self.column,
                mostly=mostly,
                meta=meta,
                row_condition=(other <= self.unless_above) | other.is_null(),
            )
        if self.kind == "not_null":
            return gxe.ExpectColumnValuesToNotBeNull(column=self.column, mostly=mostly, meta=meta)
        if self.kind == "null":
            return gxe.ExpectColumnValuesToBeNull(column=self.column, mostly=mostly, meta=meta)
        if self.kind == "between":
            return gxe.ExpectColumnValuesToBeBetween(
                column=self.column,
                min_value=self.low,
                max_value=self.high,
                mostly=mostly,
                meta=meta,
            )
        if self.kind == "in_set":
            return gxe.ExpectColumnValuesToBeInSet(
                column=self.column, value_set=list(self.values), mostly=mostly, meta=meta
            )
        if self.kind == "not_greater":
            return gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A=self.columns[1],
                column_B=self.columns[0],
                or_equal=True,
                ignore_row_if="either_value_is_missing",
                mostly=mostly,
                meta=meta,
            )
        raise ValueError(f"unknown check kind {self.kind!r}")


def plot_checks(max_cell_distance_km: float = MAX_CELL_DISTANCE_KM) -> list[Check]:
    """Row checks of plot-seasons; a failing row is quarantined with the check's name.

    ``days_outside_season`` and ``weather_cell_distance_km`` are derived columns (see
    :func:`nuru_yield.features.compute.prepare_plots`).
    """
    return [
        Check("missing_plot_id", "not_null", ("plot_id",)),
        # Scoring shards plots by a hash that needs 0 <= plot_id <= 2**31 - 1.
        Check("plot_id_out_of_range", "between", ("plot_id",), low=0.0, high=float(MAX_PLOT_ID)),
        Check("missing_season", "not_null", ("season",)),
        Check("invalid_season", "in_set", ("season",), values=SEASONS),
        Check("missing_season_year", "not_null", ("season_year",)),
        Check("missing_planting_date", "not_null", ("planting_date",)),
        Check("missing_county", "not_null", ("county",)),
        Check("missing_latitude", "not_null", ("latitude",)),
        Check("missing_longitude", "not_null", ("longitude",)),
        Check("latitude_out_of_range", "between", ("latitude",), low=-90.0, high=90.0),
        Check("longitude_out_of_range", "between", ("longitude",), low=-180.0, high=180.0),
        Check("altitude_out_of_range", "between", ("altitude",), *ALTITUDE_RANGE_M),
        Check("planting_date_outside_season", "between", ("days_outside_season",), 0.0, 0.0),
        Check(
            "no_weather_cell_nearby",
            "between",
            ("weather_cell_distance_km",),
            low=0.0,
            high=max_cell_distance_km,
        ),
        Check("duplicate_key", "unique", tuple(KEY_COLUMNS)),
    ]


CELL_CHECKS = [
    Check("missing_cell_id", "not_null", ("cell_id",)),
    Check("missing_latitude", "not_null", ("latitude",)),
    Check("missing_longitude", "not_null", ("longitude",)),
    Check("latitude_out_of_range", "between", ("latitude",), low=-90.0, high=90.0),
    Check("longitude_out_of_range", "between", ("longitude",), low=-180.0, high=180.0),
    Check("duplicate_cell_id", "unique", ("cell_id",)),
]

WEATHER_CHECKS = [
    Check("missing_cell_id", "not_null", ("cell_id",)),
    Check("missing_date", "not_null", ("date",)),
    Check("duplicate_cell_day", "unique", ("cell_id", "date")),
    Check("precip_missing", "not_null", ("precip_mm",), scope="precip"),
    Check("precip_out_of_range", "between", ("precip_mm",), *PRECIP_RANGE_MM, scope="precip"),
    Check("tmin_missing", "not_null", ("tmin_c",), scope="temperature"),
    Check("tmax_missing", "not_null", ("tmax_c",), scope="temperature"),
    Check("tmin_out_of_range", "between", ("tmin_c",), *TEMPERATURE_RANGE_C, scope="temperature"),
    Check("tmax_out_of_range", "between", ("tmax_c",), *TEMPERATURE_RANGE_C, scope="temperature"),
    Check("tmin_above_tmax", "not_greater", ("tmin_c", "tmax_c"), scope="temperature"),
]

NDVI_CHECKS = [
    Check("missing_plot_id", "not_null", ("plot_id",)),
    Check("missing_date", "not_null", ("date",)),
    # NDVI from rasters leaves a plot mostly under cloud without a value (docs/DESIGN.md,
    # "NDVI from rasters"): only a missing value on a clear observation is bad.
    Check("ndvi_missing", "not_null", ("ndvi", "cloud_fraction"), unless_above=CLEAR_MAX_CLOUD),
    Check("ndvi_out_of_range", "between", ("ndvi",), low=-1.0, high=1.0),
    Check("cloud_fraction_out_of_range", "between", ("cloud_fraction",), low=0.0, high=1.0),
]


def failing_any(frame: pd.DataFrame, checks: Sequence[Check]) -> np.ndarray:
    """Rows failing at least one of ``checks``."""
    bad = np.zeros(len(frame), dtype=bool)
    for check in checks:
        bad |= check.failing(frame)
    return bad


def reasons(frame: pd.DataFrame, checks: Sequence[Check]) -> pd.Series:
    """Per row, the names of the failed checks joined by ``;`` (missing when it passes all)."""
    failed = [(check.name, check.failing(frame)) for check in checks]
    labels = np.full(len(frame), "", dtype=object)
    for name, mask in failed:
        labels[mask] = [f"{label};{name}" if label else name for label in labels[mask]]
    return pd.Series(labels, index=frame.index, dtype=object).replace("", None)


def planting_windows(season: pd.Series, season_year: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """First and last plausible planting day of each row's season (``datetime64[D]``; NaT
    when the season or year is missing or the season unknown)."""
    first = np.full(len(season), np.datetime64("NaT"), dtype="datetime64[D]")
    last = first.copy()
    years = season_year.to_numpy(np.float64, na_value=np.nan)
    for name, (start, end) in SEASON_PLANTING_WINDOWS.items():
        rows = (season == name).fillna(False).to_numpy(bool) & ~np.isnan(years)
        if rows.any():
            year = years[rows].astype(np.int64)
            first[rows] = _dates(year + start[0], start[1], start[2])
            last[rows] = _dates(year + end[0], end[1], end[2])
    return first, last


def days_outside_season(
    season: pd.Series, season_year: pd.Series, planting_date: pd.Series
) -> np.ndarray:
    """Days between the planting date and its season's plausible planting window.

    0 inside the window, positive outside, NaN when season, year or date is missing or
    the season is unknown (other checks report those).
    """
    first, last = planting_windows(season, season_year)
    planting = planting_date.to_numpy("datetime64[D]")
    known = ~np.isnat(first) & ~np.isnat(planting)
    out = np.full(len(season), np.nan)
    before = (first[known] - planting[known]).astype(np.int64)
    after = (planting[known] - last[known]).astype(np.int64)
    out[known] = np.maximum(np.maximum(before, after), 0)
    return out


def misdated_in_current_season(
    plots: pd.DataFrame, as_of: dt.date, season_max_days: int
) -> np.ndarray:
    """Plot-seasons whose season is under way on ``as_of`` (its planting window has opened
    and a planting in it could still be in progress) but whose planting date lies outside
    that window — in the future, or in another season.

    Such a row is never "in progress" by its date, so without this it would be skipped
    silently; with it, it is considered and quarantined (``planting_date_outside_season``)
    on every night its season runs. A planting date after ``as_of`` inside the window is
    simply not yet in progress (e.g. when an older night is rerun), not bad data.
    """
    first, last = planting_windows(plots["season"], plots["season_year"])
    day = np.datetime64(as_of, "D")
    with np.errstate(invalid="ignore"):
        under_way = (first <= day) & (day <= last + np.timedelta64(season_max_days, "D"))
        outside = (
            days_outside_season(plots["season"], plots["season_year"], plots["planting_date"]) > 0
        )
    return under_way & outside


def _dates(years: np.ndarray, month: int, day: int) -> np.ndarray:
    base = (years - 1970).astype("datetime64[Y]").astype("datetime64[M]") + (month - 1)
    return base.astype("datetime64[D]") + (day - 1)


# A plot-season whose weather cell has no valid rain for more than WEATHER_MAX_LAG_DAYS
# before the run date has a window that silently stops early: a stalled feed.
WEATHER_NOT_CURRENT = Check("weather_not_current", "between", ("weather_lag_days",), low=0.0)


def weather_lag_days(
    cell_ids: np.ndarray, weather: pd.DataFrame, as_of: dt.date, read_from: dt.date
) -> tuple[np.ndarray, np.datetime64 | None]:
    """Days from the last day with a valid rain value at each cell to ``as_of``, and the
    newest such day over these cells (None when they have none).

    ``weather`` holds the days read, ``read_from`` … ``as_of``: a cell without any counts as
    ``as_of - read_from + 1`` days behind (at least that).
    """
    valid = ~failing_any(weather, [c for c in WEATHER_CHECKS if c.scope in ("row", "precip")])
    latest = (
        pd.Series(weather["date"].to_numpy("datetime64[D]")[valid], copy=False)
        .groupby(weather["cell_id"].to_numpy(np.float64, na_value=np.nan)[valid])
        .max()
    )
    last_day = latest.reindex(np.asarray(cell_ids, dtype=np.float64)).to_numpy("datetime64[D]")
    known = ~np.isnat(last_day)
    newest = last_day[known].max() if known.any() else None
    last_day[~known] = np.datetime64(read_from, "D") - np.timedelta64(1, "D")
    return (np.datetime64(as_of, "D") - last_day).astype(np.float64), newest


# A run where more plot-seasons than this have no clear NDVI at all points at the NDVI
# feed, not at the plots: the gate fails.
MAX_NO_NDVI_SHARE = 0.5


def output_checks(season_max_days: int) -> list[Check]:
    """Checks of the feature table: keys and ranges are strict (a failure is a bug)."""
    max_days = float(season_max_days + 1)

    def in_range(column: str, low: float | None, high: float | None) -> Check:
        return Check(f"{column}_out_of_range", "between", (column,), low, high, allowed_share=0.0)

    return [
        *[
            Check(f"missing_{column}", "not_null", (column,), allowed_share=0.0)
            for column in KEY_COLUMNS
        ],
        Check("duplicate_key", "unique", tuple(KEY_COLUMNS), allowed_share=0.0),
        in_range("days_after_planting", 0.0, float(season_max_days)),
        in_range("weather_coverage", 0.0, 1.0),
        in_range("precip_total", 0.0, None),
        in_range("precip_last_30d", 0.0, None),
        in_range("rainy_days", 0.0, max_days),
        in_range("max_dry_spell_days", 0.0, max_days),
        in_range("heat_days", 0.0, max_days),
        in_range("gdd_sum", 0.0, (GDD_CAP_C - GDD_BASE_C) * max_days),
        in_range("tmax_mean", *TEMPERATURE_RANGE_C),
        in_range("mean_ndvi", -1.0, 1.0),
        in_range("max_ndvi", -1.0, 1.0),
        in_range("ndvi_auc", 0.0, None),
        in_range("n_clear_ndvi_obs", 0.0, None),
        in_range("planting_doy", 1.0, 366.0),
        # Null shares: plot-seasons without any valid temperature, or without clear NDVI.
        Check("no_valid_temperature", "not_null", ("tmax_mean",)),
        Check("no_clear_ndvi", "not_null", ("mean_ndvi",), allowed_share=MAX_NO_NDVI_SHARE),
    ]
