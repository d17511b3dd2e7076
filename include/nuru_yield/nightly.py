"""The sharded night: one shape for every nightly step that builds a partition of the lake in
K shards — features and scoring, and raw ingestion next (docs/DESIGN.md, "Scale-out").

A nightly step is three library functions with one signature each:

* ``prepare(run_date, *, lake=None, settings=None, shards=None, dag_run_id=None, …) -> Plan``
  fixes the run in a small frozen plan deriving from :class:`NightPlan` (a new run id, the
  run date, K, and whatever every shard must agree on), clears what an earlier attempt
  staged (:func:`clear_parts`) and checks what the shards share.
* ``shard(plan, shard, *, lake=None, settings=None, **resources) -> ShardResult`` reads and
  computes its slice (``hash(plot_id) mod K``, :mod:`nuru_yield.sharding`) and stages it
  in the plan's :attr:`NightPlan.parts_dir`: parquet parts written with a :func:`stamped`
  schema and, where publish needs more than the result, a report (:func:`write_report`),
  last — its presence means the shard is done. A rerun of one shard replaces its parts.
  ``resources`` are what a process running several shards loads once (:attr:`Night.resources`).
* ``publish(plan, results, *, lake=None, settings=None) -> Result`` (``results``: every
  shard's, in shard order) assembles the parts (:func:`assemble`, which refuses parts of
  another run; or :func:`place` for a part with a destination of its own), makes the
  partition visible in one step, clears the parts and returns a :class:`NightResult`. A
  retried publish of the same run changes nothing.

Each step resolves ``settings``, the lake and any database engine once, at its edge, and
passes them down. The plan, not the shard's own settings, says what all shards must agree on.

One mark of the run that wrote a staged or assembled file: its run id, in the key-value
metadata of a parquet file (:data:`RUN_ID_KEY`, :func:`stamped`, :func:`run_of`) and as the
``run_id`` of a JSON report.

:class:`Night` names a step's functions and types; :func:`run_night` runs a whole night in
one process (``nuru-yield features``, ``nuru-yield score``);
``nuru_yield.orchestration.sharded_night`` wires the same functions as the Airflow tasks
``prepare → shard × K → publish`` of the step's DAG.

Adopting it for a new nightly step (raw ingestion, say):

1. a plan ``@dataclass(frozen=True) class IngestionPlan(NightPlan)`` with ``STEP`` (its name
   in messages) and ``PREFIX`` (the lake prefix of its partition, from
   :mod:`nuru_yield.names`) and its own fields; a shard result deriving from
   :class:`~nuru_yield.steps.StepResult`; a result deriving from :class:`NightResult`
   (:meth:`~NightResult.event_extra`: what its asset event carries besides the night);
2. the three functions with the signatures above, staging through this module;
3. ``INGESTION = Night(IngestionPlan, IngestionShardResult, prepare, shard, publish)`` in
   the step's module;
4. its command calls ``run_night(INGESTION, date, shards=...)``; its DAG file calls
   ``sharded_night("nuru_yield.sources.<module>:INGESTION", shard_task_id=..., outlet=...)``
   inside ``with DAG(...)`` (a DAG of several nights, as ``raw_ingestion``'s plots and
   weather, calls it once in each ``TaskGroup``), scheduled by ``nuru_yield.orchestration``:
   ``nightly_schedule()`` for the first step of the night, ``each_night_of(asset)`` for a
   step that follows another's asset (docs/DESIGN.md, "Scale-out").
"""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from nuru_yield import names
from nuru_yield.config import get_settings
from nuru_yield.errors import LakeError
from nuru_yield.lake import Lake
from nuru_yield.progress import track
from nuru_yield.steps import StepResult

if TYPE_CHECKING:
    import pyarrow as pa

    from nuru_yield.config import Settings

# Parquet key-value metadata: the run that wrote a staged part or an assembled file.
RUN_ID_KEY = "nuru_yield.run_id"
REPORT = "report"
PREPARE_REPORT = "prepare.json"


@dataclass(frozen=True)
class NightPlan(StepResult):
    """What every step of one sharded run shares (passed between Airflow tasks via XCom).

    Subclasses set ``STEP`` (the step's name in messages) and ``PREFIX`` (the lake prefix of
    the partition it builds: the run stages its parts in ``{PREFIX}/_parts/{run_date}/``)."""

    run_id: str
    run_date: dt.date
    shards: int

    STEP: ClassVar[str] = "night"
    PREFIX: ClassVar[str] = "night"

    @staticmethod
    def new_run_id(run_date: dt.date) -> str:
        """A new run's id: its night and 12 random hex digits (``20250615-3f9a…``)."""
        return f"{run_date:%Y%m%d}-{uuid.uuid4().hex[:12]}"

    @property
    def parts_dir(self) -> str:
        """Where this night's shards stage their parts (any run's: prepare clears it)."""
        return names.parts_dir(self.PREFIX, self.run_date)

    def checked(self, shard: int) -> int:
        """``shard``, if it is one of this run's (0 … K-1)."""
        if not 0 <= shard < self.shards:
            raise ValueError(f"shard must be between 0 and {self.shards - 1}, got {shard}")
        return shard

    def part(self, shard: int, name: str = "part", suffix: str = ".parquet") -> str:
        """The lake path of shard ``shard``'s part ``name``."""
        return names.shard_part_path(
            self.PREFIX, self.run_date, self.checked(shard), self.shards, name, suffix
        )

    def parts(self, name: str = "part", suffix: str = ".parquet") -> list[str]:
        """The part ``name`` of every shard, in shard order."""
        return [self.part(shard, name, suffix) for shard in range(self.shards)]

    def report(self, shard: int | None) -> str:
        """The lake path of shard ``shard``'s report, or with None the prepare step's."""
        if shard is None:
            return names.run_part_path(self.PREFIX, self.run_date, PREPARE_REPORT)
        return self.part(shard, REPORT, ".json")


@dataclass(frozen=True)
class NightResult(StepResult):
    """What a sharded run published (the publish step's result)."""

    run_id: str
    run_date: dt.date

    def event_extra(self) -> dict[str, Any]:
        """What the asset event announcing the partition carries besides its partition key
        (the night): a few values a person reads in the asset's events."""
        return {"run_id": self.run_id}


def stamped(schema: pa.Schema, plan: NightPlan) -> pa.Schema:
    """``schema`` marked as written by the plan's run: write staged parts with it."""
    return schema.with_metadata(
        {**(schema.metadata or {}), RUN_ID_KEY.encode(): plan.run_id.encode()}
    )


def run_of(lake: Lake, path: str) -> str | None:
    """The run that wrote a parquet file of the lake (None when absent or not marked)."""
    if not lake.exists(path):
        return None
    run_id = (lake.open_parquet(path).schema_arrow.metadata or {}).get(RUN_ID_KEY.encode())
    return run_id.decode() if run_id else None


def clear_parts(lake: Lake, plan: NightPlan, *, killed_writers: bool = False) -> None:
    """Delete everything staged for the plan's night, by any run: prepare starts clean,
    publish leaves nothing behind. With ``killed_writers``, also the temporary files of
    writers killed mid-write (:meth:`Lake.clear_temporary`): only for a step that holds the
    lock every writer of the night holds (scoring's prepare and publish), since a live
    writer's file would go too."""
    for path in lake.list(plan.parts_dir):
        lake.delete(path)
    if killed_writers:
        lake.clear_temporary(plan.parts_dir)


def write_report(lake: Lake, plan: NightPlan, shard: int | None, payload: Mapping[str, Any]) -> str:
    """Stage a report of shard ``shard`` (None: of the prepare step) for publish, marked
    with the run; its URI. A shard writes it after its other parts."""
    return lake.write_json(plan.report(shard), {"run_id": plan.run_id, **payload})


def read_reports(lake: Lake, plan: NightPlan, *, prepare: bool = False) -> list[dict[str, Any]]:
    """Every shard's report in shard order, after the prepare step's with ``prepare``; all
    of this run. Raises :class:`~nuru_yield.errors.LakeError` naming the steps that staged
    nothing, or the other runs whose reports are there (a stale task that finished late)."""
    wanted: list[int | None] = [*([None] if prepare else []), *range(plan.shards)]
    missing = [shard for shard in wanted if not lake.exists(plan.report(shard))]
    if missing:
        what = "the prepare step" if None in missing else f"shards {missing}"
        raise LakeError(
            f"cannot publish {plan.STEP} {plan.run_date} (run {plan.run_id}): {what} staged "
            "nothing; run them first"
        )
    reports = [lake.read_json(plan.report(shard)) for shard in wanted]
    _refuse_other_runs(lake, plan, {report.get("run_id") for report in reports})
    return reports


def assemble(
    lake: Lake, plan: NightPlan, name: str, destination: str, schema: pa.Schema
) -> tuple[str, int]:
    """``destination``, from every shard's part ``name`` in shard order and marked with the
    run (:meth:`Lake.assemble_parquet`: one part is moved, several are copied row group by
    row group, each shard's rows in row groups of their own); its URI and rows.

    A retry that finds the parts gone and ``destination`` already this run's (moved or
    assembled by an earlier try) takes it as it is. Parts of another run are refused."""
    parts = plan.parts(name)
    present = [part for part in parts if lake.exists(part)]
    if len(present) < len(parts) and run_of(lake, destination) == plan.run_id:
        return lake.uri(destination), lake.open_parquet(destination).metadata.num_rows
    _refuse_other_runs(lake, plan, {run_of(lake, part) for part in present})
    try:
        return lake.assemble_parquet(parts, destination, schema, {RUN_ID_KEY: plan.run_id})
    except LakeError as error:
        raise LakeError(
            f"cannot publish {plan.STEP} {plan.run_date} (run {plan.run_id}): {error}"
        ) from None


def place(lake: Lake, plan: NightPlan, shard: int, name: str, destination: str) -> str:
    """Move shard ``shard``'s part ``name``, a file with a destination of its own (raw
    ingestion's months), into place; its URI. A retry that finds the part gone and
    ``destination`` this run's takes it as it is; a part of another run is refused."""
    part = plan.part(shard, name)
    if not lake.exists(part):
        if run_of(lake, destination) == plan.run_id:
            return lake.uri(destination)
        raise LakeError(
            f"cannot publish {plan.STEP} {plan.run_date} (run {plan.run_id}): shard {shard} "
            f"staged no {name}; rerun it"
        )
    _refuse_other_runs(lake, plan, {run_of(lake, part)})
    return lake.move(part, destination)


def _refuse_other_runs(lake: Lake, plan: NightPlan, run_ids: set[str | None]) -> None:
    others = sorted(str(run_id) for run_id in run_ids - {plan.run_id})
    if others:
        raise LakeError(
            f"cannot publish {plan.STEP} {plan.run_date}: parts of other runs {others} in "
            f"{lake.uri(plan.parts_dir)}; rerun from prepare"
        )


PlanT = TypeVar("PlanT", bound=NightPlan)
ResultT = TypeVar("ResultT", bound=NightResult)


@dataclass(frozen=True)
class Night(Generic[PlanT, ResultT]):
    """One sharded nightly step: its plan and shard result types and its three functions
    (see the module docstring for their signatures).

    ``hold``: a context held around the whole night when one process runs it (scoring: the
    run date's lock). ``resources``: what that process loads once and hands every shard as
    keyword arguments (scoring: its models); an Airflow shard task, a process of its own,
    loads them itself."""

    plan: type[PlanT]
    shard_result: type[StepResult]
    prepare: Callable[..., PlanT]
    shard: Callable[..., StepResult]
    publish: Callable[..., ResultT]
    hold: Callable[[dt.date, Settings], contextlib.AbstractContextManager[object]] | None = None
    resources: Callable[[PlanT, Settings], Mapping[str, Any]] | None = None


def run_night(
    night: Night[PlanT, ResultT],
    run_date: dt.date,
    *,
    lake: Lake | None = None,
    settings: Settings | None = None,
    shards: int | None = None,
    **options: Any,
) -> ResultT:
    """Prepare, run every shard and publish, in this process (the steps' own checks and
    locks apply as in Airflow). ``options``: keyword arguments of the step's prepare beyond
    the common ones (``nuru-yield ingest``: the files given on the command line)."""
    settings = settings or get_settings()
    lake = lake or Lake.from_settings(settings)
    held = night.hold(run_date, settings) if night.hold else contextlib.nullcontext()
    with held:
        plan = night.prepare(run_date, lake=lake, settings=settings, shards=shards, **options)
        resources = night.resources(plan, settings) if night.resources else {}
        results: Sequence[StepResult] = [
            night.shard(plan, shard, lake=lake, settings=settings, **resources)
            for shard in track(range(plan.shards), f"{plan.STEP} {run_date}")
        ]
        return night.publish(plan, results, lake=lake, settings=settings)
