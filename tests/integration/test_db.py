"""The predictions database on SQLite and on a real PostgreSQL 15: migrations, the
replace-one-partition loader (staging, shards, publish), and what readers see meanwhile."""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import os
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import sqlalchemy as sa

from nuru_yield.cli import main
from nuru_yield.config import reset_settings
from nuru_yield.db import schema as db_schema
from nuru_yield.db.engine import dispose_engines, get_engine
from nuru_yield.db.loader import (
    bare_ingest,
    publish,
    replace_partition,
    replace_rows,
    stage,
    staging_name,
)
from nuru_yield.db.migrations import LATEST_VERSION, upgrade
from nuru_yield.errors import DatabaseError
from nuru_yield.sharding import shard_of, shard_sql
from tests.fixtures.services import free_port, wait_until

NIGHT = dt.date(2025, 4, 10)
OTHER_NIGHT = NIGHT - dt.timedelta(days=1)


def predictions_batch(
    run_date: dt.date,
    plot_ids: Sequence[int],
    model_name: str = "champion",
    base_yield: float = 2000.0,
) -> pa.RecordBatch:
    """Rows whose yield encodes ``base_yield`` + plot id, so a test can tell loads apart."""
    ids = list(plot_ids)
    n = len(ids)
    return pa.record_batch(
        {
            "run_date": pa.array([run_date] * n, pa.date32()),
            "plot_id": pa.array(ids, pa.int64()),
            "season_year": pa.array([run_date.year] * n, pa.int64()),  # cast by the loader
            "season": ["Long Rains"] * n,
            "model_name": [model_name] * n,
            "model_version": ["4" if model_name == "challenger" else "3"] * n,
            "county": [None if i % 5 == 0 else "Murang'a — Kīambu" for i in ids],
            "days_after_planting": pa.array([40 + i % 3 for i in ids], pa.int32()),
            "predicted_yield_kg_per_ha": [base_yield + i for i in ids],
            "yield_lower": [None if i % 4 == 0 else base_yield + i - 500.25 for i in ids],
            "yield_upper": [base_yield + i + 700.5 for i in ids],
            "interval_level": [0.8] * n,
            "top_drivers": [json.dumps([{"feature": "precip_total", "value": i}]) for i in ids],
            "run_id": [f"score-{run_date}"] * n,
            "scored_at": pa.array(
                [dt.datetime.combine(run_date, dt.time(2, 3, 4, 567_891))] * n,
                pa.timestamp("us"),  # naive: taken as UTC
            ),
            "basis": [None if i % 7 == 0 else ("blended" if i % 2 else "model") for i in ids],
            "normal_kg_per_ha": [None if i % 7 == 0 else 1900.5 + i % 11 for i in ids],
            "plot_normal_kg_per_ha": [None if i % 7 == 0 else 1950.25 + i % 13 for i in ids],
        }
    )


def failing_batches(first: pa.RecordBatch) -> Iterator[pa.RecordBatch]:
    yield first
    raise RuntimeError("scoring crashed midway")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, nuru_home: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{nuru_home / 'predictions.db'}"
    else:
        yield request.getfixturevalue("postgres_url")
    dispose_engines()


@pytest.fixture
def sqlite_db(nuru_home: Path) -> Iterator[str]:
    yield f"sqlite:///{nuru_home / 'predictions.db'}"
    dispose_engines()


@pytest.fixture
def postgres_db(postgres_url: str) -> Iterator[str]:
    yield postgres_url
    dispose_engines()


@pytest.fixture
def engine(db_url: str) -> sa.Engine:
    """A migrated database."""
    upgrade(db_url)
    return get_engine(db_url)


def yields_by_date(engine: sa.Engine) -> dict[dt.date, dict[int, float]]:
    p = db_schema.predictions
    query = sa.select(p.c.run_date, p.c.plot_id, p.c.predicted_yield_kg_per_ha)
    with engine.connect() as connection:
        rows = connection.execute(query.where(p.c.model_name == "champion")).all()
    found: dict[dt.date, dict[int, float]] = {}
    for run_date, plot_id, value in rows:
        found.setdefault(run_date, {})[plot_id] = value
    return found


def count_night(connection: sa.Connection) -> int:
    query = sa.text("SELECT count(*) FROM predictions WHERE run_date = :d")
    return connection.execute(
        query.bindparams(sa.bindparam("d", type_=sa.Date)), {"d": NIGHT}
    ).scalar_one()


def staging_exists(engine: sa.Engine, run_date: dt.date) -> bool:
    return staging_name(run_date) in sa.inspect(engine).get_table_names()


# --- migrations ----------------------------------------------------------------------------


def test_upgrade_twice_is_a_no_op(db_url: str) -> None:
    assert upgrade(db_url) == LATEST_VERSION == 6
    engine = get_engine(db_url)
    tables_before = set(sa.inspect(engine).get_table_names())
    assert upgrade(db_url) == LATEST_VERSION
    inspector = sa.inspect(engine)
    assert set(inspector.get_table_names()) == tables_before
    assert tables_before >= set(db_schema.metadata.tables)
    assert sorted(inspector.get_view_names()) == ["latest_county_forecasts", "latest_predictions"]
    with engine.connect() as connection:
        versions = connection.execute(sa.select(db_schema.schema_version.c.version)).scalars()
        assert list(versions) == [1, 2, 3, 4, 5, 6]


def test_upgrade_from_version_2_flags_accuracy_rows_with_too_few_labels(db_url: str) -> None:
    upgrade(db_url)
    engine = get_engine(db_url)
    performance = db_schema.model_performance
    with engine.begin() as connection:  # back to a version-2 database, with two rows
        connection.exec_driver_sql("ALTER TABLE model_performance DROP COLUMN too_few_labels")
        _back_to_version_4(connection)
        connection.execute(
            db_schema.schema_version.delete().where(db_schema.schema_version.c.version >= 3)
        )
        for lead_time, n in ((30, 12), (60, 400)):
            connection.exec_driver_sql(
                "INSERT INTO model_performance (season, season_year, model_name, model_version, "
                "lead_time_days, rmse, n, computed_at) VALUES ('Long Rains', 2024, 'champion', "
                f"'3', {lead_time}, 800.0, {n}, CURRENT_TIMESTAMP)"
            )
    assert upgrade(db_url) == LATEST_VERSION
    with engine.connect() as connection:
        flags = dict(
            connection.execute(
                sa.select(performance.c.lead_time_days, performance.c.too_few_labels)
            ).all()
        )
    assert flags == {30: True, 60: False}


def test_upgrade_from_version_3_adds_the_forecast_basis_to_rows_already_served(
    db_url: str,
) -> None:
    """A database of the release before the blend: its published rows gain ``basis`` and
    ``normal_kg_per_ha`` (null: scored before either existed), on PostgreSQL in the existing
    partition too; the view serves them; realized accuracy gains the normal's columns."""
    upgrade(db_url)
    engine = get_engine(db_url)
    added = {
        "predictions": ("basis", "normal_kg_per_ha"),
        "model_performance": ("normal_rmse", "mean_forecast", "mean_actual"),
    }
    with engine.begin() as connection:  # back to a version-3 database with a served row
        _back_to_version_4(connection)
        connection.exec_driver_sql("DROP VIEW latest_predictions")
        for table, columns in added.items():
            for column in columns:
                connection.exec_driver_sql(f"ALTER TABLE {table} DROP COLUMN {column}")
        connection.execute(
            db_schema.schema_version.delete().where(db_schema.schema_version.c.version >= 4)
        )
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(
                "CREATE TABLE predictions_20250410 PARTITION OF predictions "
                "FOR VALUES IN ('2025-04-10')"
            )
        connection.exec_driver_sql(
            "INSERT INTO predictions (run_date, plot_id, season_year, season, model_name, "
            "model_version, predicted_yield_kg_per_ha, run_id, scored_at) VALUES "
            "('2025-04-10', 7, 2025, 'Long Rains', 'champion', '3', 1234.5, 'old', "
            "CURRENT_TIMESTAMP)"
        )
    assert upgrade(db_url) == LATEST_VERSION
    inspector = sa.inspect(engine)
    for table, columns in added.items():
        assert set(columns) <= {c["name"] for c in inspector.get_columns(table)}
    with engine.connect() as connection:
        served = connection.exec_driver_sql(
            "SELECT plot_id, predicted_yield_kg_per_ha, basis, normal_kg_per_ha "
            "FROM latest_predictions"
        ).all()
        if connection.dialect.name == "postgresql":
            partition = {c["name"] for c in inspector.get_columns("predictions_20250410")}
            assert {"basis", "normal_kg_per_ha"} <= partition
    assert [tuple(row) for row in served] == [(7, 1234.5, None, None)]


VERSION_6_COLUMNS = {
    "predictions": ("plot_normal_kg_per_ha",),
    "drift_reports": ("signal", "outside_training_share", "current_mean", "reference_mean"),
}


def _back_to_version_5(connection: sa.Connection) -> None:
    """Undo migration 6: no plot normal, no drift signals, the view of version 4's columns."""
    connection.exec_driver_sql("DROP VIEW latest_predictions")
    for table, columns in VERSION_6_COLUMNS.items():
        for column in columns:
            connection.exec_driver_sql(f"ALTER TABLE {table} DROP COLUMN {column}")
    connection.execute(
        db_schema.schema_version.delete().where(db_schema.schema_version.c.version == 6)
    )
    through_normal = db_schema.PREDICTION_COLUMNS.index("normal_kg_per_ha") + 1
    connection.exec_driver_sql(
        db_schema.latest_predictions_view(db_schema.PREDICTION_COLUMNS[:through_normal])
    )


def test_upgrade_from_version_5_adds_the_plot_normal_and_drift_signals(db_url: str) -> None:
    """A database of the release with the county bulletins: its served rows gain ``plot_normal_kg_per_ha``
    (null: their drivers were explained from the model's baseline), on PostgreSQL in the
    existing partition too, and the view serves it; drift rows gain their signal, the share
    outside the training range and both means (null for rows written before)."""
    upgrade(db_url)
    engine = get_engine(db_url)
    with engine.begin() as connection:  # back to a version-5 database with a served row
        _back_to_version_5(connection)
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(
                "CREATE TABLE predictions_20250410 PARTITION OF predictions "
                "FOR VALUES IN ('2025-04-10')"
            )
        connection.exec_driver_sql(
            "INSERT INTO predictions (run_date, plot_id, season_year, season, model_name, "
            "model_version, predicted_yield_kg_per_ha, run_id, scored_at, basis, "
            "normal_kg_per_ha) VALUES ('2025-04-10', 7, 2025, 'Long Rains', 'champion', '3', "
            "1234.5, 'old', CURRENT_TIMESTAMP, 'model', 1500.0)"
        )
        connection.exec_driver_sql(
            "INSERT INTO drift_reports (run_date, feature, statistic, value, threshold, drifted, "
            "status, n_current, n_reference) VALUES ('2025-04-10', 'precip_total', 'psi', 0.9, "
            "0.25, true, 'drifted', 500, 900)"
        )
    assert upgrade(db_url) == LATEST_VERSION
    inspector = sa.inspect(engine)
    for table, columns in VERSION_6_COLUMNS.items():
        assert set(columns) <= {c["name"] for c in inspector.get_columns(table)}
    with engine.connect() as connection:
        served = connection.exec_driver_sql(
            "SELECT plot_id, normal_kg_per_ha, plot_normal_kg_per_ha FROM latest_predictions"
        ).all()
        drift = connection.exec_driver_sql(
            "SELECT feature, drifted, signal, outside_training_share FROM drift_reports"
        ).all()
        if connection.dialect.name == "postgresql":
            partition = {c["name"] for c in inspector.get_columns("predictions_20250410")}
            assert "plot_normal_kg_per_ha" in partition
    assert [tuple(row) for row in served] == [(7, 1500.0, None)]
    assert [tuple(row) for row in drift] == [("precip_total", True, None, None)]


def _back_to_version_4(connection: sa.Connection) -> None:
    """Undo migrations 6 and 5: no county tables, no view of them, no record of the steps."""
    _back_to_version_5(connection)
    connection.exec_driver_sql("DROP VIEW latest_county_forecasts")
    connection.exec_driver_sql("DROP TABLE county_forecasts")
    connection.exec_driver_sql("DROP TABLE county_skill")
    connection.execute(
        db_schema.schema_version.delete().where(db_schema.schema_version.c.version == 5)
    )


def test_upgrade_from_version_4_adds_the_county_tables_and_keeps_what_is_served(
    db_url: str,
) -> None:
    upgrade(db_url)
    engine = get_engine(db_url)
    replace_partition(engine, NIGHT, [predictions_batch(NIGHT, range(1, 4))])
    with engine.begin() as connection:
        _back_to_version_4(connection)
    assert "county_forecasts" not in sa.inspect(engine).get_table_names()

    assert upgrade(db_url) == LATEST_VERSION == 6
    inspector = sa.inspect(engine)
    assert {"county_forecasts", "county_skill"} <= set(inspector.get_table_names())
    assert "latest_county_forecasts" in inspector.get_view_names()
    columns = {c["name"] for c in inspector.get_columns("latest_county_forecasts")}
    assert columns == {column.name for column in db_schema.county_forecasts.columns}
    with engine.connect() as connection:
        assert count_night(connection) == 3


@pytest.mark.postgres
def test_predictions_is_list_partitioned_by_run_date_on_postgres(postgres_db: str) -> None:
    upgrade(postgres_db)
    with get_engine(postgres_db).connect() as connection:
        strategy, key = connection.exec_driver_sql(
            "SELECT p.partstrat, a.attname FROM pg_partitioned_table p "
            "JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0] "
            "WHERE p.partrelid = 'predictions'::regclass"
        ).one()
    assert (strategy, key) == ("l", "run_date")


@pytest.mark.postgres
def test_a_published_partition_has_planner_statistics(postgres_db: str) -> None:
    upgrade(postgres_db)
    engine = get_engine(postgres_db)
    replace_partition(engine, NIGHT, [predictions_batch(NIGHT, range(1, 20_001))])
    with engine.connect() as connection:
        distinct_plots = connection.exec_driver_sql(
            "SELECT n_distinct FROM pg_stats "
            "WHERE tablename = 'predictions_20250410' AND attname = 'plot_id'"
        ).scalar()
        # A join of some plots (as the API's batch lookup) must be planned as index lookups.
        plan = connection.exec_driver_sql(
            "EXPLAIN SELECT p.* FROM generate_series(1, 6400, 100) AS r(plot_id) "
            "JOIN predictions p ON p.plot_id = r.plot_id"
        ).scalars()
    assert distinct_plots == -1  # every row a different plot; None before ANALYZE
    assert "Seq Scan on predictions_20250410" not in "\n".join(plan)


def test_newer_schema_than_the_code_is_refused(engine: sa.Engine, db_url: str) -> None:
    with engine.begin() as connection:
        connection.execute(
            db_schema.schema_version.insert().values(version=99, applied_at=dt.datetime.now(dt.UTC))
        )
    with pytest.raises(DatabaseError, match="version 99, newer than this code"):
        upgrade(db_url)


def test_latest_predictions_serves_the_newest_champion_row(engine: sa.Engine) -> None:
    replace_partition(engine, OTHER_NIGHT, [predictions_batch(OTHER_NIGHT, [1, 2], base_yield=100)])
    newest = [
        predictions_batch(NIGHT, [1], base_yield=500),
        predictions_batch(NIGHT, [1, 2], "challenger", base_yield=900),
    ]
    replace_partition(engine, NIGHT, newest)
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(
            "SELECT plot_id, model_name, model_version, predicted_yield_kg_per_ha "
            "FROM latest_predictions ORDER BY plot_id"
        ).all()
    # Plot 2's newest row is a challenger's (shadow): the view keeps its older champion row.
    assert [tuple(row) for row in rows] == [
        (1, "champion", "3", 501.0),
        (2, "champion", "3", 102.0),
    ]


# --- the loader ----------------------------------------------------------------------------


def test_values_round_trip_exactly(engine: sa.Engine) -> None:
    batch = predictions_batch(NIGHT, [0, 3, 4, 5, 2**31 - 1])
    assert replace_partition(engine, NIGHT, pa.Table.from_batches([batch])) == 5
    with engine.connect() as connection:
        stored = connection.execute(
            sa.select(db_schema.predictions).order_by(db_schema.predictions.c.plot_id)
        ).all()
    expected = batch.to_pylist()
    for row, want in zip(stored, expected, strict=True):
        got = row._asdict()
        assert got.pop("top_drivers") == json.loads(want.pop("top_drivers"))
        scored_at = got.pop("scored_at")  # naive UTC on SQLite
        if scored_at.tzinfo is not None:
            scored_at = scored_at.astimezone(dt.UTC).replace(tzinfo=None)
        assert scored_at == want.pop("scored_at")
        assert got == want


def test_a_second_load_of_a_date_replaces_only_that_date(engine: sa.Engine) -> None:
    assert replace_partition(engine, OTHER_NIGHT, [predictions_batch(OTHER_NIGHT, range(5))]) == 5
    assert replace_partition(engine, NIGHT, [predictions_batch(NIGHT, range(10))]) == 10
    second = [predictions_batch(NIGHT, range(3), base_yield=7000), predictions_batch(NIGHT, [42])]
    assert replace_partition(engine, NIGHT, second) == 4
    found = yields_by_date(engine)
    assert found[NIGHT] == {0: 7000.0, 1: 7001.0, 2: 7002.0, 42: 2042.0}
    assert found[OTHER_NIGHT] == {i: 2000.0 + i for i in range(5)}
    assert not staging_exists(engine, NIGHT)


def test_a_load_failing_midway_leaves_the_old_rows(engine: sa.Engine) -> None:
    replace_partition(engine, NIGHT, [predictions_batch(NIGHT, range(6))])
    with pytest.raises(RuntimeError, match="crashed midway"):
        replace_partition(
            engine, NIGHT, failing_batches(predictions_batch(NIGHT, range(3), base_yield=1))
        )
    assert yields_by_date(engine)[NIGHT] == {i: 2000.0 + i for i in range(6)}
    assert not staging_exists(engine, NIGHT)
    assert replace_partition(engine, NIGHT, [predictions_batch(NIGHT, range(2), base_yield=9)]) == 2
    assert yields_by_date(engine)[NIGHT] == {0: 9.0, 1: 10.0}


def test_a_retried_shard_replaces_what_it_staged(engine: sa.Engine) -> None:
    replace_partition(engine, NIGHT, [predictions_batch(NIGHT, range(1000, 1010))])
    ids = np.arange(200)
    shards = shard_of(ids, 3)
    shard_ids = [ids[shards == shard].tolist() for shard in range(3)]
    assert stage(engine, NIGHT, [predictions_batch(NIGHT, shard_ids[0])], 0, 3) == len(shard_ids[0])
    with pytest.raises(RuntimeError, match="crashed midway"):
        stage(engine, NIGHT, failing_batches(predictions_batch(NIGHT, shard_ids[1])), 1, 3)
    # Shard 1 failed and is retried, shard 0 is retried with other values; nothing is public yet.
    stage(engine, NIGHT, [predictions_batch(NIGHT, shard_ids[1], base_yield=1)], 1, 3)
    stage(engine, NIGHT, [predictions_batch(NIGHT, shard_ids[0], base_yield=5)], 0, 3)
    assert set(yields_by_date(engine)[NIGHT]) == set(range(1000, 1010))
    stage(engine, NIGHT, [predictions_batch(NIGHT, shard_ids[2], base_yield=9)], 2, 3)
    assert publish(engine, NIGHT) == 200
    base = {0: 5.0, 1: 1.0, 2: 9.0}
    assert yields_by_date(engine)[NIGHT] == {
        int(i): base[int(s)] + i for i, s in zip(ids, shards, strict=True)
    }


def test_shards_staged_in_parallel_publish_together(engine: sa.Engine) -> None:
    ids = np.arange(2_000)
    shards = shard_of(ids, 4)
    errors: list[BaseException] = []

    def stage_shard(shard: int) -> None:
        try:
            stage(
                engine, NIGHT, [predictions_batch(NIGHT, ids[shards == shard].tolist())], shard, 4
            )
        except BaseException as error:  # handed to the test thread
            errors.append(error)

    workers = [threading.Thread(target=stage_shard, args=(shard,)) for shard in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    assert publish(engine, NIGHT) == 2_000
    assert yields_by_date(engine)[NIGHT] == {int(i): 2000.0 + i for i in ids}


def test_publish_refuses_nothing_or_part_of_a_run(engine: sa.Engine) -> None:
    replace_partition(engine, NIGHT, [predictions_batch(NIGHT, range(4))])
    with pytest.raises(DatabaseError, match=f"nothing is staged for {NIGHT}"):
        publish(engine, NIGHT)
    ids = np.arange(50)
    in_shard_2 = ids[shard_of(ids, 4) == 2].tolist()
    stage(engine, NIGHT, [predictions_batch(NIGHT, in_shard_2)], shard=2, shards=4)
    with pytest.raises(DatabaseError, match=r"shards \[0, 1, 3\] of 4 are not staged"):
        publish(engine, NIGHT)
    with pytest.raises(DatabaseError, match="staged in 4 shards, not 2"):
        stage(engine, NIGHT, [predictions_batch(NIGHT, [])], shard=0, shards=2)
    assert yields_by_date(engine)[NIGHT] == {i: 2000.0 + i for i in range(4)}


def test_stage_refuses_rows_of_another_date_or_shard(engine: sa.Engine) -> None:
    with pytest.raises(ValueError, match="other run dates"):
        stage(engine, NIGHT, [predictions_batch(OTHER_NIGHT, [1])])
    ids = np.arange(20)
    with pytest.raises(ValueError, match="other shards than 0 of 2"):
        stage(engine, NIGHT, [predictions_batch(NIGHT, ids.tolist())], shard=0, shards=2)
    with pytest.raises(ValueError, match="lacks columns"):
        stage(engine, NIGHT, [predictions_batch(NIGHT, [1]).drop_columns(["run_id"])])
    with pytest.raises(ValueError, match="both shard and shards"):
        stage(engine, NIGHT, [], shard=1)


def test_duplicate_rows_fail_publish_and_keep_the_old_rows(engine: sa.Engine) -> None:
    replace_partition(engine, NIGHT, [predictions_batch(NIGHT, range(3))])
    twice = [predictions_batch(NIGHT, [7, 8]), predictions_batch(NIGHT, [8])]
    with pytest.raises(DatabaseError, match=f"publishing predictions for {NIGHT} failed"):
        replace_partition(engine, NIGHT, twice)
    assert yields_by_date(engine)[NIGHT] == {i: 2000.0 + i for i in range(3)}


@pytest.mark.parametrize("shards", [1, 8, 200])
def test_sql_shard_expression_equals_numpy(engine: sa.Engine, shards: int) -> None:
    ids = np.concatenate([np.arange(300), [65_535, 65_536, 2**31 - 2, 2**31 - 1]])
    replace_partition(engine, NIGHT, [predictions_batch(NIGHT, ids.tolist())])
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text(f"SELECT plot_id, {shard_sql('plot_id', shards)} FROM predictions ORDER BY 1")
        ).all()
    np.testing.assert_array_equal([row[0] for row in rows], ids)
    np.testing.assert_array_equal([row[1] for row in rows], shard_of(ids, shards))


def test_readers_see_the_old_rows_until_publish_commits_on_sqlite(sqlite_db: str) -> None:
    upgrade(sqlite_db)
    engine = get_engine(sqlite_db)
    replace_partition(engine, NIGHT, [predictions_batch(NIGHT, range(10))])
    stage(engine, NIGHT, [predictions_batch(NIGHT, range(4))])
    with engine.connect() as reader, reader.begin():
        assert count_night(reader) == 10
        assert publish(engine, NIGHT) == 4  # WAL: the writer does not wait for the reader
        assert count_night(reader) == 10  # the reader's snapshot: old rows, not a mix
    with engine.connect() as reader:
        assert count_night(reader) == 4


@pytest.mark.postgres
def test_readers_see_old_or_new_rows_while_publish_swaps_on_postgres(postgres_db: str) -> None:
    upgrade(postgres_db)
    engine = get_engine(postgres_db)
    replace_partition(engine, NIGHT, [predictions_batch(NIGHT, range(10))])
    stage(engine, NIGHT, [predictions_batch(NIGHT, range(4))])
    reader_engine = sa.create_engine(postgres_db, isolation_level="REPEATABLE READ")
    published: list[int | BaseException] = []

    def run_publish() -> None:
        try:
            published.append(publish(engine, NIGHT, lock_timeout_s=60))
        except BaseException as error:  # handed to the test thread
            published.append(error)

    def publish_waits_for_the_reader() -> bool:
        with reader_engine.connect() as monitor:
            waiting = monitor.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE wait_event_type = 'Lock' AND query LIKE 'DROP TABLE%'"
                )
            )
            return waiting.scalar_one() == 1

    try:
        with reader_engine.connect() as reader, reader.begin():
            assert count_night(reader) == 10
            publisher = threading.Thread(target=run_publish)
            publisher.start()
            wait_until(publish_waits_for_the_reader, "publish waiting for the reader's lock")
            assert count_night(reader) == 10  # mid-publish: still the old rows
        publisher.join()
        assert published == [4]
        with reader_engine.connect() as reader:
            assert count_night(reader) == 4
    finally:
        reader_engine.dispose()


@pytest.mark.postgres
def test_publish_that_cannot_lock_fails_clearly_and_a_retry_succeeds(postgres_db: str) -> None:
    upgrade(postgres_db)
    engine = get_engine(postgres_db)
    replace_partition(engine, NIGHT, [predictions_batch(NIGHT, range(10))])
    stage(engine, NIGHT, [predictions_batch(NIGHT, range(4), base_yield=1)])
    with engine.connect() as reader, reader.begin():
        assert count_night(reader) == 10  # holds a lock on predictions until the block ends
        with pytest.raises(DatabaseError, match="lock timeout") as raised:
            publish(engine, NIGHT, lock_timeout_s=0.2)
        assert "\n" not in str(raised.value)
    assert yields_by_date(engine)[NIGHT] == {i: 2000.0 + i for i in range(10)}
    assert publish(engine, NIGHT) == 4  # staged rows, key and CHECK rebuilt: no leftovers
    assert yields_by_date(engine)[NIGHT] == {i: 1.0 + i for i in range(4)}
    with engine.connect() as connection:
        indexes = connection.exec_driver_sql(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'predictions_20250410' ORDER BY 1"
        ).scalars()
        assert list(indexes) == [
            "predictions_20250410_ix_predictions_plot",
            "predictions_20250410_pkey",
        ]
        options = connection.exec_driver_sql(
            "SELECT reloptions FROM pg_class WHERE relname = 'predictions_20250410'"
        )
        assert options.scalar_one() is None  # autovacuum back on for the partition


def _load_until_killed(url: str, first_batch_written: Connection) -> None:
    """In a forked child: stage a first batch, report it, then block until killed."""

    def batches() -> Iterator[pa.RecordBatch]:
        yield predictions_batch(NIGHT, range(100), base_yield=1)
        yield predictions_batch(NIGHT, range(100, 200), base_yield=1)
        first_batch_written.send(True)
        threading.Event().wait()  # never set: the parent kills this process
        yield predictions_batch(NIGHT, range(200, 300), base_yield=1)

    stage(get_engine(url), NIGHT, batches())


@pytest.mark.postgres
def test_a_loader_killed_midway_leaves_the_old_rows_and_a_rerun_succeeds(postgres_db: str) -> None:
    upgrade(postgres_db)
    replace_partition(get_engine(postgres_db), NIGHT, [predictions_batch(NIGHT, range(6))])
    dispose_engines()  # the forked child opens its own connections
    fork = multiprocessing.get_context("fork")
    parent_end, child_end = fork.Pipe()
    child = fork.Process(target=_load_until_killed, args=(postgres_db, child_end))
    child.start()
    try:
        assert parent_end.poll(60) and parent_end.recv() is True
    finally:
        child.kill()
        child.join()
    engine = get_engine(postgres_db)
    assert yields_by_date(engine)[NIGHT] == {i: 2000.0 + i for i in range(6)}
    with pytest.raises(DatabaseError, match="nothing is staged"):
        publish(engine, NIGHT)
    assert replace_partition(engine, NIGHT, [predictions_batch(NIGHT, range(3), base_yield=4)]) == 3
    assert yields_by_date(engine)[NIGHT] == {i: 4.0 + i for i in range(3)}


# --- small tables, baseline, errors, CLI ---------------------------------------------------


def test_replace_rows_replaces_only_the_matching_rows(engine: sa.Engine) -> None:
    drift = db_schema.drift_reports

    def report(run_date: dt.date, feature: str, county: str | None, value: float) -> dict[str, Any]:
        return {
            "run_date": run_date,
            "feature": feature,
            "county": county,
            "statistic": "psi",
            "value": value,
            "threshold": 0.2,
            "drifted": value > 0.2,
            "status": "ok",
            "n_current": 100,
            "n_reference": 1000,
        }

    replace_rows(engine, drift, {"run_date": OTHER_NIGHT}, [report(OTHER_NIGHT, "ndvi", None, 0.1)])
    first = [report(NIGHT, "ndvi", None, 0.1), report(NIGHT, "rain", "Nakuru", 0.3)]
    assert replace_rows(engine, drift, {"run_date": NIGHT}, first) == 2
    second = [{k: v for k, v in report(NIGHT, "gdd", None, 0.05).items() if k != "run_date"}]
    assert replace_rows(engine, drift, {"run_date": NIGHT}, second) == 1
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(drift.c.run_date, drift.c.feature, drift.c.drifted).order_by(drift.c.run_date)
        ).all()
    assert [tuple(row) for row in rows] == [(OTHER_NIGHT, "ndvi", False), (NIGHT, "gdd", False)]
    with pytest.raises(ValueError, match="does not match"):
        replace_rows(engine, drift, {"run_date": NIGHT}, [report(OTHER_NIGHT, "x", None, 0.0)])


def test_bare_ingest_loads_every_row_and_leaves_no_table(engine: sa.Engine) -> None:
    batches = [predictions_batch(NIGHT, range(500)), predictions_batch(NIGHT, range(500, 700))]
    tables_before = set(sa.inspect(engine).get_table_names())
    assert bare_ingest(engine, "bench_bare_ingest", batches) == 700
    assert set(sa.inspect(engine).get_table_names()) == tables_before


@pytest.mark.postgres
def test_missing_database_is_one_clear_line(postgres_server: str) -> None:
    url = postgres_server.rsplit("/", 1)[0] + "/no_such_db"
    with pytest.raises(DatabaseError) as raised:
        upgrade(url)
    message = str(raised.value)
    assert "\n" not in message
    assert 'database "no_such_db" does not exist' in message and "/no_such_db" in message
    dispose_engines()


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nuru_yield", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
    )


def test_cli_db_upgrade_twice_on_sqlite(nuru_home: Path, sqlite_db: str) -> None:
    env = {"NURU_HOME": str(nuru_home)}
    for _ in range(2):
        result = run_cli("db", "upgrade", env=env)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"database schema at version {LATEST_VERSION}"
    assert "latest_predictions" in sa.inspect(get_engine(sqlite_db)).get_view_names()


def test_cli_db_upgrade_unreachable_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()  # nothing listens there
    monkeypatch.setenv(
        "PREDICTIONS_DB_URL", f"postgresql+psycopg://nuru:secret@127.0.0.1:{port}/nuru"
    )
    reset_settings()
    with pytest.raises(SystemExit) as exited:
        main(["db", "upgrade"])
    assert exited.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: connecting to the predictions database")
    assert f"127.0.0.1:{port}/nuru" in lines[0] and "secret" not in lines[0]
    dispose_engines()
