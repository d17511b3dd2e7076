"""Split-conformal 80% prediction intervals, calibrated per days-after-planting bucket.

Errors of a yield forecast grow with the forecast: management, pests and weather shocks
multiply yield, so a 4 t/ha highland plot misses by tonnes where a 0.5 t/ha semi-arid one
misses by hundreds of kilograms. Residuals are therefore scaled by ``max(prediction, 0) +
scale_floor`` (the floor keeps failed-crop forecasts near zero from getting zero-width
intervals). On a calibration slice the model was not trained on, the 10% and 90% quantiles
of the scaled residuals, per bucket, give the offsets: ``prediction + scale × offset``.
Offsets are signed, so intervals may be asymmetric (yields are right-skewed), and they are
per bucket, so intervals narrow as the season advances. Scoring reproduces them from
:meth:`ConformalIntervals.to_dict`, stored with the model.

(Unscaled residuals gave intervals that fit the calibration seasons' mix of high- and
low-yield counties, not the evaluated season's: 60% or 90% coverage instead of 80% when the
mix changed between Long and Short Rains.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

INTERVAL_LEVEL = 0.8
INTERVAL_METHOD = "split_conformal_scaled_residuals"
SCALE_FLOOR_KG_PER_HA = 300.0


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
    """Per-bucket quantiles of scaled residuals: ``lower = pred + scale × lower_offsets[b]``
    with ``scale = max(pred, 0) + scale_floor`` (see the module docstring)."""

    level: float
    buckets: tuple[int, ...]
    lower_offsets: tuple[float, ...]
    upper_offsets: tuple[float, ...]
    scale_floor: float = SCALE_FLOOR_KG_PER_HA

    def interval(
        self, predicted: np.ndarray, days_after_planting: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper bounds for predictions made at the given days after planting.

        The lower bound is clipped at zero: a yield cannot be negative.
        """
        index = _bucket_index(days_after_planting, self.buckets)
        predicted = np.asarray(predicted, dtype=np.float64)
        scale = _scale(predicted, self.scale_floor)
        lower = predicted + scale * np.asarray(self.lower_offsets)[index]
        upper = predicted + scale * np.asarray(self.upper_offsets)[index]
        return np.maximum(lower, 0.0), upper

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": INTERVAL_METHOD,
            "level": self.level,
            "scale_floor": self.scale_floor,
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
            scale_floor=float(payload["scale_floor"]),
        )


def _scale(predicted: np.ndarray, floor: float) -> np.ndarray:
    return np.maximum(predicted, 0.0) + floor


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
    scale_floor: float = SCALE_FLOOR_KG_PER_HA,
) -> ConformalIntervals:
    """Calibrate intervals from a held-out slice.

    A bucket without calibration rows takes the offsets of the nearest earlier bucket that
    has some (or the first that has any): wider rather than unfounded.
    """
    predicted = np.asarray(predicted, dtype=np.float64)
    residuals = (np.asarray(actual, dtype=np.float64) - predicted) / _scale(predicted, scale_floor)
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
        scale_floor=scale_floor,
    )
