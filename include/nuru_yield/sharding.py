"""Which shard a plot belongs to, identically in numpy and in SQL.

Scoring splits plots into K shards (DESIGN §9); each shard stages its rows on its own and a
retried shard must delete exactly the rows it staged before. The database therefore has to
compute the same shard as Python does, so the hash is Fibonacci hashing in plain 64-bit
integer arithmetic that both PostgreSQL (bigint) and SQLite (integer) evaluate exactly:

    shard = ((plot_id * 2654435761) mod 2**32) * K div 2**32

For 0 <= plot_id < 2**31 the product stays below 2**63 and the result uses the well-mixed
high bits of the 32-bit hash, so consecutive plot ids spread evenly over the shards.
"""

from __future__ import annotations

import re

import numpy as np

MAX_PLOT_ID = 2**31 - 1
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
