"""Lake I/O on both backends: round trips, listing, partitions, atomic replacement."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nuru_yield import names
from nuru_yield.errors import LakeError
from nuru_yield.lake import Lake

NIGHT = dt.date(2025, 5, 1)


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def lake(request: pytest.FixtureRequest, tmp_path: Path) -> Lake:
    if request.param == "local":
        return Lake(f"file://{tmp_path / 'lake'}")
    bucket = request.getfixturevalue("s3_bucket")
    endpoint = request.getfixturevalue("s3_endpoint")
    return Lake(f"s3://{bucket}/lake", endpoint_url=endpoint, access_key="test", secret_key="test")


def _table(n: int, value: float = 1.0) -> pa.Table:
    return pa.table({"plot_id": pa.array(range(n), pa.int64()), "x": pa.array([value] * n)})


def test_round_trip_list_and_partitions(lake: Lake) -> None:
    uri = lake.write_parquet(names.features_path(dt.date(2025, 4, 30)), _table(5))
    lake.write_parquet(names.features_path(NIGHT), _table(3))
    lake.write_json(names.validation_path(NIGHT), {"ok": True})
    assert uri == lake.uri("features/2025-04-30/plot_features.parquet")
    assert lake.read_parquet("features/2025-04-30/plot_features.parquet").num_rows == 5
    assert lake.list("features", ".parquet") == [
        "features/2025-04-30/plot_features.parquet",
        "features/2025-05-01/plot_features.parquet",
    ]
    assert lake.partition_dates("features") == [dt.date(2025, 4, 30), dt.date(2025, 5, 1)]
    assert lake.read_json(names.validation_path(NIGHT)) == {"ok": True}
    assert lake.exists(names.validation_path(NIGHT))
    assert not lake.exists(names.validation_path(NIGHT + dt.timedelta(days=1)))


def test_hive_partitioned_directory_reads_as_one_table(lake: Lake) -> None:
    lake.write_parquet(names.weather_year_path(2024), _table(4))
    lake.write_parquet(names.weather_year_path(2025), _table(6))
    table = lake.read_parquet(names.RAW_WEATHER)
    assert table.num_rows == 10
    assert sorted(set(table.column("year").to_pylist())) == [2024, 2025]


def test_streaming_write_and_batched_read(lake: Lake) -> None:
    batches = (_table(1000, float(i)).to_batches()[0] for i in range(5))
    uri, rows = lake.write_parquet_batches(
        "monitoring/predictions/2025-05-01/predictions.parquet", _table(1).schema, batches
    )
    assert rows == 5000
    parquet = lake.open_parquet("monitoring/predictions/2025-05-01/predictions.parquet")
    assert sum(batch.num_rows for batch in parquet.iter_batches(batch_size=700)) == 5000
    assert uri.endswith("predictions.parquet")


def test_move_replaces_the_destination_in_one_step(lake: Lake) -> None:
    lake.write_parquet("logs/_parts/part.parquet", _table(3, 2.0))
    lake.write_parquet("logs/final.parquet", _table(7))
    uri = lake.move("logs/_parts/part.parquet", "logs/final.parquet")
    assert uri == lake.uri("logs/final.parquet")
    assert lake.read_parquet("logs/final.parquet").column("x").to_pylist() == [2.0] * 3
    assert not lake.exists("logs/_parts/part.parquet")
    with pytest.raises(LakeError, match="move"):
        lake.move("logs/_parts/part.parquet", "logs/final.parquet")
    assert lake.read_parquet("logs/final.parquet").num_rows == 3


def test_failed_write_leaves_previous_file(lake: Lake) -> None:
    path = "features/2025-05-01/plot_features.parquet"
    lake.write_parquet(path, _table(7))

    def exploding_batches():
        yield _table(3, 2.0).to_batches()[0]
        raise RuntimeError("writer crashed midway")

    with pytest.raises(RuntimeError, match="midway"):
        lake.write_parquet_batches(path, _table(1).schema, exploding_batches())
    assert lake.read_parquet(path).num_rows == 7
    assert lake.list("features") == [path]  # no temporary file left visible


def test_lake_files_get_the_users_umask_not_owner_only(tmp_path: Path) -> None:
    """Files moved into the lake are readable by the group (umask 027 -> 0640), like any file
    the user creates, not 0600 as a private temporary file would leave them."""
    local = Lake(f"file://{tmp_path / 'lake'}")
    previous = os.umask(0o027)
    try:
        local.write_parquet("features/2025-05-01/plot_features.parquet", _table(3))
        local.write_parquet_batches("monitoring/p.parquet", _table(1).schema, [_table(2)])
        local.write_json("features/2025-05-01/validation.json", {"ok": True})
    finally:
        os.umask(previous)
    files = sorted(path for path in (tmp_path / "lake").rglob("*") if path.is_file())
    assert len(files) == 3
    assert {oct(path.stat().st_mode & 0o777) for path in files} == {oct(0o640)}


def test_missing_file_is_a_clear_lake_error(lake: Lake) -> None:
    with pytest.raises(LakeError, match=r"not found|cannot read"):
        lake.read_parquet("raw/plots.parquet")


def test_unwritable_local_lake_fails_with_one_line(tmp_path: Path) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("a file, not a directory")
    lake = Lake(f"file://{blocked}/lake")
    with pytest.raises(LakeError) as error:
        lake.check_writable()
    assert "cannot write to lake" in str(error.value)
    assert "\n" not in str(error.value)


def test_the_writable_check_leaves_nothing_behind(tmp_path: Path) -> None:
    lake = Lake(f"file://{tmp_path}/lake")
    lake.check_writable()
    assert list((tmp_path / "lake").iterdir()) == []  # once an empty _probe/ folder


@pytest.mark.s3
def test_missing_bucket_is_a_clear_lake_error(s3_endpoint: str) -> None:
    lake = Lake(
        "s3://no-such-bucket", endpoint_url=s3_endpoint, access_key="test", secret_key="test"
    )
    with pytest.raises(LakeError, match="no-such-bucket"):
        lake.check_writable()


def test_killed_writer_leaves_the_old_file(tmp_path: Path) -> None:
    """A real process killed mid-write (SIGKILL) never leaves a partial file in place."""
    root = tmp_path / "lake"
    path = "features/2025-05-01/plot_features.parquet"
    Lake(f"file://{root}").write_parquet(path, _table(11))
    script = textwrap.dedent(
        f"""
        import os, signal, pyarrow as pa
        from nuru_yield.lake import Lake
        schema = pa.schema([("plot_id", pa.int64()), ("x", pa.float64())])
        def batches():
            for i in range(3):
                yield pa.record_batch([pa.array([i] * 100_000, pa.int64()), pa.array([0.5] * 100_000)], schema=schema)
            os.kill(os.getpid(), signal.SIGKILL)
            yield from ()
        Lake("file://{root}").write_parquet_batches("{path}", schema, batches())
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert result.returncode == -signal.SIGKILL
    assert pq.read_table(root / path).num_rows == 11
    leftovers = [
        p for p in os.listdir(root / "features/2025-05-01") if p != "plot_features.parquet"
    ]
    assert leftovers and all(name.startswith(".tmp-") for name in leftovers)
    assert Lake(f"file://{root}").list("features", ".parquet") == [path]
    # Once nobody can be writing there, what the killed writer left can go.
    removed = Lake(f"file://{root}").clear_temporary("features/2025-05-01")
    assert removed == [f"features/2025-05-01/{name}" for name in sorted(leftovers)]
    assert os.listdir(root / "features/2025-05-01") == ["plot_features.parquet"]


def test_clearing_temporary_files_keeps_data_and_everything_outside_the_prefix(
    tmp_path: Path,
) -> None:
    root = tmp_path / "lake"
    lake = Lake(f"file://{root}")
    night, other = "log/_parts/2025-05-01", "log/_parts/2025-05-02"
    lake.write_parquet(f"{night}/part-0000.parquet", _table(3))
    for folder in (night, f"{night}/deeper", other):
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / ".tmp-0123456789abcdef.parquet").write_bytes(b"PAR1 half")
    (root / night / ".probe").write_bytes(b"")
    assert lake.clear_temporary(night) == [
        f"{night}/.tmp-0123456789abcdef.parquet",
        f"{night}/deeper/.tmp-0123456789abcdef.parquet",
    ]
    assert sorted(os.listdir(root / night)) == [".probe", "deeper", "part-0000.parquet"]
    assert os.listdir(root / other) == [".tmp-0123456789abcdef.parquet"]  # not below the prefix
    assert lake.clear_temporary(night) == []
