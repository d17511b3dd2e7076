"""The raw NDVI's plot-bucket layout: writing, what a shard reads, and upgrading old lakes;
and the lake helpers a sharded step publishes with (split writes, assembled parts)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nuru_yield import names
from nuru_yield.cli import main
from nuru_yield.contract import NDVI_PLOT_BUCKETS, NDVI_SCHEMA
from nuru_yield.errors import LakeError
from nuru_yield.lake import Lake, part_row_groups
from nuru_yield.names import MAX_PLOT_ID
from nuru_yield.raw_layout import (
    ndvi_bucket,
    shard_ndvi_files,
    unbucketed_ndvi_files,
    upgrade_lake,
    write_ndvi_year,
)
from nuru_yield.sharding import shard_of


def scenes(plot_ids: list[int | None], day: str = "2025-05-01") -> pa.Table:
    n = len(plot_ids)
    return pa.table(
        {
            "plot_id": pa.array(plot_ids, pa.int64()),
            "date": pa.array(np.full(n, np.datetime64(day, "D")), pa.date32()),
            "ndvi": pa.array(np.linspace(0.1, 0.9, n)),
            "cloud_fraction": pa.array([0.1] * n),
        },
        schema=NDVI_SCHEMA,
    )


def sorted_rows(table: pa.Table) -> list[tuple]:
    return sorted(zip(*table.to_pydict().values(), strict=True), key=repr)


@pytest.fixture
def lake(tmp_path) -> Lake:
    return Lake(f"file://{tmp_path / 'lake'}")


def test_a_year_is_split_by_plot_bucket_with_every_bucket_written(lake: Lake) -> None:
    ids = [*range(500), None, -3, MAX_PLOT_ID + 7]
    batches = [scenes(ids[:200]), scenes(ids[200:])]
    written = write_ndvi_year(lake, 2025, NDVI_SCHEMA, batches)

    assert [uri for uri, _ in written] == [
        lake.uri(names.ndvi_bucket_path(2025, b)) for b in range(NDVI_PLOT_BUCKETS)
    ]
    assert sum(rows for _, rows in written) == len(ids)
    for bucket in range(NDVI_PLOT_BUCKETS):
        got = lake.read_parquet(names.ndvi_bucket_path(2025, bucket))["plot_id"].to_pylist()
        hashable = [i for i in got if i is not None and 0 <= i <= MAX_PLOT_ID]
        assert set(shard_of(np.array(hashable, dtype=np.int64), NDVI_PLOT_BUCKETS)) <= {bucket}
        if bucket == 0:
            assert {None, -3, MAX_PLOT_ID + 7} <= set(got)
    # Readers of the whole table see one table, whatever the layout.
    assert sorted_rows(lake.read_parquet(names.RAW_NDVI).select(NDVI_SCHEMA.names)) == sorted_rows(
        pa.concat_tables(batches)
    )


def test_a_shard_reads_the_files_of_its_buckets_only(lake: Lake) -> None:
    write_ndvi_year(lake, 2025, NDVI_SCHEMA, [scenes(list(range(300)))])
    write_ndvi_year(lake, 2024, NDVI_SCHEMA, [scenes(list(range(300)), "2024-11-01")])
    files = shard_ndvi_files(lake, [2025], shard=1, shards=4)
    assert len(files.bucketed) == NDVI_PLOT_BUCKETS // 4 and not files.unbucketed
    assert all("year=2025/" in path for path in files.bucketed)
    every = [shard_ndvi_files(lake, [2024, 2025], s, 4).bucketed for s in range(4)]
    assert sorted(p for shard in every for p in shard) == lake.list(names.RAW_NDVI)


def test_upgrade_moves_flat_files_into_buckets_once(
    lake: Lake, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    flat = scenes([*range(1000), None])
    pq.write_table(flat, _local(lake, names.ndvi_year_path(2024)), row_group_size=100)
    lake.write_parquet(names.ndvi_year_path(2025, "late-scenes"), scenes([5, 6], "2025-02-01"))
    files = shard_ndvi_files(lake, [2024], 0, 2)
    assert files.unbucketed == [names.ndvi_year_path(2024)]  # still read, by every shard

    monkeypatch.setenv("LAKE_URL", lake.url)
    main(["lake", "upgrade"])
    assert "2 file(s) moved" in capsys.readouterr().out

    assert unbucketed_ndvi_files(lake) == []
    assert len(lake.list(names.ndvi_year_dir(2024))) == NDVI_PLOT_BUCKETS
    assert lake.exists(
        names.ndvi_bucket_path(2025, int(ndvi_bucket(np.array([5]))[0]), "late-scenes")
    )
    assert sorted_rows(lake.read_parquet(names.ndvi_year_dir(2024)).select(NDVI_SCHEMA.names)) == (
        sorted_rows(flat)
    )
    before = {p: lake.read_bytes(p) for p in lake.list(names.RAW_NDVI)}
    assert upgrade_lake(lake) == []  # idempotent
    assert {p: lake.read_bytes(p) for p in lake.list(names.RAW_NDVI)} == before


def test_an_interrupted_upgrade_is_finished_by_a_rerun(lake: Lake) -> None:
    flat = scenes(list(range(400)))
    lake.write_parquet(names.ndvi_year_path(2024), flat)
    # Killed after writing the buckets, before deleting the source: the source is still
    # there, and readers are told that its scenes would count twice.
    write_ndvi_year(lake, 2024, NDVI_SCHEMA, [flat])
    with pytest.raises(LakeError, match="would count twice: run `nuru-yield lake upgrade`"):
        unbucketed_ndvi_files(lake, [2024])
    assert [source for source, _ in upgrade_lake(lake)] == [names.ndvi_year_path(2024)]
    assert sorted_rows(lake.read_parquet(names.RAW_NDVI).select(NDVI_SCHEMA.names)) == (
        sorted_rows(flat)
    )


def _local(lake: Lake, path: str) -> str:
    target = lake.root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    return str(target)


def test_assembled_parts_keep_each_part_in_its_own_row_groups(lake: Lake) -> None:
    schema = pa.schema([("plot_id", pa.int64()), ("value", pa.float64())])
    parts = []
    for part, rows in enumerate([250, 0, 40]):
        path = names.shard_part_path("out", dt.date(2025, 6, 30), part, 3)
        table = pa.table(
            {"plot_id": np.arange(rows) + 1000 * part, "value": np.ones(rows)}, schema=schema
        )
        pq.write_table(table, _local(lake, path), row_group_size=100)
        parts.append(path)

    uri, rows = lake.assemble_parquet(parts, "out/2025-06-30/all.parquet", schema, {"run": "r1"})
    assert (uri, rows) == (lake.uri("out/2025-06-30/all.parquet"), 290)
    assembled = lake.open_parquet("out/2025-06-30/all.parquet")
    assert assembled.schema_arrow.metadata[b"run"] == b"r1"
    for part in range(3):
        groups = part_row_groups(assembled, part, 3)
        ids = assembled.read_row_groups(groups)["plot_id"].to_pylist() if groups else []
        assert ids == [i + 1000 * part for i in range([250, 0, 40][part])]
    assert part_row_groups(assembled, 0, 2) is None  # assembled from 3 parts, not 2

    lake.delete(parts[1])
    with pytest.raises(LakeError, match=r"parts of shards \[1\] are missing"):
        lake.assemble_parquet(parts, "out/2025-06-30/all.parquet", schema)
