"""The Forecasts view's web app, mounted in Airflow's API server under ``FORECASTS_MOUNT`` by the
plugin (:mod:`nuru_yield.ui.plugin`); the one module of the view that imports Airflow.

* ``GET /`` — the page of the newest night, or ``?night=YYYY-MM-DD``;
* ``GET /api/night`` — the same night as JSON (every column of the bulletin rows);
* ``GET /static/…`` — the page's script and the navigation icon (no data: no login).

Airflow does not authenticate a plugin's app (a mounted app inherits none of the core API's
dependencies), so every data route asks Airflow itself: the user of the request's token
(the UI's ``_token`` cookie, or ``Authorization: Bearer``), resolved by Airflow's own
``get_user``, must be allowed to read the runs of ``batch_scoring`` — who may see the
scoring runs may see what they forecast. Without a token the answer is 401, with a bad one
403, without that permission 403; the night's runs of the other DAGs are listed only where
the user may read them too. Data comes from ``API_DB_URL`` (the read-only role in
production; ``PREDICTIONS_DB_URL`` by default) and the lake, never written.
"""

from __future__ import annotations

import datetime as dt
import html
import logging
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import sqlalchemy as sa
from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import GetUserDep
from airflow.models.dag import DagModel
from airflow.models.dagrun import DagRun
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from nuru_yield.config import Settings, get_settings
from nuru_yield.db.engine import get_engine
from nuru_yield.errors import DatabaseError, mask_passwords
from nuru_yield.lake import Lake
from nuru_yield.names import FORECASTS_MOUNT, NIGHT_DAGS
from nuru_yield.ui import page
from nuru_yield.ui.data import Night, NightNotFoundError, read_night

log = logging.getLogger(__name__)

# Whose runs a user must be allowed to read to see the view.
SCORING_DAG = "batch_scoring"
STATIC = Path(__file__).with_name("static")
# The page runs only its own script; charts are inline SVG (styles inline, the map's points
# one embedded image); it may be framed by Airflow's UI (same origin) and nothing else.
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'self'"
)
DATA_POLICY = "default-src 'none'; frame-ancestors 'none'"


def _may_read_runs(user: BaseUser, dag_id: str) -> bool:
    return get_auth_manager().is_authorized_dag(
        method="GET",
        access_entity=DagAccessEntity.RUN,
        details=DagDetails(id=dag_id, team_name=DagModel.get_team_name(dag_id)),
        user=user,
    )


def reader(user: GetUserDep) -> BaseUser:
    """The request's Airflow user, if allowed to read the scoring runs (else 403)."""
    if not _may_read_runs(user, SCORING_DAG):
        raise HTTPException(
            403, f"Forbidden: reading the Forecasts needs read access to {SCORING_DAG} runs"
        )
    return user


Reader = Annotated[BaseUser, Depends(reader)]
NightParam = Annotated[dt.date | None, Query(description="YYYY-MM-DD; default the newest night")]


def _airflow_root(request: Request) -> str:
    """Airflow's own root path (this app is mounted below it)."""
    return request.scope.get("root_path", "").removesuffix(FORECASTS_MOUNT)


def night_runs(
    session: Any, request: Request, view: Night, user: BaseUser
) -> list[page.DagRunLink]:
    """The night's runs of the nightly DAGs that ``user`` may read: the runs Airflow keys by
    the night (their partition), and the scoring runs' own Airflow runs."""
    if view.night is None:
        return []
    scoring_runs = [run["dag_run_id"] for run in view.scoring_runs if run.get("dag_run_id")]
    runs = session.scalars(
        sa.select(DagRun).where(
            DagRun.dag_id.in_(NIGHT_DAGS),
            sa.or_(
                DagRun.partition_key == view.night.isoformat(),
                sa.and_(DagRun.dag_id == SCORING_DAG, DagRun.run_id.in_(scoring_runs)),
            ),
        )
    ).all()
    readable = {dag_id for dag_id in NIGHT_DAGS if _may_read_runs(user, dag_id)}
    root = _airflow_root(request)
    order = {dag_id: index for index, dag_id in enumerate(NIGHT_DAGS)}
    return [
        page.DagRunLink(
            dag_id=run.dag_id,
            run_id=run.run_id,
            state=str(run.state) if run.state else None,
            start=run.start_date,
            end=run.end_date,
            href=f"{root}/dags/{quote(run.dag_id)}/runs/{quote(run.run_id, safe='')}",
        )
        # In the night's order of DAGs, each DAG's newest run first.
        for run in sorted(
            sorted(runs, key=lambda run: run.run_after, reverse=True),
            key=lambda run: order[run.dag_id],
        )
        if run.dag_id in readable
    ]


def _refusal_page(request: Request, status: int, detail: str) -> HTMLResponse:
    """A refused page says why and, when the user is not logged in, where to log in."""
    body = f"<p>{html.escape(detail)}.</p>"
    if status == 401:
        login = get_auth_manager().get_url_login(next_url=str(request.url))
        body += f'<p><a href="{html.escape(login)}" target="_top">Log in to Airflow</a>.</p>'
    return HTMLResponse(
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Forecasts</title>'
        f"</head><body><h1>Forecasts</h1>{body}</body></html>",
        status_code=status,
    )


def create_app(settings: Settings | None = None, lake: Lake | None = None) -> FastAPI:
    """The view's app: settings (``API_DB_URL``, the lake) from the environment by default."""
    settings = settings or get_settings()
    lake = lake or Lake.from_settings(settings)
    engine = get_engine(settings.api_db_url)
    app = FastAPI(title="Nuru Yield Forecasts", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        response = await call_next(request)
        is_page = request.url.path.rstrip("/") == request.scope.get("root_path", "")
        response.headers["Content-Security-Policy"] = PAGE_POLICY if is_page else DATA_POLICY
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        if "/static/" not in request.url.path:
            response.headers["Cache-Control"] = "no-store"  # tonight's forecasts, behind a login
        return response

    @app.exception_handler(StarletteHTTPException)
    async def refused(request: Request, error: StarletteHTTPException) -> Response:
        if "/api/" in request.url.path or error.status_code not in (401, 403):
            return JSONResponse({"detail": error.detail}, error.status_code, headers=error.headers)
        return _refusal_page(request, error.status_code, str(error.detail))

    @app.exception_handler(NightNotFoundError)
    async def no_such_night(request: Request, error: NightNotFoundError) -> Response:
        if "/api/" in request.url.path:
            return JSONResponse({"detail": str(error)}, 404)
        root = request.scope.get("root_path", "")
        return HTMLResponse(
            f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Forecasts'
            f"</title></head><body><h1>Forecasts</h1><p>{html.escape(str(error))}.</p>"
            f'<p><a href="{html.escape(root)}/">The newest night</a>.</p></body></html>',
            status_code=404,
        )

    @app.exception_handler(DatabaseError)
    async def unavailable(request: Request, error: DatabaseError) -> Response:
        log.warning("Forecasts view: %s", error)
        return JSONResponse({"detail": mask_passwords(str(error))}, 503)

    @app.get("/", response_class=HTMLResponse)
    def forecasts_page(
        request: Request, user: Reader, session: SessionDep, night: NightParam = None
    ) -> HTMLResponse:
        view = read_night(engine, night)
        runs = night_runs(session, request, view, user)
        runs_url = f"{_airflow_root(request)}/dag_runs?partition_key_pattern={view.night}"
        base = request.scope.get("root_path", "")
        return HTMLResponse(page.render(page.context(view, lake, runs, runs_url, base)))

    @app.get("/api/night")
    def night_json(
        request: Request, user: Reader, session: SessionDep, night: NightParam = None
    ) -> dict[str, Any]:
        view = read_night(engine, night)
        return page.as_json(view, night_runs(session, request, view, user))

    return app
