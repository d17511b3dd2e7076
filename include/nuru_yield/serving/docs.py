"""``/docs``: Swagger UI served by the API itself.

FastAPI's own page loads Swagger UI's script and style from a CDN, so it stays blank
without internet access (a field office, a locked-down server). Here the assets come from
the pinned ``fastapi-offline`` package and are served under :data:`ASSETS_URL`; the page
asks no other host for anything (its spec validator is off).

Each page carries a Content-Security-Policy that allows what it uses and nothing else: its
own scripts by file or by the hash of the inline one, this server's style, images, and
requests (the schema, "Try it out"), and no framing.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse

DOCS_URL = "/docs"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"
ASSETS_URL = "/docs/assets"
PAGES = frozenset({DOCS_URL, OAUTH2_REDIRECT_URL})
# Swagger UI, its style and icon: files of the installed fastapi-offline package.
ASSETS = Path(fastapi_offline.__file__).parent / "static"


def add_docs(app: FastAPI) -> None:
    """Serve Swagger UI at :data:`DOCS_URL` from local assets (build the app with
    ``docs_url=None`` so FastAPI does not add its CDN page)."""
    app.mount(ASSETS_URL, StaticFiles(directory=str(ASSETS)), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return _with_policy(
            get_swagger_ui_html(
                openapi_url=root + openapi_url,
                title=f"{app.title} — docs",
                swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
                swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
                swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
                oauth2_redirect_url=root + OAUTH2_REDIRECT_URL,
                # The validator badge would send the document to validator.swagger.io.
                swagger_ui_parameters={"validatorUrl": None},
            )
        )

    async def oauth2_redirect(_: Request) -> HTMLResponse:
        return _with_policy(get_swagger_ui_oauth2_redirect_html())

    app.add_route(DOCS_URL, swagger_ui, include_in_schema=False)
    app.add_route(OAUTH2_REDIRECT_URL, oauth2_redirect, include_in_schema=False)


_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)


def page_policy(html: bytes) -> str:
    """The Content-Security-Policy of a docs page: scripts from this server and the page's
    inline ones (by hash, so no other inline script runs), this server's style and images
    (Swagger UI's icons are ``data:`` images), requests to this server only, no plugins,
    no ``<base>``, forms only to this server, never inside a frame."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script).digest()).decode() + "'"
        for script in _INLINE_SCRIPT.findall(html)
    )
    return (
        f"default-src 'none'; script-src 'self' {hashes}; style-src 'self'; "
        "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    )


def _with_policy(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = page_policy(page.body)
    return page
