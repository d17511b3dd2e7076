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


class Progress:
    """Log lines for a long step: how much is done, the time it took, and — when the total
    is known — the time left at this pace. One line at most every ``every_seconds``, and
    one when the step completes, so a task log or a terminal shows a step that is moving."""

    def __init__(self, description: str, total: int | None = None, every_seconds: float = 5.0):
        self.description = description
        self.total = total
        self.every_seconds = every_seconds
        self.started = time.monotonic()
        self._last_report = self.started

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def update(self, done: int) -> None:
        """Report ``done`` units of work when a line is due (or the step is complete)."""
        now = time.monotonic()
        finished = self.total is not None and done >= self.total
        if now - self._last_report < self.every_seconds and not finished:
            return
        self._last_report = now
        elapsed = now - self.started
        if self.total:
            left = (
                ""
                if finished or done == 0
                else f", ~{elapsed / done * (self.total - done):.0f}s left"
            )
            log.info(
                "%s: %d/%d (%.0f%%), %.1fs%s",
                self.description,
                done,
                self.total,
                100 * done / self.total,
                elapsed,
                left,
            )
        else:
            log.info("%s: %d/?, %.1fs", self.description, done, elapsed)


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Yield ``items`` while reporting progress under ``description``."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    if sys.stderr.isatty():
        from rich.progress import track as rich_track

        yield from rich_track(items, description=description, total=total, transient=False)
        return
    progress = Progress(description, total)
    for done, item in enumerate(items, start=1):
        yield item
        progress.update(done)


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
