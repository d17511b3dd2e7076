"""One scoring run for a run date: prepare → K shards → publish (DESIGN §5–§7, §9).

* :func:`prepare_run` checks the features partition, resolves ``@champion`` (and
  ``@challenger``, if set) to versions **once**, clears what an earlier attempt left staged
  and records the run in ``scoring_runs``. Its :class:`ScoringPlan` (small, JSON) is what
  the shards receive, so every shard loads the same versions even if an alias moves
  meanwhile.
* :func:`score_shard` streams the features file in record batches, keeps the plots that
  hash to its shard, scores them with each model, stages the rows in the database (binary
  COPY, in a background thread so the load overlaps the next batch's scoring) and writes its
  part of the prediction log. Memory is bounded by the batch size, not the number of plots.
* :func:`publish_run` assembles the log parts into ``predictions.parquet`` (streaming,
  atomic), swaps the staged rows in as the run date's partition (atomic), and closes the
  run's ``scoring_runs`` row.

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
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import sqlalchemy as sa

from nuru_yield.config import get_settings
from nuru_yield.db import get_engine
from nuru_yield.db.engine import database_errors, writer
from nuru_yield.db.schema import scoring_runs
from nuru_yield.errors import LakeError, MissingInputError
from nuru_yield.lake import (
    PREDICTION_LOG,
    Lake,
    features_path,
    part_row_groups,
    prediction_log_path,
    rejected_path,
    shard_part_path,
)
from nuru_yield.scoring.batch import LOG_SCHEMA, RunStamp, log_batch, score_batch

if TYPE_CHECKING:
    from nuru_yield.training import ServingModel

log = logging.getLogger(__name__)

# Hook for the "killed during the load" test: a shard SIGKILLs its own process once it has
# staged this many batches (a real kill at a controlled point, not a mock).
KILL_AFTER_BATCHES_ENV = "NURU_TEST_KILL_SCORING_AFTER_BATCHES"


def _day(value: dt.date | str) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(value)


def shard_log_path(run_date: dt.date | str, shard: int, shards: int) -> str:
    """One shard's part of the prediction log, until :func:`publish_run` assembles it."""
    return shard_part_path(PREDICTION_LOG, _day(run_date), shard, shards)


@dataclass(frozen=True)
class ScoringPlan:
    """What every step of one run shares (passed between Airflow tasks via XCom)."""

    run_id: str
    run_date: str
    shards: int
    model_name: str
    champion_version: str
    challenger_version: str | None
    features_uri: str
    started_at: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, payload: Mapping[str, Any]) -> ScoringPlan:
        return cls(**payload)

    @property
    def day(self) -> dt.date:
        return dt.date.fromisoformat(self.run_date)

    @property
    def aliases(self) -> dict[str, str]:
        """Alias → version of every model this run scores (the champion first)."""
        from nuru_yield.training import CHALLENGER, CHAMPION

        scored = {CHAMPION: self.champion_version}
        if self.challenger_version is not None:
            scored[CHALLENGER] = self.challenger_version
        return scored


@dataclass
class ShardResult:
    shard: int
    plots: int
    rows: int
    seconds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _update_run(run_id: str, **values: Any) -> None:
    engine = get_engine()
    with database_errors(engine, f"updating scoring run {run_id}"), writer(engine).begin() as c:
        c.execute(scoring_runs.update().where(scoring_runs.c.run_id == run_id).values(**values))


def resolve_versions(model_name: str) -> tuple[str, str | None]:
    """``@champion`` and ``@challenger`` → versions (None without a challenger)."""
    from nuru_yield.training import CHALLENGER, CHAMPION
    from nuru_yield.training.registry import alias_version, mlflow_client

    client = mlflow_client()
    champion = alias_version(client, model_name, CHAMPION)
    if champion is None:
        raise MissingInputError(
            f"no model to score with: {model_name} has no @{CHAMPION} version "
            "(train one with `nuru-yield train` or promote one with `nuru-yield promote`)"
        )
    return champion, alias_version(client, model_name, CHALLENGER)


def prepare_run(
    run_date: dt.date | str,
    shards: int | None = None,
    dag_run_id: str | None = None,
    lake: Lake | None = None,
) -> ScoringPlan:
    """Check inputs, resolve the models once and open the run (see the module docstring)."""
    from nuru_yield.db import discard, upgrade
    from nuru_yield.training import MODEL_NAME

    day = _day(run_date)
    lake = lake or Lake.from_settings()
    shards = shards or get_settings().scoring_shards
    features = features_path(day)
    if not lake.exists(features):
        raise MissingInputError(
            f"no features for {day}: {lake.uri(features)} not found "
            f"(run `nuru-yield features --date {day}` first)"
        )
    upgrade()
    champion, challenger = resolve_versions(MODEL_NAME)
    started = dt.datetime.now(dt.UTC)
    plan = ScoringPlan(
        run_id=f"{day:%Y%m%d}-{uuid.uuid4().hex[:12]}",
        run_date=day.isoformat(),
        shards=shards,
        model_name=MODEL_NAME,
        champion_version=champion,
        challenger_version=challenger,
        features_uri=lake.uri(features),
        started_at=started.isoformat(),
    )
    engine = get_engine()
    discard(engine, day)
    for stale in lake.list(f"{PREDICTION_LOG}/_parts/{day}"):
        lake.delete(stale)
    with database_errors(engine, "recording the scoring run"), writer(engine).begin() as c:
        c.execute(
            scoring_runs.insert().values(
                run_id=plan.run_id,
                run_date=day,
                model_name=MODEL_NAME,
                model_version=champion,
                challenger_version=challenger,
                status="running",
                shards=shards,
                started_at=started,
                features_uri=plan.features_uri,
                dag_run_id=dag_run_id,
            )
        )
    log.info(
        "scoring %s: %s v%s%s in %d shard(s), run %s",
        day,
        MODEL_NAME,
        champion,
        f" (+ challenger v{challenger} in shadow)" if challenger else "",
        shards,
        plan.run_id,
    )
    return plan


def load_models(plan: ScoringPlan, threads: int | None = None) -> dict[str, ServingModel]:
    """The plan's models by resolved version (never by alias), threads pinned."""
    from nuru_yield.training import load_model

    threads = threads or get_settings().scoring_threads or os.cpu_count() or 1
    models = {}
    for alias, version in plan.aliases.items():
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
    from nuru_yield.sharding import shard_of

    features = lake.open_parquet(path)
    # A features file assembled from as many feature shards holds this shard's plots in
    # its own row groups: read only those (the filter below then keeps every row).
    row_groups = part_row_groups(features, shard, shards) if shards > 1 else None
    batches = features.iter_batches(
        batch_size=get_settings().scoring_batch_rows, row_groups=row_groups
    )
    for batch in batches:
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
    plan: ScoringPlan | Mapping[str, Any],
    shard: int,
    lake: Lake | None = None,
    models: Mapping[str, ServingModel] | None = None,
) -> ShardResult:
    """Score, stage and log the plots of one shard (see the module docstring)."""
    plan = plan if isinstance(plan, ScoringPlan) else ScoringPlan.from_dict(plan)
    with _recording_failure(plan):
        return _score_shard(plan, shard, lake or Lake.from_settings(), models)


def _score_shard(
    plan: ScoringPlan, shard: int, lake: Lake, models: Mapping[str, ServingModel] | None
) -> ShardResult:
    from nuru_yield.db import stage

    engine = get_engine()
    started = time.perf_counter()
    models = models or load_models(plan)
    loaded = time.perf_counter() - started
    result = ShardResult(shard=shard, plots=0, rows=0, seconds={"load_models": loaded})
    stamp = RunStamp(plan.day, plan.run_id, dt.datetime.fromisoformat(plan.started_at))
    loader = _BackgroundStage(
        lambda batches: stage(engine, plan.day, _kill_hook(batches), shard, plan.shards)
    )
    timings = {"score": 0.0}

    def scored() -> Iterator[pa.RecordBatch]:
        for features in _shard_batches(lake, features_path(plan.day), shard, plan.shards):
            tick = time.perf_counter()
            for alias, model in models.items():
                rows = score_batch(features, model, alias, stamp)
                timings["score"] += time.perf_counter() - tick
                loader.put(rows)
                yield log_batch(rows, features)
                tick = time.perf_counter()
                result.rows += rows.num_rows
            result.plots += features.num_rows

    try:
        lake.write_parquet_batches(
            shard_log_path(plan.day, shard, plan.shards), LOG_SCHEMA, scored()
        )
        staged = loader.finish()
    except BaseException:
        loader.abort()
        raise
    if staged != result.rows:
        raise RuntimeError(f"shard {shard}: scored {result.rows} rows but staged {staged}")
    result.seconds["score"] = timings["score"]
    result.seconds["total"] = time.perf_counter() - started
    log.info(
        "shard %d/%d: %d plots, %d rows in %.1fs", shard, plan.shards, result.plots,
        result.rows, result.seconds["total"],
    )  # fmt: skip
    return result


def _kill_hook(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """``batches``, unless ``NURU_TEST_KILL_SCORING_AFTER_BATCHES=n`` is set: then the
    process SIGKILLs itself when the load asks for batch n+1, i.e. with n batches sent to
    the database inside the open load transaction."""
    kill_after = int(os.environ.get(KILL_AFTER_BATCHES_ENV, "0"))
    for number, batch in enumerate(batches):
        if kill_after and number >= kill_after:
            import signal

            log.warning("%s=%d: killing this process mid-load", KILL_AFTER_BATCHES_ENV, kill_after)
            os.kill(os.getpid(), signal.SIGKILL)
        yield batch


def _rejected_count(lake: Lake, day: dt.date) -> int | None:
    path = rejected_path(day)
    return lake.open_parquet(path).metadata.num_rows if lake.exists(path) else None


def _already_published(plan: ScoringPlan) -> bool:
    """True when the partition already holds this run's rows (a retried publish whose swap
    went through before the retry)."""
    from nuru_yield.db.schema import predictions

    engine = get_engine()
    with database_errors(engine, "checking published predictions"), engine.connect() as c:
        run_id = c.execute(
            sa.select(predictions.c.run_id).where(predictions.c.run_date == plan.day).limit(1)
        ).scalar()
    return run_id == plan.run_id


def _assemble_log(plan: ScoringPlan, lake: Lake) -> tuple[str, int]:
    """The night's prediction log from the shards' parts: the one part moved into place (no
    rewrite), or the parts concatenated. Returns its URI and row count."""
    path = prediction_log_path(plan.day)
    parts = [shard_log_path(plan.day, shard, plan.shards) for shard in range(plan.shards)]
    if plan.shards == 1 and not lake.exists(parts[0]):
        if _log_run_id(lake, path) != plan.run_id:  # else: a retry, already moved
            raise LakeError(f"cannot publish {plan.run_date}: the log part is missing")
        return lake.uri(path), lake.open_parquet(path).metadata.num_rows
    try:
        return lake.assemble_parquet(parts, path, LOG_SCHEMA)
    except LakeError as error:
        raise LakeError(f"cannot publish {plan.run_date}: {error}") from None


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
    plan: ScoringPlan | Mapping[str, Any],
    shard_results: Sequence[ShardResult | Mapping[str, Any]],
    lake: Lake | None = None,
) -> dict[str, Any]:
    """Assemble the prediction log, publish the partition, close the run; returns a summary."""
    plan = plan if isinstance(plan, ScoringPlan) else ScoringPlan.from_dict(plan)
    results = [r if isinstance(r, ShardResult) else ShardResult(**r) for r in shard_results]
    with _recording_failure(plan):
        return _publish_run(plan, results, lake or Lake.from_settings())


def _publish_run(plan: ScoringPlan, results: list[ShardResult], lake: Lake) -> dict[str, Any]:
    from nuru_yield.db import publish

    started = time.perf_counter()
    log_uri, log_rows = _assemble_log(plan, lake)
    assembled_s = time.perf_counter() - started
    rows = log_rows if _already_published(plan) else publish(get_engine(), plan.day)
    if rows != log_rows:
        raise RuntimeError(f"published {rows} rows but the prediction log holds {log_rows}")
    for shard in range(plan.shards):
        lake.delete(shard_log_path(plan.day, shard, plan.shards))
    seconds = {
        name: round(sum(r.seconds.get(name, 0.0) for r in results), 3)
        for name in ("load_models", "score", "total")
    }
    seconds["assemble_log"] = round(assembled_s, 3)
    seconds["publish"] = round(time.perf_counter() - started - assembled_s, 3)
    finished = dt.datetime.now(dt.UTC)
    plots = sum(r.plots for r in results)
    rejected = _rejected_count(lake, plan.day)
    _update_run(
        plan.run_id,
        status="success",
        plots_scored=plots,
        plots_rejected=rejected,
        finished_at=finished,
        duration_s=(finished - dt.datetime.fromisoformat(plan.started_at)).total_seconds(),
        timings=seconds,
        prediction_log_uri=log_uri,
    )
    summary = {
        "run_id": plan.run_id,
        "run_date": plan.run_date,
        "model_version": plan.champion_version,
        "challenger_version": plan.challenger_version,
        "plots_scored": plots,
        "plots_rejected": rejected,
        "rows": rows,
        "prediction_log_uri": log_uri,
        "seconds": seconds,
    }
    log.info("published %s: %s", plan.run_date, summary)
    return summary


def fail_run(plan: ScoringPlan | Mapping[str, Any], message: str) -> None:
    """Mark a run failed (best effort: the database may be what failed). A retried step
    that then succeeds is recorded by :func:`publish_run`, which closes the run."""
    plan = plan if isinstance(plan, ScoringPlan) else ScoringPlan.from_dict(plan)
    try:
        _update_run(
            plan.run_id,
            status="failed",
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
    run_date: dt.date | str,
    shards: int | None = None,
    lake: Lake | None = None,
    dag_run_id: str | None = None,
) -> dict[str, Any]:
    """Prepare, score every shard and publish, in this process (``nuru-yield score``)."""
    from nuru_yield.progress import track

    lake = lake or Lake.from_settings()
    plan = prepare_run(run_date, shards, dag_run_id, lake)
    started = time.perf_counter()
    with _recording_failure(plan):
        models = load_models(plan)
    loaded = time.perf_counter() - started
    results = [
        score_shard(plan, shard, lake, models)
        for shard in track(range(plan.shards), f"scoring {plan.run_date}")
    ]
    results[0].seconds["load_models"] += loaded  # loaded once here for every shard
    return publish_run(plan, results, lake)
