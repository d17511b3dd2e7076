"""Per-plot NDVI from hand-built pixel grids (docs/DESIGN.md, "NDVI from rasters"): every
expected value is computed here from the pixels and the share of each pixel a plot covers,
independently of exactextract and PROJ."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest
import shapely
from affine import Affine
from pyproj import Transformer
from rasterio.crs import CRS

from nuru_yield.sources.ndvi_rasters import (
    CLEAR,
    MASKED,
    NO_DATA,
    BadScene,
    Plots,
    Raster,
    Scene,
    acquisition_rows,
)

UTM37S = CRS.from_epsg(32737)  # western Kenya
DAY = dt.date(2025, 6, 14)
X0, Y0 = 700_000.0, 9_950_000.0  # a pixel corner of the 10 m lattice
MODIS_SINUSOIDAL = CRS.from_proj4("+proj=sinu +R=6371007.181 +nadgrids=@null +wktext +units=m")
MODIS_RADIUS = 6_371_007.181


def grid(values: np.ndarray, state: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    values = np.asarray(values, dtype=np.float32)
    state = np.full(values.shape, CLEAR, np.uint8) if state is None else state.astype(np.uint8)
    ndvi = values.copy()
    ndvi[state != CLEAR] = np.nan
    return ndvi, state


def raster(values, state=None, x0=X0, y0=Y0, size=10.0, crs=UTM37S) -> Raster:
    ndvi, state = grid(values, state)
    return Raster(ndvi, state, Affine(size, 0, x0, 0, -size, y0), crs)


def scene(scene_id: str, made: Raster, day: dt.date = DAY) -> Scene:
    return Scene(scene_id, "test", day, f"/scenes/{scene_id}.tif", lambda bounds: made)


def utm_box_plot(plot_id: int, xmin, ymin, xmax, ymax, crs=UTM37S) -> Plots:
    """A plot given in WGS84 whose corners are the UTM box's corners (inverse-projected)."""
    back = Transformer.from_crs(crs.to_wkt(), "EPSG:4326", always_xy=True)
    xs, ys = back.transform([xmin, xmax, xmax, xmin], [ymin, ymin, ymax, ymax])
    return Plots(np.array([plot_id]), np.array([shapely.Polygon(list(zip(xs, ys, strict=True)))]))


def rows_of(scenes, plots):
    table, used, bad = acquisition_rows(scenes, plots)
    return table.to_pylist(), used, bad


VALUES = np.array(
    [
        [0.10, 0.20, 0.30, 0.40],
        [0.50, 0.60, 0.70, 0.80],
        [0.15, 0.25, 0.35, 0.45],
        [0.55, 0.65, 0.75, 0.85],
    ]
)
# A box from 5 m into column 0 to 5 m into column 2, and 5 m into row 0 to 5 m into row 2:
# corner pixels a quarter covered, edge pixels half, the centre pixel whole.
BOX = (X0 + 5, Y0 - 25, X0 + 25, Y0 - 5)
WEIGHTS = np.array([[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]])


def expected_mean(values, weights):
    return float((values * weights).sum() / weights.sum())


def test_polygon_mean_weights_partial_pixels_at_its_edges():
    plots = utm_box_plot(7, *BOX)
    rows, used, bad = rows_of([scene("a", raster(VALUES))], plots)
    assert used == ["a"] and bad == []
    [row] = rows
    assert row["plot_id"] == 7 and row["date"] == DAY
    assert row["ndvi"] == pytest.approx(expected_mean(VALUES[:3, :3], WEIGHTS), abs=1e-6)
    assert row["ndvi"] != pytest.approx(VALUES[:3, :3].mean(), abs=1e-3)  # weights matter
    assert row["cloud_fraction"] == pytest.approx(0.0, abs=1e-9)


def test_masked_pixels_leave_the_mean_and_make_the_cloud_fraction():
    state = np.zeros((4, 4))
    state[1, 1] = MASKED  # the whole centre pixel: 1 of the plot's 4 pixels of area
    state[0, 0] = MASKED  # a quarter of it inside the plot
    rows, _, _ = rows_of([scene("a", raster(VALUES, state))], utm_box_plot(1, *BOX))
    [row] = rows
    clear = WEIGHTS.copy()
    clear[1, 1] = clear[0, 0] = 0.0
    assert row["ndvi"] == pytest.approx(expected_mean(VALUES[:3, :3], clear), abs=1e-6)
    assert row["cloud_fraction"] == pytest.approx(1.25 / 4.0, abs=1e-9)


def test_a_plot_mostly_under_cloud_gets_null_ndvi_and_its_cloud_fraction():
    state = np.full((4, 4), MASKED)
    state[0, 0] = CLEAR  # only a quarter pixel of the plot is clear
    rows, _, _ = rows_of([scene("a", raster(VALUES, state))], utm_box_plot(1, *BOX))
    [row] = rows
    assert row["ndvi"] is None
    assert row["cloud_fraction"] == pytest.approx(1 - 0.25 / 4.0, abs=1e-9)


def test_no_data_inside_the_plot_counts_as_not_clear():
    state = np.zeros((4, 4))
    state[:, 2] = NO_DATA  # the swath ends inside the plot: 1 of its 4 pixels of area
    rows, _, _ = rows_of([scene("a", raster(VALUES, state))], utm_box_plot(1, *BOX))
    [row] = rows
    weights = WEIGHTS.copy()
    weights[:, 2] = 0.0
    assert row["ndvi"] == pytest.approx(expected_mean(VALUES[:3, :3], weights), abs=1e-6)
    assert row["cloud_fraction"] == pytest.approx(1.0 / 4.0, abs=1e-9)


def test_a_scene_that_does_not_cover_a_plot_contributes_nothing():
    far = utm_box_plot(2, X0 + 1_000, Y0 - 1_020, X0 + 1_020, Y0 - 1_000)
    inside = utm_box_plot(1, *BOX)
    plots = Plots(
        np.concatenate([inside.plot_id, far.plot_id]),
        np.concatenate([inside.geometry, far.geometry]),
    )
    rows, _, _ = rows_of([scene("a", raster(VALUES))], plots)
    assert [row["plot_id"] for row in rows] == [1]


def test_a_polygon_across_a_tile_edge_takes_both_tiles():
    plots = utm_box_plot(1, *BOX)
    whole, _, _ = rows_of([scene("a", raster(VALUES))], plots)
    left = raster(VALUES[:, :2])
    right = raster(VALUES[:, 2:], x0=X0 + 20)
    split, used, _ = rows_of([scene("h21", left), scene("h22", right)], plots)
    assert used == ["h21", "h22"]
    assert split[0]["ndvi"] == pytest.approx(whole[0]["ndvi"], abs=1e-7)
    assert split[0]["cloud_fraction"] == pytest.approx(0.0, abs=1e-9)
    only_left, _, _ = rows_of([scene("h21", raster(VALUES[:, :2]))], plots)
    # Without the right tile the plot's part there is not observed.
    assert only_left[0]["cloud_fraction"] == pytest.approx(1.0 / 4.0, abs=1e-9)


def test_overlapping_tiles_count_each_pixel_once_first_scene_by_id():
    plots = utm_box_plot(1, *BOX)
    first = raster(VALUES[:, :3])  # columns 0-2
    other = VALUES[:, 1:].copy()
    other[:, 0] = 0.99  # column 1 again, with another value: must not count
    second = raster(other, x0=X0 + 10)  # columns 1-3
    rows, used, _ = rows_of([scene("b", second), scene("a", first)], plots)
    assert used == ["a", "b"]
    assert rows[0]["ndvi"] == pytest.approx(expected_mean(VALUES[:3, :3], WEIGHTS), abs=1e-6)
    assert rows[0]["cloud_fraction"] == pytest.approx(0.0, abs=1e-9)


def test_a_cloudy_pixel_of_the_first_tile_is_not_replaced_by_the_second():
    """The first scene's observation of a pixel stands, cloudy or not (one acquisition)."""
    plots = utm_box_plot(1, *BOX)
    state = np.zeros((4, 3))
    state[1, 1] = MASKED
    first = raster(VALUES[:, :3], state)
    second = raster(VALUES[:, 1:], x0=X0 + 10)
    rows, _, _ = rows_of([scene("a", first), scene("b", second)], plots)
    assert rows[0]["cloud_fraction"] == pytest.approx(1.0 / 4.0, abs=1e-9)


def test_two_lattices_are_not_mixed_the_one_observing_most_wins():
    plots = utm_box_plot(1, *BOX)
    # The same lattice, shifted by half a pixel: another lattice.
    shifted = raster(np.full((4, 4), 0.9), x0=X0 + 5, y0=Y0 - 5)
    partial = raster(VALUES[:, :2])  # observes columns 0-1 only
    rows, used, _ = rows_of([scene("a", partial), scene("b", shifted)], plots)
    assert used == ["a", "b"]
    assert rows[0]["ndvi"] == pytest.approx(0.9, abs=1e-6)
    assert rows[0]["cloud_fraction"] == pytest.approx(0.0, abs=1e-9)


def test_a_point_takes_the_mean_of_its_window():
    values = np.arange(100, dtype=np.float64).reshape(10, 10) / 100
    state = np.zeros((10, 10))
    state[4, 4] = MASKED
    back = Transformer.from_crs(UTM37S.to_wkt(), "EPSG:4326", always_xy=True)
    lon, lat = back.transform(X0 + 45.0, Y0 - 45.0)  # inside pixel (row 4, col 4)
    rows, _, _ = rows_of([scene("a", raster(values, state))], Plots.from_points([3], [lon], [lat]))
    window = values[2:7, 2:7].copy()  # 20 m on each side at 10 m: 5 x 5 pixels
    clear = np.ones((5, 5))
    clear[2, 2] = 0
    assert rows[0]["ndvi"] == pytest.approx(expected_mean(window, clear), abs=1e-6)
    assert rows[0]["cloud_fraction"] == pytest.approx(1 / 25, abs=1e-12)


def test_a_point_at_modis_resolution_takes_its_pixel_on_the_sinusoidal_grid():
    """The sinusoidal projection by hand: x = R·λ·cos φ, y = R·φ (MODIS's sphere)."""
    lon, lat = 34.75, 0.52  # Kakamega
    x = MODIS_RADIUS * math.radians(lon) * math.cos(math.radians(lat))
    y = MODIS_RADIUS * math.radians(lat)
    size = 231.656358263889  # MOD13Q1's 250 m pixel
    col0, row0 = math.floor(x / size) - 5, math.floor(-y / size) - 5
    values = np.random.default_rng(1).uniform(0, 0.9, (11, 11)).round(4)
    made = raster(values, x0=col0 * size, y0=-row0 * size, size=size, crs=MODIS_SINUSOIDAL)
    rows, _, _ = rows_of([scene("a", made)], Plots.from_points([1], [lon], [lat]))
    assert rows[0]["ndvi"] == pytest.approx(values[5, 5], abs=1e-6)


def test_a_polygon_on_the_sinusoidal_grid_matches_pixel_shares_computed_by_hand():
    size = 231.656358263889
    lon, lat = 36.9, -0.4
    x = MODIS_RADIUS * math.radians(lon) * math.cos(math.radians(lat))
    y = MODIS_RADIUS * math.radians(lat)
    col0, row0 = math.floor(x / size) - 3, math.floor(-y / size) - 3
    values = np.random.default_rng(2).uniform(0, 0.9, (8, 8)).round(4)
    made = raster(values, x0=col0 * size, y0=-row0 * size, size=size, crs=MODIS_SINUSOIDAL)
    # A plot given by its corners in sinusoidal metres, 1.5 x 1.25 pixels.
    xmin, ymax = (col0 + 2.5) * size, -(row0 + 2.25) * size
    plots = utm_box_plot(1, xmin, ymax - 1.25 * size, xmin + 1.5 * size, ymax, MODIS_SINUSOIDAL)
    rows, _, _ = rows_of([scene("a", made)], plots)
    weights = np.array([[0.5 * 0.75, 1.0 * 0.75], [0.5 * 0.5, 1.0 * 0.5]])
    assert rows[0]["ndvi"] == pytest.approx(expected_mean(values[2:4, 2:4], weights), abs=1e-6)


def test_a_bad_scene_is_quarantined_and_the_others_still_count():
    def unreadable(bounds):
        raise BadScene("not a GeoTIFF")

    broken = Scene("b", "test", DAY, "/scenes/b.tif", unreadable)
    rows, used, bad = rows_of([scene("a", raster(VALUES)), broken], utm_box_plot(1, *BOX))
    assert used == ["a"] and len(rows) == 1
    assert [(q.scene_id, q.source, q.reason) for q in bad] == [
        ("b", "/scenes/b.tif", "not a GeoTIFF")
    ]


def test_rotated_grids_are_refused():
    ndvi, state = grid(VALUES)
    with pytest.raises(BadScene, match="rotated or not north-up"):
        Raster(ndvi, state, Affine(10, 1, X0, 0, -10, Y0), UTM37S)


def test_tiles_whose_pixel_sizes_differ_in_the_last_digits_are_one_lattice():
    """GDAL derives a MODIS tile's pixel size from its corners, given in metres to three
    decimals, so neighbouring tiles differ in the tenth digit: still one mosaic."""
    left_size, right_size = 231.656358333, 231.656358125
    x_edge = 4_447_802.079  # h21/h22's shared edge, as the tiles' corners give it
    left = raster(np.full((4, 4), 0.3), x0=x_edge - 4 * left_size, y0=0.0, size=left_size,
                  crs=MODIS_SINUSOIDAL)  # fmt: skip
    right = raster(np.full((4, 4), 0.7), x0=x_edge, y0=0.0, size=right_size,
                   crs=MODIS_SINUSOIDAL)  # fmt: skip
    plots = utm_box_plot(
        1, x_edge - 100.0, -300.0, x_edge + 100.0, -100.0, MODIS_SINUSOIDAL
    )  # half in each tile
    rows, used, _ = rows_of([scene("h21v08", left), scene("h22v08", right)], plots)
    assert used == ["h21v08", "h22v08"]
    assert rows[0]["cloud_fraction"] == pytest.approx(0.0, abs=1e-6)
    assert rows[0]["ndvi"] == pytest.approx(0.5, abs=1e-6)


def test_a_plot_in_the_no_data_part_of_a_scene_gets_no_row():
    state = np.zeros((4, 4))
    state[:, 2:] = NO_DATA  # beyond the swath edge, inside the scene's bounds
    beyond = utm_box_plot(2, X0 + 25, Y0 - 35, X0 + 35, Y0 - 25)
    inside = utm_box_plot(1, X0 + 2, Y0 - 8, X0 + 8, Y0 - 2)
    plots = Plots(
        np.concatenate([inside.plot_id, beyond.plot_id]),
        np.concatenate([inside.geometry, beyond.geometry]),
    )
    rows, _, _ = rows_of([scene("a", raster(VALUES, state))], plots)
    assert [(row["plot_id"], row["cloud_fraction"]) for row in rows] == [(1, 0.0)]


def test_observed_areas_equal_the_exact_pass_over_the_pixel_states():
    """The shortcut (a polygon whose bounding box meets no no-data pixel is observed in
    full) against exactextract's count over the states for every polygon, on random
    polygons over a grid with no-data specks, a no-data band and edges."""
    from nuru_yield.sources.ndvi_rasters import coverage_sums, polygon_sums

    rng = np.random.default_rng(5)
    state = np.where(rng.random((200, 300)) < 0.002, NO_DATA, CLEAR).astype(np.uint8)
    state[:, 250:262] = NO_DATA
    made = raster(rng.uniform(0, 0.9, (200, 300)), state)
    x = X0 + rng.uniform(-20, 3_020, 2_000)
    y = Y0 - rng.uniform(-20, 2_020, 2_000)
    half = rng.uniform(3, 40, 2_000)
    polygons = shapely.box(x - half, y - half * 0.7, x + half, y + half * 0.7)
    sums = polygon_sums(made, polygons, shapely.bounds(polygons))
    exact, _ = coverage_sums(made.state, made.bounds, shapely.to_wkb(polygons), nodata=NO_DATA)
    assert (sums.observed < sums.area - 1e-6).sum() > 50  # the no-data is met
    np.testing.assert_allclose(sums.observed, exact, rtol=1e-6, atol=1e-6)


def test_a_scene_in_pieces_gives_the_rows_of_the_whole():
    """Strips of rows of one scene (how a large scene is read) add up exactly, for a
    polygon across the strips' edge and a point whose window spans it."""
    values = np.random.default_rng(3).uniform(0, 0.9, (8, 8))
    state = np.zeros((8, 8))
    state[3, 2] = MASKED
    whole = raster(values, state)
    top, bottom = raster(values[:4], state[:4]), raster(values[4:], state[4:], y0=Y0 - 40)
    back = Transformer.from_crs(UTM37S.to_wkt(), "EPSG:4326", always_xy=True)
    lon, lat = back.transform(X0 + 45.0, Y0 - 45.0)
    polygon = utm_box_plot(1, X0 + 12, Y0 - 57, X0 + 33, Y0 - 21)
    plots = Plots(np.array([1, 2]), np.concatenate([polygon.geometry, [shapely.Point(lon, lat)]]))
    expected, _, _ = rows_of([scene("a", whole)], plots)
    pieces = Scene("a", "test", DAY, "/scenes/a.tif", lambda bounds: iter([top, bottom]))
    rows, used, _ = rows_of([pieces], plots)
    assert used == ["a"] and [r["plot_id"] for r in rows] == [1, 2]
    for row, want in zip(rows, expected, strict=True):
        assert row["ndvi"] == pytest.approx(want["ndvi"], abs=1e-9)
        assert row["cloud_fraction"] == pytest.approx(want["cloud_fraction"], abs=1e-9)
    assert 0 < rows[0]["cloud_fraction"] < 0.5  # the masked pixel is under the polygon


def test_a_scene_failing_after_its_first_piece_adds_nothing():
    def pieces(bounds):
        yield raster(VALUES[:2])
        raise BadScene("truncated after its first strip")

    plots = utm_box_plot(1, *BOX)
    broken = Scene("b", "test", DAY, "/scenes/b.tif", pieces)
    rows, used, bad = rows_of([broken], plots)
    assert (rows, used) == ([], [])
    assert [q.reason for q in bad] == ["truncated after its first strip"]
    rows, used, _ = rows_of([broken, scene("c", raster(VALUES, x0=X0))], plots)
    assert used == ["c"]
    assert rows[0]["ndvi"] == pytest.approx(expected_mean(VALUES[:3, :3], WEIGHTS), abs=1e-6)
