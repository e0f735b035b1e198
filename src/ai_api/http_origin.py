"""One origin of the HTTP client (scheme, host, port, trust store): how to connect there,
straight or through a proxy's tunnel, its idle connections and the timer that closes them, and
the requests waiting for a connection while as many are open as the client allows."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections import deque
from typing import TYPE_CHECKING, Any

import aiohappyeyeballs
from aiohappyeyeballs import AddrInfoType

from .http_connection import Connection
from .http_tunnel import open_tunnel
from .proxies import Proxy
from .trust import TrustStore

if TYPE_CHECKING:
    from .http_client import HTTPClient

log = logging.getLogger("ai_api.http_client")

_EXPIRY_SLACK = 0.01
"""Seconds before its keepalive ends that an idle connection may be closed by the timer."""
_DNS_TTL = 300.0
"""Seconds a host's looked-up addresses are kept (aiohttp's client, used before, kept 300)."""


class Origin:
    """One scheme, host and port (and trust store): how to connect there, straight or through
    a proxy, its idle connections, and the requests waiting for a connection while as many
    are open as the client allows."""

    __slots__ = (
        "_addresses",
        "_expiry",
        "_resolved_at",
        "_resolving",
        "_warned",
        "client",
        "dial",
        "host",
        "idle",
        "open",
        "port",
        "tls",
        "trust",
        "tunnel",
        "waiters",
    )

    def __init__(
        self,
        client: HTTPClient,
        host: str,
        port: int,
        tls: bool,
        trust: TrustStore | None,
        proxy: Proxy | None,
    ) -> None:
        self.client = client
        self.host = host
        self.port = port
        self.tls = tls
        self.trust = trust
        # Where connections go: the host, or the proxy; to an https host through a proxy,
        # by a tunnel (CONNECT), TLS inside it.
        self.dial = (host, port) if proxy is None else (proxy.host, proxy.port)
        self.tunnel = proxy if proxy is not None and tls else None
        self.idle: list[Connection] = []  # the most recently used last
        self.open = 0  # connections open or being opened (idle ones included)
        # Each waits for a connection coming back or a place to open one (None), in turn.
        self.waiters: deque[asyncio.Future[Connection | None]] = deque()
        self._expiry: asyncio.TimerHandle | None = None  # when the oldest idle one expires
        self._warned = False
        self._addresses: list[AddrInfoType] = []
        self._resolved_at = 0.0
        self._resolving: asyncio.Task[list[AddrInfoType]] | None = None

    def put(self, connection: Connection) -> None:
        if self.client.closed:
            connection.close(graceful=True)
            return
        if self.waiters and self._hand(connection):
            return
        now = connection.idle_since = connection.loop.time()
        self.idle.append(connection)
        if self._expiry is None:
            self._expiry = connection.loop.call_at(now + self.client.keepalive, self._expire)

    def _expire(self) -> None:
        """Close the idle connections past the keepalive (the oldest first: a burst's), and
        wait for the next to expire. One timer per origin, not one per connection: in steady
        use it fires once a keepalive and finds nothing to close."""
        self._expiry = None
        idle = self.idle
        if not idle:
            return
        loop = idle[0].loop
        keepalive = self.client.keepalive
        # A timer may fire a little early (the loop's clock resolution): what is due within
        # the slack is closed now, so that no timer is armed again at once.
        due = loop.time() + _EXPIRY_SLACK - keepalive
        count = 0
        while count < len(idle) and idle[count].idle_since <= due:
            count += 1
        expired = idle[:count]
        del idle[:count]
        for connection in expired:
            connection.close(graceful=True)
        if idle:
            self._expiry = loop.call_at(idle[0].idle_since + keepalive, self._expire)

    def forget(self, connection: Connection, idle: bool) -> None:
        if idle and connection in self.idle:
            self.idle.remove(connection)
        self._free()

    def _free(self) -> None:
        """A connection closed, or failed to open: its place goes to the first waiter."""
        self.open -= 1
        if self.waiters and self._hand(None):
            self.open += 1

    def _hand(self, given: Connection | None) -> bool:
        """Give the first waiter still waiting `given` (a connection, or None: a place
        reserved for it to open one); False if none waits."""
        waiters = self.waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(given)
                return True
        return False

    def take(self, now: float) -> Connection | None:
        """The most recently used idle connection still fit to use, if any."""
        idle = self.idle
        while idle:
            connection = idle.pop()
            if connection.fit() and now - connection.idle_since < self.client.keepalive:
                return connection
            connection.close(graceful=True)
        return None

    async def obtain(self) -> Connection:
        """A connection for a request that found none idle: a new one, or, with as many open
        as allowed, the first to come back or to close (then a new one), in turn; all within
        the connect timeout."""
        loop = asyncio.get_running_loop()
        cap = self.client.connections
        waiting = False
        try:
            async with asyncio.timeout(self.client.connect_timeout):
                while True:  # bounded by the timeout
                    if self.open < cap and not self.waiters:
                        self.open += 1
                        break
                    waiting = True
                    given = await self._wait(loop, cap)
                    waiting = False
                    if given is None:  # a place, reserved for this request
                        break
                    if given.fit():
                        return given
                    given.close()  # closed as it was handed over: its place went on
                return await self._connect(loop)
        except TimeoutError as exc:
            busy = f": {cap} connections to {self.host}:{self.port} in use" if waiting else ""
            raise TimeoutError(f"no connection within the connect timeout{busy}") from exc

    async def _wait(self, loop: asyncio.AbstractEventLoop, cap: int) -> Connection | None:
        if not self._warned:
            self._warned = True
            log.warning(
                "upstream %s:%d: %d connections open, the most allowed (upstream_connections);"
                " requests wait for one to come back (said once)",
                self.host,
                self.port,
                cap,
            )
        waiter: asyncio.Future[Connection | None] = loop.create_future()
        self.waiters.append(waiter)
        try:
            return await waiter
        except BaseException:
            if not waiter.done():
                waiter.cancel()
                self.waiters.remove(waiter)
            elif not waiter.cancelled():  # handed something as it gave up: pass it on
                given = waiter.result()
                if given is None:
                    self._free()
                else:
                    self.put(given)
            raise

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> Connection:
        """A new connection to the host (or its proxy), its place already counted (freed if it
        fails): its addresses raced as aiohttp's client did (Happy Eyeballs: the next one
        tried 0.25 s after the last, IPv6 and IPv4 in turn)."""
        tls = self.client.tls(self.trust) if self.tls else None
        connection = Connection(self, loop)
        try:
            addresses = await self._resolve(loop)
            try:
                sock = await aiohappyeyeballs.start_connection(
                    addresses, happy_eyeballs_delay=0.25, interleave=1, loop=loop
                )
            except OSError:
                self._addresses = []  # none took it: look again next time
                raise
            if self.tunnel is not None:
                try:
                    await open_tunnel(loop, sock, self.tunnel, self.host, self.port)
                except BaseException:
                    sock.close()
                    raise
            await loop.create_connection(
                lambda: connection,
                sock=sock,
                ssl=tls,
                server_hostname=self.host if tls else None,
            )
        except BaseException:
            if connection.transport is None:  # else its loss frees the place
                self._free()
            raise
        return connection

    def close(self) -> None:
        """Close the idle connections; fail the waiters."""
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        while self.idle:
            self.idle.pop().close(graceful=True)
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_exception(ConnectionResetError("the HTTP client was closed"))

    async def _resolve(self, loop: asyncio.AbstractEventLoop) -> list[AddrInfoType]:
        """The addresses to dial, looked up once for all who connect at the same moment and
        kept `_DNS_TTL` seconds (the system's resolver may be slow, and a burst of new
        connections would each ask it)."""
        if self._addresses and loop.time() - self._resolved_at < _DNS_TTL:
            return self._addresses
        resolving = self._resolving
        if resolving is None or resolving.done():
            resolving = self._resolving = loop.create_task(self._lookup(loop))
            resolving.add_done_callback(_retrieved)
        return await asyncio.shield(resolving)  # a waiter that gives up leaves it to others

    async def _lookup(self, loop: asyncio.AbstractEventLoop) -> list[AddrInfoType]:
        addresses: list[AddrInfoType]
        host, port = self.dial
        try:  # an address already: no lookup (it would take a thread of the executor)
            ip = ipaddress.ip_address(host)
        except ValueError:
            addresses = list(await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        else:
            family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
            addresses = [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (host, port))]
        self._addresses, self._resolved_at = addresses, loop.time()
        return addresses


def _retrieved(task: asyncio.Task[Any]) -> None:
    """Marks a shared task's failure as seen (its waiters may all have gone)."""
    if not task.cancelled():
        task.exception()
