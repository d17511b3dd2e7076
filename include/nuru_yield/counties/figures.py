"""County figures from plot rows, and where a county's forecast stands in its record.

One weighting serves every county figure — tonight's forecast, the record of realized
yields, the hindcasts behind the skill — so that they compare like with like: a plot
counts by its area (``area_ha`` of ``raw/plots.parquet``) when every plot of the group has
a known, positive area, and equally otherwise (a county mean of per-hectare yields is then
a mean over plots, not over hectares, and no production can be counted).

The record of a county is its realized county-season yields: the weighted mean of the
harvest labels of each past season of the same kind (Long Rains, Short Rains) with enough
labelled plots to mean something. A forecast is read against it as FEWS NET and JRC ASAP
read theirs: % of the mean of the last five seasons and of every season on record, its
percentile among them, and whether it would be the lowest (or among the three lowest) on
record. A record too short for a comparison gives none (``None``): thresholds below.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from nuru_yield.contract import PLOT_AREA

COUNTY_SEASON = ["county", "season", "season_year"]
# The five-year mean is of the last RECENT_SEASONS seasons of the kind on record.
RECENT_SEASONS = 5
# Fewer earlier seasons on record than this: no comparison with the county's normal.
MIN_RECORD = 3
# "Among the three lowest on record" needs a record of at least this many seasons (with
# three, every forecast would be).
MIN_RECORD_LOWEST3 = 5


def county_means(
    frame: pd.DataFrame, value: str, keys: Sequence[str] = COUNTY_SEASON
) -> pd.DataFrame:
    """Per group of ``keys``: the mean of ``value`` weighted by plot area when every plot of
    the group has a positive ``area_ha``, else the plain mean (see the module docstring).

    Columns: ``keys``, ``value``, ``n`` (rows), ``area_weighted`` and ``area_ha`` (the
    group's hectares; NaN unless every area is known)."""
    values = frame[value].to_numpy(np.float64)
    if PLOT_AREA in frame:
        area = frame[PLOT_AREA].to_numpy(np.float64, na_value=np.nan)
    else:
        area = np.full(len(frame), np.nan)
    known = np.isfinite(area) & (area > 0)
    parts = frame[list(keys)].assign(
        _value=values,
        _known=known.astype(np.int64),
        _area=np.where(known, area, 0.0),
        _weighted=np.where(known, area * values, 0.0),
    )
    sums = parts.groupby(list(keys), observed=True, sort=True).agg(
        n=("_value", "size"),
        known=("_known", "sum"),
        value_sum=("_value", "sum"),
        area=("_area", "sum"),
        weighted=("_weighted", "sum"),
    )
    weighted = (sums["known"] == sums["n"]).to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(weighted, sums["weighted"] / sums["area"], sums["value_sum"] / sums["n"])
    return sums.reset_index()[list(keys)].assign(
        **{value: mean},
        n=sums["n"].to_numpy(np.int64),
        area_weighted=weighted,
        area_ha=np.where(weighted, sums["area"].to_numpy(), np.nan),
    )


def labelled_plot_seasons(labels: pd.DataFrame, plots: pd.DataFrame, target: str) -> pd.DataFrame:
    """Harvest labels (plot-season key and ``target``) with their plot-season's ``county``
    and, when the plots carry it, ``area_ha``; labels of plot-seasons not among ``plots``
    are left out (a label says nothing of a county it cannot be placed in)."""
    keys = ["plot_id", "season_year", "season"]
    columns = [*keys, "county", *([PLOT_AREA] if PLOT_AREA in plots else [])]
    placed = plots[columns].drop_duplicates(keys)
    return labels[[*keys, target]].merge(placed, on=keys, how="inner")


def county_record(labelled: pd.DataFrame, target: str, min_labels: int) -> pd.DataFrame:
    """The realized county-season yields of labelled plot-seasons (``county``, ``season``,
    ``season_year``, ``target`` and optionally ``area_ha``): :func:`county_means` of the
    county-seasons with at least ``min_labels`` labels, oldest first."""
    record = county_means(labelled, target)
    kept = record[record["n"] >= min_labels]
    return kept.sort_values(COUNTY_SEASON).reset_index(drop=True)


@dataclass(frozen=True)
class Standing:
    """Where a county forecast stands in the county's record of the same season kind (the
    comparisons are ``None`` when the record is too short for them)."""

    record_seasons: int
    mean_5yr: float | None = None
    mean_lt: float | None = None
    pct_of_5yr_mean: float | None = None
    pct_of_lt_mean: float | None = None
    hist_percentile: float | None = None
    lowest_on_record: bool | None = None
    lowest3_on_record: bool | None = None


def standing(forecast: float, record: Sequence[float]) -> Standing:
    """``forecast`` (kg/ha) against ``record``, the county's realized yields of earlier
    seasons of the same kind, oldest first: % of the last :data:`RECENT_SEASONS` seasons'
    mean and of the long-term mean, its percentile rank among them (ties count half), and
    whether it is below every season on record (below the third lowest)."""
    past = np.asarray(record, dtype=np.float64)
    past = past[np.isfinite(past)]
    if len(past) < MIN_RECORD or not np.isfinite(forecast):
        return Standing(record_seasons=len(past))
    recent = past[-RECENT_SEASONS:]
    ordered = np.sort(past)
    below = float(np.sum(past < forecast) + 0.5 * np.sum(past == forecast))
    return Standing(
        record_seasons=len(past),
        mean_5yr=float(recent.mean()),
        mean_lt=float(past.mean()),
        pct_of_5yr_mean=_percent(forecast, float(recent.mean())),
        pct_of_lt_mean=_percent(forecast, float(past.mean())),
        hist_percentile=100.0 * below / len(past),
        lowest_on_record=bool(forecast < ordered[0]),
        lowest3_on_record=bool(forecast < ordered[2]) if len(past) >= MIN_RECORD_LOWEST3 else None,
    )


def _percent(value: float, of: float) -> float | None:
    return 100.0 * value / of if of > 0 else None


def record_before(
    record: pd.DataFrame, county: str, season: str, season_year: int, target: str
) -> list[float]:
    """The county's realized yields of the seasons of kind ``season`` before
    ``season_year``, oldest first (what :func:`standing` reads)."""
    rows = record[
        (record["county"] == county)
        & (record["season"] == season)
        & (record["season_year"] < season_year)
    ]
    return rows.sort_values("season_year")[target].astype(float).tolist()
