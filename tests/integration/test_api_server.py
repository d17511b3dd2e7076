"""``nuru-yield serve`` as users run it: a real uvicorn process over HTTP on loopback,
against a real PostgreSQL; it stops cleanly on SIGTERM and leaves its request log."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.fixtures.services import free_port, wait_until
from tests.integration.test_api_support import (
    API_KEY,
    LATEST_NIGHT,
    PredictionsDb,
    auth,
    known_rows,
    prediction,
)


@pytest.mark.postgres
def test_nuru_yield_serve_over_http(postgres_url: str, tmp_path: Path):
    PredictionsDb(postgres_url).load(known_rows([LATEST_NIGHT], old_season=False))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_file = tmp_path / "api.log"
    env = {
        **os.environ,
        "PREDICTIONS_DB_URL": postgres_url,
        "API_KEY": API_KEY,
        "LOG_FILE": str(log_file),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'no-registry.db'}",
    }
    command = [str(Path(sys.executable).with_name("nuru-yield")), "serve", "--port", str(port)]
    with open(tmp_path / "server.err", "wb") as stderr:
        server = subprocess.Popen(
            command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=stderr
        )
    try:
        wait_until(lambda: httpx.get(f"{base}/health").status_code == 200, "nuru-yield serve", 60)
        with httpx.Client(base_url=base) as client:
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
    finally:
        server.terminate()
        returncode = server.wait(timeout=30)
    errors = (tmp_path / "server.err").read_text()
    # uvicorn shuts down gracefully, then re-raises the signal it caught.
    assert returncode in (0, -signal.SIGTERM), errors[-2000:]
    assert "Application shutdown complete" in errors
    logged = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert {"route": "/predict", "status": 401} in [
        {"route": line["route"], "status": line["status"]} for line in logged
    ]
