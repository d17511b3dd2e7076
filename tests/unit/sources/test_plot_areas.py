"""Plot areas on the ingest path (``area_ha`` of ``raw/plots.parquet``): a polygon's
equal-area hectares, null for a point, an area column winning over the polygon, impossible
areas quarantined."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nuru_yield.lake import Lake
from nuru_yield.sources.ingest import ingest
from nuru_yield.sources.plots import MAX_AREA_HA, PlotsRead, read_file, read_plots

NIGHT = dt.date(2024, 12, 31)
ATTRIBUTES = {"altitude_m": 1500, "county": "Machakos", "season": "LR",
              "planting_date": "2024-03-20"}  # fmt: skip


def _geodesic_square(lon: float, lat: float, side_m: float = 100.0) -> list[list[float]]:
    """A ring of ``side_m`` × ``side_m`` metres measured on the ellipsoid (geodesic sides
    east and north of the south-west corner)."""
    from pyproj import Geod

    geod = Geod(ellps="WGS84")
    east_lon, east_lat, _ = geod.fwd(lon, lat, 90.0, side_m)
    north_lon, north_lat, _ = geod.fwd(lon, lat, 0.0, side_m)
    corner_lon, corner_lat, _ = geod.fwd(north_lon, north_lat, 90.0, side_m)
    return [[lon, lat], [east_lon, east_lat], [corner_lon, corner_lat],
            [north_lon, north_lat], [lon, lat]]  # fmt: skip


def _feature(plot_id: int, geometry: dict, **properties: object) -> dict:
    return {"type": "Feature", "properties": {"plot_id": plot_id, **ATTRIBUTES, **properties},
            "geometry": geometry}  # fmt: skip


def _polygon(ring: list[list[float]]) -> dict:
    return {"type": "Polygon", "coordinates": [ring]}


def _read_geojson(tmp_path: Path, features: list[dict], **options: object) -> PlotsRead:
    path = tmp_path / "plots.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return read_plots([(read_file(path, path.name), path.name)], **options)


def _areas(read: PlotsRead) -> dict[int, float | None]:
    good = read.good.to_pandas()
    return {
        int(p): (None if pd.isna(a) else a)
        for p, a in zip(good["plot_id"], good["area_ha"], strict=True)
    }


def test_a_100_m_square_is_one_hectare_at_the_equator_and_at_4_south(tmp_path: Path) -> None:
    from pyproj import Geod

    rings = {1: _geodesic_square(37.0, 0.0), 2: _geodesic_square(39.6, -4.0)}
    read = _read_geojson(tmp_path, [_feature(p, _polygon(r)) for p, r in rings.items()])
    areas = _areas(read)
    geod = Geod(ellps="WGS84")
    for plot, ring in rings.items():
        lons, lats = zip(*ring, strict=True)
        geodesic_m2 = abs(geod.polygon_area_perimeter(lons, lats)[0])
        assert geodesic_m2 == pytest.approx(10_000.0, rel=1e-4)  # the square is 1 ha
        assert areas[plot] == pytest.approx(1.0, abs=1e-4)
        assert areas[plot] == pytest.approx(geodesic_m2 / 1e4, abs=1e-4)  # to the m²


def test_plots_given_as_points_have_no_area(tmp_path: Path) -> None:
    read = _read_geojson(
        tmp_path,
        [
            _feature(1, {"type": "Point", "coordinates": [37.2, -1.3]}),
            _feature(2, _polygon(_geodesic_square(37.3, -1.3, 50.0))),
        ],
    )
    assert _areas(read) == {1: None, 2: pytest.approx(0.25, abs=1e-4)}
    pd.DataFrame({"plot_id": [3], "lat": [-1.2], "lon": [37.2], **ATTRIBUTES}).to_csv(
        tmp_path / "plots.csv", index=False
    )
    path = tmp_path / "plots.csv"
    csv = read_plots([(read_file(path, path.name), path.name)])
    assert _areas(csv) == {3: None}


def test_an_area_column_wins_over_the_polygons_area(tmp_path: Path) -> None:
    one_hectare = _polygon(_geodesic_square(37.2, -1.3))
    read = _read_geojson(
        tmp_path,
        [
            _feature(1, one_hectare, area_ha=0.75),
            _feature(2, one_hectare, area_ha=None),  # no value: the polygon's
            _feature(3, {"type": "Point", "coordinates": [37.3, -1.3]}, area_ha="1.5"),
        ],
    )
    assert _areas(read) == {1: 0.75, 2: pytest.approx(1.0, abs=1e-4), 3: 1.5}
    pd.DataFrame(
        {
            "plot_id": [4, 5],
            "lat": [-1.2, -1.25],
            "lon": [37.2, 37.25],
            "Hectares": [0.4, None],
            "shamba_size": [0.6, 0.8],
            **ATTRIBUTES,
        }
    ).to_csv(tmp_path / "plots.csv", index=False)
    path = tmp_path / "plots.csv"
    rows = [(read_file(path, path.name), path.name)]
    assert _areas(read_plots(rows)) == {4: 0.4, 5: None}  # a common spelling
    assert _areas(read_plots(rows, mapping={"area_ha": "shamba_size"})) == {4: 0.6, 5: 0.8}


def test_impossible_areas_are_quarantined_with_their_reason(tmp_path: Path) -> None:
    point = {"type": "Point", "coordinates": [37.2, -1.3]}
    county_sized = _polygon(_geodesic_square(37.3, -1.3, 5_000.0))  # 2,500 ha
    read = _read_geojson(
        tmp_path,
        [
            _feature(1, point, area="0.4"),
            _feature(2, point, area="0"),
            _feature(3, point, area="-0.3"),
            _feature(4, point, area="half"),
            _feature(5, point, area=str(MAX_AREA_HA * 4)),  # square metres read as hectares
            _feature(6, county_sized),
        ],
    )
    assert _areas(read) == {1: 0.4}
    reasons = dict(zip(read.rejected["plot_id"].astype(int), read.rejected["reason"], strict=True))
    assert reasons == {
        2: "area 0 ha is not a plot's (0 < area ≤ 1,000 ha)",
        3: "area -0.3 ha is not a plot's (0 < area ≤ 1,000 ha)",
        4: "area 'half' is not a number",
        5: "area 4000 ha is not a plot's (0 < area ≤ 1,000 ha)",
        6: "area 2500 ha is not a plot's (0 < area ≤ 1,000 ha)",
    }


def test_ingest_plots_writes_the_areas_and_quarantines_an_impossible_one(tmp_path: Path) -> None:
    lake = Lake(f"file://{tmp_path / 'lake'}")
    rng = np.random.default_rng(4)
    areas = np.round(rng.uniform(0.1, 3.0, 30), 2)
    frame = pd.DataFrame(
        {
            "plot_id": range(1, 31),
            "lat": rng.uniform(-1.4, -1.2, 30),
            "lon": rng.uniform(37.1, 37.3, 30),
            "area": areas.astype(object),
            **ATTRIBUTES,
        }
    )
    frame.loc[29, "area"] = 2500.0  # one of 30: under the bad-share bound
    frame.to_csv(tmp_path / "plots.csv", index=False)
    ingest("plots", [str(tmp_path / "plots.csv")], NIGHT, lake=lake)
    plots = lake.read_parquet("raw/plots.parquet").to_pandas().sort_values("plot_id")
    assert plots["plot_id"].tolist() == list(range(1, 30))
    assert plots["area_ha"].tolist() == areas[:29].tolist()
    rejected = lake.read_parquet("raw/rejected/plots.parquet").to_pandas()
    assert rejected[["plot_id", "reason"]].values.tolist() == [
        ["30", "area 2500 ha is not a plot's (0 < area ≤ 1,000 ha)"]
    ]
