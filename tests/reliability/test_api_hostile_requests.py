"""Hostile and malformed requests against a real ``nuru-yield serve`` process: every one gets
a clear 4xx (never a 5xx, never a dropped connection without an answer where HTTP allows
one), no answer echoes the body, oversized bodies are refused before they are read, and
slow senders are cut off. The server logs no traceback through all of it."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from nuru_yield.names import MAX_PLOT_ID
from tests.integration.test_api_support import (
    API_KEY,
    LATEST_NIGHT,
    PredictionsDb,
    api_server,
    auth,
    known_rows,
)
from tests.reliability.test_api_support import HANG

LIMIT = 262_144  # API_MAX_BODY_BYTES's default, which these tests keep
SLOW = 1  # API_BODY_TIMEOUT_SECONDS and API_HEADER_TIMEOUT_SECONDS here (default 10)
MARKER = "ECHO-CANARY"  # planted in bad inputs: must never come back
JSON = "Content-Type: application/json"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    workdir = tmp_path_factory.mktemp("hostile")
    db = PredictionsDb(f"sqlite:///{workdir / 'predictions.db'}")
    db.load(known_rows([LATEST_NIGHT], old_season=False))
    with api_server(
        workdir,
        PREDICTIONS_DB_URL=db.url,
        API_KEY=API_KEY,
        API_RATE_LIMIT_PER_MINUTE=0,
        API_BODY_TIMEOUT_SECONDS=SLOW,
        API_HEADER_TIMEOUT_SECONDS=SLOW,
    ) as running:
        yield running
    db.engine.dispose()


# --- raw HTTP, for what a well-behaved client library will not send ------------------------
def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=HANG)
    sock.settimeout(HANG)  # a hang detector: every answer here comes within a second or two
    return sock


def _answer(sock: socket.socket) -> tuple[int | None, bytes]:
    """Read until the server closes the connection: the status (None: closed without an
    answer) and everything it sent."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    status = int(received.split()[1]) if received.startswith(b"HTTP/1.1 ") else None
    return status, received


def _head(method: str, path: str, *headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"X-API-Key: {API_KEY}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.mark.parametrize(
    ("path", "size"),
    [("/predict", 100 * 1024 * 1024), ("/predict/batch", 15_000_000)],  # a 1M-item batch
    ids=["100MB-predict", "1M-item-batch"],
)
def test_a_body_declared_too_large_is_413_before_it_is_sent(server, path: str, size: int):
    with _connect(server.port) as sock:
        sock.sendall(_head("POST", path, JSON, f"Content-Length: {size}"))
        status, answer = _answer(sock)  # the server answers, and closes, without the body
    assert status == 413, answer
    assert b"connection: close" in answer.lower()
    assert f"limit of {LIMIT:,} bytes".encode() in answer


def test_a_chunked_body_is_cut_off_at_the_limit(server):
    with _connect(server.port) as sock:
        sock.sendall(_head("POST", "/predict/batch", JSON, "Transfer-Encoding: chunked"))
        piece = b'{"plots": [' + b" " * (64 * 1024 - 11)
        for part in (piece, *[b" " * len(piece)] * 3, b" " * 100):  # the limit, then 100 bytes
            sock.sendall(b"%x\r\n%s\r\n" % (len(part), part))
        status, answer = _answer(sock)  # no end chunk was sent: the rest is never read
    assert status == 413, answer
    assert b"connection: close" in answer.lower()


@pytest.mark.parametrize("path", ["/predict", "/predict/batch"])
def test_a_body_without_content_type_is_415_unread_and_the_connection_ends(server, path: str):
    with _connect(server.port) as sock:
        sock.sendall(_head("POST", path, "Transfer-Encoding: chunked") + b'5\r\n{"plo\r\n')
        status, answer = _answer(sock)  # the body never ends: the server does not wait for it
    assert status == 415, answer
    assert b"connection: close" in answer.lower()
    assert b"Content-Type must be application/json" in answer


def test_a_body_that_does_not_arrive_in_time_is_408(server):
    started = time.monotonic()
    with _connect(server.port) as sock:
        sock.sendall(_head("POST", "/predict", JSON, "Content-Length: 100") + b'{"plot_id":')
        status, answer = _answer(sock)
    assert status == 408, answer
    assert b"not received within 1s" in answer
    assert time.monotonic() - started < HANG


@pytest.mark.parametrize(
    "sent",
    [b"", b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le"],
    ids=["nothing", "half-a-head"],
)
def test_a_connection_that_does_not_send_its_head_in_time_is_closed(server, sent: bytes):
    with _connect(server.port) as sock:
        sock.sendall(sent)
        status, answer = _answer(sock)
    assert (status, answer) == (None, b"")


def test_a_head_beyond_64kib_is_400(server):
    with _connect(server.port) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * 70_000)
        status, answer = _answer(sock)
    assert status == 400, answer


# --- malformed and hostile requests over HTTP ---------------------------------------------
def _bodies() -> list[tuple[str, str, bytes | str]]:
    """(path, what, body) of bad bodies for both POST routes."""
    plot = '{"plot_id": 1, "latitude": %s}'
    numbers = ["NaN", "-NaN", "Infinity", "-Infinity", "1e999", "-1e999"]
    bad: list[tuple[str, bytes | str]] = [
        ("invalid UTF-8", b'{"plot_id": 1, "season": "\xff\xfe' + MARKER.encode() + b'"}'),
        ("overlong UTF-8", b'{"plot_id": 1, "season": "\xc0\xaf"}'),
        ("latin-1 body", '{"plot_id": 1, "season": "Mvua ndéfu"}'.encode("latin-1")),
        ("lone surrogate", '{"plot_id": 1, "season": "\\ud800' + MARKER + '"}'),
        ("UTF-8 BOM", b'\xef\xbb\xbf{"plot_id": 1}'),
        ("UTF-16", '{"plot_id": 1}'.encode("utf-16")),
        ("NUL bytes", b'{"plot_id": 1\x00}'),
        *((f"latitude {n}", plot % n) for n in numbers),
        ("plot_id NaN", '{"plot_id": NaN}'),
        ("plot_id 1e999", '{"plot_id": 1e999}'),
        ("plot_id 10^30", '{"plot_id": 1000000000000000000000000000000}'),
        ("plot_id -2^63", '{"plot_id": -9223372036854775808}'),
        ("plot_id 2^64", '{"plot_id": 18446744073709551616}'),
        ("plot_id 4,000 digits", '{"plot_id": ' + "9" * 4000 + "}"),
        ("latitude 4,000 digits", plot % ("9" * 4000)),
        ("plot_id 1.5", '{"plot_id": 1.5}'),
        ("plot_id string", '{"plot_id": "' + MARKER + '"}'),
        ("plot_id long string", '{"plot_id": "' + MARKER * 1000 + '"}'),
        ("plot_id bool", '{"plot_id": true}'),
        ("plot_id list", '{"plot_id": [1, 2]}'),
        ("plot_id object", '{"plot_id": {"$gt": 0}}'),
        ("plot_id null", '{"plot_id": null}'),
        ("SQL in season", '{"plot_id": 1, "season": "\'; DROP TABLE predictions; --"}'),
        ("season 100 KB", '{"plot_id": 1, "season": "' + "x" * 100_000 + '"}'),
        ("bad date", '{"plot_id": 1, "planting_date": "2025-02-30"}'),
        ("year 0", '{"plot_id": 1, "planting_date": "0000-01-01"}'),
        ("date overflow", '{"plot_id": 1, "planting_date": "99999-01-01"}'),
        ("duplicate keys", '{"plot_id": 1, "plot_id": "' + MARKER + '"}'),
        ("nested 10k deep", "[" * 10_000 + "]" * 10_000),
        ("nested objects", '{"a":' * 5_000 + "1" + "}" * 5_000),
        ("top-level array", "[1, 2, 3]"),
        ("top-level string", '"' + MARKER + '"'),
        ("top-level number", "1"),
        ("top-level null", "null"),
        ("empty", ""),
        ("whitespace", "   \n\t "),
        ("truncated", '{"plot_id": 1'),
        ("trailing garbage", '{"plot_id": 1} ' + MARKER),
        ("comments", '{"plot_id": 1 /* ' + MARKER + " */}"),
        ("single quotes", "{'plot_id': 1}"),
        ("model_name unknown", '{"plot_id": 1, "model_name": "' + MARKER + '"}'),
    ]
    batch: list[tuple[str, bytes | str]] = [
        ("1,001 plots", json.dumps({"plots": [{"plot_id": 1}] * 1001})),
        ("1,000 bad plots", json.dumps({"plots": [{"plot_id": MARKER}] * 1000})),
        ("no plots", '{"plots": []}'),
        ("plots not a list", '{"plots": {"plot_id": 1}}'),
        ("plot NaN latitude", '{"plots": [{"plot_id": 1, "latitude": NaN}]}'),
        ("plot 1e999", '{"plots": [{"plot_id": 1e999}]}'),
        ("plots of strings", json.dumps({"plots": [MARKER] * 50})),
    ]
    return [
        *((path, what, body) for path in ("/predict", "/predict/batch") for what, body in bad),
        *(("/predict/batch", what, body) for what, body in batch),
    ]


BODIES = _bodies()
QUERIES = [
    ("GET", "/predictions/-1", {}),
    ("GET", "/predictions/99999999999999999999999999", {}),
    ("GET", "/predictions/1.5", {}),
    ("GET", "/predictions/%ff%fe", {}),
    ("GET", "/predictions/" + "9" * 5000, {}),
    ("GET", "/predictions/" + "9" * 4000, {}),
    ("GET", "/predictions/1", {"params": {"limit": "9" * 4000}}),
    ("GET", "/predictions/1", {"params": {"as_of": "2025-02-30"}}),
    ("GET", "/predictions/1", {"params": {"as_of": "0000-01-01"}}),
    ("GET", "/predictions/1", {"params": {"as_of": MARKER}}),
    ("GET", "/predictions/1", {"params": {"limit": "NaN"}}),
    ("GET", "/predictions/1", {"params": {"limit": "1e999"}}),
    ("GET", "/predictions/1", {"params": {"limit": 0}}),
    ("GET", "/predictions/1", {"params": {"offset": -1}}),
    ("GET", "/predictions/1", {"params": {"offset": 10**30}}),
    ("GET", "/predictions/1", {"params": {"season_year": 10**30}}),
    ("GET", "/predictions/1", {"params": {"season": "\u0000" + MARKER}}),
    ("GET", "/predictions/1", {"params": {"model_name": "x" * 10_000}}),
    ("PUT", "/predict", {"json": {"plot_id": 1}}),
    ("DELETE", "/predictions/1", {}),
    ("PATCH", "/models/reload", {}),
    ("GET", "/predict", {}),
    ("POST", "/health", {}),
    ("GET", "/no/such/path/" + MARKER, {}),
    ("GET", "/../../etc/passwd", {}),
    ("POST", "/predict", {"content": b'{"plot_id": 1}', "headers": {"Content-Type": "text/plain"}}),
    ("POST", "/predict", {"data": {"plot_id": "1"}}),
    ("POST", "/predict", {"content": b'{"plot_id": 1}'}),  # no Content-Type
    ("POST", "/predict/batch", {"content": b'{"plots": [{"plot_id": 1}]}'}),
    ("POST", "/predict", {"files": {"plot_id": ("x.json", b"1")}}),
    ("POST", "/predict", {"json": {"plot_id": 1}, "headers": {"X-API-Key": "x" * 8000}}),
    ("POST", "/predict", {"json": {"plot_id": 1}, "headers": {"X-API-Key": ""}}),
]


def _check_refused(response: httpx.Response, what: str) -> None:
    assert 400 <= response.status_code < 500, (what, response.status_code, response.text[:500])
    assert MARKER not in response.text, what
    assert "9" * 30 not in response.text, what  # nor a huge number
    assert len(response.content) < 4096, (what, len(response.content))  # nothing echoed


def test_bad_bodies_and_queries_are_4xx_and_never_echoed(server):
    tried = 0
    with httpx.Client(base_url=server.base_url, headers=auth(), timeout=HANG) as client:
        for path, what, body in BODIES:
            headers = {"Content-Type": "application/json"}
            _check_refused(client.post(path, content=body, headers=headers), f"{path}: {what}")
            tried += 1
        for method, path, options in QUERIES:
            headers = {**auth(), **options.pop("headers", {})}
            response = client.request(method, path, headers=headers, **options)
            _check_refused(response, f"{method} {path}")
            tried += 1
        assert client.post("/predict", json={"plot_id": 1}).status_code == 200  # still serving
    print(f"\nhostile requests: {tried} bad inputs, every one 4xx, none echoed")
    assert tried > 100


def test_the_largest_documented_batch_fits_the_limit(server):
    item = {
        "plot_id": MAX_PLOT_ID,
        "latitude": -0.4991271234567891,
        "longitude": 37.61225312345678,
        "planting_date": "2025-03-20",
        "season": "Short Rains",
        "altitude": 1252.0812345678912,
    }
    body = json.dumps({"plots": [item] * 1000, "model_name": "challenger"}, indent=2).encode()
    assert len(body) < LIMIT
    response = httpx.post(
        f"{server.base_url}/predict/batch",
        content=body,
        headers={**auth(), "Content-Type": "application/json"},
        timeout=HANG,
    )
    assert response.status_code == 200, response.text[:300]
    assert response.json()["not_found"] == 1000


def test_the_hostile_server_logged_no_traceback(server):
    errors = Path(server.stderr).read_text(errors="replace")
    assert "Traceback" not in errors, errors[-3000:]
