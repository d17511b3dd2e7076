"""A night's county forecasts: the rows of ``county_forecasts`` from the champion's plot
forecasts, the county's record, the champion's hindcast skill and the season signals (pure;
docs/DESIGN.md, "County bulletins").

Per county × season × season year in progress that night:

* ``n_plots`` scored, ``plot_share`` of the county's plot-seasons of that season in
  ``raw/plots.parquet``, ``lead_days`` — the median days after planting of its plots;
* ``forecast_kg_per_ha``: the area-weighted mean forecast (equal weights when any plot lacks
  an area: :func:`~nuru_yield.counties.figures.county_means`), ``production_t`` = Σ forecast ×
  area / 1000 over the scored plots (null without every area);
* ``lower_kg_per_ha`` / ``upper_kg_per_ha``: the 80% interval of the county figure, the
  forecast times the county-level conformal factors of the hindcasts at the lead nearest
  ``lead_days`` (``skill_lead_days``);
* where it stands in the county's record (:class:`~nuru_yield.counties.figures.Standing`);
* the skill of the forecast at that lead: MAPE and NRMSE, the naive mean's and the trend's
  NRMSE, ``beats_naive``;
* the season signals (:mod:`~nuru_yield.counties.signals`).

A county says what it cannot tell instead of guessing: ``status`` is ``too_few_plots``
(fewer scored plots than ``COUNTY_MIN_PLOTS``: no figure at all), ``short_record`` (fewer
earlier seasons on record than :data:`~nuru_yield.counties.figures.MIN_RECORD`: no
comparison with normal), ``no_skill`` (no hindcast skill of this model for the county at
this lead: no interval, no track record) or ``ok``; ``message`` says why in words, and says
plainly when the model has not beaten the county's average in hindcasts.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from nuru_yield.counties.figures import (
    COUNTY_SEASON,
    MIN_RECORD,
    county_means,
    record_before,
    standing,
)
from nuru_yield.counties.signals import SIGNAL_COLUMNS
from nuru_yield.counties.skill import nearest_lead

FORECAST = "predicted_yield_kg_per_ha"
OK, SHORT_RECORD, NO_SKILL, TOO_FEW_PLOTS = "ok", "short_record", "no_skill", "too_few_plots"
STATUSES = (OK, SHORT_RECORD, NO_SKILL, TOO_FEW_PLOTS)
# The columns of a county forecast row this module fills (``county_forecasts`` adds the
# run's date, id and model version).
COLUMNS = [
    *COUNTY_SEASON,
    "lead_days",
    "n_plots",
    "plot_share",
    "area_ha",
    "forecast_kg_per_ha",
    "lower_kg_per_ha",
    "upper_kg_per_ha",
    "production_t",
    "mean_5yr_kg_per_ha",
    "mean_lt_kg_per_ha",
    "record_seasons",
    "pct_of_5yr_mean",
    "pct_of_lt_mean",
    "hist_percentile",
    "lowest_on_record",
    "lowest3_on_record",
    "skill_lead_days",
    "skill_seasons",
    "skill_mape",
    "skill_nrmse",
    "naive_nrmse",
    "trend_nrmse",
    "beats_naive",
    *SIGNAL_COLUMNS,
    "status",
    "message",
]


def county_forecasts(
    scored: pd.DataFrame,
    plot_seasons: pd.DataFrame | None,
    record: pd.DataFrame,
    skill: pd.DataFrame,
    signals: pd.DataFrame,
    *,
    min_plots: int,
    target: str,
) -> pd.DataFrame:
    """The night's rows (:data:`COLUMNS`), one per county-season of ``scored``.

    ``scored``: the champion's plot forecasts (``county``, ``season``, ``season_year``,
    ``days_after_planting``, :data:`FORECAST`, optionally ``area_ha``); ``plot_seasons``:
    the raw plot-seasons per county-season (keys and ``n``; None when the raw plots cannot
    be read); ``record``: the realized county-season yields (``target``); ``skill``: the
    champion's ``county_skill`` rows; ``signals``: :func:`~.signals.season_signals` rows."""
    if scored.empty:
        return pd.DataFrame(columns=COLUMNS)
    means = county_means(scored, FORECAST)
    leads = scored.groupby(COUNTY_SEASON, observed=True, sort=True)["days_after_planting"].median()
    means = means.merge(leads.rename("lead").reset_index(), on=COUNTY_SEASON)
    totals = (
        {}
        if plot_seasons is None
        else {
            tuple(key): n for *key, n in plot_seasons[[*COUNTY_SEASON, "n"]].itertuples(index=False)
        }
    )
    signal_of = {
        tuple(row[:3]): dict(zip(SIGNAL_COLUMNS, row[3:], strict=True))
        for row in signals[[*COUNTY_SEASON, *SIGNAL_COLUMNS]].itertuples(index=False)
    }
    rows = []
    for row in means.itertuples(index=False):
        key = (row.county, row.season, int(row.season_year))
        rows.append(
            _row(
                row,
                totals.get(key),
                record_before(record, *key, target),
                skill[(skill["county"] == row.county) & (skill["season"] == row.season)],
                signal_of.get(key, {}),
                min_plots=min_plots,
                raw_plots_known=plot_seasons is not None,
            )
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def _row(
    mean: Any,
    planted: int | None,
    past: list[float],
    skill: pd.DataFrame,
    signal: dict[str, Any],
    *,
    min_plots: int,
    raw_plots_known: bool,
) -> dict[str, Any]:
    lead = round(float(mean.lead))
    n = int(mean.n)
    row: dict[str, Any] = {
        "county": mean.county,
        "season": mean.season,
        "season_year": int(mean.season_year),
        "lead_days": lead,
        "n_plots": n,
        "plot_share": n / planted if planted else None,
        **{column: signal.get(column) for column in SIGNAL_COLUMNS},
    }
    said = []
    if not raw_plots_known:
        said.append("raw/plots.parquet could not be read: the plot share is unknown")
    if n < min_plots:
        said.append(
            f"only {n} plots scored: a county figure needs at least {min_plots} (COUNTY_MIN_PLOTS)"
        )
        return {**row, "status": TOO_FEW_PLOTS, "message": "; ".join(said)}

    forecast = float(getattr(mean, FORECAST))
    row["forecast_kg_per_ha"] = forecast
    if mean.area_weighted:
        row["area_ha"] = float(mean.area_ha)
        row["production_t"] = forecast * float(mean.area_ha) / 1000.0
    else:
        said.append("not every plot has an area (area_ha): plots weigh equally, no production")

    status = OK
    place = standing(forecast, past)
    row.update(
        record_seasons=place.record_seasons,
        mean_5yr_kg_per_ha=place.mean_5yr,
        mean_lt_kg_per_ha=place.mean_lt,
        pct_of_5yr_mean=place.pct_of_5yr_mean,
        pct_of_lt_mean=place.pct_of_lt_mean,
        hist_percentile=place.hist_percentile,
        lowest_on_record=place.lowest_on_record,
        lowest3_on_record=place.lowest3_on_record,
    )
    if place.record_seasons < MIN_RECORD:
        status = SHORT_RECORD
        said.append(
            f"{place.record_seasons} earlier {mean.season} season(s) on record: at least "
            f"{MIN_RECORD} are needed to compare with the county's normal"
        )

    rated = skill[skill["skill_nrmse"].notna()] if not skill.empty else skill
    if rated.empty:
        if status == OK:
            status = NO_SKILL
        said.append(
            "no hindcast skill of this model for the county: no interval and no track "
            "record (`nuru-yield skill --date D` computes it)"
        )
        return {**row, "status": status, "message": "; ".join(said) or None}

    at = nearest_lead(lead, rated["lead_days"].astype(int).tolist())
    track = rated[rated["lead_days"] == at].iloc[0]
    row.update(
        skill_lead_days=at,
        skill_seasons=int(track["n_seasons"]),
        skill_mape=_number(track["skill_mape"]),
        skill_nrmse=_number(track["skill_nrmse"]),
        naive_nrmse=_number(track["naive_nrmse"]),
        trend_nrmse=_number(track["trend_nrmse"]),
        beats_naive=None if pd.isna(track["beats_naive"]) else bool(track["beats_naive"]),
        lower_kg_per_ha=forecast * float(track["lower_factor"]),
        upper_kg_per_ha=forecast * float(track["upper_factor"]),
    )
    if row["beats_naive"] is False:
        said.append(
            f"in hindcasts {at} days after planting this model has not beaten the county's "
            f"average yield (normalised RMSE {row['skill_nrmse']:.2f} against "
            f"{row['naive_nrmse']:.2f}): the county's mean is the better guide so far"
        )
    return {**row, "status": status, "message": "; ".join(said) or None}


def _number(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else float(value)
