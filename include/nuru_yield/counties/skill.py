"""Hindcast skill of county forecasts, the baselines they must beat, and the county-level
interval (pure functions; docs/DESIGN.md, "County bulletins").

The hindcasts (``nuru_yield.training.hindcast``) leave one labelled season out at a time,
refit the champion's recipe on the others and forecast the season left out at fixed points
of it (:data:`LEADS` days after planting); each plot forecast is aggregated to its county
as tonight's are (:func:`~nuru_yield.counties.figures.county_means`) and set against the
county's realized yield of that season. Per county × season kind × lead:

* ``mape`` — mean absolute percentage error over the hindcast seasons; ``nrmse`` — RMSE
  divided by the county's mean realized yield (comparable across counties of 0.8 and 3 t/ha);
* the same for the **naive** baseline, the mean of the county's other seasons of the kind
  (what "a normal season" says), and the **trend** baseline, the county's linear trend over
  its other seasons (at least :data:`MIN_TREND_SEASONS`), read at the season left out;
* ``beats_naive``: the model's NRMSE is below the naive mean's. Where it is not, the bulletin
  says plainly that the county's average has been the better guide at this point of the season;
* the interval factors of the county figure: split-conformal 10%/90% quantiles of
  ``actual / forecast`` of the county hindcasts (``models.intervals.conformal_factors``) —
  calibrated on county figures, not summed from plot quantiles (plot errors partly cancel in
  a county mean, a season's weather moves them together). A county with at least
  :data:`MIN_OWN_INTERVAL_SEASONS` hindcast seasons gets its own; the others share the
  factors pooled over every county of the season kind at that lead (``interval_scope``).

Fewer than :data:`MIN_SKILL_SEASONS` hindcast seasons give no skill (``None``): four seasons
make a poor track record, fewer none.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from nuru_yield.models.intervals import INTERVAL_LEVEL, conformal_factors

LEADS: tuple[int, ...] = (30, 60, 90, 120)
MIN_SKILL_SEASONS = 4
MIN_TREND_SEASONS = 3
# Split-conformal 80% needs ⌈(n + 1) · 0.9⌉ ≤ n: nine seasons for a county's own factors.
MIN_OWN_INTERVAL_SEASONS = 9
OWN, POOLED = "county", "pooled"
SKILL_KEYS = ["county", "season", "lead_days"]
SKILL_COLUMNS = [
    *SKILL_KEYS,
    "n_seasons",
    "first_season_year",
    "last_season_year",
    "mean_yield_kg_per_ha",
    "skill_mape",
    "skill_nrmse",
    "naive_mape",
    "naive_nrmse",
    "trend_mape",
    "trend_nrmse",
    "beats_naive",
    "beats_trend",
    "lower_factor",
    "upper_factor",
    "interval_scope",
    "interval_seasons",
]


def trend_prediction(years: Sequence[float], values: Sequence[float], at: float) -> float:
    """The least-squares line through ``(years, values)`` read at ``at``; NaN with fewer
    than :data:`MIN_TREND_SEASONS` points or a single year."""
    x = np.asarray(years, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    if len(x) < MIN_TREND_SEASONS or np.ptp(x) == 0:
        return float("nan")
    slope, intercept = np.polyfit(x - x.mean(), y, 1)
    return float(intercept + slope * (at - x.mean()))


def baselines(record: pd.DataFrame, target: str) -> pd.DataFrame:
    """For each county-season of ``record`` (``county``, ``season``, ``season_year``,
    ``target``): ``naive``, the mean of the county's other seasons of the kind, and
    ``trend``, their linear trend read at its year (NaN when there are too few)."""
    naive = pd.Series(np.nan, index=record.index)
    trend = pd.Series(np.nan, index=record.index)
    for _, group in record.groupby(["county", "season"], observed=True):
        years = group["season_year"].to_numpy(np.float64)
        values = group[target].to_numpy(np.float64)
        for i, index in enumerate(group.index):
            others = np.arange(len(group)) != i
            if others.any():
                naive[index] = values[others].mean()
                trend[index] = trend_prediction(years[others], values[others], years[i])
    return record.assign(naive=naive, trend=trend)


def errors(forecast: np.ndarray, actual: np.ndarray) -> tuple[float, float]:
    """MAPE (%) and RMSE divided by the mean actual, over the pairs where both are known
    (the MAPE over positive actuals); NaN when nothing is."""
    forecast = np.asarray(forecast, dtype=np.float64)
    actual = np.asarray(actual, dtype=np.float64)
    known = np.isfinite(forecast) & np.isfinite(actual)
    if not known.any():
        return float("nan"), float("nan")
    f, a = forecast[known], actual[known]
    positive = a > 0
    mape = (
        float(np.mean(np.abs(f[positive] - a[positive]) / a[positive]) * 100)
        if positive.any()
        else float("nan")
    )
    mean = float(a.mean())
    nrmse = float(np.sqrt(np.mean((f - a) ** 2)) / mean) if mean > 0 else float("nan")
    return mape, nrmse


def skill_table(hindcasts: pd.DataFrame, level: float = INTERVAL_LEVEL) -> pd.DataFrame:
    """:data:`SKILL_COLUMNS` per county × season kind × lead of county ``hindcasts``
    (``county``, ``season``, ``season_year``, ``lead_days``, ``forecast``, ``actual``,
    ``naive``, ``trend``): see the module docstring."""
    forecast = hindcasts["forecast"].to_numpy(np.float64)
    actual = hindcasts["actual"].to_numpy(np.float64)
    frame = hindcasts[np.isfinite(forecast) & np.isfinite(actual) & (forecast > 0)]
    pooled = {}
    for key, group in frame.groupby(["season", "lead_days"], observed=True):
        ratios = (group["actual"] / group["forecast"]).to_numpy()
        pooled[key] = (*conformal_factors(ratios, level), len(group))
    rows = []
    for (county, season, lead), group in frame.groupby(SKILL_KEYS, observed=True, sort=True):
        n = len(group)
        actual = group["actual"].to_numpy(np.float64)
        skilled = n >= MIN_SKILL_SEASONS
        model = errors(group["forecast"].to_numpy(), actual) if skilled else (np.nan, np.nan)
        naive = errors(group["naive"].to_numpy(), actual) if skilled else (np.nan, np.nan)
        trend = errors(group["trend"].to_numpy(), actual) if skilled else (np.nan, np.nan)
        if n >= MIN_OWN_INTERVAL_SEASONS:
            lower, upper = conformal_factors(actual / group["forecast"].to_numpy(), level)
            scope, seasons = OWN, n
        else:
            lower, upper, seasons = pooled[season, lead]
            scope = POOLED
        rows.append(
            {
                "county": county,
                "season": season,
                "lead_days": int(lead),
                "n_seasons": n,
                "first_season_year": int(group["season_year"].min()),
                "last_season_year": int(group["season_year"].max()),
                "mean_yield_kg_per_ha": float(actual.mean()),
                "skill_mape": model[0],
                "skill_nrmse": model[1],
                "naive_mape": naive[0],
                "naive_nrmse": naive[1],
                "trend_mape": trend[0],
                "trend_nrmse": trend[1],
                "beats_naive": _below(model[1], naive[1]),
                "beats_trend": _below(model[1], trend[1]),
                "lower_factor": lower,
                "upper_factor": upper,
                "interval_scope": scope,
                "interval_seasons": int(seasons),
            }
        )
    return pd.DataFrame(rows, columns=SKILL_COLUMNS)


def _below(value: float, other: float) -> bool | None:
    return bool(value < other) if np.isfinite(value) and np.isfinite(other) else None


def skill_by_lead(skill: pd.DataFrame) -> pd.DataFrame:
    """The skill table of every county summarised per season kind × lead: counties with a
    skill, the median MAPE and NRMSE of the model, the naive mean and the trend, and how many
    counties the model beats the naive mean in."""
    rated = skill[skill["skill_nrmse"].notna()]
    if rated.empty:
        return pd.DataFrame(
            columns=[
                "season",
                "lead_days",
                "counties",
                "skill_mape",
                "skill_nrmse",
                "naive_nrmse",
                "trend_nrmse",
                "beats_naive",
            ]
        )
    summary = rated.groupby(["season", "lead_days"], observed=True, sort=True).agg(
        counties=("county", "size"),
        skill_mape=("skill_mape", "median"),
        skill_nrmse=("skill_nrmse", "median"),
        naive_nrmse=("naive_nrmse", "median"),
        trend_nrmse=("trend_nrmse", "median"),
        beats_naive=("beats_naive", lambda values: int(sum(bool(v) for v in values))),
    )
    return summary.reset_index()


def nearest_lead(days: float, leads: Sequence[int] = LEADS) -> int:
    """The hindcast lead closest to ``days`` after planting (the earlier one on a tie)."""
    options = np.asarray(leads, dtype=np.float64)
    return int(options[int(np.argmin(np.abs(options - float(days))))])
