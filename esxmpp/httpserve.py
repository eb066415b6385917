"""The daemons' control-port HTTP: one request per connection, bounded in size and time.

Both daemons (the agent's ``[agent] control`` port and the route server's
``[control]`` port) serve read-only views and ``/metrics`` with
:func:`serve_one`::

    server = await asyncio.start_server(
        lambda r, w: httpserve.serve_one(r, w, route), host, port
    )

``route(request)`` gets a parsed :class:`Request` and returns a :class:`Response`.
What the client sends first is refused with a short text body and the
connection closed (``Connection: close`` always):

* a request line over ``MAX_REQUEST_LINE`` bytes: ``414 URI Too Long``;
* header lines over ``MAX_HEADER_BYTES`` bytes in all, or over ``MAX_HEADERS``
  of them: ``431 Request Header Fields Too Large``;
* a malformed request line (not ``METHOD /target HTTP/1.x``) or header line,
  or a request cut short by the client: ``400 Bad Request``;
* a request not complete within ``READ_TIMEOUT`` seconds: ``408 Request Timeout``;
* ``route`` raising: ``500 Internal Server Error`` (logged).

Request bodies are not read (the views take none). After the answer the server
reads and discards what the client still sends, a bounded amount for a bounded
time, before closing, so that the client sees the answer rather than a reset.
The parsing itself is the pure :func:`parse_request_line` and
:func:`parse_header_line`; :func:`serve_one` is the asyncio shell.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import re
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

log = logging.getLogger("esvpn.http")

MAX_REQUEST_LINE = 8192
MAX_HEADER_BYTES = 16384
MAX_HEADERS = 100
READ_TIMEOUT = 10.0
LINGER_BYTES = 1 << 16  # what is read and dropped after answering ...
LINGER_SECONDS = 1.0  # ... for at most this long
WRITE_TIMEOUT = 10.0

_METHOD = re.compile(r"[A-Z]{1,16}")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


class HttpError(Exception):
    """The request is refused with ``status`` and the short ``text``."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"{status} {text}")
        self.status = status
        self.text = text


@dataclass(frozen=True)
class Request:
    method: str
    target: str  # as sent: path and query
    path: str
    query: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    headers: tuple[tuple[str, str], ...] = ()  # (lower-case name, value), in order


@dataclass(frozen=True)
class Response:
    status: int
    body: str | bytes
    content_type: str = "text/plain; charset=utf-8"


Route = Callable[[Request], Awaitable[Response]]


def parse_request_line(line: bytes) -> Request:
    """``METHOD /target HTTP/1.x`` (CRLF or LF stripped) -> Request, or HttpError(400)."""
    if len(line) > MAX_REQUEST_LINE:
        raise HttpError(414, f"request line longer than {MAX_REQUEST_LINE} bytes")
    text = line.decode("latin-1")
    parts = text.split(" ")
    if len(parts) != 3:
        raise HttpError(400, "request line is not 'METHOD /target HTTP/1.x'")
    method, target, version = parts
    if not _METHOD.fullmatch(method):
        raise HttpError(400, "bad method")
    if not target.startswith("/") or not target.isprintable():
        raise HttpError(400, "bad request target")
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        raise HttpError(400, "not HTTP/1.0 or HTTP/1.1")
    url = urllib.parse.urlsplit(target)
    query = dict(urllib.parse.parse_qsl(url.query))
    return Request(method, target, url.path, MappingProxyType(query))


def parse_header_line(line: bytes) -> tuple[str, str]:
    """``Name: value`` (CRLF or LF stripped) -> (lower-case name, value), or HttpError(400)."""
    name, sep, value = line.decode("latin-1").partition(":")
    if not sep or not _TOKEN.fullmatch(name):
        raise HttpError(400, "malformed header line")
    return name.lower(), value.strip(" \t")


def response_bytes(status: int, content_type: str, body: bytes) -> bytes:
    try:
        reason = http.HTTPStatus(status).phrase
    except ValueError:
        reason = "Status"
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


async def _line(reader: asyncio.StreamReader, limit: int, too_long: HttpError) -> bytes:
    """One line without its CRLF/LF; ``too_long`` beyond ``limit`` bytes."""
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.LimitOverrunError:  # longer than the reader's own buffer limit
        raise too_long from None
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            raise EOFError from None
        raise HttpError(400, "request cut short") from None
    if len(line) > limit + 2:
        raise too_long
    return line.rstrip(b"\n").removesuffix(b"\r")


async def read_request(reader: asyncio.StreamReader) -> Request:
    """Read a request's line and headers (not its body); HttpError to refuse it,
    EOFError if the client closed before sending anything."""
    line = await _line(
        reader,
        MAX_REQUEST_LINE,
        HttpError(414, f"request line longer than {MAX_REQUEST_LINE} bytes"),
    )
    req = parse_request_line(line)
    headers: list[tuple[str, str]] = []
    size = 0
    too_long = HttpError(431, f"header lines longer than {MAX_HEADER_BYTES} bytes")
    while True:
        h = await _line(reader, MAX_HEADER_BYTES - size, too_long)
        if not h:
            break
        size += len(h) + 2
        if size > MAX_HEADER_BYTES:
            raise too_long
        if len(headers) >= MAX_HEADERS:
            raise HttpError(431, f"more than {MAX_HEADERS} header lines")
        headers.append(parse_header_line(h))
    return Request(req.method, req.target, req.path, req.query, tuple(headers))


async def serve_one(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, route: Route
) -> None:
    """Serve one request on a fresh connection, then close it. Never raises
    (but for cancellation)."""
    peer = writer.get_extra_info("peername")
    try:
        try:
            async with asyncio.timeout(READ_TIMEOUT):
                req = await read_request(reader)
        except TimeoutError:
            raise HttpError(408, f"request not complete within {READ_TIMEOUT:g} s") from None
        try:
            resp = await route(req)
        except Exception:
            log.exception("%s %s failed", req.method, req.target)
            resp = Response(500, "internal error\n")
    except HttpError as exc:
        log.info("%s: refused with %d: %s", peer, exc.status, exc.text)
        resp = Response(exc.status, exc.text + "\n")
    except (EOFError, ConnectionError, OSError):
        writer.close()
        return
    body = resp.body.encode() if isinstance(resp.body, str) else resp.body
    try:
        writer.write(response_bytes(resp.status, resp.content_type, body))
        async with asyncio.timeout(WRITE_TIMEOUT):
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
        # Drop what the client still sends (an oversized request's rest) before
        # closing: closing with unread input resets the connection, and the
        # client might then lose the answer.
        async with asyncio.timeout(LINGER_SECONDS):
            dropped = 0
            while dropped < LINGER_BYTES and (data := await reader.read(4096)):
                dropped += len(data)
    except (TimeoutError, ConnectionError, OSError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
