"""Per-client rate limit: a token bucket per client address, answered with 429 + Retry-After.

In-process state, so with several uvicorn workers each enforces the limit on its share.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from nuru_yield.serving.asgi import send_json

EXEMPT_PATHS = frozenset({"/health", "/metrics"})  # probes and scrapers must always get in


class TokenBuckets:
    """``rate`` tokens per second up to ``burst`` per key; one request takes one token."""

    def __init__(
        self,
        rate: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, updated)

    def take(self, key: str) -> float:
        """0 if the request may pass, else the seconds until a token is available."""
        now = self._clock()
        tokens, updated = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - updated) * self.rate)
        if tokens >= 1.0:
            if len(self._buckets) >= self._max_keys and key not in self._buckets:
                self._forget_idle(now)
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate

    def _forget_idle(self, now: float) -> None:
        """Drop clients whose bucket has refilled: forgetting them changes nothing."""
        full_after = self.burst / self.rate
        self._buckets = {
            key: state for key, state in self._buckets.items() if now - state[1] < full_after
        }


class RateLimitMiddleware:
    def __init__(self, app: ASGIApp, buckets: TokenBuckets, per_minute: int) -> None:
        self.app = app
        self.buckets = buckets
        self.detail = f"rate limit exceeded: {per_minute} requests per minute per client"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        wait = self.buckets.take(client[0] if client else "unknown")
        if not wait:
            await self.app(scope, receive, send)
            return
        retry_after = str(max(1, math.ceil(wait))).encode()
        await send_json(send, 429, {"detail": self.detail}, [(b"retry-after", retry_after)])
