"""The Forecasts view as a page and as JSON, from what :mod:`nuru_yield.ui.data` read and
the night's Airflow runs (:class:`DagRunLink`, found by :mod:`nuru_yield.ui.app`).

Charts are drawn once per content: a night's bulletin does not change once published, so
each chart is kept (a few dozen, least recently used first out) under the rows it was drawn
from, and the map under the night's scoring runs (a rerun publishes a new log). Everything
from the data is escaped by the template; only the SVG the charts drew is marked safe.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nuru_yield.errors import NuruError
from nuru_yield.lake import Lake
from nuru_yield.pages import template
from nuru_yield.ui import charts
from nuru_yield.ui.data import Night, PlotMap, Row, json_rows, read_plot_map

OK = "ok"
# % of the 5-year mean: how a row is shaded (well below, below, above; none near normal).
PCT_BANDS = ((80.0, "well-below"), (95.0, "below"), (105.0, ""), (math.inf, "above"))


@dataclass(frozen=True)
class DagRunLink:
    """A run of one of the night's DAGs in Airflow, and its page in Airflow's UI."""

    dag_id: str
    run_id: str
    state: str | None
    start: dt.datetime | None
    end: dt.datetime | None
    href: str


def _frozen(rows: Sequence[Row]) -> tuple[tuple[tuple[str, Any], ...], ...]:
    return tuple(tuple(row.items()) for row in rows)


@functools.lru_cache(maxsize=32)
def _trajectory(rows: tuple, season: str, season_year: int, night: dt.date) -> str:
    return charts.trajectory_svg([dict(row) for row in rows], season, season_year, night)


@functools.lru_cache(maxsize=32)
def _skill(rows: tuple, season: str) -> str:
    return charts.skill_svg([dict(row) for row in rows], season)


@functools.lru_cache(maxsize=8)
def _drawn_map(lake: Lake, night: dt.date, runs: tuple) -> tuple[PlotMap, str]:
    plot_map = read_plot_map(lake, night)
    return plot_map, charts.plot_map_svg(plot_map) if plot_map.plots else ""


def _plot_map(lake: Lake, night: dt.date, runs: tuple) -> tuple[PlotMap | None, str]:
    """The map's data and its SVG, or None and why there is no map (a lake that does not
    answer is asked again next time: failures are not kept)."""
    try:
        plot_map, svg = _drawn_map(lake, night, runs)
    except NuruError as error:
        return None, f"No map: {error}."
    if not plot_map.plots:
        return None, "No map: the night's prediction log holds no champion forecast with a normal."
    return plot_map, svg


def _number(value: Any, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:,.{digits}f}"


def _percent(fraction: Any, digits: int = 0) -> str:
    """A fraction (0.31) as a percentage ("31%")."""
    return "–" if fraction is None else f"{_number(fraction * 100, digits)}%"


def _pct_band(pct: float | None) -> str:
    if pct is None:
        return ""
    return next(css for limit, css in PCT_BANDS if pct < limit)


def _county_row(row: Row) -> dict[str, Any]:
    """One line of the bulletin table, formatted. What a reader must be told is the row's
    own ``message`` (the bulletin says there why a county has no figure, no comparison or no
    track record, and when the model has not beaten the county's average) and its season
    signal; the line is greyed without a county figure and shaded without skill."""
    notes = [text for text in (row.get("season_signal"), row.get("message")) if text]
    record = "lowest on record" if row.get("lowest_on_record") else ""
    if not record and row.get("lowest3_on_record"):
        record = "among the 3 lowest"
    interval = (
        f"{_number(row['lower_kg_per_ha'])}–{_number(row['upper_kg_per_ha'])}"
        if row.get("lower_kg_per_ha") is not None
        else "–"
    )
    withheld = row.get("forecast_kg_per_ha") is None
    return {
        "county": row["county"],
        "css": "withheld" if withheld else "no-skill" if row.get("beats_naive") is False else "",
        "status": row.get("status", OK),
        "plots": _number(row.get("n_plots")),
        "share": _percent(row.get("plot_share")),
        "lead": _number(row.get("lead_days")),
        "forecast": _number(row.get("forecast_kg_per_ha")),
        "interval": interval,
        "production": _number(row.get("production_t")),
        "pct_5yr": _number(row.get("pct_of_5yr_mean")),
        "pct_5yr_css": _pct_band(row.get("pct_of_5yr_mean")),
        "pct_lt": _number(row.get("pct_of_lt_mean")),
        "percentile": _number(row.get("hist_percentile")),
        "record": record,
        "rain": _number(row.get("rain_pct_of_normal")),
        "skill_lead": _number(row.get("skill_lead_days")),
        "mape": _with_percent(row.get("skill_mape")),
        "nrmse": _percent(row.get("skill_nrmse")),
        "naive_nrmse": _percent(row.get("naive_nrmse")),
        "trend_nrmse": _percent(row.get("trend_nrmse")),
        "notes": notes,
    }


def _with_percent(percent: Any) -> str:
    """A percentage (MAPE: 28.4) as "28%"."""
    return "–" if percent is None else f"{_number(percent)}%"


def _skill_table(rows: Sequence[Row], season: str) -> dict[str, Any]:
    """County × lead time: the model's normalised RMSE beside the naive mean's, flagged
    where the model does not beat it."""
    rows = [row for row in rows if row["season"] == season]
    leads = sorted({row["lead_days"] for row in rows})
    cells: dict[str, dict[int, dict[str, str]]] = {}
    for row in rows:
        model, naive = row.get("skill_nrmse"), row.get("naive_nrmse")
        cells.setdefault(row["county"], {})[row["lead_days"]] = {
            "text": f"{_percent(model)} / {_percent(naive)}",
            "css": "no-skill" if row.get("beats_naive") is False else "",
            "title": f"model {_percent(model, 1)}, naive mean {_percent(naive, 1)}, trend "
            f"{_percent(row.get('trend_nrmse'), 1)}; MAPE {_with_percent(row.get('skill_mape'))}"
            f"; {row.get('n_seasons', '?')} hindcast seasons",
        }
    return {
        "leads": leads,
        "counties": [
            {"county": county, "cells": [by_lead.get(lead) for lead in leads]}
            for county, by_lead in sorted(cells.items())
        ],
    }


def _runs_key(view: Night) -> tuple:
    return tuple((run.get("run_id"), run.get("status")) for run in view.scoring_runs)


def context(
    view: Night, lake: Lake, dag_runs: Sequence[DagRunLink], runs_url: str, base: str
) -> dict:
    """Everything the template shows for ``view``. ``runs_url``: Airflow's list of the
    night's runs (every DAG); ``base``: where the view is mounted (its links and assets)."""
    from markupsafe import Markup

    if view.night is None:
        return {"base": base, "night": None, "missing_tables": view.missing_tables}
    seasons = []
    for season, season_year in view.seasons:
        rows = [
            row
            for row in view.counties
            if (row["season"], row["season_year"]) == (season, season_year)
        ]
        trajectory = [
            row
            for row in view.trajectories
            if (row["season"], row["season_year"]) == (season, season_year)
        ]
        skill = [row for row in view.skill if row["season"] == season]
        table = [_county_row(row) for row in rows]
        seasons.append(
            {
                "name": f"{season} {season_year}",
                "key": f"{season.lower().replace(' ', '-')}-{season_year}",
                "rows": table,
                "notes": any(row["notes"] for row in table),
                "withheld": sum(line["css"] == "withheld" for line in table),
                "trajectory": Markup(
                    _trajectory(_frozen(trajectory), season, season_year, view.night)
                ),
                "skill_chart": Markup(_skill(_frozen(skill), season)) if skill else None,
                "skill_table": _skill_table(skill, season) if skill else None,
            }
        )
    plot_map, map_svg = _plot_map(lake, view.night, _runs_key(view))
    return {
        "base": base,
        "night": view.night.isoformat(),
        "nights": [night.isoformat() for night in view.nights],
        "missing_tables": view.missing_tables,
        "seasons": seasons,
        "plot_map": plot_map,
        "map_svg": Markup(map_svg) if plot_map else None,
        "map_note": None if plot_map else map_svg,
        "scoring_runs": [
            {
                **run,
                "started_at": _when(run.get("started_at")),
                "duration": _number(run.get("duration_s")),
            }
            for run in view.scoring_runs
        ],
        "dag_runs": [{**vars(run), "start": _when(run.start)} for run in dag_runs],
        "runs_url": runs_url,
    }


def _when(moment: dt.datetime | None) -> str:
    return "–" if moment is None else f"{moment:%Y-%m-%d %H:%M}"


def render(page: dict[str, Any]) -> str:
    """The page of :func:`context`'s result."""
    return template("nuru_yield.ui", "forecasts.html.j2").render(**page)


def as_json(view: Night, dag_runs: Sequence[DagRunLink]) -> dict[str, Any]:
    """The night as JSON: every column of the night's bulletin rows, of its seasons' rows up
    to the night (the trajectories), of its skill rows, its scoring runs and Airflow runs."""
    return {
        "night": view.night.isoformat() if view.night else None,
        "nights": [night.isoformat() for night in view.nights],
        "missing_tables": list(view.missing_tables),
        "counties": json_rows(view.counties),
        "trajectories": json_rows(view.trajectories),
        "skill": json_rows(view.skill),
        "scoring_runs": json_rows(view.scoring_runs),
        "dag_runs": json_rows([vars(run) for run in dag_runs]),
    }
