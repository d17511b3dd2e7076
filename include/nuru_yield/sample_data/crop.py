"""Process-based maize response: AquaCrop runs over a scenario grid, interpolated per plot-season.

``scripts/build_crop_response.py`` runs AquaCrop-OSPy (water-limited maize) once for every
point of the grid below and writes ``crop_response.csv`` next to this module. The generator
then looks up each plot-season's water-limited yield and canopy curve from that plot-season's
own weather (season rain, the share of it falling around silking, mean temperature) with
vectorised multilinear interpolation — no crop model runs at generation time.

The grid axes live here so that the script and the generator cannot disagree about them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

import numpy as np

RESPONSE_FILE = "crop_response.csv"

# AquaCrop texture classes, from the sandy soils of the semi-arid east to the clay loams of
# the western highlands.
SOILS: tuple[str, ...] = ("SandyLoam", "Loam", "ClayLoam")
# Season-mean air temperature (°C); it also fixes the variety's duration (maturity_days).
TMEAN_LEVELS: tuple[float, ...] = (15.0, 18.0, 21.0, 24.0, 27.0)
# Rain from planting to maturity (mm).
RAIN_LEVELS: tuple[float, ...] = (80.0, 160.0, 260.0, 380.0, 520.0, 700.0, 950.0, 1250.0)
# Share of the season's rain that falls in the silking window (SILKING_WINDOW of the season).
SHARE_LEVELS: tuple[float, ...] = (0.05, 0.20, 0.40)
SILKING_WINDOW: tuple[float, float] = (0.45, 0.70)
# Canopy cover is tabulated at these fractions of the season (0 = planting, 1 = maturity).
CANOPY_KNOTS: tuple[float, ...] = tuple(k / 10 for k in range(11))
CANOPY_COLUMNS: tuple[str, ...] = tuple(f"cc_{k:02d}" for k in range(11))
# Yields are reported at 12.5% grain moisture (AquaCrop gives dry matter).
GRAIN_MOISTURE = 0.125

# Thermal time (°C·day above an 8 °C base) a typical local variety needs from sowing to
# maturity; farmers in cool highlands grow long-season hybrids, in the hot east short ones.
# The range keeps every season inside the features' 180-day window.
_MATURITY_GDD = 1500.0
_MATURITY_RANGE = (90, 170)


def maturity_days(tmean_c: np.ndarray | float) -> np.ndarray:
    """Days from sowing to maturity of the variety grown where the season averages ``tmean_c``."""
    warmth = np.maximum(np.asarray(tmean_c, dtype=float) - 8.0, 1.0)
    return np.clip(np.rint(_MATURITY_GDD / warmth), *_MATURITY_RANGE).astype(np.int64)


@dataclass(frozen=True)
class CropResponse:
    """The tabulated response: ``values[soil, tmean, rain, share, k]`` where ``k`` = 0 is the
    water-limited yield (kg/ha at 12.5% moisture) and ``k`` = 1… the canopy cover knots."""

    values: np.ndarray

    def interpolate(
        self, soil: np.ndarray, tmean_c: np.ndarray, rain_mm: np.ndarray, share: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Water-limited yield (kg/ha) and canopy knots (n × 11) for each plot-season.

        Inputs outside the grid are clamped to its edges (a season wetter than the wettest
        scenario is as good as it).
        """
        axes = (TMEAN_LEVELS, RAIN_LEVELS, SHARE_LEVELS)
        corners = []
        for axis, x in zip(axes, (tmean_c, rain_mm, share), strict=True):
            grid = np.asarray(axis)
            x = np.clip(np.asarray(x, dtype=float), grid[0], grid[-1])
            i = np.clip(np.searchsorted(grid, x, side="right") - 1, 0, len(grid) - 2)
            corners.append((i, (x - grid[i]) / (grid[i + 1] - grid[i])))
        out = np.zeros((len(soil), self.values.shape[-1]))
        for dt_ in (0, 1):
            for dr in (0, 1):
                for ds in (0, 1):
                    weight = np.ones(len(soil))
                    index = [soil]
                    for (i, frac), step in zip(corners, (dt_, dr, ds), strict=True):
                        weight = weight * (frac if step else 1.0 - frac)
                        index.append(i + step)
                    out += weight[:, None] * self.values[tuple(index)]
        return out[:, 0], out[:, 1:]


@functools.cache
def load_response() -> CropResponse:
    """The committed response table as a dense grid (fails loudly if it does not match)."""
    import pandas as pd

    with resources.files(__package__).joinpath(RESPONSE_FILE).open() as handle:
        table = pd.read_csv(handle)
    axes = {
        "soil": SOILS,
        "tmean_c": TMEAN_LEVELS,
        "season_rain_mm": RAIN_LEVELS,
        "silking_rain_share": SHARE_LEVELS,
    }
    shape = tuple(len(levels) for levels in axes.values())
    grid_matches = len(table) == int(np.prod(shape)) and all(
        sorted(table[column].unique()) == sorted(levels) for column, levels in axes.items()
    )
    if not grid_matches:
        raise ValueError(
            f"{RESPONSE_FILE} does not match the scenario grid in {__name__}: "
            "rebuild it with scripts/build_crop_response.py"
        )
    table = table.assign(
        soil=pd.Categorical(table["soil"], categories=SOILS, ordered=True)
    ).sort_values(list(axes))
    columns = ["yield_kg_per_ha", *CANOPY_COLUMNS]
    return CropResponse(table[columns].to_numpy(dtype=float).reshape(*shape, len(columns)))
