"""The night's county bulletin as files a person can mail as they are: a self-contained HTML
page (inline CSS, charts drawn here as inline SVG, no script, nothing from the network) and
the ``county_forecasts`` rows as CSV (pure: text in, text out)."""

from __future__ import annotations

import datetime as dt
import html
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from nuru_yield.counties.forecasts import OK, TOO_FEW_PLOTS
from nuru_yield.pages import template

# Where a forecast stands against the five-year mean: a colour per band of % of the mean.
_BANDS = (
    (80.0, "#c0392b", "below 80%"),
    (95.0, "#e67e22", "80–95%"),
    (105.0, "#7f8c8d", "95–105%"),
)
_ABOVE = ("#27ae60", "above 105%")


def bulletin_csv(rows: pd.DataFrame) -> bytes:
    """The rows as CSV (UTF-8, a header line, ISO dates, empty cells for nulls)."""
    return rows.to_csv(index=False, date_format="%Y-%m-%d").encode()


def band_colour(percent: float | None) -> tuple[str, str]:
    """The colour and label of a % of the five-year mean (grey for none)."""
    if percent is None or not math.isfinite(percent):
        return "#bdc3c7", "no comparison"
    for upper, colour, label in _BANDS:
        if percent < upper:
            return colour, label
    return _ABOVE


def percent_chart(rows: pd.DataFrame) -> str:
    """One line per county-season with a comparison: its forecast (dot, coloured by band)
    and 80% interval (whisker) as % of its five-year mean, against a line at 100%."""
    shown = rows[rows["pct_of_5yr_mean"].notna()].sort_values("pct_of_5yr_mean")
    if shown.empty:
        return ""
    ratio = shown["pct_of_5yr_mean"] / shown["forecast_kg_per_ha"]
    low = (shown["lower_kg_per_ha"] * ratio).to_numpy(np.float64)
    high = (shown["upper_kg_per_ha"] * ratio).to_numpy(np.float64)
    mid = shown["pct_of_5yr_mean"].to_numpy(np.float64)
    finite = np.concatenate([mid, low[np.isfinite(low)], high[np.isfinite(high)], [100.0]])
    lo = max(0.0, math.floor(finite.min() / 20) * 20)
    hi = math.ceil(finite.max() / 20) * 20 + (20 if finite.max() % 20 == 0 else 0)
    left, width, line = 190, 440, 22
    height = 40 + line * len(shown)

    def x(value: float) -> float:
        return left + (value - lo) / (hi - lo) * width

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" class="percent-chart" '
        f'width="{left + width + 20}" height="{height}" viewBox="0 0 {left + width + 20} {height}">',
        "<title>Forecast as % of the five-year mean, with its 80% interval</title>",
    ]
    for tick in range(int(lo), int(hi) + 1, 20):
        parts.append(
            f'<line x1="{x(tick):.1f}" y1="18" x2="{x(tick):.1f}" y2="{height - 14}" '
            f'stroke="{"#555" if tick == 100 else "#e5e5e5"}" '
            f'stroke-width="{1.5 if tick == 100 else 1}"/>'
            f'<text x="{x(tick):.1f}" y="{height - 2}" font-size="11" text-anchor="middle" '
            f'fill="#555">{tick}%</text>'
        )
    for i, row in enumerate(shown.itertuples(index=False)):
        y = 30 + i * line
        label = html.escape(f"{row.county} · {row.season} {row.season_year}")
        colour, band = band_colour(row.pct_of_5yr_mean)
        parts.append(
            f'<text x="{left - 8}" y="{y + 4}" font-size="12" text-anchor="end">{label}</text>'
        )
        if np.isfinite(low[i]) and np.isfinite(high[i]):
            parts.append(
                f'<line x1="{x(low[i]):.1f}" y1="{y}" x2="{x(high[i]):.1f}" y2="{y}" '
                f'stroke="{colour}" stroke-width="3" opacity="0.45"/>'
            )
        parts.append(
            f'<circle cx="{x(mid[i]):.1f}" cy="{y}" r="5" fill="{colour}">'
            f"<title>{label}: {mid[i]:.0f}% of the five-year mean ({band})</title></circle>"
        )
    parts.append("</svg>")
    return "".join(parts)


def trajectory_chart(points: pd.DataFrame, title: str) -> str:
    """A county-season's forecast night by night (line) with its 80% interval (band) and
    its five-year mean (dashed), kg/ha; ``points``: its rows of ``county_forecasts``."""
    points = points[points["forecast_kg_per_ha"].notna()].sort_values("run_date")
    if points.empty:
        return ""
    width, height, pad = 300, 130, 34
    days = np.array([(d - points["run_date"].min()).days for d in points["run_date"]], float)
    forecast = points["forecast_kg_per_ha"].to_numpy(np.float64)
    lower = points["lower_kg_per_ha"].to_numpy(np.float64, na_value=np.nan)
    upper = points["upper_kg_per_ha"].to_numpy(np.float64, na_value=np.nan)
    normal = points["mean_5yr_kg_per_ha"].to_numpy(np.float64, na_value=np.nan)
    values = np.concatenate([forecast, lower, upper, normal])
    values = values[np.isfinite(values)]
    top = max(float(values.max()) * 1.1, 1.0)
    span = max(float(days.max()), 1.0)

    def x(day: float) -> float:
        return pad + day / span * (width - pad - 8)

    def y(value: float) -> float:
        return height - 18 - value / top * (height - 30)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" class="trajectory" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}"><title>{html.escape(title)}</title>',
        f'<text x="{pad}" y="11" font-size="11" font-weight="bold">{html.escape(title)}</text>',
        f'<text x="2" y="{y(top / 1.1) + 4:.1f}" font-size="9" fill="#555">'
        f"{top / 1.1 / 1000:.1f} t</text>",
        f'<line x1="{pad}" y1="{y(0):.1f}" x2="{width - 8}" y2="{y(0):.1f}" stroke="#999"/>',
    ]
    band = np.isfinite(lower) & np.isfinite(upper)
    if band.any():
        outline = [f"{x(d):.1f},{y(u):.1f}" for d, u in zip(days[band], upper[band], strict=True)]
        outline += [
            f"{x(d):.1f},{y(v):.1f}"
            for d, v in zip(days[band][::-1], lower[band][::-1], strict=True)
        ]
        parts.append(f'<polygon points="{" ".join(outline)}" fill="#2980b9" opacity="0.18"/>')
    if np.isfinite(normal[-1]):
        parts.append(
            f'<line x1="{pad}" y1="{y(normal[-1]):.1f}" x2="{width - 8}" y2="{y(normal[-1]):.1f}" '
            'stroke="#555" stroke-dasharray="4 3"/>'
        )
    line = " ".join(f"{x(d):.1f},{y(v):.1f}" for d, v in zip(days, forecast, strict=True))
    parts.append(f'<polyline points="{line}" fill="none" stroke="#2980b9" stroke-width="2"/>')
    parts.append(
        f'<circle cx="{x(days[-1]):.1f}" cy="{y(forecast[-1]):.1f}" r="3" fill="#2980b9"/>'
        f'<text x="{pad}" y="{height - 4}" font-size="9" fill="#555">'
        f"{points['run_date'].min():%d %b}</text>"
        f'<text x="{width - 8}" y="{height - 4}" font-size="9" fill="#555" text-anchor="end">'
        f"{points['run_date'].max():%d %b}</text></svg>"
    )
    return "".join(parts)


def _tonnes(kg: Any, digits: int = 2) -> str:
    return "–" if kg is None or pd.isna(kg) else f"{float(kg) / 1000:.{digits}f}"


def _number(value: Any, digits: int = 0, suffix: str = "") -> str:
    if value is None or pd.isna(value):
        return "–"
    return f"{float(value):,.{digits}f}{suffix}"


def _yes(value: Any) -> bool:
    """A flag that is set (not null, not false), whatever type the rows hold it in."""
    return value is not None and not pd.isna(value) and bool(value)


def _flags(row: Any) -> str:
    if _yes(row.lowest_on_record):
        return "lowest on record"
    if _yes(row.lowest3_on_record):
        return "among the 3 lowest"
    return ""


def _track(row: Any) -> dict[str, str] | None:
    if row.skill_nrmse is None or pd.isna(row.skill_nrmse):
        return None
    return {
        "lead": f"{int(row.skill_lead_days)} d, {int(row.skill_seasons)} seasons",
        "mape": _number(row.skill_mape, 0, "%"),
        "model": _number(row.skill_nrmse, 2),
        "naive": _number(row.naive_nrmse, 2),
        "trend": _number(row.trend_nrmse, 2),
        "beats": "yes" if _yes(row.beats_naive) else "no",
    }


def table_rows(rows: pd.DataFrame) -> list[dict[str, Any]]:
    """The bulletin table's cells, one dict per county-season (sorted by % of the five-year
    mean, lowest first: the counties to look at come first)."""
    order = rows.assign(_order=rows["pct_of_5yr_mean"].fillna(np.inf)).sort_values(
        ["_order", "county"]
    )
    out = []
    for row in order.itertuples(index=False):
        colour, band = band_colour(row.pct_of_5yr_mean)
        out.append(
            {
                "county": row.county,
                "season": f"{row.season} {row.season_year}",
                "plots": f"{int(row.n_plots):,}"
                + (
                    f" ({row.plot_share:.0%})"
                    if row.plot_share is not None and not pd.isna(row.plot_share)
                    else ""
                ),
                "days": _number(row.lead_days),
                "forecast": _tonnes(row.forecast_kg_per_ha),
                "range": "–"
                if pd.isna(row.lower_kg_per_ha)
                else f"{_tonnes(row.lower_kg_per_ha)}–{_tonnes(row.upper_kg_per_ha)}",
                "pct_5yr": _number(row.pct_of_5yr_mean, 0, "%"),
                "pct_lt": _number(row.pct_of_lt_mean, 0, "%"),
                "percentile": _number(row.hist_percentile, 0),
                "record": _flags(row),
                "production": _number(row.production_t),
                "rain": _number(row.rain_pct_of_normal, 0, "%"),
                "track": _track(row),
                "colour": colour,
                "band": band,
                "status": row.status,
                "message": row.message if isinstance(row.message, str) else "",
                "muted": row.status == TOO_FEW_PLOTS,
            }
        )
    return out


def bulletin_html(
    rows: pd.DataFrame,
    trajectory: pd.DataFrame,
    skill_summary: pd.DataFrame,
    run_date: dt.date,
) -> str:
    """The page: headline, season signals, the plain warnings (a model that has not beaten
    the county's average), the county table, the % of normal chart, each county-season's
    forecast night by night, the skill by lead time, and how to read it all."""
    from markupsafe import Markup

    figures = rows[rows["forecast_kg_per_ha"].notna()]
    versions = sorted({str(v) for v in rows["model_version"]})
    seasons = sorted({f"{s} {y}" for s, y in zip(rows["season"], rows["season_year"], strict=True)})
    trajectories = []
    for row in figures.sort_values(["county", "season_year", "season"]).itertuples(index=False):
        points = trajectory[
            (trajectory["county"] == row.county)
            & (trajectory["season"] == row.season)
            & (trajectory["season_year"] == row.season_year)
        ]
        title = f"{row.county} · {row.season} {row.season_year}"
        trajectories.append(Markup(trajectory_chart(points, title)))  # drawn here, escaped
    below = figures[figures["beats_naive"].eq(False)]
    return template("nuru_yield.counties", "bulletin.html.j2").render(
        run_date=run_date.isoformat(),
        versions=", ".join(f"v{v}" for v in versions),
        seasons=", ".join(seasons),
        counties=len(figures),
        without=len(rows) - len(figures),
        lead_range=_lead_range(figures["lead_days"].dropna().astype(int).tolist()),
        signals=[
            {"county": r.county, "season": f"{r.season} {r.season_year}", "text": r.season_signal}
            for r in rows.itertuples(index=False)
            if isinstance(r.season_signal, str)
        ],
        below_naive=[
            {
                "county": r.county,
                "season": f"{r.season} {r.season_year}",
                "lead": int(r.skill_lead_days),
                "model": f"{r.skill_nrmse:.2f}",
                "naive": f"{r.naive_nrmse:.2f}",
            }
            for r in below.itertuples(index=False)
        ],
        table=table_rows(rows),
        bands=[(colour, label) for _, colour, label in _BANDS] + [_ABOVE],
        percent_chart=Markup(percent_chart(rows)),  # drawn here, every label escaped
        trajectories=trajectories,
        skill=[
            {
                "season": r.season,
                "lead": int(r.lead_days),
                "counties": int(r.counties),
                "mape": _number(r.skill_mape, 0, "%"),
                "model": _number(r.skill_nrmse, 2),
                "naive": _number(r.naive_nrmse, 2),
                "trend": _number(r.trend_nrmse, 2),
                "beats": int(r.beats_naive),
            }
            for r in skill_summary.itertuples(index=False)
        ],
        ok=OK,
    )


def _lead_range(days: Sequence[int]) -> str:
    if not days:
        return "–"
    return f"{min(days)}" if min(days) == max(days) else f"{min(days)}–{max(days)}"
