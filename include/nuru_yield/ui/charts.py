"""The Forecasts view's charts, drawn on the server as inline SVG (matplotlib; nothing loaded
by the browser): the plots' map by % of normal, each county's forecast trajectory over the
season with its 80% interval, and the hindcast error by lead time beside the naive and trend
baselines. Pure functions of what :mod:`nuru_yield.ui.data` read."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from nuru_yield.svg import figure_svg
from nuru_yield.ui.data import PlotMap

# % of normal on the map: brown below, green above, white at 100; beyond 50/150 saturates.
PCT_RANGE = (50.0, 150.0)
FORECAST_COLOR = "#1b4f72"
BAND_COLOR = "#5dade2"
REFERENCE_COLOR = "#7f8c8d"
# Normalised RMSE (RMSE / mean yield) of the model and of the two baselines (county_skill).
_NRMSE = ("skill_nrmse", "naive_nrmse", "trend_nrmse")


def _frame(rows: Sequence[dict[str, Any]], numeric: Sequence[str]) -> Any:
    import pandas as pd

    frame = pd.DataFrame(list(rows))
    for column in numeric:
        frame[column] = pd.to_numeric(frame.get(column), errors="coerce").astype("float64")
    return frame


def plot_map_svg(plot_map: PlotMap) -> str:
    """The night's plots at their coordinates (no tiles: the counties are labelled where
    their plots are), coloured by forecast as % of the plot's normal."""
    import matplotlib.patheffects as effects
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 5.4), dpi=110, layout="constrained")
    axes = figure.subplots()
    size = float(np.clip(6000 / max(plot_map.drawn, 1), 0.6, 14))
    points = axes.scatter(
        plot_map.longitude,
        plot_map.latitude,
        c=np.clip(plot_map.pct_of_normal, *PCT_RANGE),
        cmap="BrBG",
        norm=TwoSlopeNorm(vmin=PCT_RANGE[0], vcenter=100.0, vmax=PCT_RANGE[1]),
        s=size,
        linewidths=0,
        rasterized=True,  # one image, whatever the number of plots
    )
    colorbar = figure.colorbar(points, ax=axes, shrink=0.85, extend="both")
    colorbar.set_label("forecast, % of the plot's normal", fontsize=9)
    halo = [effects.withStroke(linewidth=3, foreground="white")]
    for county, latitude, longitude in plot_map.labels:
        axes.text(
            longitude, latitude, county, fontsize=8, ha="center", va="center", path_effects=halo
        )
    if plot_map.drawn:
        middle = float(np.nanmean(plot_map.latitude))
        axes.set_aspect(1 / max(math.cos(math.radians(middle)), 0.1))  # degrees as on the ground
    axes.set_xlabel("longitude (°E)", fontsize=9)
    axes.set_ylabel("latitude (°N)", fontsize=9)
    axes.tick_params(labelsize=8)
    shown = (
        f"{plot_map.drawn:,} of {plot_map.plots:,}"
        if plot_map.drawn < plot_map.plots
        else f"{plot_map.plots:,}"
    )
    axes.set_title(f"{shown} plots", fontsize=10)
    return figure_svg(figure, text="none")


def trajectory_svg(
    rows: Sequence[dict[str, Any]], season: str, season_year: int, night: dt.date
) -> str:
    """One panel per county: the county forecast night by night up to ``night``, its 80%
    interval as a band, and the county's 5-year mean of realized yields (dashed)."""
    import matplotlib.dates as mdates
    from matplotlib.figure import Figure

    numeric = ("forecast_kg_per_ha", "lower_kg_per_ha", "upper_kg_per_ha", "mean_5yr_kg_per_ha")
    frame = _frame(rows, numeric)
    frame = frame[(frame["season"] == season) & (frame["season_year"] == season_year)]
    counties = sorted(frame["county"].unique())
    columns = max(1, min(4, len(counties)))
    lines = max(1, math.ceil(len(counties) / columns))
    figure = Figure(figsize=(2.6 * columns, 1.9 * lines + 0.5))
    grid = figure.subplots(lines, columns, squeeze=False, sharex=True)
    # Fixed margins: a constrained layout of a dozen panels took seconds per chart.
    figure.subplots_adjust(
        left=0.06,
        right=0.98,
        bottom=0.5 / figure.get_figheight(),
        top=1 - 0.5 / figure.get_figheight(),
        wspace=0.35,
        hspace=0.45,
    )
    for axes, county in zip(grid.flat, counties, strict=False):
        county_rows = frame[frame["county"] == county].sort_values("run_date")
        axes.set_title(county, fontsize=9)
        axes.tick_params(labelsize=7)
        axes.xaxis.set_major_locator(mdates.AutoDateLocator(minticks=2, maxticks=3))
        axes.xaxis.set_major_formatter(mdates.DateFormatter("%d %b"))
        known = county_rows.dropna(subset=["forecast_kg_per_ha"])
        if known.empty:  # withheld every night: too few plots or labels
            axes.text(
                0.5,
                0.5,
                "no county figure",
                transform=axes.transAxes,
                ha="center",
                fontsize=8,
                color=REFERENCE_COLOR,
            )
            axes.set_yticks([])
            continue
        dates = list(county_rows["run_date"])
        axes.fill_between(
            dates,
            county_rows["lower_kg_per_ha"],
            county_rows["upper_kg_per_ha"],
            color=BAND_COLOR,
            alpha=0.3,
            linewidth=0,
        )
        axes.plot(dates, county_rows["forecast_kg_per_ha"], color=FORECAST_COLOR, lw=1.5)
        axes.plot(
            list(known["run_date"])[-1:],
            known["forecast_kg_per_ha"].iloc[-1:],
            "o",
            ms=3,
            color=FORECAST_COLOR,
        )
        five_years = known["mean_5yr_kg_per_ha"].dropna()
        if len(five_years):
            axes.axhline(five_years.iloc[-1], ls="--", lw=1, color=REFERENCE_COLOR)
        axes.set_ylim(bottom=0)
    for axes in list(grid.flat)[len(counties) :]:
        axes.set_visible(False)
    figure.suptitle(
        f"{season} {season_year} to {night:%d %b %Y}: county forecast (kg/ha), its 80% "
        "interval, and the 5-year mean (dashed)",
        fontsize=10,
    )
    return figure_svg(figure, text="none")


def skill_svg(rows: Sequence[dict[str, Any]], season: str) -> str:
    """Hindcast error (normalised RMSE) by days after planting: the model (median over the
    counties, each county faint behind it) beside the naive county mean and the trend."""
    from matplotlib.figure import Figure

    frame = _frame(rows, ("lead_days", *_NRMSE))
    frame = frame[frame["season"] == season]
    figure = Figure(figsize=(6.4, 3.2), layout="constrained")
    axes = figure.subplots()
    for _, county_rows in frame.groupby("county"):
        county_rows = county_rows.sort_values("lead_days")
        axes.plot(
            county_rows["lead_days"],
            county_rows["skill_nrmse"] * 100,
            color=BAND_COLOR,
            lw=0.6,
            alpha=0.5,
        )
    medians = frame.groupby("lead_days")[list(_NRMSE)].median() * 100
    for column, style, label in (
        ("skill_nrmse", "o-", "this model (median of the counties; each county faint)"),
        ("naive_nrmse", "s--", "naive: the county's mean of the other seasons"),
        ("trend_nrmse", "^:", "trend: the county's trend over the other seasons"),
    ):
        color = FORECAST_COLOR if column == "skill_nrmse" else REFERENCE_COLOR
        axes.plot(medians.index, medians[column], style, color=color, lw=1.5, ms=4, label=label)
    axes.set_xticks(sorted(frame["lead_days"].dropna().unique()))
    axes.set_xlabel("days after planting", fontsize=9)
    axes.set_ylabel("normalised RMSE (%)", fontsize=9)
    axes.set_ylim(bottom=0)
    axes.tick_params(labelsize=8)
    axes.legend(fontsize=7, frameon=False)
    axes.set_title(f"{season}: leave-one-season-out hindcast error by lead time", fontsize=10)
    return figure_svg(figure, text="none")
