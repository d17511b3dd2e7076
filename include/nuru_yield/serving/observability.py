"""Prometheus metrics and structured request logs, recorded by one pure-ASGI middleware
(``BaseHTTPMiddleware`` would cost a task per request on the hot path), which also adds
the headers every answer carries (:mod:`nuru_yield.serving.headers`)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nuru_yield.errors import ConfigError
from nuru_yield.serving.headers import response_headers
from nuru_yield.serving.store import EVENTS

UNMATCHED_ROUTE = "<unmatched>"  # keeps label cardinality bounded on scans of random paths
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ApiMetrics:
    """The API's own registry (not the process-global one: several apps may live in one
    process, as in tests)."""

    def __init__(self, newest_partition_age: Callable[[], float | None]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._requests = Counter(
            "nuru_api_requests",
            "HTTP requests by route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "nuru_api_request_duration_seconds",
            "Time from request to the end of the response.",
            ["method", "route", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._rows = Counter(
            "nuru_api_rows_served",
            "Stored predictions returned.",
            ["model"],
            registry=self.registry,
        )
        self._database = Counter(
            "nuru_api_database_events",
            "Predictions database failures by kind (timeout, connection_error, query_error), "
            "and dead pooled connections replaced with the query retried (reconnected).",
            ["event"],
            registry=self.registry,
        )
        for event in EVENTS:  # every kind shows from the start, at 0
            self._database.labels(event)
        age = Gauge(
            "nuru_api_newest_partition_age_seconds",
            "Age of the newest predictions partition (since it was scored).",
            registry=self.registry,
        )
        age.set_function(lambda: _nan_if_none(newest_partition_age()))
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._row_children: dict[str, Any] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:  # `labels()` is the slow part of prometheus_client: do it once
            labels = (method, route, str(status))
            children = (self._requests.labels(*labels), self._latency.labels(*labels))
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def database_event(self, event: str) -> None:
        self._database.labels(event).inc()

    def rows_served(self, model: str, count: int = 1) -> None:
        child = self._row_children.get(model)
        if child is None:
            child = self._row_children[model] = self._rows.labels(model)
        child.inc(count)


def _nan_if_none(value: float | None) -> float:
    return float("nan") if value is None else value


class RequestLog:
    """One JSON line per request, to stdout and to ``LOG_FILE`` when set.

    Written straight to the streams rather than through ``logging`` (a record, a lock and a
    flush per request cost more than the lookup itself) and flushed every second by
    :meth:`flush_periodically`, so a crash loses at most that much of the log.
    """

    def __init__(self, log_file: Path | None = None, stdout: IO[str] | None = None) -> None:
        self.streams: list[IO[str]] = [stdout or sys.stdout]
        self._file: IO[str] | None = None
        if log_file is not None:
            try:
                log_file.parent.mkdir(parents=True, exist_ok=True)
                self._file = log_file.open("a", encoding="utf-8")
            except OSError as error:
                raise ConfigError(f"cannot write LOG_FILE={log_file}: {error.strerror}") from None
            self.streams.append(self._file)

    def write(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry) + "\n"
        for stream in self.streams:
            stream.write(line)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()

    async def flush_periodically(self, every: float = 1.0) -> None:
        while True:
            await asyncio.sleep(every)
            self.flush()

    def close(self) -> None:
        self.flush()
        if self._file is not None:
            self._file.close()


class QuietRepeats:
    """Logs a warning the first time, then the same message at most once per ``every``
    seconds, saying how often it was repeated meanwhile: a database that is down for a
    minute under load is a handful of lines, not one per request (each costs the event loop
    a write while it is serving 503s)."""

    def __init__(
        self,
        logger: logging.Logger,
        every: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        max_messages: int = 1000,
    ) -> None:
        self.logger = logger
        self.every = every
        self.clock = clock
        self.max_messages = max_messages
        self.logged: dict[str, float] = {}  # message -> when it was last logged
        self.repeats: dict[str, int] = {}

    def warning(self, message: str) -> None:
        now = self.clock()
        last = self.logged.get(message)
        if last is not None and now - last < self.every:
            self.repeats[message] = self.repeats.get(message, 0) + 1
            return
        if len(self.logged) >= self.max_messages:
            self.logged.clear()
        repeated = self.repeats.pop(message, 0)
        self.logged[message] = now
        if repeated:
            self.logger.warning("%s (%d more since %.0fs ago)", message, repeated, now - last)
        else:
            self.logger.warning("%s", message)


class ObservabilityMiddleware:
    """Counts, times and logs every HTTP request under its route template, and adds the
    headers of its path to the answer (the outermost middleware: every answer passes)."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics, log: RequestLog) -> None:
        self.app = app
        self.metrics = metrics
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before responding
        added = response_headers(scope["path"])

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), *added]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            seconds = time.perf_counter() - started
            template = _route_template(scope)
            self.metrics.observe(scope["method"], template, status, seconds)
            client = scope.get("client")
            self.log.write(
                {
                    "ts": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
                    "method": scope["method"],
                    "path": scope["path"],
                    "route": template,
                    "status": status,
                    "ms": round(seconds * 1000, 3),
                    "client": client[0] if client else None,
                }
            )


def _route_template(scope: Scope) -> str:
    """The route the request matched; for one answered before routing (401, 429), the route it
    would have matched; :data:`UNMATCHED_ROUTE` for paths the app does not have."""
    route = scope.get("route")
    if route is None and "app" in scope:
        route = next(
            (r for r in scope["app"].router.routes if r.matches(scope)[0] == Match.FULL), None
        )
    return getattr(route, "path", None) or UNMATCHED_ROUTE
