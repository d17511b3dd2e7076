"""Drift statistics against hand-computed values and scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from nuru_yield.monitoring.statistics import (
    DRIFTED,
    INSUFFICIENT,
    OK,
    PSI_EMPTY_BIN_SHARE,
    DriftRule,
    bin_shares,
    compare,
    js_distance,
    ks_test,
    psi,
    quantile_edges,
    wasserstein,
)

REFERENCE = np.array([1.0, 2.0, 3.0, 4.0])
CURRENT = np.array([1.0, 1.0, 1.0, 4.0])


def test_psi_by_hand() -> None:
    # Two bins split at the reference median 2.5: reference 50/50, current 75/25.
    assert quantile_edges(REFERENCE, bins=2).tolist() == [2.5]
    expected = (0.75 - 0.5) * math.log(0.75 / 0.5) + (0.25 - 0.5) * math.log(0.25 / 0.5)
    assert psi(REFERENCE, CURRENT, bins=2) == pytest.approx(expected)  # 0.27465


def test_psi_empty_bin_is_floored_not_infinite() -> None:
    # Every current value lies above the reference's range: the current side's lower bin is
    # empty, and its share is floored instead of giving log(0).
    current = np.full(4, 100.0)
    r, c = np.array([0.5, 0.5]), np.array([PSI_EMPTY_BIN_SHARE, 1.0])
    expected = float(np.sum((c - r) * np.log(c / r)))
    assert psi(REFERENCE, current, bins=2) == pytest.approx(expected)
    assert math.isfinite(expected) and expected > 2


def test_bins_merge_tied_quantiles() -> None:
    reference = np.array([0.0] * 60 + list(range(1, 41)), dtype=float)
    edges = quantile_edges(reference, bins=10)
    assert edges[0] == 0.0 and len(edges) == len(set(edges.tolist())) < 9
    shares = bin_shares(reference, edges)
    assert shares[0] == pytest.approx(0.6) and shares.sum() == pytest.approx(1.0)


def test_js_distance_by_hand_and_scipy() -> None:
    p, q = np.array([0.5, 0.5]), np.array([0.75, 0.25])
    m = (p + q) / 2
    divergence = 0.5 * np.sum(p * np.log2(p / m)) + 0.5 * np.sum(q * np.log2(q / m))
    assert js_distance(REFERENCE, CURRENT, bins=2) == pytest.approx(math.sqrt(divergence))
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=2000), rng.normal(0.3, 1.2, size=1500)
    edges = quantile_edges(a)
    assert js_distance(a, b) == pytest.approx(
        jensenshannon(bin_shares(a, edges), bin_shares(b, edges), base=2)
    )


def test_ks_by_hand_and_scipy() -> None:
    # ECDFs of [1,2,3,4] and [3,4,5,6] differ most at x = 2: 0.5 against 0.
    statistic, p_value = ks_test(REFERENCE, np.array([3.0, 4.0, 5.0, 6.0]))
    assert statistic == pytest.approx(0.5)
    rng = np.random.default_rng(7)
    a, b = rng.gamma(2.0, 3.0, 3000), rng.gamma(2.2, 3.0, 2000)
    expected = stats.ks_2samp(a, b, method="asymp")
    statistic, p_value = ks_test(a, b)
    assert statistic == pytest.approx(expected.statistic)
    assert p_value == pytest.approx(expected.pvalue, rel=1e-9)


def test_wasserstein_by_hand_and_scipy() -> None:
    # Shifting [0, 1] by one moves all mass by 1; the reference's sd is 0.5.
    assert wasserstein(np.array([0.0, 1.0]), np.array([1.0, 2.0])) == pytest.approx(2.0)
    rng = np.random.default_rng(11)
    a, b = rng.lognormal(5, 0.4, 2500), rng.lognormal(5.1, 0.5, 1200)
    assert wasserstein(a, b) == pytest.approx(stats.wasserstein_distance(a, b) / np.std(a))


def test_wasserstein_of_a_constant_reference_stays_finite() -> None:
    value = wasserstein(np.zeros(200), np.r_[np.zeros(150), np.ones(50)])
    assert math.isfinite(value) and value > 0


def test_tiny_samples_are_insufficient_data_not_an_alarm() -> None:
    rule = DriftRule(min_samples=100)
    result = compare(np.zeros(500), np.full(20, 1000.0), rule)  # wildly different, but 20 rows
    assert result.status == INSUFFICIENT
    assert not result.drifted and result.value is None
    assert (result.n_current, result.n_reference) == (20, 500)


def test_missing_values_are_dropped_before_counting() -> None:
    current = np.r_[np.random.default_rng(0).normal(size=150), np.full(100, np.nan)]
    result = compare(np.random.default_rng(1).normal(size=400), current, DriftRule(min_samples=200))
    assert result.status == INSUFFICIENT and result.n_current == 150


def test_compare_decides_by_the_configured_statistic() -> None:
    rng = np.random.default_rng(5)
    reference = rng.normal(size=4000)
    same = compare(reference, rng.normal(size=3000))
    shifted = compare(reference, rng.normal(1.0, 1.0, size=3000))
    assert same.status == OK and same.value == same.values["psi"] < 0.25
    assert shifted.status == DRIFTED and shifted.values["psi"] > 0.25
    by_ks = compare(reference, rng.normal(0.2, 1.0, size=3000), DriftRule("ks", threshold=0.05))
    assert by_ks.statistic == "ks" and by_ks.value == by_ks.values["ks"]
    assert by_ks.drifted
