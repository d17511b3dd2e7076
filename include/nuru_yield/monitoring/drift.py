"""Drift of every model feature and of the prediction, overall and per county."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from nuru_yield.monitoring.statistics import Comparison, DriftRule, compare

PREDICTION = "predicted_yield_kg_per_ha"


@dataclass(frozen=True)
class VariableDrift:
    """One variable's verdict for all plots (``county`` None) or one county's plots."""

    variable: str
    county: str | None
    comparison: Comparison

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
            "statistics": c.values,
        }


def _values(frame: pd.DataFrame, variable: str, rows: np.ndarray | None = None) -> np.ndarray:
    if variable not in frame.columns:
        return np.empty(0)
    values = frame[variable].to_numpy(np.float64, na_value=np.nan)
    return values if rows is None else values[rows]


def detect_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    variables: Sequence[str],
    rule: DriftRule,
    by_county: bool = True,
) -> list[VariableDrift]:
    """Compare each variable of ``current`` with ``reference``: first over all rows, then
    (``by_county``) within each county of the current rows. A variable or county missing
    from the reference compares against nothing: ``insufficient data``."""
    results = [
        VariableDrift(v, None, compare(_values(reference, v), _values(current, v), rule))
        for v in variables
    ]
    if not by_county:
        return results
    ref_county = reference["county"].to_numpy(object) if len(reference) else np.empty(0, object)
    cur_county = current["county"].to_numpy(object)
    for county in sorted(set(cur_county.tolist()) - {None}):
        ref_rows, cur_rows = ref_county == county, cur_county == county
        results.extend(
            VariableDrift(
                v,
                str(county),
                compare(_values(reference, v, ref_rows), _values(current, v, cur_rows), rule),
            )
            for v in variables
        )
    return results
