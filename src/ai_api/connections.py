"""Bounded clients: a request's headers must arrive within the header timeout (from its first
byte, or from the connection's start), and no more than `max_connections` client connections
are open at once; past it a new one is answered 503 and closed, with one log line a minute.

aiohttp has no header timeout and no connection cap, so every connection's protocol is wrapped
in a `GuardedConnection`, which the app's middleware tells when a request begins and ends. The
idle keep-alive timeout is aiohttp's own; the body timeout is `answers.read_body`'s.

At shutdown the same bookkeeping drains (`server.running`): how many requests are in flight,
`Connection: close` on every answer from then on, and, once the grace is over, each request
still running cut short: its handler is cancelled and its connection marked `CUT`, which tells
the cut from a client leaving, so that the API ends the answer in its own shape.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import socket
from collections.abc import Callable
from typing import cast

from aiohttp import web

from .errors import TooManyConnections
from .settings import Settings

log = logging.getLogger("ai_api.connections")

BACKLOG = 4096
"""Connections the kernel queues before they are accepted, as `--workers` binds (the event
loop's default, 100, dropped 32 of a burst of 1,075 new connections)."""
CAP_LOG_INTERVAL = 60.0
"""Seconds between two log lines saying the connection cap is reached."""
CUT_MARGIN = 2.0
"""Seconds a request cut short at the end of the drain's grace has to write its end (a client
not reading could hold it forever); then its connection is aborted."""
LINGERING = 1.0
"""Seconds the rest of a body is read (and dropped) after an early answer, so that a client
still sending gets its answer; then the connection closes. aiohttp's 10 s would let a client
whose body timed out hold its connection that much longer."""


def _refusal() -> bytes:
    error = TooManyConnections("The gateway has too many open connections; try again shortly.")
    body = json.dumps(error.body()).encode()
    return (
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        b"Retry-After: 1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )


class Phase(enum.Enum):
    """Where a connection is between requests."""

    HEADERS = "headers"
    """Waiting for a request's headers: the header timeout runs."""
    ANSWERING = "answering"
    """A request is being answered (its body has its own timeout)."""
    CUT = "cut"
    """The drain's grace ran out while a request was being answered: its handler is cancelled
    and ends the answer as the API does after a failure."""
    IDLE = "idle"
    """Between requests: aiohttp's keep-alive timeout runs."""
    REFUSED = "refused"
    """Over the cap: answered 503 and closed, never handed to aiohttp."""


class GuardedConnection(asyncio.Protocol):
    """aiohttp's protocol for one connection, with a header timeout around it."""

    def __init__(self, inner: asyncio.Protocol, clients: ClientConnections) -> None:
        self._inner = inner
        self._clients = clients
        self._transport: asyncio.Transport | None = None
        self.phase = Phase.IDLE
        self.since = 0.0
        """When the phase began (the loop's clock)."""
        self._task: asyncio.Task[object] | None = None
        """The handler's task of the request being answered."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's does not subclass it
        self._transport = transport
        if not self._clients.admit(transport, self):
            self.phase = Phase.REFUSED
            transport.write(self._clients.refusal)
            transport.close()
            return
        self._inner.connection_made(transport)
        self._await_headers()

    def data_received(self, data: bytes) -> None:
        if self.phase is Phase.IDLE:
            self._await_headers()
        elif self.phase is Phase.REFUSED:
            return
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return None if self.phase is Phase.REFUSED else self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._clients.forget(self._transport)
        if self.phase is not Phase.REFUSED:
            self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def request_began(self, task: asyncio.Task[object] | None) -> None:
        """The headers are in: the header timeout stops; `task` answers the request."""
        self.phase = Phase.ANSWERING
        self._task = task

    def request_ended(self) -> None:
        """The answer is written: the connection idles until the next request's first byte."""
        if self.phase is Phase.ANSWERING and self._clients.draining:
            self._clients.finished += 1
        self.phase = Phase.IDLE
        self._task = None

    @property
    def draining(self) -> bool:
        """Whether the server is draining: every answer from now on closes its connection."""
        return self._clients.draining

    def end(self) -> bool:
        """Cut the request being answered short (its task is cancelled); False if idle."""
        if self.phase is not Phase.ANSWERING or self._task is None:
            return False
        self.phase = Phase.CUT
        self._task.cancel()
        return True

    def took_cut(self) -> bool:
        """Whether the cancellation being handled is the drain's cut (a client leaving is
        not); if so it is withdrawn, once, and the handler goes on to end its answer."""
        if self.phase is not Phase.CUT or self._task is None:
            return False
        self._task.uncancel()
        self._task = None  # a later cancellation is someone else's
        return True

    def abort(self) -> None:
        """Drop the connection at once."""
        if self._transport is not None:
            self._transport.abort()

    def close_if_waiting(self, since: float) -> None:
        """Close the connection if it has waited for headers since before `since`."""
        if self.phase is Phase.HEADERS and self.since < since and self._transport is not None:
            log.debug("closing a connection whose request headers took too long")
            self._transport.close()

    def _await_headers(self) -> None:
        self.phase = Phase.HEADERS
        self.since = self._clients.loop.time()


class ClientConnections:
    """The open client connections of one server, up to a cap."""

    def __init__(self, loop: asyncio.AbstractEventLoop, settings: Settings) -> None:
        self.loop = loop
        self.header_timeout = settings.header_timeout
        # One sweep a fraction of the timeout apart, not a timer a request: the timeout is
        # kept within a quarter of itself (at most a second late) for nothing per request.
        self._sweep_every = min(1.0, settings.header_timeout / 4)
        self._sweeper: asyncio.TimerHandle | None = None
        self.max_connections = settings.max_connections
        self.refusal = _refusal()
        self._open: dict[asyncio.BaseTransport, GuardedConnection] = {}
        self._refused = 0
        self._logged_at: float | None = None
        self.draining = False
        self.finished = 0
        """Requests that ended by themselves during the drain."""
        self.ended = 0
        """Requests the drain cut short."""

    def __len__(self) -> int:
        return len(self._open)

    def protocol(self, inner: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        """A protocol factory for `loop.create_server` wrapping `inner`'s (aiohttp's)."""
        return lambda: GuardedConnection(inner(), self)

    def admit(self, transport: asyncio.BaseTransport, connection: GuardedConnection) -> bool:
        """Count `connection` in, or False when the cap is reached (logged once a minute)."""
        if len(self._open) < self.max_connections:
            self._open[transport] = connection
            return True
        self._refused += 1
        now = self.loop.time()
        if self._logged_at is None or now - self._logged_at >= CAP_LOG_INTERVAL:
            log.warning(
                "%d client connections are open, the most allowed (AI_API_MAX_CONNECTIONS):"
                " new ones are answered 503 and closed (%d so far)",
                len(self._open),
                self._refused,
            )
            self._logged_at = now
        return False

    def forget(self, transport: asyncio.BaseTransport) -> None:
        """A connection closed."""
        self._open.pop(transport, None)

    def start(self) -> None:
        """Begin sweeping out connections whose headers are late."""
        self._sweeper = self.loop.call_later(self._sweep_every, self._sweep)

    def stop(self) -> None:
        """Stop sweeping."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None

    def _sweep(self) -> None:
        late = self.loop.time() - self.header_timeout
        for connection in list(self._open.values()):
            connection.close_if_waiting(late)
        self._sweeper = self.loop.call_later(self._sweep_every, self._sweep)

    def drain(self) -> int:
        """Begin draining; the requests in flight."""
        self.draining = True
        return sum(c.phase is Phase.ANSWERING for c in self._open.values())

    def cut(self) -> int:
        """Cut every request still in flight short; how many there were."""
        cut = sum(c.end() for c in list(self._open.values()))
        self.ended += cut
        return cut

    def abort(self) -> None:
        """Drop every connection still open at once."""
        for connection in list(self._open.values()):
            connection.abort()

    def of(self, request: web.Request) -> GuardedConnection | None:
        """The connection `request` came on (None if not one of these)."""
        return self._open.get(request.transport)  # type: ignore[arg-type]


CONNECTION = web.RequestKey("connection", GuardedConnection)
"""The guarded connection a request came on (absent without `ClientConnections`)."""


class GuardedSite(web.BaseSite):
    """Like aiohttp's `TCPSite` and `SockSite`, with every connection a `GuardedConnection`."""

    def __init__(
        self,
        runner: web.BaseRunner,
        clients: ClientConnections,
        *,
        host: str = "",
        port: int = 0,
        sock: socket.socket | None = None,
    ) -> None:
        super().__init__(runner)
        self._clients = clients
        self._host, self._port, self._sock = host, port, sock

    @property
    def name(self) -> str:
        """As aiohttp names its sites."""
        return f"http://{self._host}:{self._port}" if self._sock is None else "http://socket"

    async def start(self) -> None:
        """Listen: on the socket given, else on host and port."""
        await super().start()
        server = self._runner.server
        assert server is not None
        factory = self._clients.protocol(server)
        loop = asyncio.get_running_loop()
        if self._sock is not None:
            self._server = await loop.create_server(factory, sock=self._sock)
        else:
            self._server = await loop.create_server(
                factory, self._host, self._port, backlog=BACKLOG
            )
        self._clients.start()

    async def stop(self) -> None:
        """Stop listening and sweeping."""
        self._clients.stop()
        await super().stop()
