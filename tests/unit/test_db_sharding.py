"""The shard hash: balanced, bounded, and equal in numpy and in SQL (SQLite here; PostgreSQL
in tests/integration/test_db.py)."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from nuru_yield.names import MAX_PLOT_ID
from nuru_yield.sharding import shard_of, shard_sql

EDGE_IDS = np.array([0, 1, 2, 7, 8, 1023, 65_535, 65_536, 2**30, MAX_PLOT_ID - 1, MAX_PLOT_ID])


def sample_ids() -> np.ndarray:
    spread = np.random.default_rng(7).integers(0, MAX_PLOT_ID, 2_000, endpoint=True)
    return np.concatenate([EDGE_IDS, np.arange(1_000), spread])


@pytest.mark.parametrize("shards", [1, 2, 8, 13, 200])
def test_consecutive_plot_ids_spread_evenly(shards: int) -> None:
    counts = np.bincount(shard_of(np.arange(100_000), shards), minlength=shards)
    assert len(counts) == shards
    assert counts.min() >= 0.9 * 100_000 / shards
    assert counts.max() <= 1.1 * 100_000 / shards


def test_shards_are_stable_and_in_range() -> None:
    ids = sample_ids()
    shards = shard_of(ids, 8)
    assert shards.dtype == np.int64
    assert shards.min() >= 0 and shards.max() <= 7
    np.testing.assert_array_equal(shards, shard_of(list(ids), 8))
    assert not shard_of(ids, 1).any()


@pytest.mark.parametrize("bad_ids", [[-1, 3], [0, MAX_PLOT_ID + 1]])
def test_plot_ids_outside_the_safe_range_are_refused(bad_ids: list[int]) -> None:
    with pytest.raises(ValueError, match="plot ids must lie in"):
        shard_of(np.array(bad_ids), 4)


@pytest.mark.parametrize("shards", [0, -3, 2**31])
def test_shard_counts_outside_the_safe_range_are_refused(shards: int) -> None:
    with pytest.raises(ValueError, match="shards must be"):
        shard_of(np.arange(3), shards)
    with pytest.raises(ValueError, match="shards must be"):
        shard_sql("plot_id", shards)


def test_shard_sql_only_takes_a_column_name() -> None:
    assert "p.plot_id" in shard_sql("p.plot_id", 4)
    with pytest.raises(ValueError, match="not a column name"):
        shard_sql("plot_id); DROP TABLE predictions; --", 4)


@pytest.mark.parametrize("shards", [1, 7, 8, 200, 1024])
def test_sql_expression_equals_numpy_on_sqlite(shards: int) -> None:
    ids = sample_ids()
    with sqlite3.connect(":memory:") as connection:
        connection.execute("CREATE TABLE plots (plot_id INTEGER)")
        connection.executemany("INSERT INTO plots VALUES (?)", [(int(i),) for i in ids])
        rows = connection.execute(
            f"SELECT plot_id, {shard_sql('plot_id', shards)} FROM plots ORDER BY rowid"
        ).fetchall()
    np.testing.assert_array_equal([plot for plot, _ in rows], ids)
    np.testing.assert_array_equal([shard for _, shard in rows], shard_of(ids, shards))


@pytest.mark.parametrize("shards", [1, 2, 3, 8, 13, 200])
def test_arrow_filter_equals_numpy_and_places_every_row_once(shards: int) -> None:
    import pyarrow as pa
    import pyarrow.dataset as ds

    from nuru_yield.sharding import shard_filter

    ids = sample_ids()
    unhashable = [None, -1, -(2**40), MAX_PLOT_ID + 1, 2**62]
    table = pa.table({"plot_id": pa.array([*ids.tolist(), *unhashable], pa.int64())})
    expected = shard_of(ids, shards)
    seen = []
    for shard in range(shards):
        rows = ds.dataset(table).to_table(filter=shard_filter("plot_id", shard, shards))
        got = rows["plot_id"].to_pylist()
        hashable = [i for i in got if i is not None and 0 <= i <= MAX_PLOT_ID]
        assert sorted(hashable) == sorted(ids[expected == shard].tolist())
        if shard:
            assert len(hashable) == len(got)  # ids it cannot hash: shard 0 only
        seen.extend(got)
    assert len(seen) == table.num_rows


@pytest.mark.parametrize("buckets", [1, 7, 32, 64])
@pytest.mark.parametrize("shards", [1, 3, 8, 32, 33, 100])
def test_the_buckets_of_a_shard_hold_all_its_plots_and_few_others(
    shards: int, buckets: int
) -> None:
    from nuru_yield.sharding import shard_buckets

    ids = sample_ids()
    shard, bucket = shard_of(ids, shards), shard_of(ids, buckets)
    for s in range(shards):
        named = shard_buckets(s, shards, buckets)
        assert set(bucket[shard == s]) <= set(named)
        assert len(named) <= -(-buckets // shards) + 1
    assert 0 in shard_buckets(0, shards, buckets)
    covered = sorted(b for s in range(shards) for b in shard_buckets(s, shards, buckets))
    assert set(covered) == set(range(buckets))
