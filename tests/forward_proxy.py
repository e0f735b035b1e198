"""A small HTTP forward proxy on 127.0.0.1 for the tests: CONNECT tunnels and absolute-form
requests, whatever host they name dialled on 127.0.0.1 (the port as asked), and a record of
what it saw. It can refuse every CONNECT with a status, or answer it with bytes given. And a
TLS front, an https face for the http fakes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


@dataclass
class ForwardProxy:
    refuse: int | None = None
    """Answer every CONNECT with this status (407 asks for credentials)."""
    answer: bytes | None = None
    """Answer every CONNECT with these bytes, then close."""
    port: int = 0
    connections: int = 0
    connects: list[str] = field(default_factory=list)
    """CONNECT targets, as asked."""
    requests: list[str] = field(default_factory=list)
    """Request lines of the absolute-form requests, as sent."""
    hosts: list[str] = field(default_factory=list)
    """The Host header of each CONNECT and request."""
    authorizations: list[str | None] = field(default_factory=list)
    """Proxy-Authorization of each CONNECT and request (None: not sent)."""
    seen: list[bytes] = field(default_factory=list)
    """Every head it read, whole."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        upstream: asyncio.StreamWriter | None = None
        pipes: list[asyncio.Task[Any]] = []
        try:
            while True:  # one head after another on this connection, until either end closes
                head = await reader.readuntil(b"\r\n\r\n")
                method, target, headers = self._note(head)
                if method == "CONNECT":
                    await self._tunnel(target, reader, writer)
                    return
                parts = urlsplit(target)
                if upstream is None:
                    up_reader, upstream = await asyncio.open_connection("127.0.0.1", parts.port)
                    pipes.append(asyncio.create_task(_pipe(up_reader, writer)))
                length = int(headers.get("content-length", "0"))
                body = await reader.readexactly(length)
                lines = head.decode("latin-1").split("\r\n")
                kept = [ln for ln in lines[1:] if not ln.lower().startswith("proxy-authorization")]
                path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
                upstream.write(
                    "\r\n".join([f"{method} {path} HTTP/1.1", *kept]).encode("latin-1") + body
                )
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            for pipe in pipes:
                pipe.cancel()
            if upstream is not None:
                upstream.close()
            writer.close()

    def _note(self, head: bytes) -> tuple[str, str, dict[str, str]]:
        self.seen.append(head)
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name:
                headers[name.strip().lower()] = value.strip()
        if method == "CONNECT":
            self.connects.append(target)
        else:
            self.requests.append(lines[0])
        self.hosts.append(headers.get("host", ""))
        self.authorizations.append(headers.get("proxy-authorization"))
        return method, target, headers

    async def _tunnel(
        self, target: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if self.answer is not None:
            writer.write(self.answer)
            await writer.drain()
            return
        if self.refuse is not None:
            writer.write(
                b'HTTP/1.1 %d Refused\r\nProxy-Authenticate: Basic realm="t"\r\n'
                b"Content-Length: 6\r\n\r\nrefuse" % self.refuse
            )
            await writer.drain()
            return
        port = int(target.rsplit(":", 1)[1])
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        back = asyncio.create_task(_pipe(up_reader, writer))
        try:
            await _pipe(reader, up_writer)
            await back
        finally:
            back.cancel()
            up_writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until `reader` ends (or either side fails), then close `writer`."""
    with suppress(ConnectionError, asyncio.CancelledError):
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
    with suppress(ConnectionError, RuntimeError):
        writer.close()


@asynccontextmanager
async def forward_proxy(**options: Any) -> AsyncIterator[ForwardProxy]:
    """A proxy listening on 127.0.0.1 (a free port) while the block runs."""
    proxy = ForwardProxy(**options)
    tasks: set[asyncio.Task[Any]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        with suppress(asyncio.CancelledError):
            await proxy.serve(reader, writer)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    proxy.port = server.sockets[0].getsockname()[1]
    try:
        yield proxy
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


@asynccontextmanager
async def tls_front(port: int, context: Any) -> AsyncIterator[int]:
    """A TLS server on 127.0.0.1 passing each connection's plaintext to 127.0.0.1:`port` (an
    https face for an http fake); yields its port."""
    tasks: set[asyncio.Task[Any]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        with suppress(asyncio.CancelledError, ConnectionError):
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()
