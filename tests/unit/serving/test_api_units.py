"""The API's pure parts: A/B arms, rate-limit buckets, caches, deadlines, the database
timeout and retry policy (with fake connections), body limits, validation errors, health
assessment, registry reading, request log, OpenAPI security; and that serving imports no
Airflow/training code."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import logging
import subprocess
import sys
import types
from pathlib import Path

import asyncpg
import pytest
from starlette.exceptions import HTTPException

from nuru_yield.errors import ConfigError, DatabaseError
from nuru_yield.names import CHALLENGER, CHAMPION
from nuru_yield.serving.ab import in_challenger_share, lookup_for
from nuru_yield.serving.app import MAX_ERRORS_SHOWN, client_errors
from nuru_yield.serving.caches import TtlCache, in_thread
from nuru_yield.serving.deadlines import RESOLUTION, deadline
from nuru_yield.serving.limits import BodyLimitMiddleware
from nuru_yield.serving.observability import QuietRepeats, RequestLog
from nuru_yield.serving.probes import FeatureStoreProbe, RegistrySnapshot, read_registry
from nuru_yield.serving.ratelimit import TokenBuckets
from nuru_yield.serving.routers.health import assess
from nuru_yield.serving.schemas import features_from_drivers
from nuru_yield.serving.security import OPEN_PATHS, document_api_key
from nuru_yield.serving.state import Freshness
from nuru_yield.serving.store import PING, AsyncpgStore, Lookup, read_only_sqlite_url


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


def test_ttl_cache_gives_a_failed_load_to_every_waiting_caller_at_once():
    """Behind a database that times out, the n-th of n waiting callers must not wait n
    timeouts (as it would if each retried the load in turn)."""
    loads = []

    async def times_out() -> int:
        loads.append(1)
        await asyncio.sleep(0.05)
        raise DatabaseError("predictions database unavailable: no answer within 0.05s")

    cache = TtlCache(times_out, ttl=10)

    async def scenario() -> list[object]:
        return await asyncio.gather(*(cache.get() for _ in range(20)), return_exceptions=True)

    outcomes = asyncio.run(scenario())
    assert len(loads) == 1
    assert all(isinstance(outcome, DatabaseError) for outcome in outcomes)


def test_a_caller_that_goes_away_does_not_cancel_the_shared_load():
    async def load() -> str:
        await asyncio.sleep(0.05)
        return "loaded"

    cache = TtlCache(load, ttl=10)

    async def scenario() -> str:
        leaving = asyncio.create_task(cache.get())
        staying = asyncio.create_task(cache.get())
        await asyncio.sleep(0)
        leaving.cancel()
        return await staying

    assert asyncio.run(scenario()) == "loaded"


# --- deadlines -----------------------------------------------------------------------------
def test_a_deadline_times_out_a_block_and_nothing_else():
    async def scenario() -> list[str]:
        seen = []
        with pytest.raises(TimeoutError):
            async with deadline(0.1):
                await asyncio.sleep(30)
        seen.append("timed out")
        async with deadline(0.1):
            await asyncio.sleep(0.01)
        await asyncio.sleep(3 * RESOLUTION)  # no stray cancellation after a block that ended
        seen.append("in time")

        async def cancelled_from_outside() -> None:
            async with deadline(30):
                await asyncio.sleep(30)

        task = asyncio.create_task(cancelled_from_outside())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):  # not turned into a timeout
            await task
        seen.append("outside cancellation kept")
        return seen

    assert asyncio.run(scenario()) == ["timed out", "in time", "outside cancellation kept"]


# --- the database timeout and retry policy (fake asyncpg connections) ----------------------
class FakeConnection:
    """Answers ``fetch`` with ``outcome``: rows, an exception to raise, or "hang"."""

    def __init__(self, outcome: object, closed: bool = False) -> None:
        self.outcome = outcome
        self.closed = closed
        self.terminated = False
        self.fetched = 0

    async def fetch(self, sql: str, *args: object) -> object:
        self.fetched += 1
        if self.outcome == "hang":
            await asyncio.sleep(3600)
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome

    def is_closed(self) -> bool:
        return self.closed

    def terminate(self) -> None:
        self.terminated = True


def _store_with(pooled: FakeConnection, fresh: list[FakeConnection], timeout: float = 5.0):
    store = AsyncpgStore("postgresql://nobody@127.0.0.1:1/x", max_size=2, timeout=timeout)
    store._idle.get_nowait()
    store._idle.put_nowait(pooled)  # a warm connection on top of one free slot
    events: list[str] = []
    store.report = events.append

    async def connect() -> FakeConnection:
        return fresh.pop(0)

    store._connect = connect
    return store, events


def _fetch(store: AsyncpgStore) -> object:
    async def scenario() -> object:
        try:
            return await store._fetch(PING, {})
        finally:
            slots = [store._idle.get_nowait() for _ in range(store._idle.qsize())]
            assert len(slots) == 2  # every slot back in the pool, whatever happened

    return asyncio.run(scenario())


@pytest.mark.parametrize(
    ("error", "closed"),
    [
        (asyncpg.exceptions.InternalClientError("another operation (2) is in progress"), False),
        (asyncpg.ConnectionDoesNotExistError("closed in the middle of operation"), False),
        (asyncpg.AdminShutdownError("terminating connection due to administrator command"), False),
        (asyncpg.InterfaceError("connection is closed"), True),
        (ConnectionResetError("reset by peer"), False),
    ],
    ids=["stuck-protocol", "closed-mid-operation", "admin-shutdown", "closed", "reset"],
)
def test_a_dead_pooled_connection_is_replaced_and_the_query_sent_once_more(error, closed):
    pooled, fresh = FakeConnection(error, closed=closed), FakeConnection([{"ok": 1}])
    store, events = _store_with(pooled, [fresh])
    assert _fetch(store) == [{"ok": 1}]
    assert (pooled.terminated, fresh.fetched, events) == (True, 1, ["reconnected"])


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.exceptions.DivisionByZeroError("division by zero"),
        asyncpg.exceptions.QueryCanceledError("canceling statement due to statement timeout"),
        asyncpg.exceptions.InsufficientPrivilegeError("permission denied for table predictions"),
    ],
    ids=["error", "statement-timeout", "permission"],
)
def test_a_query_error_is_never_retried(error):
    pooled = FakeConnection(error)
    store, events = _store_with(pooled, [])
    with pytest.raises(DatabaseError, match=f"predictions database unavailable: {error}"):
        _fetch(store)
    assert (pooled.fetched, pooled.terminated, events) == (1, False, ["query_error"])


def test_a_database_that_does_not_answer_costs_the_timeout_once_and_frees_the_slot():
    pooled = FakeConnection("hang")
    store, events = _store_with(pooled, [], timeout=0.1)
    with pytest.raises(DatabaseError, match=r"no answer within 0\.1s"):
        _fetch(store)  # (and every slot came back: see _fetch)
    assert (pooled.fetched, pooled.terminated, events) == (1, True, ["timeout"])


def test_a_retry_that_fails_too_is_one_503():
    pooled = FakeConnection(asyncpg.ConnectionDoesNotExistError("closed"))
    fresh = FakeConnection(asyncpg.CannotConnectNowError("the database system is starting up"))
    store, events = _store_with(pooled, [fresh])
    with pytest.raises(DatabaseError, match="the database system is starting up"):
        _fetch(store)
    assert (fresh.fetched, events) == (1, ["reconnected", "connection_error"])


# --- request bodies ------------------------------------------------------------------------
def _through_body_limit(
    messages: list[dict], headers: list[tuple[bytes, bytes]] = (), *, max_bytes: int = 100
) -> tuple[int | None, bytes, list[bytes]]:
    """Run a body-reading app behind the middleware: (status, body sent, parts the app read)."""
    read: list[bytes] = []
    sent: list[dict] = []

    async def app(scope, receive, send):
        try:
            while True:
                message = await receive()
                read.append(message.get("body", b""))
                if not message.get("more_body"):
                    break
        except HTTPException as error:  # the app's exception handler, in short
            await send({"type": "http.response.start", "status": error.status_code})
            await send({"type": "http.response.body", "body": error.detail.encode()})
            return
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"ok"})

    async def receive():
        if messages:
            return messages.pop(0)
        await asyncio.sleep(3600)  # a client that stopped sending

    async def send(message):
        sent.append(message)

    middleware = BodyLimitMiddleware(app, max_bytes=max_bytes, timeout=0.2)
    scope = {"type": "http", "headers": list(headers)}
    asyncio.run(middleware(scope, receive, send))
    status = next((m["status"] for m in sent if m["type"] == "http.response.start"), None)
    return status, b"".join(m.get("body", b"") for m in sent[1:]), read


def test_body_limit_refuses_a_declared_size_without_reading():
    status, body, read = _through_body_limit(  # a body declared larger than it is sent
        [{"type": "http.request", "body": b"x" * 10}], [(b"content-length", b"10000")]
    )
    assert (status, read) == (413, [])
    assert b"larger than the limit of 100 bytes" in body


def test_body_limit_cuts_a_streamed_body_at_the_limit():
    part = {"type": "http.request", "body": b"x" * 40, "more_body": True}
    status, _, read = _through_body_limit([part, part, part, part])
    assert status == 413
    assert len(read) == 2  # the third part crossed the limit: the app never got it


def test_body_limit_passes_a_body_within_it_and_times_out_a_stalled_one():
    whole = [{"type": "http.request", "body": b"x" * 100}]
    assert _through_body_limit(whole, [(b"content-length", b"100")])[:2] == (200, b"ok")
    stalled = [{"type": "http.request", "body": b"x" * 10, "more_body": True}]
    status, body, _ = _through_body_limit(stalled)
    assert (status, body) == (408, b"request body not received within 0.2s")


def test_validation_errors_never_echo_the_request():
    huge = int("9" * 4000)
    errors = [
        {"type": "json_invalid", "loc": ("body",), "msg": "Invalid JSON", "input": b"\xff\xfe"},
        {
            "type": "finite_number",
            "loc": ("body", "latitude"),
            "msg": "finite",
            "input": float("nan"),
        },
        {"type": "string_type", "loc": ("body", "season"), "msg": "bad", "input": "<script>"},
        {
            "type": "too_long",
            "loc": ("body", "plots"),
            "msg": "long",
            "input": [{"plot_id": 1}] * 5,
        },
        {"type": "less_than_equal", "loc": ("body", "latitude"), "msg": "<= 90", "input": 90.5},
        {"type": "less_than_equal", "loc": ("body", "plot_id"), "msg": "<= 2", "input": huge},
        {"type": "custom", "loc": ("body", "x" * 10_000), "msg": "y" * 10_000, "input": None},
        *(
            {"type": "missing", "loc": ("body", "plots", i), "msg": "m", "input": {}}
            for i in range(20)
        ),
    ]
    shown = client_errors(errors)
    assert len(shown) == MAX_ERRORS_SHOWN + 1
    assert all(set(error) == {"type", "loc", "msg"} for error in shown)  # no input, ever
    assert shown[:2] == [
        {"type": "json_invalid", "loc": ["body"], "msg": "Invalid JSON"},
        {"type": "finite_number", "loc": ["body", "latitude"], "msg": "finite"},
    ]
    assert shown[-1] == {"type": "too_many_errors", "loc": [], "msg": "17 more errors"}
    rendered = json.dumps(shown, allow_nan=False)  # renders: no bytes, no NaN
    assert "90.5" not in rendered and "999" not in rendered
    assert len(rendered) < 2500  # bounded, whatever was sent (a 10 KB field name here)


def test_in_thread_gives_the_fallback_after_the_timeout():
    import threading

    release = threading.Event()

    def hangs() -> str:
        release.wait(5)
        return "late"

    async def scenario() -> str:
        result = await in_thread(hangs, 0.05, lambda: "timed out")
        release.set()  # (asyncio.run waits for the thread at its end)
        return result

    assert asyncio.run(scenario()) == "timed out"
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


def test_health_without_details_says_what_is_wrong_but_not_why():
    problems = {
        "db_error": "predictions database unavailable: connection to 10.0.0.5 refused",
        "registry": RegistrySnapshot.unreachable("no MLflow database at /srv/nuru/mlflow.db"),
        "feature_store": FeatureStoreProbe(False, "cannot list s3://bucket/features: denied"),
        "last_run": {
            "status": "failed",
            "run_date": dt.date(2025, 5, 2),
            "run_id": "r1",
            "message": "cannot read file:///srv/nuru/lake/features/2025-05-02: not found",
        },
    }
    detailed = _assess(**problems)
    anonymous = _assess(**problems, detailed=False)
    assert anonymous.reasons == [
        "predictions database unavailable",
        "last scoring run (2025-05-02, r1) ended failed",
        "MLflow registry unavailable",
        "feature store unavailable",
    ]
    assert [reason.split(":")[0] for reason in detailed.reasons] == anonymous.reasons
    assert "/srv/nuru/mlflow.db" in detailed.reasons[2]
    assert anonymous.model_dump(exclude={"reasons"}) == detailed.model_dump(exclude={"reasons"})
    stale = _assess(now=NOW + dt.timedelta(days=2), detailed=False)
    assert stale.reasons == ["newest partition (2025-05-02) is 58.0 h old (limit 36 h)"]


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


def test_repeated_warnings_are_logged_once_per_interval_with_a_count(
    caplog: pytest.LogCaptureFixture,
):
    clock = FakeClock()
    warnings = QuietRepeats(logging.getLogger("quiet"), every=10, clock=clock)
    with caplog.at_level(logging.WARNING, logger="quiet"):
        for _ in range(500):  # a burst of 503s
            warnings.warning("predictions database unavailable: no answer within 1.5s")
        warnings.warning("predictions database unavailable: connection refused")
        clock.now += 11
        warnings.warning("predictions database unavailable: no answer within 1.5s")
    assert caplog.messages == [
        "predictions database unavailable: no answer within 1.5s",
        "predictions database unavailable: connection refused",
        "predictions database unavailable: no answer within 1.5s (499 more since 11s ago)",
    ]


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
