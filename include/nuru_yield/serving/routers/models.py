"""``GET /models`` and ``POST /models/reload``: the registry and the promotion audit."""

from __future__ import annotations

from fastapi import APIRouter

from nuru_yield.errors import mask_passwords
from nuru_yield.names import MODEL_NAME
from nuru_yield.serving.routers import DB_UNAVAILABLE
from nuru_yield.serving.schemas import Models, ModelVersion, Promotion
from nuru_yield.serving.security import AUTH_RESPONSES
from nuru_yield.serving.state import State

router = APIRouter(
    tags=["models"],
    responses={**AUTH_RESPONSES, **DB_UNAVAILABLE},
)


async def _models(state: State) -> Models:
    registry = await state.registry.get()
    promotions = await state.promotions.get()
    return Models(
        registered_model=MODEL_NAME,
        mlflow_connected=registry.connected,
        mlflow_error=mask_passwords(registry.error) if registry.error else None,
        aliases=registry.aliases,
        versions=[ModelVersion(**version) for version in registry.versions],
        promotions=[Promotion(**row) for row in promotions],
        fetched_at=registry.fetched_at,
    )


@router.get("/models", response_model=Models)
async def models(state: State) -> Models:
    """Registered versions with aliases and run metrics, and every promotion decision
    (cached for API_CACHE_SECONDS; MLflow being down leaves `mlflow_connected` false)."""
    return await _models(state)


@router.post("/models/reload", response_model=Models)
async def reload_models(state: State) -> Models:
    """Drop every cache (registry, promotions, freshness, lake probe) and read them again."""
    state.clear_caches()
    return await _models(state)
