"""Progress reporting for long steps: a live bar on a terminal, periodic log lines elsewhere
(Airflow task logs, CI), so a user can always see how far a step has come."""

from __future__ import annotations

import logging
import resource
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger("nuru_yield.progress")


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Yield ``items`` while reporting progress under ``description``."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    if sys.stderr.isatty():
        from rich.progress import track as rich_track

        yield from rich_track(items, description=description, total=total, transient=False)
        return
    started = time.monotonic()
    last_report = started
    for done, item in enumerate(items, start=1):
        yield item
        now = time.monotonic()
        if now - last_report >= 5 or done == total:
            last_report = now
            share = f" ({done / total:.0%})" if total else ""
            log.info("%s: %d/%s%s, %.1fs", description, done, total or "?", share, now - started)


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (Linux reports KiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024
