"""``nuru-yield bench api``: the API under load, against a bare Starlette ceiling.

Loads N predictions into a real PostgreSQL (one nightly partition, through the project's own
loader), starts ``nuru-yield serve`` as a user would (API key, metrics, rate limit and
request log on) and a bare Starlette app returning a constant JSON under the same uvicorn
settings, and drives both from a separate load-generator process on loopback: a Python
asyncio HTTP/1.1 keep-alive client (this module's ``__main__``), so it runs wherever the
project installs. Phases, each ``--seconds`` long after a short warm-up:

1. saturation of the bare endpoint (``bare_rps``),
2. saturation of ``POST /predict`` with random known plot ids (``rps``),
3. ``POST /predict`` paced at 1,000 requests/s, latency measured from each request's
   scheduled time, so a stalled server cannot hide its queue (``p50_ms``, ``p99_ms``,
   ``errors``).

With ``--compare``, phases 2 and 3 run again against the same API without its hand-built
fast paths (:data:`VARIANTS`), one server at a time: the documented FastAPI route instead
of the bare ASGI ``/predict``, ``asyncpg.create_pool`` instead of the store's own connection
queue, and one query per lookup instead of gathered lookups; ``variants`` reports rps, p99
and the API's CPU per request of each, so each fast path is kept only where it pays.

The load generator shares the machine's cores with the servers and PostgreSQL: absolute
numbers depend on the machine and on what else runs; ``ratio`` is the figure to compare.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import random
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nuru_yield.dev.local_services import (
    free_port,
    scratch_database,
    stop_process,
    throwaway_postgres,
)
from nuru_yield.errors import NuruError
from nuru_yield.names import CHAMPION
from nuru_yield.serving.store import AsyncpgStore, init_connection

log = logging.getLogger(__name__)

BENCH_KEY = "bench-api-key"
RUN_DATE = dt.date(2025, 5, 1)
SATURATION_CONNECTIONS = 64
PACED_RATE = 1000
PACED_CONNECTIONS = 64
WARMUP_SECONDS = 3.0
REQUEST_TIMEOUT_SECONDS = 5.0
READY_TIMEOUT_SECONDS = 120.0

# --- the ceiling: a bare Starlette endpoint ----------------------------------------------
_CONSTANT = json.dumps(
    {
        "plot_id": 1,
        "predicted_yield_kg_per_ha": 2450.75,
        "model_name": "ensemble",
        "model_version": "1",
        "confidence_score": 0.8,
    }
).encode()


async def _constant(_: Request) -> Response:
    return Response(_CONSTANT, media_type="application/json")


bare_app = Starlette(routes=[Route("/predict", _constant, methods=["POST"])])


# --- variants: the API without its hand-built fast paths ---------------------------------
@dataclass(frozen=True)
class Variant:
    """How the API under test serves ``POST /predict``."""

    bare_route: bool = True  # the bare ASGI endpoint ahead of the documented FastAPI route
    own_queue: bool = True  # the store's own connection queue; else asyncpg.create_pool
    gathered: bool = True  # lookups made while the loop is busy share one query


VARIANTS: dict[str, Variant] = {
    "current": Variant(),
    "without_bare_route": Variant(bare_route=False),
    "without_gathering": Variant(gathered=False),
    "asyncpg_pool": Variant(own_queue=False),
    "asyncpg_pool_without_gathering": Variant(own_queue=False, gathered=False),
    "plain_fastapi_asyncpg_pool": Variant(bare_route=False, own_queue=False, gathered=False),
}


class PoolStore(AsyncpgStore):
    """The PostgreSQL store on ``asyncpg.create_pool`` (same sessions, same statements)
    instead of its own queue of connections."""

    def __init__(self, url: str, *, max_size: int, timeout: float) -> None:
        super().__init__(url, max_size=max_size, timeout=timeout)
        self._max_size = max_size
        self._pool: Any = None

    async def _run(self, query: Any, params: dict[str, Any]) -> list[Any]:
        import asyncpg

        if self._pool is None:
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=1,
                max_size=self._max_size,
                init=init_connection,
                server_settings={"default_transaction_read_only": "on"},
            )
        sql, names = self._compile(query)
        return await self._pool.fetch(sql, *(params[name] for name in names))

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()


class _OneQueryPerLookup:
    """Each single lookup sent at once in a query of its own (no gathering)."""

    async def latest(self, lookup: Any, since: dt.date | None = None) -> Any:
        return await self._latest_one(lookup, since)  # type: ignore[attr-defined]


def variant_app(variant: Variant, **app_options: Any) -> Any:
    """The API app as ``nuru-yield serve`` builds it, less the fast paths ``variant`` drops
    (``app_options`` go to ``create_app``)."""
    from nuru_yield.config import get_settings
    from nuru_yield.serving.app import create_app
    from nuru_yield.serving.routers import predict

    settings = get_settings()
    store_class: type[AsyncpgStore] = AsyncpgStore if variant.own_queue else PoolStore
    if not variant.gathered:
        store_class = type(f"{store_class.__name__}Alone", (_OneQueryPerLookup, store_class), {})
    store = store_class(
        settings.api_db_url,
        max_size=settings.api_db_pool_max,
        timeout=settings.api_db_timeout_seconds,
    )
    app = create_app(settings, store=store, **app_options)
    if not variant.bare_route:
        app.router.routes.remove(predict.FAST_ROUTE)
    return app


# --- result -------------------------------------------------------------------------------
@dataclass
class BenchResult:
    rows: int
    rps: float
    bare_rps: float
    ratio: float
    p50_ms: float
    p99_ms: float
    errors: int
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The issue's keys first, then the details."""
        summary = asdict(self)
        details = summary.pop("details")
        return {**summary, **details}


# --- data ---------------------------------------------------------------------------------
def prediction_batches(rows: int, batch_size: int = 100_000, seed: int = 7) -> Iterator[Any]:
    """``rows`` champion predictions of plots 1..rows for :data:`RUN_DATE` (Arrow batches)."""
    import numpy as np
    import pyarrow as pa

    from nuru_yield.db.loader import PREDICTION_ARROW_SCHEMA

    generator = np.random.default_rng(seed)
    counties = np.array(["Nakuru", "Kakamega", "Bungoma", "Trans Nzoia", "Machakos", "Kitui"])
    scored_at = dt.datetime.combine(RUN_DATE, dt.time(2), dt.UTC)
    drivers = [
        json.dumps(
            [
                {"feature": "precip_total", "value": 250.0 + i, "contribution": 80.0},
                {"feature": "ndvi_mean", "value": 0.55, "contribution": 40.0},
                {"feature": "gdd_sum", "value": 900.0, "contribution": -12.5},
            ]
        )
        for i in range(64)
    ]
    for start in range(0, rows, batch_size):
        n = min(batch_size, rows - start)
        yield_kg = generator.lognormal(np.log(1800), 0.35, n)
        columns = {
            "run_date": pa.array([RUN_DATE] * n, pa.date32()),
            "plot_id": pa.array(np.arange(start + 1, start + n + 1, dtype=np.int64)),
            "season_year": pa.array(np.full(n, RUN_DATE.year, np.int32)),
            "season": pa.array(["Long Rains"] * n),
            "model_name": pa.array([CHAMPION] * n),
            "model_version": pa.array(["1"] * n),
            "county": pa.array(counties[generator.integers(0, len(counties), n)]),
            "days_after_planting": pa.array(generator.integers(10, 120, n).astype(np.int32)),
            "predicted_yield_kg_per_ha": pa.array(yield_kg),
            "yield_lower": pa.array(yield_kg * 0.7),
            "yield_upper": pa.array(yield_kg * 1.35),
            "interval_level": pa.array(np.full(n, 0.8)),
            "top_drivers": pa.array([drivers[i % 64] for i in range(n)]),
            "run_id": pa.array(["bench"] * n),
            "scored_at": pa.array([scored_at] * n, pa.timestamp("us", tz="UTC")),
            "basis": pa.array(["model"] * n),
            "normal_kg_per_ha": pa.array(np.full(n, 1800.0)),
            "plot_normal_kg_per_ha": pa.array(np.full(n, 1850.0)),
        }
        yield pa.RecordBatch.from_pydict(columns, schema=PREDICTION_ARROW_SCHEMA)


def load_predictions(url: str, rows: int) -> float:
    """Create the schema and load the rows as one nightly partition; returns seconds."""
    from nuru_yield.db.engine import get_engine
    from nuru_yield.db.loader import replace_partition
    from nuru_yield.db.migrations import upgrade
    from nuru_yield.progress import track

    started = time.perf_counter()
    upgrade(url)
    batches = track(prediction_batches(rows), "loading predictions", total=-(-rows // 100_000))
    replace_partition(get_engine(url), RUN_DATE, batches)
    return time.perf_counter() - started


# --- services -----------------------------------------------------------------------------
@contextlib.contextmanager
def server(
    command: list[str], port: int, env: dict[str, str], log_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server process until its /health (or any HTTP answer) comes back."""
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=log_file, start_new_session=True
        )
    try:
        _wait_ready(process, port, log_path)
        yield process
    finally:
        stop_process(process)


def _wait_ready(process: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-1:]
            raise NuruError(f"server exited ({process.returncode}): {' '.join(tail)}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except urllib.error.HTTPError as error:
            if error.code == 404:  # the bare app has no /health: it answers, so it is up
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise NuruError(f"server on port {port} not ready after {READY_TIMEOUT_SECONDS:.0f}s")


def cpu_seconds(root: int | None) -> float | None:
    """CPU time (user + system) of process ``root`` and its descendants, from /proc (Linux);
    None where that cannot be read."""
    if root is None:
        return None
    try:
        stats = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                    # After the command: state, ppid, …; utime and stime are fields 14 and 15.
                    stats[int(entry.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    except OSError:
        return None
    tree, total, frontier = {root}, 0, [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, _) in stats.items():
            if ppid == parent and pid not in tree:
                tree.add(pid)
                frontier.append(pid)
    total = sum(stats[pid][1] for pid in tree if pid in stats)
    return total / os.sysconf("SC_CLK_TCK")


def _drive(config: dict[str, Any]) -> dict[str, Any]:
    """One load phase, in a separate process (its own core and event loop)."""
    result = subprocess.run(
        [sys.executable, "-m", "nuru_yield.dev.bench.api", json.dumps(config)],
        capture_output=True,
        text=True,
    )
    if result.returncode:
        raise NuruError(f"load generator failed: {result.stderr.strip().splitlines()[-1:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _costed(
    config: dict[str, Any], processes: dict[str, int | None]
) -> tuple[dict[str, Any], dict[str, float | None]]:
    """Drive one phase; also the CPU microseconds per request of each named process tree."""
    before = {name: cpu_seconds(pid) for name, pid in processes.items()}
    result = _drive(config)
    costs: dict[str, float | None] = {}
    for name, pid in processes.items():
        start, end = before[name], cpu_seconds(pid)
        done = result["all_requests"]
        ok = start is not None and end is not None and done
        costs[name] = round((end - start) / done * 1e6, 1) if ok else None
    return result, costs


def run_bench(
    rows: int, seconds: int, db_url: str | None = None, compare: bool = False
) -> BenchResult:
    """Load ``rows`` predictions, start the servers one at a time, drive the phases (and,
    with ``compare``, the same phases against every variant of :data:`VARIANTS`)."""
    from nuru_yield.dev.scratch import scratch_space

    with contextlib.ExitStack() as stack:
        admin_url, postmaster = db_url, None
        if admin_url is None:
            admin_url, postmaster = stack.enter_context(throwaway_postgres())
        url = stack.enter_context(scratch_database(admin_url))
        server_settings = {
            "API_KEY": BENCH_KEY,
            # On, and high enough that one load generator stays under it: its cost is counted.
            "API_RATE_LIMIT_PER_MINUTE": str(600_000_000),
            "API_RATE_LIMIT_BURST": str(1_000_000),
        }
        # The scratch registry holds no model: /health stays fast and MLflow is not imported
        # in the server.
        space = stack.enter_context(
            scratch_space("bench api", predictions_db_url=url, extra=server_settings)
        )
        root = space.home
        log.info("loading %d predictions", rows)
        load_seconds = load_predictions(url, rows)
        env = dict(os.environ)
        env.pop("LOG_FILE", None)
        phase = {"seconds": seconds, "warmup": WARMUP_SECONDS, "rows": rows, "key": BENCH_KEY}
        saturate = {**phase, "mode": "saturate", "connections": SATURATION_CONNECTIONS}
        paced = {**phase, "mode": "paced", "rate": PACED_RATE, "connections": PACED_CONNECTIONS}

        bare_port = free_port()
        bare = [sys.executable, "-m", "uvicorn", "nuru_yield.dev.bench.api:bare_app"]
        bare += ["--no-access-log", "--no-server-header", "--log-level", "warning", "--port"]
        log.info("bare endpoint, saturation, %ds", seconds)
        with server([*bare, str(bare_port)], bare_port, env, root / "bare.log") as bare_server:
            bare_result, bare_cpu = _costed(
                {**saturate, "port": bare_port}, {"bare": bare_server.pid}
            )

        measured = {}
        for name in VARIANTS if compare else ("current",):
            port = free_port()
            if name == "current":  # as a user starts it
                command = [str(Path(sys.executable).with_name("nuru-yield")), "serve", "--port"]
                if not Path(command[0]).exists():
                    command = [sys.executable, "-m", "nuru_yield", "serve", "--port"]
                command.append(str(port))
            else:
                variant = json.dumps(asdict(VARIANTS[name]))
                command = [sys.executable, "-m", "nuru_yield.dev.bench.api", "serve", variant]
                command.append(str(port))
            log.info(
                "%s: POST /predict, saturation then %d req/s, %ds each", name, PACED_RATE, seconds
            )
            with server(command, port, env, root / f"api-{name}.log") as api:
                result, cpu = _costed(
                    {**saturate, "port": port}, {"api": api.pid, "postgres": postmaster}
                )
                measured[name] = (result, cpu, _drive({**paced, "port": port}))

    api_result, api_cpu, paced_result = measured["current"]
    ratio = api_result["rps"] / bare_result["rps"] if bare_result["rps"] else 0.0
    variants = {
        name: {
            "rps": round(result["rps"], 1),
            "saturation_p99_ms": result["p99_ms"],
            "paced_p50_ms": paced_result["p50_ms"],
            "paced_p99_ms": paced_result["p99_ms"],
            "errors": result["errors"] + paced_result["errors"],
            **{f"{process}_cpu_us_per_request": us for process, us in cpu.items()},
        }
        for name, (result, cpu, paced_result) in measured.items()
    }
    return BenchResult(
        rows=rows,
        rps=round(api_result["rps"], 1),
        bare_rps=round(bare_result["rps"], 1),
        ratio=round(ratio, 3),
        p50_ms=paced_result["p50_ms"],
        p99_ms=paced_result["p99_ms"],
        errors=paced_result["errors"],
        details={
            "seconds": seconds,
            "paced_rate": PACED_RATE,
            "paced_achieved_rps": round(paced_result["rps"], 1),
            "saturation_connections": SATURATION_CONNECTIONS,
            "saturation_p50_ms": api_result["p50_ms"],
            "saturation_p99_ms": api_result["p99_ms"],
            "saturation_errors": api_result["errors"] + bare_result["errors"],
            "bare_p99_ms": bare_result["p99_ms"],
            # CPU per request of each server process during saturation (robust to a busy
            # machine, unlike throughput): what the ratio would follow on dedicated cores.
            **{f"{name}_cpu_us_per_request": us for name, us in {**bare_cpu, **api_cpu}.items()},
            **({"variants": variants} if compare else {}),
            "load_seconds": round(load_seconds, 1),
            "cores": os.cpu_count(),
            "note": "servers, PostgreSQL and the load generator share these cores",
        },
    )


# --- the load generator (runs as `python -m nuru_yield.dev.bench.api CONFIG_JSON`) ----------
class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request in flight (no pipelining)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[int] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).lower()
        marker = head.find(b"content-length:")
        if marker < 0:
            self._finish(ConnectionError("response without content-length"))
            return
        line_end = head.find(b"\r\n", marker)
        length = int(head[marker + 15 : line_end if line_end >= 0 else None])
        total = end + 4 + length
        if len(self.buffer) < total:
            return
        del self.buffer[:total]
        self._finish(int(head[9:12]))

    def _finish(self, outcome: int | BaseException) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is None or waiter.done():
            return
        if isinstance(outcome, BaseException):
            waiter.set_exception(outcome)
        else:
            waiter.set_result(outcome)

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish(exc or ConnectionError("connection closed"))

    async def request(self, payload: bytes) -> int:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(payload)
        return await asyncio.wait_for(self.waiter, REQUEST_TIMEOUT_SECONDS)


def _payloads(config: dict[str, Any], count: int = 20_000) -> list[bytes]:
    """Requests for random known plots (seeded, so runs are comparable)."""
    chooser = random.Random(1)
    payloads = []
    for _ in range(count):
        body = json.dumps({"plot_id": chooser.randint(1, config["rows"])}).encode()
        payloads.append(
            b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + f"X-API-Key: {config['key']}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
    return payloads


class _Recorder:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.errors = 0
        self.all_requests = 0  # warm-up included: what the servers' CPU time was spent on

    def summary(self, elapsed: float) -> dict[str, Any]:
        ordered = sorted(self.latencies)

        def quantile(q: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)

        return {
            "all_requests": self.all_requests,
            "requests": len(ordered),
            "errors": self.errors,
            "rps": len(ordered) / elapsed if elapsed > 0 else 0.0,
            "p50_ms": quantile(0.50) if ordered else None,
            "p99_ms": quantile(0.99) if ordered else None,
        }


async def _connect(port: int) -> _Connection:
    loop = asyncio.get_running_loop()
    _, connection = await loop.create_connection(_Connection, "127.0.0.1", port)
    return connection


async def _reconnect(connection: _Connection, port: int) -> _Connection:
    if connection.transport is not None:
        connection.transport.close()
    return await _connect(port)


async def _saturate(config: dict[str, Any], payloads: list[bytes]) -> dict[str, Any]:
    """Every connection sends its next request as soon as the previous answer is in."""
    recorder = _Recorder()
    measure_from = time.perf_counter() + config["warmup"]
    until = measure_from + config["seconds"]

    async def worker(offset: int) -> None:
        connection = await _connect(config["port"])
        index = offset
        while (started := time.perf_counter()) < until:
            index = (index + 1) % len(payloads)
            try:
                status = await connection.request(payloads[index])
            except (OSError, TimeoutError):
                status = 0
                connection = await _reconnect(connection, config["port"])
            recorder.all_requests += 1
            if started < measure_from:
                continue
            if status == 200:
                recorder.latencies.append(time.perf_counter() - started)
            else:
                recorder.errors += 1

    step = len(payloads) // config["connections"]
    await asyncio.gather(*(worker(i * step) for i in range(config["connections"])))
    return recorder.summary(time.perf_counter() - measure_from)


async def _paced(config: dict[str, Any], payloads: list[bytes]) -> dict[str, Any]:
    """Requests at fixed intended times; latency counts from the intended time (no
    coordinated omission: a request that waits for a free connection has waited)."""
    recorder = _Recorder()
    idle: asyncio.Queue[_Connection] = asyncio.Queue()
    for _ in range(config["connections"]):
        idle.put_nowait(await _connect(config["port"]))
    rate, total = config["rate"], int(config["rate"] * config["seconds"])
    pending: set[asyncio.Task[None]] = set()

    async def one(connection: _Connection, payload: bytes, intended: float) -> None:
        try:
            status = await connection.request(payload)
        except (OSError, TimeoutError):
            status = 0
            connection = await _reconnect(connection, config["port"])
        recorder.all_requests += 1
        if status == 200:
            recorder.latencies.append(time.perf_counter() - intended)
        else:
            recorder.errors += 1
        idle.put_nowait(connection)

    start = time.perf_counter() + 0.05
    for index in range(total):
        intended = start + index / rate
        delay = intended - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        connection = await idle.get()
        task = asyncio.create_task(one(connection, payloads[index % len(payloads)], intended))
        pending.add(task)
        task.add_done_callback(pending.discard)
    await asyncio.gather(*pending)
    return recorder.summary(time.perf_counter() - start)


async def _load(config: dict[str, Any]) -> dict[str, Any]:
    payloads = _payloads(config)
    if config["mode"] == "paced":
        return await _paced(config, payloads)
    return await _saturate(config, payloads)


def _main(argv: list[str]) -> None:
    if argv[1] == "serve":  # a variant of the API: `serve VARIANT_JSON PORT`
        from nuru_yield.serving.app import run

        run("127.0.0.1", int(argv[3]), app=variant_app(Variant(**json.loads(argv[2]))))
        return
    config = json.loads(argv[1])
    try:
        from uvloop import run
    except ImportError:  # uvloop is optional: the stdlib loop is slower but works
        run = asyncio.run
    print(json.dumps(run(_load(config))))


if __name__ == "__main__":
    _main(sys.argv)
