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

    Concurrent callers share one load (no stampede on the database or MLflow). A loader that
    raises caches nothing: the next caller tries again.
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
        self._lock = asyncio.Lock()

    @property
    def value(self) -> T | None:
        """The last loaded value, however old (None before the first load)."""
        return self._value

    def _fresh(self) -> bool:
        return self._expires is not None and self._clock() < self._expires

    async def get(self) -> T:
        if self._fresh():
            return self._value  # type: ignore[return-value]
        async with self._lock:
            if not self._fresh():
                value = await self._load()
                ttl = self._ttl(value) if callable(self._ttl) else self._ttl
                self._value, self._expires = value, self._clock() + ttl
            return self._value  # type: ignore[return-value]

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
