"""Sample data: the raw contract, realistic yields, weather and NDVI, labels, determinism, CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from nuru_yield import names
from nuru_yield.cli import main
from nuru_yield.contract import NDVI_PLOT_BUCKETS
from nuru_yield.grid import CELL_DEG
from nuru_yield.lake import Lake
from nuru_yield.sample_data.counties import COUNTIES, NATIONAL_EXPECTED_T_HA
from nuru_yield.sample_data.crop import (
    RAIN_LEVELS,
    SHARE_LEVELS,
    SOILS,
    TMEAN_LEVELS,
    load_response,
)
from nuru_yield.sample_data.generator import SampleDataSummary, generate_to_lake

START, END = 2020, 2023
BIMODAL = {c.name for c in COUNTIES if c.short_rains}


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Lake, SampleDataSummary]:
    lake = Lake(f"file://{tmp_path_factory.mktemp('sample') / 'lake'}")
    summary = generate_to_lake(lake, plots=4000, start_year=START, end_year=END, seed=11)
    return lake, summary


@pytest.fixture(scope="module")
def lake(generated: tuple[Lake, SampleDataSummary]) -> Lake:
    return generated[0]


@pytest.fixture(scope="module")
def plots(lake: Lake) -> pd.DataFrame:
    return lake.read_parquet(names.RAW_PLOTS).to_pandas()


@pytest.fixture(scope="module")
def ndvi(lake: Lake, plots: pd.DataFrame) -> pd.DataFrame:
    """Every NDVI scene joined to its plot-season (the season planted within 30 days after
    or 230 days before the scene)."""
    scenes = lake.read_parquet(names.RAW_NDVI).to_pandas()
    scenes["date"] = pd.to_datetime(scenes["date"]).astype("datetime64[us]")
    seasons = plots[["plot_id", "season", "season_year", "planting_date"]].assign(
        planting_date=lambda f: pd.to_datetime(f["planting_date"]).astype("datetime64[us]"),
        start=lambda f: f["planting_date"] - pd.Timedelta(days=30),
    )
    joined = pd.merge_asof(
        scenes.sort_values("date"),
        seasons.sort_values("start"),
        left_on="date",
        right_on="start",
        by="plot_id",
    )
    joined["days_after_planting"] = (joined["date"] - joined["planting_date"]).dt.days
    return joined


EXPECTED_SCHEMAS = {
    names.RAW_PLOTS: [
        ("plot_id", pa.int64()),
        ("latitude", pa.float64()),
        ("longitude", pa.float64()),
        ("altitude", pa.float64()),
        ("county", pa.string()),
        ("season", pa.string()),
        ("season_year", pa.int64()),
        ("planting_date", pa.date32()),
        ("area_ha", pa.float64()),  # optional in the contract; the sample world has it
    ],
    names.RAW_WEATHER_CELLS: [
        ("cell_id", pa.int64()),
        ("latitude", pa.float64()),
        ("longitude", pa.float64()),
    ],
    names.weather_year_path(START): [
        ("cell_id", pa.int64()),
        ("date", pa.date32()),
        ("precip_mm", pa.float64()),
        ("tmin_c", pa.float64()),
        ("tmax_c", pa.float64()),
        ("srad_mj_m2", pa.float64()),
    ],
    names.ndvi_bucket_path(END, 0): [
        ("plot_id", pa.int64()),
        ("date", pa.date32()),
        ("ndvi", pa.float64()),
        ("cloud_fraction", pa.float64()),
    ],
    names.RAW_YIELDS: [
        ("plot_id", pa.int64()),
        ("season", pa.string()),
        ("season_year", pa.int64()),
        ("yield_kg_per_ha", pa.float64()),
    ],
}


@pytest.mark.parametrize("path", list(EXPECTED_SCHEMAS))
def test_raw_contract_columns_and_types(lake: Lake, path: str) -> None:
    schema = lake.open_parquet(path).schema_arrow
    assert [(field.name, field.type) for field in schema] == EXPECTED_SCHEMAS[path]


def test_every_year_is_written_and_reported(generated: tuple[Lake, SampleDataSummary]) -> None:
    lake, summary = generated
    years = range(START, END + 1)
    expected = {
        names.RAW_PLOTS,
        names.RAW_WEATHER_CELLS,
        names.RAW_YIELDS,
        *(names.weather_year_path(y) for y in years),
    }
    ndvi_buckets = {names.ndvi_bucket_path(y, b) for y in years for b in range(NDVI_PLOT_BUCKETS)}
    assert set(lake.list("raw", ".parquet")) == expected | ndvi_buckets
    ndvi_years = {names.ndvi_year_dir(y) for y in years}
    assert {uri for uri, _ in summary.files} == {lake.uri(p) for p in expected | ndvi_years}
    rendered = summary.render()
    for uri, rows in summary.files:
        assert f"{uri}  {rows:,} rows" in rendered
    assert all(c.name in rendered for c in COUNTIES)


def test_plot_seasons_are_unique_and_plots_keep_their_place(plots: pd.DataFrame) -> None:
    assert not plots.duplicated(["plot_id", "season_year", "season"]).any()
    per_plot = plots.groupby("plot_id")[["latitude", "longitude", "altitude", "county"]].nunique()
    assert (per_plot == 1).all().all()
    long_rains = plots[plots["season"] == "Long Rains"]
    assert long_rains.groupby("season_year")["plot_id"].nunique().eq(4000).all()
    short_rains = plots[plots["season"] == "Short Rains"]
    assert set(short_rains["county"]) == BIMODAL
    assert plots["season_year"].between(START, END).all()
    months = pd.to_datetime(plots["planting_date"]).dt.month
    assert months[plots["season"] == "Long Rains"].between(3, 5).all()
    assert months[plots["season"] == "Short Rains"].between(10, 12).all()
    # Planting follows each year's rains: dates differ between years for the same plot.
    assert long_rains.groupby("plot_id")["planting_date"].nunique().mean() > 2


def test_every_plot_is_near_a_weather_cell_but_not_on_its_centre(
    lake: Lake, plots: pd.DataFrame
) -> None:
    cells = lake.read_parquet(names.RAW_WEATHER_CELLS).to_pandas()
    assert cells["cell_id"].is_unique
    assert 200 <= len(cells) <= 5000
    located = plots.drop_duplicates("plot_id")
    distance = np.hypot(
        located["latitude"].to_numpy()[:, None] - cells["latitude"].to_numpy()[None, :],
        located["longitude"].to_numpy()[:, None] - cells["longitude"].to_numpy()[None, :],
    ).min(axis=1)
    assert distance.max() <= CELL_DEG / np.sqrt(2) + 1e-9
    assert np.median(distance) > 0.005


def test_weather_is_daily_bimodal_in_the_east_and_cooler_up_high(
    lake: Lake, plots: pd.DataFrame
) -> None:
    cells = lake.read_parquet(names.RAW_WEATHER_CELLS).to_pandas()
    weather = lake.read_parquet(names.RAW_WEATHER).to_pandas()
    assert sorted(weather["year"].unique()) == list(range(START, END + 1))
    days = sum(366 if y % 4 == 0 else 365 for y in range(START, END + 1))
    assert len(weather) == days * len(cells)
    assert not weather.duplicated(["cell_id", "date"]).any()
    for column in ("precip_mm", "srad_mj_m2"):
        missing = weather[column].isna().mean()
        assert 0 < missing < 0.005, column
    assert (weather["tmax_c"] > weather["tmin_c"]).all()
    assert weather["precip_mm"].min() >= 0

    # Which county a cell serves, from the plots that sit in it.
    located = plots.drop_duplicates("plot_id")
    cell_of = np.abs(
        located["latitude"].to_numpy()[:, None] - cells["latitude"].to_numpy()[None, :]
    ) + np.abs(located["longitude"].to_numpy()[:, None] - cells["longitude"].to_numpy()[None, :])
    county = pd.Series(
        located["county"].to_numpy(), index=cells["cell_id"].to_numpy()[cell_of.argmin(1)]
    )
    county = county[~county.index.duplicated()]
    weather["county"] = weather["cell_id"].map(county)
    weather["month"] = pd.to_datetime(weather["date"]).dt.month
    monthly = weather.groupby(["county", "month"])["precip_mm"].mean()
    for name in ("Machakos", "Kitui", "Makueni"):
        m = monthly[name]
        assert m[[4, 11]].min() > 2 * m[[1, 2, 7, 8]].max(), name  # two rainy seasons
    mean_temp = weather.assign(t=(weather["tmin_c"] + weather["tmax_c"]) / 2).groupby("county")["t"]
    assert mean_temp.mean()["Uasin Gishu"] < mean_temp.mean()["Kitui"] - 4  # ~1200 m higher


def test_county_and_season_yields_land_in_published_ranges(
    generated: tuple[Lake, SampleDataSummary],
) -> None:
    summary = generated[1]
    assert len(summary.counties) == len(COUNTIES)
    for county in summary.counties:
        low, high = county.expected_t_ha
        assert low <= county.mean_t_ha <= high, (county.county, county.mean_t_ha)
    assert NATIONAL_EXPECTED_T_HA[0] <= summary.national_t_ha <= NATIONAL_EXPECTED_T_HA[1]
    assert summary.season_t_ha["Long Rains"] > summary.season_t_ha["Short Rains"]
    # Weather makes years differ: the semi-arid east swings from season to season.
    assert np.ptp(list(summary.year_season_t_ha.values())) > 0.2


def test_labels_cover_a_subset_of_finished_seasons(lake: Lake, plots: pd.DataFrame) -> None:
    labels = lake.read_parquet(names.RAW_YIELDS).to_pandas()
    assert labels["season_year"].max() == END - 1
    assert not labels.duplicated(["plot_id", "season_year", "season"]).any()
    finished = plots[plots["season_year"] < END]
    assert 0.6 < len(labels) / len(finished) < 0.8
    keyed = labels.merge(plots, on=["plot_id", "season_year", "season"], how="left")
    assert keyed["county"].notna().all()  # every label belongs to a plot-season
    assert (labels["yield_kg_per_ha"] >= 0).all()
    assert labels["yield_kg_per_ha"].skew() > 0  # right-skewed, as plot yields are


def test_ndvi_follows_the_crop_cycle_with_cloudy_gaps(ndvi: pd.DataFrame) -> None:
    assert ndvi["ndvi"].between(-1, 1).all()
    assert ndvi["cloud_fraction"].dropna().between(0, 1).all()
    assert 0 < ndvi["cloud_fraction"].isna().mean() < 0.05
    assert ndvi["season"].notna().all()  # every scene is near a plot-season
    per_season = ndvi.groupby(["plot_id", "season_year", "season"]).size()
    assert 11 <= per_season.mean() <= 19

    clear = ndvi[ndvi["cloud_fraction"] < 0.2]
    stage = pd.cut(clear["days_after_planting"], [-30, 0, 30, 60, 90, 120], labels=False)
    curve = clear.groupby(stage)["ndvi"].mean()
    assert curve.idxmax() in (2, 3)  # green peak mid-season
    assert curve.max() > curve[0] + 0.15 and curve.max() > curve[4] + 0.05

    cloudy = ndvi[ndvi["cloud_fraction"] > 0.5]
    assert len(cloudy) > 0.05 * len(ndvi)
    in_season = ndvi["days_after_planting"].between(45, 90)
    assert (
        ndvi.loc[in_season & (ndvi["cloud_fraction"] > 0.5), "ndvi"].mean()
        < ndvi.loc[in_season & (ndvi["cloud_fraction"] < 0.2), "ndvi"].mean() - 0.1
    )
    # One image series per plot: revisits 5-16 days apart, longer only where scenes are missing.
    ordered = ndvi.sort_values("date")
    assert ordered.groupby("plot_id")["date"].diff().dt.days.min() >= 5
    in_season = ordered.groupby(["plot_id", "season_year", "season"])["date"].diff().dt.days
    assert in_season.dropna().between(5, 64).all()
    assert in_season.median() < 16


def test_ndvi_tracks_the_crop_that_yields(lake: Lake, ndvi: pd.DataFrame) -> None:
    labels = lake.read_parquet(names.RAW_YIELDS).to_pandas()
    peak = (
        ndvi[(ndvi["cloud_fraction"] < 0.2) & ndvi["days_after_planting"].between(30, 110)]
        .groupby(["plot_id", "season_year", "season"])["ndvi"]
        .max()
        .rename("peak")
    )
    joined = labels.merge(peak.reset_index(), on=["plot_id", "season_year", "season"])
    correlation = joined["peak"].rank().corr(joined["yield_kg_per_ha"].rank())  # Spearman
    assert 0.3 < correlation < 0.9  # informative, not a copy of the label


def test_same_seed_gives_identical_files_and_another_seed_does_not(tmp_path: Path) -> None:
    def run(name: str, seed: int) -> Lake:
        lake = Lake(f"file://{tmp_path / name}")
        generate_to_lake(lake, plots=300, start_year=2024, end_year=2024, seed=seed)
        return lake

    first, second, other = run("a", 5), run("b", 5), run("c", 6)
    for path in first.list("raw", ".parquet"):
        assert first.read_parquet(path).equals(second.read_parquet(path)), path
    assert not first.read_parquet(names.RAW_PLOTS).equals(other.read_parquet(names.RAW_PLOTS))


def test_label_options(tmp_path: Path) -> None:
    lake = Lake(f"file://{tmp_path / 'lake'}")
    generate_to_lake(
        lake,
        plots=300,
        start_year=2024,
        end_year=2024,
        seed=1,
        label_share=1.0,
        label_last_year=True,
    )
    labels = lake.read_parquet(names.RAW_YIELDS)
    assert labels.num_rows == lake.read_parquet(names.RAW_PLOTS).num_rows


def test_response_table_matches_the_grid_and_responds_to_rain() -> None:
    response = load_response()
    shape = (len(SOILS), len(TMEAN_LEVELS), len(RAIN_LEVELS), len(SHARE_LEVELS))
    assert response.values.shape[:4] == shape
    n = len(RAIN_LEVELS)
    potential, canopy = response.interpolate(
        np.full(n, 0), np.full(n, 24.0), np.asarray(RAIN_LEVELS), np.full(n, 0.2)
    )
    assert potential[0] < 1000 < 8000 < potential[-1]  # a failed season vs a good one
    assert np.all(np.diff(potential[: n // 2]) >= 0)  # more rain helps a dry season
    assert potential[1] < potential[2] < potential[3]
    exact, _ = response.interpolate(
        np.array([2]), np.array([18.0]), np.array([520.0]), np.array([0.4])
    )
    assert exact[0] == response.values[2, 1, 4, 2, 0]  # grid points return the table
    assert canopy.shape == (n, 11)
    assert canopy[-1].max() > 0.8 and canopy[0].max() < 0.3
    # Between grid points the interpolation stays between its neighbours.
    mid, _ = response.interpolate(
        np.array([0]), np.array([24.0]), np.array([210.0]), np.array([0.2])
    )
    low, high = sorted(potential[1:3])
    assert low <= mid[0] <= high


def test_cli_writes_the_raw_contract_into_the_lake(
    nuru_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["sample-data", "--plots", "30", "--start-year", "2024", "--end-year", "2024"])
    lake = Lake.from_settings()
    for path in (names.RAW_PLOTS, names.RAW_WEATHER_CELLS, names.RAW_YIELDS):
        assert lake.exists(path), path
    plots = lake.read_parquet(names.RAW_PLOTS).to_pandas()
    assert plots["plot_id"].nunique() == 30 and set(plots["season_year"]) == {2024}
    assert lake.list(names.ndvi_year_dir(2024), ".parquet")
    assert capsys.readouterr().out.strip()  # the summary


def test_cli_never_replaces_the_plots_of_a_lake_with_published_nights(
    nuru_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Synthetic plots in a deployment's lake would be scored as real ones the next night:
    only a lake without published nights, or a scratch space's own (the demo's), takes
    them."""
    import datetime as dt

    from nuru_yield.dev.scratch import MARKER

    lake = Lake.from_settings()
    lake.write_parquet(names.features_path(dt.date(2025, 6, 15)), pa.table({"plot_id": [7]}))
    lake.write_parquet(names.RAW_PLOTS, pa.table({"plot_id": [7]}))  # the real plots
    with pytest.raises(SystemExit) as exited:
        main(["sample-data", "--plots", "10"])
    assert exited.value.code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: refusing to run nuru-yield sample-data on the lake {lake.url}")
    assert "it holds published nights (2025-06-15)" in line
    assert lake.read_parquet(names.RAW_PLOTS)["plot_id"].to_pylist() == [7]

    (nuru_home / MARKER).write_text("made by the demo\n")
    main(["sample-data", "--plots", "10", "--start-year", "2024", "--end-year", "2024"])
    assert lake.read_parquet(names.RAW_PLOTS).to_pandas()["plot_id"].nunique() == 10


@pytest.mark.parametrize(
    ("args", "fragment"),
    [(["--plots", "0"], "--plots"), (["--start-year", "2025", "--end-year", "2020"], "end-year")],
)
def test_cli_bad_argument_fails_with_one_line(
    args: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["sample-data", *args])
    assert exit_info.value.code != 0
    stderr = capsys.readouterr().err
    assert stderr.strip().count("\n") == 0, stderr
    assert fragment in stderr


def test_cli_unwritable_lake_fails_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("LAKE_URL", f"file://{blocker}/lake")
    result = subprocess.run(
        [sys.executable, "-m", "nuru_yield", "sample-data", "--plots", "10"],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "cannot write" in result.stderr and str(blocker) in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "nuru").exists() or not any((tmp_path / "nuru").rglob("*.parquet"))


@pytest.mark.s3
def test_generates_the_same_files_into_an_s3_lake(
    tmp_path: Path, s3_bucket: str, s3_endpoint: str
) -> None:
    remote = Lake(
        f"s3://{s3_bucket}/lake", endpoint_url=s3_endpoint, access_key="test", secret_key="test"
    )
    local = Lake(f"file://{tmp_path / 'lake'}")
    args = {"plots": 200, "start_year": 2024, "end_year": 2024, "seed": 3, "label_last_year": True}
    summary = generate_to_lake(remote, **args)
    generate_to_lake(local, **args)
    assert all(uri.startswith(f"s3://{s3_bucket}/lake/raw/") for uri, _ in summary.files)
    assert remote.list("raw", ".parquet") == local.list("raw", ".parquet")
    for path in (names.RAW_PLOTS, names.ndvi_year_dir(2024), names.RAW_YIELDS):
        assert remote.read_parquet(path).equals(local.read_parquet(path)), path
