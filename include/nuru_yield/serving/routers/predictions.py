"""``GET /predictions/{plot_id}``: what we told a plot, night by night."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query

from nuru_yield.names import MAX_PLOT_ID
from nuru_yield.serving.routers import DB_UNAVAILABLE
from nuru_yield.serving.routers.predict import not_found_detail
from nuru_yield.serving.schemas import (
    STORED_NAMES,
    ErrorBody,
    ModelChoice,
    PredictionHistory,
    Season,
    prediction_from_row,
)
from nuru_yield.serving.security import AUTH_RESPONSES
from nuru_yield.serving.state import State

router = APIRouter(
    tags=["predictions"],
    responses={**AUTH_RESPONSES, **DB_UNAVAILABLE},
)


@router.get(
    "/predictions/{plot_id}",
    response_model=PredictionHistory,
    responses={404: {"model": ErrorBody, "description": "No stored prediction for the plot."}},
)
async def prediction_history(
    state: State,
    plot_id: Annotated[int, Path(ge=0, le=MAX_PLOT_ID)],
    season: Season | None = None,
    season_year: Annotated[int | None, Query(ge=1990, le=2100)] = None,
    as_of: Annotated[
        dt.date | None,
        Query(
            description="YYYY-MM-DD: only forecasts scored on or before it, i.e. the first "
            "item is what this plot was told on that date."
        ),
    ] = None,
    model_name: ModelChoice = "ensemble",
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> PredictionHistory:
    """The forecast history of a plot (optionally one plot-season), newest first."""
    rows = await state.store.history(
        plot_id,
        STORED_NAMES[model_name],
        season=season,
        season_year=season_year,
        as_of=as_of,
        limit=limit + 1,
        offset=offset,
    )
    if not rows and offset == 0:
        what = f"plot {plot_id}" + (f" on or before {as_of}" if as_of else "")
        raise HTTPException(404, await not_found_detail(state, model_name, what))
    return PredictionHistory(
        plot_id=plot_id,
        model_name=model_name,
        season=season,
        season_year=season_year,
        as_of=as_of,
        limit=limit,
        offset=offset,
        next_offset=offset + limit if len(rows) > limit else None,
        items=[prediction_from_row(row) for row in rows[:limit]],
    )
