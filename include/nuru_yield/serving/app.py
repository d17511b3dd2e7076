"""The FastAPI app: routers, middleware, error bodies, and ``run`` for ``nuru-yield serve``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.middleware.cors import CORSMiddleware

from nuru_yield.config import Settings, get_settings
from nuru_yield.errors import DatabaseError
from nuru_yield.serving.observability import ObservabilityMiddleware, RequestLog
from nuru_yield.serving.ratelimit import RateLimitMiddleware, TokenBuckets
from nuru_yield.serving.routers import health, metrics, models, predict, predictions
from nuru_yield.serving.security import ApiKeyMiddleware, document_api_key
from nuru_yield.serving.state import ApiState, RegistryPreparation, RegistryReader
from nuru_yield.serving.store import PredictionStore, open_store

log = logging.getLogger(__name__)

DESCRIPTION = """
Read-only lookups of the forecasts that the nightly batch scoring stored (DESIGN §1, §6):
nothing is computed per request. `ensemble` is the champion model, `challenger` the
shadow model. When the server has `API_KEY`, every route but `/health` and `/metrics`
needs the `X-API-Key` header.
"""


def create_app(
    settings: Settings | None = None,
    *,
    store: PredictionStore | None = None,
    registry_reader: RegistryReader | None = None,
    prepare_registry: RegistryPreparation | None = None,
) -> FastAPI:
    """Build the app (also the ``uvicorn --factory`` target). Connects to nothing until the
    first request, so a server starts, and reports 503, while its database is down."""
    settings = settings or get_settings()
    state = ApiState.from_settings(
        settings,
        store
        or open_store(
            settings.api_db_url,
            pool_max=settings.api_db_pool_max,
            timeout=settings.api_db_timeout_seconds,
        ),
        registry_reader,
        prepare_registry,
    )

    request_log = RequestLog(settings.log_file)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Import MLflow and read the registry in the background, not on the first /health.
        background = [
            asyncio.create_task(state.registry.get()),
            asyncio.create_task(request_log.flush_periodically()),
        ]
        try:
            yield
        finally:
            for task in background:
                task.cancel()
            request_log.close()
            await state.store.close()

    app = FastAPI(
        title="Nuru Yield API",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
        redoc_url=None,  # /docs is the documentation; one route fewer to match per request
    )
    app.state.api = state
    # /predict first: Starlette tries routes in order, and it is the hot one.
    app.router.routes.append(predict.FAST_ROUTE)
    for module in (predict, predictions, models, health, metrics):
        app.include_router(module.router)
    app.add_exception_handler(DatabaseError, _database_unavailable)
    app.add_exception_handler(Exception, _internal_error)
    # Added innermost first: a request meets log/metrics, rate limit, CORS (preflights carry
    # no key), then the key check.
    if state.api_key is not None:
        app.add_middleware(ApiKeyMiddleware, key=state.api_key)
    if settings.api_cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.api_cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["X-API-Key", "Content-Type"],
        )
    if settings.api_rate_limit_per_minute:
        app.add_middleware(
            RateLimitMiddleware,
            buckets=TokenBuckets(
                settings.api_rate_limit_per_minute / 60, settings.api_rate_limit_burst
            ),
            per_minute=settings.api_rate_limit_per_minute,
        )
    app.add_middleware(ObservabilityMiddleware, metrics=state.metrics, log=request_log)
    app.openapi = lambda: document_api_key(FastAPI.openapi(app))  # type: ignore[method-assign]
    return app


async def _database_unavailable(_: Request, error: Exception) -> JSONResponse:
    log.warning("%s", error)
    return JSONResponse({"detail": str(error)}, status_code=503)


async def _internal_error(request: Request, error: Exception) -> JSONResponse:
    # Logged with the traceback for operators; the client gets no stack trace and no SQL.
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=error)
    return JSONResponse({"detail": "internal error"}, status_code=500)


def run(host: str, port: int, workers: int = 1) -> None:
    """Serve with uvicorn (uvloop and httptools when installed, no access log: ours is
    structured). The app is built here first, so a bad setting fails in one line before
    uvicorn starts; worker processes build their own from the same settings."""
    import uvicorn

    app = create_app()
    uvicorn.run(
        app if workers == 1 else "nuru_yield.serving.app:create_app",
        factory=workers > 1,
        host=host,
        port=port,
        workers=workers,
        access_log=False,
        server_header=False,
        log_level="info",
    )
