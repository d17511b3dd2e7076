"""The sharded night (``nuru_yield.nightly``) on a toy step: one run in one process, the run's
mark on what it stages, assembly that refuses another run's parts, a retried publish, and
reports that name what is missing."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pytest

from nuru_yield.config import Settings
from nuru_yield.errors import LakeError
from nuru_yield.lake import Lake
from nuru_yield.nightly import (
    Night,
    NightPlan,
    NightResult,
    assemble,
    clear_parts,
    read_reports,
    run_night,
    run_of,
    stamped,
    write_report,
)
from nuru_yield.sharding import shard_of
from nuru_yield.steps import StepResult

NIGHT = dt.date(2025, 6, 15)
SCHEMA = pa.schema([pa.field("plot_id", pa.int64())])
PLOT_IDS = list(range(50))
DESTINATION = "counts/2025-06-15/plots.parquet"


@dataclass(frozen=True)
class CountPlan(NightPlan):
    STEP = "counting"
    PREFIX = "counts"


@dataclass(frozen=True)
class CountShard(StepResult):
    shard: int
    rows: int
    offset: int


@dataclass(frozen=True)
class Counted(NightResult):
    rows: int
    uri: str


def prepare(
    run_date: dt.date,
    *,
    lake: Lake | None = None,
    settings: Settings | None = None,
    shards: int | None = None,
    dag_run_id: str | None = None,
) -> CountPlan:
    assert lake is not None
    plan = CountPlan(CountPlan.new_run_id(run_date), run_date, shards or 3)
    clear_parts(lake, plan)
    return plan


def shard(
    plan: CountPlan,
    shard: int,
    *,
    lake: Lake | None = None,
    settings: Settings | None = None,
    offset: int = 0,
) -> CountShard:
    assert lake is not None
    ids = [i for i in PLOT_IDS if shard_of([i], plan.shards)[0] == shard]
    lake.write_parquet(plan.part(shard), pa.table({"plot_id": ids}, schema=stamped(SCHEMA, plan)))
    write_report(lake, plan, shard, {"rows": len(ids)})
    return CountShard(shard, len(ids), offset)


def publish(
    plan: CountPlan,
    results: Sequence[CountShard],
    *,
    lake: Lake | None = None,
    settings: Settings | None = None,
) -> Counted:
    assert lake is not None
    reports = read_reports(lake, plan)
    uri, rows = assemble(lake, plan, "part", DESTINATION, SCHEMA)
    assert rows == sum(r["rows"] for r in reports) == sum(r.rows for r in results)
    clear_parts(lake, plan)
    return Counted(plan.run_id, plan.run_date, rows, uri)


def test_run_night_runs_every_shard_in_one_process_and_publishes_one_marked_file() -> None:
    lake = Lake.from_settings()
    events: list[str] = []

    @contextlib.contextmanager
    def hold(run_date: dt.date, settings: Settings) -> Iterator[None]:
        events.append(f"hold {run_date}")
        yield
        events.append("release")

    def resources(plan: CountPlan, settings: Settings) -> dict[str, Any]:
        events.append("resources")
        return {"offset": 7}

    seen: list[CountShard] = []

    def recording_publish(plan: CountPlan, results: Sequence[CountShard], **kwargs: Any) -> Any:
        seen.extend(results)
        return publish(plan, results, **kwargs)

    night = Night(CountPlan, CountShard, prepare, shard, recording_publish, hold, resources)

    result = run_night(night, NIGHT, lake=lake, shards=4)

    assert events == ["hold 2025-06-15", "resources", "release"]
    assert [(r.shard, r.offset) for r in seen] == [(0, 7), (1, 7), (2, 7), (3, 7)]
    assert result.rows == len(PLOT_IDS) and result.uri == lake.uri(DESTINATION)
    assert sorted(lake.read_parquet(DESTINATION)["plot_id"].to_pylist()) == PLOT_IDS
    assert run_of(lake, DESTINATION) == result.run_id
    assert lake.list("counts/_parts") == []
    assert result.event_extra() == {"run_id": result.run_id}


def test_assemble_refuses_a_part_of_another_run() -> None:
    lake = Lake.from_settings()
    old = prepare(NIGHT, lake=lake, shards=2)
    shard(old, 0, lake=lake)
    new = prepare(NIGHT, lake=lake, shards=2)  # clears what `old` staged
    assert lake.list("counts/_parts") == []
    results = [shard(old, 0, lake=lake), shard(new, 1, lake=lake)]  # `old` finishing late
    with pytest.raises(LakeError, match=rf"parts of other runs \['{old.run_id}'\]"):
        assemble(lake, new, "part", DESTINATION, SCHEMA)
    with pytest.raises(
        LakeError, match=rf"counting 2025-06-15: parts of other runs \['{old.run_id}"
    ):
        publish(new, results, lake=lake)
    assert not lake.exists(DESTINATION)


def test_a_retried_publish_takes_the_moved_part_as_it_is_and_another_run_does_not() -> None:
    lake = Lake.from_settings()
    plan = prepare(NIGHT, lake=lake, shards=1)
    results = [shard(plan, 0, lake=lake)]
    # The first try moved the single part into place, then failed before clearing the parts.
    assert assemble(lake, plan, "part", DESTINATION, SCHEMA) == (lake.uri(DESTINATION), 50)
    assert not lake.exists(plan.part(0))
    assert assemble(lake, plan, "part", DESTINATION, SCHEMA) == (lake.uri(DESTINATION), 50)

    other = prepare(NIGHT, lake=lake, shards=1)  # never ran its shard: the file is not its own
    with pytest.raises(LakeError, match=r"\(run .*\): cannot assemble .*shards \[0\] are missing"):
        assemble(lake, other, "part", DESTINATION, SCHEMA)
    assert results[0].rows == 50


def test_reports_name_what_staged_nothing_and_refuse_other_runs() -> None:
    lake = Lake.from_settings()
    plan = prepare(NIGHT, lake=lake, shards=3)
    shard(plan, 1, lake=lake)
    with pytest.raises(LakeError, match=r"\(run .*\): shards \[0, 2\] staged nothing"):
        read_reports(lake, plan)
    with pytest.raises(LakeError, match="the prepare step staged nothing"):
        read_reports(lake, plan, prepare=True)
    write_report(lake, plan, None, {"checked": True})
    shard(plan, 0, lake=lake)
    lake.write_json(plan.report(2), {"run_id": "someone-else", "rows": 0})
    with pytest.raises(LakeError, match=r"parts of other runs \['someone-else'\]"):
        read_reports(lake, plan, prepare=True)
    shard(plan, 2, lake=lake)
    prepared, *shards = read_reports(lake, plan, prepare=True)
    assert prepared == {"run_id": plan.run_id, "checked": True}
    assert [report["rows"] for report in shards] == [
        sum(1 for i in PLOT_IDS if shard_of([i], 3)[0] == s) for s in range(3)
    ]


def test_a_plan_names_its_parts_under_its_night_and_refuses_other_shards() -> None:
    plan = CountPlan("20250615-abc", NIGHT, 2)
    assert plan.parts_dir == "counts/_parts/2025-06-15"
    assert plan.parts() == [
        "counts/_parts/2025-06-15/part-0000-of-0002.parquet",
        "counts/_parts/2025-06-15/part-0001-of-0002.parquet",
    ]
    assert plan.report(None) == "counts/_parts/2025-06-15/prepare.json"
    assert plan.report(1) == "counts/_parts/2025-06-15/report-0001-of-0002.json"
    with pytest.raises(ValueError, match="shard must be between 0 and 1, got 2"):
        plan.part(2)
    assert CountPlan.from_xcom(plan.xcom()) == plan
