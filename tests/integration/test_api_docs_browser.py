"""``/docs`` of a real ``nuru-yield serve`` opened in headless Chromium
(:mod:`tests.fixtures.browser`): under the page's Content-Security-Policy Swagger UI loads
its assets, fetches the schema and renders every operation, and the browser reports no
violation of the policy."""

from __future__ import annotations

import re
from pathlib import Path

from tests.fixtures import browser
from tests.fixtures.browser import run_chromium
from tests.integration.test_api_support import (
    API_KEY,
    LATEST_NIGHT,
    PredictionsDb,
    api_server,
    known_rows,
)

chromium = browser.chromium


def test_swagger_ui_renders_under_its_content_security_policy(chromium: str, tmp_path: Path):
    db = PredictionsDb(f"sqlite:///{tmp_path / 'predictions.db'}")
    db.load(known_rows([LATEST_NIGHT], old_season=False))
    with api_server(tmp_path, PREDICTIONS_DB_URL=db.url, API_KEY=API_KEY) as server:
        done = run_chromium(
            chromium,
            tmp_path,
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=20000",  # lets the scripts load the schema and render
            "--dump-dom",
            f"{server.base_url}/docs",
        )
    db.engine.dispose()
    rendered = set(re.findall(r'class="opblock-summary-path" data-path="([^"]+)"', done.stdout))
    assert rendered == {
        "/predict",
        "/predict/batch",
        "/predictions/{plot_id}",
        "/models",
        "/models/reload",
        "/health",
        "/metrics",
        "/counties",
        "/counties/{county}/forecast",
    }, done.stdout[-2000:]
    assert 'class="btn authorize' in done.stdout  # the key's "Authorize" button
    # Chromium logs every blocked script, style, image or request to the console.
    violations = [line for line in done.stderr.splitlines() if "Content Security Policy" in line]
    assert violations == []
