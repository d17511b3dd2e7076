"""The strongest proof that the readers follow the products: one synthetic world written
both as the raw contract and as the real products (CHIRPS, AgERA5, GeoJSON plots with a
seasons CSV, crop-cut CSV), ingested, gives the same raw tables (plot areas included) and
the same features."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pandas as pd
import pytest

from nuru_yield.config import get_settings
from nuru_yield.features.materialize import materialize
from nuru_yield.lake import Lake
from nuru_yield.sample_data.generator import generate_to_lake
from nuru_yield.sources.ingest import ingest

KEY = ["plot_id", "season_year", "season"]


def _read(lake: Lake, path: str) -> pd.DataFrame:
    return lake.read_parquet(path).to_pandas().sort_values(KEY).reset_index(drop=True)


@pytest.mark.slow
def test_the_same_world_through_the_real_formats_gives_the_same_features(tmp_path: Path) -> None:
    contract, ingested = Lake(f"file://{tmp_path / 'a'}"), Lake(f"file://{tmp_path / 'b'}")
    real = tmp_path / "real"
    generate_to_lake(
        contract, plots=300, start_year=2024, end_year=2024, seed=3,
        real_formats=real, label_last_year=True,
    )  # fmt: skip
    settings = get_settings().model_copy(
        update={"plot_seasons_source": str(real / "plot_seasons.csv")}
    )
    for product, path in (
        ("plots", real / "plots.geojson"),
        ("chirps", real / "chirps"),
        ("agera5", real / "agera5"),
        ("yields", real / "crop_cuts.csv"),
    ):
        ingest(product, [str(path)], dt.date(2024, 12, 31), lake=ingested, settings=settings)
    shutil.copytree(tmp_path / "a" / "raw" / "ndvi", tmp_path / "b" / "raw" / "ndvi")

    plots, world = _read(ingested, "raw/plots.parquet"), _read(contract, "raw/plots.parquet")
    # Each plot's square is of its area: the polygon read back gives it (to 0.01 ha; the
    # world's areas have two decimals), over the full range of areas drawn.
    assert world["area_ha"].min() < 0.1 and world["area_ha"].max() > 2.0
    assert (plots["area_ha"] - world["area_ha"]).abs().max() < 0.005
    pd.testing.assert_frame_equal(
        plots.assign(area_ha=plots["area_ha"].round(2)), world, check_dtype=False
    )
    pd.testing.assert_frame_equal(
        _read(ingested, "raw/yields.parquet"), _read(contract, "raw/yields.parquet")
    )
    day = dt.date(2024, 6, 15)
    features = [
        _read(lake, f"features/{day}/plot_features.parquet")
        for lake in (contract, ingested)
        if materialize(day, lake=lake).rows
    ]
    assert len(features) == 2 and len(features[0]) > 100
    pd.testing.assert_frame_equal(features[1], features[0], check_exact=False, rtol=1e-12)
