"""Shared benchmark plumbing (``nuru-yield bench …``).

A benchmark times the system and a bare baseline in the same run and reports their ratio,
so that a busy or slow machine moves both numbers together. Each timed part runs in a
fresh process (:func:`run_isolated`) so that its peak RSS is its own, not the data
generator's or the baseline's. The last line a benchmark prints is one JSON object
(:func:`emit`). Every benchmark works in a scratch space of its own
(:func:`nuru_yield.dev.scratch.scratch_space`), never in the configured lake, registry or
database.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import resource
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from nuru_yield.progress import peak_rss_mb

__all__ = [
    "Measured",
    "emit",
    "peak_rss_mb",
    "run_isolated",
    "run_isolated_many",
]

T = TypeVar("T")


@dataclass(frozen=True)
class Measured:
    """The result of a call with its wall time and the peak RSS of the process that ran it."""

    result: Any
    seconds: float
    peak_rss_mb: float
    cpu_seconds: float = 0.0
    """User + system CPU of the process (all its threads) during the call: what a busy,
    shared machine changes least."""


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _timed_call(func: Callable[..., T], args: tuple[Any, ...], log_level: int) -> Measured:
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    started, cpu = time.perf_counter(), _cpu_seconds()
    result = func(*args)
    return Measured(result, time.perf_counter() - started, peak_rss_mb(), _cpu_seconds() - cpu)


def run_isolated(func: Callable[..., Any], *args: Any) -> Measured:
    """Run ``func(*args)`` in a freshly spawned process; time it there, return its result.

    ``func`` and ``args`` must be picklable (a module-level function). Import costs of the
    child's own modules count, as they would for an Airflow task.
    """
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        level = logging.getLogger().getEffectiveLevel()
        return pool.submit(_timed_call, func, args, level).result()


def run_isolated_many(
    func: Callable[..., Any], calls: Sequence[tuple[Any, ...]], parallel: int
) -> tuple[list[Measured], float]:
    """Run ``func(*args)`` for every ``args`` of ``calls``, each in a fresh process, at most
    ``parallel`` at a time (as an executor with that many slots would); returns their
    results in order and the wall time of the whole."""
    context = multiprocessing.get_context("spawn")
    level = logging.getLogger().getEffectiveLevel()
    started = time.perf_counter()
    with ProcessPoolExecutor(
        max_workers=parallel, mp_context=context, max_tasks_per_child=1
    ) as pool:
        futures = [pool.submit(_timed_call, func, args, level) for args in calls]
        results = [future.result() for future in futures]
    return results, time.perf_counter() - started


def emit(result: dict[str, Any]) -> None:
    """Print the benchmark's result as the last line: one JSON object."""
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
