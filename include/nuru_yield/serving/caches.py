"""Small async caches for what the API reads rarely: the registry, freshness, the lake probe."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class TtlCache(Generic[T]):
    """The result of an async loader, kept for ``ttl`` seconds, or ``ttl(value)`` seconds when
    ``ttl`` is a function (so that a failed probe is retried sooner than a good one).

    Concurrent callers share one load (no stampede on the database or MLflow), and its
    outcome: when it raises, every caller that waited for it gets the error at once (callers
    queued behind a failing load must not each retry it in turn, as they would behind a
    lock: behind a database that times out, the n-th caller would wait n timeouts). A load
    that raises caches nothing: the next caller tries again. A caller that goes away does
    not cancel the load the others wait for.
    """

    def __init__(
        self,
        load: Callable[[], Awaitable[T]],
        ttl: float | Callable[[T], float],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._ttl = ttl
        self._clock = clock
        self._expires: float | None = None
        self._value: T | None = None
        self._loading: asyncio.Task[T] | None = None

    @property
    def value(self) -> T | None:
        """The last loaded value, however old (None before the first load)."""
        return self._value

    def _fresh(self) -> bool:
        return self._expires is not None and self._clock() < self._expires

    async def get(self) -> T:
        if self._fresh():
            return self._value  # type: ignore[return-value]
        if self._loading is None:
            self._loading = asyncio.create_task(self._load_and_keep())
            self._loading.add_done_callback(self._loaded)
        return await asyncio.shield(self._loading)

    async def _load_and_keep(self) -> T:
        value = await self._load()
        ttl = self._ttl(value) if callable(self._ttl) else self._ttl
        self._value, self._expires = value, self._clock() + ttl
        return value

    def _loaded(self, task: asyncio.Task[T]) -> None:
        if self._loading is task:
            self._loading = None
        if not task.cancelled():
            task.exception()  # retrieved: its callers may all have gone away

    def clear(self) -> None:
        self._expires = None


async def in_thread(function: Callable[[], T], timeout: float, on_timeout: Callable[[], T]) -> T:
    """Run blocking ``function`` in a thread; after ``timeout`` seconds give ``on_timeout()``.

    The thread is left to finish on its own (a hung MLflow server cannot be interrupted);
    the caller's :class:`TtlCache` keeps further callers from starting more of them.
    """
    try:
        return await asyncio.wait_for(asyncio.to_thread(function), timeout)
    except TimeoutError:
        return on_timeout()
