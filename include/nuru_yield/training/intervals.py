"""Split-conformal 80% prediction intervals, calibrated per days-after-planting bucket.

A model's residuals (actual − predicted) on a calibration slice it was not trained on give,
per bucket, the empirical 10% and 90% quantiles; an interval is ``prediction + offsets``.
Offsets are signed, so intervals may be asymmetric (plot yields are right-skewed), and they
are computed per bucket, so intervals narrow as the season advances and the features carry
more of the outcome. Scoring reproduces them from :meth:`ConformalIntervals.to_dict`
stored with the model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

INTERVAL_LEVEL = 0.8


def training_buckets(cutoffs: Sequence[int | None], season_max_days: int) -> tuple[int, ...]:
    """Days-after-planting buckets from the training cut-offs (``None`` = full season, i.e.
    ``season_max_days``). A bucket runs from its cut-off to the next; forecasts made before
    the first cut-off fall in the first bucket, whose intervals are the widest."""
    return tuple(sorted({season_max_days if days is None else int(days) for days in cutoffs}))


def _bucket_index(days_after_planting: np.ndarray, buckets: Sequence[int]) -> np.ndarray:
    index = np.searchsorted(np.asarray(buckets), np.asarray(days_after_planting), side="right")
    return np.clip(index - 1, 0, len(buckets) - 1)


def dap_bucket(days_after_planting: np.ndarray, buckets: Sequence[int]) -> np.ndarray:
    """The bucket (its lower bound) of each days-after-planting value."""
    return np.asarray(buckets)[_bucket_index(days_after_planting, buckets)]


@dataclass(frozen=True)
class ConformalIntervals:
    """Per-bucket signed residual quantiles: ``lower = pred + lower_offsets[b]`` etc."""

    level: float
    buckets: tuple[int, ...]
    lower_offsets: tuple[float, ...]
    upper_offsets: tuple[float, ...]

    def interval(
        self, predicted: np.ndarray, days_after_planting: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper bounds for predictions made at the given days after planting.

        The lower bound is clipped at zero: a yield cannot be negative.
        """
        index = _bucket_index(days_after_planting, self.buckets)
        predicted = np.asarray(predicted, dtype=np.float64)
        lower = predicted + np.asarray(self.lower_offsets)[index]
        upper = predicted + np.asarray(self.upper_offsets)[index]
        return np.maximum(lower, 0.0), upper

    def half_widths(self) -> dict[int, float]:
        """Mean half-width per bucket, for reports and tests of narrowing."""
        return {
            bucket: (upper - lower) / 2
            for bucket, lower, upper in zip(
                self.buckets, self.lower_offsets, self.upper_offsets, strict=True
            )
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": "split_conformal_signed_residuals",
            "level": self.level,
            "buckets": list(self.buckets),
            "lower_offsets": list(self.lower_offsets),
            "upper_offsets": list(self.upper_offsets),
        }

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> ConformalIntervals:
        return cls(
            level=float(payload["level"]),
            buckets=tuple(int(b) for b in payload["buckets"]),
            lower_offsets=tuple(float(v) for v in payload["lower_offsets"]),
            upper_offsets=tuple(float(v) for v in payload["upper_offsets"]),
        )


def _conformal_quantile(residuals: np.ndarray, share: float, upper: bool) -> float:
    """The finite-sample split-conformal quantile: rank ⌈(n+1)·share⌉ (upper) or ⌊…⌋ (lower)."""
    ordered = np.sort(residuals)
    n = len(ordered)
    rank = min(math.ceil((n + 1) * share), n) if upper else max(math.floor((n + 1) * share), 1)
    return float(ordered[rank - 1])


def calibrate(
    actual: np.ndarray,
    predicted: np.ndarray,
    days_after_planting: np.ndarray,
    buckets: Sequence[int],
    level: float = INTERVAL_LEVEL,
) -> ConformalIntervals:
    """Calibrate intervals from a held-out slice.

    A bucket without calibration rows takes the offsets of the nearest earlier bucket that
    has some (or the first that has any): wider rather than unfounded.
    """
    residuals = np.asarray(actual, dtype=np.float64) - np.asarray(predicted, dtype=np.float64)
    if len(residuals) == 0:
        raise ValueError("no calibration rows")
    bucket_of_row = dap_bucket(days_after_planting, buckets)
    tail = (1 - level) / 2
    lower: list[float | None] = []
    upper: list[float | None] = []
    for bucket in buckets:
        in_bucket = residuals[bucket_of_row == bucket]
        lower.append(_conformal_quantile(in_bucket, tail, False) if len(in_bucket) else None)
        upper.append(_conformal_quantile(in_bucket, 1 - tail, True) if len(in_bucket) else None)
    first = next(i for i, value in enumerate(lower) if value is not None)
    for i in range(len(buckets)):
        if lower[i] is None:
            source = i - 1 if i > first else first
            lower[i], upper[i] = lower[source], upper[source]
    return ConformalIntervals(
        level=level,
        buckets=tuple(int(b) for b in buckets),
        lower_offsets=tuple(float(v) for v in lower),  # type: ignore[arg-type]
        upper_offsets=tuple(float(v) for v in upper),  # type: ignore[arg-type]
    )
