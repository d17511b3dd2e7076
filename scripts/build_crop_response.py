"""Rebuild ``include/nuru_yield/sample_data/crop_response.csv`` with AquaCrop-OSPy.

For every point of the scenario grid in :mod:`nuru_yield.sample_data.crop` (soil texture ×
season-mean temperature × season rain × share of it around silking) this runs water-limited
maize from sowing to maturity and records the dry yield (converted to 12.5% grain moisture)
and the canopy cover at eleven fractions of the season. Each scenario is the average of a few
rain patterns; the patterns are common to every grid point (common random numbers), so the
table is smooth along every axis.

    .venv/bin/python scripts/build_crop_response.py [--workers 2] [--replicates 2]

AquaCrop is fully offline; one season takes 0.3–2.5 s, so the default grid of 360 scenarios
× 2 patterns takes about 9 minutes on 2 (busy) cores.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import logging
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from nuru_yield.progress import track
from nuru_yield.sample_data import crop
from nuru_yield.sample_data.weather import extraterrestrial_radiation, hargreaves_et0

OUTPUT = Path(crop.__file__).with_name(crop.RESPONSE_FILE)
SOWING = dt.date(2001, 3, 20)
DIURNAL_RANGE_C = 11.0
# Soil water at sowing, % of total available water: sowing follows the onset rains.
INITIAL_TAW_PCT = 30
# Effective rooting depth (m): smallholder soils are shallower than AquaCrop's 2.3 m default
# (hardpans, stones), which would otherwise carry a crop through a failed season.
ROOTING_DEPTH_M = 1.3
# Stage durations (days) of AquaCrop's calendar maize, stretched to each variety's maturity.
_STAGES = {
    "EmergenceCD": 6,
    "FloweringCD": 13,
    "HIstartCD": 66,
    "MaxRootingCD": 108,
    "SenescenceCD": 107,
    "YldFormCD": 61,
}
_BASE_MATURITY = 132
_BASE_GROWTH = {"CGC_CD": 0.16312, "CDC_CD": 0.11691}


def rain_pattern(days: int, replicate: int) -> np.ndarray:
    """A Markov wet-day pattern over one season: wetter early, drying towards maturity."""
    rng = np.random.default_rng(1000 + replicate)
    position = np.arange(days) / days
    p_wet = np.where(position < 0.6, 0.5, 0.5 - 0.5 * (position - 0.6))
    wet = np.zeros(days, dtype=bool)
    for day in range(days):
        p = p_wet[day] + 0.3 * (1 - p_wet[day]) if day and wet[day - 1] else p_wet[day] * 0.7
        wet[day] = rng.random() < p
    silking = _silking_mask(days)
    wet[rng.choice(np.flatnonzero(silking), size=2, replace=False)] = True  # rescalable
    return np.where(wet, rng.gamma(0.7, 10.0, days), 0.0)


def _silking_mask(days: int) -> np.ndarray:
    position = np.arange(days) / days
    low, high = crop.SILKING_WINDOW
    return (position >= low) & (position < high)


def scale_pattern(pattern: np.ndarray, total_mm: float, share: float) -> np.ndarray:
    """Rescale a pattern to ``total_mm`` with ``share`` of it inside the silking window."""
    silking = _silking_mask(len(pattern))
    inside, outside = pattern[silking].sum(), pattern[~silking].sum()
    return np.where(
        silking, pattern * share * total_mm / inside, pattern * (1 - share) * total_mm / outside
    )


def run_scenario(soil: str, tmean: float, rain_mm: float, share: float, replicate: int) -> dict:
    """One AquaCrop season: dry yield (t/ha) and canopy cover at the tabulated knots."""
    from aquacrop import AquaCropModel, Crop, InitialWaterContent, Soil

    maturity = int(crop.maturity_days(tmean))
    days = maturity + 10
    dates = pd.date_range(SOWING, periods=days)
    tmax = np.full(days, tmean + DIURNAL_RANGE_C / 2)
    tmin = np.full(days, tmean - DIURNAL_RANGE_C / 2)
    ra = extraterrestrial_radiation(dates.day_of_year.to_numpy(), np.zeros(days))
    pattern = rain_pattern(maturity, replicate)
    rain = np.concatenate([scale_pattern(pattern, rain_mm, share), np.zeros(days - maturity)])
    weather = pd.DataFrame(
        {
            "MinTemp": tmin,
            "MaxTemp": tmax,
            "Precipitation": rain,
            "ReferenceET": hargreaves_et0(tmin, tmax, ra),
            "Date": dates,
        }
    )
    stretch = maturity / _BASE_MATURITY
    varieties = {name: round(value * stretch) for name, value in _STAGES.items()}
    varieties |= {name: value / stretch for name, value in _BASE_GROWTH.items()}
    model = AquaCropModel(
        SOWING.strftime("%Y/%m/%d"),
        dates[-1].strftime("%Y/%m/%d"),
        weather,
        Soil(soil),
        Crop(
            "Maize",
            planting_date=SOWING.strftime("%m/%d"),
            MaturityCD=maturity,
            Zmax=ROOTING_DEPTH_M,
            **varieties,
        ),
        InitialWaterContent(wc_type="Pct", value=[INITIAL_TAW_PCT]),
    )
    model.run_model(till_termination=True)
    dry_yield = float(model.get_simulation_results()["Dry yield (tonne/ha)"].iloc[0])
    growth = model.get_crop_growth()
    growth = growth[(growth["season_counter"] == 0) & (growth["dap"] > 0)]
    canopy = np.interp(
        np.asarray(crop.CANOPY_KNOTS) * maturity,
        np.concatenate([[0.0], growth["dap"].to_numpy()]),
        np.concatenate([[0.0], growth["canopy_cover"].to_numpy()]),
    )
    return {"dry_yield_t_ha": dry_yield, "canopy": canopy}


def _run(args: tuple[str, float, float, float, int]) -> dict:
    return run_scenario(*args)


def build(workers: int, replicates: int) -> pd.DataFrame:
    """Run the whole grid and average the replicates into the response table."""
    grid = list(
        itertools.product(crop.SOILS, crop.TMEAN_LEVELS, crop.RAIN_LEVELS, crop.SHARE_LEVELS)
    )
    jobs = [(*point, replicate) for point in grid for replicate in range(replicates)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        results = list(
            track(pool.map(_run, jobs, chunksize=4), "AquaCrop scenarios", total=len(jobs))
        )
    rows = []
    for index, (soil, tmean, rain_mm, share) in enumerate(grid):
        runs = results[index * replicates : (index + 1) * replicates]
        dry = np.mean([run["dry_yield_t_ha"] for run in runs])
        canopy = np.mean([run["canopy"] for run in runs], axis=0)
        rows.append(
            {
                "soil": soil,
                "tmean_c": tmean,
                "season_rain_mm": rain_mm,
                "silking_rain_share": share,
                "maturity_days": int(crop.maturity_days(tmean)),
                "yield_kg_per_ha": round(1000 * dry / (1 - crop.GRAIN_MOISTURE), 1),
                **dict(zip(crop.CANOPY_COLUMNS, np.round(canopy, 4), strict=True)),
            }
        )
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--replicates", type=int, default=2)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    started = time.monotonic()
    table = build(args.workers, args.replicates)
    table.to_csv(args.output, index=False)
    print(f"wrote {len(table)} scenarios to {args.output} in {time.monotonic() - started:.0f}s")


if __name__ == "__main__":
    main()
