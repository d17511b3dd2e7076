"""The raw NDVI's layout in the lake: by year, then by plot bucket (docs/DESIGN.md, "Raw
input contract" and "Lake layout").

NDVI is the raw table that grows with the number of plots (dozens of scenes per plot and
year), so that a shard of feature materialization can read the scenes of its own plots
without scanning everyone's, each year's files sit in ``NDVI_PLOT_BUCKETS`` directories
``raw/ndvi/year=YYYY/plot_bucket=BBB/``, bucket = the scoring shard hash of ``plot_id``
with ``NDVI_PLOT_BUCKETS`` shards (ids it cannot hash go to bucket 0). A shard of K reads
the buckets of its hash range (:func:`shard_ndvi_files`) and filters rows by the same hash.

Files directly in ``raw/ndvi/year=YYYY/`` (the layout before buckets, or a producer that
does not split) are still read, by every shard in full: correct, but slower, and logged.
:func:`upgrade_lake` (``nuru-yield lake upgrade``) moves them into buckets; it is
idempotent and safe to interrupt (a rerun rewrites the same bucket files from the same
source, which is deleted only after its buckets are written).

Removal note: reading unbucketed files (``NdviFiles.unbucketed`` and the paths that use it,
:func:`unbucketed_ndvi_files` in the feature run's prepare step) is a bridge for lakes and
producers of before the buckets. It goes in release :data:`UNBUCKETED_NDVI_REMOVED_IN`;
from then on such a file is refused with the upgrade command, which stays. A lake still
relies on it while a feature run's ``validation.json`` lists ``unbucketed_ndvi_files``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from nuru_yield.contract import NDVI_PLOT_BUCKETS
from nuru_yield.errors import LakeError
from nuru_yield.lake import Lake
from nuru_yield.names import RAW_NDVI, ndvi_bucket_path, ndvi_year_dir
from nuru_yield.sharding import shard_buckets, shard_or_zero

log = logging.getLogger(__name__)

_YEAR_FILE = re.compile(r"^year=(\d{4})/(?:plot_bucket=(\d+)/)?([^/]+)\.parquet$")
UPGRADE_COMMAND = "nuru-yield lake upgrade"
UNBUCKETED_NDVI_REMOVED_IN = "0.2.0"


def ndvi_bucket(plot_ids: pa.Array | pa.ChunkedArray | np.ndarray) -> np.ndarray:
    """The plot bucket of each id (null, negative or too large ids: bucket 0)."""
    return shard_or_zero(plot_ids, NDVI_PLOT_BUCKETS)


def write_ndvi_year(
    lake: Lake,
    year: int,
    schema: pa.Schema,
    batches: Iterable[pa.RecordBatch | pa.Table],
    part: str = "part-0",
    buckets: Sequence[int] | None = None,
) -> list[tuple[str, int]]:
    """Write one year's NDVI scenes, split by plot bucket: file ``{part}.parquet`` in every
    bucket of the year (empty ones too), or only in ``buckets`` (every row must belong to
    one of them). Returns (URI, rows) per bucket."""
    wanted = list(range(NDVI_PLOT_BUCKETS) if buckets is None else buckets)
    index = np.full(NDVI_PLOT_BUCKETS, len(wanted), dtype=np.int64)
    index[wanted] = np.arange(len(wanted))

    def split(batch: pa.RecordBatch | pa.Table) -> np.ndarray:
        target = index[ndvi_bucket(batch.column("plot_id"))]
        if (target == len(wanted)).any():
            raise ValueError(f"NDVI rows outside plot buckets {wanted}")
        return target

    paths = [ndvi_bucket_path(year, bucket, part) for bucket in wanted]
    return lake.write_parquet_split(paths, schema, batches, split)


@dataclass(frozen=True)
class NdviFiles:
    """The raw NDVI files a shard reads: its buckets' and any not yet in a bucket."""

    bucketed: list[str] = field(default_factory=list)
    unbucketed: list[str] = field(default_factory=list)

    @property
    def all(self) -> list[str]:
        return [*self.bucketed, *self.unbucketed]


def _year_files(lake: Lake, years: Iterable[int]) -> list[tuple[str, int | None]]:
    """(path, bucket or None) of every NDVI file of ``years``."""
    found = []
    for year in years:
        for path in lake.list(ndvi_year_dir(year), ".parquet"):
            match = _YEAR_FILE.match(path[len(RAW_NDVI) + 1 :])
            if match:
                bucket = match.group(2)
                found.append((path, None if bucket is None else int(bucket)))
    return found


def shard_ndvi_files(lake: Lake, years: Iterable[int], shard: int, shards: int) -> NdviFiles:
    """The NDVI files of ``years`` that can hold scenes of shard ``shard`` of ``shards``."""
    wanted = set(shard_buckets(shard, shards, NDVI_PLOT_BUCKETS))
    files = NdviFiles()
    for path, bucket in _year_files(lake, years):
        if bucket is None:
            files.unbucketed.append(path)
        elif bucket in wanted:
            files.bucketed.append(path)
    return files


def unbucketed_ndvi_files(lake: Lake, years: Iterable[int] | None = None) -> list[str]:
    """NDVI files not yet partitioned by plot bucket (all years when ``years`` is None).

    Raises :class:`LakeError` when a year holds a file both unbucketed and in buckets
    (``part.parquet`` and ``plot_bucket=…/part.parquet``): readers would count its scenes
    twice; upgrading makes the unbucketed file replace the bucketed one.
    """
    files = _year_files(lake, _years(lake) if years is None else years)
    bucketed = {_name(path) for path, bucket in files if bucket is not None}
    unbucketed = [path for path, bucket in files if bucket is None]
    for path in unbucketed:
        if _name(path) in bucketed:
            raise LakeError(
                f"{lake.uri(path)} also exists split into plot buckets, so its scenes would "
                f"count twice: run `{UPGRADE_COMMAND}` (the unbucketed file replaces them)"
            )
    return unbucketed


def _years(lake: Lake) -> list[int]:
    """Every year with NDVI files."""
    return sorted(
        {
            int(match.group(1))
            for path in lake.list(RAW_NDVI, ".parquet")
            if (match := _YEAR_FILE.match(path[len(RAW_NDVI) + 1 :]))
        }
    )


def _name(path: str) -> tuple[int, str]:
    """(year, file name) of an NDVI file, whichever layout it is in."""
    match = _YEAR_FILE.match(path[len(RAW_NDVI) + 1 :])
    assert match is not None
    return int(match.group(1)), match.group(3)


def upgrade_lake(lake: Lake, batch_rows: int = 1_000_000) -> list[tuple[str, int]]:
    """Partition every NDVI file not yet in a plot bucket (see the module docstring);
    returns (source path, rows) of each file moved. Streams: memory is one batch."""
    moved = []
    for source in [path for path, bucket in _year_files(lake, _years(lake)) if bucket is None]:
        year, part = _name(source)
        parquet = lake.open_parquet(source)
        log.info("lake upgrade: %s (%d rows) into plot buckets", source, parquet.metadata.num_rows)
        written = write_ndvi_year(
            lake, year, parquet.schema_arrow, parquet.iter_batches(batch_size=batch_rows), part
        )
        rows = sum(count for _, count in written)
        if rows != parquet.metadata.num_rows:
            raise RuntimeError(f"{source}: wrote {rows} rows of {parquet.metadata.num_rows}")
        lake.delete(source)
        moved.append((source, rows))
    return moved
