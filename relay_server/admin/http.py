"""A small HTTP/1.1 server on asyncio streams: one request per connection, bounded sizes and times.

Enough for the fleet page (GET, POST with a form or JSON body, server-sent events) and nothing more: no chunked
bodies, no keep-alive, no pipelining. The page is for a few technicians, not for the public.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from common.logs import event

log = logging.getLogger("relay.fleet")

MAX_LINE = 8192
MAX_HEADERS = 64
MAX_BODY = 64 * 1024
READ_TIMEOUT = 10.0
MAX_CONNECTIONS = 64  # open at once (live pages hold one each); more are answered 503 at once

SECURITY_HEADERS = (
    (
        "Content-Security-Policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "same-origin"),  # "no-referrer" would make Chromium send "Origin: null"
    ("Cache-Control", "no-store"),
)


class BadRequest(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names; a repeated header keeps its last value
    body: bytes
    peer: str

    def cookie(self, name: str) -> str | None:
        for part in self.headers.get("cookie", "").split(";"):
            key, _, value = part.strip().partition("=")
            if key == name:
                return value
        return None

    def form(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(self.body.decode("utf-8", "replace")).items()}

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError as err:
            raise BadRequest(HTTPStatus.BAD_REQUEST, f"body is not JSON: {err}") from err


@dataclass
class Response:
    status: HTTPStatus = HTTPStatus.OK
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)
    stream: AsyncIterator[bytes] | None = None  # server-sent events: chunks written as they come

    @classmethod
    def json(cls, data: Any, status: HTTPStatus = HTTPStatus.OK) -> Response:
        return cls(status, json.dumps(data, ensure_ascii=False).encode(), "application/json; charset=utf-8")

    @classmethod
    def redirect(cls, location: str, headers: list[tuple[str, str]] | None = None) -> Response:
        return cls(HTTPStatus.SEE_OTHER, b"", headers=[("Location", location), *(headers or [])])

    @classmethod
    def text(cls, status: HTTPStatus, message: str) -> Response:
        return cls(status, (message + "\n").encode())


Handler = Callable[[Request], Awaitable[Response]]


async def read_request(reader: asyncio.StreamReader, peer: str) -> Request:
    """Parse one request from ``reader``.

    Raises:
        BadRequest: malformed, too large, or a body without Content-Length.
    """
    line = await reader.readuntil(b"\r\n")
    if len(line) > MAX_LINE:
        raise BadRequest(HTTPStatus.REQUEST_URI_TOO_LONG, "request line too long")
    try:
        method, target, version = line.decode("ascii").rstrip("\r\n").split(" ")
    except (UnicodeDecodeError, ValueError) as err:
        raise BadRequest(HTTPStatus.BAD_REQUEST, "malformed request line") from err
    if not version.startswith("HTTP/1."):
        raise BadRequest(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, "HTTP/1.x only")
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADERS + 1):
        raw = await reader.readuntil(b"\r\n")
        if raw == b"\r\n":
            break
        name, sep, value = raw.decode("latin-1").partition(":")
        if not sep:
            raise BadRequest(HTTPStatus.BAD_REQUEST, "malformed header")
        headers[name.strip().lower()] = value.strip()
    else:
        raise BadRequest(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "too many headers")
    if "transfer-encoding" in headers:
        raise BadRequest(HTTPStatus.NOT_IMPLEMENTED, "chunked bodies are not accepted")
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError as err:
        raise BadRequest(HTTPStatus.BAD_REQUEST, "bad Content-Length") from err
    if length < 0 or length > MAX_BODY:
        raise BadRequest(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body over {MAX_BODY} bytes")
    body = await reader.readexactly(length) if length else b""
    url = urlsplit(target)
    query = {k: v[-1] for k, v in parse_qs(url.query).items()}
    return Request(method.upper(), unquote(url.path), query, headers, body, peer)


def _head(resp: Response) -> bytes:
    lines = [
        f"HTTP/1.1 {resp.status.value} {resp.status.phrase}",
        f"Content-Type: {resp.content_type}",
        "Connection: close",
    ]
    if resp.stream is None:
        lines.append(f"Content-Length: {len(resp.body)}")
    lines += [f"{k}: {v}" for k, v in (*SECURITY_HEADERS, *resp.headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class HttpServer:
    """Serves ``handler`` on ``host:port`` (0: a free port), with TLS when ``ssl_ctx`` is given."""

    def __init__(self, handler: Handler, ssl_ctx: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.ssl = ssl_ctx
        self.server: asyncio.Server | None = None
        self.host, self.port = "", 0
        self._conns: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int) -> HttpServer:
        self.server = await asyncio.start_server(self._serve, host, port, ssl=self.ssl, limit=MAX_LINE)
        self.host, self.port = next(iter(self.server.sockets)).getsockname()[:2]
        return self

    async def close(self) -> None:
        if self.server is None:
            return
        self.server.close()
        for task in list(self._conns):
            task.cancel()
        if self._conns:
            await asyncio.wait(self._conns, timeout=3)
        await self.server.wait_closed()
        self.server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        peername = writer.get_extra_info("peername")
        peer = str(peername[0]) if peername else "?"
        try:
            if len(self._conns) > MAX_CONNECTIONS:
                busy = Response.text(HTTPStatus.SERVICE_UNAVAILABLE, "too many connections; try again")
                writer.write(_head(busy) + busy.body)
                await writer.drain()
                return
            try:
                request = await asyncio.wait_for(read_request(reader, peer), READ_TIMEOUT)
                resp = await self.handler(request)
            except BadRequest as err:
                resp = Response.text(err.status, str(err))
            except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
                return
            except Exception:
                event(log, "fleet_request_failed", logging.ERROR, exc_info=True, peer=peer)
                resp = Response.text(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error (see the relay's log)")
            writer.write(_head(resp) + resp.body)
            if resp.stream is not None:
                async for chunk in resp.stream:
                    writer.write(chunk)
                    await writer.drain()
            await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._conns.discard(task)
            with contextlib.suppress(Exception):
                writer.close()
            if isinstance(peername, tuple):
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(writer.wait_closed(), 1)
