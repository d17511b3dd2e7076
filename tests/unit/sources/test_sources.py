"""Real sources into the raw contract (nuru_yield.sources): bad input gets one clear line
naming the file, or the row is quarantined with a reason; reruns are byte-identical and
incremental; a failed ingest leaves the previous raw data in place."""

from __future__ import annotations

import datetime as dt
import json
import zipfile
from pathlib import Path

import netCDF4
import numpy as np
import pandas as pd
import pytest

from nuru_yield.cli import main
from nuru_yield.config import get_settings
from nuru_yield.errors import DataValidationError
from nuru_yield.grid import agera5_pixel
from nuru_yield.lake import Lake
from nuru_yield.sample_data import formats
from nuru_yield.sources import weather as weather_module
from nuru_yield.sources.ingest import ingest as ingest_product
from nuru_yield.sources.plots import read_file, read_plots
from nuru_yield.sources.tables import read_csv
from nuru_yield.sources.yields import read_yields

DAYS = [dt.date(2024, 3, 1) + dt.timedelta(days=d) for d in range(45)]  # March and April
NIGHT = dt.date(2024, 12, 31)


def ingest(product: str, paths: list[str], *, lake: Lake) -> object:
    """One product's files into ``lake`` for the night NIGHT (its two sharded steps)."""
    return ingest_product(product, paths, NIGHT, lake=lake)


def plots_of(path: Path, **options: object) -> object:
    """:func:`read_plots` of one file as read."""
    return read_plots([(read_file(path, path.name), path.name)], **options)


def labels_of(path: Path, **options: object) -> tuple:
    """:func:`read_yields` of one crop-cut CSV as read."""
    return read_yields([(read_csv(path, path.name), path.name)], **options)


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake(f"file://{tmp_path / 'lake'}")


@pytest.fixture
def world(tmp_path: Path, lake: Lake) -> dict:
    """Twelve plots near Machakos ingested from a CSV, their cells, and rain / temperature
    arrays (days × cells) to write as products."""
    rng = np.random.default_rng(1)
    plots = pd.DataFrame(
        {
            "PlotID": range(1, 13),
            "gps_lat": rng.uniform(-1.5, -1.1, 12),
            "gps_lon": rng.uniform(37.1, 37.5, 12),
            "elevation": 1500.0,
            "County": "Machakos",
            "season": "LR",
            "planting_date": "2024-03-20",
        }
    )
    plots.to_csv(tmp_path / "plots.csv", index=False)
    ingest("plots", [str(tmp_path / "plots.csv")], lake=lake)
    cells = weather_module.weather_cells(lake)  # the CHIRPS pixels holding plots
    n = len(cells)
    precip = np.round(rng.gamma(0.6, 8.0, (len(DAYS), n)), 1)
    precip[5, 0] = np.nan  # a missing value: written as the fill value
    folders = {name: tmp_path / name for name in ("chirps", "agera5")}
    for folder in folders.values():
        folder.mkdir()
    # Temperature comes from AgERA5's 0.1° pixels: cells sharing one share its value.
    pixel_lat, pixel_lon = agera5_pixel(cells["latitude"], cells["longitude"])
    _, pixel = np.unique(pixel_lat * 100_000 + pixel_lon, return_inverse=True)
    return {
        "ids": cells["cell_id"].to_numpy(),
        "precip": precip,
        "tmax": np.round(rng.uniform(24, 30, (len(DAYS), pixel.max() + 1)), 1)[:, pixel],
        **folders,
    }


def _raw_weather(lake: Lake) -> pd.DataFrame:
    frame = lake.read_parquet("raw/weather/year=2024/part-0.parquet").to_pandas()
    return frame.sort_values(["date", "cell_id"]).reset_index(drop=True)


def test_chirps_netcdf_rain_lands_at_the_cells_and_fill_values_never_become_rain(
    world: dict, lake: Lake
) -> None:
    formats.write_chirps_year(world["chirps"], 2024, DAYS, world["ids"], world["precip"])
    ingest("chirps", [str(world["chirps"])], lake=lake)
    rain = _raw_weather(lake).pivot(index="date", columns="cell_id", values="precip_mm")
    np.testing.assert_array_equal(rain.to_numpy(), world["precip"])  # NaN where missing
    assert rain.to_numpy()[5, 0] != rain.to_numpy()[5, 0]  # the fill value is a null


def test_chirps_geotiffs_gzipped_or_not_give_the_same_rain(world: dict, lake: Lake) -> None:
    for index, day in enumerate(DAYS):
        formats.write_chirps_day(
            world["chirps"], day, world["ids"], world["precip"][index], gz=index % 2 == 0
        )
    result = ingest("chirps", [str(world["chirps"] / "*.tif*")], lake=lake)
    assert result.days_read == {"chirps": len(DAYS)}
    rain = _raw_weather(lake).pivot(index="date", columns="cell_id", values="precip_mm")
    np.testing.assert_array_equal(rain.to_numpy(), world["precip"])


def test_agera5_kelvin_become_celsius_at_the_cells(world: dict, lake: Lake) -> None:
    for index, day in enumerate(DAYS[:3]):
        formats.write_agera5_day(world["agera5"], day, "tmax_c", world["ids"], world["tmax"][index])
    ingest("agera5", [str(world["agera5"])], lake=lake)
    tmax = _raw_weather(lake).pivot(index="date", columns="cell_id", values="tmax_c")
    np.testing.assert_allclose(tmax.to_numpy(), world["tmax"][:3])


def test_reingesting_is_byte_identical_and_reads_nothing_new(world: dict, lake: Lake) -> None:
    formats.write_chirps_year(world["chirps"], 2024, DAYS, world["ids"], world["precip"])
    ingest("chirps", [str(world["chirps"])], lake=lake)
    path = Path(lake.root) / "raw/weather/year=2024/part-0.parquet"
    first = path.read_bytes()
    path.unlink()  # publish rebuilds a missing year even when no day is new
    again = ingest("chirps", [str(world["chirps"])], lake=lake)
    assert again.days_read == {"chirps": 0}
    assert path.read_bytes() == first


def test_a_preliminary_day_is_replaced_by_final_data_and_the_version_recorded(
    world: dict, lake: Lake, tmp_path: Path
) -> None:
    prelim = tmp_path / "products" / "prelim"
    prelim.mkdir(parents=True)
    formats.write_chirps_day(prelim, DAYS[0], world["ids"], world["precip"][0])
    ingest("chirps", [str(prelim)], lake=lake)
    final = world["precip"][0] + 1.0
    formats.write_chirps_day(world["chirps"], DAYS[0], world["ids"], final)
    result = ingest("chirps", [str(prelim), str(world["chirps"])], lake=lake)
    assert result.days_read == {"chirps": 1}
    rain = _raw_weather(lake)
    np.testing.assert_allclose(rain["precip_mm"].to_numpy(), final, equal_nan=True)
    sources = lake.read_parquet("raw/weather_sources.parquet").to_pandas()
    assert sources["version"].tolist() == ["final"]


def test_a_failed_weather_ingest_leaves_the_previous_raw_weather(
    world: dict, lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    formats.write_chirps_year(world["chirps"], 2024, DAYS, world["ids"], world["precip"])
    ingest("chirps", [str(world["chirps"])], lake=lake)
    before = (Path(lake.root) / "raw/weather/year=2024/part-0.parquet").read_bytes()
    formats.write_chirps_year(world["chirps"], 2024, DAYS, world["ids"], world["precip"] + 2)
    calls = []

    def dies_on_the_second_month(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    original = weather_module._read_month
    monkeypatch.setattr(weather_module, "_read_month", dies_on_the_second_month)
    with pytest.raises(KeyboardInterrupt):
        ingest("chirps", [str(world["chirps"])], lake=lake)
    assert (Path(lake.root) / "raw/weather/year=2024/part-0.parquet").read_bytes() == before
    monkeypatch.setattr(weather_module, "_read_month", original)
    ingest("chirps", [str(world["chirps"])], lake=lake)  # the rerun finishes the job
    np.testing.assert_allclose(
        _raw_weather(lake)["precip_mm"].to_numpy(), (world["precip"] + 2).ravel(), equal_nan=True
    )


def test_a_day_no_file_gives_is_said_and_left_without_a_value(world: dict, lake: Lake) -> None:
    """A hole in a download (a daily GeoTIFF not fetched, a variable's file missing for a
    day) is named in the result, never filled in."""
    for index, day in enumerate(DAYS[:6]):
        if day != DAYS[3]:
            formats.write_chirps_day(world["chirps"], day, world["ids"], world["precip"][index])
    for index, day in enumerate(DAYS[:3]):
        formats.write_agera5_day(world["agera5"], day, "tmax_c", world["ids"], world["tmax"][index])
        if index != 1:
            formats.write_agera5_day(
                world["agera5"], day, "tmin_c", world["ids"], world["tmax"][index] - 10
            )
    rain = ingest("chirps", [str(world["chirps"])], lake=lake)
    temperature = ingest("agera5", [str(world["agera5"])], lake=lake)
    assert rain.lines()[1:] == [
        f"chirps precip_mm: missing on 1 day(s), {DAYS[3]} … {DAYS[3]} (no file gives them)"
    ]
    assert temperature.lines()[1:] == [
        f"agera5 tmin_c: missing on 1 day(s), {DAYS[1]} … {DAYS[1]} (no file gives them)"
    ]
    weather = _raw_weather(lake).set_index("date")
    assert (
        weather.loc[DAYS[1], "tmin_c"].isna().all() and weather.loc[DAYS[2], "tmin_c"].notna().all()
    )
    assert DAYS[3] not in set(weather.index[weather["precip_mm"].notna()])


def _set(path: Path, variable: str, **attributes: object) -> None:
    with netCDF4.Dataset(path, "a") as dataset:
        for name, value in attributes.items():
            dataset.variables[variable].setncattr(name, value)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: _set(p, "precip", units="m"), "is in 'm', not mm/day"),
        (lambda p: _set(p, "precip", units="mm/hr"), "not mm/day"),
        (lambda p: p.write_bytes(p.read_bytes()[:2000]), "not a readable NetCDF file"),
    ],
)
def test_a_chirps_file_off_the_product_is_one_line_naming_it(
    world: dict, lake: Lake, damage, message: str
) -> None:
    path = formats.write_chirps_year(world["chirps"], 2024, DAYS, world["ids"], world["precip"])
    damage(path)
    with pytest.raises(DataValidationError, match=message) as error:
        ingest("chirps", [str(path)], lake=lake)
    assert str(error.value).startswith("chirps-v2.0.2024.days_p05.nc") and "\n" not in str(
        error.value
    )


def test_a_chirps_grid_that_misses_the_plots_is_refused(world: dict, lake: Lake) -> None:
    far = world["ids"] + 400  # the same shape of grid 20° further east
    formats.write_chirps_year(world["chirps"], 2024, DAYS, far, world["precip"])
    with pytest.raises(DataValidationError, match="does not cover 12 weather cell"):
        ingest("chirps", [str(world["chirps"])], lake=lake)


def test_a_geotiff_in_another_crs_is_refused(world: dict, lake: Lake) -> None:
    import rasterio

    path = formats.write_chirps_day(world["chirps"], DAYS[0], world["ids"], world["precip"][0])
    with rasterio.open(path, "r+") as tif:
        tif.crs = "EPSG:32737"
    with pytest.raises(DataValidationError, match="CRS is EPSG:32737, not WGS 84"):
        ingest("chirps", [str(path)], lake=lake)


@pytest.mark.parametrize(
    ("units", "shift", "message"),
    [
        ("degC", 0.0, "is in 'degC', not K"),
        ("K", -273.15, r"not air temperatures in K .* already °C"),
    ],
)
def test_agera5_temperatures_already_in_celsius_are_refused(
    world: dict, lake: Lake, units: str, shift: float, message: str
) -> None:
    path = formats.write_agera5_day(
        world["agera5"], DAYS[0], "tmax_c", world["ids"], world["tmax"][0]
    )
    with netCDF4.Dataset(path, "a") as dataset:
        variable = dataset.variables["Temperature_Air_2m_Max_24h"]
        variable.set_auto_maskandscale(False)
        variable[:] = np.where(variable[:] == formats.FILL, formats.FILL, variable[:] + shift)
        variable.units = units
    with pytest.raises(DataValidationError, match=message):
        ingest("agera5", [str(path)], lake=lake)


def test_an_agera5_file_without_its_variable_is_refused(world: dict, lake: Lake) -> None:
    path = formats.write_agera5_day(
        world["agera5"], DAYS[0], "tmax_c", world["ids"], world["tmax"][0]
    )
    with netCDF4.Dataset(path, "a") as dataset:
        dataset.renameVariable("Temperature_Air_2m_Max_24h", "t2m")
    with pytest.raises(DataValidationError, match="no variable 'Temperature_Air_2m_Max_24h'"):
        ingest("agera5", [str(path)], lake=lake)


def _plots_geojson(tmp_path: Path, features: list[dict]) -> Path:
    path = tmp_path / "plots.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def _square(lon: float, lat: float, side: float = 0.0005) -> list[list[list[float]]]:
    return [
        [[lon, lat], [lon + side, lat], [lon + side, lat + side], [lon, lat + side], [lon, lat]]
    ]


def _feature(plot_id: int, rings: list, **properties: object) -> dict:
    return {
        "type": "Feature",
        "properties": {"plot_id": plot_id, "altitude_m": 1500, "county": "Machakos",
                       "season": "Long Rains", "planting_date": "2024-03-20", **properties},
        "geometry": {"type": "Polygon", "coordinates": rings},
    }  # fmt: skip


def test_plots_bad_rows_are_quarantined_with_their_reason(tmp_path: Path) -> None:
    bowtie = [[[37.1, -1.2], [37.2, -1.1], [37.2, -1.2], [37.1, -1.1], [37.1, -1.2]]]
    path = _plots_geojson(
        tmp_path,
        [
            _feature(1, _square(37.1, -1.2)),
            _feature(2, bowtie),
            _feature(3, _square(2.35, 48.85)),  # Paris
            _feature(4, _square(37.3, -1.3)),
            _feature(4, _square(37.31, -1.3)),
            _feature(5, _square(37.4, -1.4), season="Vuli"),
            _feature(6, _square(37.4, -1.4), season="Dry"),
        ],
    )
    read = plots_of(path)
    good = read.good.to_pandas()
    assert good["plot_id"].tolist() == [1, 5]
    assert good["season"].tolist() == ["Long Rains", "Short Rains"]
    assert good["area_ha"].iloc[0] == pytest.approx(0.31, rel=0.02)  # 0.0005° ≈ 55.6 m square
    reasons = dict(zip(read.rejected["plot_id"].astype(int), read.rejected["reason"], strict=True))
    assert reasons[2].startswith("invalid polygon: Self-intersection")
    assert reasons[3].startswith("outside Kenya")
    assert reasons[4].startswith("duplicate plot id 4")
    assert reasons[6] == "unknown season 'Dry'"


def test_plot_geometries_hold_each_plots_boundary_in_wgs84_once(
    tmp_path: Path, lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``raw/plot_geometries.parquet`` (what NDVI zonal means read): one row per plot, its
    polygon as the file gave it, in WGS 84 (GeoParquet: geopandas reads it as it is); a
    file of coordinates gives points; quarantined plots have none."""
    import geopandas as gpd
    import shapely

    path = _plots_geojson(
        tmp_path,
        [
            _feature(1, _square(37.1, -1.2)),
            _feature(1, _square(37.1, -1.2), season="Short Rains"),  # a second season
            _feature(2, _square(37.3, -1.3, side=0.001)),
            _feature(3, _square(2.35, 48.85)),  # Paris: quarantined
        ],
    )
    monkeypatch.setenv("VALIDATION_MAX_BAD_SHARE", "0.5")
    from nuru_yield.config import reset_settings

    reset_settings()
    ingest("plots", [str(path)], lake=lake)
    geometries = gpd.read_parquet(Path(lake.root) / "raw/plot_geometries.parquet")
    geometries = geometries.sort_values("plot_id", ignore_index=True)  # in shard order
    assert geometries.crs.equals("OGC:CRS84") and geometries["plot_id"].tolist() == [1, 2]
    expected = [
        shapely.Polygon(_square(37.1, -1.2)[0]),
        shapely.Polygon(_square(37.3, -1.3, 0.001)[0]),
    ]
    assert all(g.equals(e) for g, e in zip(geometries.geometry, expected, strict=True))
    points = tmp_path / "points.csv"
    pd.DataFrame({"plot_id": [7], "lat": [-1.25], "lon": [37.25], "altitude": [1500],
                  "county": ["Machakos"], "season": ["LR"], "planting_date": ["2024-03-20"]}
                 ).to_csv(points, index=False)  # fmt: skip
    ingest("plots", [str(points)], lake=lake)
    point = gpd.read_parquet(Path(lake.root) / "raw/plot_geometries.parquet").geometry[0]
    assert point.equals(shapely.Point(37.25, -1.25))


def test_the_shards_split_plots_and_labels_without_changing_a_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plots, their seasons (a separate CSV), labels and the quarantine come out the same
    whether one shard reads every plot or five shards a plot bucket each."""
    from nuru_yield.config import reset_settings

    rng = np.random.default_rng(5)
    ids = [*range(1, 41), 7, "x9", ""]  # a duplicate, an id that is no number, none
    pd.DataFrame({"PlotID": ids, "lat": rng.uniform(-1.5, -1.1, 43),
                  "lon": rng.uniform(37.1, 37.5, 43), "elevation": 1400,
                  "County": "Machakos"}).to_csv(tmp_path / "plots.csv", index=False)  # fmt: skip
    pd.DataFrame({"plot_id": [*range(1, 41), 99], "season": "SR", "year": 2024,
                  "planting_date": "2024-10-20"}).to_csv(tmp_path / "seasons.csv", index=False)  # fmt: skip
    pd.DataFrame({"Plot ID": range(1, 41), "Season": "SR", "Year": 2024, "fresh_weight_kg": 7.5,
                  "cut_area_m2": 25, "moisture_pct": np.where(np.arange(40) == 3, 0, 21)}
                 ).to_csv(tmp_path / "cuts.csv", index=False)  # fmt: skip
    monkeypatch.setenv("PLOT_SEASONS_SOURCE", str(tmp_path / "seasons.csv"))
    monkeypatch.setenv("VALIDATION_MAX_BAD_SHARE", "0.2")
    reset_settings()
    tables = {}
    for shards in (1, 5):
        lake = Lake(f"file://{tmp_path / f'lake{shards}'}")
        for product, path in (("plots", "plots.csv"), ("yields", "cuts.csv")):
            ingest_product(product, [str(tmp_path / path)], NIGHT, lake=lake, shards=shards)
        tables[shards] = {
            path: lake.read_parquet(path).to_pandas().sort_values(key).reset_index(drop=True)
            for path, key in (
                ("raw/plots.parquet", ["plot_id", "season_year", "season"]),
                ("raw/plot_geometries.parquet", ["plot_id"]),
                ("raw/yields.parquet", ["plot_id"]),
                ("raw/rejected/plots.parquet", ["plot_id", "reason"]),
                ("raw/rejected/yields.parquet", ["plot_id"]),
            )
        }
    for path, table in tables[1].items():
        pd.testing.assert_frame_equal(tables[5][path], table)
    rejected = tables[5]["raw/rejected/plots.parquet"]
    assert sorted(rejected["reason"].str.split(" ").str[:3].str.join(" ").unique()) == [
        "duplicate plot id", "no plot id", "plot id is", "plot id not",
    ]  # fmt: skip
    assert len(tables[5]["raw/plots.parquet"]) == 39 and len(tables[5]["raw/yields.parquet"]) == 39


def test_a_zipped_shapefile_in_utm_is_reprojected(tmp_path: Path) -> None:
    import geopandas as gpd
    from shapely import box

    frame = gpd.GeoDataFrame(
        {"PlotID": [7], "elev": [1600.0], "County": ["Embu"], "Season": ["LR"],
         "planting": ["2024-04-02"]},
        geometry=[box(300_000, 9_900_000, 300_050, 9_900_050)],
        crs="EPSG:32737",
    )  # fmt: skip
    frame.to_file(tmp_path / "plots.shp")
    with zipfile.ZipFile(tmp_path / "plots.zip", "w") as archive:
        for part in tmp_path.glob("plots.*"):
            if part.suffix != ".zip":
                archive.write(part, part.name)
    read = plots_of(tmp_path / "plots.zip")
    row = read.good.to_pylist()[0]
    assert row["area_ha"] == pytest.approx(0.25, rel=1e-3)
    assert row["latitude"] == pytest.approx(-0.9043, abs=1e-3)
    assert row["longitude"] == pytest.approx(37.2036, abs=1e-3)


def test_plots_without_altitude_and_no_dem_are_one_line(tmp_path: Path) -> None:
    pd.DataFrame({"plot_id": [1], "lat": [-1.2], "lon": [37.2], "county": ["Machakos"],
                  "season": ["LR"], "planting_date": ["2024-03-20"]}).to_csv(
        tmp_path / "plots.csv", index=False
    )  # fmt: skip
    with pytest.raises(DataValidationError, match=r"no altitude column .* no DEM_SOURCE"):
        plots_of(tmp_path / "plots.csv")


def test_altitude_from_a_dem_and_county_from_boundaries(tmp_path: Path) -> None:
    import geopandas as gpd
    import rasterio
    from affine import Affine
    from shapely import box

    with rasterio.open(
        tmp_path / "dem.tif", "w", driver="GTiff", width=10, height=10, count=1,
        dtype="float32", crs="EPSG:4326", transform=Affine(0.1, 0.0, 37.0, 0.0, -0.1, -1.0),
    ) as dem:  # fmt: skip
        dem.write(np.arange(100, dtype="float32").reshape(10, 10) + 1000, 1)
    gpd.GeoDataFrame(
        {"COUNTY": ["Machakos", "Makueni"]},
        geometry=[box(37.0, -1.5, 37.5, -1.0), box(37.0, -2.0, 37.5, -1.5)],
        crs="EPSG:4326",
    ).to_file(tmp_path / "counties.geojson")
    pd.DataFrame({"plot_id": [1, 2], "lat": [-1.25, -1.75], "lon": [37.25, 37.05],
                  "season": ["LR", "LR"], "planting_date": ["20/03/2024", "2024-03-21"]}).to_csv(
        tmp_path / "plots.csv", index=False
    )  # fmt: skip
    read = plots_of(
        tmp_path / "plots.csv",
        dem=(tmp_path / "dem.tif", "dem.tif"),
        counties=(tmp_path / "counties.geojson", "counties.geojson"),
    )
    good = read.good.to_pandas()
    assert good["altitude"].tolist() == [1022.0, 1070.0]  # rows 2 and 7, columns 2 and 0
    assert good["county"].tolist() == ["Machakos", "Makueni"]
    assert good["planting_date"].tolist() == [dt.date(2024, 3, 20), dt.date(2024, 3, 21)]


def test_crop_cuts_become_kg_per_ha_at_the_standard_moisture(tmp_path: Path) -> None:
    pd.DataFrame(
        {
            "Plot ID": [1, 2, 3, 4, 5],
            "Season": ["LR", "LR", "SR", "LR", "LR"],
            "Year": [2024] * 5,
            "fresh_weight_kg": [10.0, 10.0, 10.0, 5.0, 5.0],
            "cut_area_m2": [25.0] * 5,
            "moisture_pct": [12.5, 30.0, 0.0, 100.0, 20.0],
        }
    ).to_csv(tmp_path / "cuts.csv", index=False)
    table, rejected, total = labels_of(tmp_path / "cuts.csv", standard_moisture_pct=12.5)
    assert total == 5
    assert table.column("yield_kg_per_ha").to_pylist() == [4000.0, 3200.0, 1828.6]
    assert sorted(rejected["reason"]) == [
        "grain moisture 0.0% outside 5–50%",
        "grain moisture 100.0% outside 5–50%",
    ]


def test_stated_yields_in_tonnes_and_a_unit_setting(tmp_path: Path) -> None:
    pd.DataFrame({"plot_id": [1], "season": ["LR"], "year": [2024], "yield_t_ha": [2.5]}).to_csv(
        tmp_path / "a.csv", index=False
    )
    pd.DataFrame({"plot_id": [2], "season": ["SR"], "year": [2024], "yield": [1.5]}).to_csv(
        tmp_path / "b.csv", index=False
    )
    table, _, _ = labels_of(tmp_path / "a.csv", standard_moisture_pct=12.5)
    assert table.column("yield_kg_per_ha").to_pylist() == [2500.0]
    with pytest.raises(DataValidationError, match="states no unit"):
        labels_of(tmp_path / "b.csv", standard_moisture_pct=12.5)
    table, _, _ = labels_of(tmp_path / "b.csv", standard_moisture_pct=12.5, unit="t/ha")
    assert table.column("yield_kg_per_ha").to_pylist() == [1500.0]


def test_too_many_bad_rows_ingest_nothing_and_keep_the_previous_table(
    tmp_path: Path, lake: Lake
) -> None:
    good = pd.DataFrame({"plot_id": [1, 2], "season": ["LR", "LR"], "year": [2024, 2024],
                         "yield_kg_per_ha": [1800, 2100]})  # fmt: skip
    good.to_csv(tmp_path / "labels.csv", index=False)
    ingest("yields", [str(tmp_path / "labels.csv")], lake=lake)
    before = (Path(lake.root) / "raw/yields.parquet").read_bytes()
    good.assign(season=["LR", "Spring"]).to_csv(tmp_path / "labels.csv", index=False)
    with pytest.raises(DataValidationError, match=r"1 of 2 yields rows bad \(50.0% > "):
        ingest("yields", [str(tmp_path / "labels.csv")], lake=lake)
    assert (Path(lake.root) / "raw/yields.parquet").read_bytes() == before
    rejected = lake.read_parquet("raw/rejected/yields.parquet").to_pandas()
    assert rejected["reason"].tolist() == ["unknown season 'Spring'"]


def test_the_cli_ingests_and_fails_in_one_line(
    world: dict, lake: Lake, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LAKE_URL", lake.url)
    from nuru_yield.config import reset_settings

    reset_settings()
    assert get_settings().lake_url == lake.url
    formats.write_chirps_year(world["chirps"], 2024, DAYS, world["ids"], world["precip"])
    main(["ingest", "chirps", str(world["chirps"])])
    assert (
        "chirps: 1 file(s), 45 day(s) read; raw weather rebuilt for 2024" in capsys.readouterr().out
    )
    bad = world["chirps"] / "chirps-v2.0.2023.days_p05.nc"
    bad.write_bytes(b"not netcdf")
    with pytest.raises(SystemExit) as exit_code:
        main(["ingest", "chirps", str(bad)])
    assert exit_code.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: chirps-v2.0.2023.days_p05.nc: not a readable NetCDF file")
    assert "\n" not in err


def test_ingest_all_runs_every_configured_product_and_leaves_the_others(
    world: dict, lake: Lake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """``nuru-yield ingest all`` (the raw_ingestion DAG's steps in one process): plots and
    labels, then weather; a product without a source is left as it is."""
    from nuru_yield.config import reset_settings

    formats.write_chirps_year(world["chirps"], 2024, DAYS, world["ids"], world["precip"])
    pd.DataFrame({"plot_id": [1], "season": ["LR"], "year": [2024], "yield_t_ha": [2.0]}).to_csv(
        tmp_path / "cuts.csv", index=False
    )
    monkeypatch.setenv("LAKE_URL", lake.url)
    for name, path in (("PLOTS", "plots.csv"), ("CHIRPS", "chirps"), ("YIELDS", "cuts.csv")):
        monkeypatch.setenv(f"{name}_SOURCE", str(tmp_path / path))
    reset_settings()
    main(["ingest", "all", "--date", "2024-03-31"])
    assert capsys.readouterr().out.splitlines() == [
        "plots: 1 file(s) unchanged since the last ingest",  # the fixture ingested them
        "yields: 1 file(s), 1 rows, 0 quarantined",
        "chirps: 1 file(s), 31 day(s) read; raw weather rebuilt for 2024",  # to the night
    ]
    assert not lake.exists("sources/agera5")  # no AGERA5_SOURCE: nothing of it
    for name in ("PLOTS", "CHIRPS", "YIELDS"):
        monkeypatch.delenv(f"{name}_SOURCE")
    reset_settings()
    main(["ingest", "all", "--date", "2024-03-31"])
    assert "no source configured" in capsys.readouterr().out
