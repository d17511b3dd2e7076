"""The drift report of one run date: a JSON document for machines and a self-contained
HTML page for people (inline SVG charts, inline CSS, no script, nothing from the network)."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from nuru_yield.counties.figures import COUNTY_SEASON
from nuru_yield.counties.signals import SIGNAL_COLUMNS
from nuru_yield.features.columns import STATIC_FEATURES
from nuru_yield.monitoring.alerts import Alert
from nuru_yield.monitoring.drift import (
    MODEL_EVIDENCE,
    PLOT_MIX,
    PREDICTION,
    SEASON_SIGNAL,
    VariableDrift,
)
from nuru_yield.monitoring.statistics import DRIFTED, INSUFFICIENT, STATISTICS, DriftRule
from nuru_yield.pages import template
from nuru_yield.svg import figure_svg

# What a report saw (``DriftReport.finding``).
NOTHING = "nothing unusual"
BOTH = f"{SEASON_SIGNAL} and {MODEL_EVIDENCE}"


def driver_shares(top_drivers: pd.Series) -> dict[str, float]:
    """Each feature's share of the night's driver slots (every row's ``top_drivers``, JSON
    text as the prediction log holds it), largest first: what moved tonight's forecasts
    from their plot normals."""
    named = top_drivers.dropna().astype(str).str.findall(r'"feature":\s*"([^"]+)"').explode()
    shares = named.dropna().value_counts(normalize=True)
    return {str(feature): float(share) for feature, share in shares.items()}


@dataclass(frozen=True)
class DriftReport:
    run_date: dt.date
    source: str  # URI of the current rows (prediction log, or features when not scored)
    reference: dict[str, Any]
    rule: DriftRule
    drifts: list[VariableDrift]
    alert: Alert
    accuracy: pd.DataFrame = field(default_factory=pd.DataFrame)  # rows filled this run
    ranges_checked: bool = False  # whether the model's training ranges were known
    drivers: dict[str, float] = field(default_factory=dict)  # driver_shares of the night
    # The night's county forecasts (``county_forecasts``) and the bulletin they are in; their
    # season to date against the normal to date is the one the report states.
    counties: pd.DataFrame = field(default_factory=pd.DataFrame)
    bulletin: str | None = None

    @property
    def overall(self) -> list[VariableDrift]:
        return [d for d in self.drifts if d.county is None]

    @property
    def drifted(self) -> list[str]:
        return [d.variable for d in self.overall if d.drifted]

    @property
    def finding(self) -> str:
        """What the report saw: ``season signal`` (the season is far from normal: news for
        the bulletin), ``model evidence`` (the model is wrong or out of its depth:
        retraining), both, or ``nothing unusual``."""
        season = any(d.signal == SEASON_SIGNAL for d in self.drifts)
        if self.alert.raised:
            return BOTH if season else MODEL_EVIDENCE
        return SEASON_SIGNAL if season else NOTHING

    @property
    def season_to_date(self) -> pd.DataFrame:
        """The season to date against the normal to date per county × season × season
        year, as the night's county bulletin states it (:data:`SEASON_TO_DATE` of its
        ``county_forecasts`` rows; none when the night wrote none)."""
        if not set(SEASON_TO_DATE) <= set(self.counties.columns):
            return pd.DataFrame(columns=SEASON_TO_DATE)
        return self.counties[SEASON_TO_DATE].reset_index(drop=True)

    @property
    def season_signals(self) -> list[str]:
        """The season signals in words, when a season-varying variable drifted: the county
        bulletin's ``season_signal`` of each county-season that has one (rain or heat far
        from its normal to date), then the forecasts' departure from past seasons at the
        same point when the forecast itself drifted."""
        if not any(d.signal == SEASON_SIGNAL for d in self.drifts):
            return []
        lines = [
            f"{row.county} ({row.season} {row.season_year}): {row.season_signal}"
            for row in self.season_to_date.itertuples(index=False)
            if isinstance(row.season_signal, str)
        ]
        forecast = next((d for d in self.overall if d.variable == PREDICTION), None)
        if forecast is not None and forecast.signal == SEASON_SIGNAL:
            lines.append(
                f"forecasts: mean {_fmt(forecast.current_mean, 0)} kg/ha against "
                f"{_fmt(forecast.reference_mean, 0)} for past seasons at the same point"
            )
        return lines

    @property
    def drivers_summary(self) -> str:
        """The night's driver slots in one line: the five most frequent features and the
        share of the static ones (where the plot lies, which rains), which belong in the
        plot normal, not among the drivers."""
        if not self.drivers:
            return "none (no scored forecasts)"
        top = ", ".join(f"{name} {share:.0%}" for name, share in list(self.drivers.items())[:5])
        static = sum(self.drivers.get(name, 0.0) for name in STATIC_FEATURES)
        return f"{top} of driver slots; where the plot lies ({', '.join(STATIC_FEATURES)}) {static:.1%}"

    @property
    def evidence_summary(self) -> str:
        """Model evidence in one line: the alert's reasons, or what was checked and found
        within bounds."""
        if self.alert.raised:
            return "; ".join(self.alert.reasons)
        checked = [d for d in self.overall if d.outside_share is not None]
        if not self.ranges_checked or not checked:
            outside = "inputs not checked against the training range (the model records none)"
        else:
            worst = max(checked, key=lambda d: d.outside_share or 0.0)
            outside = (
                f"inputs within the training range (at most {worst.outside_share:.1%} of a "
                f"feature's values outside it, {worst.variable}; evidence beyond "
                f"{self.rule.max_outside_share:.0%})"
            )
        labels = (
            "realized accuracy within bounds" if len(self.accuracy) else "no new harvest labels"
        )
        return f"none: {outside}; {labels}"

    def to_json(self) -> dict[str, Any]:
        return _clean(
            {
                "run_date": self.run_date.isoformat(),
                "source": self.source,
                "rule": {
                    "statistic": self.rule.statistic,
                    "threshold": self.rule.threshold,
                    "min_samples": self.rule.min_samples,
                    "bins": self.rule.bins,
                },
                "reference": self.reference,
                "drifted": self.drifted,
                "finding": self.finding,
                "season_signals": self.season_signals,
                "model_evidence": self.evidence_summary,
                "alert": {
                    "raised": self.alert.raised,
                    "trigger_training": self.alert.trigger,
                    "reasons": list(self.alert.reasons),
                    "suppressed_by": self.alert.suppressed_by,
                },
                "variables": [d.as_row() for d in self.drifts],
                "drivers": self.drivers_summary,
                "driver_shares": self.drivers,
                "season_to_date": self.season_to_date.astype(object).to_dict(orient="records"),
                "realized_accuracy": self.accuracy.to_dict(orient="records"),
                "county_bulletin": {
                    "uri": self.bulletin,
                    "counties": self.counties[
                        [c for c in COUNTY_SUMMARY if c in self.counties.columns]
                    ].to_dict(orient="records"),
                },
            }
        )


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf become null, numpy scalars plain numbers."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


# The columns of the night's county forecasts that state the season to date against the
# normal to date (``nuru_yield.counties.signals``: one definition, one wording).
SEASON_TO_DATE = [*COUNTY_SEASON, "n_plots", *SIGNAL_COLUMNS]
# What the report shows of each county forecast of the night (docs/DESIGN.md, "County
# bulletins"): the figure, where it stands, its status and the season signal.
COUNTY_SUMMARY = [
    "county",
    "season",
    "season_year",
    "n_plots",
    "forecast_kg_per_ha",
    "lower_kg_per_ha",
    "upper_kg_per_ha",
    "pct_of_5yr_mean",
    "rain_pct_of_normal",
    "beats_naive",
    "status",
    "season_signal",
]


# --- charts -------------------------------------------------------------------------------
def histogram_svg(reference: np.ndarray, current: np.ndarray, title: str) -> str:
    """Reference-versus-current histograms (densities on shared bins) as inline SVG."""
    from matplotlib.figure import Figure

    reference = reference[np.isfinite(reference)]
    current = current[np.isfinite(current)]
    pooled = np.concatenate([reference, current])
    low, high = np.quantile(pooled, [0.005, 0.995]) if len(pooled) else (0.0, 1.0)
    if high <= low:
        low, high = low - 0.5, high + 0.5
    bins = np.linspace(low, high, 31)
    figure = Figure(figsize=(6.4, 2.8), layout="constrained")
    axes = figure.subplots()
    for values, label, color in (
        (reference, "reference", "#7f8c8d"),
        (current, "current", "#c0392b"),
    ):
        axes.hist(
            np.clip(values, low, high),
            bins=bins,
            density=True,
            histtype="stepfilled",
            alpha=0.45,
            color=color,
            label=f"{label} (n={len(values):,})",
        )
    axes.set_title(title, fontsize=10)
    axes.set_ylabel("density")
    axes.legend(fontsize=8, frameon=False)
    return figure_svg(figure)


# --- HTML ---------------------------------------------------------------------------------
# Page structure and style live in templates/drift_report.html.j2, rendered with
# autoescaping: every value from the data (county names, reasons, URIs) is escaped there;
# only the SVG charts matplotlib drew are marked safe.


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, float | np.floating):
        return f"{value:.{digits}g}" if abs(value) < 1e-3 and value else f"{value:,.{digits}f}"
    return str(value)


_SIGNAL_CLASS = {MODEL_EVIDENCE: "evidence", SEASON_SIGNAL: "season", PLOT_MIX: "mix"}


def _row_class(drift: VariableDrift) -> str:
    if drift.signal in _SIGNAL_CLASS:
        return _SIGNAL_CLASS[drift.signal]
    status = drift.comparison.status
    return "drifted" if status == DRIFTED else "insufficient" if status == INSUFFICIENT else "ok"


def _share(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def _summary_rows(drifts: Sequence[VariableDrift]) -> list[dict[str, Any]]:
    rows = []
    for d in drifts:
        c = d.comparison
        rows.append(
            {
                "css": _row_class(d),
                "variable": d.variable,
                "cells": [
                    d.signal or "",
                    c.status,
                    f"{c.statistic} {_fmt(c.value)} / {c.threshold:g}",
                    _fmt(d.current_mean),
                    _fmt(d.reference_mean),
                    _share(d.outside_share),
                    *(_fmt(c.values.get(s)) for s in STATISTICS),
                    f"{c.n_current:,}",
                    f"{c.n_reference:,}",
                ],
            }
        )
    return rows


def _season_rows(report: DriftReport) -> list[dict[str, Any]]:
    """The season to date beside the normal to date, per county-season, with the words (the
    county bulletin's)."""
    rows = []
    for row in report.season_to_date.itertuples(index=False):
        rows.append(
            {
                "name": f"{row.county}, {row.season} {row.season_year}",
                "cells": [
                    _fmt(row.normal_years, 0),
                    _fmt(row.rain_mm, 0),
                    _fmt(row.normal_rain_mm, 0),
                    "–" if pd.isna(row.rain_pct_of_normal) else f"{row.rain_pct_of_normal:.0f}%",
                    _fmt(row.tmax_c, 1),
                    _fmt(row.normal_tmax_c, 1),
                    _fmt(row.heat_days, 1),
                    _fmt(row.normal_heat_days, 1),
                ],
                "words": row.season_signal if isinstance(row.season_signal, str) else "",
            }
        )
    return rows


def _county_rows(drifts: Sequence[VariableDrift], variables: list[str]) -> list[dict[str, Any]]:
    """Counties × variables: the decision statistic, shaded where it drifted."""
    cell = {(d.county, d.variable): d for d in drifts}
    rows = []
    for county in sorted({d.county for d in drifts if d.county is not None}):
        cells: list[dict[str, str] | None] = []
        for variable in variables:
            d = cell.get((county, variable))
            if d is None:
                cells.append(None)
                continue
            c = d.comparison
            cells.append(
                {
                    "css": _row_class(d),
                    "title": f"{c.status}, n={c.n_current:,} current / {c.n_reference:,} reference",
                    "value": _fmt(c.value, 2),
                }
            )
        rows.append({"name": county, "cells": cells})
    return rows


# Realized accuracy for people: kg/ha as whole numbers, coverage to two decimals.
_ACCURACY_DECIMALS = {
    "rmse": 0,
    "normal_rmse": 0,
    "mean_forecast": 0,
    "mean_actual": 0,
    "mae": 0,
    "bias": 0,
    "coverage": 2,
}


def _accuracy_cell(column: str, value: Any) -> str:
    if column == "too_few_labels":
        return "too few labels" if value is True or value == 1 else ""
    return _fmt(value, _ACCURACY_DECIMALS.get(column, 1))


def render_html(report: DriftReport, reference: pd.DataFrame, current: pd.DataFrame) -> str:
    """The page: what it saw (season signal, model evidence) and the alert, the season to
    date against the normal by county, summary table, per-county drift, realized accuracy,
    and for each variable drifted over all plots its reference-versus-current histograms."""
    from markupsafe import Markup

    by_county = [d for d in report.drifts if d.county is not None]
    charts = []
    for d in report.overall:
        if not d.drifted:
            continue
        title = f"{d.variable}: {d.comparison.statistic} {d.comparison.value:.3f} > {d.comparison.threshold:g}"
        svg = histogram_svg(
            reference[d.variable].to_numpy(np.float64, na_value=np.nan)
            if d.variable in reference
            else np.empty(0),
            current[d.variable].to_numpy(np.float64, na_value=np.nan),
            title,
        )
        charts.append({"variable": d.variable, "svg": Markup(svg)})  # drawn by matplotlib
    accuracy_columns = [c for c in report.accuracy.columns if c != "computed_at"]
    county_variables = list(dict.fromkeys(d.variable for d in by_county))
    return template("nuru_yield.monitoring", "drift_report.html.j2").render(
        run_date=report.run_date.isoformat(),
        alert=report.alert,
        finding=report.finding,
        seasonal=report.finding in (SEASON_SIGNAL, BOTH),
        season_signals=report.season_signals,
        evidence=report.evidence_summary,
        drivers=report.drivers_summary,
        season_headings=[
            "county, season",
            "normal years",
            "rain mm",
            "normal rain mm",
            "rain % of normal",
            "mean Tmax °C",
            "normal Tmax °C",
            "heat days",
            "normal heat days",
            "in words",
        ],
        season_rows=_season_rows(report),
        source=report.source,
        reference_rows=report.reference.get("rows", 0),
        window_days=report.reference.get("window_days", 7),
        without_history=report.reference.get("current_rows_without_history", 0),
        strata="; ".join(
            f"{s['season']} {s['season_year']}: seasons {', '.join(map(str, s['reference_years']))}"
            for s in report.reference.get("strata", [])
        ),
        rule=report.rule,
        summary_headings=[
            "variable",
            "signal",
            "status",
            "decision",
            "mean",
            "reference mean",
            "outside training range",
            *STATISTICS,
            "n current",
            "n reference",
        ],
        summary=_summary_rows(report.overall),
        county_drifted=sum(d.drifted for d in by_county),
        county_total=len(by_county),
        county_insufficient=sum(d.comparison.status == INSUFFICIENT for d in by_county),
        county_variables=county_variables,
        counties=_county_rows(by_county, county_variables),
        accuracy_headings=[c.replace("_", " ") for c in accuracy_columns],
        accuracy_rows=[
            [_accuracy_cell(c, row[c]) for c in accuracy_columns]
            for _, row in report.accuracy.iterrows()
        ],
        charts=charts,
        bulletin=report.bulletin,
        county_forecasts=_county_rows_of(report.counties),
    )


def _county_rows_of(counties: pd.DataFrame) -> list[dict[str, str]]:
    """The night's county forecasts as the report's table cells (kg/ha whole)."""
    rows = []
    for row in counties.itertuples(index=False):
        rows.append(
            {
                "county": str(row.county),
                "season": f"{row.season} {row.season_year}",
                "plots": f"{int(row.n_plots):,}",
                "forecast": _fmt(row.forecast_kg_per_ha, 0),
                "range": "–"
                if pd.isna(row.lower_kg_per_ha)
                else f"{_fmt(row.lower_kg_per_ha, 0)}–{_fmt(row.upper_kg_per_ha, 0)}",
                "pct_5yr": _fmt(row.pct_of_5yr_mean, 0),
                "rain": _fmt(row.rain_pct_of_normal, 0),
                "status": str(row.status),
                "signal": row.season_signal if isinstance(row.season_signal, str) else "",
            }
        )
    return rows
