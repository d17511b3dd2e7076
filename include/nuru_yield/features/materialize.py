"""``features/{D}/`` partition: load → compute → validate → write (the I/O edge).

Called by ``nuru-yield features --date D`` and by the ``feature_materialization`` DAG.
Each file is written atomically, ``validation.json`` last. A rerun for D replaces the
partition's files and removes any other file in it; no other partition is touched.
When the gate fails, the run writes ``rejected.parquet`` and ``validation.json`` for
diagnosis, deletes any ``plot_features.parquet`` of an earlier run (so no stale table
looks current) and raises :class:`~nuru_yield.errors.DataValidationError`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from nuru_yield import lake as paths
from nuru_yield.contract import PLOTS_SCHEMA
from nuru_yield.errors import LakeError
from nuru_yield.features.checks import MAX_CELL_DISTANCE_KM
from nuru_yield.features.columns import OUTPUT_SCHEMA
from nuru_yield.features.compute import season_to_date
from nuru_yield.features.raw import load_raw
from nuru_yield.features.validation import validate

if TYPE_CHECKING:
    from nuru_yield.config import Settings
    from nuru_yield.lake import Lake

log = logging.getLogger(__name__)

REJECTED_SCHEMA = PLOTS_SCHEMA.append(pa.field("reason", pa.string()))


@dataclass(frozen=True)
class MaterializeResult:
    """What a run wrote: URIs and row counts (small and JSON-friendly, fit for XCom)."""

    run_date: str
    features_uri: str
    rejected_uri: str
    validation_uri: str
    rows: int
    rejected: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def materialize(
    lake: Lake, run_date: dt.date | str, settings: Settings | None = None
) -> MaterializeResult:
    """Compute, validate and write the season-to-date features of ``run_date``."""
    from nuru_yield.config import get_settings

    settings = settings or get_settings()
    day = dt.date.fromisoformat(run_date) if isinstance(run_date, str) else run_date
    seconds: dict[str, float] = {}
    preload = _import_in_background("great_expectations")
    with _timed(seconds, "load"):
        raw = load_raw(lake, day - dt.timedelta(days=settings.season_max_days), day)
    with _timed(seconds, "compute"):
        result = season_to_date(raw, day, settings.season_max_days, MAX_CELL_DISTANCE_KM)
    with _timed(seconds, "validate"):
        preload.join()
        report = validate(
            plots=result.plots,
            cells=raw.cells,
            weather=raw.weather,
            ndvi=raw.ndvi,
            features=result.features,
            threshold=settings.validation_max_bad_share,
            season_max_days=settings.season_max_days,
            max_cell_distance_km=MAX_CELL_DISTANCE_KM,
            run_date=day,
            plot_seasons_read=len(raw.plots),
            weather_max_lag_days=settings.weather_max_lag_days,
        )
    with _timed(seconds, "write"):
        features_path = paths.features_path(day)
        if report.passed:
            features = pa.Table.from_pandas(
                result.features, schema=OUTPUT_SCHEMA, preserve_index=False
            )
            features_uri = lake.write_parquet(features_path, features)
        else:
            lake.delete(features_path)
            features_uri = lake.uri(features_path)
        rejected = pa.Table.from_pandas(
            result.rejected, schema=REJECTED_SCHEMA, preserve_index=False
        )
        rejected_uri = lake.write_parquet(paths.rejected_path(day), rejected)
        _remove_strays(lake, day)
    payload = {"run_date": day.isoformat(), **report.to_json(), "seconds": seconds}
    validation_uri = lake.write_json(paths.validation_path(day), payload)
    log.info(
        "features %s: %d rows, %d rejected, %s (%s)",
        day,
        len(result.features),
        len(result.rejected),
        "passed" if report.passed else "FAILED",
        ", ".join(f"{step} {s:.1f}s" for step, s in seconds.items()),
    )
    report.raise_on_failure()
    return MaterializeResult(
        run_date=day.isoformat(),
        features_uri=features_uri,
        rejected_uri=rejected_uri,
        validation_uri=validation_uri,
        rows=len(result.features),
        rejected=len(result.rejected),
    )


def published_partition(lake: Lake, run_date: dt.date | str) -> dict[str, Any]:
    """Check that ``features/{D}/`` holds a passed run; its URI and row count.

    Raises :class:`~nuru_yield.errors.LakeError` when the partition is missing or its
    ``validation.json`` does not say ``passed``.
    """
    day = run_date if isinstance(run_date, str) else run_date.isoformat()
    status = lake.read_json(paths.validation_path(day)).get("status")
    if status != "passed":
        raise LakeError(f"{lake.uri(paths.validation_path(day))} says {status!r}, not 'passed'")
    rows = lake.open_parquet(paths.features_path(day)).metadata.num_rows
    return {"run_date": day, "uri": lake.uri(paths.features_path(day)), "rows": rows}


def _import_in_background(module: str) -> threading.Thread:
    """Start importing ``module`` in a thread, to overlap with loading and computing.

    Importing great-expectations costs ≈15 s of CPU, as much as computing a million
    plot-seasons. The thread only imports; the heavy modules of the main thread (numpy,
    pandas, pyarrow, scipy.spatial) are imported before it starts. A failed import
    raises again, in the main thread, where the module is used.
    """

    def load() -> None:
        with contextlib.suppress(ImportError):
            importlib.import_module(module)

    thread = threading.Thread(target=load, name=f"import-{module}", daemon=True)
    thread.start()
    return thread


def _remove_strays(lake: Lake, day: dt.date) -> None:
    """Delete files of the partition that this run does not write (a rerun replaces it)."""
    ours = {paths.features_path(day), paths.rejected_path(day), paths.validation_path(day)}
    for path in lake.list(f"{paths.FEATURES}/{day.isoformat()}"):
        if path not in ours:
            lake.delete(path)


@contextmanager
def _timed(seconds: dict[str, float], step: str) -> Iterator[None]:
    started = time.perf_counter()
    log.info("features: %s…", step)
    yield
    seconds[step] = round(time.perf_counter() - started, 3)
