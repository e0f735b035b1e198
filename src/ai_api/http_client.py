"""The HTTP/1.1 client ai-api calls providers with: keep-alive connections per origin on asyncio
transports, responses parsed by llhttp (httptools).

Why its own: aiohttp's client hands the chunks of a chunked body to its reader one at a time, and
a provider's stream sends one chunk per event, so reading a streamed answer cost more than
everything else the gateway does for it (docs/benchmarks.md). Here whatever one socket read
brought reaches the reader as one piece. The client does what calls to providers need and no
more: POST with the body in memory; http and https (the system's CAs or a trust store's, a
client certificate, HTTP/1.1 by ALPN); through an HTTP proxy (a CONNECT tunnel for https, the
absolute form for http); Content-Length, chunked and close-delimited bodies; gzip and deflate;
keep-alive, idle connections closed by a timer once their keepalive ends; at most
`connections` open to one origin, requests past it waiting in turn for one to come back; one
more try, on a new connection, when a kept one turns out closed before it answered.

Failures are builtin exceptions, which callers map to their own: `TimeoutError` (no connection
within the connect timeout, waiting at the cap included), `OSError` (could not connect, the
proxy refused a tunnel (`ProxyError`), or the connection was lost), and `BadResponse` (the bytes
are not an HTTP/1.1 response, or its head passes the limits: 8 KiB a line, 128 headers, 64 KiB
outside the body, control characters but HTAB refused in values).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import socket
import ssl
from collections import deque
from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohappyeyeballs
from aiohappyeyeballs import AddrInfoType

from .http_connection import BadResponse, Connection, Response, Stale
from .http_tunnel import ProxyError, open_tunnel
from .proxies import Proxies, Proxy
from .trust import TrustStore, tls_context

__all__ = ["BadResponse", "Endpoint", "Endpoints", "HTTPClient", "ProxyError", "Response"]

log = logging.getLogger("ai_api.http_client")

_DEFAULT_PORTS = {"http": 80, "https": 443}
_EXPIRY_SLACK = 0.01
"""Seconds before its keepalive ends that an idle connection may be closed by the timer."""
_DNS_TTL = 300.0
"""Seconds a host's looked-up addresses are kept (aiohttp's client, used before, kept 300)."""
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_UNSAFE = re.compile(r"[\x00-\x20\x7f]")
_UNSAFE_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_OWN_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})


class Endpoints(Protocol):
    """What makes endpoints: an `HTTPClient`, or a view of one bound to a trust store."""

    def endpoint(self, url: str, headers: Mapping[str, str]) -> Endpoint:
        """POSTs to `url` with `headers`."""
        ...


class HTTPClient:
    """Keep-alive connections per origin, shared by the endpoints made from one client.

    `connect_timeout` bounds getting a connection (waiting for one at the cap, connecting, the
    TLS handshake); `keepalive` is how long an idle connection may wait for its next request
    (a timer per origin closes it then); `connections` is the most open to one origin at once.
    Close the client to close its connections.
    """

    def __init__(
        self,
        *,
        connect_timeout: float | None = None,
        keepalive: float = 15.0,
        ssl_context: ssl.SSLContext | None = None,
        connections: int = 512,
        proxies: Proxies | None = None,
    ) -> None:
        self.connect_timeout = connect_timeout
        self.keepalive = keepalive
        self.connections = connections
        self.proxies = proxies or Proxies()
        self._ssl = ssl_context
        self._alpn = False
        self._contexts: dict[TrustStore, ssl.SSLContext] = {}
        self._origins: dict[tuple[str, str, int, TrustStore | None], _Origin] = {}
        self.closed = False

    def endpoint(
        self, url: str, headers: Mapping[str, str], trust: TrustStore | None = None
    ) -> Endpoint:
        """POSTs to `url` with `headers` (the request head is built once, here); an https
        one's TLS trusts and shows what `trust` says (default: the system's CAs). Through a
        proxy if `proxies` has one for its origin."""
        parts = urlsplit(url)
        if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
            raise ValueError("not an http(s) URL with a host")
        if parts.username is not None or parts.password is not None:
            raise ValueError("credentials in a URL are not sent: use a header")
        if _UNSAFE.search(url):
            raise ValueError("the URL holds spaces or control characters")
        port = parts.port or _DEFAULT_PORTS[parts.scheme]
        https = parts.scheme == "https"
        if not https:
            trust = None  # no TLS: connections differ by nothing else
        # Connections that trust or show different certificates are never shared.
        key = (parts.scheme, parts.hostname, port, trust)
        proxy = self.proxies.for_origin(parts.scheme, parts.hostname, port)
        origin = self._origins.get(key)
        if origin is None:
            origin = self._origins[key] = _Origin(self, parts.hostname, port, https, trust, proxy)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname  # IPv6 literal
        if port != _DEFAULT_PORTS[parts.scheme]:
            host = f"{host}:{port}"
        if proxy is not None and not https:  # to the proxy: the absolute form, and its key
            target = f"http://{host}{target}"
            if proxy.authorization is not None:
                headers = {**headers, "Proxy-Authorization": proxy.authorization}
        return Endpoint(origin, target, host, headers)

    def trusting(self, trust: TrustStore | None) -> Endpoints:
        """This client's endpoints, their TLS trusting `trust` (None: this client itself)."""
        return self if trust is None else _Trusting(self, trust)

    def tls(self, trust: TrustStore | None = None) -> ssl.SSLContext:
        """The TLS context for https origins with `trust`, made once for each distinct one;
        without, the one given, else the system's. Each offers HTTP/1.1 only (ALPN), so
        that no server picks HTTP/2."""
        if trust is not None:
            context = self._contexts.get(trust)
            if context is None:
                context = self._contexts[trust] = tls_context(trust)
            return context
        if self._ssl is None:
            self._ssl = tls_context()
        if not self._alpn:
            self._ssl.set_alpn_protocols(["http/1.1"])
            self._alpn = True
        return self._ssl

    async def close(self) -> None:
        """Close the idle connections; those in use close when their response is released."""
        self.closed = True
        for origin in self._origins.values():
            origin.close()


class _Trusting:
    """Endpoints of one client, their TLS set by one trust store."""

    __slots__ = ("_client", "_trust")

    def __init__(self, client: HTTPClient, trust: TrustStore) -> None:
        self._client = client
        self._trust = trust

    def endpoint(self, url: str, headers: Mapping[str, str]) -> Endpoint:
        return self._client.endpoint(url, headers, self._trust)


class _Origin:
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
        if connection is None:
            connection = await origin.obtain()
        try:
            return await connection.exchange(request)
        except Stale:
            pass  # the server had closed it: once more (on a new connection, but at the cap)
        connection = await origin.obtain()
        return await connection.exchange(request)
