"""Progress reporting for long steps: a live bar on a terminal, periodic log lines elsewhere
(Airflow task logs, CI), so a user can always see how far a step has come."""

from __future__ import annotations

import contextlib
import logging
import resource
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
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
    """Peak resident set size of this process so far, in MB.

    On Linux from ``VmHWM`` of ``/proc/self/status``: ``getrusage``'s ``ru_maxrss`` carries
    the parent's peak into a child started by fork and exec (a process spawned by a big
    benchmark reported the benchmark's memory, not its own).
    """
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024
