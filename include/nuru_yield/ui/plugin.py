"""The Airflow plugin of the Forecasts view: its app in Airflow's API server and its entry in
the UI's navigation. ``plugins/nuru_forecasts.py`` imports :class:`ForecastsPlugin`; Airflow
finds it there (docs/DESIGN.md, "The Forecasts view").

Every Airflow component imports its plugins (the scheduler, the DAG processor, each task's
process), but only the API server serves the app: the app is built on its first request
(:class:`LazyApp`), so importing this module costs nothing but itself.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, ClassVar

from airflow.plugins_manager import AirflowPlugin

from nuru_yield.errors import NuruError
from nuru_yield.names import FORECASTS_MOUNT, FORECASTS_ROUTE

log = logging.getLogger(__name__)


class LazyApp:
    """An ASGI app that builds the view's FastAPI app on its first request. A build that
    fails (a bad setting) answers 503 with the reason and is tried again next request."""

    def __init__(self) -> None:
        self._app: Any = None
        self._lock = threading.Lock()

    def _build(self) -> Any:
        with self._lock:
            if self._app is None:
                from nuru_yield.ui.app import create_app

                self._app = create_app()
        return self._app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            app = self._app or self._build()
        except NuruError as error:
            log.error("the Forecasts view cannot start: %s", error)
            from starlette.responses import PlainTextResponse

            await PlainTextResponse(f"Forecasts unavailable: {error}", 503)(scope, receive, send)
            return
        await app(scope, receive, send)


class ForecastsPlugin(AirflowPlugin):
    """The Forecasts view: its app in the API server, "Forecasts" in the UI's navigation."""

    name = "nuru_forecasts"
    fastapi_apps: ClassVar[list[dict[str, Any]]] = [
        {"app": LazyApp(), "url_prefix": FORECASTS_MOUNT, "name": "Nuru Yield Forecasts"}
    ]
    external_views: ClassVar[list[dict[str, Any]]] = [
        {
            "name": "Forecasts",
            # Relative to Airflow's base URL, so a path prefix in front of Airflow is kept.
            "href": f"{FORECASTS_MOUNT.lstrip('/')}/",
            "url_route": FORECASTS_ROUTE,
            "destination": "nav",
            "nav_top_level": True,
            "icon": f"{FORECASTS_MOUNT.lstrip('/')}/static/icon.svg",
        }
    ]
