"""The API against real databases (SQLite and PostgreSQL): every endpoint's happy path and
its error codes, as_of history, A/B serving, the key, the rate limit, and a read-only role."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest
import sqlalchemy as sa

from nuru_yield.config import reset_settings
from nuru_yield.db.engine import dispose_engines
from nuru_yield.errors import DatabaseError
from nuru_yield.lake import Lake
from nuru_yield.names import MAX_PLOT_ID, features_path
from nuru_yield.serving.ab import in_challenger_share
from nuru_yield.serving.store import Lookup, open_store
from tests.fixtures.services import free_port, wait_until
from tests.integration import test_api_support as support
from tests.integration.test_api_support import (
    API_KEY,
    LATEST_NIGHT,
    NIGHTS,
    OLD_NIGHTS,
    PROMOTIONS,
    REGISTRY,
    SHARE_PLOTS,
    UNKNOWN_PLOT,
    PredictionsDb,
    auth,
    known_rows,
    prediction,
    serving,
)

empty_db, known_db, make_client = support.empty_db, support.known_db, support.make_client


def test_predict_serves_the_newest_champion_forecast(known_db: PredictionsDb, make_client):
    client = make_client(known_db.url)
    response = client.post("/predict", json={"plot_id": 1, "latitude": -0.5, "longitude": 37.6})
    assert response.status_code == 200
    body = response.json()
    expected = prediction(LATEST_NIGHT, 1)
    assert body["predicted_yield_kg_per_ha"] == expected["predicted_yield_kg_per_ha"]
    assert body["model_name"] == "ensemble"
    assert body["model_version"] == "3"
    assert body["confidence_score"] == 0.8
    assert (body["yield_lower"], body["yield_upper"]) == (
        expected["yield_lower"],
        expected["yield_upper"],
    )
    assert body["features_used"] == {"precip_total": 305.0, "ndvi_mean": 0.61}
    assert body["top_drivers"][0]["feature"] == "precip_total"
    assert (body["season"], body["season_year"], body["run_date"]) == (
        "Long Rains",
        2025,
        "2025-04-05",
    )
    assert body["timestamp"].startswith("2025-04-05T02:00:00")
    assert body["timestamp"].endswith(("Z", "+00:00"))


def test_predict_selects_the_season_asked_for(known_db: PredictionsDb, make_client):
    client = make_client(known_db.url)
    newest = client.post("/predict", json={"plot_id": 3}).json()
    assert (newest["season"], newest["season_year"]) == ("Long Rains", 2025)
    short_rains = client.post(
        "/predict",
        json={"plot_id": 3, "season": "Short Rains", "planting_date": "2024-10-12"},
    ).json()
    assert (short_rains["season"], short_rains["season_year"], short_rains["run_date"]) == (
        "Short Rains",
        2024,
        "2024-11-03",
    )
    missing = client.post("/predict", json={"plot_id": 3, "planting_date": "2023-03-01"})
    assert missing.status_code == 404
    assert "2023" in missing.json()["detail"]


def test_unknown_plot_is_404_naming_the_last_run(known_db: PredictionsDb, make_client):
    client = make_client(known_db.url)
    response = client.post("/predict", json={"plot_id": UNKNOWN_PLOT})
    assert response.status_code == 404
    detail = response.json()["detail"]
    assert f"no stored ensemble prediction for plot {UNKNOWN_PLOT}" in detail
    assert str(LATEST_NIGHT) in detail


def test_empty_database_says_no_run_was_loaded(empty_db: PredictionsDb, make_client):
    client = make_client(empty_db.url)
    response = client.post("/predict", json={"plot_id": 1})
    assert response.status_code == 404
    assert "no scoring run has been loaded yet" in response.json()["detail"]
    health = client.get("/health").json()
    assert health["status"] == "degraded"
    assert "no predictions loaded yet" in health["reasons"]


def test_out_of_range_fields_are_422_naming_the_field(make_client, nuru_home):
    client = make_client(f"sqlite:///{nuru_home / 'never-opened.db'}")  # validation comes first
    for field, value in [
        ("latitude", 90.5),
        ("longitude", -181),
        ("altitude", 12000),
        ("planting_date", "2025-13-01"),
        ("season", "Winter"),
        ("model_name", "xgboost"),
        ("plot_id", -1),
        ("plot_id", MAX_PLOT_ID + 1),  # the pipeline can never store it
    ]:
        response = client.post("/predict", json={"plot_id": 1, field: value})
        assert response.status_code == 422, field
        assert [error["loc"] for error in response.json()["detail"]] == [["body", field]]


def test_batch_answers_each_plot_in_order(known_db: PredictionsDb, make_client):
    client = make_client(known_db.url)
    plots = [{"plot_id": 1}, {"plot_id": UNKNOWN_PLOT}, {"plot_id": 2}, {"plot_id": 1}]
    response = client.post("/predict/batch", json={"plots": plots})
    assert response.status_code == 200
    body = response.json()
    assert (body["found"], body["not_found"]) == (3, 1)
    results = body["results"]
    assert [item["plot_id"] for item in results] == [1, UNKNOWN_PLOT, 2, 1]
    assert [item["status"] for item in results] == ["ok", "not_found", "ok", "ok"]
    assert results[1]["prediction"] is None
    assert "no stored prediction" in results[1]["detail"]
    assert results[0]["prediction"] == client.post("/predict", json={"plot_id": 1}).json()
    assert results[2]["prediction"]["run_date"] == "2024-11-03"


def test_batch_honours_per_plot_seasons(known_db: PredictionsDb, make_client):
    client = make_client(known_db.url)
    plots = [{"plot_id": 3, "season": "Short Rains"}, {"plot_id": 3, "season": "Long Rains"}]
    results = client.post("/predict/batch", json={"plots": plots}).json()["results"]
    assert [item["prediction"]["season"] for item in results] == ["Short Rains", "Long Rains"]


def test_batch_limit_is_named(known_db: PredictionsDb, make_client):
    client = make_client(known_db.url)
    too_many = client.post("/predict/batch", json={"plots": [{"plot_id": 1}] * 1001})
    assert too_many.status_code == 422
    assert "1000" in too_many.json()["detail"][0]["msg"]
    full = client.post("/predict/batch", json={"plots": [{"plot_id": p} for p in range(1000)]})
    assert full.status_code == 200
    assert full.json()["found"] == 4 + len(SHARE_PLOTS)  # plots 1-4 and 10-59


def test_as_of_returns_what_was_served_that_day(empty_db: PredictionsDb, make_client):
    first_nights = NIGHTS[:3]
    empty_db.load(known_rows(first_nights))
    client = make_client(empty_db.url)  # the newest run date it caches goes stale here
    served_then = client.post("/predict", json={"plot_id": 1}).json()
    empty_db.load(known_rows(NIGHTS[3:], old_season=False))
    assert client.post("/predict", json={"plot_id": 1}).json()["run_date"] == str(LATEST_NIGHT)

    history = client.get("/predictions/1", params={"as_of": str(first_nights[-1])})
    assert history.status_code == 200
    body = history.json()
    assert body["items"][0] == served_then
    assert [item["run_date"] for item in body["items"]] == [str(n) for n in first_nights[::-1]]


def test_history_is_newest_first_and_paginated(known_db: PredictionsDb, make_client):
    client = make_client(known_db.url)
    page = client.get("/predictions/1", params={"limit": 2}).json()
    assert [item["run_date"] for item in page["items"]] == [str(n) for n in NIGHTS[:2:-1]]
    assert page["next_offset"] == 2
    last = client.get("/predictions/1", params={"limit": 2, "offset": 4}).json()
    assert [item["run_date"] for item in last["items"]] == [str(NIGHTS[0])]
    assert last["next_offset"] is None
    beyond = client.get("/predictions/1", params={"offset": 10})
    assert beyond.status_code == 200
    assert beyond.json()["items"] == []
    seasons = client.get("/predictions/3", params={"season": "Short Rains", "season_year": 2024})
    assert {item["season"] for item in seasons.json()["items"]} == {"Short Rains"}
    assert len(seasons.json()["items"]) == 3


def test_history_errors(known_db: PredictionsDb, make_client):
    client = make_client(known_db.url)
    assert client.get(f"/predictions/{UNKNOWN_PLOT}").status_code == 404
    before_any = client.get("/predictions/1", params={"as_of": "2025-03-01"})
    assert before_any.status_code == 404
    assert "on or before 2025-03-01" in before_any.json()["detail"]
    bad_date = client.get("/predictions/1", params={"as_of": "05/04/2025"})
    assert bad_date.status_code == 422
    assert bad_date.json()["detail"][0]["loc"] == ["query", "as_of"]
    assert client.get("/predictions/1", params={"limit": 501}).status_code == 422
    assert client.get(f"/predictions/{MAX_PLOT_ID}").status_code == 404
    assert client.get(f"/predictions/{MAX_PLOT_ID + 1}").status_code == 422


def test_challenger_is_never_served_unless_asked(known_db: PredictionsDb, make_client):
    client = make_client(known_db.url)
    plots = [1, 2, 3, 4, *SHARE_PLOTS]
    singles = [client.post("/predict", json={"plot_id": p}).json() for p in plots]
    batch = client.post("/predict/batch", json={"plots": [{"plot_id": p} for p in plots]}).json()
    history = client.get("/predictions/1").json()["items"]
    served = singles + [item["prediction"] for item in batch["results"]] + history
    assert {item["model_name"] for item in served} == {"ensemble"}
    assert {item["model_version"] for item in served} == {"3"}

    asked = client.post("/predict", json={"plot_id": 1, "model_name": "challenger"}).json()
    assert (asked["model_name"], asked["model_version"]) == ("challenger", "4")
    assert (
        asked["predicted_yield_kg_per_ha"]
        == prediction(LATEST_NIGHT, 1, "challenger")["predicted_yield_kg_per_ha"]
    )
    no_challenger = client.post("/predict", json={"plot_id": 4, "model_name": "challenger"})
    assert no_challenger.status_code == 404
    assert "no stored challenger prediction" in no_challenger.json()["detail"]


def test_ab_share_serves_the_challenger_to_a_fixed_set_of_plots(
    known_db: PredictionsDb, make_client
):
    client = make_client(known_db.url, API_AB_CHALLENGER_SHARE=0.5)
    expected = {plot: in_challenger_share(plot, 0.5) for plot in SHARE_PLOTS}
    assert 0 < sum(expected.values()) < len(expected)  # both arms are exercised
    batch = client.post("/predict/batch", json={"plots": [{"plot_id": p} for p in SHARE_PLOTS]})
    served = {
        item["plot_id"]: item["prediction"]["model_name"] == "challenger"
        for item in batch.json()["results"]
    }
    assert served == expected
    for plot in SHARE_PLOTS[:6]:
        single = client.post("/predict", json={"plot_id": plot}).json()
        assert (single["model_name"] == "challenger") == expected[plot]


def test_ab_falls_back_to_the_champion_without_a_challenger_forecast(
    known_db: PredictionsDb, make_client
):
    client = make_client(known_db.url, API_AB_CHALLENGER_SHARE=1.0)
    assert client.post("/predict", json={"plot_id": 1}).json()["model_name"] == "challenger"
    fallback = client.post("/predict", json={"plot_id": 4}).json()
    assert (fallback["model_name"], fallback["model_version"]) == ("ensemble", "3")


def test_api_key(known_db: PredictionsDb, make_client):
    client = make_client(known_db.url, API_KEY=API_KEY)
    request = {"plot_id": 1}
    missing = client.post("/predict", json=request)
    assert missing.status_code == 401
    assert missing.json() == {"detail": "missing X-API-Key header"}
    assert client.post("/predict", json=request, headers=auth("wrong")).status_code == 403
    assert client.post("/predict", json=request, headers=auth()).status_code == 200
    for method, path in [
        ("POST", "/predict/batch"),
        ("GET", "/predictions/1"),
        ("GET", "/models"),
        ("POST", "/models/reload"),
        ("GET", "/counties"),
        ("GET", "/counties/Makueni/forecast"),
    ]:
        assert client.request(method, path).status_code == 401, path
        assert client.request(method, path, headers=auth("nope")).status_code == 403, path
    assert client.get("/health").status_code == 200
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    # Refused before routing, still counted under the route they asked for.
    assert 'method="POST",route="/predict",status="401"} 1.0' in metrics.text


def test_rate_limit_per_client(known_db: PredictionsDb, make_client):
    client = make_client(known_db.url, API_RATE_LIMIT_PER_MINUTE=1, API_RATE_LIMIT_BURST=3)
    statuses = [client.post("/predict", json={"plot_id": 1}).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    limited = client.get("/predictions/1")
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert "1 requests per minute" in limited.json()["detail"]
    assert client.get("/health").status_code == 200  # probes are never limited
    assert client.get("/metrics").status_code == 200


def test_clients_without_a_valid_key_never_take_from_the_rate_limit(
    known_db: PredictionsDb, make_client
):
    client = make_client(
        known_db.url, API_KEY=API_KEY, API_RATE_LIMIT_PER_MINUTE=1, API_RATE_LIMIT_BURST=2
    )
    refused = [client.post("/predict", json={"plot_id": 1}).status_code for _ in range(5)]
    refused += [client.post("/predict", json={"plot_id": 1}, headers=auth("x")).status_code]
    assert refused == [401] * 5 + [403]  # answered as such, not 429
    served = [client.post("/predict", json={"plot_id": 1}, headers=auth()) for _ in range(3)]
    assert [response.status_code for response in served] == [200, 200, 429]


def test_a_body_not_sent_as_json_is_415(known_db: PredictionsDb, make_client):
    client = make_client(known_db.url)
    for path, body in (
        ("/predict", {"plot_id": 1}),
        ("/predict/batch", {"plots": [{"plot_id": 1}]}),
    ):
        form = client.post(path, data={"plot_id": "1"})
        assert form.status_code == 415, path
        assert form.json() == {"detail": "Content-Type must be application/json"}
        undeclared = client.post(path, content=json.dumps(body))  # no Content-Type at all
        assert "content-type" not in undeclared.request.headers
        assert undeclared.status_code == 415, path
        text = client.post(path, content=json.dumps(body), headers={"Content-Type": "text/plain"})
        assert text.status_code == 415, path
        for media_type in ("application/json; charset=utf-8", "application/vnd.api+json"):
            as_json = client.post(
                path, content=json.dumps(body), headers={"Content-Type": media_type}
            )
            assert as_json.status_code == 200, (path, media_type)


def test_bad_bodies_are_422_never_500_and_never_echoed(known_db: PredictionsDb, make_client):
    client = make_client(known_db.url, raise_server_exceptions=False)
    bodies = [
        b'\xff\xfe{"plot_id": 1}',
        b'{"plot_id": 1, "latitude": NaN}',
        b'{"plot_id": 1, "latitude": Infinity}',
        b'{"plot_id": 1, "latitude": 1e999}',
        b'{"plot_id": 1e999}',
        b'{"plot_id": true}',
        b'{"plot_id": "1"}',
        b'{"plot_id": 1, "planting_date": 1700000000}',
    ]
    for path in ("/predict", "/predict/batch"):
        for body in bodies:
            if path == "/predict/batch" and body.startswith(b"{"):
                body = b'{"plots": [' + body + b"]}"
            response = client.post(path, content=body, headers={"Content-Type": "application/json"})
            assert response.status_code == 422, (path, body, response.text)
            assert all(set(error) == {"type", "loc", "msg"} for error in response.json()["detail"])
    whole_floats = client.post("/predict", json={"plot_id": 1.0, "latitude": 0})
    assert whole_floats.status_code == 200  # JSON Schema's integer: 1.0 is one
    too_many = client.post("/predict/batch", json={"plots": [{"plot_id": "x"}] * 1000})
    assert too_many.status_code == 422
    assert len(too_many.content) < 2000  # not the batch echoed back (it was 19 MB for 1M)
    digits = "9" * 4000  # a valid JSON integer, far out of range: it came back whole (4 KB)
    for path, body in (
        ("/predict", f'{{"plot_id": {digits}}}'),
        ("/predict/batch", f'{{"plots": [{{"plot_id": {digits}}}] }}'),
    ):
        huge = client.post(path, content=body, headers={"Content-Type": "application/json"})
        assert huge.status_code == 422, path
        assert "9" * 20 not in huge.text and len(huge.content) < 500, huge.text[:300]
    huge_path = client.get(f"/predictions/{digits}")
    assert huge_path.status_code == 422
    assert "9" * 20 not in huge_path.text and len(huge_path.content) < 500


SECURITY_HEADERS = (
    "x-content-type-options",
    "cache-control",
    "x-frame-options",
    "content-security-policy",
)


def _response_headers(response) -> dict[str, str | None]:
    return {name: response.headers.get(name) for name in SECURITY_HEADERS}


DATA_ANSWER = {
    "x-content-type-options": "nosniff",
    "cache-control": "no-store",
    "x-frame-options": "DENY",
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
}


def test_every_answer_is_nosniff_uncached_and_never_framed(known_db: PredictionsDb, make_client):
    """Whoever answers — a route, the bare /predict, the key or rate-limit check, the body
    limit, an error handler, the router — the answer carries the same headers."""
    client = make_client(
        known_db.url,
        raise_server_exceptions=False,
        API_KEY=API_KEY,
        API_RATE_LIMIT_PER_MINUTE=1,
        API_RATE_LIMIT_BURST=11,  # the answers below that take from the bucket
        API_MAX_BODY_BYTES=1024,
    )
    answers = {
        "predict 200": client.post("/predict", json={"plot_id": 1}, headers=auth()),
        "predict 404": client.post("/predict", json={"plot_id": UNKNOWN_PLOT}, headers=auth()),
        "predict 415": client.post("/predict", content=b"{}", headers=auth()),
        "predict 422": client.post("/predict", json={"plot_id": -1}, headers=auth()),
        "batch 200": client.post(
            "/predict/batch", json={"plots": [{"plot_id": 1}]}, headers=auth()
        ),
        "history 200": client.get("/predictions/1", headers=auth()),
        "models 200": client.get("/models", headers=auth()),
        "413": client.post("/predict", content=b" " * 2048, headers=auth()),
        "401": client.post("/predict", json={"plot_id": 1}),
        "403": client.post("/predict", json={"plot_id": 1}, headers=auth("wrong")),
        "health": client.get("/health"),
        "metrics": client.get("/metrics"),
        "openapi": client.get("/openapi.json"),
        "unknown path 404": client.get("/no-such-page", headers=auth()),
        "405": client.get("/predict", headers=auth()),
    }
    answers["429"] = client.post("/predict", json={"plot_id": 1}, headers=auth())
    assert answers["429"].status_code == 429
    for what, response in answers.items():
        assert _response_headers(response) == DATA_ANSWER, (what, response.status_code)
        assert str(response.status_code) in what or response.status_code == 200, what


def test_docs_pages_allow_only_their_own_scripts(make_client, nuru_home):
    import base64
    import hashlib
    import re

    client = make_client(f"sqlite:///{nuru_home / 'never-opened.db'}", API_KEY=API_KEY)
    for path in ("/docs", "/docs/oauth2-redirect"):
        page = client.get(path)
        assert page.status_code == 200, path
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["cache-control"] == "no-store"
        assert page.headers["x-frame-options"] == "DENY"
        policy = dict(
            directive.strip().split(" ", 1)
            for directive in page.headers["content-security-policy"].split(";")
        )
        assert policy["default-src"] == "'none'"
        assert policy["frame-ancestors"] == "'none'"
        assert "unsafe" not in page.headers["content-security-policy"]
        inline = re.findall(r"<script>(.*?)</script>", page.text, re.DOTALL)
        assert inline, path
        hashes = {
            "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
            for s in inline
        }
        assert set(policy["script-src"].split()) == {"'self'", *hashes}, path
    asset = client.get("/docs/assets/swagger-ui.css")
    assert asset.headers["x-content-type-options"] == "nosniff"
    assert "cache-control" not in asset.headers  # files of the installed package


def test_head_health_is_the_status_without_a_body(known_db: PredictionsDb, make_client):
    client = make_client(known_db.url, API_KEY=API_KEY, API_STALE_AFTER_HOURS=10**7)
    head = client.head("/health")
    assert head.status_code == client.get("/health").status_code == 200
    assert head.headers["cache-control"] == "no-store"
    assert "head" not in client.get("/openapi.json").json()["paths"]["/health"]


def test_health_tells_callers_without_the_key_what_is_wrong_but_not_why(
    known_db: PredictionsDb, make_client, nuru_home
):
    """No file path, host or URL for anonymous callers: the details are for the key."""
    registry_path = nuru_home / "nowhere" / "mlflow.db"
    client = make_client(
        known_db.url,
        API_KEY=API_KEY,
        registry=lambda: REGISTRY.unreachable(f"no MLflow database at {registry_path}"),
        LAKE_URL=f"file://{nuru_home / 'no-lake'}",
    )
    anonymous = client.get("/health").json()
    keyed = client.get("/health", headers=auth()).json()
    assert anonymous["status"] == keyed["status"] == "degraded"
    assert "MLflow registry unavailable" in anonymous["reasons"]
    assert "feature store unavailable" in anonymous["reasons"]
    assert not any(str(nuru_home) in reason for reason in anonymous["reasons"])
    assert (
        f"MLflow registry unavailable: no MLflow database at {registry_path}" in (keyed["reasons"])
    )
    assert client.get("/health", headers=auth("wrong")).json()["reasons"] == anonymous["reasons"]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_health_without_the_key_does_not_name_the_database(backend: str, make_client, nuru_home):
    if backend == "sqlite":
        url = f"sqlite:///{nuru_home / 'absent.db'}"
    else:
        url = f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/nuru"
    client = make_client(url, API_KEY=API_KEY, API_DB_TIMEOUT_SECONDS=2)
    anonymous = client.get("/health")
    assert anonymous.status_code == 503
    assert anonymous.json()["reasons"][0] == "predictions database unavailable"
    keyed = client.get("/health", headers=auth()).json()["reasons"][0]
    assert keyed.startswith("predictions database unavailable: ")


def test_health_reports_freshness_models_and_registry(known_db: PredictionsDb, make_client):
    Lake.from_settings().write_bytes(features_path(LATEST_NIGHT), b"not read")
    client = make_client(known_db.url, API_STALE_AFTER_HOURS=10**7)
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy", body["reasons"]
    assert body["models_loaded"] == [
        "ensemble",
        "challenger",
        "Ensemble_VotingRegressor@challenger",
        "Ensemble_VotingRegressor@champion",
        "Ensemble_VotingRegressor@previous",
    ]
    assert body["mlflow_connected"] is True
    assert body["feature_store_available"] is True
    assert body["predictions_db"] == "ok"
    assert body["latest_run_date"] == str(LATEST_NIGHT)
    assert body["newest_partition_age_seconds"] > 0


def test_health_is_degraded_when_stale_or_mlflow_is_down(known_db: PredictionsDb, make_client):
    client = make_client(
        known_db.url, registry=lambda: REGISTRY.unreachable("ConnectionError: refused")
    )
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["mlflow_connected"] is False
    assert body["feature_store_available"] is False
    assert any("h old" in reason for reason in body["reasons"])
    assert any("refused" in reason for reason in body["reasons"])
    # MLflow being down does not break lookups.
    assert client.post("/predict", json={"plot_id": 1}).status_code == 200
    assert client.get("/models").json()["mlflow_connected"] is False


def test_the_registry_client_set_up_is_not_timed_as_a_registry_read(
    known_db: PredictionsDb, make_client
):
    def slow_import():  # as MLflow's first import: longer than the read timeout below
        time.sleep(0.5)

    client = make_client(known_db.url, prepare_registry=slow_import, API_MLFLOW_TIMEOUT_SECONDS=0.1)
    body = client.get("/health").json()
    assert body["mlflow_connected"] is True, body["reasons"]
    assert "Ensemble_VotingRegressor@champion" in body["models_loaded"]


def test_a_registry_client_that_cannot_load_is_a_reason(known_db: PredictionsDb, make_client):
    def broken_import():
        raise ImportError("No module named 'mlflow'")

    client = make_client(known_db.url, prepare_registry=broken_import)
    body = client.get("/health").json()
    assert body["status"] == "degraded"
    assert body["mlflow_connected"] is False
    assert any("cannot load the MLflow client" in reason for reason in body["reasons"])


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_database_down_is_503_with_a_reason(backend: str, make_client, nuru_home):
    if backend == "sqlite":
        url, reason = f"sqlite:///{nuru_home / 'absent.db'}", "unable to open database"
    else:
        url, reason = f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/nuru", "refused"
    client = make_client(url, API_DB_TIMEOUT_SECONDS=2)
    health = client.get("/health")
    assert health.status_code == 503
    body = health.json()
    assert (body["status"], body["predictions_db"]) == ("unhealthy", "unavailable")
    assert reason in body["reasons"][0].lower()
    for response in (
        client.post("/predict", json={"plot_id": 1}),
        client.post("/predict/batch", json={"plots": [{"plot_id": 1}]}),
        client.get("/predictions/1"),
    ):
        assert response.status_code == 503
        assert response.json()["detail"].startswith("predictions database unavailable")
    assert not (nuru_home / "absent.db").exists()  # SQLite was opened read-only


def test_concurrent_lookups_are_answered_together_and_each_as_alone(known_db: PredictionsDb):
    store = open_store(known_db.url)
    lookups = [
        Lookup(1),
        Lookup(UNKNOWN_PLOT),
        Lookup(2),  # not scored on the newest night: found by the search over all nights
        Lookup(3, season="Short Rains", season_year=2024),
        Lookup(1, fallback="challenger", preferred="challenger"),
        Lookup(SHARE_PLOTS[0], preferred="challenger"),
        *(Lookup(plot) for plot in SHARE_PLOTS[1:]),
    ]
    queries = []
    fetch = store._fetch

    async def counted(query, params):
        queries.append(query)
        return await fetch(query, params)

    store._fetch = counted

    async def lookup_all():
        together = await asyncio.gather(*(store.latest(it, since=LATEST_NIGHT) for it in lookups))
        gathered_queries = len(queries)
        alone = [await store.latest(it, since=LATEST_NIGHT) for it in lookups]
        await store.close()
        return together, gathered_queries, alone

    together, gathered_queries, alone = asyncio.run(lookup_all())

    assert gathered_queries == 2  # the newest night's partition, then all nights for the rest
    assert len(queries) - gathered_queries > len(lookups)  # one or two each when alone

    def fields(row):  # a gathered row also carries its position in the query ("ord")
        return row and {name: value for name, value in dict(row).items() if name != "ord"}

    assert [fields(row) for row in together] == [fields(row) for row in alone]
    assert together[1] is None
    assert together[2]["season"] == "Short Rains"
    assert together[3]["run_date"] == OLD_NIGHTS[-1]
    assert [row["model_name"] for row in together[4:6]] == ["challenger", "challenger"]
    assert {row["model_name"] for row in together[6:]} == {"champion"}


def test_unexpected_errors_hide_their_details(known_db: PredictionsDb, make_client):
    client = make_client(known_db.url, raise_server_exceptions=False)

    async def broken(*_: object) -> None:
        raise RuntimeError("SELECT secret FROM predictions")

    client.app.state.api.store.latest = broken
    response = client.post("/predict", json={"plot_id": 1})
    assert response.status_code == 500
    assert response.json() == {"detail": "internal error"}
    # Answered outside the middleware stack, with the headers of every answer all the same.
    assert _response_headers(response) == DATA_ANSWER


def test_models_lists_registry_and_promotions_and_reload_refreshes(
    known_db: PredictionsDb, make_client
):
    reads = []

    def registry():
        reads.append(1)
        return REGISTRY

    client = make_client(known_db.url, registry=registry, API_KEY=API_KEY)
    body = client.get("/models", headers=auth()).json()
    assert body["registered_model"] == "Ensemble_VotingRegressor"
    assert body["aliases"] == {"champion": "3", "challenger": "4", "previous": "2"}
    assert [v["version"] for v in body["versions"]] == ["4", "3", "2"]
    assert body["versions"][1]["aliases"] == ["champion"]
    assert body["versions"][1]["metrics"] == {"rmse": 870.0}
    decisions = [(p["candidate_version"], p["decision"]) for p in body["promotions"]]
    assert decisions == [("4", "rejected"), ("3", "promoted"), ("2", "promoted")]
    assert body["promotions"][0]["candidate_metrics"] == PROMOTIONS[-1]["candidate_metrics"]

    client.get("/models", headers=auth())
    assert len(reads) == 1  # cached
    assert client.post("/models/reload").status_code == 401
    assert client.post("/models/reload", headers=auth()).status_code == 200
    assert len(reads) == 2


def test_metrics_count_requests_latency_rows_and_age(known_db: PredictionsDb, make_client):
    client = make_client(known_db.url)
    client.post("/predict", json={"plot_id": 1})
    client.post("/predict", json={"plot_id": UNKNOWN_PLOT})
    client.post("/predict/batch", json={"plots": [{"plot_id": 1}, {"plot_id": 4}]})
    client.get("/no-such-page")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'nuru_api_requests_total{method="POST",route="/predict",status="200"} 1.0' in text
    assert 'nuru_api_requests_total{method="POST",route="/predict",status="404"} 1.0' in text
    assert 'nuru_api_requests_total{method="GET",route="<unmatched>",status="404"} 1.0' in text
    assert (
        'nuru_api_request_duration_seconds_count{method="POST",route="/predict/batch",'
        'status="200"} 1.0'
    ) in text
    assert 'nuru_api_rows_served_total{model="champion"} 3.0' in text
    age = next(
        line for line in text.splitlines() if line.startswith("nuru_api_newest_partition_age")
    )
    assert float(age.split()[-1]) > 0


def test_request_log_goes_to_the_log_file(
    known_db: PredictionsDb, monkeypatch: pytest.MonkeyPatch, nuru_home
):
    log_file = nuru_home / "logs" / "api.log"
    with serving(monkeypatch, known_db.url, LOG_FILE=log_file) as client:
        client.post("/predict", json={"plot_id": 1})
        client.get("/predictions/1")
    lines = [json.loads(line) for line in log_file.read_text().splitlines()]  # flushed at exit
    assert [(line["route"], line["status"]) for line in lines] == [
        ("/predict", 200),
        ("/predictions/{plot_id}", 200),
    ]
    assert lines[0]["path"] == "/predict"
    assert lines[0]["ms"] > 0


def test_cors_is_closed_by_default_and_opens_per_origin(known_db: PredictionsDb, make_client):
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    closed = make_client(known_db.url).options("/predict", headers=preflight)
    assert "access-control-allow-origin" not in closed.headers
    client = make_client(known_db.url, API_CORS_ORIGINS="https://app.example")
    opened = client.options("/predict", headers=preflight)
    assert opened.headers["access-control-allow-origin"] == "https://app.example"
    other = client.options("/predict", headers={**preflight, "Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


@pytest.mark.postgres
def test_serves_through_a_read_only_role(postgres_url: str, monkeypatch: pytest.MonkeyPatch):
    """The app needs nothing but SELECT: every endpoint works through a role that has only it."""
    db = PredictionsDb(postgres_url)
    db.load(known_rows())
    db.add_promotions()
    db.add_counties()
    role = f"reader_{uuid.uuid4().hex[:8]}"
    with db.engine.begin() as connection:
        connection.execute(sa.text(f"CREATE ROLE {role} LOGIN"))
        connection.execute(sa.text(f"GRANT USAGE ON SCHEMA public TO {role}"))
        connection.execute(sa.text(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}"))
    reader_url = db.engine.url.set(username=role).render_as_string(False)
    try:
        with serving(monkeypatch, postgres_url, API_DB_URL=reader_url, API_KEY=API_KEY) as client:
            calls = [
                client.post("/predict", json={"plot_id": 1}, headers=auth()),
                client.post("/predict/batch", json={"plots": [{"plot_id": 1}]}, headers=auth()),
                client.get("/predictions/1", params={"as_of": "2025-04-02"}, headers=auth()),
                client.get("/models", headers=auth()),
                client.post("/models/reload", headers=auth()),
                client.get("/counties", headers=auth()),
                client.get("/counties/Makueni/forecast", headers=auth()),
                client.get("/health"),
                client.get("/metrics"),
            ]
        assert [call.status_code for call in calls] == [200] * len(calls)
        assert calls[-2].json()["latest_run_date"] == str(LATEST_NIGHT)
        assert len(calls[3].json()["promotions"]) == len(PROMOTIONS)
        assert len(calls[6].json()["skill"]) == 2  # county_skill, read through the role too

        reader = sa.create_engine(reader_url)
        with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):  # noqa: SIM117
            with reader.begin() as connection:
                connection.execute(sa.text("DELETE FROM predictions"))
        reader.dispose()
    finally:
        with db.engine.begin() as connection:
            connection.execute(sa.text(f"DROP OWNED BY {role}"))
        dispose_engines()
        admin = sa.create_engine(postgres_url.rsplit("/", 1)[0] + "/postgres")
        with admin.begin() as connection:
            connection.execute(sa.text(f"DROP ROLE IF EXISTS {role}"))
        admin.dispose()


@pytest.mark.postgres
def test_a_dropped_connection_is_replaced_and_the_query_retried(postgres_url: str, make_client):
    db = PredictionsDb(postgres_url)
    db.load(known_rows([LATEST_NIGHT], old_season=False))
    client = make_client(postgres_url)
    assert client.post("/predict", json={"plot_id": 1}).status_code == 200
    api_sessions = "FROM pg_stat_activity WHERE application_name = 'nuru-yield-api'"
    with db.engine.connect() as connection:
        connection.execute(sa.text(f"SELECT pg_terminate_backend(pid) {api_sessions}"))

    def gone() -> bool:
        with db.engine.connect() as connection:
            return not connection.execute(sa.text(f"SELECT count(*) {api_sessions}")).scalar()

    wait_until(gone, "the API's session to end", 10)
    # The client never sees the dead connection: the query goes again on a fresh one.
    assert client.post("/predict", json={"plot_id": 1}).status_code == 200
    assert 'nuru_api_database_events_total{event="reconnected"} 1.0' in client.get("/metrics").text


@pytest.mark.postgres
def test_a_query_error_is_not_retried(postgres_url: str):
    db = PredictionsDb(postgres_url)
    store = open_store(postgres_url)
    events = []
    store.report = events.append
    connects = []
    connect = store._connect

    async def counted():
        connects.append(1)
        return await connect()

    store._connect = counted

    async def scenario():
        with pytest.raises(DatabaseError, match="division by zero"):
            await store._fetch(sa.text("SELECT 1 / 0 AS never"), {})
        await store.ping()  # the same connection, still usable
        await store.close()

    asyncio.run(scenario())
    assert (connects, events) == ([1], ["query_error"])
    db.engine.dispose()


def test_docs_show_examples_and_the_key(make_client, nuru_home):
    client = make_client(f"sqlite:///{nuru_home / 'never-opened.db'}", API_KEY=API_KEY)
    assert client.get("/docs").status_code == 200  # no key needed to read the docs
    openapi = client.get("/openapi.json").json()
    predict = openapi["paths"]["/predict"]["post"]
    body = predict["requestBody"]["content"]["application/json"]["schema"]
    assert body["examples"][0]["plot_id"] == 1
    assert body["properties"]["latitude"]["anyOf"][0]["maximum"] == 90
    assert predict["security"] == [{"APIKeyHeader": []}]
    assert {"401", "403", "404", "408", "413", "415", "422", "429", "503"} <= set(
        predict["responses"]
    )
    batch = openapi["paths"]["/predict/batch"]["post"]
    assert "400" not in batch["responses"]  # every answer it gives is documented
    assert {"408", "413", "415", "422", "503"} <= set(batch["responses"])
    plots = batch["requestBody"]["content"]["application/json"]["schema"]["properties"]["plots"]
    assert plots["items"] == {"$ref": "#/components/schemas/PlotQuery"}
    assert "PlotQuery" in openapi["components"]["schemas"]
    assert "security" not in openapi["paths"]["/health"]["get"]
    prediction = openapi["components"]["schemas"]["Prediction"]
    assert prediction["examples"][0]["confidence_score"] == 0.8


def test_docs_work_offline_from_assets_the_api_serves(make_client, nuru_home):
    """/docs names no other host: its script, style and icon come from this server (also
    without a key), and its spec validator (a call to validator.swagger.io) is off."""
    import re

    client = make_client(f"sqlite:///{nuru_home / 'never-opened.db'}", API_KEY=API_KEY)
    page = client.get("/docs")
    assert page.status_code == 200
    html = page.text
    references = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert len(references) == 3, references  # script, style, icon
    assert all(ref.startswith("/docs/assets/") for ref in references), references
    assert "://" not in html.replace("window.location.origin", "")
    assert '"validatorUrl": null' in html
    for ref in references:
        asset = client.get(ref)
        assert asset.status_code == 200, ref
        assert len(asset.content) > 1000, ref
    script = client.get("/docs/assets/swagger-ui-bundle.js")
    assert "javascript" in script.headers["content-type"]
    assert b"SwaggerUIBundle" in script.content
    # The assets are not a way around the key.
    assert client.get("/docs/assets/../predictions/1").status_code in (401, 404)


@pytest.mark.parametrize("known_db", ["postgresql"], indirect=True)
def test_bench_variants_answer_exactly_as_the_api(known_db: PredictionsDb, monkeypatch):
    """`nuru-yield bench api --compare` measures the API without each fast path: every
    variant must give the same answers, or the comparison compares different work."""
    from starlette.testclient import TestClient

    from nuru_yield.dev.bench.api import VARIANTS, PoolStore, variant_app
    from nuru_yield.serving.routers import predict

    monkeypatch.setenv("PREDICTIONS_DB_URL", known_db.url)
    monkeypatch.setenv("API_RATE_LIMIT_PER_MINUTE", "0")
    reset_settings()
    as_json = {"Content-Type": "application/json"}
    requests = [
        {"json": {"plot_id": 1}},
        {"json": {"plot_id": 3, "season": "Short Rains"}},
        {"json": {"plot_id": UNKNOWN_PLOT}},
        {"content": b'{"plot_id": 1}'},  # no Content-Type
        {"content": b'{"plot_id": 1}', "headers": {"Content-Type": "text/plain"}},
        {"content": b'{"plot_id": ' + b"9" * 4000 + b"}", "headers": as_json},
    ]
    answers = {}
    for name, variant in VARIANTS.items():
        app = variant_app(variant, registry_reader=lambda: REGISTRY)
        assert (predict.FAST_ROUTE in app.router.routes) is variant.bare_route, name
        assert isinstance(app.state.api.store, PoolStore) is not variant.own_queue, name
        with TestClient(app) as client:
            replies = [client.post("/predict", **request) for request in requests]
        answers[name] = [
            (reply.status_code, reply.json(), _response_headers(reply)) for reply in replies
        ]
    assert [status for status, *_ in answers["current"]] == [200, 200, 404, 415, 415, 422]
    assert all(replies == answers["current"] for replies in answers.values()), answers
