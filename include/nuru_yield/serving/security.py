"""``X-API-Key`` authentication: off when ``API_KEY`` is unset (local use; docs/DESIGN.md,
"Configuration").

A pure-ASGI middleware rather than a FastAPI dependency: it runs on every request, and a
dependency costs a resolution pass each time (the API's budget is a few tens of microseconds per
request: docs/DESIGN.md, "The API's fast paths"). The OpenAPI document still declares the scheme (see
:func:`document_api_key`), so /docs offers an "Authorize" button.
"""

from __future__ import annotations

import hmac
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from nuru_yield.serving.asgi import send_json
from nuru_yield.serving.schemas import ErrorBody

HEADER = b"x-api-key"
# Probes and scrapers get in without a key; so do the docs and their assets (no data).
OPEN_PATHS = frozenset({"/health", "/metrics", "/docs", "/docs/oauth2-redirect", "/openapi.json"})
OPEN_PREFIX = "/docs/assets/"
SCHEME = "APIKeyHeader"

AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "X-API-Key header missing."},
    403: {"model": ErrorBody, "description": "X-API-Key does not match."},
    429: {"model": ErrorBody, "description": "Rate limit exceeded; see Retry-After."},
}


class ApiKeyMiddleware:
    """401 without ``X-API-Key``, 403 with a wrong one, on every path but :data:`OPEN_PATHS`."""

    def __init__(self, app: ASGIApp, key: bytes) -> None:
        self.app = app
        self.key = key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] in OPEN_PATHS
            or scope["path"].startswith(OPEN_PREFIX)
        ):
            await self.app(scope, receive, send)
            return
        supplied = _supplied_key(scope["headers"])
        if not supplied:
            await send_json(
                send,
                401,
                {"detail": "missing X-API-Key header"},
                [(b"www-authenticate", b"APIKey")],
            )
        # Constant time: the comparison must not tell an attacker how much of a guess was right.
        elif not hmac.compare_digest(supplied, self.key):
            await send_json(send, 403, {"detail": "invalid API key"})
        else:
            await self.app(scope, receive, send)


def _supplied_key(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    return next((value for name, value in headers if name == HEADER), None)


def holds_key(headers: list[tuple[bytes, bytes]], key: bytes | None) -> bool:
    """Whether a request may see what the key protects: it carries the key, or the server
    has none (``API_KEY`` unset: every route is open to every caller)."""
    if key is None:
        return True
    supplied = _supplied_key(headers)
    return bool(supplied) and hmac.compare_digest(supplied, key)


def document_api_key(openapi: dict[str, Any]) -> dict[str, Any]:
    """Declare the key in an OpenAPI document: the scheme, and a requirement on every
    operation outside :data:`OPEN_PATHS`."""
    openapi.setdefault("components", {}).setdefault("securitySchemes", {})[SCHEME] = {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "Required on every route but /health and /metrics when the server "
        "has API_KEY.",
    }
    for path, operations in openapi.get("paths", {}).items():
        if path not in OPEN_PATHS:
            for operation in operations.values():
                operation["security"] = [{SCHEME: []}]
    return openapi
