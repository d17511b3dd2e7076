"""The sample world's NDVI as rasters (``sample-data --formats real|both``), ingested back:
each plot's composite row is its clearest look of the 16-day period in the raw-contract
world, and the Sentinel-2-like scenes give rows on their days."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nuru_yield.config import get_settings
from nuru_yield.lake import Lake
from nuru_yield.sample_data.generator import generate_to_lake
from nuru_yield.sample_data.ndvi_rasters import S2_SCENE_DAYS
from nuru_yield.sources.ingest import ingest
from nuru_yield.sources.ndvi import ingest_ndvi

NIGHT = dt.date(2024, 12, 31)


def _expected(contract: pd.DataFrame) -> pd.DataFrame:
    """Per plot and MOD13Q1 period: the least cloudy observation (an unknown mask counts as
    half cloudy), dated by the period's last day."""
    frame = contract.copy()
    day = pd.to_datetime(frame["date"])
    period = (day.dt.dayofyear - 1) // 16
    frame["last_day"] = [
        dt.date(d.year, 1, 1) + dt.timedelta(days=int(p) * 16 + 15)
        for d, p in zip(day, period, strict=True)
    ]
    frame["rank"] = frame["cloud_fraction"].fillna(0.5)
    frame = frame.sort_values(["plot_id", "last_day", "rank", "ndvi"], ascending=[1, 1, 1, 0])
    best = frame.groupby(["plot_id", "last_day"], as_index=False).first()
    cloudy = best["cloud_fraction"] > 0.5
    return pd.DataFrame(
        {
            "plot_id": best["plot_id"],
            "date": best["last_day"],
            "ndvi": np.where(cloudy, np.nan, np.round(best["ndvi"], 4)),
            "cloud_fraction": np.where(cloudy, 1.0, 0.0),
        }
    )


@pytest.mark.slow
def test_the_composites_hold_each_plots_clearest_look_and_the_scenes_their_days(
    tmp_path: Path,
) -> None:
    contract, ingested = Lake(f"file://{tmp_path / 'a'}"), Lake(f"file://{tmp_path / 'b'}")
    real = tmp_path / "real"
    generate_to_lake(contract, plots=150, start_year=2024, end_year=2024, seed=5, real_formats=real)
    settings = get_settings().model_copy(
        update={"plot_seasons_source": str(real / "plot_seasons.csv")}
    )
    ingest("plots", [str(real / "plots.geojson")], NIGHT, lake=ingested, settings=settings)
    result = ingest_ndvi(
        [str(real / "ndvi")], stac=str(real / "stac" / "catalog.json"), run_date=NIGHT,
        days=366, lake=ingested,
    )  # fmt: skip
    assert result.quarantined == 0 and result.acquisitions > 20

    rows = ingested.read_parquet("raw/ndvi/year=2024").to_pandas()
    world = contract.read_parquet("raw/ndvi/year=2024").to_pandas()
    expected = _expected(world)
    expected = expected[expected["date"] <= NIGHT]  # the year's last period ends in January
    scene_days = {dt.date(2024, m, d) for m, d in S2_SCENE_DAYS}
    composites = rows[~rows["date"].isin(scene_days)].merge(
        expected, on=["plot_id", "date"], suffixes=("", "_world"), how="outer", indicator=True
    )
    # Every look of the world is in a composite, and nothing else is.
    assert (composites["_merge"] == "both").all(), composites["_merge"].value_counts()
    # A plot's pixels hold its own look, but for the few sharing a 250 m pixel with another
    # (the larger id's look is there).
    same = np.isclose(composites["ndvi"], composites["ndvi_world"], atol=1e-6) | (
        composites["ndvi"].isna() & composites["ndvi_world"].isna()
    )
    assert same.mean() > 0.97
    agree = composites["cloud_fraction"] == composites["cloud_fraction_world"]
    assert agree[same].all()
    scenes = rows[rows["date"].isin(scene_days)]
    assert set(scenes["date"]) == scene_days and len(scenes) >= 3
