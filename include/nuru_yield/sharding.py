"""Which shard a plot belongs to, identically in numpy and in SQL.

Scoring splits plots into K shards (docs/DESIGN.md, "Scale-out"); each shard stages its rows on its own and a
retried shard must delete exactly the rows it staged before. The database therefore has to
compute the same shard as Python does, so the hash is Fibonacci hashing in plain 64-bit
integer arithmetic that both PostgreSQL (bigint) and SQLite (integer) evaluate exactly:

    shard = ((plot_id * 2654435761) mod 2**32) * K div 2**32

For 0 <= plot_id < 2**31 the product stays below 2**63 and the result uses the well-mixed
high bits of the 32-bit hash, so consecutive plot ids spread evenly over the shards.

Feature materialization reads its raw inputs by shard (docs/DESIGN.md, "Scale-out"):
:func:`shard_filter` is the same hash as an Arrow dataset filter, and :func:`shard_buckets`
names the plot buckets (the same hash with ``buckets`` shards) that can hold a shard's
plots.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from nuru_yield.names import MAX_PLOT_ID

if TYPE_CHECKING:
    import pyarrow.dataset as ds

_MULTIPLIER = 2_654_435_761  # ⌊2**32 / φ⌋, Knuth's multiplicative-hash constant
_MODULUS = 2**32
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


def _check_shards(shards: int) -> None:
    if not 1 <= shards < 2**31:
        raise ValueError(f"shards must be between 1 and 2**31 - 1, got {shards}")


def shard_of(plot_ids: np.ndarray, shards: int) -> np.ndarray:
    """The shard (0 … shards-1, int64) of each plot id; ids must lie in 0 … 2**31-1."""
    _check_shards(shards)
    ids = np.asarray(plot_ids, dtype=np.int64)
    if ids.size and (ids.min() < 0 or ids.max() > MAX_PLOT_ID):
        raise ValueError(
            f"plot ids must lie in 0…{MAX_PLOT_ID} to be sharded, got {ids.min()}…{ids.max()}"
        )
    return (ids * _MULTIPLIER) % _MODULUS * shards // _MODULUS


def shard_sql(column: str, shards: int) -> str:
    """The SQL expression equal to :func:`shard_of` for ``column`` (PostgreSQL and SQLite)."""
    _check_shards(shards)
    if not _IDENTIFIER.match(column):
        raise ValueError(f"not a column name: {column!r}")
    return f"((({column} * {_MULTIPLIER}) % {_MODULUS}) * {shards} / {_MODULUS})"


def shard_or_zero(plot_ids: pa.Array | pa.ChunkedArray | np.ndarray, shards: int) -> np.ndarray:
    """:func:`shard_of` for every id, unhashable ones (null, negative, too large) in shard 0,
    as :func:`shard_filter` places them."""
    if isinstance(plot_ids, pa.Array | pa.ChunkedArray):
        ids = np.asarray(plot_ids.to_numpy(zero_copy_only=False), dtype=np.float64)
    else:
        ids = np.asarray(plot_ids, dtype=np.float64)
    hashable = (ids >= 0) & (ids <= MAX_PLOT_ID)  # NaN (null) compares False
    out = np.zeros(len(ids), dtype=np.int64)
    out[hashable] = shard_of(ids[hashable].astype(np.int64), shards)
    return out


def shard_filter(column: str, shard: int, shards: int) -> ds.Expression:
    """An Arrow dataset filter keeping the rows whose ``column`` falls in ``shard``.

    Equal to :func:`shard_of` for ids in 0 … 2**31-1. Ids it cannot hash (null, negative,
    too large) belong to shard 0, so that every row of a table is read by exactly one shard
    and the validation gate still sees (and reports) the bad ones.
    """
    _check_shards(shards)
    if not 0 <= shard < shards:
        raise ValueError(f"shard must be between 0 and {shards - 1}, got {shard}")
    import pyarrow.compute as pc

    ids = pc.field(column)
    if shards == 1:
        return pc.scalar(True)
    hashed = pc.bit_wise_and(pc.multiply(ids, _MULTIPLIER), _MODULUS - 1)
    in_shard = pc.equal(pc.shift_right(pc.multiply(hashed, shards), 32), shard)
    hashable = (ids >= 0) & (ids <= MAX_PLOT_ID)
    if shard:
        return hashable & in_shard
    return (hashable & in_shard) | ids.is_null() | (ids < 0) | (ids > MAX_PLOT_ID)


def shard_buckets(shard: int, shards: int, buckets: int) -> range:
    """The buckets (the same hash with ``buckets`` parts) that can hold plots of ``shard``
    out of ``shards``: exactly ``buckets / shards`` of them when ``shards`` divides
    ``buckets``, one more at an edge otherwise, and one shared bucket when there are more
    shards than buckets. Bucket 0, where unhashable ids go, is always among shard 0's."""
    _check_shards(shards)
    _check_shards(buckets)
    # shard_of = s  <=>  ceil(s * 2**32 / K) <= hash < ceil((s + 1) * 2**32 / K)
    first_hash = -(-shard * _MODULUS // shards)
    last_hash = -(-(shard + 1) * _MODULUS // shards) - 1
    return range(first_hash * buckets // _MODULUS, last_hash * buckets // _MODULUS + 1)
