"""Split-conformal 80% prediction intervals on the log scale, per days-after-planting bucket.

Every model forecasts on the log scale (``nuru_yield.models.ensemble``) and its errors are
multiplicative: management, pests and weather shocks multiply yield, so a 4 t/ha highland
plot misses by tonnes where a 0.5 t/ha semi-arid one misses by hundreds of kilograms. The
intervals are calibrated where the model lives: on seasons the model was not fitted on,
each row's ratio ``actual / forecast`` (its log-scale residual, exponentiated — a failed
crop's zero yield gives 0 rather than −∞). Per bucket, the split-conformal 10% and 90%
quantiles of those ratios are the bucket's factors, and an interval is ``forecast ×
factor``. Factors are widened to ``lower ≤ 1 ≤ upper`` when the calibration seasons say
otherwise (an interval always holds its forecast: it can only get wider), and a ratio is
never negative, so ``0 ≤ lower ≤ forecast ≤ upper`` holds on every row by construction —
nothing is clipped afterwards. Factors may be asymmetric (yields are right-skewed) and they
are per bucket, so intervals narrow as the season advances. Scoring reproduces them from
:meth:`ConformalIntervals.to_dict`, stored with the model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

INTERVAL_LEVEL = 0.8
INTERVAL_METHOD = "split_conformal_log_ratio"


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
    """Per-bucket factors: ``lower = forecast × lower_factors[b]``, ``upper = forecast ×
    upper_factors[b]``, with ``0 ≤ lower_factors[b] ≤ 1 ≤ upper_factors[b]``."""

    level: float
    buckets: tuple[int, ...]
    lower_factors: tuple[float, ...]
    upper_factors: tuple[float, ...]

    def __post_init__(self) -> None:
        lower, upper = np.asarray(self.lower_factors), np.asarray(self.upper_factors)
        if not (np.all(lower >= 0) and np.all(lower <= 1) and np.all(upper >= 1)):
            raise ValueError(f"interval factors must satisfy 0 ≤ lower ≤ 1 ≤ upper: {self}")

    def interval(
        self, predicted: np.ndarray, days_after_planting: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper bounds of non-negative forecasts made at the given days after
        planting."""
        index = _bucket_index(days_after_planting, self.buckets)
        predicted = np.asarray(predicted, dtype=np.float64)
        lower = predicted * np.asarray(self.lower_factors)[index]
        upper = predicted * np.asarray(self.upper_factors)[index]
        return lower, upper

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": INTERVAL_METHOD,
            "level": self.level,
            "buckets": list(self.buckets),
            "lower_factors": list(self.lower_factors),
            "upper_factors": list(self.upper_factors),
        }

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> ConformalIntervals:
        return cls(
            level=float(payload["level"]),
            buckets=tuple(int(b) for b in payload["buckets"]),
            lower_factors=tuple(float(v) for v in payload["lower_factors"]),
            upper_factors=tuple(float(v) for v in payload["upper_factors"]),
        )


def _conformal_quantile(values: np.ndarray, share: float, upper: bool) -> float:
    """The finite-sample split-conformal quantile: rank ⌈(n+1)·share⌉ (upper) or ⌊…⌋ (lower)."""
    ordered = np.sort(values)
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
    """Calibrate intervals from a held-out slice of non-negative labels and positive
    forecasts.

    A bucket without calibration rows takes the factors of the nearest earlier bucket that
    has some (or the first that has any): wider rather than unfounded.
    """
    predicted = np.asarray(predicted, dtype=np.float64)
    actual = np.asarray(actual, dtype=np.float64)
    if len(actual) == 0:
        raise ValueError("no calibration rows")
    if not (np.all(predicted > 0) and np.all(actual >= 0)):
        raise ValueError("calibration needs positive forecasts and non-negative labels")
    ratios = actual / predicted
    bucket_of_row = dap_bucket(days_after_planting, buckets)
    tail = (1 - level) / 2
    lower: list[float | None] = []
    upper: list[float | None] = []
    for bucket in buckets:
        in_bucket = ratios[bucket_of_row == bucket]
        if len(in_bucket):
            lower.append(min(_conformal_quantile(in_bucket, tail, False), 1.0))
            upper.append(max(_conformal_quantile(in_bucket, 1 - tail, True), 1.0))
        else:
            lower.append(None)
            upper.append(None)
    first = next(i for i, value in enumerate(lower) if value is not None)
    for i in range(len(buckets)):
        if lower[i] is None:
            source = i - 1 if i > first else first
            lower[i], upper[i] = lower[source], upper[source]
    return ConformalIntervals(
        level=level,
        buckets=tuple(int(b) for b in buckets),
        lower_factors=tuple(float(v) for v in lower),  # type: ignore[arg-type]
        upper_factors=tuple(float(v) for v in upper),  # type: ignore[arg-type]
    )
