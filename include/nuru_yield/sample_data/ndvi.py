"""Satellite NDVI of each plot-season: a bare-soil baseline plus the crop's canopy.

The canopy is AquaCrop's water-limited canopy curve for that plot-season, shrunk by the
plot's management (poor stands and little fertiliser close the canopy less); intercropped
beans add an early green bump that says nothing about maize yield. Scenes come every
5–16 days from a few weeks before planting to a few weeks after maturity (~15 a season);
some are missing, and on rainy days clouds cover much of the plot and drag NDVI towards
zero, as on real imagery before masking.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nuru_yield.sample_data.crop import CANOPY_KNOTS
from nuru_yield.sample_data.seasons import Plots, SeasonBlock, WeatherHistory

_SCENES_PER_SEASON = 15
_MAX_SCENES = 26  # slots drawn per plot-season; revisits are at least 0.6 of the mean apart
MIN_REVISIT_DAYS = 5
_REVISIT_DAYS = (MIN_REVISIT_DAYS, 16)
_MISSING_SCENE_SHARE = 0.08
_CLOUD_FRACTION_NULL_SHARE = 0.01
_GREEN_RANGE = 0.72  # NDVI a fully closed, healthy maize canopy adds to bare soil


@dataclass(frozen=True)
class Observations:
    plot: np.ndarray  # index into Plots
    day: np.ndarray  # index into WeatherHistory days
    ndvi: np.ndarray
    cloud_fraction: np.ndarray  # NaN where the scene's cloud mask is missing


def canopy_at(canopy: np.ndarray, row: np.ndarray, position: np.ndarray) -> np.ndarray:
    """Canopy cover of plot-season ``row`` at ``position`` (fraction of its season);
    zero before sowing and after maturity (harvested or dry)."""
    step = len(CANOPY_KNOTS) - 1
    x = np.clip(position, 0.0, 1.0) * step
    i = np.minimum(x.astype(np.int64), step - 1)
    frac = x - i
    value = canopy[row, i] * (1.0 - frac) + canopy[row, i + 1] * frac
    return np.where((position >= 0.0) & (position <= 1.0), value, 0.0)


def observe(
    block: SeasonBlock,
    canopy: np.ndarray,
    plots: Plots,
    history: WeatherHistory,
    rng: np.random.Generator,
    not_before: np.ndarray,
) -> Observations:
    """All NDVI scenes of the plot-seasons in ``block``, whose water-limited canopy cover
    at crop.CANOPY_KNOTS is ``canopy``.

    A plot has one image series: scenes come no earlier than ``not_before`` (per row; the
    previous season's last scene plus a revisit), so adjacent seasons never share a date.
    """
    n = len(block.plot)
    maturity = block.maturity_days
    start = block.planting_day - rng.integers(5, 26, n)
    end = block.planting_day + maturity + rng.integers(5, 26, n)
    mean_gap = (end - start) / _SCENES_PER_SEASON
    jitter = rng.uniform(0.6, 1.4, (n, _MAX_SCENES))
    gaps = np.clip(np.rint(mean_gap[:, None] * jitter), *_REVISIT_DAYS).astype(np.int64)
    days = start[:, None] + np.cumsum(gaps, axis=1) - rng.integers(0, gaps[:, :1] + 1)
    taken = (
        (days <= end[:, None])
        & (days >= not_before[:, None])
        & (rng.random((n, _MAX_SCENES)) >= _MISSING_SCENE_SHARE)
    )
    row, slot = np.nonzero(taken)
    day = days[row, slot]

    management = plots.management[block.plot]
    vigour = np.clip(1.1 * np.sqrt(management) * rng.lognormal(0.0, 0.35, n), 0.1, 1.0)
    soil = rng.normal(0.19, 0.03, n)
    intercrop = np.where(rng.random(n) < 0.35, rng.uniform(0.03, 0.10, n), 0.0)
    position = (day - block.planting_day[row]) / maturity[row]
    truth = (
        soil[row]
        + _GREEN_RANGE * vigour[row] * canopy_at(canopy, row, position)
        + intercrop[row] * np.exp(-0.5 * ((position - 0.35) / 0.15) ** 2)
        + rng.normal(0.0, 0.025, len(row))
    )

    rainy = history.precip[day, plots.cell[block.plot[row]]] >= 1.0
    cloud = np.where(rainy, rng.beta(2.5, 2.0, len(row)), rng.beta(0.35, 2.8, len(row)))
    ndvi = (1.0 - cloud) * truth + cloud * rng.normal(0.03, 0.03, len(row))
    cloud[rng.random(len(row)) < _CLOUD_FRACTION_NULL_SHARE] = np.nan
    return Observations(
        plot=block.plot[row],
        day=day,
        ndvi=np.clip(ndvi, -1.0, 1.0),
        cloud_fraction=np.round(cloud, 3),
    )
