"""Season-to-date features as pure functions of the raw tables (no I/O, no clock).

Serving (:func:`season_to_date`) and training (:func:`training_rows`) both call
:func:`compute_features`, which aggregates each plot-season over its own window from the
planting date to the as-of date or the crop's season end, whichever comes first (both
inclusive): train/serve parity by construction. The season ends at physiological maturity,
the day the crop's thermal time since planting reaches ``MATURITY_THERMAL_TIME`` (see
``features.columns``); after it, a forecast's inputs stop changing.

Engine: every aggregate is vectorised over plot-seasons, never a Python loop over them.
Weather becomes a dense ``cells × days`` grid per planting year; window sums are two
look-ups in its prefix sums, and the longest dry spell is a range-maximum query on a
sparse table of dry-run lengths. NDVI observations are sorted by (plot, date) so that a
window is a contiguous slice: sums come from prefix sums, the peak from one ``reduceat``.

Bad observations (see :mod:`.checks`) are left out of every aggregate: a day without a
valid rain value counts neither as rainy nor as dry and ends a dry spell; cloudy NDVI
(cloud fraction above 0.5) is not "clear"; an unknown cloud fraction counts as clear.
A feature whose inputs have no valid value in its window is null (NaN), never 0: the two
counts of what was seen, ``weather_coverage`` and ``n_clear_ndvi_obs``, are 0 then
(``tests/unit/features/test_features_nulls.py`` declares each column's inputs and checks it).
Two clear observations of a plot on the same day are ordered by value, so that the area
under the NDVI curve does not depend on the order of the rows in the file.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from nuru_yield.config import Settings
from nuru_yield.contract import CLEAR_MAX_CLOUD, PLOTS_SCHEMA
from nuru_yield.features.cells import nearest_cells
from nuru_yield.features.checks import (
    MAX_CELL_DISTANCE_KM,
    NDVI_CHECKS,
    WEATHER_CHECKS,
    days_outside_season,
    failing_any,
    misdated_in_current_season,
    plot_checks,
    reasons,
)
from nuru_yield.features.columns import (
    FEATURE_COLUMNS,
    GDD_BASE_C,
    GDD_CAP_C,
    HEAT_DAY_C,
    MATURITY_BASE_C,
    MATURITY_THERMAL_TIME,
    NDVI_FEATURES,
    NDVI_SOIL_BASELINE,
    OUTPUT_COLUMNS,
    RAINY_DAY_MM,
    RECENT_DAYS,
    THERMAL_TIME_UNITS,
    WEATHER_FEATURES,
)
from nuru_yield.features.raw import RawInputs

log = logging.getLogger(__name__)

DEFAULT_SEASON_MAX_DAYS: int = Settings.model_fields["season_max_days"].default

LeadDays = Callable[[pd.DataFrame], np.ndarray]
"""Which training rows to cut from each plot-season: given the valid plot-seasons (rows of
:func:`prepare_plots`), an ``(n, k)`` array of days after planting, ``k`` rows per
plot-season (training draws them per lead-time band: ``training.dataset.lead_draws``)."""


@dataclass(frozen=True)
class SeasonToDate:
    """Features for one as-of date, plus every plot-season considered for it."""

    as_of: dt.date
    features: pd.DataFrame
    """One row per valid plot-season in progress on ``as_of`` (:data:`OUTPUT_COLUMNS`)."""
    plots: pd.DataFrame
    """The plot-seasons considered, with the derived check columns and ``reason``."""

    @property
    def rejected(self) -> pd.DataFrame:
        """Quarantined plot-seasons: the raw row and the failed checks (``;``-separated)."""
        bad = self.plots[self.plots["reason"].notna()]
        return bad[[*PLOTS_SCHEMA.names, "reason"]].reset_index(drop=True)


def season_to_date(
    raw: RawInputs,
    as_of: dt.date,
    season_max_days: int,
    max_cell_distance_km: float = MAX_CELL_DISTANCE_KM,
) -> SeasonToDate:
    """Features of every plot-season in progress on ``as_of`` (serving).

    In progress: planted on or before ``as_of`` and at most ``season_max_days`` before
    it. Rows without a planting date are considered (and quarantined) when their season
    year could be in progress, and so are rows of a season under way whose planting date
    lies outside its window (:func:`~.checks.misdated_in_current_season`), so that they
    are reported rather than silently skipped.
    """
    plots = raw.plots
    today = _day_number(as_of)
    undated = plots["planting_date"].isna().to_numpy()
    age = today - _days(plots["planting_date"])
    in_progress = ~undated & (age >= 0) & (age <= season_max_days)
    year = plots["season_year"]
    could_run = (year.isna() | year.isin([as_of.year - 1, as_of.year])).to_numpy(bool)
    misdated = misdated_in_current_season(plots, as_of, season_max_days)
    considered = prepare_plots(
        plots[in_progress | (undated & could_run) | misdated], raw.cells, max_cell_distance_km
    )
    valid = considered[considered["reason"].isna()]
    as_of_days = np.full(len(valid), today, dtype=np.int64)
    return SeasonToDate(as_of, compute_features(valid, as_of_days, raw), considered)


def training_rows(
    raw: RawInputs,
    lead_days: Sequence[int | None] | LeadDays,
    season_max_days: int = DEFAULT_SEASON_MAX_DAYS,
    max_cell_distance_km: float = MAX_CELL_DISTANCE_KM,
) -> pd.DataFrame:
    """Historical plot-seasons cut at several days after planting: the same cut-offs for
    every plot-season (``None`` = full season, ``season_max_days``), or ``k`` of its own
    from a :data:`LeadDays` function.

    One row per valid plot-season and cut-off, with the same columns as the served
    features (``days_after_planting`` tells the cut-off), grouped by cut-off (the first
    cut-off of every plot-season, then the second…). Quarantined plot-seasons are left out
    and logged; join ``raw/yields.parquet`` for labels. A cut-off past the data in ``raw``
    gives a partial window (``weather_coverage`` below 1).
    """
    checked = prepare_plots(raw.plots, raw.cells, max_cell_distance_km)
    valid = checked[checked["reason"].isna()].reset_index(drop=True)
    if len(valid) < len(checked):
        log.warning("training rows: %d plot-seasons quarantined", len(checked) - len(valid))
    if callable(lead_days):
        leads = np.asarray(lead_days(valid), dtype=np.int64).reshape(len(valid), -1)
    else:
        cut_offs = [season_max_days if days is None else int(days) for days in lead_days]
        leads = np.tile(np.asarray(cut_offs, dtype=np.int64), (len(valid), 1))
    rows = np.tile(np.arange(len(valid)), leads.shape[1])
    as_of = _days(valid["planting_date"])[rows] + leads.T.ravel()
    return compute_features(valid.iloc[rows], as_of, raw)


def prepare_plots(
    plots: pd.DataFrame, cells: pd.DataFrame, max_cell_distance_km: float = MAX_CELL_DISTANCE_KM
) -> pd.DataFrame:
    """Plot-seasons with their nearest weather cell, the derived check columns and ``reason``."""
    frame = plots.copy()
    frame["days_outside_season"] = days_outside_season(
        frame["season"], frame["season_year"], frame["planting_date"]
    )
    cell_id, distance = nearest_cells(
        cells,
        frame["latitude"].to_numpy(np.float64, na_value=np.nan),
        frame["longitude"].to_numpy(np.float64, na_value=np.nan),
    )
    frame["weather_cell_id"] = cell_id
    frame["weather_cell_distance_km"] = distance
    frame["reason"] = reasons(frame, plot_checks(max_cell_distance_km))
    return frame


def compute_features(plots: pd.DataFrame, as_of: np.ndarray, raw: RawInputs) -> pd.DataFrame:
    """The shared core: features of each valid plot-season over ``planting_date … as_of``,
    cut at the crop's season end (see the module docstring).

    ``plots`` are rows of :func:`prepare_plots` that passed every check; ``as_of`` holds
    one cut-off per row as days since 1970-01-01. ``days_after_planting`` stays the lead
    time (``as_of`` − planting) after the season end.
    """
    start = _days(plots["planting_date"])
    end = np.asarray(as_of, dtype=np.int64)
    weather, window_end = weather_aggregates(
        plots["weather_cell_id"].to_numpy(np.int64), start, end, raw.weather
    )
    ndvi = ndvi_aggregates(plots["plot_id"].to_numpy(np.int64), start, window_end, raw.ndvi)
    planting = start.astype("datetime64[D]")
    columns: dict[str, object] = {
        "plot_id": plots["plot_id"].to_numpy(np.int64),
        "season_year": plots["season_year"].to_numpy(np.int64),
        "season": plots["season"].to_numpy(object),
        "county": plots["county"].to_numpy(object),
        "planting_date": planting,
        "as_of_date": end.astype("datetime64[D]"),
        "weather_cell_id": plots["weather_cell_id"].to_numpy(np.int64),
        "ndvi_missing": ndvi["n_clear_ndvi_obs"] == 0,
        **weather,
        **ndvi,
        "days_after_planting": (end - start).astype(np.float64),
        "planting_doy": (planting - planting.astype("datetime64[Y]")).astype(np.float64) + 1,
        "altitude": plots["altitude"].to_numpy(np.float64, na_value=np.nan),
        "latitude": plots["latitude"].to_numpy(np.float64),
        "longitude": plots["longitude"].to_numpy(np.float64),
        "is_short_rains": (plots["season"] == "Short Rains").to_numpy(np.float64),
    }
    frame = pd.DataFrame(columns)[OUTPUT_COLUMNS]
    return frame.astype(dict.fromkeys(FEATURE_COLUMNS, np.float64))


# --- weather ------------------------------------------------------------------------------
def weather_aggregates(
    cell_ids: np.ndarray, start: np.ndarray, end: np.ndarray, weather: pd.DataFrame
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Weather features of each window ``[start, end]`` (days) at its cell, each window cut
    at its crop's season end; and the day each window ends."""
    out = {name: np.full(len(cell_ids), np.nan) for name in WEATHER_FEATURES}
    window_end = end.copy()
    if len(cell_ids) == 0:
        return out, window_end
    daily = _DailyWeather.from_frame(weather)
    # One dense grid per planting year keeps the day axis (and memory) bounded.
    year = start.astype("datetime64[D]").astype("datetime64[Y]")
    for group in _sorted_unique(year):
        rows = year == group
        features, window_end[rows] = daily.window_features(cell_ids[rows], start[rows], end[rows])
        for name, values in features.items():
            out[name][rows] = values
    return out, window_end


@dataclass(frozen=True)
class _DailyWeather:
    cell_id: np.ndarray
    day: np.ndarray
    precip: np.ndarray
    tmin: np.ndarray
    tmax: np.ndarray
    precip_ok: np.ndarray
    temperature_ok: np.ndarray

    @classmethod
    def from_frame(cls, weather: pd.DataFrame) -> _DailyWeather:
        def bad(scope: str) -> np.ndarray:
            return failing_any(weather, [c for c in WEATHER_CHECKS if c.scope == scope])

        row_bad = bad("row")
        return cls(
            cell_id=_ids(weather["cell_id"]),
            day=_days(weather["date"]),
            precip=weather["precip_mm"].to_numpy(np.float64, na_value=np.nan),
            tmin=weather["tmin_c"].to_numpy(np.float64, na_value=np.nan),
            tmax=weather["tmax_c"].to_numpy(np.float64, na_value=np.nan),
            precip_ok=~row_bad & ~bad("precip"),
            temperature_ok=~row_bad & ~bad("temperature"),
        )

    def window_features(
        self, cell_ids: np.ndarray, start: np.ndarray, end: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        first = int(start.min())
        n_days = int(end.max()) - first + 1
        cells, row = np.unique(cell_ids, return_inverse=True)
        # Place each observation on the cells × days grid of this group.
        slot = np.clip(np.searchsorted(cells, self.cell_id), 0, len(cells) - 1)
        offset = self.day - first
        on_grid = (cells[slot] == self.cell_id) & (offset >= 0) & (offset < n_days)
        flat = slot[on_grid] * n_days + offset[on_grid]
        shape = (len(cells), n_days)

        def grid(values: np.ndarray, ok: np.ndarray) -> np.ndarray:
            out = np.zeros(len(cells) * n_days)
            keep = ok[on_grid]
            out[flat[keep]] = values[on_grid][keep]
            return out.reshape(shape)

        p_ok = grid(np.ones(len(self.day)), self.precip_ok) > 0
        t_ok = grid(np.ones(len(self.day)), self.temperature_ok) > 0
        precip = grid(self.precip, self.precip_ok)
        tmin = grid(self.tmin, self.temperature_ok)
        tmax = grid(self.tmax, self.temperature_ok)
        gdd = (np.minimum(tmax, GDD_CAP_C) + np.maximum(tmin, GDD_BASE_C)) / 2 - GDD_BASE_C
        daily = np.maximum((tmin + tmax) / 2 - MATURITY_BASE_C, 0.0) * THERMAL_TIME_UNITS
        thermal = np.where(t_ok, np.floor(daily + 0.5), 0.0).astype(np.int64)

        a = start - first
        b = np.minimum(end - first, _maturity_offset(thermal, row, a))
        recent = np.maximum(a, b - (RECENT_DAYS - 1))
        window = _WindowSums(row, a, b)
        precip_days = window.total(p_ok)
        temperature_days = window.total(t_ok)
        has_precip = np.where(precip_days > 0, 1.0, np.nan)
        has_temperature = np.where(temperature_days > 0, 1.0, np.nan)
        recent_window = _WindowSums(row, recent, b)
        with np.errstate(invalid="ignore", divide="ignore"):
            features = {
                "precip_total": window.total(precip) * has_precip,
                "rainy_days": window.total(p_ok & (precip >= RAINY_DAY_MM)) * has_precip,
                # Null without a valid rain value: 0 would say "no dry spell", which the
                # monotone constraint turns into a higher forecast.
                "max_dry_spell_days": _max_dry_spell(p_ok & (precip < RAINY_DAY_MM), row, a, b)
                * has_precip,
                "precip_last_30d": recent_window.total(precip)
                * np.where(recent_window.total(p_ok) > 0, 1.0, np.nan),
                "gdd_sum": window.total(np.where(t_ok, np.maximum(gdd, 0.0), 0.0))
                * has_temperature,
                "heat_days": window.total(t_ok & (tmax > HEAT_DAY_C)) * has_temperature,
                "tmax_mean": window.total(tmax) / temperature_days,
                "weather_coverage": window.total(p_ok & t_ok) / (b - a + 1),
            }
        return features, b + first


def _maturity_offset(thermal: np.ndarray, row: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Per window, the grid day on which the thermal time (integer units, see
    ``THERMAL_TIME_UNITS``) summed from day ``a`` of grid row ``row`` reaches
    ``MATURITY_THERMAL_TIME`` (a day past the grid where it never does)."""
    n_rows, n_days = thermal.shape
    maturity = round(MATURITY_THERMAL_TIME * THERMAL_TIME_UNITS)
    prefix = np.zeros((n_rows, n_days + 1), dtype=np.int64)
    np.cumsum(thermal, axis=1, out=prefix[:, 1:])
    # Each row lifted above the one before it: one searchsorted over the flattened,
    # increasing prefix sums answers every window at once.
    lift = np.arange(n_rows, dtype=np.int64) * (int(prefix[:, -1].max()) + maturity + 1)
    target = prefix[row, a] + maturity + lift[row]
    first_reached = np.searchsorted((prefix + lift[:, None]).ravel(), target, side="left")
    return first_reached - row * (n_days + 1) - 1


@dataclass(frozen=True)
class _WindowSums:
    """Sums of a ``cells × days`` grid over each window ``[a, b]`` of row ``row``."""

    row: np.ndarray
    a: np.ndarray
    b: np.ndarray

    def total(self, daily: np.ndarray) -> np.ndarray:
        prefix = np.zeros((daily.shape[0], daily.shape[1] + 1))
        np.cumsum(daily, axis=1, out=prefix[:, 1:])
        return prefix[self.row, self.b + 1] - prefix[self.row, self.a]


def _max_dry_spell(dry: np.ndarray, row: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Longest run of consecutive dry days inside each window ``[a, b]`` of grid row ``row``.

    A run that began before ``a`` counts from ``a``. With ``w`` the first non-dry day at or
    after ``a``, the answer is ``max(w - a, max(run length ending at t) for t in [w, b])``,
    the second part a range-maximum query on a sparse table (log₂(days) levels).
    """
    n_days = dry.shape[1]
    days = np.arange(n_days, dtype=np.int32)
    run = days - np.maximum.accumulate(np.where(dry, -1, days), axis=1)
    next_break = np.minimum.accumulate(np.where(dry, n_days, days)[:, ::-1], axis=1)[:, ::-1]
    first_break = next_break[row, a]
    lead = np.minimum(first_break, b + 1) - a
    levels = [run]
    width = 1
    while 2 * width <= n_days:
        previous = levels[-1]
        level = previous.copy()
        level[:, : n_days - width] = np.maximum(previous[:, : n_days - width], previous[:, width:])
        levels.append(level)
        width *= 2
    table = np.stack(levels)
    inside = first_break <= b
    lo = np.where(inside, first_break, b)
    length = b - lo + 1
    level_of = np.floor(np.log2(length)).astype(np.int64)
    rest = np.maximum(table[level_of, row, lo], table[level_of, row, b - (1 << level_of) + 1])
    return np.maximum(lead, np.where(inside, rest, 0)).astype(np.float64)


# --- NDVI ---------------------------------------------------------------------------------
def ndvi_aggregates(
    plot_ids: np.ndarray, start: np.ndarray, end: np.ndarray, ndvi: pd.DataFrame
) -> dict[str, np.ndarray]:
    """NDVI features of each window ``[start, end]`` from the plot's clear observations."""
    n = len(plot_ids)
    out = {name: np.full(n, np.nan) for name in NDVI_FEATURES}
    out["n_clear_ndvi_obs"] = np.zeros(n)
    if n == 0:
        return out
    first = int(start.min())
    plots = _sorted_unique(plot_ids)
    key, obs_day, value = _clear_observations(ndvi, plots, first, int(end.max()))
    window_code = np.searchsorted(plots, plot_ids) << 32
    lo = np.searchsorted(key, window_code | (start - first), side="left")
    hi = np.searchsorted(key, window_code | (end - first), side="right")
    count = hi - lo
    seen = count > 0

    prefix = _prefix(value)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["mean_ndvi"] = (prefix[hi] - prefix[lo]) / count
    out["max_ndvi"] = np.where(seen, _slice_max(value, lo, hi), np.nan)
    # Trapezoids between consecutive clear observations of NDVI above bare soil (NDVI·days).
    above = np.maximum(value - NDVI_SOIL_BASELINE, 0.0)
    trapezoid = np.zeros(len(value))
    trapezoid[1:] = (above[1:] + above[:-1]) / 2 * np.diff(obs_day)
    area = _prefix(trapezoid)
    out["ndvi_auc"] = np.where(seen, area[hi] - area[np.minimum(lo + 1, hi)], np.nan)
    recent_lo = np.searchsorted(
        key, window_code | (np.maximum(start, end - (RECENT_DAYS - 1)) - first), side="left"
    )
    out["ndvi_slope_30d"] = _slopes(obs_day, value, recent_lo, hi, end)
    out["n_clear_ndvi_obs"] = count.astype(np.float64)
    return out


def _clear_observations(
    ndvi: pd.DataFrame, plots: np.ndarray, first: int, last: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clear, valid observations of ``plots`` between days ``first`` and ``last``.

    Returns ``(key, day, value)`` sorted by ``key = plot code << 32 | day - first`` (plot
    code = index in the sorted ``plots``), so that each window is one contiguous slice, and
    by value among same-day observations of a plot, so that nothing depends on file order.
    """
    day = _days(ndvi["date"])
    with np.errstate(invalid="ignore"):
        usable = ~failing_any(ndvi, NDVI_CHECKS) & ~(
            ndvi["cloud_fraction"].to_numpy(np.float64, na_value=np.nan) > CLEAR_MAX_CLOUD
        )
    usable &= (day >= first) & (day <= last)
    plot = _ids(ndvi["plot_id"])[usable]
    day = day[usable] - first
    value = ndvi["ndvi"].to_numpy(np.float64, na_value=np.nan)[usable]
    del usable
    step_plot = np.diff(plot)
    if np.all((step_plot > 0) | ((step_plot == 0) & (np.diff(day) >= 0))):
        # Already in (plot, day) order: look a code up once per run of equal plot ids.
        run_start = np.flatnonzero(np.diff(plot, prepend=plot[:1] - 1))
        run_code = _codes(plots, plot[run_start])
        code = np.repeat(run_code, np.diff(np.r_[run_start, len(plot)]))
        order = None
    else:
        code = _codes(plots, plot)
        order = np.argsort((code << 32) | day, kind="stable")
    del step_plot, plot
    if order is not None:
        code, day, value = code[order], day[order], value[order]
    keep = code >= 0
    key = (code[keep] << 32) | day[keep]
    day, value = day[keep] + first, value[keep]
    tie = np.flatnonzero(key[1:] == key[:-1])
    if len(tie):  # same plot, same day: order the group's values (plot and day are equal)
        members = np.union1d(tie, tie + 1)
        member_key = key[members]
        group = np.cumsum(np.r_[True, member_key[1:] != member_key[:-1]])
        value[members] = value[members][np.lexsort((value[members], group))]
    return key, day, value


def _codes(plots: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Index of each id in the sorted ``plots``, −1 for ids that are not there."""
    code = np.minimum(np.searchsorted(plots, ids), len(plots) - 1)
    code[plots[code] != ids] = -1
    return code


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """``np.unique`` by sorting (numpy's hash path is slow on a million distinct ids)."""
    ordered = np.sort(values)
    return ordered[np.diff(ordered, prepend=ordered[:1] - 1) != 0]


def _prefix(values: np.ndarray) -> np.ndarray:
    out = np.zeros(len(values) + 1)
    np.cumsum(values, out=out[1:])
    return out


def _slice_max(values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """max(values[lo:hi]) per slice (−inf for empty slices), O(len(values) + slices)."""
    order = np.argsort(lo, kind="stable")  # reduceat stays linear when starts increase
    padded = np.append(values, -np.inf)
    bounds = np.column_stack([lo[order], hi[order]]).ravel()
    reduced = np.maximum.reduceat(padded, bounds)[::2]
    out = np.empty(len(lo))
    out[order] = np.where(hi[order] > lo[order], reduced, -np.inf)
    return out


def _slopes(
    day: np.ndarray, value: np.ndarray, lo: np.ndarray, hi: np.ndarray, end: np.ndarray
) -> np.ndarray:
    """Least-squares slope (NDVI per day) of each slice; NaN with fewer than two dates."""
    count = hi - lo
    window = np.repeat(np.arange(len(lo)), count)
    position = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count) + lo[window]
    x = (day[position] - end[window]).astype(np.float64)  # small offsets: exact sums
    y = value[position]

    def total(weights: np.ndarray) -> np.ndarray:
        return np.bincount(window, weights=weights, minlength=len(lo))

    n = count.astype(np.float64)
    sx, sy = total(x), total(y)
    spread = n * total(x * x) - sx * sx
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = (n * total(x * y) - sx * sy) / spread
    return np.where((count >= 2) & (spread > 0), slope, np.nan)


# --- helpers ------------------------------------------------------------------------------
def _day_number(day: dt.date) -> int:
    return (day - dt.date(1970, 1, 1)).days


def _days(dates: pd.Series) -> np.ndarray:
    """Days since 1970-01-01 as int64 (missing dates become a very negative number)."""
    return dates.to_numpy("datetime64[D]").astype(np.int64)


def _ids(values: pd.Series) -> np.ndarray:
    """Integer ids as int64, missing ids as −1 (such rows fail a ``not_null`` check)."""
    if values.hasnans:
        values = values.fillna(-1)
    return values.to_numpy(np.int64)
