"""MOD13Q1-style composites as GeoTIFF/COG files the tests write themselves: scale, fill,
valid range, pixel reliability, dates from the file name or tags, sinusoidal or
reprojected, and the bad-input table (one reason per file)."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from nuru_yield.sources.modis import composite_period, composite_scenes, read_composite
from nuru_yield.sources.ndvi_rasters import (
    CLEAR,
    MASKED,
    NO_DATA,
    BadScene,
    Plots,
    acquisition_rows,
)

SINUSOIDAL = CRS.from_proj4("+proj=sinu +R=6371007.181 +nadgrids=@null +wktext +units=m")
RADIUS = 6_371_007.181
PIXEL = 231.656358263889
LON, LAT = 34.75, 0.52  # Kakamega


def sinusoidal_origin(lon=LON, lat=LAT, margin=4):
    """A grid corner `margin` pixels up-left of the pixel holding (lon, lat), by hand."""
    x = RADIUS * math.radians(lon) * math.cos(math.radians(lat))
    y = RADIUS * math.radians(lat)
    col, row = math.floor(x / PIXEL) - margin, math.floor(-y / PIXEL) - margin
    return col * PIXEL, -row * PIXEL


def write(path: Path, data, crs=SINUSOIDAL, transform=None, nodata=-3000, driver="GTiff", **extra):
    data = np.asarray(data)
    bands = data if data.ndim == 3 else data[None]
    if transform is None:
        x0, y0 = sinusoidal_origin()
        transform = Affine(PIXEL, 0, x0, 0, -PIXEL, y0)
    with rasterio.open(
        path,
        "w",
        driver=driver,
        width=bands.shape[2],
        height=bands.shape[1],
        count=bands.shape[0],
        dtype=bands.dtype,
        crs=crs,
        transform=transform,
        nodata=nodata,
        **extra,
    ) as out:
        out.write(bands)
        return out


DN = (np.arange(81, dtype=np.int16).reshape(9, 9) * 100 + 500).astype(np.int16)
APPEEARS = "MOD13Q1.061__250m_16_days_{layer}_doy2025161_aid0001.tif"


def point_rows(paths, lon=LON, lat=LAT):
    scenes, bad = composite_scenes([str(p) for p in paths])
    table, _, quarantined = acquisition_rows(scenes, Plots.from_points([1], [lon], [lat]))
    return table.to_pylist(), scenes, bad + quarantined


def test_sinusoidal_composite_with_its_reliability_file(tmp_path):
    ndvi = tmp_path / APPEEARS.format(layer="NDVI")
    write(ndvi, DN, driver="COG")
    reliability = np.zeros((9, 9), np.int16)
    reliability[4, 4] = 3  # the plot's pixel is cloudy
    write(tmp_path / APPEEARS.format(layer="pixel_reliability"), reliability, nodata=-1)
    rows, scenes, bad = point_rows([ndvi])  # the sibling is found beside it
    assert bad == []
    [scene] = scenes
    assert scene.product == "mod13q1"
    assert scene.date == dt.date(2025, 6, 25)  # doy 161 = 10 June, + 15 days
    assert rows == [
        {"plot_id": 1, "date": dt.date(2025, 6, 25), "ndvi": None, "cloud_fraction": 1.0}
    ]


def test_scale_and_the_pixel_under_the_plot(tmp_path):
    ndvi = tmp_path / "MOD13Q1.A2025161.h21v08.061.2025178000000.tif"
    write(ndvi, DN)
    rows, scenes, bad = point_rows([ndvi])
    assert bad == [] and scenes[0].scene_id == "MOD13Q1.A2025161.h21v08.061.2025178000000"
    assert rows[0]["ndvi"] == pytest.approx(DN[4, 4] * 1e-4, abs=1e-6)
    assert rows[0]["cloud_fraction"] == 0.0


def test_fill_and_reliability_states(tmp_path):
    data = DN.copy()
    data[0, 0] = -3000
    path = tmp_path / "MYD13Q1.A2025169.h21v08.tif"
    write(path, np.stack([data, np.array([[-1, 0, 1, 2, 3, 0, 0, 0, 0]] * 9, np.int16)]))
    with rasterio.open(path, "r+") as dataset:
        dataset.set_band_description(1, "250m 16 days NDVI")
        dataset.set_band_description(2, "250m 16 days pixel reliability")
    raster = read_composite(str(path))
    assert raster.state[0, :5].tolist() == [NO_DATA, CLEAR, CLEAR, MASKED, MASKED]
    assert raster.state[1, 0] == NO_DATA  # reliability fill
    assert np.isnan(raster.ndvi[0, 0]) and raster.ndvi[1, 1] == pytest.approx(data[1, 1] * 1e-4)


def test_reprojected_composite_with_declared_scale_and_dates_from_tags(tmp_path):
    path = tmp_path / "kenya_ndvi_composite.tif"
    transform = Affine(0.0025, 0, LON - 0.01125, 0, -0.0025, LAT + 0.01125)
    write(path, DN, crs=CRS.from_epsg(4326), transform=transform)
    with rasterio.open(path, "r+") as dataset:
        dataset.scales = (0.0001,)
        dataset.update_tags(RANGEBEGINNINGDATE="2025-06-10", RANGEENDINGDATE="2025-06-25")
    rows, scenes, bad = point_rows([path])
    assert bad == [] and scenes[0].date == dt.date(2025, 6, 25) and scenes[0].product == "modis"
    assert rows[0]["ndvi"] == pytest.approx(DN[4, 4] * 1e-4, abs=1e-6)


def test_composite_period_from_the_file_name():
    assert composite_period("MOD13Q1.A2024353.h21v09.061.x.tif") == (
        dt.date(2024, 12, 18),
        dt.date(2025, 1, 2),  # the last composite of a year ends in the next
    )


def test_a_window_read_gives_the_same_rows(tmp_path):
    path = tmp_path / "MOD13Q1.A2025161.h21v08.tif"
    write(path, DN)
    whole = read_composite(str(path))
    part = read_composite(str(path), bounds=(LON - 0.001, LAT - 0.001, LON + 0.001, LAT + 0.001))
    assert part.shape < whole.shape
    assert point_rows([path])[0][0]["ndvi"] == pytest.approx(DN[4, 4] * 1e-4, abs=1e-6)


def bad_inputs(tmp_path) -> dict[str, tuple[list[Path], str]]:
    """Each bad file, and the words its one-line reason must contain."""
    cases: dict[str, tuple[list[Path], str]] = {}
    truncated = tmp_path / "MOD13Q1.A2025161.h21v08.truncated.tif"
    write(truncated, np.tile(DN, (40, 40)), compress="deflate", tiled=True)
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    cases["truncated"] = ([truncated], "unreadable or truncated")
    text = tmp_path / "MOD13Q1.A2025161.h21v08.text.tif"
    text.write_text("not a raster")
    cases["not a raster"] = ([text], "not a readable raster")
    no_crs = tmp_path / "MOD13Q1.A2025161.h21v08.nocrs.tif"
    write(no_crs, DN, crs=None)
    cases["no CRS"] = ([no_crs], "no CRS")
    unknown = tmp_path / "MOD13Q1.A2025161.h21v08.unknown.tif"
    write(unknown, DN, crs=CRS.from_wkt('LOCAL_CS["somewhere",UNIT["metre",1]]'))
    cases["unknown CRS"] = ([unknown], "CRS")
    outside = DN.copy()
    outside[4, 5] = 15000  # beside the plot's pixel: in the window read
    out_of_range = tmp_path / "MOD13Q1.A2025161.h21v08.range.tif"
    write(out_of_range, outside)
    cases["out of range"] = ([out_of_range], "1 pixels outside the valid range -0.2…1")
    three = tmp_path / "MOD13Q1.A2025161.h21v08.bands.tif"
    write(three, np.stack([DN, DN, DN]))
    cases["band missing"] = ([three], "no NDVI band")
    undated = tmp_path / "ndvi.tif"
    write(undated, DN)
    cases["no date"] = ([undated], "no composite date")
    orphan = tmp_path / APPEEARS.format(layer="pixel_reliability").replace("161", "177")
    write(orphan, np.zeros((9, 9), np.int16), nodata=-1)
    cases["reliability alone"] = ([orphan], "without its NDVI file")
    wrong = tmp_path / APPEEARS.format(layer="NDVI").replace("aid0001", "aid0002")
    write(wrong, DN)
    write(Path(str(wrong).replace("NDVI", "pixel_reliability")), np.full((9, 9), 7, np.int16))
    cases["reliability values"] = ([wrong], "pixel reliability outside -1…3")
    return cases


def test_bad_inputs_are_quarantined_with_one_reason_each(tmp_path):
    good = tmp_path / "MOD13Q1.A2025161.h21v09.good.tif"
    write(good, DN)
    for case, (paths, words) in bad_inputs(tmp_path).items():
        rows, _, bad = point_rows([good, *paths])
        assert len(rows) == 1 and rows[0]["ndvi"] is not None, case
        [quarantined] = [q for q in bad if q.source != str(good)]
        assert quarantined.source == str(paths[0]), case
        assert words in quarantined.reason, (case, quarantined.reason)
        assert "\n" not in quarantined.reason, case


def test_a_composite_far_from_the_plots_contributes_nothing(tmp_path):
    path = tmp_path / "MOD13Q1.A2025161.h21v08.tif"
    write(path, DN)
    rows, _, bad = point_rows([path], lon=LON + 3, lat=LAT)
    assert rows == [] and bad == []


def test_read_composite_refuses_a_reliability_layer_on_another_grid(tmp_path):
    path = tmp_path / APPEEARS.format(layer="NDVI")
    write(path, DN)
    other = tmp_path / "other.tif"
    write(other, np.zeros((8, 8), np.int16), nodata=-1)
    with pytest.raises(BadScene, match="on another grid"):
        read_composite(str(path), str(other))
