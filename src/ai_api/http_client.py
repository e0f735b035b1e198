"""The HTTP/1.1 client ai-api calls providers with: keep-alive connections per origin on asyncio
transports, responses parsed by llhttp (httptools).

Why its own: aiohttp's client hands the chunks of a chunked body to its reader one at a time, and
a provider's stream sends one chunk per event, so reading a streamed answer cost more than
everything else the gateway does for it (docs/benchmarks.md). Here whatever one socket read
brought reaches the reader as one piece. The client does what calls to providers need and no
more: POST with the body in memory; http and https (the system's CAs, HTTP/1.1 by ALPN);
Content-Length, chunked and close-delimited bodies; gzip and deflate; keep-alive with an idle
expiry; one more try, on a new connection, when a kept one turns out closed before it answered.

Failures are builtin exceptions, which callers map to their own: `TimeoutError` (no connection
within the connect timeout), `OSError` (could not connect, or the connection was lost), and
`BadResponse` (the bytes are not an HTTP/1.1 response).
"""

from __future__ import annotations

import asyncio
import re
import ssl
import zlib
from collections.abc import Mapping
from typing import cast
from urllib.parse import urlsplit

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

_HIGH_WATER = 1 << 18
"""Bytes held for a reader that does not keep up before the socket stops being read."""

_DEFAULT_PORTS = {"http": 80, "https": 443}
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_UNSAFE = re.compile(r"[\x00-\x20\x7f]")
_UNSAFE_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_INFLATE_LIMIT = 1 << 22
"""Most bytes one read of a compressed body may expand to (a bound on a decompression bomb)."""
_OWN_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})


class BadResponse(Exception):
    """The upstream's bytes are not an HTTP/1.1 response this client can read."""


class _Stale(ConnectionError):
    """A kept connection was closed by the server before it answered: try a new one.

    Nearly always the server had closed it while it waited, before the request arrived (the
    race every keep-alive client meets). If it had read the request and then closed without a
    byte of answer, the provider sees the request twice; one more try, once, is the trade
    urllib3 and browsers make too.
    """


class HTTPClient:
    """Keep-alive connections per origin, shared by the endpoints made from one client.

    `connect_timeout` bounds connecting (and the TLS handshake); `keepalive` is how long an idle
    connection may wait for its next request. Close the client to close its connections.
    """

    def __init__(
        self,
        *,
        connect_timeout: float | None = None,
        keepalive: float = 15.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.connect_timeout = connect_timeout
        self.keepalive = keepalive
        self._ssl = ssl_context
        self._alpn = False
        self._origins: dict[tuple[str, str, int], _Origin] = {}
        self.closed = False

    def endpoint(self, url: str, headers: Mapping[str, str]) -> Endpoint:
        """POSTs to `url` with `headers` (the request head is built once, here)."""
        parts = urlsplit(url)
        if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
            raise ValueError("not an http(s) URL with a host")
        if parts.username is not None or parts.password is not None:
            raise ValueError("credentials in a URL are not sent: use a header")
        if _UNSAFE.search(url):
            raise ValueError("the URL holds spaces or control characters")
        port = parts.port or _DEFAULT_PORTS[parts.scheme]
        key = (parts.scheme, parts.hostname, port)
        origin = self._origins.get(key)
        if origin is None:
            origin = self._origins[key] = _Origin(
                self, parts.scheme == "https", parts.hostname, port
            )
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname  # IPv6 literal
        if port != _DEFAULT_PORTS[parts.scheme]:
            host = f"{host}:{port}"
        return Endpoint(origin, target, host, headers)

    def tls(self) -> ssl.SSLContext:
        """The TLS context for https origins: the one given, else the system's (made once);
        it offers HTTP/1.1 only, so that no server picks HTTP/2."""
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        if not self._alpn:
            self._ssl.set_alpn_protocols(["http/1.1"])
            self._alpn = True
        return self._ssl

    async def close(self) -> None:
        """Close the idle connections; those in use close when their response is released."""
        self.closed = True
        for origin in self._origins.values():
            while origin.idle:
                origin.idle.pop().close()


class _Origin:
    """One scheme, host and port: how to connect there, and its idle connections."""

    __slots__ = ("client", "host", "idle", "port", "tls")

    def __init__(self, client: HTTPClient, tls: bool, host: str, port: int) -> None:
        self.client = client
        self.tls = tls
        self.host = host
        self.port = port
        self.idle: list[_Connection] = []  # the most recently used last

    def take(self, now: float) -> _Connection | None:
        """The most recently used idle connection still fit to use, if any."""
        idle = self.idle
        while idle:
            connection = idle.pop()
            if connection.fit() and now - connection.idle_since < self.client.keepalive:
                return connection
            connection.close()
        return None

    async def connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        tls = self.client.tls() if self.tls else None
        try:
            async with asyncio.timeout(self.client.connect_timeout):
                _, connection = await loop.create_connection(
                    lambda: _Connection(self, loop),
                    self.host,
                    self.port,
                    ssl=tls,
                    server_hostname=self.host if tls else None,
                )
        except TimeoutError as exc:
            raise TimeoutError("no connection within the connect timeout") from exc
        return connection


class Endpoint:
    """One URL and its fixed headers, ready to send bodies to."""

    __slots__ = ("_head", "_origin")

    def __init__(self, origin: _Origin, target: str, host: str, headers: Mapping[str, str]) -> None:
        lines = [f"POST {target} HTTP/1.1", f"Host: {host}"]
        given = {name.lower() for name in headers}
        for name, value in headers.items():
            if not _TOKEN.fullmatch(name) or _UNSAFE_VALUE.search(value):
                raise ValueError(f"header {name!r} holds a character HTTP does not allow there")
            if name.lower() in _OWN_HEADERS:
                raise ValueError(f"header {name!r} is the client's to send")
            lines.append(f"{name}: {value}")
        if "user-agent" not in given:
            lines.append("User-Agent: ai-api")
        if "accept-encoding" not in given:
            lines.append("Accept-Encoding: identity")
        self._head = ("\r\n".join(lines) + "\r\nContent-Length: ").encode()
        self._origin = origin

    async def post(self, body: bytes) -> Response:
        """Send `body`; the response once its status and headers are in."""
        request = b"%s%d\r\n\r\n%s" % (self._head, len(body), body)
        origin = self._origin
        connection = origin.take(asyncio.get_running_loop().time())
        if connection is not None:
            try:
                return await connection.exchange(request)
            except _Stale:
                pass  # the server had closed it: once more, on a new connection
        connection = await origin.connect()
        return await connection.exchange(request)


class _Connection(asyncio.Protocol):
    """One connection: one exchange at a time, fed to llhttp as bytes arrive."""

    def __init__(self, origin: _Origin, loop: asyncio.AbstractEventLoop) -> None:
        self.origin = origin
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.response: Response | None = None
        self.pieces: list[bytes] = []
        self.names: list[bytes] = []
        self.values: list[bytes] = []
        self.lost = False
        self.used = False
        self.idle_since = 0.0
        self.linger: asyncio.TimerHandle | None = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.linger is not None:
            self.linger.cancel()
            self.linger = None
        response = self.response
        if response is not None:
            response._lost(exc)
        elif self in self.origin.idle:
            self.origin.idle.remove(self)

    def data_received(self, data: bytes) -> None:
        response = self.response
        if response is None or response.complete:  # bytes nobody asked for
            self.close()
            return
        response.answered = True
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            # After a whole response, only more bytes nobody asked for: the response stands,
            # the connection is not trusted with another.
            response.keep = False
            if not response.complete:
                self.pieces.clear()
                response._fail(BadResponse(f"not an HTTP/1.1 response: {exc}"))
                self.close()
                return
            self.close()
        if self.pieces:
            response._deliver(self.pieces)
        if response.complete:
            if response.lingering:
                self.rest()
            else:
                response._ended()

    # llhttp callbacks

    def on_message_begin(self) -> None:
        response = self.response
        if response is not None and response.complete:
            raise BadResponse("a second response nobody asked for")  # stops the parser

    def on_header(self, name: bytes, value: bytes) -> None:
        response = self.response
        if response is not None and response.status == 0:  # not the trailers
            self.names.append(name)
            self.values.append(value)

    def on_headers_complete(self) -> None:
        response = self.response
        assert response is not None
        status = self.parser.get_status_code()
        names, values = self.names, self.values
        self.names, self.values = [], []
        if 100 <= status < 200:  # an interim response: the real one follows
            return
        response._start(status, names, values, self.parser.should_keep_alive())

    def on_body(self, body: bytes) -> None:
        self.pieces.append(body)

    def on_message_complete(self) -> None:
        response = self.response
        if response is not None and response.status:
            response.complete = True
            response.keep = response.keep and self.parser.should_keep_alive()

    # the exchange

    async def exchange(self, request: bytes) -> Response:
        transport = self.transport
        assert transport is not None
        reused, self.used = self.used, True
        if not self.fit():
            self.close()
            raise _Stale() if reused else ConnectionResetError("the connection closed at once")
        response = self.response = Response(self, reused)
        transport.write(request)
        try:
            await response._started
        except BaseException:
            self.close()
            raise
        return response

    def rest(self) -> None:
        """The exchange is over: back to the pool if the connection can carry another."""
        response = self.response
        self.response = None
        if self.linger is not None:
            self.linger.cancel()
            self.linger = None
        if (
            response is None
            or not (response.complete and response.keep)
            or not self.fit()
            or self.origin.client.closed
        ):
            self.close()
            return
        if response._paused:  # a body that came whole faster than it was read
            assert self.transport is not None
            self.transport.resume_reading()
        self.idle_since = self.loop.time()
        self.origin.idle.append(self)

    def wait_for_end(self, wait: float | None) -> None:
        """Keep reading (and dropping) the body until it ends, at most `wait` seconds (a
        minute if None), then rest; a body that has not ended by then loses its connection."""
        self.linger = self.loop.call_later(60.0 if wait is None else wait, self.close)

    def fit(self) -> bool:
        """Whether the connection is still open at this end (the other may have closed it
        without this end knowing yet: see `_Stale`)."""
        return not self.lost and self.transport is not None and not self.transport.is_closing()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class Response:
    """One response: status and headers at once, the body as it arrives."""

    __slots__ = (
        "_buffer",
        "_connection",
        "_error",
        "_inflate",
        "_paused",
        "_size",
        "_started",
        "_until_close",
        "_waiter",
        "answered",
        "complete",
        "headers",
        "keep",
        "lingering",
        "reused",
        "status",
    )

    def __init__(self, connection: _Connection, reused: bool) -> None:
        self._connection: _Connection | None = connection
        self._started: asyncio.Future[None] = connection.loop.create_future()
        self._buffer: list[bytes] = []
        self._size = 0
        self._waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self._inflate: zlib._Decompress | None = None
        self._paused = False
        self._until_close = False
        self.reused = reused
        self.answered = False  # a byte of the response arrived
        self.status = 0
        self.headers: CIMultiDictProxy[str] = _NO_HEADERS
        self.keep = True
        self.complete = False
        self.lingering = False

    async def readany(self) -> bytes:
        """What has arrived of the body since the last read, waiting for some; b"" at its end."""
        buffer = self._buffer
        while not buffer:
            if self._error is not None:
                raise self._error
            if self.complete or self._connection is None:
                return b""
            self._waiter = waiter = self._started.get_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        data = buffer[0] if len(buffer) == 1 else b"".join(buffer)
        buffer.clear()
        self._size = 0
        if self._paused:
            self._paused = False
            connection = self._connection
            if connection is not None and connection.transport is not None:
                connection.transport.resume_reading()
        return data

    async def read(self, limit: int = 1 << 20) -> bytes:
        """The whole body (its first `limit` bytes if longer: the rest is not read)."""
        parts: list[bytes] = []
        size = 0
        while size < limit and (data := await self.readany()):
            parts.append(data)
            size += len(data)
        return b"".join(parts)[:limit]

    def is_eof(self) -> bool:
        """Whether the whole body has arrived and been read."""
        return self.complete and not self._buffer

    def fail(self, exc: BaseException) -> None:
        """End the exchange with `exc`: the pending and later reads raise it; the connection,
        half-read, is closed."""
        self._fail(exc)
        self.close()

    def release(self) -> None:
        """Done with the response: its connection goes back to the pool if the body ended,
        else it is closed."""
        connection = self._connection
        if connection is not None:
            self._connection = None
            connection.rest()

    def release_after_end(self, wait: float | None) -> None:
        """Done with the response, whose body is about to end (a stream past its last event):
        the connection reads the rest, at most `wait` seconds, and goes back to the pool."""
        connection = self._connection
        if connection is None:
            return
        if self.complete:
            self.release()
            return
        self._connection = None
        self.lingering = True
        self._buffer.clear()
        if self._paused:
            self._paused = False
            if connection.transport is not None:
                connection.transport.resume_reading()
        connection.wait_for_end(wait)

    def close(self) -> None:
        """Done with the response, dropping its connection whatever it still holds."""
        connection = self._connection
        if connection is not None:
            self._connection = None
            connection.response = None
            connection.close()

    # fed by the connection

    def _start(self, status: int, names: list[bytes], values: list[bytes], keep: bool) -> None:
        headers: CIMultiDict[str] = CIMultiDict(
            zip(
                [n.decode("latin-1") for n in names],
                [v.decode("latin-1") for v in values],
                strict=True,
            )
        )
        self.status = status
        self.headers = CIMultiDictProxy(headers)
        self.keep = keep
        encoding = headers.get("content-encoding", "identity").strip().lower()
        if encoding in ("gzip", "x-gzip", "deflate"):
            self._inflate = zlib.decompressobj(wbits=47)  # gzip or zlib, told by the header
        elif encoding != "identity":
            self._fail(BadResponse(f"content-encoding {encoding!r} is not supported"))
            return
        self._until_close = (
            "content-length" not in headers
            and "chunked" not in headers.get("transfer-encoding", "").lower()
            and status not in (204, 304)
        )
        if not self._started.done():
            self._started.set_result(None)

    def _deliver(self, pieces: list[bytes]) -> None:
        data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        pieces.clear()
        if self.lingering:
            return
        if self._inflate is not None:
            data = self._inflated(data)
            if not data:
                return
        self._buffer.append(data)
        self._size += len(data)
        if self._size > _HIGH_WATER and not self._paused:
            connection = self._connection
            if connection is not None and connection.transport is not None:
                self._paused = True
                connection.transport.pause_reading()
        self._wake()

    def _inflated(self, data: bytes) -> bytes:
        assert self._inflate is not None
        try:
            data = self._inflate.decompress(data, _INFLATE_LIMIT)
        except zlib.error as exc:
            return self._broken(f"the compressed body is corrupt: {exc}")
        if self._inflate.unconsumed_tail:
            return self._broken(f"a piece of the compressed body expands past {_INFLATE_LIMIT} B")
        return data

    def _ended(self) -> None:
        """The last byte arrived: wake the reader (or fail it, for a compressed body cut short)."""
        if self._inflate is not None and not self._inflate.eof:
            self._broken("the compressed body ends early")
        else:
            self._wake()

    def _broken(self, message: str) -> bytes:
        self._fail(BadResponse(message))
        self.close()
        return b""

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc
        started = self._started
        if not started.done():
            started.set_exception(exc)
            started.exception()  # retrieved: whoever awaits it sees it; nobody may
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def _lost(self, exc: Exception | None) -> None:
        if self.complete:
            return
        if self.status and self._until_close and exc is None:  # the body ends with the connection
            self.complete = True
            self.keep = False
            if not self.lingering:
                self._ended()
            return
        if not self.answered:
            if self.reused:
                self._fail(_Stale())
                return
            error: OSError = ConnectionResetError(
                "the server closed the connection before answering"
            )
        else:
            error = ConnectionResetError("the connection was cut before the response was complete")
        if exc is not None:
            error.__cause__ = exc
        self._fail(error)


_NO_HEADERS: CIMultiDictProxy[str] = CIMultiDictProxy(CIMultiDict())
