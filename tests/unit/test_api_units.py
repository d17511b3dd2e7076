"""The API's pure parts: A/B arms, rate-limit buckets, caches, health assessment, registry
reading, request log, OpenAPI security; and that serving imports no Airflow/training code."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

from nuru_yield.errors import ConfigError
from nuru_yield.serving.ab import in_challenger_share, lookup_for
from nuru_yield.serving.caches import TtlCache, in_thread
from nuru_yield.serving.observability import RequestLog
from nuru_yield.serving.probes import FeatureStoreProbe, RegistrySnapshot, read_registry
from nuru_yield.serving.ratelimit import TokenBuckets
from nuru_yield.serving.routers.health import assess
from nuru_yield.serving.schemas import features_from_drivers
from nuru_yield.serving.security import OPEN_PATHS, document_api_key
from nuru_yield.serving.state import Freshness
from nuru_yield.serving.store import CHALLENGER, CHAMPION, Lookup, read_only_sqlite_url


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- A/B ----------------------------------------------------------------------------------
def test_challenger_share_is_stable_and_proportional():
    plots = range(20_000)
    arm = [in_challenger_share(plot, 0.3) for plot in plots]
    assert 0.28 < sum(arm) / len(arm) < 0.32
    assert arm == [in_challenger_share(plot, 0.3) for plot in plots]  # same plot, same arm
    assert not any(in_challenger_share(plot, 0.0) for plot in plots)
    assert all(in_challenger_share(plot, 1.0) for plot in plots)
    # Growing the share only adds plots: nobody already on the challenger flips back.
    assert all(in_challenger_share(p, 0.5) for p in plots if in_challenger_share(p, 0.3))


def test_lookup_never_prefers_the_challenger_unless_asked_or_in_share():
    assert lookup_for(7, "ensemble", 0.0) == Lookup(7, None, None, CHAMPION, CHAMPION)
    assert lookup_for(7, "challenger", 0.0, season="Long Rains", season_year=2025) == Lookup(
        7, "Long Rains", 2025, CHALLENGER, CHALLENGER
    )
    assert lookup_for(7, "ensemble", 1.0) == Lookup(7, None, None, CHAMPION, CHALLENGER)


# --- rate limit ---------------------------------------------------------------------------
def test_token_bucket_allows_a_burst_then_the_rate():
    clock = FakeClock()
    buckets = TokenBuckets(rate=2.0, burst=3, clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(0.5)
    assert buckets.take("b") == 0.0  # clients are independent
    clock.now += 0.5
    assert buckets.take("a") == 0.0
    assert buckets.take("a") == pytest.approx(0.5)
    clock.now += 100
    assert [buckets.take("a") for _ in range(4)][-1] > 0  # refills up to the burst only


def test_token_buckets_forget_idle_clients_when_full():
    clock = FakeClock()
    buckets = TokenBuckets(rate=1.0, burst=2, clock=clock, max_keys=3)
    for key in "abc":
        buckets.take(key)
    clock.now += 10  # a, b, c have refilled: forgetting them changes nothing
    buckets.take("d")
    assert set(buckets._buckets) == {"d"}


# --- caches -------------------------------------------------------------------------------
def test_ttl_cache_loads_once_per_ttl_and_shares_a_load():
    clock = FakeClock()
    loads = []

    async def load() -> int:
        loads.append(clock.now)
        await asyncio.sleep(0)
        return len(loads)

    cache = TtlCache(load, ttl=10, clock=clock)

    async def scenario() -> list[int]:
        first = await asyncio.gather(*(cache.get() for _ in range(5)))
        clock.now += 5
        cached = await cache.get()
        clock.now += 6
        refreshed = await cache.get()
        cache.clear()
        cleared = await cache.get()
        return [*first, cached, refreshed, cleared]

    assert asyncio.run(scenario()) == [1, 1, 1, 1, 1, 1, 2, 3]
    assert cache.value == 3


def test_ttl_cache_keeps_failures_shorter_and_caches_no_exception():
    clock = FakeClock()
    answers = iter([False, True, "boom"])

    async def load() -> bool:
        answer = next(answers)
        if answer == "boom":
            raise RuntimeError("boom")
        return answer

    cache = TtlCache(load, ttl=lambda ok: 300 if ok else 15, clock=clock)

    async def scenario() -> list[object]:
        seen = [await cache.get()]
        clock.now += 16  # the failed probe is retried soon
        seen.append(await cache.get())
        clock.now += 299
        seen.append(await cache.get())  # the good answer is kept
        clock.now += 2
        with pytest.raises(RuntimeError):
            await cache.get()
        seen.append(cache.value)
        return seen

    assert asyncio.run(scenario()) == [False, True, True, True]


def test_in_thread_gives_the_fallback_after_the_timeout():
    import threading

    release = threading.Event()

    def hangs() -> str:
        release.wait(5)
        return "late"

    result = asyncio.run(in_thread(hangs, 0.05, lambda: "timed out"))
    release.set()
    assert result == "timed out"
    assert asyncio.run(in_thread(lambda: "quick", 5, lambda: "timed out")) == "quick"


# --- health -------------------------------------------------------------------------------
NOW = dt.datetime(2025, 5, 2, 12, tzinfo=dt.UTC)
FRESH = Freshness(dt.date(2025, 5, 2), dt.datetime(2025, 5, 2, 2), (CHAMPION, CHALLENGER))
REGISTRY = RegistrySnapshot(connected=True, aliases={"champion": "3", "previous": "2"})
LAKE = FeatureStoreProbe(True)


def _assess(**overrides: object):
    arguments = {
        "now": NOW,
        "freshness": FRESH,
        "db_error": None,
        "registry": REGISTRY,
        "feature_store": LAKE,
        "stale_after_hours": 36,
        **overrides,
    }
    return assess(**arguments)


def test_health_is_healthy_with_everything_fresh():
    health = _assess()
    assert (health.status, health.reasons) == ("healthy", [])
    assert health.models_loaded == [
        "ensemble",
        "challenger",
        "Ensemble_VotingRegressor@champion",
        "Ensemble_VotingRegressor@previous",
    ]
    assert health.newest_partition_age_seconds == 10 * 3600  # naive SQLite time read as UTC


def test_health_degrades_on_stale_data_missing_registry_or_lake_and_fails_without_db():
    stale = _assess(now=NOW + dt.timedelta(days=2))
    assert stale.status == "degraded"
    assert "newest partition (2025-05-02) is 58.0 h old (limit 36 h)" in stale.reasons
    assert _assess(registry=RegistrySnapshot.unreachable("down")).status == "degraded"
    assert _assess(feature_store=FeatureStoreProbe(False, "empty")).status == "degraded"
    assert _assess(freshness=None).reasons == ["no predictions loaded yet"]
    down = _assess(freshness=None, db_error="predictions database unavailable: refused")
    assert (down.status, down.predictions_db) == ("unhealthy", "unavailable")


# --- small pieces ---------------------------------------------------------------------------
def test_features_come_from_the_stored_drivers():
    drivers = [
        {"feature": "precip_total", "value": 312.5, "contribution": 80.0},
        {"feature": "ndvi_mean", "value": None, "contribution": 1.0},
        {"contribution": 3.0},
    ]
    assert features_from_drivers(drivers) == {"precip_total": 312.5, "ndvi_mean": None}
    assert features_from_drivers(None) == {}
    assert features_from_drivers({"precip_total": 1}) == {}


def test_sqlite_is_opened_read_only(tmp_path: Path):
    url = read_only_sqlite_url(f"sqlite:///{tmp_path / 'p.db'}")
    assert url.database == f"file:{tmp_path / 'p.db'}"
    assert dict(url.query) == {"mode": "ro", "uri": "true"}
    with pytest.raises(ConfigError):
        read_only_sqlite_url("sqlite://")


def test_request_log_writes_json_lines_to_every_stream(tmp_path: Path):
    stdout = io.StringIO()
    log = RequestLog(tmp_path / "logs" / "api.log", stdout=stdout)
    log.write({"route": "/predict", "status": 200})
    log.close()
    assert json.loads(stdout.getvalue()) == {"route": "/predict", "status": 200}
    assert (tmp_path / "logs" / "api.log").read_text() == stdout.getvalue()


def test_openapi_declares_the_key_outside_the_open_paths():
    document = {"paths": {"/predict": {"post": {}}, "/health": {"get": {}}}}
    documented = document_api_key(document)
    assert documented["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-Key"
    assert documented["paths"]["/predict"]["post"]["security"] == [{"APIKeyHeader": []}]
    assert "security" not in documented["paths"]["/health"]["get"]
    assert {"/health", "/metrics"} <= OPEN_PATHS


# --- the registry -------------------------------------------------------------------------
def test_registry_on_a_missing_sqlite_store_is_unreachable_and_creates_nothing(tmp_path: Path):
    snapshot = read_registry(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert not snapshot.connected
    assert "no MLflow database" in snapshot.error
    assert not (tmp_path / "mlflow.db").exists()


def _fake_mlflow(monkeypatch: pytest.MonkeyPatch, client: object) -> None:
    """An `mlflow` module whose MlflowClient is ``client`` (importing MLflow takes seconds)."""

    class MlflowException(Exception):
        def __init__(self, message: str, error_code: str = "INTERNAL_ERROR") -> None:
            super().__init__(message)
            self.error_code = error_code

    for variable in ("MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_HTTP_REQUEST_MAX_RETRIES"):
        monkeypatch.setenv(variable, "1")  # read_registry only sets them when unset
    mlflow = types.ModuleType("mlflow")
    mlflow.MlflowClient = lambda **_: client
    exceptions = types.ModuleType("mlflow.exceptions")
    exceptions.MlflowException = MlflowException
    monkeypatch.setitem(sys.modules, "mlflow", mlflow)
    monkeypatch.setitem(sys.modules, "mlflow.exceptions", exceptions)
    client.error = MlflowException


def test_registry_reads_aliases_versions_and_metrics(monkeypatch: pytest.MonkeyPatch):
    version = types.SimpleNamespace

    class Client:
        def get_registered_model(self, name: str):
            assert name == "Ensemble_VotingRegressor"
            return version(aliases={"champion": 3, "previous": 2})

        def search_model_versions(self, filter_string, max_results, order_by):
            return [
                version(version=3, run_id="r3", status="READY", creation_timestamp=1.7e12, tags={}),
                version(version=2, run_id="gone", status="READY", creation_timestamp=None, tags={}),
            ]

        def get_run(self, run_id: str):
            if run_id == "gone":
                raise self.error("deleted", "RESOURCE_DOES_NOT_EXIST")
            return version(data=version(metrics={"rmse": 812.5}))

    _fake_mlflow(monkeypatch, Client())
    snapshot = read_registry("http://mlflow.invalid:5000")
    assert snapshot.connected
    assert snapshot.aliases == {"champion": "3", "previous": "2"}
    assert [(v["version"], v["aliases"], v["metrics"]) for v in snapshot.versions] == [
        ("3", ["champion"], {"rmse": 812.5}),
        ("2", ["previous"], {}),
    ]
    assert snapshot.versions[0]["created_at"].year == 2023


def test_registry_errors_mean_not_connected(monkeypatch: pytest.MonkeyPatch):
    class Unregistered:
        def get_registered_model(self, name: str):
            raise self.error("no such model", "RESOURCE_DOES_NOT_EXIST")

    _fake_mlflow(monkeypatch, Unregistered())
    empty = read_registry("http://mlflow.invalid:5000")
    assert (empty.connected, empty.versions) == (True, [])

    class Down:
        def get_registered_model(self, name: str):
            raise ConnectionError("connection refused")

    _fake_mlflow(monkeypatch, Down())
    down = read_registry("http://mlflow.invalid:5000")
    assert not down.connected
    assert down.error == "ConnectionError: connection refused"


# --- what the API process imports -----------------------------------------------------------
_IMPORT_PROBE = """
import sys
from fastapi.testclient import TestClient
from nuru_yield.serving.app import create_app
with TestClient(create_app()) as client:
    assert client.get("/health").status_code == 503
    assert client.post("/predict", json={"plot_id": 1}).status_code == 503
    assert client.get("/openapi.json").status_code == 200
print(" ".join(sorted(sys.modules)))
"""


def test_serving_imports_no_airflow_or_training_code(nuru_home: Path, tmp_path: Path):
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_PROBE],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,  # no stray .env
    )
    assert result.returncode == 0, result.stderr[-2000:]
    modules = result.stdout.split()
    assert "nuru_yield.serving.app" in modules
    forbidden = ("airflow", "nuru_yield.training", "nuru_yield.scoring", "sklearn", "xgboost")
    assert [m for m in modules if m.startswith(forbidden)] == []


def test_serve_fails_in_one_line_on_a_bad_setting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
):
    from nuru_yield.cli import main

    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("LOG_FILE", str(tmp_path / "a-file" / "api.log"))
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--port", "1"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: cannot write LOG_FILE=")
    assert "\n" not in error
