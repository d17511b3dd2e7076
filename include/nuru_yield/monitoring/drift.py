"""Drift of every model feature and of the prediction, overall and per county — and what a
finding means.

A variable *drifts* when tonight's rows differ from the crop-calendar-aware reference
(:mod:`.reference`) beyond the rule's threshold. That alone says the season is unusual, not
that the model is wrong, so each finding gets a **signal**:

* ``season signal`` — a season-varying variable (rain, heat, dry spells, NDVI, planting, the
  data counts, the forecast itself) drifted: the season is far from the county's normal to
  date. News for the bulletin, whose season signals (:mod:`nuru_yield.counties.signals`)
  the report quotes, never a retraining trigger;
* ``plot mix`` — a static variable (location, altitude, season kind:
  ``features.columns.STATIC_FEATURES``) drifted: other plots than the reference's are
  scored tonight. Reported, not a trigger;
* ``model evidence`` — more than ``rule.max_outside_share`` of tonight's values of a model
  feature lie outside the range the model was trained on at their lead-time band
  (:mod:`nuru_yield.models.ranges`; about 1% by construction): the model is asked about
  inputs it never learned from. Over all plots this triggers retraining (:mod:`.alerts`),
  as does realized accuracy worse than the evaluation once labels arrive. The feeds'
  coverage counts (``FEED_COVERAGE_FEATURES``) are never evidence: a feed a day or two behind
  lowers them below anything training saw, and retraining cannot fix a feed.

Model evidence outranks a season signal on the same row; the share outside is reported on
every row the model's ranges cover.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from nuru_yield.features.columns import FEED_COVERAGE_FEATURES, STATIC_FEATURES
from nuru_yield.monitoring.statistics import Comparison, DriftRule, compare

if TYPE_CHECKING:
    from nuru_yield.models.ranges import TrainingRanges

PREDICTION = "predicted_yield_kg_per_ha"
SEASON_SIGNAL, PLOT_MIX, MODEL_EVIDENCE = "season signal", "plot mix", "model evidence"
SIGNALS = (SEASON_SIGNAL, PLOT_MIX, MODEL_EVIDENCE)


@dataclass(frozen=True)
class VariableDrift:
    """One variable's verdict for all plots (``county`` None) or one county's plots."""

    variable: str
    county: str | None
    comparison: Comparison
    # Share of the current values outside the model's training range at their lead-time
    # band (None: no ranges, or too few values checked), and the means of both sides.
    outside_share: float | None = None
    current_mean: float | None = None
    reference_mean: float | None = None
    signal: str | None = None

    @property
    def drifted(self) -> bool:
        return self.comparison.drifted

    def as_row(self) -> dict[str, Any]:
        """A ``drift_reports`` row (without ``run_date``), also the JSON report's entry."""
        c = self.comparison
        return {
            "feature": self.variable,
            "county": self.county,
            "statistic": c.statistic,
            "value": c.value,
            "threshold": c.threshold,
            "drifted": c.drifted,
            "status": c.status,
            "n_current": c.n_current,
            "n_reference": c.n_reference,
            "signal": self.signal,
            "outside_training_share": self.outside_share,
            "current_mean": self.current_mean,
            "reference_mean": self.reference_mean,
            "statistics": c.values,
        }


def signal_of(
    variable: str, comparison: Comparison, outside_share: float | None, rule: DriftRule
) -> str | None:
    """What a finding means (see the module doc); None when there is nothing to report."""
    evidence = (
        outside_share is not None
        and outside_share > rule.max_outside_share
        and variable not in FEED_COVERAGE_FEATURES
    )
    if evidence:
        return MODEL_EVIDENCE
    if not comparison.drifted:
        return None
    return PLOT_MIX if variable in STATIC_FEATURES else SEASON_SIGNAL


def _values(frame: pd.DataFrame, variable: str, rows: np.ndarray | None = None) -> np.ndarray:
    if variable not in frame.columns:
        return np.empty(0)
    values = frame[variable].to_numpy(np.float64, na_value=np.nan)
    return values if rows is None else values[rows]


def _mean(values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if len(finite) else None


def detect_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    variables: Sequence[str],
    rule: DriftRule,
    by_county: bool = True,
    ranges: TrainingRanges | None = None,
) -> list[VariableDrift]:
    """Compare each variable of ``current`` with ``reference``: first over all rows, then
    (``by_county``) within each county of the current rows. A variable or county missing
    from the reference compares against nothing: ``insufficient data``. With the ``ranges``
    of the model's training rows, each finding also counts the current values outside them
    (a share of the values checked, when at least ``rule.min_samples`` were)."""
    if ranges is not None:
        outside, checked = ranges.outside(current, variables)
    else:
        outside = checked = np.zeros((len(current), len(variables)), dtype=bool)

    def finding(variable: str, county: str | None, ref_rows: Any, cur_rows: Any) -> VariableDrift:
        ref, cur = _values(reference, variable, ref_rows), _values(current, variable, cur_rows)
        comparison = compare(ref, cur, rule)
        column = variables.index(variable)
        seen = checked[:, column] if cur_rows is None else checked[cur_rows, column]
        out = outside[:, column] if cur_rows is None else outside[cur_rows, column]
        share = float(out.sum() / seen.sum()) if seen.sum() >= rule.min_samples else None
        return VariableDrift(
            variable,
            county,
            comparison,
            outside_share=share,
            current_mean=_mean(cur),
            reference_mean=_mean(ref),
            signal=signal_of(variable, comparison, share, rule),
        )

    variables = list(variables)
    results = [finding(v, None, None, None) for v in variables]
    if not by_county:
        return results
    ref_county = reference["county"].to_numpy(object) if len(reference) else np.empty(0, object)
    cur_county = current["county"].to_numpy(object)
    for county in sorted(set(cur_county.tolist()) - {None}):
        ref_rows, cur_rows = ref_county == county, cur_county == county
        results.extend(finding(v, str(county), ref_rows, cur_rows) for v in variables)
    return results
