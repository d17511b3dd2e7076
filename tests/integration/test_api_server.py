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
        assert (response.headers["x-content-type-options"], response.headers["cache-control"]) == (
            "nosniff",
            "no-store",
        )
        # Load balancers probe with HEAD: the status, no body.
        head = client.head("/health")
        assert (head.status_code, head.content) == (200, b"")
        # No MLflow registry here (MLFLOW_TRACKING_URI names a file that does not exist):
        # callers without the key learn that, not where the file should have been.
        anonymous, keyed = client.get("/health").json(), client.get("/health", headers=auth())
        assert "MLflow registry unavailable" in anonymous["reasons"]
        assert str(tmp_path) not in json.dumps(anonymous)
        assert str(tmp_path) in json.dumps(keyed.json()["reasons"])
    # uvicorn shuts down gracefully, then re-raises the signal it caught.
    assert server.process.returncode in (0, -signal.SIGTERM), server.errors()[-2000:]
    assert "Application shutdown complete" in server.errors()
    logged = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert {"route": "/predict", "status": 401} in [
        {"route": line["route"], "status": line["status"]} for line in logged
    ]


@pytest.mark.parametrize("proxy", [None, "127.0.0.1"], ids=["no-proxy", "loopback-proxy"])
def test_forwarded_addresses_are_believed_only_from_the_configured_proxy(
    proxy: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """By default nobody's X-Forwarded-For is believed, loopback's included: a client that
    rotates it still meets one rate limit and is logged as itself. With FORWARDED_ALLOW_IPS
    naming the proxy (docker-compose: its nginx), the forwarded client is the client."""
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)
    db = PredictionsDb(f"sqlite:///{tmp_path / 'predictions.db'}")
    db.load(known_rows([LATEST_NIGHT], old_season=False))
    log_file = tmp_path / "api.log"
    settings = {"FORWARDED_ALLOW_IPS": proxy} if proxy else {}
    forwarded = [f"203.0.113.{i}" for i in range(1, 5)]
    with (
        api_server(
            tmp_path,
            PREDICTIONS_DB_URL=db.url,
            API_RATE_LIMIT_PER_MINUTE=1,
            API_RATE_LIMIT_BURST=2,
            LOG_FILE=log_file,
            **settings,
        ) as server,
        httpx.Client(base_url=server.base_url) as client,
    ):
        statuses = [
            client.post(
                "/predict", json={"plot_id": 1}, headers={"X-Forwarded-For": address}
            ).status_code
            for address in forwarded
        ]
    db.engine.dispose()
    logged = [
        line["client"]
        for line in map(json.loads, log_file.read_text().splitlines())
        if line["route"] == "/predict"
    ]
    if proxy is None:
        assert statuses == [200, 200, 429, 429]
        assert logged == ["127.0.0.1"] * 4
    else:
        assert statuses == [200] * 4  # one bucket per forwarded client
        assert logged == forwarded
