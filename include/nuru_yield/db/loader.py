"""Bulk loads of ``predictions`` that replace one ``run_date`` atomically (docs/DESIGN.md,
"Database" and "Scale-out").

Two steps, so that scoring can load its shards in parallel and still publish all-or-nothing:

* :func:`stage` loads Arrow batches into the run date's staging table — a plain table with
  the columns of ``predictions`` — and records the shard in ``predictions_staged``, both in
  one transaction. A retried shard first deletes the rows it staged before (its plot ids
  hash to it: :mod:`nuru_yield.sharding`), so retries never duplicate rows.
* :func:`publish` replaces the run date's rows with the staged ones in one transaction, once
  every shard is staged. Readers see the old rows or the new, never a mix.

PostgreSQL: rows go in with binary ``COPY`` (:mod:`nuru_yield.db.pgcopy`). Publishing first
builds the partition's key, index and a ``CHECK (run_date = D)`` on the staging table
without touching ``predictions``, then in one short transaction drops the old partition,
renames the staging table to the partition's name and attaches it — the CHECK lets
``ATTACH PARTITION`` skip its validation scan (the attach took ≈3 ms: docs/NOTES.md, "Speed"). SQLite: ``executemany``
into the staging table; publishing is one transaction (delete the date, insert the staged
rows, drop the staging table). Never row-by-row ``DataFrame.to_sql``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from nuru_yield.db import pgcopy, schema
from nuru_yield.db.engine import database_errors, writer
from nuru_yield.errors import DatabaseError
from nuru_yield.progress import track
from nuru_yield.sharding import shard_of, shard_sql

Batches = pa.Table | pa.RecordBatchReader | Iterable[pa.RecordBatch]

DEFAULT_LOCK_TIMEOUT_S = 5.0
_PREDICTIONS = schema.predictions
_STAGED = schema.predictions_staged
_PREDICTION_COLUMNS = list(_PREDICTIONS.columns)
_COLUMN_LIST = ", ".join(schema.PREDICTION_COLUMNS)


def _types(column: sa.Column[Any]) -> tuple[pa.DataType, str]:
    """The Arrow type a column is loaded from and its PostgreSQL binary COPY type."""
    pg_type = column.type.dialect_impl(postgresql.dialect())
    if isinstance(pg_type, postgresql.JSONB):
        return pa.string(), "jsonb"
    if isinstance(pg_type, sa.JSON | sa.String):
        return pa.string(), "text"
    if isinstance(pg_type, sa.BigInteger):
        return pa.int64(), "int8"
    if isinstance(pg_type, sa.Integer):
        return pa.int32(), "int4"
    if isinstance(pg_type, sa.Float):
        return pa.float64(), "float8"
    if isinstance(pg_type, sa.DateTime):
        return pa.timestamp("us", tz="UTC"), "timestamptz"
    if isinstance(pg_type, sa.Date):
        return pa.date32(), "date"
    raise TypeError(f"no bulk-load mapping for column {column.name} of type {column.type}")


# What a batch of predictions must convert to: `top_drivers` is JSON text, `scored_at` UTC.
PREDICTION_ARROW_SCHEMA = pa.schema(
    [pa.field(column.name, _types(column)[0], column.nullable) for column in _PREDICTION_COLUMNS]
)
_PG_TYPES = tuple(_types(column)[1] for column in _PREDICTION_COLUMNS)


def partition_name(run_date: dt.date) -> str:
    """The PostgreSQL partition of ``predictions`` holding one run date."""
    return f"predictions_{run_date:%Y%m%d}"


def staging_name(run_date: dt.date) -> str:
    """The staging table of one run date's predictions."""
    return f"predictions_stage_{run_date:%Y%m%d}"


def _create_plain(connection: sa.Connection, name: str) -> sa.Table:
    """Create, unless it exists, a table with the columns (and NOT NULLs) of ``predictions``
    and no key or index. On PostgreSQL autovacuum is off for it: analyzing a table while it
    loads is wasted work, and an autovacuum holding its lock would stall the swap (it is
    cancelled only after ``deadlock_timeout``). The partition gets autovacuum back at publish.
    """
    columns = [sa.Column(c.name, c.type, nullable=c.nullable) for c in _PREDICTION_COLUMNS]
    table = sa.Table(name, sa.MetaData(), *columns)
    if not sa.inspect(connection).has_table(name):
        table.create(connection)
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(f"ALTER TABLE {name} SET (autovacuum_enabled = false)")
    return table


def _canonical(batches: Batches) -> Iterator[pa.RecordBatch]:
    """The prediction columns of each non-empty batch, in order, cast to the load types."""
    if isinstance(batches, pa.Table):
        batches = batches.to_batches()
    for batch in batches:
        missing = [name for name in schema.PREDICTION_COLUMNS if name not in batch.schema.names]
        if missing:
            raise ValueError(f"prediction batch lacks columns {missing}")
        if batch.num_rows:
            columns = batch.select(list(schema.PREDICTION_COLUMNS))
            yield columns.cast(PREDICTION_ARROW_SCHEMA)


def _checked(
    batches: Batches, run_date: dt.date, shard: int, shards: int
) -> Iterator[pa.RecordBatch]:
    """:func:`_canonical` batches, refusing rows of another run date or another shard."""
    for batch in _canonical(batches):
        dates = batch.column("run_date")
        if dates.null_count or not pc.all(pc.equal(dates, run_date)).as_py():
            raise ValueError(f"batch holds rows of other run dates than {run_date}")
        if shards > 1:
            plot_ids = batch.column("plot_id").to_numpy(zero_copy_only=False)
            if (shard_of(plot_ids, shards) != shard).any():
                raise ValueError(f"batch holds plots of other shards than {shard} of {shards}")
        yield batch


def _sqlite_values(column: pa.Array) -> list[Any]:
    # The text SQLAlchemy stores for dates and datetimes on SQLite.
    if pa.types.is_date(column.type):
        return column.cast(pa.string()).to_pylist()
    if pa.types.is_timestamp(column.type):
        return pc.strftime(column, "%Y-%m-%d %H:%M:%S").to_pylist()
    return column.to_pylist()


def _write(connection: sa.Connection, table: str, batches: Iterable[pa.RecordBatch]) -> int:
    """Append canonical batches to ``table`` in the connection's transaction; returns rows."""
    if connection.dialect.name == "postgresql":
        with connection.connection.driver_connection.cursor() as cursor:
            return pgcopy.copy_batches(cursor, table, schema.PREDICTION_COLUMNS, _PG_TYPES, batches)
    placeholders = ", ".join("?" * len(schema.PREDICTION_COLUMNS))
    insert = f"INSERT INTO {table} ({_COLUMN_LIST}) VALUES ({placeholders})"
    rows = 0
    for batch in batches:
        values = [_sqlite_values(column) for column in batch.columns]
        connection.exec_driver_sql(insert, list(zip(*values, strict=True)))
        rows += batch.num_rows
    return rows


def _create_staging(engine: sa.Engine, table: str) -> None:
    # Its own short transaction, so that parallel shards do not wait for each other's load;
    # the advisory lock stops two of them racing to create the table on PostgreSQL.
    with writer(engine).begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock(hashtext('{table}'))")
        _create_plain(connection, table)


def stage(
    engine: sa.Engine,
    run_date: dt.date,
    batches: Batches,
    shard: int | None = None,
    shards: int | None = None,
) -> int:
    """Stage one run date's predictions (all of them, or one shard of ``shards``).

    Staging a shard again replaces what it staged before, in the same transaction. If
    ``batches`` raises midway, nothing of this call stays staged. Returns the rows staged.
    """
    if shard is None or shards is None:
        if shard is not None or shards is not None:
            raise ValueError("give both shard and shards, or neither")
        shard, shards = 0, 1
    if not 0 <= shard < shards:
        raise ValueError(f"shard must be in 0…{shards - 1}, got {shard}")
    table = staging_name(run_date)
    of_date = _STAGED.c.run_date == run_date
    with database_errors(engine, f"staging predictions for {run_date} (shard {shard}/{shards})"):
        _create_staging(engine, table)
        with writer(engine).begin() as connection:
            other_counts = set(
                connection.execute(sa.select(_STAGED.c.shards).where(of_date)).scalars()
            ) - {shards}
            if other_counts:
                raise DatabaseError(
                    f"predictions for {run_date} are staged in {max(other_counts)} shards, "
                    f"not {shards}: discard them first"
                )
            retried = connection.execute(
                sa.delete(_STAGED).where(of_date, _STAGED.c.shard == shard)
            ).rowcount
            if retried:
                own_rows = "" if shards == 1 else f" WHERE {shard_sql('plot_id', shards)} = {shard}"
                connection.execute(sa.text(f"DELETE FROM {table}{own_rows}"))
            rows = _write(
                connection,
                table,
                track(_checked(batches, run_date, shard, shards), f"staging {run_date}"),
            )
            connection.execute(
                _STAGED.insert().values(run_date=run_date, shard=shard, shards=shards, rows=rows)
            )
    return rows


def _staged_rows(connection: sa.Connection, run_date: dt.date) -> int:
    """Rows staged for ``run_date``; raises unless every shard of the run is staged."""
    staged = connection.execute(
        sa.select(_STAGED.c.shard, _STAGED.c.shards, _STAGED.c.rows).where(
            _STAGED.c.run_date == run_date
        )
    ).all()
    if not staged:
        raise DatabaseError(f"nothing is staged for {run_date}: stage predictions first")
    shards = max(row.shards for row in staged)
    missing = sorted(set(range(shards)) - {row.shard for row in staged})
    if missing or any(row.shards != shards for row in staged):
        raise DatabaseError(
            f"shards {missing} of {shards} are not staged for {run_date}: "
            "refusing to publish a partial run"
        )
    return sum(row.rows for row in staged)


def staged_rows(engine: sa.Engine, run_date: dt.date) -> int:
    """Rows staged for ``run_date``; raises :class:`DatabaseError` unless every shard is."""
    with (
        database_errors(engine, f"counting staged predictions for {run_date}"),
        engine.connect() as connection,
    ):
        return _staged_rows(connection, run_date)


def _publish_sqlite(engine: sa.Engine, run_date: dt.date) -> int:
    with writer(engine).begin() as connection:
        rows = _staged_rows(connection, run_date)
        connection.execute(sa.delete(_PREDICTIONS).where(_PREDICTIONS.c.run_date == run_date))
        connection.exec_driver_sql(
            f"INSERT INTO predictions ({_COLUMN_LIST}) "
            f"SELECT {_COLUMN_LIST} FROM {staging_name(run_date)}"
        )
        connection.exec_driver_sql(f"DROP TABLE {staging_name(run_date)}")
        connection.execute(sa.delete(_STAGED).where(_STAGED.c.run_date == run_date))
    return rows


def _publish_postgres(engine: sa.Engine, run_date: dt.date, lock_timeout_s: float) -> int:
    stage_table, partition = staging_name(run_date), partition_name(run_date)
    check = f"{stage_table}_date"
    key = ", ".join(column.name for column in _PREDICTIONS.primary_key.columns)
    # ATTACH PARTITION adopts a table's indexes that match those of `predictions` (and builds
    # the missing ones under its lock): build them all beforehand.
    indexes = {
        str(index.name): ", ".join(column.name for column in index.columns)
        for index in _PREDICTIONS.indexes
    }
    # 1. Without touching `predictions`: key, indexes and the CHECK. Dropped first, so that a
    #    publish retried after a failed swap rebuilds them over the current staged rows.
    with engine.begin() as connection:
        rows = _staged_rows(connection, run_date)
        connection.exec_driver_sql(
            f"ALTER TABLE {stage_table} DROP CONSTRAINT IF EXISTS {stage_table}_pkey, "
            f"DROP CONSTRAINT IF EXISTS {check}, "
            f"ADD CONSTRAINT {stage_table}_pkey PRIMARY KEY ({key}), "
            f"ADD CONSTRAINT {check} CHECK (run_date = DATE '{run_date}')"
        )
        for suffix, columns in indexes.items():
            connection.exec_driver_sql(f"DROP INDEX IF EXISTS {stage_table}_{suffix}")
            connection.exec_driver_sql(
                f"CREATE INDEX {stage_table}_{suffix} ON {stage_table} ({columns})"
            )
        # Statistics before readers see the rows: a partition never analysed has none (its
        # autovacuum was off while staging), and without them PostgreSQL plans joins on it,
        # such as the API's batch lookup, as sequential scans (measured: 54 ms instead of
        # 1 ms for 32 plots in a 200k-row partition) until autovacuum gets round to it.
        # The key's columns are what lookups filter on (1M rows: 0.2 s; all columns 1 s).
        connection.exec_driver_sql(f"ANALYZE {stage_table} ({key})")
    # 2. The swap: catalog changes only, in one transaction.
    with engine.begin() as connection:
        connection.exec_driver_sql(f"SET LOCAL lock_timeout = '{round(lock_timeout_s * 1000)}ms'")
        connection.exec_driver_sql(f"DROP TABLE IF EXISTS {partition}")
        connection.exec_driver_sql(f"ALTER TABLE {stage_table} RENAME TO {partition}")
        for suffix in ["pkey", *indexes]:
            connection.exec_driver_sql(
                f"ALTER INDEX {stage_table}_{suffix} RENAME TO {partition}_{suffix}"
            )
        connection.exec_driver_sql(
            f"ALTER TABLE predictions ATTACH PARTITION {partition} FOR VALUES IN ('{run_date}')"
        )
        connection.exec_driver_sql(
            f"ALTER TABLE {partition} DROP CONSTRAINT {check}, RESET (autovacuum_enabled)"
        )
        connection.execute(sa.delete(_STAGED).where(_STAGED.c.run_date == run_date))
    return rows


def publish(
    engine: sa.Engine, run_date: dt.date, lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S
) -> int:
    """Replace ``run_date``'s predictions with the staged rows, atomically; returns the rows.

    Raises :class:`DatabaseError` if nothing (or only some shards) is staged. On PostgreSQL
    the swap waits at most ``lock_timeout_s`` for queries still reading ``predictions``.
    """
    with database_errors(engine, f"publishing predictions for {run_date}"):
        if engine.dialect.name == "postgresql":
            return _publish_postgres(engine, run_date, lock_timeout_s)
        return _publish_sqlite(engine, run_date)


def discard(engine: sa.Engine, run_date: dt.date) -> None:
    """Forget everything staged for ``run_date`` (the published rows stay)."""
    with (
        database_errors(engine, f"discarding staged predictions for {run_date}"),
        writer(engine).begin() as connection,
    ):
        connection.exec_driver_sql(f"DROP TABLE IF EXISTS {staging_name(run_date)}")
        connection.execute(sa.delete(_STAGED).where(_STAGED.c.run_date == run_date))


def replace_partition(engine: sa.Engine, run_date: dt.date, batches: Batches) -> int:
    """Stage all of ``run_date``'s predictions and publish them: :func:`stage` + :func:`publish`.

    Anything staged for the date before is discarded first; if ``batches`` fails, the
    staging is discarded again and the published rows stay as they were.
    """
    discard(engine, run_date)
    try:
        stage(engine, run_date, batches)
    except Exception:
        with contextlib.suppress(DatabaseError):
            discard(engine, run_date)
        raise
    return publish(engine, run_date)


def bare_ingest(engine: sa.Engine, table: str, batches: Batches) -> int:
    """Baseline for benchmarks: load prediction batches the barest fast way — one binary
    ``COPY`` (one ``executemany`` on SQLite) into a fresh table without key or index, one
    commit — then drop the table. Returns the rows loaded."""
    with database_errors(engine, f"bare ingest into {table}"):
        with writer(engine).begin() as connection:
            connection.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
            plain = _create_plain(connection, table)
            rows = _write(connection, table, _canonical(batches))
        with writer(engine).begin() as connection:
            plain.drop(connection)
    return rows


def replace_rows(
    engine: sa.Engine, table: sa.Table, match: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]
) -> int:
    """Replace the rows of a small table matching ``match`` (column → value, None = NULL)
    with ``rows``, in one transaction; e.g. one run date's ``drift_reports``. Returns rows."""
    if not match:
        raise ValueError("replace_rows needs a non-empty match")
    complete = [{**match, **row} for row in rows]
    for row in complete:
        if any(row[name] != value for name, value in match.items()):
            raise ValueError(f"row {row} does not match {dict(match)}")
    condition = [
        table.c[name].is_(None) if value is None else table.c[name] == value
        for name, value in match.items()
    ]
    with (
        database_errors(engine, f"replacing rows of {table.name}"),
        writer(engine).begin() as connection,
    ):
        connection.execute(table.delete().where(*condition))
        if complete:
            connection.execute(table.insert(), complete)
    return len(complete)
