"""``nuru-yield serve`` as users run it: a real uvicorn process over HTTP on loopback,
against a real PostgreSQL; it stops cleanly on SIGTERM and leaves its request log."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import httpx
import pytest

from tests.integration.test_api_support import (
    API_KEY,
    LATEST_NIGHT,
    PredictionsDb,
    api_server,
    auth,
    known_rows,
    prediction,
)


@pytest.mark.postgres
def test_nuru_yield_serve_over_http(postgres_url: str, tmp_path: Path):
    PredictionsDb(postgres_url).load(known_rows([LATEST_NIGHT], old_season=False))
    log_file = tmp_path / "api.log"
    with (
        api_server(
            tmp_path, PREDICTIONS_DB_URL=postgres_url, API_KEY=API_KEY, LOG_FILE=log_file
        ) as server,
        httpx.Client(base_url=server.base_url) as client,
    ):
        health = client.get("/health").json()
        assert (health["predictions_db"], health["latest_run_date"]) == (
            "ok",
            str(LATEST_NIGHT),
        )
        response = client.post("/predict", json={"plot_id": 1}, headers=auth())
        assert response.status_code == 200
        expected = prediction(LATEST_NIGHT, 1)["predicted_yield_kg_per_ha"]
        assert response.json()["predicted_yield_kg_per_ha"] == expected
        assert client.post("/predict", json={"plot_id": 1}).status_code == 401
        metrics = client.get("/metrics").text
        assert 'route="/predict",status="200"} 1.0' in metrics
        assert "server" not in response.headers  # no server banner
    # uvicorn shuts down gracefully, then re-raises the signal it caught.
    assert server.process.returncode in (0, -signal.SIGTERM), server.errors()[-2000:]
    assert "Application shutdown complete" in server.errors()
    logged = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert {"route": "/predict", "status": 401} in [
        {"route": line["route"], "status": line["status"]} for line in logged
    ]
