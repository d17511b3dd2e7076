"""One router per resource (FastAPI full-stack-template style)."""

from __future__ import annotations

from nuru_yield.serving.schemas import ErrorBody

DB_UNAVAILABLE: dict[int | str, dict] = {
    503: {"model": ErrorBody, "description": "The predictions database is unavailable."}
}
