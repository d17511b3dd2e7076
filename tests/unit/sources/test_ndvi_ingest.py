"""``nuru-yield ingest ndvi`` into the plot-bucketed raw NDVI: one file per acquisition and
bucket, skipped by scene id, identical on re-ingest, a late tile recomputing its date,
nothing written when too many scenes are bad, and rows the feature reader accepts."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pyarrow as pa
import pytest
from affine import Affine

from nuru_yield import names
from nuru_yield.contract import NDVI_PLOT_BUCKETS, PLOTS_SCHEMA
from nuru_yield.errors import DataValidationError
from nuru_yield.lake import Lake
from nuru_yield.raw_layout import ndvi_bucket
from nuru_yield.sources.ndvi import ingest_ndvi, read_plots, shard_buckets
from tests.unit.sources.test_modis import DN, PIXEL, sinusoidal_origin, write

LON, LAT = 34.75, 0.52
NIGHT = dt.date(2025, 6, 30)


@pytest.fixture
def lake(nuru_home) -> Lake:
    lake = Lake(f"file://{nuru_home}/lake")
    ids = np.arange(1, 41)
    rng = np.random.default_rng(0)
    plots = pa.table(
        {
            "plot_id": ids,
            "latitude": LAT + rng.uniform(-0.006, 0.006, ids.size),
            "longitude": LON + rng.uniform(-0.006, 0.006, ids.size),
            "altitude": np.full(ids.size, 1500.0),
            "county": ["Kakamega"] * ids.size,
            "season": ["Long Rains"] * ids.size,
            "season_year": np.full(ids.size, 2025),
            "planting_date": [dt.date(2025, 3, 20)] * ids.size,
        },
        schema=PLOTS_SCHEMA,
    )
    lake.write_parquet(names.RAW_PLOTS, plots)
    return lake


def tile(folder, name, data=DN, shift=0):
    x0, y0 = sinusoidal_origin()
    path = folder / name
    write(path, data, transform=Affine(PIXEL, 0, x0 + shift * PIXEL, 0, -PIXEL, y0))
    return path


def files(lake: Lake) -> dict[str, bytes]:
    return {path: lake.read_bytes(path) for path in lake.list(names.RAW_NDVI, ".parquet")}


def rows(lake: Lake) -> list[dict]:
    return lake.read_parquet(names.ndvi_year_dir(2025)).sort_by("plot_id").to_pylist()


def ingest(paths, lake, **options):
    return ingest_ndvi([str(path) for path in paths], lake=lake, run_date=NIGHT, **options)


def test_ingest_writes_one_file_per_bucket_and_skips_what_it_has(lake, tmp_path):
    first = tile(tmp_path, "MOD13Q1.A2025161.h21v08.tif")
    result = ingest([first], lake)
    assert (result.scenes, result.skipped, result.acquisitions, result.rows) == (1, 0, 1, 40)
    written = files(lake)
    assert len(written) == NDVI_PLOT_BUCKETS
    assert all(path.endswith("/mod13q1-20250625.parquet") for path in written)
    for path in written:  # every row in the bucket of its plot, the scenes in its metadata
        bucket = int(path.split("plot_bucket=")[1][:3])
        table = lake.read_parquet(path)
        assert (ndvi_bucket(table.column("plot_id").to_numpy()) == bucket).all()
        manifest = json.loads(table.schema.metadata[b"nuru_yield.sources"])
        assert manifest == {"scenes": {"MOD13Q1.A2025161.h21v08": str(first)}}
    assert [row["plot_id"] for row in rows(lake)] == list(range(1, 41))
    ledger = lake.read_json(names.ndvi_ledger_path("mod13q1", dt.date(2025, 6, 25)))
    assert list(ledger["scenes"]) == ["MOD13Q1.A2025161.h21v08"]
    assert lake.list(names.SOURCES_NDVI + "/_parts") == []

    again = ingest([first], lake)
    assert (again.skipped, again.acquisitions) == (1, 0)
    assert files(lake) == written


def test_re_ingest_gives_identical_rows(lake, tmp_path):
    first = tile(tmp_path, "MOD13Q1.A2025161.h21v08.tif")
    ingest([first], lake)
    before = rows(lake)
    lake.delete(names.ndvi_ledger_path("mod13q1", dt.date(2025, 6, 25)))
    assert ingest([first], lake).acquisitions == 1  # not recorded: computed again
    assert rows(lake) == before


def test_a_composite_after_the_night_waits_for_a_later_one(lake, tmp_path):
    first = tile(tmp_path, "MOD13Q1.A2025161.h21v08.tif")  # 10-25 June
    result = ingest_ndvi([str(first)], lake=lake, run_date=dt.date(2025, 6, 24))
    assert (result.scenes, result.later, result.acquisitions) == (0, 1, 0)
    assert files(lake) == {}
    assert "1 after 2025-06-24" in result.render()


def test_a_late_tile_recomputes_its_date_with_the_recorded_one(lake, tmp_path):
    left = DN[:, :5]
    right = (DN[:, 5:] + 1000).astype(np.int16)
    west = tile(tmp_path, "MOD13Q1.A2025161.h21v08.tif", left)
    ingest([west], lake)
    only_west = len(rows(lake))
    east = tile(tmp_path, "MOD13Q1.A2025161.h22v08.tif", right, shift=5)
    result = ingest([east], lake)  # the west tile is not given again: the ledger names it
    assert (result.skipped, result.acquisitions) == (0, 1)
    both = rows(lake)
    assert len(both) == 40 > only_west
    whole = tile(tmp_path / "..", "MOD13Q1.A2025161.whole.tif", np.hstack([left, right]))
    reference = Lake(f"file://{tmp_path}/reference")
    reference.write_parquet(names.RAW_PLOTS, lake.read_parquet(names.RAW_PLOTS))
    ingest([whole], reference)
    assert [row["ndvi"] for row in both] == [row["ndvi"] for row in rows(reference)]
    ledger = lake.read_json(names.ndvi_ledger_path("mod13q1", dt.date(2025, 6, 25)))
    assert sorted(ledger["scenes"]) == ["MOD13Q1.A2025161.h21v08", "MOD13Q1.A2025161.h22v08"]


def test_too_many_bad_scenes_write_nothing(lake, tmp_path):
    good = tile(tmp_path, "MOD13Q1.A2025161.h21v08.tif")
    bad = tmp_path / "MOD13Q1.A2025145.h21v08.tif"
    bad.write_text("not a raster")
    with pytest.raises(DataValidationError, match=r"1 of 2 NDVI scene\(s\) bad .*not a readable"):
        ingest([good, bad], lake)
    assert files(lake) == {}
    rejected = lake.read_parquet(names.rejected_raw_path("ndvi")).to_pylist()
    assert [row["source_file"] for row in rejected] == [str(bad)]
    assert json.loads(rejected[0]["row"]) == {"scene_id": "MOD13Q1.A2025145.h21v08"}


def test_a_bad_scene_under_the_limit_is_quarantined_and_the_night_goes_on(
    lake, tmp_path, monkeypatch
):
    monkeypatch.setenv("VALIDATION_MAX_BAD_SHARE", "0.5")
    from nuru_yield.config import get_settings

    get_settings.cache_clear()
    good = tile(tmp_path, "MOD13Q1.A2025161.h21v08.tif")
    bad = tmp_path / "MOD13Q1.A2025145.h21v08.tif"
    bad.write_text("not a raster")
    result = ingest([good, bad], lake)
    assert (result.acquisitions, result.quarantined) == (1, 1)
    rejected = lake.read_parquet(names.rejected_raw_path("ndvi")).to_pylist()
    assert [row["source_file"] for row in rejected] == [str(bad)]


def test_shards_split_the_buckets_and_give_the_rows_of_one_process(lake, tmp_path):
    assert [list(shard_buckets(k, 3)) for k in range(3)] == [
        list(range(0, 11)), list(range(11, 22)), list(range(22, 32))
    ]  # fmt: skip
    first = tile(tmp_path, "MOD13Q1.A2025161.h21v08.tif")
    ingest([first], lake, shards=1)
    alone = rows(lake)
    reference = Lake(f"file://{tmp_path}/sharded")
    reference.write_parquet(names.RAW_PLOTS, lake.read_parquet(names.RAW_PLOTS))
    result = ingest([first], reference, shards=3)
    assert result.rows == 40 and rows(reference) == alone
    assert len(files(reference)) == NDVI_PLOT_BUCKETS


def test_a_failed_shard_leaves_the_previous_rows(lake, tmp_path, monkeypatch):
    first = tile(tmp_path, "MOD13Q1.A2025161.h21v08.tif")
    ingest([first], lake)
    before = files(lake)
    late = tile(tmp_path, "MOD13Q1.A2025161.h22v08.tif", shift=5)

    def broken(*args, **kwargs):
        raise OSError("killed")

    monkeypatch.setattr("nuru_yield.sources.ndvi.acquisition_rows", broken)
    with pytest.raises(OSError, match="killed"):
        ingest([late], lake)
    assert files(lake) == before
    ledger = lake.read_json(names.ndvi_ledger_path("mod13q1", dt.date(2025, 6, 25)))
    assert list(ledger["scenes"]) == ["MOD13Q1.A2025161.h21v08"]  # the next night redoes it


def test_a_scene_failing_in_a_shard_after_its_check_fails_the_night_in_one_line(
    lake, tmp_path, monkeypatch
):
    first = tile(tmp_path, "MOD13Q1.A2025161.h21v08.tif")
    from nuru_yield.sources import ndvi

    plan = ndvi.prepare_ndvi(NIGHT, lake=lake, sources={"ndvi": [str(first)]})
    first.write_bytes(first.read_bytes()[:600])  # truncated after the check
    with pytest.raises(DataValidationError, match=r"mod13q1 2025-06-25: .*h21v08.tif: .*rerun"):
        ndvi.ingest_ndvi_shard(plan, 0, lake=lake)
    assert files(lake) == {}


def test_the_ingest_ndvi_command(lake, tmp_path, monkeypatch, capsys):
    """`nuru-yield ingest ndvi PATH…` as the README shows it; a second run skips the scene,
    and a bad night exits non-zero with one line."""
    monkeypatch.setenv("LAKE_URL", lake.url)
    from nuru_yield.cli import main
    from nuru_yield.config import get_settings

    get_settings.cache_clear()
    folder = tmp_path / "composites"
    folder.mkdir()
    tile(folder, "MOD13Q1.A2025161.h21v08.tif")
    night = ["--date", NIGHT.isoformat()]
    main(["ingest", "ndvi", str(folder), *night])
    assert "1 scene(s) found, 0 already ingested; 1 acquisition(s) written, 40 plot rows" in (
        capsys.readouterr().out
    )
    main(["ingest", "ndvi", str(folder), *night, "--shards", "2"])
    assert "1 already ingested; 0 acquisition(s) written" in capsys.readouterr().out
    (folder / "MOD13Q1.A2025145.h21v08.tif").write_text("truncated")
    with pytest.raises(SystemExit) as exit_:
        main(["ingest", "ndvi", str(folder), *night])
    assert exit_.value.code != 0
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: 1 of 2 NDVI scene(s) bad") and "A2025145" in line


def test_plot_polygons_for_the_buckets_asked_and_points_where_none_or_broken(lake):
    import shapely

    ids = np.arange(1, 41)
    boxes = shapely.box(LON - 0.0003 + ids * 1e-5, LAT - 0.0003, LON + ids * 1e-5, LAT)
    wkb = list(shapely.to_wkb(boxes))
    wkb[4] = b"not a polygon"  # plot 5: broken
    wkb[5] = None  # plot 6: none
    lake.write_parquet(
        names.RAW_PLOT_GEOMETRIES,
        pa.table({"plot_id": ids[:-1], "geometry": pa.array(wkb[:-1], pa.binary())}),
    )  # plot 40: no row at all
    plots = read_plots(lake)
    assert list(plots.plot_id) == list(ids)
    points = set(plots.plot_id[~plots.is_polygon])
    assert points == {5, 6, 40}
    assert shapely.equals(plots.geometry[0], boxes[0])
    mine = read_plots(lake, [3, 4])
    assert set(mine.plot_id) == set(ids[np.isin(ndvi_bucket(ids), [3, 4])])
    polygons = mine.is_polygon
    assert shapely.equals(mine.geometry[polygons], boxes[mine.plot_id[polygons] - 1]).all()
    assert set(mine.plot_id[~polygons]) == points & set(mine.plot_id)


def test_a_stored_value_off_the_valid_range_anywhere_in_a_composite_quarantines_it(lake, tmp_path):
    """The prepare step checks a composite whole, not only the plots' window: every shard
    must see the same scenes."""
    data = np.full((60, 60), 5000, np.int16)
    data[59, 59] = 15_000  # far from every plot, outside -2000…10000
    bad = tile(tmp_path, "MOD13Q1.A2025161.h21v08.tif", data)
    with pytest.raises(DataValidationError, match=r"1 pixels outside the valid range"):
        ingest([bad], lake)
    assert files(lake) == {}
