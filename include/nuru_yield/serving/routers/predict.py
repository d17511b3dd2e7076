"""``POST /predict`` and ``POST /predict/batch``: the newest stored forecast of plots."""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import APIRouter, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from nuru_yield.serving.ab import lookup_for
from nuru_yield.serving.limits import BODY_RESPONSES
from nuru_yield.serving.routers import DB_UNAVAILABLE
from nuru_yield.serving.schemas import (
    BatchItem,
    BatchRequest,
    BatchResponse,
    ErrorBody,
    Prediction,
    PredictionRequest,
    prediction_from_row,
)
from nuru_yield.serving.security import AUTH_RESPONSES
from nuru_yield.serving.state import ApiState, State

router = APIRouter(
    tags=["predictions"],
    responses={**AUTH_RESPONSES, **BODY_RESPONSES, **DB_UNAVAILABLE},
)

NOT_FOUND = "no stored prediction for this plot"
Body = TypeVar("Body", bound=BaseModel)


async def not_found_detail(
    state: State, model_name: str, what: str, kind: str = "prediction"
) -> str:
    """Says that nothing is stored, and when the last run was (so a client can tell a plot
    or county we do not know from a pipeline that has not run)."""
    freshness = await state.freshness.get()
    last = (
        f"the last scoring run was {freshness.run_date}"
        if freshness
        else "no scoring run has been loaded yet"
    )
    return f"no stored {model_name} {kind} for {what}; {last}"


async def parse_body(request: Request, model: type[Body]) -> Body:
    """``model`` validated straight from the JSON bytes (pydantic's parser), for the hot path:
    FastAPI's body handling (content-type parsing, ``json.loads``, then validation) costs
    more than the lookup. Every body error (not JSON, not UTF-8, invalid) is FastAPI's usual
    422, located under ``body``; the body itself is never echoed (see the app's renderer).
    Bodies larger than the limit never get here (413); a body sent as anything but JSON,
    or without a Content-Type, is 415."""
    if not _declared_json(request.scope["headers"]):
        # Answered unread, so the connection ends (as for 413): a body still arriving
        # would keep it open.
        raise HTTPException(415, "Content-Type must be application/json", {"Connection": "close"})
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as error:
        errors = error.errors(include_url=False, include_context=False)
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors]) from None


def _declared_json(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether the request declares a JSON body (``application/json`` or ``…+json``); a
    request without a Content-Type declares nothing."""
    for name, value in headers:
        if name == b"content-type":
            media_type = value.partition(b";")[0].strip().lower()
            return media_type == b"application/json" or media_type.endswith(b"+json")
    return False


# Models that the bodies and answers documented by `body_openapi` refer to, for the
# document's components (FastAPI only collects the models of the bodies it parses itself).
_BODY_DEFINITIONS: dict[str, Any] = {ErrorBody.__name__: ErrorBody.model_json_schema()}
_ERROR_BODY = {"$ref": f"#/components/schemas/{ErrorBody.__name__}"}


def body_openapi(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI request body (and 415, 422) of a route that uses :func:`parse_body`."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    _BODY_DEFINITIONS.update(schema.pop("$defs", {}))
    invalid = {"$ref": "#/components/schemas/HTTPValidationError"}
    return {
        "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
        "responses": {
            "415": {
                "description": "The body is not sent as application/json (or has no Content-Type).",
                "content": {"application/json": {"schema": _ERROR_BODY}},
            },
            "422": {
                "description": "Validation Error",
                "content": {"application/json": {"schema": invalid}},
            },
        },
    }


async def predict_response(request: Request, state: ApiState) -> Response:
    """The ``POST /predict`` answer: the stored prediction as JSON, or an HTTPException (404),
    RequestValidationError (422) or DatabaseError (503) for the app's handlers."""
    body = await parse_body(request, PredictionRequest)
    lookup = lookup_for(
        body.plot_id,
        body.model_name,
        state.settings.api_ab_challenger_share,
        season=body.season,
        season_year=body.season_year,
    )
    row = await state.store.latest(lookup, since=await state.newest_run.get())
    if row is None:
        season = " ".join(str(part) for part in (body.season, body.season_year) if part)
        what = f"plot {body.plot_id}" + (f" ({season})" if season else "")
        raise HTTPException(404, await not_found_detail(state, body.model_name, what))
    state.metrics.rows_served(row["model_name"])
    prediction = prediction_from_row(row)
    return Response(prediction.model_dump_json(), media_type="application/json")


@router.post(
    "/predict",
    response_model=Prediction,
    responses={404: {"model": ErrorBody, "description": "No stored prediction for the plot."}},
    openapi_extra=body_openapi(PredictionRequest),
)
async def predict(request: Request, state: State) -> Response:
    """The newest stored forecast of one plot (of one season, if `season` / `planting_date`
    are given). Nothing is computed: this is what the last nightly run stored."""
    return await predict_response(request, state)


class _PredictEndpoint:
    """``POST /predict`` as a bare ASGI app (a class, so Starlette does not wrap it as a
    request → response function)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        response = await predict_response(request, scope["app"].state.api)
        await response(scope, receive, send)


# The hot route, served by the bare endpoint placed before the documented FastAPI route
# above (same function, same errors through the app's exception handlers): FastAPI's
# per-request dependency solving costs about as much CPU as the lookup itself (measured
# with `nuru-yield bench api --compare`: 110–140 µs more API CPU per request through the
# FastAPI route, 1.2–2.5× fewer requests per second). The middleware stack (request log,
# metrics, rate limit, key) is the same.
FAST_ROUTE = Route("/predict", _PredictEndpoint(), methods=["POST"], include_in_schema=False)


def add_body_definitions(openapi: dict[str, Any]) -> dict[str, Any]:
    """Add the models that :func:`body_openapi` bodies refer to to an OpenAPI document."""
    schemas = openapi.setdefault("components", {}).setdefault("schemas", {})
    for name, definition in _BODY_DEFINITIONS.items():
        schemas.setdefault(name, definition)
    return openapi


@router.post(
    "/predict/batch", response_model=BatchResponse, openapi_extra=body_openapi(BatchRequest)
)
async def predict_batch(request: Request, state: State) -> BatchResponse:
    """Up to 1,000 plots in one database query; each is either a prediction or not found."""
    body = await parse_body(request, BatchRequest)
    share = state.settings.api_ab_challenger_share
    lookups = [
        lookup_for(
            plot.plot_id, body.model_name, share, season=plot.season, season_year=plot.season_year
        )
        for plot in body.plots
    ]
    rows = await state.store.latest_many(lookups, since=await state.newest_run.get())
    results = [
        BatchItem(plot_id=lookup.plot_id, status="ok", prediction=prediction_from_row(row))
        if row is not None
        else BatchItem(plot_id=lookup.plot_id, status="not_found", detail=NOT_FOUND)
        for lookup, row in zip(lookups, rows, strict=True)
    ]
    found = [row for row in rows if row is not None]
    for model in {row["model_name"] for row in found}:
        state.metrics.rows_served(model, sum(row["model_name"] == model for row in found))
    return BatchResponse(
        model_name=body.model_name,
        found=len(found),
        not_found=len(rows) - len(found),
        results=results,
    )
