"""Bounds on what a client can make the server read: the size of a request body and the
time to send it (:class:`BodyLimitMiddleware`, ahead of every route, the bare ``/predict``
endpoint included), and the size of the request head and the time to send it
(:class:`HeadLimitProtocol`, uvicorn's HTTP protocol with a counter and a timer).

Without them one client holds the server: a 100 MB body is read and parsed (stalling the
event loop for every other client), and a connection that sends its request slowly, or
never finishes it, is kept forever.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from nuru_yield.serving.asgi import send_json
from nuru_yield.serving.deadlines import deadline
from nuru_yield.serving.schemas import ErrorBody

MAX_HEAD_BYTES = 64 * 1024  # request line and headers (nginx allows 4 x 8 KiB by default)
CLOSE = (b"connection", b"close")  # the rest of the request is not read: end the connection

BODY_RESPONSES: dict[int | str, dict[str, Any]] = {
    408: {"model": ErrorBody, "description": "The request body did not arrive in time."},
    413: {"model": ErrorBody, "description": "The request body is larger than the limit."},
}


def too_large_detail(max_bytes: int) -> str:
    return f"request body larger than the limit of {max_bytes:,} bytes"


class BodyLimitMiddleware:
    """413 for a body beyond ``max_bytes`` (at once when its Content-Length says so, else as
    soon as that much has arrived, before anything parses it); 408 when the body has not
    arrived ``timeout`` seconds after the app first asked for it. Both close the connection.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, timeout: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                if value.isdigit() and int(value) > self.max_bytes:
                    detail = too_large_detail(self.max_bytes)
                    await send_json(send, 413, {"detail": detail}, [CLOSE])
                    return
                break
        await self.app(scope, _LimitedBody(receive, self.max_bytes, self.timeout), send)


class _LimitedBody:
    """``receive`` with the body counted and timed, until its last part has arrived."""

    __slots__ = ("max_bytes", "read", "receive", "timeout", "until", "whole")

    def __init__(self, receive: Receive, max_bytes: int, timeout: float) -> None:
        self.receive = receive
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.until: float | None = None  # when the whole body must be in
        self.read = 0
        self.whole = False

    async def __call__(self) -> Message:
        if self.whole:  # e.g. waiting for the client to disconnect: nothing left to bound
            return await self.receive()
        now = asyncio.get_running_loop().time()
        if self.until is None:
            self.until = now + self.timeout
        try:
            async with deadline(self.until - now):
                message = await self.receive()
        except TimeoutError:
            detail = f"request body not received within {self.timeout:g}s"
            raise HTTPException(408, detail, {"Connection": "close"}) from None
        if message["type"] != "http.request":
            self.whole = True
            return message
        self.read += len(message.get("body", b""))
        if self.read > self.max_bytes:
            raise HTTPException(413, too_large_detail(self.max_bytes), {"Connection": "close"})
        self.whole = not message.get("more_body", False)
        return message


class HeadLimitProtocol(HttpToolsProtocol):
    """uvicorn's (httptools) HTTP/1.1 protocol with the request head bounded: a connection
    whose request line and headers have not all arrived ``head_timeout`` seconds after it
    opened (or after the first byte of a later request on it) is closed, and one whose head
    grows past :data:`MAX_HEAD_BYTES` is answered 400 and closed. Idle keep-alive
    connections are uvicorn's own ``timeout_keep_alive``."""

    def __init__(self, *args: Any, head_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.head_timeout = head_timeout
        self.head_timer: asyncio.TimerHandle | None = None
        self.head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head()

    def data_received(self, data: bytes) -> None:
        # Bytes that arrive while a head is incomplete, in pieces that do not end it, are
        # head (the piece that ends it may carry the body too: it is not counted).
        if self.head_timer is not None and b"\r\n\r\n" not in data:
            self.head_bytes += len(data)
            if self.head_bytes > MAX_HEAD_BYTES:
                self._stop_head()
                self.send_400_response(f"Request head larger than {MAX_HEAD_BYTES} bytes.")
                return
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._start_head()

    def on_headers_complete(self) -> None:
        self._stop_head()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head()
        super().connection_lost(exc)

    def _start_head(self) -> None:
        if self.head_timer is None:
            self.head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _stop_head(self) -> None:
        self.head_bytes = 0
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def _head_timed_out(self) -> None:
        self.head_timer = None
        if not self.transport.is_closing():
            self.transport.close()
