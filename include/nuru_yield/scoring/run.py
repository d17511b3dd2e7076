"""One scoring run for a run date: prepare → K shards → publish (docs/DESIGN.md, "Scale-out").

* :func:`prepare_run` checks the features partition, resolves ``@champion`` (and
  ``@challenger``, if set) to versions **once**, clears what an earlier attempt left staged
  and records the run in ``scoring_runs``. Its :class:`ScoringPlan` (small, JSON) is what
  the shards receive, so every shard loads the same versions even if an alias moves
  meanwhile.
* :func:`score_shard` streams the features file in record batches, keeps the plots that
  hash to its shard, scores them with each model, stages the rows in the database (binary
  COPY, in a background thread so the load overlaps the next batch's scoring) and writes its
  part of the prediction log. Memory is bounded by the batch size, not the number of plots.
* :func:`publish_run` assembles the log parts into one file named after the run, swaps the
  staged rows in as the run date's partition (atomic), then moves that file into place as
  ``predictions.parquet`` and closes the run's ``scoring_runs`` row. The log therefore
  never shows rows that are not served: a run that dies before the swap leaves the old
  partition and the old log; one that dies between the swap and the move leaves its file,
  which a retried publish or the next run moves into place (:func:`close_abandoned_runs`).

Each step holds the run date's lock (:mod:`nuru_yield.db.locks`): exclusively to open or
publish a run, shared while shards stage. A second run of the same night waits at most
``SCORING_LOCK_WAIT_SECONDS``, then refuses with one line naming the holder. The next
run closes a ``running`` row whose process is gone — no process holds its date's lock —
as ``failed`` (or ``success``, when its swap had gone through).

A night without any plot-season in progress is recorded as ``no_plots_in_progress`` and
raises :class:`~nuru_yield.errors.NoPlotsInProgressError`: never a successful run of zero
rows.

:func:`score` runs the three steps in one process (``nuru-yield score``); the
``batch_scoring`` DAG runs them as tasks.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import sqlalchemy as sa

from nuru_yield.config import get_settings
from nuru_yield.db.engine import database_errors, get_engine, writer
from nuru_yield.db.loader import discard, publish, stage, staged_rows
from nuru_yield.db.locks import is_free, run_date_lock
from nuru_yield.db.migrations import upgrade
from nuru_yield.db.schema import predictions, scoring_runs
from nuru_yield.errors import (
    DataValidationError,
    LakeError,
    MissingInputError,
    NoPlotsInProgressError,
    NuruError,
)
from nuru_yield.features.columns import OUTPUT_SCHEMA
from nuru_yield.lake import Lake, part_row_groups
from nuru_yield.models.loaded import load_model
from nuru_yield.models.registry import alias_version, mlflow_client, registry_errors
from nuru_yield.names import (
    CHALLENGER,
    CHAMPION,
    MODEL_NAME,
    PREDICTION_LOG,
    features_path,
    parts_dir,
    pending_log_path,
    prediction_log_path,
    rejected_path,
    shard_log_path,
)
from nuru_yield.progress import track
from nuru_yield.scoring.batch import LOG_SCHEMA, RunStamp, log_batch, score_batch
from nuru_yield.sharding import shard_of
from nuru_yield.steps import StepResult

if TYPE_CHECKING:
    from nuru_yield.models.loaded import ServingModel

log = logging.getLogger(__name__)

# The points of a run where a process may die and must still leave a whole night: each is
# passed to :func:`reached` ("staging" once for every batch a shard sends to the database).
STEPS = ("prepared", "staging", "before_swap", "after_swap", "after_log")

RUNNING, SUCCESS, FAILED = "running", "success", "failed"
NO_PLOTS_IN_PROGRESS = "no_plots_in_progress"


def _run_lock(
    day: dt.date, step: str, shared: bool = False
) -> contextlib.AbstractContextManager[None]:

    wait = get_settings().scoring_lock_wait_seconds
    return run_date_lock(get_engine(), day, step=step, shared=shared, wait_seconds=wait)


@dataclass(frozen=True)
class ScoringPlan(StepResult):
    """What every step of one run shares (passed between Airflow tasks via XCom)."""

    run_id: str
    run_date: dt.date
    shards: int
    model_name: str
    champion_version: str
    challenger_version: str | None
    features_uri: str
    started_at: dt.datetime

    @property
    def aliases(self) -> dict[str, str]:
        """Alias → version of every model this run scores (the champion first)."""
        scored = {CHAMPION: self.champion_version}
        if self.challenger_version is not None:
            scored[CHALLENGER] = self.challenger_version
        return scored


@dataclass(frozen=True)
class ShardResult(StepResult):
    """What one shard scored and staged, and where its time went."""

    shard: int
    plots: int
    rows: int
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ScoringResult(StepResult):
    """A published night: what the ``predictions`` asset event and ``scoring_runs`` say."""

    run_id: str
    run_date: dt.date
    model_version: str
    challenger_version: str | None
    plots_scored: int
    plots_rejected: int | None
    rows: int
    prediction_log_uri: str
    seconds: dict[str, float]


def _update_run(run_id: str, **values: Any) -> None:
    engine = get_engine()
    with database_errors(engine, f"updating scoring run {run_id}"), writer(engine).begin() as c:
        c.execute(scoring_runs.update().where(scoring_runs.c.run_id == run_id).values(**values))


def resolve_versions(model_name: str) -> tuple[str, str | None]:
    """``@champion`` and ``@challenger`` → versions (None without a challenger)."""
    with registry_errors(f"resolving @{CHAMPION} of {model_name}"):
        client = mlflow_client()
        champion = alias_version(client, model_name, CHAMPION)
        challenger = alias_version(client, model_name, CHALLENGER)
    if champion is None:
        raise MissingInputError(
            f"no model to score with: {model_name} has no @{CHAMPION} version "
            "(train one with `nuru-yield train` or promote one with `nuru-yield promote`)"
        )
    return champion, challenger


def prepare_run(
    run_date: dt.date,
    shards: int | None = None,
    dag_run_id: str | None = None,
    lake: Lake | None = None,
) -> ScoringPlan:
    """Check inputs, resolve the models once and open the run (see the module docstring)."""
    lake = lake or Lake.from_settings()
    shards = shards or get_settings().scoring_shards
    features = features_path(run_date)
    if not lake.exists(features):
        raise MissingInputError(
            f"no features for {run_date}: {lake.uri(features)} not found "
            f"(run `nuru-yield features --date {run_date}` first)"
        )
    upgrade()
    run_id = f"{run_date:%Y%m%d}-{uuid.uuid4().hex[:12]}"
    with _run_lock(run_date, "prepare"):
        close_abandoned_runs(lake, closed_by=run_id, by_airflow=dag_run_id is not None)
        if _features_rows(lake, run_date) == 0:
            raise _empty_night(lake, run_date, run_id, dag_run_id)
        plan = _open_run(lake, run_date, run_id, shards, dag_run_id)
        reached("prepared")
    log.info(
        "scoring %s: %s v%s%s in %d shard(s), run %s",
        run_date,
        plan.model_name,
        plan.champion_version,
        f" (+ challenger v{plan.challenger_version} in shadow)" if plan.challenger_version else "",
        shards,
        plan.run_id,
    )
    return plan


def _features_rows(lake: Lake, day: dt.date) -> int:
    """Rows of the night's features file; one that is not readable parquet or lacks columns
    of the feature table is bad input (it was not written by the feature run)."""
    path = features_path(day)
    rerun = f"(rerun `nuru-yield features --date {day}`)"
    try:
        features = lake.open_parquet(path)
    except pa.ArrowException as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DataValidationError(f"cannot read {lake.uri(path)}: {reason} {rerun}") from None
    found = features.schema_arrow
    missing = [name for name in OUTPUT_SCHEMA.names if name not in found.names]
    if missing:
        raise DataValidationError(
            f"{lake.uri(path)} lacks column(s) {', '.join(missing)} of the feature table {rerun}"
        )
    mistyped = [
        f"{f.name} ({found.field(f.name).type}, not {f.type})"
        for f in OUTPUT_SCHEMA
        if not found.field(f.name).type.equals(f.type)
    ]
    if mistyped:
        raise DataValidationError(
            f"{lake.uri(path)} has column(s) of the wrong type: {', '.join(mistyped)} {rerun}"
        )
    return features.metadata.num_rows


def _open_run(
    lake: Lake, day: dt.date, run_id: str, shards: int, dag_run_id: str | None
) -> ScoringPlan:
    """Resolve the models, clear what an earlier attempt left staged, insert the run's row."""
    champion, challenger = resolve_versions(MODEL_NAME)
    started = dt.datetime.now(dt.UTC)
    plan = ScoringPlan(
        run_id=run_id,
        run_date=day,
        shards=shards,
        model_name=MODEL_NAME,
        champion_version=champion,
        challenger_version=challenger,
        features_uri=lake.uri(features_path(day)),
        started_at=started,
    )
    engine = get_engine()
    discard(engine, day)
    staging = parts_dir(PREDICTION_LOG, day)
    for stale in lake.list(staging):
        lake.delete(stale)
    lake.clear_temporary(staging)  # of killed writers: every writer of the night holds its lock
    with database_errors(engine, "recording the scoring run"), writer(engine).begin() as c:
        c.execute(
            scoring_runs.insert().values(
                run_id=plan.run_id,
                run_date=day,
                model_name=MODEL_NAME,
                model_version=champion,
                challenger_version=challenger,
                status=RUNNING,
                shards=shards,
                started_at=started,
                features_uri=plan.features_uri,
                dag_run_id=dag_run_id,
            )
        )
    return plan


def _empty_night(
    lake: Lake, day: dt.date, run_id: str, dag_run_id: str | None
) -> NoPlotsInProgressError:
    """Record the night as ``no_plots_in_progress``; the error to raise. Nothing is
    published: the previous predictions stay served."""
    message = (
        f"no plot-season in progress on {day}: {lake.uri(features_path(day))} has no rows; "
        "nothing was published (are the plots of the running season in raw/plots.parquet?)"
    )
    now = dt.datetime.now(dt.UTC)
    engine = get_engine()
    with database_errors(engine, "recording the scoring run"), writer(engine).begin() as c:
        c.execute(
            scoring_runs.insert().values(
                run_id=run_id,
                run_date=day,
                model_name=MODEL_NAME,
                status=NO_PLOTS_IN_PROGRESS,
                plots_scored=0,
                plots_rejected=_rejected_count(lake, day),
                started_at=now,
                finished_at=now,
                duration_s=0.0,
                features_uri=lake.uri(features_path(day)),
                dag_run_id=dag_run_id,
                message=message,
            )
        )
    return NoPlotsInProgressError(message)


def close_abandoned_runs(lake: Lake, closed_by: str, by_airflow: bool = False) -> list[str]:
    """Close the runs whose process is gone; returns their run ids.

    A ``running`` row whose run date's lock nobody holds belongs to a process that died
    (killed, or its machine lost) before recording an outcome. If the swap went through
    (the partition holds its rows), its log file is moved into place and the row becomes
    ``success``; otherwise it becomes ``failed`` and its log file is deleted. A run of an
    Airflow DAG is idle between its tasks, so only another Airflow run (``by_airflow``)
    closes those rows: the DAG runs one run at a time. A log file left by a run whose rows
    are served (a publish that failed or died after its swap) is moved into place too.
    """
    engine = get_engine()
    with database_errors(engine, "reading scoring runs"), engine.connect() as c:
        running = c.execute(
            sa.select(
                scoring_runs.c.run_id, scoring_runs.c.run_date, scoring_runs.c.dag_run_id
            ).where(scoring_runs.c.status == RUNNING)
        ).all()
    left = _pending_logs(lake)
    closed = []
    for run in running:
        if (run.dag_run_id is None or by_airflow) and is_free(engine, run.run_date):
            _close(lake, run.run_id, run.run_date, left.pop(run.run_id, None), closed_by)
            closed.append(run.run_id)
    for run_id, day in left.items():
        if _served_run_id(day) == run_id and is_free(engine, day):
            _close(lake, run_id, day, day, closed_by)
            closed.append(run_id)
    return closed


def _pending_logs(lake: Lake) -> dict[str, dt.date]:
    """Run id → run date of every log file waiting for its swap (:func:`pending_log_path`)."""
    pending = {}
    for path in lake.list(f"{PREDICTION_LOG}/_parts", suffix=".parquet"):
        folder, name = path.split("/")[-2:]
        if name.startswith("run-"):
            run_id = name.removeprefix("run-").removesuffix(".parquet")
            with contextlib.suppress(ValueError):
                pending[run_id] = dt.date.fromisoformat(folder)
    return pending


def _close(
    lake: Lake, run_id: str, day: dt.date, pending_day: dt.date | None, closed_by: str
) -> None:
    if _served_run_id(day) == run_id:
        if pending_day is not None:
            lake.move(pending_log_path(day, run_id), prediction_log_path(day))
        _update_run(
            run_id,
            status=SUCCESS,
            plots_scored=_served_plots(day),
            finished_at=dt.datetime.now(dt.UTC),
            prediction_log_uri=lake.uri(prediction_log_path(day)),
            message=f"published; its process ended before recording it (closed by run {closed_by})",
        )
        log.warning("run %s had published %s before its process ended: closed", run_id, day)
        return
    if pending_day is not None:
        lake.delete(pending_log_path(day, run_id))
    _update_run(
        run_id,
        status=FAILED,
        finished_at=dt.datetime.now(dt.UTC),
        message=(
            f"abandoned: its process ended without recording an outcome (killed?); nothing "
            f"of it is served (closed by run {closed_by})"
        ),
    )
    log.warning("run %s for %s was abandoned by its process: marked failed", run_id, day)


def load_models(plan: ScoringPlan, threads: int | None = None) -> dict[str, ServingModel]:
    """The plan's models by resolved version (never by alias), threads pinned."""
    threads = threads or get_settings().scoring_threads or os.cpu_count() or 1
    models = {}
    for alias, version in plan.aliases.items():
        with registry_errors(f"loading {plan.model_name} v{version} (@{alias})"):
            model = load_model(f"models:/{plan.model_name}/{version}")
        pin_threads(model.estimator, threads)
        models[alias] = model
    return models


def pin_threads(estimator: Any, threads: int) -> None:
    """Make a (voting) estimator's native predictors use ``threads`` threads, so that the
    models and the database load do not oversubscribe the cores."""
    members = getattr(estimator, "estimators_", None)
    if members is not None:
        for member in members:
            pin_threads(member, threads)
        return
    if hasattr(estimator, "n_jobs"):
        estimator.set_params(n_jobs=threads)
    if hasattr(estimator, "get_booster"):
        estimator.get_booster().set_param({"nthread": threads})


def _shard_batches(lake: Lake, path: str, shard: int, shards: int) -> Iterator[pa.RecordBatch]:
    """The features rows of one shard, streamed from the file in bounded batches."""
    features = lake.open_parquet(path)
    # A features file assembled from as many feature shards holds this shard's plots in
    # its own row groups: read only those (the filter below then keeps every row).
    row_groups = part_row_groups(features, shard, shards) if shards > 1 else None
    batches = features.iter_batches(
        batch_size=get_settings().scoring_batch_rows, row_groups=row_groups
    )
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except (OSError, pa.ArrowException) as error:  # a damaged page
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise DataValidationError(
                f"cannot read {lake.uri(path)}: {reason} (rerun `nuru-yield features`)"
            ) from None
        if shards > 1:
            plot_ids = batch.column("plot_id").to_numpy(zero_copy_only=False)
            batch = batch.filter(pa.array(shard_of(plot_ids, shards) == shard))
        if batch.num_rows:
            yield batch


class _BackgroundStage:
    """Runs ``stage(batches)`` in a thread fed through a small queue, so that the binary
    COPY of one batch overlaps the scoring of the next. ``finish`` commits; ``abort``
    makes the load fail, so that its transaction rolls back."""

    _END = object()
    _ABORT = object()

    def __init__(self, stage: Callable[[Iterable[pa.RecordBatch]], int]) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=2)
        self._result: dict[str, Any] = {}
        self._thread = threading.Thread(target=self._run, args=(stage,), name="stage")
        self._thread.start()

    def _run(self, stage: Callable[[Iterable[pa.RecordBatch]], int]) -> None:
        try:
            self._result["rows"] = stage(self._batches())
        except BaseException as error:  # handed to the main thread in `finish`
            self._result["error"] = error

    def _batches(self) -> Iterator[pa.RecordBatch]:
        while True:
            item = self._queue.get()
            if item is self._END:
                return
            if item is self._ABORT:
                raise RuntimeError("scoring failed: load aborted")
            yield item

    def _put(self, item: Any) -> None:
        while self._thread.is_alive():
            with contextlib.suppress(queue.Full):
                self._queue.put(item, timeout=0.5)
                return
        self._raise()

    def _raise(self) -> None:
        self._thread.join()
        if "error" in self._result:
            raise self._result["error"]

    def put(self, batch: pa.RecordBatch) -> None:
        self._put(batch)

    def finish(self) -> int:
        self._put(self._END)
        self._raise()
        return self._result["rows"]

    def abort(self) -> None:
        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                self._put(self._ABORT)
        self._thread.join()


def score_shard(
    plan: ScoringPlan,
    shard: int,
    lake: Lake | None = None,
    models: Mapping[str, ServingModel] | None = None,
) -> ShardResult:
    """Score, stage and log the plots of one shard (see the module docstring)."""
    with _recording_failure(plan), _run_lock(plan.run_date, "shard", shared=True):
        return _score_shard(plan, shard, lake or Lake.from_settings(), models)


def _score_shard(
    plan: ScoringPlan, shard: int, lake: Lake, models: Mapping[str, ServingModel] | None
) -> ShardResult:

    engine = get_engine()
    started = time.perf_counter()
    models = models or load_models(plan)
    loaded = time.perf_counter() - started
    stamp = RunStamp(plan.run_date, plan.run_id, plan.started_at)
    loader = _BackgroundStage(
        lambda batches: stage(engine, plan.run_date, _staging(batches), shard, plan.shards)
    )
    timings = {"score": 0.0}
    counts = {"plots": 0, "rows": 0}

    def scored() -> Iterator[pa.RecordBatch]:
        for features in _shard_batches(lake, features_path(plan.run_date), shard, plan.shards):
            tick = time.perf_counter()
            for alias, model in models.items():
                rows = score_batch(features, model, alias, stamp)
                timings["score"] += time.perf_counter() - tick
                loader.put(rows)
                yield log_batch(rows, features)
                tick = time.perf_counter()
                counts["rows"] += rows.num_rows
            counts["plots"] += features.num_rows

    try:
        lake.write_parquet_batches(
            shard_log_path(plan.run_date, shard, plan.shards), LOG_SCHEMA, scored()
        )
        staged = loader.finish()
    except BaseException:
        loader.abort()
        raise
    if staged != counts["rows"]:
        raise RuntimeError(f"shard {shard}: scored {counts['rows']} rows but staged {staged}")
    result = ShardResult(
        shard=shard,
        **counts,
        seconds={
            "load_models": loaded,
            "score": timings["score"],
            "total": time.perf_counter() - started,
        },
    )
    log.info(
        "shard %d/%d: %d plots, %d rows in %.1fs", shard, plan.shards, result.plots,
        result.rows, result.seconds["total"],
    )  # fmt: skip
    return result


def _staging(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """``batches``, reporting each to :func:`reached` before it is sent to the database."""
    for sent, batch in enumerate(batches):
        reached("staging", sent)
        yield batch


def reached(step: str, batches_sent: int = 0) -> None:
    """Called when a run reaches one of :data:`STEPS` (``batches_sent``: how many batches
    the shard's open load transaction already holds, for ``staging``). A seam for
    observing or interrupting a run at the points where it must stay recoverable; by
    default it only logs at debug level."""
    log.debug("scoring reached %s (%d batches sent)", step, batches_sent)


def _rejected_count(lake: Lake, day: dt.date) -> int | None:
    path = rejected_path(day)
    return lake.open_parquet(path).metadata.num_rows if lake.exists(path) else None


def _served_run_id(day: dt.date) -> str | None:
    """The run whose rows the partition of ``day`` holds (None when it is empty)."""
    engine = get_engine()
    with database_errors(engine, "checking published predictions"), engine.connect() as c:
        return c.execute(
            sa.select(predictions.c.run_id).where(predictions.c.run_date == day).limit(1)
        ).scalar()


def _served_plots(day: dt.date) -> int:

    engine = get_engine()
    with database_errors(engine, "counting published predictions"), engine.connect() as c:
        return c.execute(
            sa.select(sa.func.count()).where(
                predictions.c.run_date == day, predictions.c.model_name == CHAMPION
            )
        ).scalar_one()


def _assemble_log(plan: ScoringPlan, lake: Lake) -> int:
    """The night's prediction log, from the shards' parts, as the run's pending file: the
    one part moved (no rewrite), or the parts concatenated. A retry finds the file it
    assembled before. Returns its row count."""
    pending = pending_log_path(plan.run_date, plan.run_id)
    parts = [shard_log_path(plan.run_date, shard, plan.shards) for shard in range(plan.shards)]
    missing = [shard for shard, part in enumerate(parts) if not lake.exists(part)]
    if missing and lake.exists(pending):  # assembled by an earlier attempt
        return lake.open_parquet(pending).metadata.num_rows
    if plan.shards == 1 and missing:
        raise LakeError(f"cannot publish {plan.run_date}: the log part is missing")
    try:
        return lake.assemble_parquet(parts, pending, LOG_SCHEMA)[1]
    except LakeError as error:
        raise LakeError(f"cannot publish {plan.run_date}: {error}") from None


def _commit_log(lake: Lake, day: dt.date, run_id: str) -> tuple[str, int]:
    """Move a published run's log file into place (after its swap); its URI and rows."""
    pending, path = pending_log_path(day, run_id), prediction_log_path(day)
    if lake.exists(pending):
        lake.move(pending, path)
    elif _log_run_id(lake, path) != run_id:
        raise LakeError(
            f"{day} is published by run {run_id}, but its prediction log is missing: "
            f"{lake.uri(pending)} not found"
        )
    return lake.uri(path), lake.open_parquet(path).metadata.num_rows


def _log_run_id(lake: Lake, path: str) -> str | None:
    """The run whose rows a prediction log holds (None when there is no such file)."""
    if not lake.exists(path):
        return None
    log_file = lake.open_parquet(path)
    if log_file.metadata.num_row_groups == 0:
        return None
    run_ids = log_file.read_row_group(0, columns=["run_id"]).column("run_id")
    return run_ids[0].as_py() if len(run_ids) else None


def publish_run(
    plan: ScoringPlan, shard_results: Sequence[ShardResult], lake: Lake | None = None
) -> ScoringResult:
    """Assemble the prediction log, publish the partition, close the run."""
    with _recording_failure(plan), _run_lock(plan.run_date, "publish"):
        return _publish_run(plan, shard_results, lake or Lake.from_settings())


def _publish_run(plan: ScoringPlan, results: Sequence[ShardResult], lake: Lake) -> ScoringResult:

    engine = get_engine()
    started = time.perf_counter()
    assembled_s = 0.0
    if _served_run_id(plan.run_date) == plan.run_id:  # a retry: the swap went through before
        log_uri, rows = _commit_log(lake, plan.run_date, plan.run_id)
    else:
        log_rows = _assemble_log(plan, lake)
        assembled_s = time.perf_counter() - started
        staged = staged_rows(engine, plan.run_date)
        if staged != log_rows:
            raise NuruError(
                f"cannot publish {plan.run_date}: {staged:,} rows are staged but the "
                f"prediction log holds {log_rows:,}"
            )
        reached("before_swap")
        rows = publish(engine, plan.run_date)
        reached("after_swap")
        log_uri, _ = _commit_log(lake, plan.run_date, plan.run_id)
    reached("after_log")
    for shard in range(plan.shards):
        lake.delete(shard_log_path(plan.run_date, shard, plan.shards))
    # What killed attempts left (a shard retried after a kill mid-write): no writer of the
    # night is alive while this step holds the night's lock exclusively.
    lake.clear_temporary(parts_dir(PREDICTION_LOG, plan.run_date))
    seconds = {
        name: round(sum(r.seconds.get(name, 0.0) for r in results), 3)
        for name in ("load_models", "score", "total")
    }
    seconds["assemble_log"] = round(assembled_s, 3)
    seconds["publish"] = round(time.perf_counter() - started - assembled_s, 3)
    finished = dt.datetime.now(dt.UTC)
    plots = sum(r.plots for r in results)
    rejected = _rejected_count(lake, plan.run_date)
    _update_run(
        plan.run_id,
        status=SUCCESS,
        plots_scored=plots,
        plots_rejected=rejected,
        finished_at=finished,
        duration_s=(finished - plan.started_at).total_seconds(),
        timings=seconds,
        prediction_log_uri=log_uri,
    )
    result = ScoringResult(
        run_id=plan.run_id,
        run_date=plan.run_date,
        model_version=plan.champion_version,
        challenger_version=plan.challenger_version,
        plots_scored=plots,
        plots_rejected=rejected,
        rows=rows,
        prediction_log_uri=log_uri,
        seconds=seconds,
    )
    log.info("published %s: %s", plan.run_date, result.xcom())
    return result


def fail_run(plan: ScoringPlan, message: str) -> None:
    """Mark a run failed (best effort: the database may be what failed). A retried step
    that then succeeds is recorded by :func:`publish_run`, which closes the run."""
    try:
        _update_run(
            plan.run_id,
            status=FAILED,
            finished_at=dt.datetime.now(dt.UTC),
            message=message[:2000],
        )
    except Exception as error:  # the original failure matters more than this one
        log.warning("could not mark run %s failed: %s", plan.run_id, error)


@contextlib.contextmanager
def _recording_failure(plan: ScoringPlan) -> Iterator[None]:
    """Record an exception leaving the block as the run's failure, then re-raise it."""
    try:
        yield
    except Exception as error:
        fail_run(plan, str(error).splitlines()[0] if str(error) else type(error).__name__)
        raise


def score(
    run_date: dt.date,
    shards: int | None = None,
    lake: Lake | None = None,
    dag_run_id: str | None = None,
) -> ScoringResult:
    """Prepare, score every shard and publish, in this process (``nuru-yield score``),
    holding the run date's lock throughout."""
    lake = lake or Lake.from_settings()
    with _run_lock(run_date, "score"):
        plan = prepare_run(run_date, shards, dag_run_id, lake)
        started = time.perf_counter()
        with _recording_failure(plan):
            models = load_models(plan)
        loaded = time.perf_counter() - started
        results = [
            score_shard(plan, shard, lake, models)
            for shard in track(range(plan.shards), f"scoring {plan.run_date}")
        ]
        first = results[0]  # the models were loaded once, here, for every shard
        results[0] = replace(
            first, seconds={**first.seconds, "load_models": first.seconds["load_models"] + loaded}
        )
        return publish_run(plan, results, lake)
