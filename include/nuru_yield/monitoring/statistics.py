"""Drift statistics of one variable: numpy/scipy behind one small interface, :func:`compare`.

Each statistic compares a *reference* sample (what the model was trained on, matched by
season type and days after planting, see :mod:`.reference`) with the *current* sample:

* ``psi`` — population stability index over bins cut at the reference's deciles;
* ``ks`` and ``ks_pvalue`` — two-sample Kolmogorov–Smirnov statistic and its asymptotic
  p-value (with thousands of rows the p-value rejects for differences nobody cares about,
  so it is reported, never used to decide);
* ``js_distance`` — Jensen–Shannon distance (base 2, in [0, 1]) over the same bins;
* ``wasserstein`` — first Wasserstein distance divided by the reference's standard
  deviation, so one threshold fits millimetres of rain and NDVI alike.

Missing values are left out before comparing; samples smaller than the minimum give the
status ``insufficient data`` — never an alarm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

STATISTICS = ("psi", "ks", "ks_pvalue", "js_distance", "wasserstein")
DecisionStatistic = Literal["psi", "ks", "js_distance", "wasserstein"]

OK = "ok"
DRIFTED = "drifted"
INSUFFICIENT = "insufficient data"

DEFAULT_BINS = 10
# Share given to an empty bin in PSI, whose log ratio is otherwise infinite.
PSI_EMPTY_BIN_SHARE = 1e-4


@dataclass(frozen=True)
class DriftRule:
    """How to decide: which statistic, beyond which threshold, from how many rows; and what
    share of values outside the model's training range is evidence against the model
    (``nuru_yield.monitoring.drift``; about 1% lie outside by construction)."""

    statistic: DecisionStatistic = "psi"
    threshold: float = 0.25
    min_samples: int = 100
    bins: int = DEFAULT_BINS
    max_outside_share: float = 0.05


@dataclass(frozen=True)
class Comparison:
    """The verdict on one variable, with every statistic for the report."""

    status: str  # OK, DRIFTED or INSUFFICIENT
    statistic: str
    value: float | None
    threshold: float
    n_current: int
    n_reference: int
    values: dict[str, float]

    @property
    def drifted(self) -> bool:
        return self.status == DRIFTED


def _finite(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return values[np.isfinite(values)]


def quantile_edges(reference: np.ndarray, bins: int = DEFAULT_BINS) -> np.ndarray:
    """Inner bin edges at the reference's quantiles (deciles by default), duplicates merged.

    A bin is ``(edge[i-1], edge[i]]``; the outer bins are open, so current values outside
    the reference's range land in the first or last bin.
    """
    inner = np.quantile(reference, np.linspace(0.0, 1.0, bins + 1)[1:-1])
    return np.unique(inner)


def bin_shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share of ``values`` in each of the ``len(edges) + 1`` bins of :func:`quantile_edges`."""
    counts = np.bincount(np.searchsorted(edges, values, side="left"), minlength=len(edges) + 1)
    return counts / max(len(values), 1)


def psi(reference: np.ndarray, current: np.ndarray, bins: int = DEFAULT_BINS) -> float:
    """Population stability index: Σ (c − r) · ln(c / r) over reference-quantile bins."""
    edges = quantile_edges(reference, bins)
    r = np.maximum(bin_shares(reference, edges), PSI_EMPTY_BIN_SHARE)
    c = np.maximum(bin_shares(current, edges), PSI_EMPTY_BIN_SHARE)
    return float(np.sum((c - r) * np.log(c / r)))


def js_distance(reference: np.ndarray, current: np.ndarray, bins: int = DEFAULT_BINS) -> float:
    """Jensen–Shannon distance (square root of the divergence, base 2) over the PSI bins."""
    edges = quantile_edges(reference, bins)
    p, q = bin_shares(reference, edges), bin_shares(current, edges)
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        used = a > 0
        return float(np.sum(a[used] * np.log2(a[used] / m[used])))

    return math.sqrt(max((kl(p) + kl(q)) / 2, 0.0))


def _ecdfs(reference: np.ndarray, current: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Both empirical CDFs evaluated at every point of the pooled sample (sorted)."""
    pooled = np.sort(np.concatenate([reference, current]))
    f_ref = np.searchsorted(np.sort(reference), pooled, side="right") / len(reference)
    f_cur = np.searchsorted(np.sort(current), pooled, side="right") / len(current)
    return pooled, f_ref, f_cur


def ks_test(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """Two-sample KS statistic sup|F_ref − F_cur| and its asymptotic two-sided p-value."""
    from scipy.stats import kstwo

    _, f_ref, f_cur = _ecdfs(reference, current)
    statistic = float(np.max(np.abs(f_ref - f_cur)))
    n, m = len(reference), len(current)
    return statistic, float(np.clip(kstwo.sf(statistic, round(n * m / (n + m))), 0.0, 1.0))


def wasserstein(reference: np.ndarray, current: np.ndarray) -> float:
    """First Wasserstein distance ∫|F_ref − F_cur| dx, divided by the reference's standard
    deviation (or the current's, or 1, when the reference is constant)."""
    pooled, f_ref, f_cur = _ecdfs(reference, current)
    distance = float(np.sum(np.abs(f_ref - f_cur)[:-1] * np.diff(pooled)))
    scale = float(np.std(reference)) or float(np.std(current)) or 1.0
    return distance / scale


def statistics(
    reference: np.ndarray, current: np.ndarray, bins: int = DEFAULT_BINS
) -> dict[str, float]:
    """Every statistic of :data:`STATISTICS` for two non-empty samples of finite values."""
    ks, p_value = ks_test(reference, current)
    return {
        "psi": psi(reference, current, bins),
        "ks": ks,
        "ks_pvalue": p_value,
        "js_distance": js_distance(reference, current, bins),
        "wasserstein": wasserstein(reference, current),
    }


def compare(
    reference: np.ndarray, current: np.ndarray, rule: DriftRule | None = None
) -> Comparison:
    """Compare two samples (missing values dropped) and decide by ``rule``."""
    rule = rule or DriftRule()
    reference, current = _finite(reference), _finite(current)
    n_ref, n_cur = len(reference), len(current)
    if min(n_ref, n_cur) < rule.min_samples:
        return Comparison(INSUFFICIENT, rule.statistic, None, rule.threshold, n_cur, n_ref, {})
    values = statistics(reference, current, rule.bins)
    value = values[rule.statistic]
    status = DRIFTED if value > rule.threshold else OK
    return Comparison(status, rule.statistic, value, rule.threshold, n_cur, n_ref, values)
