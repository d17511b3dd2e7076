"""The FastAPI app: routers, middleware, error bodies, and ``run`` for ``nuru-yield serve``."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response

from nuru_yield.config import Settings, get_settings
from nuru_yield.errors import LOG_FORMAT, DatabaseError, mask_passwords
from nuru_yield.serving.docs import add_docs
from nuru_yield.serving.headers import DATA_HEADERS
from nuru_yield.serving.limits import BodyLimitMiddleware, HeadLimitProtocol
from nuru_yield.serving.observability import ObservabilityMiddleware, QuietRepeats, RequestLog
from nuru_yield.serving.ratelimit import RateLimitMiddleware, TokenBuckets
from nuru_yield.serving.routers import counties, health, metrics, models, predict, predictions
from nuru_yield.serving.security import ApiKeyMiddleware, document_api_key
from nuru_yield.serving.state import ApiState, RegistryPreparation, RegistryReader
from nuru_yield.serving.store import PredictionStore, open_store

log = logging.getLogger(__name__)

DESCRIPTION = """
Read-only lookups of the forecasts that the nightly batch scoring stored: nothing is
computed per request. `ensemble` is the champion model, `challenger` the
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
        docs_url=None,  # served by add_docs from local assets, not FastAPI's CDN page
        redoc_url=None,  # /docs is the documentation; one route fewer to match per request
    )
    app.state.api = state
    # /predict first: Starlette tries routes in order, and it is the hot one.
    app.router.routes.append(predict.FAST_ROUTE)
    for module in (predict, predictions, counties, models, health, metrics):
        app.include_router(module.router)
    add_docs(app)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    database_warnings = QuietRepeats(log)

    async def database_unavailable(_: Request, error: Exception) -> JSONResponse:
        reason = mask_passwords(str(error))
        database_warnings.warning(reason)
        return JSONResponse({"detail": reason}, status_code=503)

    app.add_exception_handler(DatabaseError, database_unavailable)
    app.add_exception_handler(Exception, _internal_error)
    # Added innermost first: a request meets log/metrics, CORS (preflights carry no key), the
    # key check (a client without a valid key never takes from a rate-limit bucket), the
    # rate limit, then the body limit (nothing is read for a refused request).
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.api_max_body_bytes,
        timeout=settings.api_body_timeout_seconds,
    )
    if settings.api_rate_limit_per_minute:
        app.add_middleware(
            RateLimitMiddleware,
            buckets=TokenBuckets(
                settings.api_rate_limit_per_minute / 60, settings.api_rate_limit_burst
            ),
            per_minute=settings.api_rate_limit_per_minute,
        )
    if state.api_key is not None:
        app.add_middleware(ApiKeyMiddleware, key=state.api_key)
    if settings.api_cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.api_cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["X-API-Key", "Content-Type"],
        )
    app.add_middleware(ObservabilityMiddleware, metrics=state.metrics, log=request_log)
    app.openapi = lambda: document_api_key(  # type: ignore[method-assign]
        predict.add_body_definitions(FastAPI.openapi(app))
    )
    return app


MAX_ERRORS_SHOWN = 10
MAX_TEXT_SHOWN = 200  # characters of a message or a location part


def client_errors(errors: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Validation errors as a client gets them: type, location and message of the first
    :data:`MAX_ERRORS_SHOWN`, each bounded. Never the offending value: no strings, raw
    bytes, lists or objects (a 1,000-item batch does not come back in its 422), and no
    numbers either (a 4,000-digit plot id came back whole), so an answer's size does not
    depend on what was sent."""
    shown: list[dict[str, Any]] = [
        {
            "type": str(error["type"])[:MAX_TEXT_SHOWN],
            "loc": [
                part if isinstance(part, int) else str(part)[:MAX_TEXT_SHOWN]
                for part in error["loc"]
            ],
            "msg": str(error["msg"])[:MAX_TEXT_SHOWN],
        }
        for error in errors[:MAX_ERRORS_SHOWN]
    ]
    if len(errors) > MAX_ERRORS_SHOWN:
        more = len(errors) - MAX_ERRORS_SHOWN
        shown.append({"type": "too_many_errors", "loc": [], "msg": f"{more} more errors"})
    return shown


async def _invalid_request(_: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    # ASCII-escaped: a string with lone surrogates cannot break the encoding.
    body = json.dumps({"detail": client_errors(error.errors())}, allow_nan=False)
    return Response(body, status_code=422, media_type="application/json")


async def _internal_error(request: Request, error: Exception) -> JSONResponse:
    # Logged with the traceback for operators; the client gets no stack trace and no SQL.
    # Starlette answers this outside every middleware: the answer brings its own headers.
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=error)
    response = JSONResponse({"detail": "internal error"}, status_code=500)
    response.raw_headers.extend(DATA_HEADERS)
    return response


def run(host: str, port: int, workers: int = 1, app: FastAPI | None = None) -> None:
    """Serve with uvicorn (httptools with the request head bounded, uvloop when installed, no
    access log: ours is structured; uvicorn's own lines go through the password mask). The
    app is built here first, so a bad setting fails in one line before uvicorn starts;
    worker processes build their own from the same settings. ``app``: serve this one
    instead (one worker; the benchmarks' variants).

    Forwarded headers are believed only from ``FORWARDED_ALLOW_IPS`` (uvicorn's own default
    believes loopback, so anything on the host could pick its client address, and with it
    a fresh rate-limit bucket per request)."""
    import uvicorn

    settings = get_settings()
    app = app or create_app(settings)
    proxies = settings.forwarded_allow_ips
    uvicorn.run(
        app if workers == 1 else "nuru_yield.serving.app:create_app",
        factory=workers > 1,
        host=host,
        port=port,
        workers=workers,
        proxy_headers=bool(proxies),
        forwarded_allow_ips=proxies or None,
        http=functools.partial(  # type: ignore[arg-type]
            HeadLimitProtocol, head_timeout=settings.api_header_timeout_seconds
        ),
        access_log=False,
        server_header=False,
        log_level="info",
        log_config=LOG_CONFIG,
    )


# uvicorn's loggers and the app's own, one masked line each on stderr (also in workers).
LOG_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"masked": {"()": "nuru_yield.errors.MaskingFormatter", "fmt": LOG_FORMAT}},
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": "masked",
            "stream": "ext://sys.stderr",
        }
    },
    "root": {"handlers": ["stderr"], "level": "INFO"},
    "loggers": {"uvicorn": {"level": "INFO"}, "uvicorn.error": {"level": "INFO"}},
}
