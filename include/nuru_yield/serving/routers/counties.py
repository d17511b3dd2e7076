"""``GET /counties`` and ``GET /counties/{county}/forecast``: the county bulletins."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query

from nuru_yield.names import MODEL_NAME
from nuru_yield.serving.routers import DB_UNAVAILABLE
from nuru_yield.serving.routers.predict import not_found_detail
from nuru_yield.serving.schemas import (
    CountyForecastDetail,
    CountyTable,
    ErrorBody,
    LeadSkill,
    Season,
    TrajectoryPoint,
    county_from_row,
)
from nuru_yield.serving.security import AUTH_RESPONSES
from nuru_yield.serving.state import State

router = APIRouter(
    tags=["counties"],
    responses={**AUTH_RESPONSES, **DB_UNAVAILABLE},
)

# A season has at most SEASON_MAX_DAYS nights (365 at most).
MAX_TRAJECTORY = 400
AsOf = Annotated[
    dt.date | None,
    Query(
        description="YYYY-MM-DD: the newest night on or before it, i.e. what the bulletin "
        "said on that date."
    ),
]
# A county's name as the plots name it: printable text (no control characters, which a
# database cannot compare).
CountyName = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$")]


@router.get(
    "/counties",
    response_model=CountyTable,
    responses={404: {"model": ErrorBody, "description": "No county forecast on or before it."}},
)
async def counties(state: State, season: Season | None = None, as_of: AsOf = None) -> CountyTable:
    """The county table of the newest night on or before `as_of`: per county and season,
    the forecast as % of the county's normal, its 80% interval, production, its percentile
    in the county's record, its hindcast skill at this point of the season and the season
    signals (rain and heat against the county's normal to date)."""
    night = await state.store.county_night(as_of)
    rows = await state.store.county_table(night, season) if night else []
    if not rows:
        what = "any county" + (f" on or before {as_of}" if as_of else "")
        raise HTTPException(404, await not_found_detail(state, "county", what, "forecast"))
    return CountyTable(
        run_date=night,
        as_of=as_of,
        season=season,
        counties=[county_from_row(row) for row in rows],
    )


@router.get(
    "/counties/{county}/forecast",
    response_model=CountyForecastDetail,
    responses={404: {"model": ErrorBody, "description": "No forecast stored for the county."}},
)
async def county_forecast(
    state: State, county: CountyName, season: Season | None = None, as_of: AsOf = None
) -> CountyForecastDetail:
    """A county's newest forecast on or before `as_of` (of `season`, else the newest season
    in progress), the season so far night by night, and the hindcast skill of its model
    version by days after planting."""
    row = await state.store.county_forecast(county, season, as_of)
    if row is None:
        what = (
            county
            + (f" ({season})" if season else "")
            + (f" on or before {as_of}" if as_of else "")
        )
        raise HTTPException(404, await not_found_detail(state, "county", what, "forecast"))
    forecast = county_from_row(row)
    trajectory = await state.store.county_trajectory(
        county, forecast.season, forecast.season_year, forecast.run_date, MAX_TRAJECTORY
    )
    skill = await state.store.county_skill(
        MODEL_NAME, forecast.model_version, county, forecast.season
    )
    return CountyForecastDetail(
        county=county,
        as_of=as_of,
        forecast=forecast,
        trajectory=[TrajectoryPoint(**dict(point)) for point in trajectory],
        skill=[
            LeadSkill(**{name: lead[name] for name in LeadSkill.model_fields}) for lead in skill
        ],
    )
