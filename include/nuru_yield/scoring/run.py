"""One scoring run for a run date: prepare → K shards → publish (docs/DESIGN.md, "Scale-out").

A sharded night (:mod:`nuru_yield.nightly`). The run's plan and results are in
:mod:`.plan`, its ``scoring_runs`` row in :mod:`.bookkeeping`:

* :func:`prepare_run` checks the features partition, resolves ``@champion`` (and
  ``@challenger``, if set) to versions **once**, closes the runs whose process is gone,
  clears what an earlier attempt left staged and records the run in ``scoring_runs``. Its
  :class:`~.plan.ScoringPlan` (small, JSON) is what the shards receive, so every shard
  loads the same versions even if an alias moves meanwhile.
* :func:`score_shard` streams the features file in record batches, keeps the plots that
  hash to its shard, scores them with each model, stages the rows in the database (binary
  COPY, in a background thread so the load overlaps the next batch's scoring:
  :mod:`.stager`) and writes its part of the prediction log. Memory is bounded by the batch
  size, not the number of plots.
* :func:`publish_run` assembles the log parts into the night's pending log, swaps the
  staged rows in as the run date's partition (atomic), then moves that file into place as
  ``predictions.parquet`` and closes the run's ``scoring_runs`` row. The log therefore
  never shows rows that are not served: a run that dies before the swap leaves the old
  partition and the old log; one that dies between the swap and the move leaves its file,
  which a retried publish or the next run moves into place
  (:func:`~.bookkeeping.close_abandoned_runs`).

Each step holds the run date's lock (:mod:`nuru_yield.db.locks`): exclusively to open or
publish a run, shared while shards stage. A second run of the same night waits at most
``SCORING_LOCK_WAIT_SECONDS``, then refuses with one line naming the holder. The next
run closes a ``running`` row whose process is gone — no process holds its date's lock —
as ``failed`` (or ``success``, when its swap had gone through).

A night without any plot-season in progress is recorded as ``no_plots_in_progress`` and
raises :class:`~nuru_yield.errors.NoPlotsInProgressError`: never a successful run of zero
rows.

:data:`SCORING` names the three steps: :func:`score` runs them in one process
(``nuru-yield score``, holding the run date's lock throughout and loading the models once),
the ``batch_scoring`` DAG as tasks.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import sqlalchemy as sa

from nuru_yield.config import get_settings
from nuru_yield.db.engine import get_engine
from nuru_yield.db.loader import discard, publish, stage, staged_rows
from nuru_yield.db.locks import run_date_lock
from nuru_yield.db.migrations import upgrade
from nuru_yield.errors import DataValidationError, LakeError, MissingInputError, NuruError
from nuru_yield.features.columns import OUTPUT_SCHEMA
from nuru_yield.lake import Lake, part_row_groups
from nuru_yield.models.loaded import load_model
from nuru_yield.models.registry import alias_version, mlflow_client, registry_errors
from nuru_yield.names import (
    CHALLENGER,
    CHAMPION,
    MODEL_NAME,
    features_path,
    pending_log_path,
    prediction_log_path,
)
from nuru_yield.nightly import Night, assemble, clear_parts, run_night, run_of, stamped
from nuru_yield.scoring.batch import LOG_SCHEMA, RunStamp, log_batch, score_batch
from nuru_yield.scoring.bookkeeping import (
    close_abandoned_runs,
    open_run,
    record_empty_night,
    recording_failure,
    rejected_count,
    served_run_id,
    update_run,
)
from nuru_yield.scoring.counties import CountyResult, publish_counties
from nuru_yield.scoring.plan import SUCCESS, ScoringPlan, ScoringResult, ShardResult
from nuru_yield.scoring.stager import BackgroundStage
from nuru_yield.sharding import shard_of

if TYPE_CHECKING:
    from nuru_yield.config import Settings
    from nuru_yield.models.loaded import ServingModel

    Models = Callable[[], Mapping[str, ServingModel]]

log = logging.getLogger(__name__)

# The points of a run where a process may die and must still leave a whole night: each is
# passed to :func:`reached` ("staging" once for every batch a shard sends to the database).
STEPS = ("prepared", "staging", "before_swap", "after_swap", "after_log")


def reached(step: str, batches_sent: int = 0) -> None:
    """Called when a run reaches one of :data:`STEPS` (``batches_sent``: how many batches
    the shard's open load transaction already holds, for ``staging``). A seam for
    observing or interrupting a run at the points where it must stay recoverable; by
    default it only logs at debug level."""
    log.debug("scoring reached %s (%d batches sent)", step, batches_sent)


def run_lock(
    engine: sa.Engine, settings: Settings, day: dt.date, step: str, shared: bool = False
) -> contextlib.AbstractContextManager[None]:
    """The run date's lock for ``step`` (waiting at most ``SCORING_LOCK_WAIT_SECONDS``)."""
    wait = settings.scoring_lock_wait_seconds
    return run_date_lock(engine, day, step=step, shared=shared, wait_seconds=wait)


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
    *,
    lake: Lake | None = None,
    settings: Settings | None = None,
    shards: int | None = None,
    dag_run_id: str | None = None,
) -> ScoringPlan:
    """Check inputs, resolve the models once and open the run (see the module docstring)."""
    settings = settings or get_settings()
    lake = lake or Lake.from_settings(settings)
    features = features_path(run_date)
    if not lake.exists(features):
        raise MissingInputError(
            f"no features for {run_date}: {lake.uri(features)} not found "
            f"(run `nuru-yield features --date {run_date}` first)"
        )
    upgrade(settings.predictions_db_url)
    engine = get_engine(settings.predictions_db_url)
    run_id = ScoringPlan.new_run_id(run_date)
    with run_lock(engine, settings, run_date, "prepare"):
        close_abandoned_runs(lake, engine, closed_by=run_id, by_airflow=dag_run_id is not None)
        if _features_rows(lake, run_date) == 0:
            raise record_empty_night(engine, lake, run_date, run_id, dag_run_id)
        champion, challenger = resolve_versions(MODEL_NAME)
        plan = ScoringPlan(
            run_id=run_id,
            run_date=run_date,
            shards=shards or settings.scoring_shards,
            model_name=MODEL_NAME,
            champion_version=champion,
            challenger_version=challenger,
            features_uri=lake.uri(features),
            started_at=dt.datetime.now(dt.UTC),
        )
        discard(engine, run_date)
        clear_parts(lake, plan, killed_writers=True)  # every writer of the night holds its lock
        open_run(engine, plan, dag_run_id)
        reached("prepared")
    log.info(
        "scoring %s: %s v%s%s in %d shard(s), run %s",
        run_date,
        plan.model_name,
        plan.champion_version,
        f" (+ challenger v{plan.challenger_version} in shadow)" if plan.challenger_version else "",
        plan.shards,
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


def load_models(plan: ScoringPlan, settings: Settings) -> dict[str, ServingModel]:
    """The plan's models by resolved version (never by alias), threads pinned."""
    threads = settings.scoring_threads or os.cpu_count() or 1
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


def _shard_batches(
    lake: Lake, path: str, shard: int, shards: int, batch_rows: int
) -> Iterator[pa.RecordBatch]:
    """The features rows of one shard, streamed from the file in bounded batches."""
    features = lake.open_parquet(path)
    # A features file assembled from as many feature shards holds this shard's plots in
    # its own row groups: read only those (the filter below then keeps every row).
    row_groups = part_row_groups(features, shard, shards) if shards > 1 else None
    batches = features.iter_batches(batch_size=batch_rows, row_groups=row_groups)
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


def score_shard(
    plan: ScoringPlan,
    shard: int,
    *,
    lake: Lake | None = None,
    settings: Settings | None = None,
    models: Models | None = None,
) -> ShardResult:
    """Score, stage and log the plots of one shard (see the module docstring). ``models``:
    where to get the plan's models (:func:`shared_models`; default: load them here)."""
    plan.checked(shard)
    settings = settings or get_settings()
    lake = lake or Lake.from_settings(settings)
    engine = get_engine(settings.predictions_db_url)
    with recording_failure(engine, plan), run_lock(engine, settings, plan.run_date, "shard", True):
        models = models or functools.partial(load_models, plan, settings)
        return _score_shard(plan, shard, lake, engine, settings.scoring_batch_rows, models)


def _score_shard(
    plan: ScoringPlan,
    shard: int,
    lake: Lake,
    engine: sa.Engine,
    batch_rows: int,
    models: Models,
) -> ShardResult:
    started = time.perf_counter()
    scorers = models()
    loaded = time.perf_counter() - started
    stamp = RunStamp(plan.run_date, plan.run_id, plan.started_at)
    loader = BackgroundStage(
        lambda batches: stage(engine, plan.run_date, _staging(batches), shard, plan.shards)
    )
    timings = {"score": 0.0}
    counts = {"plots": 0, "rows": 0}

    def scored() -> Iterator[pa.RecordBatch]:
        path = features_path(plan.run_date)
        for features in _shard_batches(lake, path, shard, plan.shards, batch_rows):
            tick = time.perf_counter()
            for alias, model in scorers.items():
                rows = score_batch(features, model, alias, stamp)
                timings["score"] += time.perf_counter() - tick
                loader.put(rows)
                yield log_batch(rows, features)
                tick = time.perf_counter()
                counts["rows"] += rows.num_rows
            counts["plots"] += features.num_rows

    try:
        lake.write_parquet_batches(plan.part(shard), stamped(LOG_SCHEMA, plan), scored())
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


def publish_run(
    plan: ScoringPlan,
    results: Sequence[ShardResult],
    *,
    lake: Lake | None = None,
    settings: Settings | None = None,
) -> ScoringResult:
    """Assemble the prediction log, publish the partition, write the county forecasts and
    bulletin, close the run."""
    settings = settings or get_settings()
    lake = lake or Lake.from_settings(settings)
    engine = get_engine(settings.predictions_db_url)
    with recording_failure(engine, plan), run_lock(engine, settings, plan.run_date, "publish"):
        return _publish_run(plan, results, lake, engine, settings)


def _publish_run(
    plan: ScoringPlan,
    results: Sequence[ShardResult],
    lake: Lake,
    engine: sa.Engine,
    settings: Settings,
) -> ScoringResult:
    started = time.perf_counter()
    assembled_s = 0.0
    pending = pending_log_path(plan.run_date)
    if served_run_id(engine, plan.run_date) == plan.run_id:  # a retry: swapped before
        log_uri, rows = _commit_log(lake, plan)
    else:
        _, log_rows = assemble(lake, plan, "part", pending, LOG_SCHEMA)
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
        log_uri, _ = _commit_log(lake, plan)
    reached("after_log")
    # What killed attempts left too (a shard retried after a kill mid-write): no writer of
    # the night is alive while this step holds the night's lock exclusively.
    clear_parts(lake, plan, killed_writers=True)
    seconds = {
        name: round(sum(r.seconds.get(name, 0.0) for r in results), 3)
        for name in ("load_models", "score", "total")
    }
    seconds["assemble_log"] = round(assembled_s, 3)
    seconds["publish"] = round(time.perf_counter() - started - assembled_s, 3)
    counties, counties_error = _county_step(plan.run_date, lake, settings)
    if counties is not None:
        seconds["counties"] = counties.seconds
    finished = dt.datetime.now(dt.UTC)
    plots = sum(r.plots for r in results)
    rejected = rejected_count(lake, plan.run_date)
    update_run(
        engine,
        plan.run_id,
        status=SUCCESS,
        plots_scored=plots,
        plots_rejected=rejected,
        finished_at=finished,
        duration_s=(finished - plan.started_at).total_seconds(),
        timings=seconds,
        prediction_log_uri=log_uri,
        message=counties_error,
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
        county_rows=None if counties is None else counties.rows,
        bulletin_uri=None if counties is None else counties.bulletin_uri,
        counties_error=counties_error,
    )
    log.info("published %s: %s", plan.run_date, result.xcom())
    return result


def _county_step(
    run_date: dt.date, lake: Lake, settings: Settings
) -> tuple[CountyResult | None, str | None]:
    """The county forecasts and bulletin of a night just published. A failure here never
    un-publishes the plot forecasts: it is logged as an error and returned as the run's
    ``scoring_runs.message`` (the run stays ``success``), and the DAG's ``county_bulletin``
    task runs the step again (:func:`county_bulletin`), failing visibly while it fails."""
    try:
        return publish_counties(run_date, lake=lake, settings=settings), None
    except Exception as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        log.error(
            "county bulletin of %s failed (its plot forecasts are published): %s", run_date, reason
        )
        return None, f"published; the county bulletin failed: {reason}"[:2000]


def county_bulletin(
    published: ScoringResult, *, lake: Lake | None = None, settings: Settings | None = None
) -> CountyResult | None:
    """The county step once more for a published night whose publish step could not write
    it (``published.counties_error``); None when it had. Raises the step's error while it
    still fails (the ``county_bulletin`` task fails, and retries). Under the night's lock;
    a night another run has published since is that run's to describe (None)."""
    if published.counties_error is None:
        return None
    settings = settings or get_settings()
    lake = lake or Lake.from_settings(settings)
    engine = get_engine(settings.predictions_db_url)
    with run_lock(engine, settings, published.run_date, "counties"):
        if served_run_id(engine, published.run_date) != published.run_id:
            log.warning(
                "%s is no longer served by run %s: its county bulletin is the newer run's",
                published.run_date,
                published.run_id,
            )
            return None
        counties = publish_counties(published.run_date, lake=lake, settings=settings)
        update_run(engine, published.run_id, message=None)
    return counties


def _commit_log(lake: Lake, plan: ScoringPlan) -> tuple[str, int]:
    """Move a published run's log into place (after its swap); its URI and rows."""
    pending, path = pending_log_path(plan.run_date), prediction_log_path(plan.run_date)
    if run_of(lake, pending) == plan.run_id:
        lake.move(pending, path)
    elif run_of(lake, path) != plan.run_id:
        raise LakeError(
            f"{plan.run_date} is published by run {plan.run_id}, but its prediction log is "
            f"missing: {lake.uri(pending)} not found"
        )
    return lake.uri(path), lake.open_parquet(path).metadata.num_rows


def hold_night(run_date: dt.date, settings: Settings) -> contextlib.AbstractContextManager[None]:
    """The run date's lock, held around a whole run in one process (``nuru-yield score``)."""
    return run_lock(get_engine(settings.predictions_db_url), settings, run_date, "score")


def shared_models(plan: ScoringPlan, settings: Settings) -> dict[str, Models]:
    """The plan's models for every shard a process runs: loaded by the first, kept."""
    return {"models": functools.cache(functools.partial(load_models, plan, settings))}


SCORING = Night(
    ScoringPlan,
    ShardResult,
    prepare_run,
    score_shard,
    publish_run,
    hold=hold_night,
    resources=shared_models,
)


def score(
    run_date: dt.date,
    *,
    lake: Lake | None = None,
    settings: Settings | None = None,
    shards: int | None = None,
) -> ScoringResult:
    """Prepare, score every shard and publish, in this process (``nuru-yield score``)."""
    return run_night(SCORING, run_date, lake=lake, settings=settings, shards=shards)
