"""One connection to an upstream: bytes fed to llhttp (httptools) as they arrive, and whatever
one socket read brought handed to its `Response` (`http_response`) as one piece.

`http_client` makes them and keeps them; this module knows HTTP/1.1's framings (Content-Length,
chunked, until the connection closes), interim responses, the limits on a response's head, and
what a connection that misbehaves is no longer trusted with.
"""

from __future__ import annotations

import asyncio
from typing import Protocol, cast

import httptools

from .http_response import Response
from .http_state import (
    CLOSED,
    DONE,
    DRAINING,
    FRESH,
    IDLE,
    READING,
    SENT,
    SPENT,
    BadResponse,
    Stale,
)

__all__ = ["BadResponse", "Connection", "Pool", "Response", "Stale"]

_HEAD_LIMIT = 1 << 16
"""Most bytes one response may send outside its body: its head (interim ones and trailers
included), counted as they arrive, before httptools assembles a header (aiohttp's is 8 KiB a
line; a total of 64 KiB here)."""

_LINE_LIMIT = 1 << 13
"""Most bytes of one line of a head (one header, name and value)."""

_HEADERS_LIMIT = 128
"""Most headers (trailers included) one response may send (aiohttp's limit)."""


class Pool(Protocol):
    """Where a connection goes between exchanges."""

    def put(self, connection: Connection) -> None:
        """Keep `connection` (idle, fit for another exchange) for the next request."""

    def forget(self, connection: Connection, idle: bool) -> None:
        """`connection` closed (`idle`: while it was kept): no longer keep it, nor count it."""


class Connection(asyncio.Protocol):
    """One connection: one exchange at a time, fed to llhttp as bytes arrive."""

    def __init__(self, pool: Pool, loop: asyncio.AbstractEventLoop) -> None:
        self.pool = pool
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        # As aiohttp's client, bare LF line ends pass; control characters other than HTAB
        # (NUL, a bare CR, DEL) in a header value do not (llhttp's strict value check).
        self.parser.set_dangerous_leniencies(lenient_optional_cr_before_lf=True)
        # Bytes fed since the last byte of a body, and of them since the last line end:
        # httptools assembles a header by concatenation and hands it over only whole, so each
        # read is counted as it is fed, and one past a limit ends the exchange (what httptools
        # holds stays within the limit and one read).
        self.quiet = 0
        self.line = 0
        self.header_count = 0
        self.head_bytes = 0
        self.response: Response | None = None
        self.pieces: list[bytes] = []
        self.names: list[bytes] = []
        self.values: list[bytes] = []
        self.state = FRESH
        self.idle_since = 0.0
        self.linger: asyncio.TimerHandle | None = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        """Any state to CLOSED."""
        was, self.state = self.state, CLOSED
        if self.linger is not None:
            self.linger.cancel()
            self.linger = None
        response = self.response
        if response is not None:
            response._lost(exc, was)
        self.pool.forget(self, was is IDLE)

    def data_received(self, data: bytes) -> None:
        """SENT to READING; READING (or DRAINING) to DONE or SPENT when the answer ends."""
        response = self.response
        was = self.state
        if response is None or was is DONE or was is SPENT:  # bytes nobody asked for
            self.close()
            return
        if was is SENT:
            self.state = READING
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            if not self.complete():
                said = exc.__context__ if isinstance(exc.__context__, BadResponse) else exc
                self._refuse(str(said))
                return
            # After a whole response, only more bytes nobody asked for: the response stands,
            # the connection is not trusted with another.
            self.state = SPENT
            self.close()
        if self.pieces:
            self.quiet = self.line = 0
            if was is DRAINING:
                self.pieces.clear()
            else:
                response._deliver(self.pieces)
        elif not self.over() and self._too_much_head(data):
            return
        now = self.state
        if now is DONE or now is SPENT:
            if was is DRAINING:
                self.rest()
            else:
                response._ended()

    def _too_much_head(self, data: bytes) -> bool:
        """Count `data`, fed without a byte of body: past a limit, fail the exchange."""
        quiet = self.quiet = self.quiet + len(data)
        end = data.rfind(b"\n")
        line = self.line = self.line + len(data) if end < 0 else len(data) - end - 1
        if quiet <= _HEAD_LIMIT and line <= _LINE_LIMIT:
            return False
        said = (
            f"its headers pass {_HEAD_LIMIT} bytes"
            if quiet > _HEAD_LIMIT
            else (f"a line of its headers passes {_LINE_LIMIT} bytes")
        )
        self._refuse(said)
        return True

    def _refuse(self, said: str) -> None:
        response = self.response
        assert response is not None
        self.pieces.clear()
        response._fail(BadResponse(f"not an HTTP/1.1 response: {said}"))
        self.close()

    # llhttp callbacks

    def on_message_begin(self) -> None:
        if self.complete():
            raise BadResponse("a second response nobody asked for")  # stops the parser

    def on_header(self, name: bytes, value: bytes) -> None:
        # `quiet` and `line` bound a head across reads; these, one that came in one read.
        # A raise stops the parser.
        size = len(name) + len(value)
        self.header_count += 1
        self.head_bytes += size
        if self.header_count > _HEADERS_LIMIT:
            raise BadResponse(f"it sends more than {_HEADERS_LIMIT} headers")
        if size > _LINE_LIMIT:
            raise BadResponse(f"a line of its headers passes {_LINE_LIMIT} bytes")
        if self.head_bytes > _HEAD_LIMIT:
            raise BadResponse(f"its headers pass {_HEAD_LIMIT} bytes")
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
        response._start(status, names, values)

    def on_body(self, body: bytes) -> None:
        self.pieces.append(body)

    def on_message_complete(self) -> None:
        response = self.response
        if response is not None and response.status:
            self.state = DONE if self.parser.should_keep_alive() else SPENT

    # the exchange

    async def exchange(self, request: bytes) -> Response:
        """FRESH or IDLE to SENT: send `request`; its response once its head is in."""
        transport = self.transport
        assert transport is not None
        reused = self.state is IDLE
        if not self.fit():
            self.close()
            raise Stale() if reused else ConnectionResetError("the connection closed at once")
        self.state = SENT
        response = self.response = Response(self, reused)
        self.quiet = self.line = self.header_count = self.head_bytes = 0
        transport.write(request)
        try:
            await response._started
        except BaseException:
            self.close()
            raise
        return response

    def rest(self) -> None:
        """The exchange is over: DONE to IDLE, back to the pool; any other state is closed."""
        response = self.response
        self.response = None
        if self.linger is not None:
            self.linger.cancel()
            self.linger = None
        if response is None or self.state is not DONE or not self.fit():
            self.close()
            return
        if response._paused:  # a body that came whole faster than it was read
            assert self.transport is not None
            self.transport.resume_reading()
        self.state = IDLE
        self.pool.put(self)

    def drain(self, wait: float | None) -> None:
        """READING to DRAINING: read (and drop) the rest of the body until it ends, at most
        `wait` seconds (a minute if None), then rest; one not ended by then is closed."""
        self.state = DRAINING
        self.linger = self.loop.call_later(60.0 if wait is None else wait, self.close)

    def complete(self) -> bool:
        """Whether the answer of the exchange is complete (DONE or SPENT)."""
        state = self.state
        return state is DONE or state is SPENT

    def over(self) -> bool:
        """Whether no more of the answer comes: complete, or the connection lost (its reader
        was then failed, unless the body ended with the connection)."""
        state = self.state
        return state is DONE or state is SPENT or state is CLOSED

    def fit(self) -> bool:
        """Whether the connection is still open at this end (the other may have closed it
        without this end knowing yet: see `Stale`)."""
        return (
            self.state is not CLOSED
            and self.transport is not None
            and not self.transport.is_closing()
        )

    def close(self, graceful: bool = False) -> None:
        """Drop the connection at once (mid-exchange, TLS would wait up to 30 s for the
        peer's goodbye), or, `graceful`, close it as an idle one is closed."""
        if self.transport is not None:
            if graceful:
                self.transport.close()
            else:
                self.transport.abort()
