"""The inputs a model was trained on: each feature's range per lead-time band.

A model forecasts well only where it has seen data. A dry season is not such a place by
itself — the training seasons held dry ones too — but 300 mm of rain ten days after planting,
or a crop planted a month later than any before it, is: the trees then answer with whatever
their outermost leaf says. So training records, for every lead-time band (:mod:`.leads`) and
feature, the [0.5%, 99.5%] quantiles of the rows the model was fitted on (``feature_ranges``
in the logged metadata), and monitoring counts tonight's rows outside them: about 1% per
feature by construction, many more is evidence that the model is asked about inputs it never
learned from (``nuru_yield.monitoring.drift``). A missing value is never outside (the trees
route it as they learned), nor is a band with fewer than :data:`MIN_BAND_ROWS` training rows
(no range is recorded for it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from nuru_yield.models.leads import LEAD_BANDS, band_index

RANGE_QUANTILES = (0.005, 0.995)
MIN_BAND_ROWS = 100


@dataclass(frozen=True)
class TrainingRanges:
    """``low``/``high``: bands × features (NaN where a band had too few rows)."""

    bands: tuple[int, ...]
    features: tuple[str, ...]
    low: np.ndarray
    high: np.ndarray

    @classmethod
    def fit(
        cls, frame: pd.DataFrame, features: Sequence[str], bands: Sequence[int] = LEAD_BANDS
    ) -> TrainingRanges:
        """The ranges of training rows (``days_after_planting`` and ``features`` columns)."""
        values = frame.loc[:, list(features)].to_numpy(np.float64)
        band = band_index(frame["days_after_planting"].to_numpy(np.float64), bands)
        low = np.full((len(bands), len(features)), np.nan)
        high = np.full_like(low, np.nan)
        for index in range(len(bands)):
            rows = values[band == index]
            if len(rows) >= MIN_BAND_ROWS:
                with np.errstate(all="ignore"):  # a feature missing on every row stays NaN
                    low[index], high[index] = np.nanquantile(rows, RANGE_QUANTILES, axis=0)
        return cls(tuple(int(b) for b in bands), tuple(features), low, high)

    def outside(
        self, frame: pd.DataFrame, features: Sequence[str]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Two rows × ``features`` boolean arrays: which values of ``frame`` lie outside the
        training range of their row's band, and which were checked at all (not a missing
        value, a feature the model was not trained on, or a band without a range)."""
        band = band_index(frame["days_after_planting"].to_numpy(np.float64), self.bands)
        outside = np.zeros((len(frame), len(features)), dtype=bool)
        checked = np.zeros_like(outside)
        for column, name in enumerate(features):
            if name not in self.features or name not in frame.columns:
                continue
            position = self.features.index(name)
            low, high = self.low[band, position], self.high[band, position]
            value = frame[name].to_numpy(np.float64, na_value=np.nan)
            checked[:, column] = np.isfinite(value) & np.isfinite(low) & np.isfinite(high)
            with np.errstate(invalid="ignore"):
                outside[:, column] = checked[:, column] & ((value < low) | (value > high))
        return outside, checked

    def to_dict(self) -> dict[str, Any]:
        def listed(array: np.ndarray) -> list[list[float | None]]:
            return [[None if np.isnan(v) else float(v) for v in row] for row in array]

        return {
            "quantiles": list(RANGE_QUANTILES),
            "bands": list(self.bands),
            "features": list(self.features),
            "low": listed(self.low),
            "high": listed(self.high),
        }

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> TrainingRanges:
        def array(rows: list[list[float | None]]) -> np.ndarray:
            return np.array([[np.nan if v is None else v for v in row] for row in rows], float)

        return cls(
            bands=tuple(int(b) for b in payload["bands"]),
            features=tuple(str(f) for f in payload["features"]),
            low=array(payload["low"]),
            high=array(payload["high"]),
        )
