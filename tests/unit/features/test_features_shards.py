"""Feature materialization in shards: the same partition and gate as one process, each
shard reading only its slice of the raw inputs, and failures that lose nothing."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nuru_yield import names
from nuru_yield.config import reset_settings
from nuru_yield.contract import NDVI_PLOT_BUCKETS
from nuru_yield.dev.bench.features import RUN_DATE, Grid, build_raw
from nuru_yield.errors import DataValidationError, LakeError
from nuru_yield.features.cells import nearest_cells
from nuru_yield.features.columns import KEY_COLUMNS
from nuru_yield.features.materialize import (
    materialize,
    materialize_shard,
    prepare_features,
    publish_features,
)
from nuru_yield.features.raw import load_raw
from nuru_yield.lake import Lake, part_row_groups
from nuru_yield.sharding import shard_buckets, shard_of

GRID = Grid(n_lat=12, n_lon=12)
WINDOW_START = RUN_DATE - dt.timedelta(days=180)


@pytest.fixture
def lake() -> Lake:
    lake = Lake.from_settings()
    build_raw(lake, plots=600, grid=GRID)
    return lake


def _sorted(table: pa.Table) -> list[dict[str, Any]]:
    return sorted(table.to_pylist(), key=lambda row: tuple(repr(row[k]) for k in KEY_COLUMNS))


def _features(lake: Lake) -> pd.DataFrame:
    table = lake.read_parquet(names.features_path(RUN_DATE)).to_pandas()
    return table.sort_values(KEY_COLUMNS).reset_index(drop=True)


def _outcome(lake: Lake) -> dict[str, Any]:
    """What a run published but the features, independent of order, run id and timings."""
    report = lake.read_json(names.validation_path(RUN_DATE))
    return {
        "rejected": _sorted(lake.read_parquet(names.rejected_path(RUN_DATE))),
        "status": report["status"],
        "counts": report["counts"],
        "checks": sorted(
            (
                c["table"],
                c["check"],
                c["element_count"],
                c["missing_count"],
                c["unexpected_count"],
                round(c["unexpected_percent"], 9),
                c["success"],
            )
            for c in report["checks"]
        ),
    }


def test_shards_publish_the_same_partition_and_report_as_one_process(lake: Lake) -> None:
    one = materialize(RUN_DATE, lake=lake, shards=1)
    whole, features = _outcome(lake), _features(lake)
    sharded = materialize(RUN_DATE, lake=lake, shards=3)

    assert (sharded.rows, sharded.rejected) == (one.rows, one.rejected)
    assert one.rejected > 0 and one.rows > 500  # the generator's bad rows are there
    assert _outcome(lake) == whole
    # Window sums come from prefix sums over the rows a process holds: equal up to float
    # rounding (~1e-15 relative) when the same plots are computed among fewer others.
    pd.testing.assert_frame_equal(_features(lake), features, rtol=1e-12, atol=0)
    report = lake.read_json(names.validation_path(RUN_DATE))
    assert [s["shard"] for s in report["shards"]] == [0, 1, 2]
    assert all(s["peak_rss_mb"] > 0 and s["host"] for s in report["shards"])
    assert sum(s["rows"] for s in report["shards"]) == sharded.rows
    assert lake.list("features/_parts") == []
    # Each shard's plots sit in their own row groups, for scoring with the same K.
    features = lake.open_parquet(names.features_path(RUN_DATE))
    for shard in range(3):
        groups = part_row_groups(features, shard, 3)
        ids = features.read_row_groups(groups, columns=["plot_id"])["plot_id"].to_numpy()
        assert len(ids) and set(shard_of(ids, 3)) == {shard}


def test_flat_ndvi_files_give_the_same_result_read_by_every_shard(lake: Lake) -> None:
    materialize(RUN_DATE, lake=lake, shards=2)
    bucketed, features = _outcome(lake), _features(lake)
    flat = lake.read_parquet(names.RAW_NDVI).drop_columns(["year", "plot_bucket"])
    for path in lake.list(names.RAW_NDVI):
        lake.delete(path)
    lake.write_parquet(names.ndvi_year_path(RUN_DATE.year), flat)

    materialize(RUN_DATE, lake=lake, shards=2)
    assert _outcome(lake) == bucketed
    pd.testing.assert_frame_equal(_features(lake), features)  # same shards: bit for bit
    report = lake.read_json(names.validation_path(RUN_DATE))
    assert report["unbucketed_ndvi_files"] == [names.ndvi_year_path(RUN_DATE.year)]


def test_a_shard_reads_its_plots_their_ndvi_buckets_and_their_cells_weather(lake: Lake) -> None:
    everything = load_raw(lake, WINDOW_START, RUN_DATE)
    pieces = [load_raw(lake, WINDOW_START, RUN_DATE, shard=s, shards=4) for s in range(4)]
    for shard, piece in enumerate(pieces):
        ids = piece.plots["plot_id"].to_numpy()
        assert len(ids) and set(shard_of(ids, 4)) == {shard}
        assert set(shard_of(piece.ndvi["plot_id"].to_numpy(), 4)) == {shard}
        nearest, _ = nearest_cells(
            piece.cells, piece.plots["latitude"].to_numpy(), piece.plots["longitude"].to_numpy()
        )
        assert set(piece.weather["cell_id"]) == set(nearest[nearest >= 0])
        assert piece.weather["cell_id"].nunique() < everything.weather["cell_id"].nunique()
    # Together the shards read each plot-season and each scene exactly once.
    assert sum(len(p.plots) for p in pieces) == len(everything.plots)
    assert sum(len(p.ndvi) for p in pieces) == len(everything.ndvi)


def test_a_shard_opens_only_its_plots_split_and_the_ndvi_files_of_its_buckets(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[str] = []
    read_parquet = Lake.read_parquet

    def spy(self: Lake, path: Any, *args: Any, **kwargs: Any) -> pa.Table:
        opened.extend([path] if isinstance(path, str) else path)
        return read_parquet(self, path, *args, **kwargs)

    plan = prepare_features(RUN_DATE, lake=lake, shards=4)
    monkeypatch.setattr(Lake, "read_parquet", spy)
    materialize_shard(plan, 2, lake=lake)
    ndvi_files = [p for p in opened if p.startswith(names.RAW_NDVI)]
    assert ndvi_files == [
        names.ndvi_bucket_path(RUN_DATE.year, b) for b in shard_buckets(2, 4, NDVI_PLOT_BUCKETS)
    ]
    assert len(ndvi_files) == NDVI_PLOT_BUCKETS // 4
    # Its plot-seasons come from the split prepare staged, not from the whole table.
    assert plan.part(2, "plots") in opened and names.RAW_PLOTS not in opened
    for shard in range(4):
        ids = read_parquet(lake, plan.part(shard, "plots"))["plot_id"].to_numpy()
        assert len(ids) and set(shard_of(ids, 4)) == {shard}


def test_the_gate_judges_the_whole_run_not_each_shard(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    plots = lake.read_parquet(names.RAW_PLOTS)
    ids = plots["plot_id"].to_numpy()
    county = np.array(plots["county"].to_pylist(), dtype=object)
    in_shard_0 = np.flatnonzero(shard_of(ids, 3) == 0)
    county[in_shard_0[:40]] = None  # 40 of ~200 in shard 0 (20%), 40 of 600 overall (6.7%)
    lake.write_parquet(names.RAW_PLOTS, plots.set_column(4, "county", [county.tolist()]))
    monkeypatch.setenv("VALIDATION_MAX_BAD_SHARE", "0.1")
    reset_settings()

    plan = prepare_features(RUN_DATE, lake=lake, shards=3)
    results = [materialize_shard(plan, shard, lake=lake) for shard in range(3)]
    alone = lake.read_json(plan.report(0))
    assert not next(c for c in alone["checks"] if c["check"] == "missing_county")["success"]
    result = publish_features(plan, results, lake=lake)

    report = lake.read_json(names.validation_path(RUN_DATE))
    missing = next(c for c in report["checks"] if c["check"] == "missing_county")
    assert (missing["unexpected_count"], missing["element_count"]) == (40, 600)
    assert missing["success"] and report["status"] == "passed"
    assert result.rejected >= 40

    monkeypatch.setenv("VALIDATION_MAX_BAD_SHARE", "0.05")
    reset_settings()
    with pytest.raises(DataValidationError, match=r"validation failed: plots\..* of 600 rows"):
        materialize(RUN_DATE, lake=lake, shards=3)
    report = lake.read_json(names.validation_path(RUN_DATE))
    assert "plots.missing_county" in report["failed_checks"]
    assert not lake.exists(names.features_path(RUN_DATE))


def _break_shard(lake: Lake, shard: int, shards: int) -> str:
    """A raw NDVI file that only ``shard`` reads and cannot read: wrong column types."""
    bucket = shard_buckets(shard, shards, NDVI_PLOT_BUCKETS)[0]
    path = names.ndvi_bucket_path(RUN_DATE.year, bucket, "broken")
    lake.write_parquet(path, pa.table({"plot_id": ["x"], "date": ["y"], "ndvi": ["z"]}))
    return path


def test_a_failed_shard_leaves_the_published_partition_and_a_rerun_of_it_finishes(
    lake: Lake,
) -> None:
    materialize(RUN_DATE, lake=lake, shards=2)
    published = {p: lake.read_bytes(p) for p in lake.list(f"features/{RUN_DATE}")}
    broken = _break_shard(lake, shard=1, shards=2)

    plan = prepare_features(RUN_DATE, lake=lake, shards=2)
    done = materialize_shard(plan, 0, lake=lake)
    with pytest.raises(DataValidationError, match=r"plot_bucket=\d+/broken.parquet lacks column"):
        materialize_shard(plan, 1, lake=lake)
    with pytest.raises(LakeError, match=r"shards \[1\] staged nothing"):
        publish_features(plan, [done], lake=lake)
    assert {p: lake.read_bytes(p) for p in lake.list(f"features/{RUN_DATE}")} == published

    lake.delete(broken)
    first = materialize_shard(plan, 1, lake=lake)
    staged = lake.read_parquet(plan.part(1, "plot_features"))
    again = materialize_shard(plan, 1, lake=lake)  # a rerun of one shard replaces its part
    assert (again.rows, again.rejected) == (first.rows, first.rejected)
    assert lake.read_parquet(plan.part(1, "plot_features")).equals(staged)

    result = publish_features(plan, [done, again], lake=lake)
    assert publish_features(plan, [done, again], lake=lake) == result  # a retry changes nothing
    assert lake.read_json(names.validation_path(RUN_DATE))["run_id"] == plan.run_id
    before = pq.read_table(pa.BufferReader(published[names.features_path(RUN_DATE)]))
    pd.testing.assert_frame_equal(
        _features(lake), before.to_pandas().sort_values(KEY_COLUMNS).reset_index(drop=True)
    )


def test_publish_refuses_parts_of_another_run(lake: Lake) -> None:
    old = prepare_features(RUN_DATE, lake=lake, shards=2)
    materialize_shard(old, 0, lake=lake)
    new = prepare_features(RUN_DATE, lake=lake, shards=2)  # clears what `old` staged
    assert lake.list("features/_parts") == sorted(
        [new.report(None), new.part(0, "plots"), new.part(1, "plots")]
    )
    results = [materialize_shard(new, 1, lake=lake)]
    results.insert(0, materialize_shard(old, 0, lake=lake))  # a stale task finishing late
    with pytest.raises(LakeError, match=rf"parts of other runs \['{old.run_id}'\]"):
        publish_features(new, results, lake=lake)


def test_a_scoring_shard_reads_only_its_row_groups_of_aligned_features(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nuru_yield.scoring.run import _shard_batches

    materialize(RUN_DATE, lake=lake, shards=3)
    path = names.features_path(RUN_DATE)
    asked: list[Any] = []
    iter_batches = pq.ParquetFile.iter_batches

    def spy(self: pq.ParquetFile, *args: Any, **kwargs: Any) -> Any:
        asked.append(kwargs.get("row_groups"))
        return iter_batches(self, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", spy)
    everything = lake.read_parquet(path)["plot_id"].to_numpy()
    for shard in range(3):
        rows = [b["plot_id"].to_numpy() for b in _shard_batches(lake, path, shard, 3, 1000)]
        assert sorted(np.concatenate(rows)) == sorted(everything[shard_of(everything, 3) == shard])
        assert asked[-1] == part_row_groups(lake.open_parquet(path), shard, 3)
    list(_shard_batches(lake, path, 0, 2, 1000))  # other K: every row group, filtered
    assert asked[-1] is None


def test_plots_without_a_contract_column_fail_the_prepare_step_in_one_line(lake: Lake) -> None:
    plots = lake.read_parquet(names.RAW_PLOTS).drop_columns(["county"])
    lake.write_parquet(names.RAW_PLOTS, plots)
    with pytest.raises(DataValidationError, match=r"^raw/plots.parquet lacks column\(s\) county "):
        prepare_features(RUN_DATE, lake=lake, shards=2)
