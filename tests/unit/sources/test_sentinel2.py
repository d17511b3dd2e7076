"""Sentinel-2 L2A through a static STAC catalog the test writes (COG bands B04/B08 at 10 m,
SCL at 20 m): search by collection and bbox, the processing-baseline offset, SCL masks,
a plot across two tiles, an item without its assets."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
import shapely
from pyproj import Transformer
from rasterio.crs import CRS

from nuru_yield.sample_data.ndvi_rasters import write_s2_item, write_stac_catalog
from nuru_yield.sources.ndvi_rasters import Plots, acquisition_rows
from nuru_yield.sources.sentinel2 import stac_scenes

UTM = CRS.from_epsg(32736)  # 36S: western Kenya south of the equator
X0, Y0 = 699_960.0, 9_900_040.0  # a tile corner on the 20 m lattice
COLLECTION = "sentinel-2-l2a"
WHEN = dt.datetime(2025, 6, 14, 7, 50, tzinfo=dt.UTC)


def item(folder, name, red, nir, scl, x0=X0, baseline="05.11", assets=("B04", "B08", "SCL")):
    return write_s2_item(
        folder, name, red, nir, scl, crs=UTM, x0=x0, y0=Y0, when=WHEN, baseline=baseline,
        collection=COLLECTION, assets=assets,
    )  # fmt: skip


def catalog(tmp_path, items):
    return str(write_stac_catalog(tmp_path / "stac", items, "scenes the test wrote"))


def utm_plot(xmin, ymin, xmax, ymax):
    back = Transformer.from_crs(UTM.to_wkt(), "EPSG:4326", always_xy=True)
    xs, ys = back.transform([xmin, xmax, xmax, xmin], [ymin, ymin, ymax, ymax])
    return Plots(np.array([1]), np.array([shapely.Polygon(list(zip(xs, ys, strict=True)))]))


RED = np.full((4, 4), 1500, np.uint16)
NIR = (np.arange(16, dtype=np.uint16).reshape(4, 4) * 100 + 4000).astype(np.uint16)
SCL = np.full((2, 2), 4, np.uint8)


def reflectance_ndvi(red, nir):
    red, nir = (red - 1000) / 10_000, (nir - 1000) / 10_000
    return (nir - red) / (nir + red)


def test_static_catalog_search_and_the_baseline_offset(tmp_path):
    source = catalog(tmp_path, [item(tmp_path, "S2B_36MXE_20250614_0_L2A", RED, NIR, SCL)])
    plots = utm_plot(X0 + 10, Y0 - 30, X0 + 30, Y0 - 10)  # pixels (1..2, 1..2), whole
    scenes, bad = stac_scenes(source, COLLECTION, plots.bounds())
    assert bad == [] and [s.scene_id for s in scenes] == ["S2B_36MXE_20250614_0_L2A"]
    assert scenes[0].date == dt.date(2025, 6, 14)
    assert stac_scenes(source, "another-collection", plots.bounds()) == ([], [])
    table, used, quarantined = acquisition_rows(scenes, plots)
    assert used == ["S2B_36MXE_20250614_0_L2A"]
    assert quarantined == []
    [row] = table.to_pylist()
    expected = reflectance_ndvi(RED[1:3, 1:3].astype(float), NIR[1:3, 1:3].astype(float)).mean()
    assert row["ndvi"] == pytest.approx(expected, abs=1e-6)
    without = reflectance_ndvi(RED[1:3, 1:3] + 1000.0, NIR[1:3, 1:3] + 1000.0).mean()
    assert abs(row["ndvi"] - without) > 0.01  # the offset matters


def test_scl_classes_mask_cloud_shadow_and_snow(tmp_path):
    scl = np.array([[9, 4], [6, 0]], np.uint8)  # cloud | vegetation; water | no data
    source = catalog(tmp_path, [item(tmp_path, "S2A_36MXE_20250614_0_L2A", RED, NIR, scl)])
    plots = utm_plot(X0, Y0 - 40, X0 + 40, Y0)  # the whole 4 x 4 tile
    table, _, _ = acquisition_rows(stac_scenes(source, COLLECTION, plots.bounds())[0], plots)
    [row] = table.to_pylist()
    clear = np.zeros((4, 4), bool)
    clear[0:2, 2:4] = clear[2:4, 0:2] = True  # vegetation and water
    expected = reflectance_ndvi(RED.astype(float), NIR.astype(float))[clear].mean()
    assert row["ndvi"] == pytest.approx(expected, abs=1e-6)
    assert row["cloud_fraction"] == pytest.approx(0.5)  # cloud and no data: half the plot


def test_a_plot_across_two_tiles_and_an_item_without_its_assets(tmp_path):
    west = item(tmp_path, "S2A_T1_20250614", RED[:, :2], NIR[:, :2], SCL[:, :1])
    east = item(tmp_path, "S2A_T2_20250614", RED[:, 2:], NIR[:, 2:], SCL[:, 1:], x0=X0 + 20)
    broken = item(tmp_path, "S2A_T3_20250614", RED, NIR, SCL, assets=("B04", "SCL"))
    source = catalog(tmp_path, [west, east, broken])
    plots = utm_plot(X0 + 10, Y0 - 30, X0 + 30, Y0 - 10)
    table, used, bad = acquisition_rows(stac_scenes(source, COLLECTION, plots.bounds())[0], plots)
    assert used == ["S2A_T1_20250614", "S2A_T2_20250614"]
    assert [(q.scene_id, q.reason) for q in bad] == [
        ("S2A_T3_20250614", "item S2A_T3_20250614 has no nir asset (looked for B08, nir)")
    ]
    expected = reflectance_ndvi(RED[1:3, 1:3].astype(float), NIR[1:3, 1:3].astype(float)).mean()
    assert table.to_pylist()[0]["ndvi"] == pytest.approx(expected, abs=1e-6)


def test_a_search_covers_the_days_asked(tmp_path):
    """A night searches the scenes of its last NDVI_STAC_DAYS: an older one is not found."""
    recent = item(tmp_path, "S2A_36MXE_20250614_0_L2A", RED, NIR, SCL)
    old = write_s2_item(
        tmp_path, "S2A_36MXE_20250410_0_L2A", RED, NIR, SCL, crs=UTM, x0=X0, y0=Y0,
        when=dt.datetime(2025, 4, 10, 7, 50, tzinfo=dt.UTC), collection=COLLECTION,
    )  # fmt: skip
    source = catalog(tmp_path, [recent, old])
    plots = utm_plot(X0 + 10, Y0 - 30, X0 + 30, Y0 - 10)
    window = (dt.date(2025, 5, 31), dt.date(2025, 6, 30))
    scenes, _ = stac_scenes(source, COLLECTION, plots.bounds(), days=window)
    assert [s.scene_id for s in scenes] == ["S2A_36MXE_20250614_0_L2A"]
    everything, _ = stac_scenes(source, COLLECTION, plots.bounds())
    assert len(everything) == 2
