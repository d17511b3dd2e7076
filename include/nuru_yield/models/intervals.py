"""Split-conformal 80% prediction intervals on the log scale, per lead time × forecast level.

Every model forecasts on the log scale (``nuru_yield.models.ensemble``) and its errors are
multiplicative: management, pests and weather shocks multiply yield, so a 4 t/ha highland
plot misses by tonnes where a 0.5 t/ha semi-arid one misses by hundreds of kilograms. The
intervals are calibrated where the model lives: on seasons the model was not fitted on,
each row's ratio ``actual / forecast`` (its log-scale residual, exponentiated — a failed
crop's zero yield gives 0 rather than −∞). Rows are grouped by days-after-planting bucket
(intervals narrow as the season advances) and by forecast level (quintiles of the
calibration forecasts: a low forecast's ratio spreads wider, since crops fail outright
there); per group, the split-conformal 10% and 90% quantiles of the ratios are its factors,
and an interval is ``forecast × factor``. Factors are widened to ``lower ≤ 1 ≤ upper`` when
the calibration seasons say otherwise (an interval always holds its forecast: it can only
get wider), and a ratio is never negative, so ``0 ≤ lower ≤ forecast ≤ upper`` holds on
every row by construction — nothing is clipped afterwards. Scoring reproduces them from
:meth:`ConformalIntervals.to_dict`, stored with the model.

(Factors per lead time alone covered 70% of the lowest-forecast fifth of a new season and
95% of the highest; a fixed offset inside the log, ``(y + c) / (f + c)``, evened that only
partly and needs clipping at zero. The measurements are in ``docs/DESIGN.md``,
"Measurements".)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nuru_yield.models.leads import band_index, lead_band

INTERVAL_LEVEL = 0.8
INTERVAL_METHOD = "split_conformal_log_ratio_by_level"


# Forecast-level groups: quintiles of the calibration forecasts. A group with fewer
# calibration rows than MIN_GROUP_ROWS takes its bucket's factors over every level.
LEVEL_GROUPS = 5
MIN_GROUP_ROWS = 50

Factors = tuple[tuple[float, ...], ...]  # [bucket][level group]


@dataclass(frozen=True)
class ConformalIntervals:
    """Factors per bucket and forecast-level group: ``lower = forecast ×
    lower_factors[b][g]``, ``upper = forecast × upper_factors[b][g]``, with ``0 ≤ lower ≤ 1
    ≤ upper``; group ``g`` of a forecast is the number of ``level_edges`` at or below it."""

    level: float
    buckets: tuple[int, ...]
    level_edges: tuple[float, ...]
    lower_factors: Factors
    upper_factors: Factors

    def __post_init__(self) -> None:
        lower, upper = np.asarray(self.lower_factors), np.asarray(self.upper_factors)
        shape = (len(self.buckets), len(self.level_edges) + 1)
        if lower.shape != shape or upper.shape != shape:
            raise ValueError(f"interval factors must be {shape} (buckets × level groups)")
        if not (np.all(lower >= 0) and np.all(lower <= 1) and np.all(upper >= 1)):
            raise ValueError(f"interval factors must satisfy 0 ≤ lower ≤ 1 ≤ upper: {self}")

    def interval(
        self, predicted: np.ndarray, days_after_planting: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper bounds of non-negative forecasts made at the given days after
        planting."""
        predicted = np.asarray(predicted, dtype=np.float64)
        bucket = band_index(days_after_planting, self.buckets)
        group = np.searchsorted(np.asarray(self.level_edges), predicted, side="right")
        lower = predicted * np.asarray(self.lower_factors)[bucket, group]
        upper = predicted * np.asarray(self.upper_factors)[bucket, group]
        return lower, upper

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": INTERVAL_METHOD,
            "level": self.level,
            "buckets": list(self.buckets),
            "level_edges": list(self.level_edges),
            "lower_factors": [list(row) for row in self.lower_factors],
            "upper_factors": [list(row) for row in self.upper_factors],
        }

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> ConformalIntervals:
        def factors(rows: list[list[float]]) -> Factors:
            return tuple(tuple(float(v) for v in row) for row in rows)

        return cls(
            level=float(payload["level"]),
            buckets=tuple(int(b) for b in payload["buckets"]),
            level_edges=tuple(float(v) for v in payload["level_edges"]),
            lower_factors=factors(payload["lower_factors"]),
            upper_factors=factors(payload["upper_factors"]),
        )


def _conformal_quantile(values: np.ndarray, share: float, upper: bool) -> float:
    """The finite-sample split-conformal quantile: rank ⌈(n+1)·share⌉ (upper) or ⌊…⌋ (lower)."""
    ordered = np.sort(values)
    n = len(ordered)
    rank = min(math.ceil((n + 1) * share), n) if upper else max(math.floor((n + 1) * share), 1)
    return float(ordered[rank - 1])


def conformal_factors(ratios: np.ndarray, level: float = INTERVAL_LEVEL) -> tuple[float, float]:
    """The split-conformal ``level`` interval of held-out ratios ``actual / forecast`` as
    factors of a forecast, widened to ``lower ≤ 1 ≤ upper`` (plot intervals here, county
    figures in ``nuru_yield.counties.skill``)."""
    tail = (1 - level) / 2
    return (
        min(_conformal_quantile(ratios, tail, False), 1.0),
        max(_conformal_quantile(ratios, 1 - tail, True), 1.0),
    )


def calibrate(
    actual: np.ndarray,
    predicted: np.ndarray,
    days_after_planting: np.ndarray,
    buckets: Sequence[int],
    level: float = INTERVAL_LEVEL,
) -> ConformalIntervals:
    """Calibrate intervals from a held-out slice of non-negative labels and positive
    forecasts.

    A level group with fewer than :data:`MIN_GROUP_ROWS` rows takes its bucket's factors;
    a bucket without calibration rows takes those of the nearest earlier bucket that has
    some (or the first that has any): wider rather than unfounded.
    """
    predicted = np.asarray(predicted, dtype=np.float64)
    actual = np.asarray(actual, dtype=np.float64)
    if len(actual) == 0:
        raise ValueError("no calibration rows")
    if not (np.all(predicted > 0) and np.all(actual >= 0)):
        raise ValueError("calibration needs positive forecasts and non-negative labels")
    ratios = actual / predicted
    edges = tuple(
        float(edge)
        for edge in np.unique(np.quantile(predicted, np.arange(1, LEVEL_GROUPS) / LEVEL_GROUPS))
    )
    group_of_row = np.searchsorted(np.asarray(edges), predicted, side="right")
    bucket_of_row = lead_band(days_after_planting, buckets)
    per_bucket: list[tuple[list[float], list[float]] | None] = []
    for bucket in buckets:
        in_bucket = bucket_of_row == bucket
        if not in_bucket.any():
            per_bucket.append(None)
            continue
        pooled = conformal_factors(ratios[in_bucket], level)
        lower, upper = [], []
        for group in range(len(edges) + 1):
            rows = in_bucket & (group_of_row == group)
            low, high = (
                conformal_factors(ratios[rows], level) if rows.sum() >= MIN_GROUP_ROWS else pooled
            )
            lower.append(low)
            upper.append(high)
        per_bucket.append((lower, upper))
    first = next(i for i, value in enumerate(per_bucket) if value is not None)
    for i in range(len(buckets)):
        if per_bucket[i] is None:
            per_bucket[i] = per_bucket[i - 1 if i > first else first]
    return ConformalIntervals(
        level=level,
        buckets=tuple(int(b) for b in buckets),
        level_edges=edges,
        lower_factors=tuple(tuple(factors[0]) for factors in per_bucket),  # type: ignore[index]
        upper_factors=tuple(tuple(factors[1]) for factors in per_bucket),  # type: ignore[index]
    )
