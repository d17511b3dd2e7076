"""``GET /metrics``: Prometheus text exposition."""

from __future__ import annotations

import contextlib

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from nuru_yield.errors import DatabaseError
from nuru_yield.serving.state import State

router = APIRouter(tags=["health"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format."}},
)
async def metrics(state: State) -> Response:
    """Request counts and latency histograms per route and status, rows served, and the
    age of the newest partition."""
    with contextlib.suppress(DatabaseError):  # a scrape still reports the last known age
        await state.freshness.get()
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
