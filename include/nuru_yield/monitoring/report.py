"""The drift report of one run date: a JSON document for machines and a self-contained
HTML page for people (inline SVG charts, inline CSS, no script, nothing from the network)."""

from __future__ import annotations

import datetime as dt
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from nuru_yield.monitoring.alerts import Alert
from nuru_yield.monitoring.drift import VariableDrift
from nuru_yield.monitoring.statistics import DRIFTED, INSUFFICIENT, STATISTICS, DriftRule
from nuru_yield.svg import figure_svg


@dataclass(frozen=True)
class DriftReport:
    run_date: dt.date
    source: str  # URI of the current rows (prediction log, or features when not scored)
    reference: dict[str, Any]
    rule: DriftRule
    drifts: list[VariableDrift]
    alert: Alert
    accuracy: pd.DataFrame = field(default_factory=pd.DataFrame)  # rows filled this run

    @property
    def overall(self) -> list[VariableDrift]:
        return [d for d in self.drifts if d.county is None]

    @property
    def drifted(self) -> list[str]:
        return [d.variable for d in self.overall if d.drifted]

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
                "alert": {
                    "raised": self.alert.raised,
                    "trigger_training": self.alert.trigger,
                    "reasons": list(self.alert.reasons),
                    "suppressed_by": self.alert.suppressed_by,
                },
                "variables": [d.as_row() for d in self.drifts],
                "realized_accuracy": self.accuracy.to_dict(orient="records"),
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


def _row_class(drift: VariableDrift) -> str:
    status = drift.comparison.status
    return "drifted" if status == DRIFTED else "insufficient" if status == INSUFFICIENT else "ok"


def _summary_rows(drifts: Sequence[VariableDrift]) -> list[dict[str, Any]]:
    rows = []
    for d in drifts:
        c = d.comparison
        rows.append(
            {
                "css": _row_class(d),
                "variable": d.variable,
                "cells": [
                    c.status,
                    f"{c.statistic} {_fmt(c.value)} / {c.threshold:g}",
                    *(_fmt(c.values.get(s)) for s in STATISTICS),
                    f"{c.n_current:,}",
                    f"{c.n_reference:,}",
                ],
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


@functools.cache
def _template() -> Any:
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("nuru_yield.monitoring", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    return environment.get_template("drift_report.html.j2")


def render_html(report: DriftReport, reference: pd.DataFrame, current: pd.DataFrame) -> str:
    """The page: alert, summary table, per-county drift, realized accuracy, and for each
    variable drifted over all plots its reference-versus-current histograms."""
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
    return _template().render(
        run_date=report.run_date.isoformat(),
        alert=report.alert,
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
            "status",
            "decision",
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
    )
