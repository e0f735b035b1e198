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
import re
import ssl
from collections.abc import Mapping
from typing import Protocol
from urllib.parse import urlsplit

from .http_connection import BadResponse, Response, Stale
from .http_origin import Origin
from .http_tunnel import ProxyError
from .proxies import Proxies
from .trust import TrustStore, tls_context

__all__ = ["BadResponse", "Endpoint", "Endpoints", "HTTPClient", "ProxyError", "Response"]

_DEFAULT_PORTS = {"http": 80, "https": 443}
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_UNSAFE = re.compile(r"[\x00-\x20\x7f]")
_UNSAFE_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_OWN_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})


class Endpoints(Protocol):
    """What makes endpoints: an `HTTPClient`, or a view of one bound to a trust store."""

    def endpoint(self, url: str, headers: Mapping[str, str]) -> Endpoint:
        """POSTs to `url` with `headers` (or GETs it)."""
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
        self._origins: dict[tuple[str, str, int, TrustStore | None], Origin] = {}
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
            origin = self._origins[key] = Origin(self, parts.hostname, port, https, trust, proxy)
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


class Endpoint:
    """One URL and its fixed headers, ready to send bodies to."""

    __slots__ = ("_head", "_origin")

    def __init__(self, origin: Origin, target: str, host: str, headers: Mapping[str, str]) -> None:
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
        return await self._send(b"%s%d\r\n\r\n%s" % (self._head, len(body), body))

    async def get(self) -> Response:
        """GET the URL (with the same headers, no body); the response once its head is in."""
        return await self._send(b"GET" + self._head.removeprefix(b"POST") + b"0\r\n\r\n")

    async def _send(self, request: bytes) -> Response:
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
