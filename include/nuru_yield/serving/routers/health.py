"""``GET /health``: is the API serving, and how fresh is what it serves."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Response

from nuru_yield.errors import DatabaseError, mask_passwords
from nuru_yield.names import MODEL_NAME
from nuru_yield.serving.probes import FeatureStoreProbe, RegistrySnapshot
from nuru_yield.serving.schemas import PUBLIC_NAMES, Health
from nuru_yield.serving.state import Freshness, State

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
) -> Health:
    """Unhealthy only when the database is down (nothing can be served); degraded when
    something is missing or old, or the last scoring run did not succeed (an empty night,
    a failure), but lookups still work. Reasons never show a password."""
    reasons: list[str] = []
    age = freshness.age_seconds(now) if freshness else None
    if db_error:
        reasons.append(db_error)
    elif freshness is None:
        reasons.append("no predictions loaded yet")
    elif age is not None and age > stale_after_hours * 3600:
        reasons.append(
            f"newest partition ({freshness.run_date}) is {age / 3600:.1f} h old "
            f"(limit {stale_after_hours:g} h)"
        )
    if last_run is not None and last_run["status"] != "success":
        why = (last_run["message"] or "").partition("\n")[0][:300]
        reasons.append(
            f"last scoring run ({last_run['run_date']}, {last_run['run_id']}) ended "
            f"{last_run['status']}" + (f": {why}" if why else "")
        )
    if not registry.connected:
        reasons.append(f"MLflow registry unavailable: {registry.error}")
    if not feature_store.available:
        reasons.append(f"feature store unavailable: {feature_store.reason}")
    status = "unhealthy" if db_error else ("degraded" if reasons else "healthy")
    served = [PUBLIC_NAMES[model] for model in freshness.models] if freshness else []
    return Health(
        status=status,
        reasons=[mask_passwords(reason) for reason in reasons],
        models_loaded=served + [f"{MODEL_NAME}@{alias}" for alias in sorted(registry.aliases)],
        mlflow_connected=registry.connected,
        feature_store_available=feature_store.available,
        predictions_db="unavailable" if db_error else "ok",
        latest_run_date=freshness.run_date if freshness else None,
        newest_partition_age_seconds=age,
        timestamp=now,
    )


@router.get(
    "/health",
    response_model=Health,
    responses={503: {"model": Health, "description": "The predictions database is down."}},
)
async def health(state: State, response: Response) -> Health:
    """Status, served models and registry aliases, and the age of the newest partition.
    Answers within the database timeout (API_DB_TIMEOUT_SECONDS) when the database does not
    answer, and within the MLflow timeout when MLflow does not."""
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
    )
    if report.status == "unhealthy":
        response.status_code = 503
    return report


async def _database(
    state: State,
) -> tuple[Freshness | None, Mapping[str, Any] | None, str | None]:
    """The newest partition and the last scoring run, or why the database cannot tell."""
    try:
        await state.store.ping()
        return await state.freshness.get(), await state.store.last_scoring_run(), None
    except DatabaseError as error:
        return None, None, str(error)
