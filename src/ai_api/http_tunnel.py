"""A tunnel through an HTTP forward proxy to an https origin: `CONNECT host:port HTTP/1.1` on
a connected socket, and the proxy's answer read within the limits of a response's head; the
TLS handshake with the origin then runs inside it (`http_client`)."""

from __future__ import annotations

import asyncio
import re
import socket
from http import HTTPStatus

from .proxies import Proxy

_HEAD_LIMIT = 1 << 16
"""Most bytes of the proxy's answer to CONNECT (as a response's head, `http_connection`)."""

_STATUS = re.compile(rb"HTTP/1\.[01] (\d{3})[ \r\n]")
_HEAD_END = re.compile(rb"\r?\n\r?\n")


class ProxyError(ConnectionError):
    """The proxy would not open a tunnel, or did not answer as an HTTP proxy does (an
    `OSError`: a provider behind it is unreachable). The message names the proxy by its
    address and status, never its credentials."""


async def open_tunnel(
    loop: asyncio.AbstractEventLoop, sock: socket.socket, proxy: Proxy, host: str, port: int
) -> None:
    """Ask the proxy `sock` is connected to for a tunnel to `host:port`; return once it is
    open (a 2xx answer), else raise `ProxyError`."""
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
    if proxy.authorization is not None:
        lines.append(f"Proxy-Authorization: {proxy.authorization}")
    await loop.sock_sendall(sock, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    head = b""
    while (end := _HEAD_END.search(head)) is None:  # bounded by the limit
        if len(head) > _HEAD_LIMIT:
            raise ProxyError(f"the proxy {proxy} answered CONNECT with over {_HEAD_LIMIT} bytes")
        data = await loop.sock_recv(sock, 1 << 14)
        if not data:
            raise ProxyError(f"the proxy {proxy} closed the connection instead of answering")
        head += data
    found = _STATUS.match(head)
    if found is None:
        raise ProxyError(f"the proxy {proxy} did not answer CONNECT in HTTP/1.1")
    status = int(found.group(1))
    if not 200 <= status < 300:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        raise ProxyError(
            f"the proxy {proxy} refused a tunnel to {authority}: {status} {phrase}".rstrip()
        )
    if end.end() != len(head):  # the origin speaks first after our ClientHello, never before
        raise ProxyError(f"the proxy {proxy} sent bytes past its answer to CONNECT")
