"""Hostile files where the pipeline reads: every raw table of the contract and the night's
features file, replaced by random bytes, an empty file, a truncated parquet file, CSV, a
parquet file of another schema or other types, a parquet file without rows, and one with a
damaged page header. Each run ends in one ``error:`` line that names the file or the failed
check (or passes, where the damage leaves a valid input), never a traceback. A damaged file
in one NDVI plot bucket is named so by the feature shard that reads it; a storage error
while reading stays a LakeError (retried), not bad input."""

from __future__ import annotations

import io
import os
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nuru_yield import names
from nuru_yield.cli import main
from nuru_yield.config import reset_settings
from nuru_yield.contract import NDVI_SCHEMA
from nuru_yield.lake import Lake
from nuru_yield.raw_layout import ndvi_bucket
from nuru_yield.sharding import shard_of
from tests.fixtures.scoring import RUN_DATE, Registry, write_features
from tests.reliability.pipeline_support import error_lines, rows, runs
from tests.unit.features.test_features import AS_OF
from tests.unit.features.test_features_materialize import ten_plots, write_raw


def _parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def _damaged_page(good: bytes) -> bytes:
    """The first page header overwritten: footer intact, data unreadable."""
    return good[:4] + bytes(40) + good[44:]


Damage = Callable[[bytes], bytes]
DAMAGE: dict[str, Damage] = {
    "random bytes": lambda good: os.urandom(4096),
    "empty file": lambda good: b"",
    "truncated half": lambda good: good[: len(good) // 2],
    "truncated tail": lambda good: good[:-10],
    "csv": lambda good: b"plot_id,latitude,longitude\n1,0.5,35.1\n",
    "damaged page": _damaged_page,
    "other schema": lambda good: _parquet(pa.table({"x": [1, 2], "y": ["a", "b"]})),
    "other types": lambda good: _parquet(
        pa.table({name: pa.array(["n/a"]) for name in pq.read_schema(io.BytesIO(good)).names})
    ),
    "no rows": lambda good: _parquet(pq.read_table(io.BytesIO(good)).slice(0, 0)),
}
RAW_FILES = {
    "plots": names.RAW_PLOTS,
    "cells": names.RAW_WEATHER_CELLS,
    "weather": names.weather_year_path(2025),
    "ndvi": names.ndvi_year_path(2025),
}
# A file without rows is not unreadable: the gate judges what is left.
NO_ROWS = {
    "plots": "plots.no_plot_seasons",
    "cells": "plots.no_weather_cell_nearby",
    "weather": "plot_features.weather_not_current",
    "ndvi": "plot_features.no_clear_ndvi",
}


@pytest.mark.parametrize("damage", DAMAGE)
@pytest.mark.parametrize("table", RAW_FILES)
def test_a_damaged_raw_file_fails_the_feature_run_in_one_line(
    table: str, damage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    lake = Lake.from_settings()
    write_raw(lake, ten_plots())
    if table == "ndvi":
        _flat_ndvi(lake)
    path = RAW_FILES[table]
    lake.write_bytes(path, DAMAGE[damage](lake.read_bytes(path)))

    line = _failed_feature_run(capsys)
    expected = f"validation failed: {NO_ROWS[table]}" if damage == "no rows" else path
    assert line.startswith("error: ") and expected in line, line
    assert not lake.exists(names.features_path(AS_OF))  # nothing half-made looks current


def _failed_feature_run(capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``nuru-yield features`` for AS_OF, expecting it to fail with exit 1 in one
    ``error:`` line and no traceback; that line."""
    with pytest.raises(SystemExit) as exited:
        main(["features", "--date", AS_OF.isoformat()])
    err = capsys.readouterr().err
    assert exited.value.code == 1
    assert "Traceback" not in err
    (line,) = error_lines(err)
    assert line.startswith("error: "), line
    return line


def _flat_ndvi(lake: Lake) -> None:
    """The year's NDVI as one file not split by plot bucket (a lake before `nuru-yield lake
    upgrade`, still read by every shard), so that one damaged file holds every scene."""
    scenes = lake.read_parquet(names.ndvi_year_dir(2025)).select(NDVI_SCHEMA.names)
    for path in lake.list(names.ndvi_year_dir(2025)):
        lake.delete(path)
    lake.write_parquet(names.ndvi_year_path(2025), scenes)


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_ndvi_bucket_fails_a_sharded_feature_run_naming_the_file(
    damage: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEATURE_SHARDS", "3")
    reset_settings()
    lake = Lake.from_settings()
    write_raw(lake, ten_plots())
    plot = 6  # in shard 2 of 3, with clear scenes
    assert shard_of(np.array([plot]), 3)[0] == 2
    path = names.ndvi_bucket_path(2025, int(ndvi_bucket([plot])[0]))
    lake.write_bytes(path, DAMAGE[damage](lake.read_bytes(path)))

    if damage == "no rows":  # valid input: the bucket's plots have no scenes, the run passes
        main(["features", "--date", AS_OF.isoformat()])
        features = lake.read_parquet(names.features_path(AS_OF)).to_pandas()
        assert features.set_index("plot_id").loc[plot, "ndvi_missing"]
        assert lake.read_json(names.validation_path(AS_OF))["counts"]["plot_features"] == 10
        return
    line = _failed_feature_run(capsys)
    assert line.startswith("error: ") and path in line, line
    assert not lake.exists(names.features_path(AS_OF))


_NETWORK = "AWS Error NETWORK_CONNECTION during GetObject operation: connection reset"


def test_a_storage_error_in_a_sharded_read_stays_a_lake_error_to_retry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Not bad input: Airflow retries a LakeError, never a DataValidationError."""
    from nuru_yield.errors import LakeError
    from nuru_yield.features.materialize import materialize

    monkeypatch.setenv("FEATURE_SHARDS", "3")
    reset_settings()
    lake = Lake.from_settings()
    write_raw(lake, ten_plots())

    def cut_stream(self: pq.ParquetFile, *args: object, **kwargs: object):
        raise OSError(_NETWORK)
        yield  # a generator, as pyarrow's

    with monkeypatch.context() as patched:  # the one pass over raw/plots.parquet
        patched.setattr(pq.ParquetFile, "iter_batches", cut_stream)
        with pytest.raises(LakeError, match=r"cannot read \S*raw/plots.parquet: AWS Error"):
            materialize(AS_OF, lake=lake)

    read_parquet = Lake.read_parquet

    def unreachable_ndvi(self: Lake, path: object, *args: object, **kwargs: object):
        if isinstance(path, list):  # a shard's NDVI bucket files
            raise self._error("read", path[0], OSError(_NETWORK))
        return read_parquet(self, path, *args, **kwargs)

    monkeypatch.setattr(Lake, "read_parquet", unreachable_ndvi)
    with pytest.raises(LakeError, match="NETWORK_CONNECTION"):
        materialize(AS_OF, lake=lake)


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_features_file_fails_scoring_in_one_line(
    damage: str, registry: Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    lake = Lake.from_settings()
    write_features()
    path = names.features_path(RUN_DATE)
    lake.write_bytes(path, DAMAGE[damage](lake.read_bytes(path)))

    with pytest.raises(SystemExit) as exited:
        main(["score", "--date", str(RUN_DATE)])

    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = error_lines(err)
    if damage == "no rows":  # an empty night, recorded as such
        assert exited.value.code == 3
        assert line.startswith(f"error: no plot-season in progress on {RUN_DATE}")
        assert [r.status for r in runs().values()] == ["no_plots_in_progress"]
    else:
        assert exited.value.code == 1
        assert line.startswith("error: ") and "plot_features.parquet" in line, line
        # Refused before a run opened, or (a damaged page, found while scoring) failed.
        assert {r.status for r in runs().values()} <= {"failed"}
        assert rows("SELECT COUNT(*) AS n FROM predictions")[0].n == 0
