"""The crop-calendar-aware reference: like is compared with like.

A crop season is supposed to change — rain piles up, NDVI climbs — so comparing tonight's
features with the whole training set would cry wolf every night. Each current row (a plot
of a given season type and county, planted on day ``p`` of its season year, seen on run
date ``D``) is matched instead with historical plot-seasons of the **same season type and
county, planted in the same window** of ``window_days`` (by day of their season year),
**seen on the same calendar day** in their own year — so at the same days after planting
(within the window) and at the same point of the rainy season. History comes from the
``years`` season years before the current one (the seasons a champion is trained on).

The reference is a stratified sample with the strata (season, season year, county,
planting window) in the same proportions as tonight's rows, so the pooled comparison and
every per-county comparison are matched at once. A stratum whose history is thinner than
its share is drawn with replacement (its mix is kept, its information is not inflated
beyond what exists); one without any history is left out and counted.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from nuru_yield.features.compute import compute_features, prepare_plots
from nuru_yield.features.raw import RawInputs

STRATUM = ["season", "season_year", "county", "planting_window"]
_POOL_STRATUM = ["season", "stratum_year", "county", "planting_window"]  # history's side
_EPOCH = np.datetime64("1970-01-01", "D")


@dataclass(frozen=True)
class ReferenceSpec:
    """How the reference is drawn (settings ``drift_reference_*``)."""

    years: int = 5
    window_days: int = 7
    max_rows: int = 20_000
    seed: int = 0


def season_day(planting: np.ndarray, season_year: np.ndarray) -> np.ndarray:
    """Day of the season year a plot was planted on (0 = 1 January of its season year; a
    Short Rains crop planted in January of the next year gets 365 and more)."""
    days = np.asarray(planting, dtype="datetime64[D]")
    new_year = np.asarray(season_year, dtype=np.int64) - 1970
    return (days - new_year.astype("datetime64[Y]").astype("datetime64[D]")).astype(np.int64)


def same_day_years_before(day: dt.date, years: int) -> dt.date:
    """The same calendar day ``years`` earlier (29 February → 28 February)."""
    try:
        return day.replace(year=day.year - years)
    except ValueError:
        return day.replace(year=day.year - years, day=28)


def planting_windows(current: pd.DataFrame, run_date: dt.date, window_days: int) -> np.ndarray:
    """The planting window of each current row, from the run date and its days after
    planting (the prediction log carries those, not the planting date)."""
    dap = current["days_after_planting"].to_numpy(np.float64).astype(np.int64)
    planting = np.datetime64(run_date, "D") - dap
    return season_day(planting, current["season_year"].to_numpy(np.int64)) // window_days


def current_strata(current: pd.DataFrame, run_date: dt.date, window_days: int) -> pd.DataFrame:
    """Row counts of the current rows per stratum (:data:`STRATUM`)."""
    keys = current[STRATUM[:-1]].assign(
        planting_window=planting_windows(current, run_date, window_days)
    )
    return keys.groupby(STRATUM, as_index=False, observed=True).size()


def allocate(strata: pd.DataFrame, max_rows: int) -> pd.DataFrame:
    """Reference rows per stratum: ``max_rows`` split in the current proportions."""
    share = strata["size"].to_numpy(np.float64) / strata["size"].sum()
    return strata.assign(target=np.rint(share * max_rows).astype(np.int64))


def history(
    plots: pd.DataFrame, strata: pd.DataFrame, years: int, window_days: int
) -> pd.DataFrame:
    """Historical plot-seasons of the strata — same season type, county and planting
    window, from the ``years`` season years before — with the stratum's ``target`` and
    ``stratum_year``, the current season year each one stands in for."""
    day = season_day(plots["planting_date"].to_numpy("datetime64[D]"), plots["season_year"])
    frame = plots.assign(planting_window=day // window_days)
    pools = []
    for season, stratum_year in (
        strata[["season", "season_year"]].drop_duplicates().itertuples(index=False)
    ):
        year = frame["season_year"]
        earlier = (
            (frame["season"] == season) & (year < stratum_year) & (year >= stratum_year - years)
        )
        pools.append(frame[earlier].assign(stratum_year=stratum_year))
    pool = pd.concat(pools, ignore_index=True) if pools else frame.assign(stratum_year=0).iloc[:0]
    keys = strata[[*STRATUM, "target"]].rename(columns={"season_year": "stratum_year"})
    return pool.merge(keys, on=_POOL_STRATUM)


def draw(pool: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """``target`` plot-seasons per stratum of ``pool``: without replacement when its
    history is deep enough, else with replacement."""
    picked = []
    for _, rows in pool.groupby(_POOL_STRATUM, observed=True, sort=True):
        target = int(rows["target"].iat[0])
        if target > 0:
            picked.append(rows.iloc[rng.choice(len(rows), size=target, replace=target > len(rows))])
    return pd.concat(picked, ignore_index=True) if picked else pool.iloc[:0]


def seen_on(run_date: dt.date, years_back: np.ndarray) -> np.ndarray:
    """``run_date`` shifted back by each row's number of years (days since 1970-01-01)."""
    shifted = {
        back: (np.datetime64(same_day_years_before(run_date, int(back)), "D") - _EPOCH).astype(
            np.int64
        )
        for back in np.unique(years_back)
    }
    return np.array([shifted[back] for back in years_back], dtype=np.int64)


def matched_reference(
    raw: RawInputs, current: pd.DataFrame, run_date: dt.date, spec: ReferenceSpec
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Reference feature rows matched to ``current`` on ``run_date`` (see the module doc)
    and a description of them for the report."""
    rng = np.random.default_rng(spec.seed)
    strata = allocate(current_strata(current, run_date, spec.window_days), spec.max_rows)
    pool = history(raw.plots, strata, spec.years, spec.window_days)
    checked = prepare_plots(pool, raw.cells)
    picked = draw(checked[checked["reason"].isna()], rng)
    years_back = (picked["stratum_year"] - picked["season_year"]).to_numpy(np.int64)
    planting = (picked["planting_date"].to_numpy("datetime64[D]") - _EPOCH).astype(np.int64)
    # Seen on the run date's calendar day of its own year (a later planter: on its first day).
    as_of = np.maximum(seen_on(run_date, years_back), planting)
    reference = compute_features(picked, as_of, raw)
    covered = pool.groupby(_POOL_STRATUM, observed=True)["target"].first().index
    without = strata.set_index(STRATUM).drop(covered, errors="ignore")["size"].sum()
    described = {
        "strata": [
            {
                "season": str(season),
                "season_year": int(year),
                "reference_years": sorted(
                    int(y)
                    for y in picked.loc[picked["stratum_year"] == year, "season_year"].unique()
                ),
            }
            for season, year in strata[["season", "season_year"]]
            .drop_duplicates()
            .itertuples(index=False)
        ],
        "rows": len(reference),
        "current_rows_without_history": int(without),
        **dataclasses.asdict(spec),
    }
    return reference, described
