"""The crop-calendar-aware reference: like is compared with like.

A crop season is supposed to change — rain piles up, NDVI climbs — so comparing tonight's
features with the whole training set would cry wolf every night. Each current row is
matched instead with historical rows of the **same season type and county, cut at the
same days after planting** (within a window of ``window_days``), from the seasons before
it (the seasons a champion is trained on). The reference is a stratified sample whose
strata — (season, season year, county, days-after-planting window) — have the same
proportions as tonight's rows, so the pooled comparison and every per-county comparison
are matched at once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from nuru_yield.features import RawInputs, training_rows

STRATUM = ["season", "season_year", "county", "cut"]


@dataclass(frozen=True)
class ReferenceSpec:
    """How the reference is drawn (settings ``drift_reference_*``)."""

    years: int = 5
    window_days: int = 7
    max_rows: int = 20_000
    season_max_days: int = 180
    seed: int = 0


def window_cut(days_after_planting: np.ndarray, window_days: int) -> np.ndarray:
    """The cut-off (days after planting) the reference of each current row is computed at:
    the centre of its ``window_days``-wide window."""
    dap = np.asarray(days_after_planting, dtype=np.float64)
    return (np.floor(dap / window_days) * window_days + window_days // 2).astype(np.int64)


def current_strata(current: pd.DataFrame, window_days: int) -> pd.DataFrame:
    """Row counts of the current rows per stratum (:data:`STRATUM`)."""
    cut = window_cut(current["days_after_planting"].to_numpy(), window_days)
    keys = current[STRATUM[:-1]].assign(cut=cut)
    return keys.groupby(STRATUM, as_index=False, observed=True).size()


def allocate(strata: pd.DataFrame, available: pd.Series, max_rows: int) -> pd.DataFrame:
    """Reference rows to draw per stratum: ``max_rows`` split in the proportions of
    ``strata`` (a :func:`current_strata` result), each capped by ``available`` — how many
    historical plot-seasons its (season, season year, county) has, a Series indexed by
    those three."""
    share = strata["size"].to_numpy(np.float64) / strata["size"].sum()
    key = pd.MultiIndex.from_frame(strata[STRATUM[:-1]])
    cap = available.reindex(key).fillna(0).to_numpy(np.int64)
    return strata.assign(target=np.minimum(np.rint(share * max_rows).astype(np.int64), cap))


def history_pool(plots: pd.DataFrame, season: str, season_year: int, years: int) -> pd.DataFrame:
    """Plot-seasons of the same season type from the ``years`` season years before."""
    year = plots["season_year"]
    return plots[(plots["season"] == season) & (year < season_year) & (year >= season_year - years)]


def matched_reference(
    raw: RawInputs, current: pd.DataFrame, spec: ReferenceSpec
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Reference feature rows matched to ``current`` (see the module doc) and a description
    of them for the report. Rows carry the feature columns of the features module plus
    ``cut``, the days after planting of the stratum they stand in for."""
    rng = np.random.default_rng(spec.seed)
    strata = current_strata(current, spec.window_days)
    pools = {
        (season, year): history_pool(raw.plots, season, year, spec.years)
        for season, year in strata[["season", "season_year"]]
        .drop_duplicates()
        .itertuples(index=False)
    }
    available = pd.concat(
        {key: pool.groupby("county", observed=True).size() for key, pool in pools.items()}
    )
    wanted = (
        allocate(strata, available, spec.max_rows) if len(available) else strata.assign(target=0)
    )
    frames, described = [], []
    for (season, year), group in wanted.groupby(["season", "season_year"], observed=True):
        cuts = sorted(int(cut) for cut in group.loc[group["target"] > 0, "cut"].unique())
        picked = _sample_plot_seasons(pools[season, year], group, rng)
        if picked.empty or not cuts:
            continue
        rows = training_rows(
            dataclasses.replace(raw, plots=picked),
            days_after_planting=cuts,
            season_max_days=spec.season_max_days,
        )
        frames.append(
            _take_targets(rows.assign(cut=rows["days_after_planting"].astype(np.int64)), group, rng)
        )
        described.append(
            {
                "season": season,
                "season_year": int(year),
                "reference_years": sorted(int(y) for y in picked["season_year"].unique()),
                "days_after_planting": cuts,
            }
        )
    reference = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return reference, {"strata": described, "rows": len(reference), **dataclasses.asdict(spec)}


def _sample_plot_seasons(
    pool: pd.DataFrame, wanted: pd.DataFrame, rng: np.random.Generator
) -> pd.DataFrame:
    """Per county, as many historical plot-seasons as its largest stratum needs."""
    need = wanted.groupby("county", observed=True)["target"].max()
    picked = []
    for county, rows in pool.groupby("county", observed=True):
        n = int(need.get(county, 0))
        if n > 0:
            picked.append(rows.iloc[rng.choice(len(rows), size=min(n, len(rows)), replace=False)])
    return pd.concat(picked) if picked else pool.iloc[:0]


def _take_targets(
    rows: pd.DataFrame, wanted: pd.DataFrame, rng: np.random.Generator
) -> pd.DataFrame:
    """From the computed rows, a random ``target`` rows per (county, cut) stratum (fewer
    when plot-seasons were quarantined)."""
    shuffled = rows.iloc[rng.permutation(len(rows))].reset_index(drop=True)
    target = shuffled[["county", "cut"]].merge(wanted[["county", "cut", "target"]], how="left")
    rank = shuffled.groupby(["county", "cut"], observed=True).cumcount().to_numpy()
    return shuffled[rank < target["target"].fillna(0).to_numpy()].reset_index(drop=True)
