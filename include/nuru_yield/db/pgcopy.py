"""Arrow record batches → PostgreSQL binary ``COPY`` data, vectorized.

Why not psycopg's ``write_row`` or ADBC's ``adbc_ingest``: ``write_row`` needs a Python
tuple per row (measured ≈4× slower than ADBC on 1M prediction rows), and ADBC writes Arrow
strings as ``text``, which a ``jsonb`` column rejects ("unsupported jsonb version number").
Encoding whole columns with numpy/Arrow kernels matched ADBC's speed, supports ``jsonb`` and
runs on the caller's psycopg connection, inside its transaction.

Binary COPY format: a signature, then per row an int16 field count and per field an int32
byte length (-1 for NULL) followed by the value in network byte order; an int16 -1 ends it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc

SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, header extension length
TRAILER = b"\xff\xff"
_NULL = b"\xff\xff\xff\xff"
_PG_EPOCH_DAYS = 10_957  # 2000-01-01 − 1970-01-01
_PG_EPOCH_MICROS = _PG_EPOCH_DAYS * 86_400 * 1_000_000
# Rows encoded at a time: keeps the encoded buffer well under Arrow's 2 GiB binary limit.
MAX_ROWS_PER_CHUNK = 262_144

# PostgreSQL binary type → (Arrow type the values are read as, big-endian numpy dtype, offset
# subtracted to move from the Unix epoch to PostgreSQL's 2000-01-01 epoch).
_FIXED: dict[str, tuple[pa.DataType, str, int]] = {
    "int4": (pa.int32(), ">i4", 0),
    "int8": (pa.int64(), ">i8", 0),
    "float8": (pa.float64(), ">f8", 0),
    "date": (pa.int32(), ">i4", _PG_EPOCH_DAYS),
    "timestamptz": (pa.int64(), ">i8", _PG_EPOCH_MICROS),
}
_VARIABLE = {"text": b"", "jsonb": b"\x01"}  # payload prefix: jsonb's format version byte
PG_TYPES = frozenset(_FIXED) | frozenset(_VARIABLE)


def _as_binary(records: np.ndarray) -> pa.Array:
    """One binary value per element of a structured array, holding its raw bytes."""
    fixed = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(records.dtype.itemsize), len(records), [None, pa.py_buffer(records)]
    )
    return fixed.cast(pa.binary())


def _field(values: pa.Array, pg_type: str) -> pa.Array:
    """Each value of ``values`` encoded as one binary COPY field (length + bytes)."""
    if pg_type in _FIXED:
        read_as, big_endian, epoch = _FIXED[pg_type]
        numbers = values.cast(read_as).fill_null(0).to_numpy() - epoch
        records = np.empty(len(values), dtype=[("length", ">i4"), ("value", big_endian)])
        records["length"] = np.dtype(big_endian).itemsize
        records["value"] = numbers
        encoded = _as_binary(records)
    else:
        prefix = _VARIABLE[pg_type]
        payload = values.cast(pa.binary())
        lengths = pc.binary_length(payload).fill_null(0).to_numpy() + len(prefix)
        layout = [("length", ">i4")] + ([("prefix", f"S{len(prefix)}")] if prefix else [])
        records = np.empty(len(values), dtype=layout)
        records["length"] = lengths
        if prefix:
            records["prefix"] = prefix
        encoded = pc.binary_join_element_wise(_as_binary(records), payload, b"")
    if values.null_count:
        encoded = pc.if_else(pc.is_valid(values), encoded, pa.scalar(_NULL, pa.binary()))
    return encoded


def encode(batch: pa.RecordBatch, pg_types: Sequence[str]) -> memoryview:
    """The rows of ``batch`` as binary COPY data (no signature/trailer)."""
    count = np.full(batch.num_rows, batch.num_columns, dtype=[("count", ">i2")])
    fields = [
        _field(column, pg_type) for column, pg_type in zip(batch.columns, pg_types, strict=True)
    ]
    rows = pc.binary_join_element_wise(_as_binary(count), *fields, b"")
    offsets = np.frombuffer(rows.buffers()[1], dtype=np.int32)[rows.offset :]
    return memoryview(rows.buffers()[2])[offsets[0] : offsets[batch.num_rows]]


def copy_batches(
    cursor: psycopg.Cursor,
    table: str,
    columns: Sequence[str],
    pg_types: Sequence[str],
    batches: Iterable[pa.RecordBatch],
) -> int:
    """``COPY table (columns) FROM STDIN (FORMAT BINARY)`` of ``batches``; returns rows sent.

    Runs in the cursor's current transaction: the caller commits or rolls back.
    """
    unknown = set(pg_types) - PG_TYPES
    if unknown:
        raise ValueError(f"no binary encoder for PostgreSQL types {sorted(unknown)}")
    rows = 0
    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.write(SIGNATURE)
        for batch in batches:
            for start in range(0, batch.num_rows, MAX_ROWS_PER_CHUNK):
                chunk = batch.slice(start, MAX_ROWS_PER_CHUNK)
                copy.write(encode(chunk, pg_types))
                rows += chunk.num_rows
        copy.write(TRAILER)
    return rows
