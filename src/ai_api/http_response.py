"""One response from an upstream: status and headers at once, the body as it arrives (fed by
its `http_connection.Connection`), gzip and deflate, flow control."""

from __future__ import annotations

import asyncio
import zlib
from typing import TYPE_CHECKING

from multidict import CIMultiDict, CIMultiDictProxy

from .http_state import CLOSED, DONE, DRAINING, READING, SENT, SPENT, BadResponse, Stale, State

if TYPE_CHECKING:
    from .http_connection import Connection

_HIGH_WATER = 1 << 18
"""Bytes held for a reader that does not keep up before the socket stops being read."""

_ENOUGH = 1 << 16
"""Bytes that wake a read waiting for the end of the body (or a mark) before it comes."""

_INFLATE_LIMIT = 1 << 22
"""Most bytes one read of a compressed body may expand to (a bound on a decompression bomb)."""


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
