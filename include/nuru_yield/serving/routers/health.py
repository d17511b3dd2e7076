"""``GET /health``: is the API serving, and how fresh is what it serves."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Request, Response

from nuru_yield.errors import DatabaseError, mask_passwords
from nuru_yield.names import MODEL_NAME
from nuru_yield.serving.probes import FeatureStoreProbe, RegistrySnapshot
from nuru_yield.serving.schemas import PUBLIC_NAMES, Health
from nuru_yield.serving.security import holds_key
from nuru_yield.serving.state import Freshness, State
from nuru_yield.serving.store import UNAVAILABLE

router = APIRouter(tags=["health"])


def assess(
    *,
    now: dt.datetime,
    freshness: Freshness | None,
    db_error: str | None,
    registry: RegistrySnapshot,
    feature_store: FeatureStoreProbe,
    stale_after_hours: float,
    last_run: Mapping[str, Any] | None = None,
    detailed: bool = True,
) -> Health:
    """Unhealthy only when the database is down (nothing can be served); degraded when
    something is missing or old, or the last scoring run did not succeed (an empty night,
    a failure), but lookups still work. Reasons never show a password; without
    ``detailed`` they say what is wrong but not why: no error text, which may name a
    file, a host or a URL (for callers without the key)."""
    reasons: list[tuple[str, str]] = []  # (what is wrong, the same with why: _with_why)
    age = freshness.age_seconds(now) if freshness else None
    if db_error:
        reasons.append((UNAVAILABLE, db_error))
    elif freshness is None:
        reasons.append(_with_why("no predictions loaded yet", None))
    elif age is not None and age > stale_after_hours * 3600:
        stale = (
            f"newest partition ({freshness.run_date}) is {age / 3600:.1f} h old "
            f"(limit {stale_after_hours:g} h)"
        )
        reasons.append(_with_why(stale, None))
    if last_run is not None and last_run["status"] != "success":
        ended = (
            f"last scoring run ({last_run['run_date']}, {last_run['run_id']}) ended "
            f"{last_run['status']}"
        )
        why = (last_run["message"] or "").partition("\n")[0][:300]
        reasons.append(_with_why(ended, why))
    if not registry.connected:
        reasons.append(_with_why("MLflow registry unavailable", registry.error))
    if not feature_store.available:
        reasons.append(_with_why("feature store unavailable", feature_store.reason))
    status = "unhealthy" if db_error else ("degraded" if reasons else "healthy")
    served = [PUBLIC_NAMES[model] for model in freshness.models] if freshness else []
    return Health(
        status=status,
        reasons=[mask_passwords(full) if detailed else what for what, full in reasons],
        models_loaded=served + [f"{MODEL_NAME}@{alias}" for alias in sorted(registry.aliases)],
        mlflow_connected=registry.connected,
        feature_store_available=feature_store.available,
        predictions_db="unavailable" if db_error else "ok",
        latest_run_date=freshness.run_date if freshness else None,
        newest_partition_age_seconds=age,
        timestamp=now,
    )


def _with_why(what: str, why: str | None) -> tuple[str, str]:
    """A reason for callers without the key, and the same with its details."""
    return what, f"{what}: {why}" if why else what


@router.get(
    "/health",
    response_model=Health,
    responses={503: {"model": Health, "description": "The predictions database is down."}},
)
async def health(state: State, request: Request, response: Response) -> Health:
    """Status, served models and registry aliases, and the age of the newest partition.
    Answers within the database timeout (API_DB_TIMEOUT_SECONDS) when the database does not
    answer, and within the MLflow timeout when MLflow does not. Without the X-API-Key
    (when the server has one) the reasons say what is wrong, not why (no error text: it may
    name a file or a host). `HEAD /health` answers the same status without a body."""
    registry, feature_store, (freshness, last_run, db_error) = await asyncio.gather(
        state.registry.get(), state.feature_store.get(), _database(state)
    )
    report = assess(
        now=dt.datetime.now(dt.UTC),
        freshness=freshness,
        db_error=db_error,
        registry=registry,
        feature_store=feature_store,
        stale_after_hours=state.settings.api_stale_after_hours,
        last_run=last_run,
        detailed=holds_key(request.scope["headers"], state.api_key),
    )
    if report.status == "unhealthy":
        response.status_code = 503
    return report


# For load balancers, which probe with HEAD: uvicorn sends the status and headers only.
router.add_api_route("/health", health, methods=["HEAD"], include_in_schema=False)


async def _database(
    state: State,
) -> tuple[Freshness | None, Mapping[str, Any] | None, str | None]:
    """The newest partition and the last scoring run, or why the database cannot tell."""
    try:
        await state.store.ping()
        return await state.freshness.get(), await state.store.last_scoring_run(), None
    except DatabaseError as error:
        return None, None, str(error)
