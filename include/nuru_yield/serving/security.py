"""``X-API-Key`` authentication: off when ``API_KEY`` is unset (local use, DESIGN §3)."""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Security
from fastapi.security import APIKeyHeader

from nuru_yield.serving.schemas import ErrorBody
from nuru_yield.serving.state import State

api_key_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="Required on every route but /health and /metrics when the server has API_KEY.",
)

AUTH_RESPONSES: dict[int | str, dict] = {
    401: {"model": ErrorBody, "description": "X-API-Key header missing."},
    403: {"model": ErrorBody, "description": "X-API-Key does not match."},
    429: {"model": ErrorBody, "description": "Rate limit exceeded; see Retry-After."},
}


async def require_api_key(state: State, supplied: str | None = Security(api_key_header)) -> None:
    expected = state.api_key
    if expected is None:
        return
    if not supplied:
        raise HTTPException(401, "missing X-API-Key header", headers={"WWW-Authenticate": "APIKey"})
    # Constant time: the comparison must not tell an attacker how much of a guess was right.
    if not hmac.compare_digest(supplied.encode(), expected):
        raise HTTPException(403, "invalid API key")
