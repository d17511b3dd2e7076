"""NDVI rasters on S3 (moto's S3 server; with CI=true a missing server fails the test): a
static STAC catalog and its COGs read end to end, composites under an ``s3://`` prefix,
each read in place by GDAL with the project's S3 settings."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import boto3
import numpy as np
import pyarrow as pa
import pytest
import shapely
from pyproj import Transformer

from nuru_yield import names
from nuru_yield.config import get_settings
from nuru_yield.contract import PLOTS_SCHEMA
from nuru_yield.lake import Lake
from nuru_yield.sample_data.ndvi_rasters import (
    modis_name,
    s2_dn,
    write_modis_composite,
    write_s2_item,
    write_stac_catalog,
)
from nuru_yield.sources.inputs import s3_raster_env
from nuru_yield.sources.modis import PIXEL_METRES, SINUSOIDAL_PROJ4
from nuru_yield.sources.ndvi import ingest_ndvi

UTM = "EPSG:32737"
X0, Y0 = 199_980.0, 9_990_000.0
WHEN = dt.datetime(2025, 6, 14, 7, 55, tzinfo=dt.UTC)


def upload(folder: Path, bucket: str, prefix: str) -> None:
    settings = get_settings()
    client = boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        aws_access_key_id=settings.s3_access_key,
        aws_secret_access_key=settings.s3_secret_key.get_secret_value(),
        region_name=settings.s3_region,
    )
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            client.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(folder)}")


def lake_with_plots(root: Path, polygons: list[shapely.Polygon]) -> Lake:
    lake = Lake(f"file://{root}")
    n = len(polygons)
    centre = shapely.centroid(np.array(polygons))
    ids = np.arange(1, n + 1)
    lake.write_parquet(
        names.RAW_PLOTS,
        pa.table(
            {
                "plot_id": ids,
                "latitude": shapely.get_y(centre),
                "longitude": shapely.get_x(centre),
                "altitude": np.full(n, 1800.0),
                "county": ["Nyeri"] * n,
                "season": ["Long Rains"] * n,
                "season_year": np.full(n, 2025),
                "planting_date": [dt.date(2025, 3, 25)] * n,
            },
            schema=PLOTS_SCHEMA,
        ),
    )
    lake.write_parquet(
        names.RAW_PLOT_GEOMETRIES,
        pa.table({"plot_id": ids, "geometry": shapely.to_wkb(np.array(polygons))}),
    )
    return lake


def ndvi_rows(lake: Lake) -> list[dict]:
    tables = [lake.read_parquet(path) for path in lake.list(names.RAW_NDVI, ".parquet")]
    return pa.concat_tables(tables).to_pylist()


def wgs84_box(crs: str, xmin: float, ymin: float, xmax: float, ymax: float) -> shapely.Polygon:
    back = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    xs, ys = back.transform([xmin, xmax, xmax, xmin], [ymin, ymin, ymax, ymax])
    return shapely.Polygon(list(zip(xs, ys, strict=True)))


def test_gdal_reads_s3_with_the_project_settings(s3_bucket, s3_endpoint):
    from rasterio.env import getenv

    with s3_raster_env():
        options = getenv()
    assert options["AWS_S3_ENDPOINT"] == s3_endpoint.removeprefix("http://")
    assert options["AWS_HTTPS"] == "NO" and options["AWS_VIRTUAL_HOSTING"] is False
    assert options["AWS_ACCESS_KEY_ID"] == "test" == options["AWS_SECRET_ACCESS_KEY"]


def test_a_static_stac_catalog_on_s3_read_end_to_end(s3_bucket, tmp_path):
    red = s2_dn(np.full((8, 8), 0.05))
    nir = s2_dn(np.linspace(0.2, 0.5, 64).reshape(8, 8))
    scl = np.array([[4, 4, 4, 9]] * 4, np.uint8)  # the east column of 20 m pixels: cloud
    item = write_s2_item(
        tmp_path / "scenes", "S2A_T37MBU_20250614_0_L2A", red, nir, scl,
        crs=UTM, x0=X0, y0=Y0, when=WHEN,
    )  # fmt: skip
    write_stac_catalog(tmp_path / "scenes", [item], "one scene")
    upload(tmp_path / "scenes", s3_bucket, "stac")
    plot = wgs84_box(UTM, X0 + 20, Y0 - 60, X0 + 60, Y0 - 20)  # 10 m pixels 2..5, all clear
    lake = lake_with_plots(tmp_path / "lake", [plot])

    result = ingest_ndvi(
        stac=f"s3://{s3_bucket}/stac/catalog.json", collection="sentinel-2-l2a", lake=lake,
        run_date=dt.date(2025, 6, 20),
    )  # fmt: skip

    assert (result.scenes, result.quarantined, result.rows) == (1, 0, 1)
    [row] = ndvi_rows(lake)
    r = (red[2:6, 2:6] - 1000.0) / 10_000
    n = (nir[2:6, 2:6] - 1000.0) / 10_000
    assert row["ndvi"] == pytest.approx(float(((n - r) / (n + r)).mean()), abs=1e-6)
    assert row["cloud_fraction"] == 0.0 and row["date"] == dt.date(2025, 6, 14)


def test_composites_under_an_s3_prefix(s3_bucket, tmp_path):
    x0, y0 = 2_000 * PIXEL_METRES, 10 * PIXEL_METRES  # sinusoidal, near Kakamega
    from affine import Affine

    dn = (np.arange(36, dtype=np.int16).reshape(6, 6) * 100 + 2000).astype(np.int16)
    reliability = np.zeros((6, 6), np.int16)
    reliability[0, :] = 3  # cloudy row, outside the plot
    first_day = dt.date(2025, 6, 10)
    write_modis_composite(
        tmp_path / "modis" / modis_name(first_day, 21, 8), dn, reliability,
        Affine(PIXEL_METRES, 0, x0, 0, -PIXEL_METRES, y0),
    )  # fmt: skip
    upload(tmp_path / "modis", s3_bucket, "modis")
    plot = wgs84_box(
        SINUSOIDAL_PROJ4, x0 + 2 * PIXEL_METRES, y0 - 4 * PIXEL_METRES,
        x0 + 4 * PIXEL_METRES, y0 - 2 * PIXEL_METRES,
    )  # fmt: skip
    lake = lake_with_plots(tmp_path / "lake", [plot])

    result = ingest_ndvi([f"s3://{s3_bucket}/modis/"], lake=lake, run_date=dt.date(2025, 6, 30))

    assert (result.scenes, result.quarantined, result.rows) == (1, 0, 1)
    [row] = ndvi_rows(lake)
    assert row["ndvi"] == pytest.approx(dn[2:4, 2:4].mean() / 10_000, abs=1e-6)
    assert row["date"] == first_day + dt.timedelta(days=15)
