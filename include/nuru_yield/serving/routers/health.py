"""``GET /health``: is the API serving, and how fresh is what it serves."""

from __future__ import annotations

import asyncio
import datetime as dt

from fastapi import APIRouter, Response

from nuru_yield.errors import DatabaseError, mask_passwords
from nuru_yield.serving.probes import REGISTERED_MODEL, FeatureStoreProbe, RegistrySnapshot
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
) -> Health:
    """Unhealthy only when the database is down (nothing can be served); degraded when
    something is missing or old but lookups still work. Reasons never show a password."""
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
    if not registry.connected:
        reasons.append(f"MLflow registry unavailable: {registry.error}")
    if not feature_store.available:
        reasons.append(f"feature store unavailable: {feature_store.reason}")
    status = "unhealthy" if db_error else ("degraded" if reasons else "healthy")
    served = [PUBLIC_NAMES[model] for model in freshness.models] if freshness else []
    return Health(
        status=status,
        reasons=[mask_passwords(reason) for reason in reasons],
        models_loaded=served
        + [f"{REGISTERED_MODEL}@{alias}" for alias in sorted(registry.aliases)],
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
    registry, feature_store, (freshness, db_error) = await asyncio.gather(
        state.registry.get(), state.feature_store.get(), _database(state)
    )
    report = assess(
        now=dt.datetime.now(dt.UTC),
        freshness=freshness,
        db_error=db_error,
        registry=registry,
        feature_store=feature_store,
        stale_after_hours=state.settings.api_stale_after_hours,
    )
    if report.status == "unhealthy":
        response.status_code = 503
    return report


async def _database(state: State) -> tuple[Freshness | None, str | None]:
    """The newest partition, or why the database cannot tell."""
    try:
        await state.store.ping()
        return await state.freshness.get(), None
    except DatabaseError as error:
        return None, str(error)
