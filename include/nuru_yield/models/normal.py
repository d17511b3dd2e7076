"""The county normal, and the blend that keeps a forecast from being worse than it.

"A normal season" — the mean yield of the plot's county in that season kind (Long or Short
Rains) over the labelled seasons — is the forecast every model must beat, and the one a
support team falls back on when nothing is known yet. A plot nine days in the ground has
told the model little: its forecast is then no better than the normal, sometimes worse.
So the forecast a plot gets is ``w × model + (1 − w) × normal``, with ``w`` learned per
lead-time band (:mod:`.leads`) on the calibration seasons — seasons the model was not
fitted on — as the share of the model (on a grid of 0.05) that minimises their squared
error. It shrinks only where that pays beyond doubt: the gain in squared error over the
model alone must exceed :data:`SHRINK_EVIDENCE` standard errors, counted over county-seasons
(a season's weather moves every plot of a county together, so plots are not independent
evidence); elsewhere ``w = 1``. Each forecast says what it rests on: ``basis`` is ``model``
(``w = 1``), ``normal`` (``w = 0``) or ``blended``.

The blend keeps the drivers exact: with ``m = b + Σ c`` (model forecast, its baseline and
kg/ha drivers), ``f − (w·b + (1 − w)·n) = w · Σ c``; the blended forecast's drivers are the
model's scaled by ``w`` around the blended baseline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from nuru_yield.contract import YIELD_LABEL as TARGET
from nuru_yield.models.leads import LEAD_BANDS, band_index

MODEL, BLENDED, NORMAL = "model", "blended", "normal"
BASES = (MODEL, BLENDED, NORMAL)
WEIGHT_STEP = 0.05
# Shrinking toward the normal must lower the calibration seasons' squared error by more than
# this many (county-season clustered) standard errors of the gain.
SHRINK_EVIDENCE = 2.0


@dataclass(frozen=True)
class CountyNormal:
    """Mean yield per county × season kind of the rows it was fitted on; the season kind's
    mean, then the overall mean, for a county × season it has not seen."""

    by_county_season: dict[tuple[str, str], float]
    by_season: dict[str, float]
    overall: float

    @classmethod
    def fit(cls, frame: pd.DataFrame) -> CountyNormal:
        """From labelled rows (``county``, ``season`` and the ``yield_kg_per_ha`` label). Every
        plot-season has as many rows as every other (one per lead-time band), so the row mean
        is the plot-season mean."""
        county_season = frame.groupby(["county", "season"], observed=True)[TARGET].mean()
        season = frame.groupby("season", observed=True)[TARGET].mean()
        return cls(
            by_county_season={(str(c), str(s)): float(v) for (c, s), v in county_season.items()},
            by_season={str(s): float(v) for s, v in season.items()},
            overall=float(frame[TARGET].mean()),
        )

    def values(self, county: Sequence[Any], season: Sequence[Any]) -> np.ndarray:
        """The normal of each (county, season) pair, kg/ha (looked up once per distinct
        pair: a night has a few dozen of them among a million rows)."""
        county_code, counties = pd.factorize(np.asarray(county, dtype=object))
        season_code, seasons = pd.factorize(np.asarray(season, dtype=object))
        table = np.array(
            [[self._normal(str(c), str(s)) for s in (*seasons, None)] for c in (*counties, None)],
            dtype=np.float64,
        )
        # factorize codes a missing value -1: the extra last row and column.
        return table[county_code, season_code]

    def _normal(self, county: str, season: str) -> float:
        value = self.by_county_season.get((county, season))
        if value is None:
            value = self.by_season.get(season, self.overall)
        return value

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """The normal of each row of a frame with ``county`` and ``season`` columns."""
        return self.values(frame["county"].to_numpy(), frame["season"].to_numpy())

    def to_dict(self) -> dict[str, Any]:
        return {
            "county_season_means": [
                {"county": c, "season": s, "mean_yield_kg_per_ha": v}
                for (c, s), v in sorted(self.by_county_season.items())
            ],
            "season_means": self.by_season,
            "overall_mean": self.overall,
        }

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> CountyNormal:
        return cls(
            by_county_season={
                (str(row["county"]), str(row["season"])): float(row["mean_yield_kg_per_ha"])
                for row in payload["county_season_means"]
            },
            by_season={str(s): float(v) for s, v in payload["season_means"].items()},
            overall=float(payload["overall_mean"]),
        )


@dataclass(frozen=True)
class Blended:
    """Forecasts after the blend, with what each rests on."""

    forecast: np.ndarray
    normal: np.ndarray
    weight: np.ndarray  # the model's share, per row
    basis: np.ndarray  # MODEL, BLENDED or NORMAL, per row


def basis_of(weight: np.ndarray) -> np.ndarray:
    """``model`` where the model's share is 1, ``normal`` where it is 0, else ``blended``."""
    weight = np.asarray(weight, dtype=np.float64)
    return np.where(weight >= 1.0, MODEL, np.where(weight <= 0.0, NORMAL, BLENDED)).astype(object)


def _clearly_positive(gain: np.ndarray, clusters: np.ndarray) -> bool:
    """Whether the mean of ``gain`` exceeds :data:`SHRINK_EVIDENCE` standard errors, the
    rows grouped by cluster (the standard error of a mean of cluster totals)."""
    frame = pd.DataFrame({"gain": gain, "cluster": clusters})
    totals = frame.groupby("cluster", observed=True)["gain"].agg(["sum", "size"])
    if len(totals) < 2:
        return False
    mean = totals["sum"].sum() / totals["size"].sum()
    # Cluster-robust: each cluster's residual total, scaled to a per-row mean.
    residual = totals["sum"] - mean * totals["size"]
    k = len(totals)
    se = np.sqrt(k / (k - 1) * float((residual**2).sum())) / totals["size"].sum()
    return bool(mean > SHRINK_EVIDENCE * se)


@dataclass(frozen=True)
class Blend:
    """The model's share per lead-time band and the normal it is blended with."""

    bands: tuple[int, ...]
    weights: tuple[float, ...]
    normal: CountyNormal

    def __post_init__(self) -> None:
        if len(self.bands) != len(self.weights):
            raise ValueError("a blend needs one weight per lead-time band")
        if not all(0.0 <= weight <= 1.0 for weight in self.weights):
            raise ValueError(f"blend weights must lie in [0, 1]: {self.weights}")

    def apply(
        self,
        model_forecast: np.ndarray,
        county: Sequence[Any],
        season: Sequence[Any],
        days_after_planting: np.ndarray,
    ) -> Blended:
        """Blend model forecasts made at the given days after planting with their normal."""
        model_forecast = np.asarray(model_forecast, dtype=np.float64)
        normal = self.normal.values(county, season)
        weight = np.asarray(self.weights)[band_index(days_after_planting, self.bands)]
        forecast = weight * model_forecast + (1.0 - weight) * normal
        return Blended(forecast, normal, weight, basis_of(weight))

    def with_normal(self, normal: CountyNormal) -> Blend:
        """The same shares around another normal (the refit's, from every labelled season)."""
        return Blend(self.bands, self.weights, normal)

    @classmethod
    def fit(
        cls,
        actual: np.ndarray,
        model_forecast: np.ndarray,
        days_after_planting: np.ndarray,
        normal: CountyNormal,
        normal_forecast: np.ndarray,
        clusters: np.ndarray,
        bands: Sequence[int] = LEAD_BANDS,
    ) -> Blend:
        """Per band, the model share (a multiple of :data:`WEIGHT_STEP`) that minimises the
        squared error on held-out rows, kept only when its gain over the model alone is
        beyond :data:`SHRINK_EVIDENCE` standard errors over ``clusters`` (one label per row:
        its county-season); otherwise, and in a band without rows, ``w = 1``."""
        actual = np.asarray(actual, dtype=np.float64)
        model_forecast = np.asarray(model_forecast, dtype=np.float64)
        normal_forecast = np.asarray(normal_forecast, dtype=np.float64)
        band = band_index(days_after_planting, bands)
        grid = np.round(np.arange(0.0, 1.0 + WEIGHT_STEP / 2, WEIGHT_STEP), 4)
        weights = []
        for index in range(len(bands)):
            rows = band == index
            m, n, y = model_forecast[rows], normal_forecast[rows], actual[rows]
            errors = [np.mean((w * m + (1 - w) * n - y) ** 2) for w in grid] if rows.any() else []
            best = float(grid[int(np.argmin(errors))]) if rows.any() else 1.0
            if best < 1.0:
                gain = (m - y) ** 2 - (best * m + (1 - best) * n - y) ** 2
                if not _clearly_positive(gain, np.asarray(clusters)[rows]):
                    best = 1.0
            weights.append(best)
        return cls(tuple(int(b) for b in bands), tuple(weights), normal)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": "share_per_lead_band",
            "bands": list(self.bands),
            "weights": list(self.weights),
            "normal": self.normal.to_dict(),
        }

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> Blend:
        return cls(
            bands=tuple(int(b) for b in payload["bands"]),
            weights=tuple(float(w) for w in payload["weights"]),
            normal=CountyNormal.from_dict(payload["normal"]),
        )
