"""The drift report of one run date: a JSON document for machines and a self-contained
HTML page for people (inline SVG charts, inline CSS, no script, nothing from the network)."""

from __future__ import annotations

import datetime as dt
import html
import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from nuru_yield.monitoring.alerts import Alert
from nuru_yield.monitoring.drift import VariableDrift
from nuru_yield.monitoring.statistics import DRIFTED, INSUFFICIENT, STATISTICS, DriftRule


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
    import matplotlib
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
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "path", "svg.hashsalt": "nuru-yield"}):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg") :]  # drop the XML prolog and its DTD reference
    return re.sub(r"\s*<metadata>.*?</metadata>", "", svg, count=1, flags=re.DOTALL)


# --- HTML ---------------------------------------------------------------------------------
_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem; color: #222; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
table { border-collapse: collapse; font-size: 0.85rem; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.5rem; text-align: right; white-space: nowrap; }
th { background: #f4f4f4; } td.name { text-align: left; }
tr.drifted td, td.drifted { background: #fdecea; } tr.insufficient td, td.insufficient { color: #888; }
table.counties th.variable { writing-mode: vertical-rl; transform: rotate(180deg); text-align: left; }
.alert { border-left: 4px solid #c0392b; background: #fdecea; padding: 0.5rem 1rem; }
.calm { border-left: 4px solid #27ae60; background: #eafaf1; padding: 0.5rem 1rem; }
figure { margin: 1rem 0; } .muted { color: #666; font-size: 0.85rem; }
"""


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, float | np.floating):
        return f"{value:.{digits}g}" if abs(value) < 1e-3 and value else f"{value:,.{digits}f}"
    return html.escape(str(value))


def _row_class(drift: VariableDrift) -> str:
    status = drift.comparison.status
    return "drifted" if status == DRIFTED else "insufficient" if status == INSUFFICIENT else "ok"


def _summary_table(drifts: Sequence[VariableDrift]) -> str:
    head = "".join(
        f"<th>{html.escape(h)}</th>"
        for h in ("variable", "status", "decision", *STATISTICS, "n current", "n reference")
    )
    body = []
    for d in drifts:
        c = d.comparison
        decision = f"{c.statistic} {_fmt(c.value)} / {c.threshold:g}"
        cells = [
            f'<td class="name">{html.escape(d.variable)}</td>',
            f"<td>{html.escape(c.status)}</td>",
            f"<td>{html.escape(decision)}</td>",
            *(f"<td>{_fmt(c.values.get(s))}</td>" for s in STATISTICS),
            f"<td>{c.n_current:,}</td>",
            f"<td>{c.n_reference:,}</td>",
        ]
        body.append(f'<tr class="{_row_class(d)}">{"".join(cells)}</tr>')
    return f'<table class="summary"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _county_matrix(drifts: Sequence[VariableDrift]) -> str:
    """Counties × variables: the decision statistic, shaded where it drifted."""
    variables = list(dict.fromkeys(d.variable for d in drifts))
    counties = sorted({d.county for d in drifts if d.county is not None})
    cell = {(d.county, d.variable): d for d in drifts}
    head = "<th>county</th>" + "".join(
        f'<th class="variable">{html.escape(v)}</th>' for v in variables
    )
    body = []
    for county in counties:
        cells = []
        for variable in variables:
            d = cell.get((county, variable))
            if d is None:
                cells.append("<td></td>")
                continue
            c = d.comparison
            title = f"{c.status}, n={c.n_current:,} current / {c.n_reference:,} reference"
            cells.append(
                f'<td class="{_row_class(d)}" title="{html.escape(title)}">{_fmt(c.value, 2)}</td>'
            )
        body.append(f'<tr><td class="name">{html.escape(county)}</td>{"".join(cells)}</tr>')
    return (
        f'<table class="counties"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


# Realized accuracy for people: kg/ha as whole numbers, coverage to two decimals.
_ACCURACY_DECIMALS = {"rmse": 0, "mae": 0, "bias": 0, "coverage": 2}


def _accuracy_cell(column: str, value: Any) -> str:
    if column == "too_few_labels":
        return "too few labels" if value is True or value == 1 else ""
    return _fmt(value, _ACCURACY_DECIMALS.get(column, 1))


def _accuracy_table(accuracy: pd.DataFrame) -> str:
    columns = [c for c in accuracy.columns if c != "computed_at"]
    head = "".join(f"<th>{html.escape(c.replace('_', ' '))}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_accuracy_cell(c, row[c])}</td>" for c in columns) + "</tr>"
        for _, row in accuracy.iterrows()
    )
    return f'<table class="accuracy"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def render_html(report: DriftReport, reference: pd.DataFrame, current: pd.DataFrame) -> str:
    """The page: alert, summary table, per-county drift, realized accuracy, and for each
    variable drifted over all plots its reference-versus-current histograms."""
    alert = report.alert
    if alert.raised:
        items = "".join(f"<li>{html.escape(r)}</li>" for r in alert.reasons)
        action = (
            f"Retraining not triggered: already triggered on {html.escape(alert.suppressed_by)}."
            if alert.suppressed_by
            else "Retraining is due: the drift_monitoring DAG starts model_training."
        )
        alert_html = f'<div class="alert"><strong>Alert.</strong> {action}<ul>{items}</ul></div>'
    else:
        alert_html = '<div class="calm"><strong>No alert.</strong></div>'
    strata = "; ".join(
        f"{s['season']} {s['season_year']}: seasons {', '.join(map(str, s['reference_years']))}"
        for s in report.reference.get("strata", [])
    )
    by_county = [d for d in report.drifts if d.county is not None]
    county_drifted = [d for d in by_county if d.drifted]
    insufficient = sum(d.comparison.status == INSUFFICIENT for d in by_county)
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
        charts.append(
            f'<figure class="chart" data-variable="{html.escape(d.variable)}">{svg}</figure>'
        )
    sections = [
        f"<h1>Drift report — {report.run_date.isoformat()}</h1>",
        alert_html,
        f'<p class="muted">Current rows: {html.escape(report.source)}. Reference: '
        f"{report.reference.get('rows', 0):,} historical plot-seasons of the same season type "
        f"and county, planted in the same {report.reference.get('window_days', 7)}-day window and "
        f"seen on the same calendar day ({html.escape(strata) or 'none'}); "
        f"{report.reference.get('current_rows_without_history', 0):,} current rows had no such "
        "history. A variable drifts "
        f"when {html.escape(report.rule.statistic)} exceeds {report.rule.threshold:g}; fewer than "
        f"{report.rule.min_samples} rows on either side is insufficient data.</p>",
        "<h2>Summary — all plots</h2>",
        _summary_table(report.overall),
        f"<h2>By county</h2><p>{len(county_drifted)} of {len(by_county)} county × variable "
        f"comparisons drifted; {insufficient} had insufficient data.</p>",
        _county_matrix(by_county) if by_county else "",
    ]
    if not report.accuracy.empty:
        sections += [
            "<h2>Realized accuracy (labels arrived)</h2>",
            _accuracy_table(report.accuracy),
        ]
    sections += ["<h2>Drifted variables</h2>", "".join(charts) or "<p>None.</p>"]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Drift report {report.run_date.isoformat()}</title><style>{_CSS}</style></head>"
        f"<body>{''.join(sections)}</body></html>\n"
    )
