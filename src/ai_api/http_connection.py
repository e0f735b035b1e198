"""One connection to an upstream and the response it reads: bytes fed to llhttp (httptools) as
they arrive, and whatever one socket read brought handed to the reader as one piece.

`http_client` makes them and keeps them; this module knows HTTP/1.1's framings (Content-Length,
chunked, until the connection closes), gzip and deflate, interim responses, flow control, and
what a connection that misbehaves is no longer trusted with.
"""

from __future__ import annotations

import asyncio
import enum
import zlib
from typing import Protocol, cast

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

_HIGH_WATER = 1 << 18
"""Bytes held for a reader that does not keep up before the socket stops being read."""

_ENOUGH = 1 << 16
"""Bytes that wake a read waiting for the end of the body (or a mark) before it comes."""

_HEAD_LIMIT = 1 << 16
"""Most bytes one response may send outside its body: its head (interim ones and trailers
included), counted as they arrive, before httptools assembles a header (aiohttp's is 8 KiB a
line; a total of 64 KiB here)."""

_LINE_LIMIT = 1 << 13
"""Most bytes of one line of a head (one header, name and value)."""

_HEADERS_LIMIT = 128
"""Most headers (trailers included) one response may send (aiohttp's limit)."""

_INFLATE_LIMIT = 1 << 22
"""Most bytes one read of a compressed body may expand to (a bound on a decompression bomb)."""


class BadResponse(Exception):
    """The upstream's bytes are not an HTTP/1.1 response this client can read."""


class Stale(ConnectionError):
    """A kept connection was closed by the server before it answered: try a new one.

    Nearly always the server had closed it while it waited, before the request arrived (the
    race every keep-alive client meets). If it had read the request and then closed without a
    byte of answer, the provider sees the request twice. aiohttp's client did not retry a
    POST (it failed, and the gateway then failed over to another member, which also costs a
    request); browsers do retry on a reused connection that gave no byte, as this does, once.
    """


class State(enum.Enum):
    """Where a connection is in its life; `Connection`'s methods move it, as each says."""

    FRESH = "connected, not used yet"
    IDLE = "between exchanges, kept for the next"
    SENT = "the request is out, not a byte of the answer yet"
    READING = "the answer is arriving"
    DRAINING = "released before the end of its answer, whose rest is read and dropped"
    DONE = "the answer is complete; fit for another exchange"
    SPENT = "the answer is complete; not to be trusted with another"
    CLOSED = "the connection is lost"


# Module names for the states: an enum member's attribute lookup costs ~0.3 us on Python 3.11,
# and data_received runs per socket read.
FRESH, IDLE, SENT, READING = State.FRESH, State.IDLE, State.SENT, State.READING
DRAINING, DONE, SPENT, CLOSED = State.DRAINING, State.DONE, State.SPENT, State.CLOSED


class Pool(Protocol):
    """Where a connection goes between exchanges."""

    def put(self, connection: Connection) -> None:
        """Keep `connection` (idle, fit for another exchange) for the next request."""

    def forget(self, connection: Connection) -> None:
        """`connection` closed: no longer keep it."""


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
        else:
            self.pool.forget(self)

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


class Response:
    """One response: status and headers at once, the body as it arrives."""

    __slots__ = (
        "_buffer",
        "_connection",
        "_enough",
        "_error",
        "_inflate",
        "_marks",
        "_paused",
        "_size",
        "_started",
        "_until_close",
        "_waiter",
        "headers",
        "last_data",
        "reused",
        "status",
    )

    def __init__(self, connection: Connection, reused: bool) -> None:
        self._connection: Connection | None = connection
        self._started: asyncio.Future[None] = connection.loop.create_future()
        self._buffer: list[bytes] = []
        self._size = 0
        self._waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self._inflate: zlib._Decompress | None = None
        self._paused = False
        self._until_close = False
        self.reused = reused
        self.status = 0
        self.headers: CIMultiDictProxy[str] = _NO_HEADERS
        # What wakes the pending read (see `readany`); None: any bytes.
        self._marks: tuple[bytes, ...] | None = None
        self._enough = _ENOUGH
        # When bytes last came to a read waiting for marks (on the loop's clock), for whoever
        # watches for silence: such a read spans many arrivals.
        self.last_data = 0.0

    async def readany(
        self, until_any: tuple[bytes, ...] | None = None, max_bytes: int = _ENOUGH
    ) -> bytes:
        """What has arrived of the body since the last read, waiting for some; b"" at its end.
        With `until_any`, a wait lasts until the body ends, `max_bytes` wait, or bytes holding
        one of `until_any` arrive (one wake, not one per arrival)."""
        buffer = self._buffer
        while not buffer:
            if self._error is not None:
                raise self._error
            connection = self._connection
            if connection is None:
                return b""
            state = connection.state  # not over(): a call per read
            if state is DONE or state is SPENT or state is CLOSED:
                return b""
            self._waiter = waiter = self._started.get_loop().create_future()
            self._marks, self._enough = until_any, max_bytes
            try:
                await waiter
            finally:
                self._waiter = self._marks = None
        data = buffer[0] if len(buffer) == 1 else b"".join(buffer)
        buffer.clear()
        self._size = 0
        if self._paused:
            self._paused = False
            connection = self._connection
            if connection is not None and connection.transport is not None:
                connection.transport.resume_reading()
        return data

    async def read(self, limit: int = 1 << 20, *, partial: bool = False) -> bytes:
        """The whole body (its first `limit` bytes if longer: the rest is not read); with
        `partial`, a body that breaks off (cut, or failed by `fail`) as far as it came."""
        parts: list[bytes] = []
        size = 0
        try:
            while size < limit and (data := await self.readany()):
                parts.append(data)
                size += len(data)
        except Exception as exc:
            if not partial or exc is not self._error:
                raise
        return b"".join(parts)[:limit]

    def is_eof(self) -> bool:
        """Whether the whole body has arrived and been read (before the response's release)."""
        connection = self._connection
        ended = connection is not None and connection.over()
        return ended and self._error is None and not self._buffer

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
        if connection.state is not READING:  # complete, or lost
            self.release()
            return
        self._connection = None
        self._buffer.clear()
        if self._paused:
            self._paused = False
            if connection.transport is not None:
                connection.transport.resume_reading()
        connection.drain(wait)

    def close(self) -> None:
        """Done with the response, dropping its connection whatever it still holds."""
        connection = self._connection
        if connection is not None:
            self._connection = None
            connection.response = None
            connection.close()

    # fed by the connection

    def _start(self, status: int, names: list[bytes], values: list[bytes]) -> None:
        headers: CIMultiDict[str] = CIMultiDict(
            zip(
                [n.decode("latin-1") for n in names],
                [v.decode("latin-1") for v in values],
                strict=True,
            )
        )
        self.status = status
        self.headers = CIMultiDictProxy(headers)
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
        marks = self._marks
        if marks is not None:
            self.last_data = self._started.get_loop().time()
            if self._size < self._enough and not any(mark in data for mark in marks):
                return
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

    def _lost(self, exc: Exception | None, was: State) -> None:
        """The connection was lost in state `was`."""
        if was is DONE or was is SPENT:
            return
        if self.status and self._until_close and exc is None:  # the body ends with the connection
            if was is not DRAINING:
                self._ended()
            return
        if was is SENT:
            if self.reused:
                self._fail(Stale())
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
