"""ai-api's HTTP/1.1 client against real servers on loopback: aiohttp's, and raw ones that write
exact bytes (framings and misbehaviour aiohttp's server will not produce). Each test runs on
asyncio's loop and on uvloop (conftest.py): their transports differ."""

from __future__ import annotations

import asyncio
import gzip
import socket
import ssl
import struct
import threading
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from ai_api.http_client import BadResponse, Endpoint, HTTPClient, Response

from .certs import self_signed
from .lag import lag_probe

# A raw server: one `Conn` per accepted connection, handed to a handler that scripts it.


class Conn:
    """One accepted connection of a raw server."""

    def __init__(
        self,
        server: RawServer,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        number: int,
    ) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.number = number  # 1 for the first connection the server accepted

    async def request(self) -> bytes:
        """The next request, head and body, as sent (also recorded on the server)."""
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        raw = head + await self.reader.readexactly(length)
        self.server.requests.append(raw)
        return raw

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def trickle(self, data: bytes, piece: int) -> None:
        """Send `data` `piece` bytes at a time, each let out apart, until the client closes
        the connection; the bytes that went out are counted on the server."""
        for start in range(0, len(data), piece):
            self.writer.write(data[start : start + piece])
            await self.writer.drain()
            self.server.sent = min(start + piece, len(data))
            await asyncio.sleep(0.001)

    async def pause(self) -> None:
        """Let what was sent leave on its own (the client reads it apart from what follows)."""
        await self.writer.drain()
        await asyncio.sleep(0.01)

    def reset(self) -> None:
        """Abort the connection with a TCP reset (RST), not an orderly close (FIN)."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    async def until_closed(self) -> None:
        """Read (and drop) whatever comes until the client closes the connection."""
        while await self.reader.read(1 << 16):
            pass


Handler = Callable[[Conn], Awaitable[None]]


class RawServer:
    def __init__(self) -> None:
        self.port = 0
        self.connections = 0  # accepted
        self.ended = 0  # over, whichever end closed them
        self.requests: list[bytes] = []
        self.sent = 0  # bytes `Conn.trickle` managed to send

    def url(self, path: str = "/", scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"


@asynccontextmanager
async def raw_server(
    handler: Handler, tls: ssl.SSLContext | None = None
) -> AsyncIterator[RawServer]:
    """A server on 127.0.0.1 running `handler` on each connection, closed when it returns (or
    when the client closes while it reads)."""
    server = RawServer()
    tasks: set[asyncio.Task[Any]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server.connections += 1
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await handler(Conn(server, reader, writer, server.connections))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client closed the connection
        except asyncio.CancelledError:
            pass  # the test is over (a cancelled task would make asyncio log an error)
        finally:
            server.ended += 1
            writer.close()

    listening = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=tls)
    server.port = listening.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        listening.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await listening.wait_closed()
        await asyncio.sleep(0.01)  # both ends see their connections closed


def head(*lines: bytes, status: bytes = b"200 OK") -> bytes:
    return b"HTTP/1.1 %s\r\n%s\r\n" % (status, b"".join(line + b"\r\n" for line in lines))


def ok(body: bytes = b"ok", *lines: bytes) -> bytes:
    """A 200 whose body has a Content-Length, with the header `lines` given."""
    return head(*lines, b"Content-Length: %d" % len(body)) + body


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


CHUNKED = head(b"Transfer-Encoding: chunked")
LAST = b"0\r\n\r\n"


def keep_answering(response: bytes) -> Handler:
    """Answers every request on a connection with `response`."""

    async def handle(conn: Conn) -> None:
        while True:
            await conn.request()
            conn.send(response)

    return handle


def answer_once(response: bytes) -> Handler:
    """Answers a connection's first request with `response`, then waits for the client to
    close the connection."""

    async def handle(conn: Conn) -> None:
        await conn.request()
        conn.send(response)
        await conn.until_closed()

    return handle


# An aiohttp server that notes the connections its requests came on.


class WebServer:
    def __init__(self) -> None:
        self.base = ""
        self.peers: set[tuple[str, int]] = set()  # one client address per connection


@asynccontextmanager
async def web_server(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    tls: ssl.SSLContext | None = None,
) -> AsyncIterator[WebServer]:
    served = WebServer()

    async def handle(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        served.peers.add(request.transport.get_extra_info("peername"))
        return await handler(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls).start()
    served.base = f"{'https' if tls else 'http'}://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield served
    finally:
        await runner.cleanup()


async def echo(request: web.Request) -> web.Response:
    return web.Response(body=await request.read())


# Helpers on the client's side.


@pytest.fixture
async def http() -> AsyncIterator[HTTPClient]:
    client = HTTPClient()
    yield client
    await client.close()


async def body_of(endpoint: Endpoint, data: bytes = b"{}") -> bytes:
    """Post `data`, read the whole body, release the response."""
    response = await endpoint.post(data)
    try:
        return await response.read()
    finally:
        response.release()


async def read_to_end(response: Response) -> bytes:
    """The whole body, by readany (`read` stops at 1 MiB)."""
    parts = []
    while data := await response.readany():
        parts.append(data)
    return b"".join(parts)


async def whole_body(endpoint: Endpoint) -> bytes:
    """Post, read the whole body by readany, release the response."""
    response = await endpoint.post(b"{}")
    try:
        return await read_to_end(response)
    finally:
        response.release()


async def eventually(condition: Callable[[], bool]) -> None:
    """Wait (at most a second) until `condition()` holds."""
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the condition never held")


# Framings


async def test_a_content_length_body_is_read_exactly_with_its_status_and_headers(http):
    async def handle(request: web.Request) -> web.Response:
        body = b"hello " + await request.read()
        return web.Response(status=201, body=body, headers={"X-Seen": "yes"})

    async with web_server(handle) as served:
        response = await http.endpoint(served.base + "/v1", {}).post(b"world")
        assert response.status == 201
        assert response.headers["x-seen"] == "yes"
        assert response.headers["Content-Length"] == "11"
        assert await response.read() == b"hello world"
        assert await response.readany() == b""
        assert response.is_eof()
        response.release()


async def test_a_chunked_body_with_extensions_and_trailers_is_read_exactly(http):
    first = (
        head(b"Transfer-Encoding: chunked", b"X-Multi: a", b"X-Multi: b")
        + chunk(b"data: one\n\n")
        + b"5;name=value;other\r\nhello\r\n"
        + chunk(b"x" * 300)
        + b"0\r\nX-Trailer: t\r\nX-Other-Trailer: u\r\n\r\n"
    )

    async def handle(conn: Conn) -> None:
        await conn.request()
        conn.send(first)
        await conn.request()
        conn.send(ok(b"second"))
        await conn.until_closed()

    async with raw_server(handle) as raw:
        endpoint = http.endpoint(raw.url(), {})
        response = await endpoint.post(b"")
        assert response.headers.getall("X-Multi") == ["a", "b"]
        assert await response.read() == b"data: one\n\nhello" + b"x" * 300
        assert await response.readany() == b""
        assert response.is_eof()
        response.release()
        again = await endpoint.post(b"")  # on the same connection, after the trailers
        assert await again.read() == b"second"
        assert "X-Trailer" not in again.headers
        assert "X-Other-Trailer" not in again.headers
        again.release()
    assert raw.connections == 1


async def test_a_body_without_length_ends_where_the_server_closes_the_connection(http):
    async def handle(conn: Conn) -> None:
        await conn.request()
        conn.send(head(b"Content-Type: text/plain") + b"first ")
        await conn.pause()
        conn.send(b"second")

    async with raw_server(handle) as raw:
        endpoint = http.endpoint(raw.url(), {})
        response = await endpoint.post(b"")
        assert await response.read() == b"first second"
        assert await response.readany() == b""
        assert response.is_eof()
        response.release()
        assert await body_of(endpoint) == b"first second"  # on a new connection
    assert raw.connections == 2


async def test_a_body_without_length_cut_by_a_reset_is_an_error_not_its_end(http):
    """Only an orderly close (FIN) ends a close-delimited body; a reset (RST) cuts it."""
    cut = asyncio.Event()

    async def handle(conn: Conn) -> None:
        await conn.request()
        conn.send(head(b"Content-Type: text/plain") + b"the start")
        await cut.wait()
        conn.reset()

    async with raw_server(handle) as raw:
        response = await http.endpoint(raw.url(), {}).post(b"")
        assert await response.readany() == b"the start"
        cut.set()
        with pytest.raises(ConnectionResetError):  # an OSError
            await response.readany()
        assert not response.is_eof()
        response.release()


async def test_a_204_without_length_has_no_body_and_keeps_its_connection(http):
    async with raw_server(keep_answering(head(status=b"204 No Content"))) as raw:
        endpoint = http.endpoint(raw.url(), {})
        for _ in range(2):
            response = await endpoint.post(b"")
            assert response.status == 204
            assert await response.readany() == b""
            assert response.is_eof()
            response.release()
    assert raw.connections == 1


async def test_chunks_that_arrive_in_one_write_reach_the_reader_as_one_piece(http):
    events = [b'data: {"n": %d}\n\n' % n for n in range(5)]
    go, end = asyncio.Event(), asyncio.Event()

    async def handle(conn: Conn) -> None:
        await conn.request()
        conn.send(CHUNKED)
        await go.wait()
        conn.send(b"".join(chunk(event) for event in events))  # one write, five chunks
        await end.wait()
        conn.send(LAST)
        await conn.until_closed()

    async with raw_server(handle) as raw:
        response = await http.endpoint(raw.url(), {}).post(b"")
        go.set()
        assert await response.readany() == b"".join(events)
        assert not response.is_eof()
        end.set()
        assert await response.readany() == b""
        assert response.is_eof()
        response.release()


async def test_read_with_a_limit_returns_the_first_bytes(http):
    async with raw_server(keep_answering(ok(bytes(range(100))))) as raw:
        response = await http.endpoint(raw.url(), {}).post(b"")
        assert await response.read(10) == bytes(range(10))
        response.release()


# Keep-alive


async def test_sequential_requests_reuse_one_connection(http):
    async with web_server(echo) as served:
        endpoint = http.endpoint(served.base + "/echo", {})
        for body in (b"one", b"two", b"three"):
            assert await body_of(endpoint, body) == body
    assert len(served.peers) == 1


async def test_endpoints_of_one_origin_share_its_connections(http):
    async with web_server(echo) as served:
        first = http.endpoint(served.base + "/a", {})
        second = http.endpoint(served.base + "/b", {"X-Other": "1"})
        assert await body_of(first, b"1") == b"1"
        assert await body_of(second, b"2") == b"2"
    assert len(served.peers) == 1


@pytest.mark.parametrize(
    "response",
    [
        ok(b"bye", b"Connection: close"),
        b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nbye",
        head(b"Transfer-Encoding: chunked", b"Connection: close") + chunk(b"bye") + LAST,
    ],
    ids=["connection-close", "http-1.0", "chunked-connection-close"],
)
async def test_a_response_that_closes_its_connection_is_not_reused(http, response):
    async def handle(conn: Conn) -> None:
        await conn.request()
        conn.send(response)
        await conn.until_closed()  # the client closes it on release

    async with raw_server(handle) as raw:
        endpoint = http.endpoint(raw.url(), {})
        assert await body_of(endpoint) == b"bye"
        await eventually(lambda: raw.ended == 1)
        assert await body_of(endpoint) == b"bye"
    assert raw.connections == 2


async def test_a_response_released_before_its_end_has_its_connection_closed(http):
    async with raw_server(answer_once(head(b"Content-Length: 10") + b"half.")) as raw:
        endpoint = http.endpoint(raw.url(), {})
        response = await endpoint.post(b"")
        assert await response.readany() == b"half."
        response.release()
        await eventually(lambda: raw.ended == 1)
        second = await endpoint.post(b"")
        assert await second.readany() == b"half."
        second.release()
    assert raw.connections == 2


async def test_release_after_end_reads_a_late_end_and_reuses_the_connection(http):
    end = asyncio.Event()

    async def handle(conn: Conn) -> None:
        await conn.request()
        conn.send(CHUNKED + chunk(b"data: [DONE]\n\n"))
        await end.wait()
        conn.send(chunk(b"dropped") + LAST)
        await conn.request()
        conn.send(ok(b"again"))
        await conn.until_closed()

    async with raw_server(handle) as raw:
        endpoint = http.endpoint(raw.url(), {})
        response = await endpoint.post(b"")
        assert await response.readany() == b"data: [DONE]\n\n"
        response.release_after_end(1.0)
        end.set()
        await asyncio.sleep(0.05)  # the end reaches the client
        assert await body_of(endpoint) == b"again"
    assert raw.connections == 1


async def test_release_after_end_of_a_complete_body_reuses_the_connection_at_once(http):
    async with raw_server(keep_answering(CHUNKED + chunk(b"all") + LAST)) as raw:
        endpoint = http.endpoint(raw.url(), {})
        response = await endpoint.post(b"")
        assert await response.readany() == b"all"
        response.release_after_end(None)
        assert await body_of(endpoint) == b"all"
    assert raw.connections == 1


async def test_release_after_end_closes_the_connection_when_the_end_does_not_come_in_time(http):
    async def handle(conn: Conn) -> None:
        await conn.request()
        conn.send(CHUNKED + chunk(b"data: [DONE]\n\n"))
        await conn.until_closed()  # the end never comes

    async with raw_server(handle) as raw:
        endpoint = http.endpoint(raw.url(), {})
        response = await endpoint.post(b"")
        assert await response.readany() == b"data: [DONE]\n\n"
        response.release_after_end(0.05)
        await eventually(lambda: raw.ended == 1)
        second = await endpoint.post(b"")
        assert await second.readany() == b"data: [DONE]\n\n"
        second.close()
    assert raw.connections == 2


async def test_an_idle_connection_past_the_keepalive_is_closed_and_replaced():
    client = HTTPClient(keepalive=0.05)
    try:
        async with raw_server(keep_answering(ok())) as raw:
            endpoint = client.endpoint(raw.url(), {})
            assert await body_of(endpoint) == b"ok"
            assert await body_of(endpoint) == b"ok"
            assert raw.connections == 1
            await asyncio.sleep(0.1)
            assert await body_of(endpoint) == b"ok"
            assert raw.connections == 2
            await eventually(lambda: raw.ended == 1)  # the expired one was closed
    finally:
        await client.close()


# Stale connections


async def test_connections_left_idle_by_a_burst_are_closed_once_past_the_keepalive():
    client = HTTPClient(keepalive=0.2)
    try:
        async with raw_server(keep_answering(ok())) as raw:
            endpoint = client.endpoint(raw.url(), {})
            await asyncio.gather(*(body_of(endpoint) for _ in range(5)))
            assert raw.connections == 5
            for _ in range(10):  # then one request at a time: one connection is enough
                assert await body_of(endpoint) == b"ok"
                await asyncio.sleep(0.05)
            await eventually(lambda: raw.ended >= 4)
    finally:
        await client.close()


async def test_connections_left_idle_by_a_burst_are_closed_at_their_keepalive_without_a_request():
    client = HTTPClient(keepalive=0.2)
    try:
        async with raw_server(keep_answering(ok())) as raw:
            endpoint = client.endpoint(raw.url(), {})
            await asyncio.gather(*(body_of(endpoint) for _ in range(5)))
            assert raw.connections == 5
            await asyncio.sleep(0.1)
            assert raw.ended == 0  # not before their keepalive
            await eventually(lambda: raw.ended == 5)  # and no request came to close them
    finally:
        await client.close()


async def test_a_connection_reused_within_its_keepalive_is_not_closed_by_the_timer():
    client = HTTPClient(keepalive=0.15)
    try:
        async with raw_server(keep_answering(ok())) as raw:
            endpoint = client.endpoint(raw.url(), {})
            for _ in range(12):
                assert await body_of(endpoint) == b"ok"
                await asyncio.sleep(0.04)
            assert (raw.connections, raw.ended) == (1, 0)
            await eventually(lambda: raw.ended == 1)
    finally:
        await client.close()


# At the cap of connections to one origin


def held_answers() -> tuple[Handler, asyncio.Event]:
    """A handler that answers each request, with its body, once the event is set."""
    go = asyncio.Event()

    async def handle(conn: Conn) -> None:
        while True:
            raw = await conn.request()
            await go.wait()
            conn.send(ok(raw.split(b"\r\n\r\n", 1)[1]))

    return handle, go


async def test_at_the_cap_a_request_waits_for_a_connection_to_come_back(caplog):
    client = HTTPClient(connections=2, connect_timeout=5)
    handle, go = held_answers()
    try:
        async with raw_server(handle) as raw:
            endpoint = client.endpoint(raw.url(), {})
            tasks = [asyncio.create_task(body_of(endpoint, b"%d" % i)) for i in range(3)]
            await eventually(lambda: len(raw.requests) == 2)
            await asyncio.sleep(0.05)
            assert raw.connections == 2  # the third waits, unsent
            assert len(raw.requests) == 2
            go.set()
            assert await asyncio.gather(*tasks) == [b"0", b"1", b"2"]
            assert raw.connections == 2  # it was served on one that came back
    finally:
        await client.close()
    warned = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1
    assert "2 connections" in warned[0].getMessage()


async def test_at_the_cap_waiting_requests_are_served_in_turn():
    client = HTTPClient(connections=1, connect_timeout=5)
    handle, go = held_answers()
    try:
        async with raw_server(handle) as raw:
            endpoint = client.endpoint(raw.url(), {})
            tasks = []
            for i in range(4):
                tasks.append(asyncio.create_task(body_of(endpoint, b"%d" % i)))
                await asyncio.sleep(0.01)  # they queue in this order
            go.set()
            assert await asyncio.gather(*tasks) == [b"0", b"1", b"2", b"3"]
            assert [r.split(b"\r\n\r\n", 1)[1] for r in raw.requests] == [b"0", b"1", b"2", b"3"]
            assert raw.connections == 1
    finally:
        await client.close()


async def test_at_the_cap_a_request_none_comes_back_for_fails_as_a_connect_timeout(caplog):
    client = HTTPClient(connections=2, connect_timeout=0.2)
    handle, go = held_answers()
    try:
        async with raw_server(handle) as raw:
            endpoint = client.endpoint(raw.url(), {})
            held = [asyncio.create_task(endpoint.post(b"{}")) for _ in range(2)]
            await eventually(lambda: len(raw.requests) == 2)
            async with asyncio.timeout(2):
                with pytest.raises(TimeoutError, match="connect timeout: 2 connections"):
                    await endpoint.post(b"{}")
                with pytest.raises(TimeoutError, match="connect timeout"):
                    await endpoint.post(b"{}")
            assert raw.connections == 2
            go.set()
            for response in await asyncio.gather(*held):
                response.release()
            assert await body_of(endpoint) == b"{}"  # the places it waited for are whole
            assert raw.connections == 2
    finally:
        await client.close()
    assert len([r for r in caplog.records if r.levelname == "WARNING"]) == 1  # said once


async def test_a_waiting_request_that_gives_up_leaves_its_turn_to_the_next():
    client = HTTPClient(connections=1, connect_timeout=5)
    handle, go = held_answers()
    try:
        async with raw_server(handle) as raw:
            endpoint = client.endpoint(raw.url(), {})
            first = asyncio.create_task(body_of(endpoint, b"first"))
            await eventually(lambda: len(raw.requests) == 1)
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.05):  # its caller's own deadline
                    await endpoint.post(b"gave up")
            last = asyncio.create_task(body_of(endpoint, b"last"))
            await asyncio.sleep(0.02)
            go.set()
            assert [await first, await last] == [b"first", b"last"]
            assert raw.connections == 1
            assert [r.split(b"\r\n\r\n", 1)[1] for r in raw.requests] == [b"first", b"last"]
    finally:
        await client.close()


async def test_a_place_freed_by_a_connection_that_closes_goes_to_the_waiting_request():
    client = HTTPClient(connections=1, connect_timeout=5)

    async def handle(conn: Conn) -> None:
        await conn.request()
        if conn.number == 1:
            await asyncio.sleep(0.05)
            conn.send(ok(b"once", b"Connection: close"))
        else:
            conn.send(ok(b"then, %d closed" % conn.server.ended))
        await conn.until_closed()

    try:
        async with raw_server(handle) as raw:
            endpoint = client.endpoint(raw.url(), {})
            first = asyncio.create_task(body_of(endpoint))
            await eventually(lambda: raw.connections == 1)
            # on a new connection, once the first closed
            assert await body_of(endpoint) == b"then, 1 closed"
            assert await first == b"once"
            assert raw.connections == 2
    finally:
        await client.close()


async def test_a_kept_connection_the_server_closed_while_idle_is_replaced(http):
    idle = asyncio.Event()

    async def handle(conn: Conn) -> None:
        await conn.request()
        conn.send(ok(b"fine"))  # kept alive, as far as the client knows
        await idle.wait()  # and closed once the client holds it idle

    async with raw_server(handle) as raw:
        endpoint = http.endpoint(raw.url(), {})
        assert await body_of(endpoint) == b"fine"
        idle.set()
        await eventually(lambda: raw.ended == 1)
        assert await body_of(endpoint) == b"fine"
    assert raw.connections == 2


async def test_a_kept_connection_closed_instead_of_answering_is_retried_on_a_new_one(http):
    async def handle(conn: Conn) -> None:
        await conn.request()
        conn.send(ok(b"from %d" % conn.number))
        await conn.request()  # the next one is not answered: the server closes

    async with raw_server(handle) as raw:
        endpoint = http.endpoint(raw.url(), {})
        assert await body_of(endpoint, b"1") == b"from 1"
        assert await body_of(endpoint, b"2") == b"from 2"
    assert raw.connections == 2
    assert [request.split(b"\r\n\r\n")[1] for request in raw.requests] == [b"1", b"2", b"2"]


async def test_a_request_is_retried_once_only(http):
    async def handle(conn: Conn) -> None:
        await conn.request()
        if conn.number == 1:
            conn.send(ok())
            await conn.request()

    async with raw_server(handle) as raw:
        endpoint = http.endpoint(raw.url(), {})
        assert await body_of(endpoint) == b"ok"
        with pytest.raises(ConnectionResetError):
            await endpoint.post(b"{}")
    assert raw.connections == 2


async def test_a_new_connection_closed_without_an_answer_raises_connection_reset(http):
    async def handle(conn: Conn) -> None:
        await conn.request()

    async with raw_server(handle) as raw:
        with pytest.raises(ConnectionResetError):
            await http.endpoint(raw.url(), {}).post(b"{}")
    assert raw.connections == 1  # no retry for a connection that never answered


# Errors


async def test_connecting_to_a_port_nobody_listens_on_is_an_oserror(http):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    with pytest.raises(ConnectionRefusedError):  # an OSError
        await http.endpoint(f"http://127.0.0.1:{port}/", {}).post(b"{}")


@pytest.mark.asyncio(loop_factories=["asyncio"])  # it stands in for the lookup asyncio makes
async def test_a_host_is_looked_up_once_for_a_burst_and_its_addresses_tried_in_turn(
    http, monkeypatch
):
    lookups: list[str] = []

    def getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        lookups.append(host)
        time.sleep(0.05)  # a slow resolver: the whole burst arrives while it works
        stream = (socket.AF_INET, socket.SOCK_STREAM, 6, "")
        return [(*stream, ("127.0.0.2", port)), (*stream, ("127.0.0.1", port))]

    async with raw_server(keep_answering(ok())) as raw:  # on 127.0.0.1 only
        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
        endpoint = http.endpoint(f"http://provider.test:{raw.port}/v1", {})
        bodies = await asyncio.gather(*(body_of(endpoint) for _ in range(10)))
        assert bodies == [b"ok"] * 10
        assert lookups == ["provider.test"]
        assert raw.connections == 10  # each to the second address, the first refused
        monkeypatch.undo()


async def test_the_connect_timeout_bounds_a_tls_handshake_that_never_answers():
    client = HTTPClient(connect_timeout=0.2)
    try:
        async with raw_server(Conn.until_closed) as raw:
            endpoint = client.endpoint(raw.url(scheme="https"), {})
            async with asyncio.timeout(2):
                with pytest.raises(TimeoutError, match="connect timeout"):
                    await endpoint.post(b"{}")
            assert raw.connections == 1
    finally:
        await client.close()


@pytest.mark.parametrize(
    "response",
    [b"HTP/1.1 200 OK\r\n\r\n", b"HTTP/1.1 2x0 OK\r\n\r\n", b"garbage\r\n\r\n"],
    ids=["protocol", "status", "garbage"],
)
async def test_a_malformed_status_line_is_a_bad_response(http, response):
    async with raw_server(answer_once(response)) as raw:
        with pytest.raises(BadResponse):
            await http.endpoint(raw.url(), {}).post(b"{}")
        await eventually(lambda: raw.ended == 1)  # the client closed the connection


async def test_an_invalid_chunk_size_is_a_bad_response(http):
    async def handle(conn: Conn) -> None:
        await conn.request()
        conn.send(CHUNKED)
        await conn.pause()
        conn.send(b"zz\r\nhello\r\n")
        await conn.until_closed()

    async with raw_server(handle) as raw:
        response = await http.endpoint(raw.url(), {}).post(b"{}")
        with pytest.raises(BadResponse):
            await response.read()
        with pytest.raises(BadResponse):  # and so does any later read
            await response.readany()
        response.release()
        await eventually(lambda: raw.ended == 1)


@pytest.mark.parametrize(
    "cut",
    [head(b"Content-Length: 100") + b"0123456789", CHUNKED + chunk(b"0123456789") + b"5\r\nab"],
    ids=["content-length", "chunked"],
)
async def test_a_body_cut_short_raises_connection_reset_after_the_bytes_that_came(http, cut):
    async def handle(conn: Conn) -> None:
        await conn.request()
        conn.send(cut)  # and close

    async with raw_server(handle) as raw:
        response = await http.endpoint(raw.url(), {}).post(b"{}")
        got = b""
        while True:
            try:
                piece = await response.readany()
            except ConnectionResetError:  # an OSError
                break
            assert piece, "a cut body must not look ended"
            got += piece
        assert got.startswith(b"0123456789")
        assert not response.is_eof()
        response.release()


async def test_a_body_followed_by_stray_bytes_is_still_delivered(http):
    """The server sends more than its Content-Length said, in the same write: the body it
    declared is the body; the rest makes the connection unusable, not the body empty."""

    async with raw_server(answer_once(head(b"Content-Length: 5") + b"hello world")) as raw:
        response = await http.endpoint(raw.url(), {}).post(b"{}")
        assert response.status == 200
        assert await response.read() == b"hello"
        response.release()


async def test_a_second_response_in_the_same_write_does_not_become_the_first(http):
    """Bytes after the end of a response are nobody's answer: they must not change the status,
    headers or body of the response they follow."""

    async with raw_server(
        answer_once(ok(b"ok", b"X-First: 1") + ok(b"extra").replace(b"200 OK", b"500 Oops"))
    ) as raw:
        response = await http.endpoint(raw.url(), {}).post(b"{}")
        assert (response.status, response.headers.get("X-First")) == (200, "1")
        assert await response.read() == b"ok"
        response.release()


async def test_an_unasked_for_switching_protocols_is_a_bad_response(http):
    upgrade = head(b"Upgrade: websocket", b"Connection: Upgrade", status=b"101 Switching Protocols")

    async with raw_server(answer_once(upgrade)) as raw:
        with pytest.raises(BadResponse):
            await http.endpoint(raw.url(), {}).post(b"{}")


async def test_bare_lf_line_ends_are_read_as_aiohttps_client_read_them(http):
    raw_response = b"HTTP/1.1 200 OK\nContent-Length: 2\nX-Odd: a\tb\xe9\n\nok"
    async with raw_server(keep_answering(raw_response)) as raw:
        response = await http.endpoint(raw.url(), {}).post(b"{}")
        assert (response.status, await response.read()) == (200, b"ok")
        assert response.headers["X-Odd"] == "a\tb\xe9"  # HTAB and obs-text pass
        response.release()


@pytest.mark.parametrize("odd", [b"\x00", b"\x01", b"\x1f", b"\x7f", b"\r"])
async def test_a_control_character_in_a_header_value_is_a_bad_response(http, odd):
    async with raw_server(answer_once(ok(b"ok", b"X-Odd: a%sb" % odd))) as raw:
        with pytest.raises(BadResponse):
            await http.endpoint(raw.url(), {}).post(b"{}")
        await eventually(lambda: raw.ended == 1)  # the client closed the connection


ENDLESS = 1 << 17
"""Bytes an attacking upstream offers: twice the most a response may send outside its body."""


@pytest.mark.parametrize(
    ("attack", "said"),
    [
        (head(status=b"200 OK")[:-2] + b"X-Huge: " + b"y" * ENDLESS, "a line of its headers"),
        (head(*(b"X-%d: %s" % (n, b"y" * 2000) for n in range(66))), "its headers pass"),
        (head(*(b"X-%d: y" % n for n in range(30_000))), "more than 128 headers"),
        (CHUNKED + chunk(b"ok") + b"0\r\nX-Trailer: " + b"y" * ENDLESS, "a line of its headers"),
    ],
    ids=["one-huge-value", "many-large-headers", "30000-headers", "endless-trailer"],
)
async def test_a_head_past_a_limit_is_refused_as_it_arrives_not_once_it_is_whole(
    http, attack, said
):
    """The attack comes in small writes: the client stops after about the limit (of 8 KiB a
    line, 128 headers, 64 KiB in all), never blocking its loop for long."""

    async def handle(conn: Conn) -> None:
        await conn.request()
        await conn.trickle(attack, 2048)
        await conn.until_closed()

    async with raw_server(handle) as raw, lag_probe() as lag:
        endpoint = http.endpoint(raw.url(), {})
        with pytest.raises(BadResponse, match=said):
            await whole_body(endpoint)
        await eventually(lambda: raw.ended == 1)
    assert len(attack) >= 1 << 17
    assert raw.sent < (1 << 16) + (1 << 15), raw.sent  # the limit and some bytes in flight
    assert lag[0] < 0.05


async def test_headers_past_64_kib_are_a_bad_response(http):
    huge = head(*(b"X-Filler-%d: %s" % (i, b"y" * 1000) for i in range(70)), b"Content-Length: 0")
    async with raw_server(keep_answering(huge)) as raw:
        with pytest.raises(BadResponse, match="headers pass"):
            await http.endpoint(raw.url(), {}).post(b"{}")


# Content encodings


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [("gzip", gzip.compress), ("x-gzip", gzip.compress), ("deflate", zlib.compress)],
)
async def test_a_compressed_body_is_decompressed_as_it_arrives(http, encoding, compress):
    text = b"".join(b'data: {"n": %d}\n\n' % n for n in range(200))
    packed = compress(text)
    third = len(packed) // 3

    async def handle(conn: Conn) -> None:
        await conn.request()
        conn.send(head(b"Transfer-Encoding: chunked", b"Content-Encoding: " + encoding.encode()))
        for piece in (packed[:third], packed[third : 2 * third], packed[2 * third :]):
            conn.send(chunk(piece))
            await conn.pause()
        conn.send(LAST)
        await conn.until_closed()

    async with raw_server(handle) as raw:
        response = await http.endpoint(raw.url(), {}).post(b"{}")
        assert response.headers["Content-Encoding"] == encoding
        assert await response.read() == text
        assert response.is_eof()
        response.release()


@pytest.mark.parametrize(
    ("body", "said"),
    [
        # without its trailer (CRC and length): an end too early, not a short body
        (gzip.compress(b"x" * 1000)[:-8], "ends early"),
        # 20 MiB of zeros in ~20 KB: a piece that would expand without bound
        (gzip.compress(b"\0" * (20 << 20)), "expands past"),
        (b"not gzip at all", "corrupt"),
    ],
    ids=["ends-early", "bomb", "corrupt"],
)
async def test_a_broken_gzip_body_is_a_bad_response(http, body, said):
    async with raw_server(keep_answering(ok(body, b"Content-Encoding: gzip"))) as raw:
        response = await http.endpoint(raw.url(), {}).post(b"{}")
        with pytest.raises(BadResponse, match=said):
            await read_to_end(response)
        response.release()


async def test_an_unsupported_content_encoding_is_a_bad_response(http):
    async with raw_server(
        answer_once(ok(b"\x0b\x02\x80hello\x03", b"Content-Encoding: br"))
    ) as raw:
        with pytest.raises(BadResponse, match="br"):
            await http.endpoint(raw.url(), {}).post(b"{}")
        await eventually(lambda: raw.ended == 1)  # the client closed the connection


# The request


def fields(request: bytes) -> tuple[str, list[tuple[str, str]], bytes]:
    """The request line, the header lines (name lowercased) and the body of a raw request."""
    head, _, body = request.partition(b"\r\n\r\n")
    line, *lines = head.decode("latin-1").split("\r\n")
    pairs = [(n.lower(), v.strip()) for n, _, v in (x.partition(":") for x in lines)]
    return line, pairs, body


async def test_the_request_carries_host_length_defaults_and_the_given_headers(http):
    async with raw_server(keep_answering(ok())) as raw:
        endpoint = http.endpoint(
            raw.url("/v1/chat/completions?beta=1"),
            {"Authorization": "Bearer k", "Content-Type": "application/json"},
        )
        assert await body_of(endpoint, b'{"model":"m"}') == b"ok"
        assert await body_of(endpoint, b"") == b"ok"
    first, second = (fields(request) for request in raw.requests)
    line, pairs, body = first
    assert line == "POST /v1/chat/completions?beta=1 HTTP/1.1"
    assert sorted(pairs) == sorted(
        [
            ("host", f"127.0.0.1:{raw.port}"),
            ("authorization", "Bearer k"),
            ("content-type", "application/json"),
            ("user-agent", "ai-api"),
            ("accept-encoding", "identity"),
            ("content-length", "13"),
        ]
    )
    assert body == b'{"model":"m"}'
    assert ("content-length", "0") in second[1]
    assert second[2] == b""


async def test_a_url_without_a_path_posts_to_the_root(http):
    async with raw_server(keep_answering(ok())) as raw:
        assert await body_of(http.endpoint(f"http://127.0.0.1:{raw.port}", {})) == b"ok"
    assert fields(raw.requests[0])[0] == "POST / HTTP/1.1"


async def test_given_user_agent_and_accept_encoding_replace_the_defaults(http):
    async with raw_server(keep_answering(ok())) as raw:
        endpoint = http.endpoint(raw.url(), {"user-agent": "mine/1", "Accept-Encoding": "gzip"})
        assert await body_of(endpoint) == b"ok"
    pairs = fields(raw.requests[0])[1]
    assert [v for n, v in pairs if n == "user-agent"] == ["mine/1"]
    assert [v for n, v in pairs if n == "accept-encoding"] == ["gzip"]


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Evil": "a\r\nInjected: 1"},
        {"X-Evil": "a\nb"},
        {"X-Evil": "a\rb"},
        {"X-Evil": "a\0b"},
        {"X-Evil\r\nInjected": "1"},
        {"X:Evil": "1"},
        {"X Evil": "1"},
        {"": "1"},
    ],
    ids=["crlf", "lf", "cr", "nul", "name-crlf", "name-colon", "name-space", "name-empty"],
)
def test_headers_http_cannot_carry_are_refused_when_the_endpoint_is_made(headers):
    with pytest.raises(ValueError, match="not allow"):
        HTTPClient().endpoint("http://127.0.0.1:1/", headers)


@pytest.mark.parametrize("name", ["Host", "content-length", "Transfer-Encoding", "Connection"])
def test_headers_that_frame_the_request_are_the_clients_own(name):
    """Two Host or Content-Length headers are how requests get smuggled: refuse them."""
    with pytest.raises(ValueError, match="the client's to send"):
        HTTPClient().endpoint("http://127.0.0.1:1/", {name: "1"})


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/", "127.0.0.1:80/x", "http:///path", ""])
def test_only_http_and_https_urls_make_endpoints(url):
    with pytest.raises(ValueError, match="not an http"):
        HTTPClient().endpoint(url, {})


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("http://user:secret@127.0.0.1/v1", "credentials"),
        ("http://127.0.0.1/v1 HTTP/1.0\r\nX: y", "spaces or control"),
        ("http://127.0.0.1/a b", "spaces or control"),
    ],
)
def test_urls_that_would_leak_or_break_the_request_line_are_refused(url, said):
    with pytest.raises(ValueError, match=said) as caught:
        HTTPClient().endpoint(url, {})
    assert "secret" not in str(caught.value)


# TLS


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key."""
    return self_signed(tmp_path, "c", "localhost", "127.0.0.1")


def serving(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


async def test_https_with_a_trusted_certificate_reads_the_body_and_reuses_the_connection(
    certificate,
):
    client = HTTPClient(ssl_context=ssl.create_default_context(cafile=certificate[0]))
    try:
        async with web_server(echo, tls=serving(certificate)) as served:
            assert served.base.startswith("https://")
            endpoint = client.endpoint(served.base + "/v1", {})
            assert await body_of(endpoint, b"secret one") == b"secret one"
            assert await body_of(endpoint, b"secret two") == b"secret two"
        assert len(served.peers) == 1
    finally:
        await client.close()


async def test_https_with_a_certificate_the_system_does_not_trust_fails_with_an_oserror(
    http, certificate
):
    async with web_server(echo, tls=serving(certificate)) as served:
        async with asyncio.timeout(2):
            with pytest.raises(ssl.SSLCertVerificationError):  # an OSError
                await http.endpoint(served.base + "/v1", {}).post(b"{}")
        assert not served.peers  # no request got through


async def test_https_offers_http_1_1_only_so_no_server_picks_http_2(certificate):
    chosen: list[str | None] = []

    async def handle(conn: Conn) -> None:
        chosen.append(conn.writer.get_extra_info("ssl_object").selected_alpn_protocol())
        await conn.request()
        conn.send(ok())

    tls = serving(certificate)
    tls.set_alpn_protocols(["h2", "http/1.1"])
    client = HTTPClient(ssl_context=ssl.create_default_context(cafile=certificate[0]))
    try:
        async with raw_server(handle, tls=tls) as raw:
            assert await body_of(client.endpoint(raw.url(scheme="https"), {})) == b"ok"
        assert chosen == ["http/1.1"]
    finally:
        await client.close()


class StuckPeer:
    """A TLS server in a thread, with blocking sockets: it answers one request with its headers
    and part of its body, then neither sends nor reads, so a TLS goodbye sent to it is never
    answered (as from a provider that hung)."""

    def __init__(self, certificate: tuple[Path, Path]) -> None:
        self._tls = serving(certificate)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(5)
        self.port = self._listener.getsockname()[1]
        self.client_port = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> StuckPeer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(10)
        self._listener.close()

    def _serve(self) -> None:
        raw, (_, self.client_port) = self._listener.accept()
        raw.settimeout(5)
        with self._tls.wrap_socket(raw, server_side=True) as conn:
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(1 << 16)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
            self._done.wait(10)


def tcp_state(local_port: int, remote_port: int) -> str | None:
    """The state of the IPv4 TCP socket from `local_port` to `remote_port` on this machine
    (`01` established), or None when there is none."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, remote, state = line.split()[1:4]
        if (int(local.split(":")[1], 16), int(remote.split(":")[1], 16)) == (
            local_port,
            remote_port,
        ):
            return state
    return None


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's /proc/net/tcp")
async def test_a_tls_connection_dropped_mid_answer_is_let_go_at_once(certificate):
    """Mid-answer, a polite TLS close would keep the socket open (up to 30 s) for the peer's
    goodbye, which a hung provider never sends: the connection is aborted instead."""
    client = HTTPClient(ssl_context=ssl.create_default_context(cafile=certificate[0]))
    try:
        with StuckPeer(certificate) as peer:
            response = await client.endpoint(f"https://127.0.0.1:{peer.port}/", {}).post(b"{}")
            assert await response.readany() == b"x" * 10
            assert tcp_state(peer.client_port, peer.port) == "01"
            response.close()  # as the silence watch does
            await eventually(lambda: tcp_state(peer.client_port, peer.port) != "01")
    finally:
        await client.close()


# Bulk reading


async def test_a_reader_taking_the_body_whole_is_woken_at_its_end_not_per_arrival(http):
    async def handle(conn: Conn) -> None:
        await conn.request()
        conn.send(CHUNKED + chunk(b"first"))
        await conn.pause()
        for piece in (b" second", b" third"):
            conn.send(chunk(piece))
            await conn.pause()
        conn.send(LAST)
        await conn.until_closed()

    async with raw_server(handle) as raw:
        response = await http.endpoint(raw.url(), {}).post(b"{}")
        assert await response.readany() == b"first"
        assert await response.readany(until_any=()) == b" second third"  # one piece, at the end
        assert response.last_data > 0
        assert await response.readany() == b""
        response.release()


async def test_a_reader_waiting_for_a_mark_is_woken_by_it_or_by_enough_bytes(http):
    async def handle(conn: Conn) -> None:
        await conn.request()
        conn.send(CHUNKED + chunk(b"first"))
        for piece in (b" second", b" [END]", b" 1234", b"5678", b" rest"):
            await conn.pause()
            conn.send(chunk(piece))
        await conn.pause()
        conn.send(LAST)
        await conn.until_closed()

    async with raw_server(handle) as raw:
        response = await http.endpoint(raw.url(), {}).post(b"{}")
        assert await response.readany() == b"first"
        assert await response.readany(until_any=(b"[END]",)) == b" second [END]"
        assert await response.readany(until_any=(b"[END]",), max_bytes=9) == b" 12345678"
        assert await response.readany() == b" rest"
        assert await response.readany() == b""
        response.release()


# fail()


class Stop(Exception):
    pass


async def test_fail_raises_in_the_pending_read_and_closes_the_connection(http):
    async with raw_server(answer_once(CHUNKED + chunk(b"first"))) as raw:
        endpoint = http.endpoint(raw.url(), {})
        response = await endpoint.post(b"{}")
        assert await response.readany() == b"first"
        pending = asyncio.create_task(response.readany())
        await asyncio.sleep(0)
        assert not pending.done()  # waiting for more
        stop = Stop("no data within the read timeout")
        response.fail(stop)
        with pytest.raises(Stop) as info:
            await pending
        assert info.value is stop
        with pytest.raises(Stop):
            await response.readany()
        await eventually(lambda: raw.ended == 1)  # fail() closed it (not a later release)
        response.release()
        second = await endpoint.post(b"{}")  # on a new connection
        assert await second.readany() == b"first"
        second.close()
    assert raw.connections == 2


# Flow control

BIG = bytes(range(256)) * 8192  # 2 MiB


@pytest.mark.parametrize(
    "response",
    [
        ok(BIG),
        CHUNKED + b"".join(chunk(BIG[i : i + 65536]) for i in range(0, len(BIG), 65536)) + LAST,
    ],
    ids=["content-length", "chunked"],
)
async def test_a_large_body_the_reader_is_slow_to_take_arrives_whole(http, response):
    async with raw_server(keep_answering(response)) as raw:
        endpoint = http.endpoint(raw.url(), {})
        first = await endpoint.post(b"{}")
        await asyncio.sleep(0.1)  # the body piles up (and the client stops reading)
        async with asyncio.timeout(1):
            assert await read_to_end(first) == BIG
            first.release()
            second = await endpoint.post(b"{}")  # and the connection still works
            assert await read_to_end(second) == BIG
            second.release()
    assert raw.connections == 1


async def test_a_large_body_that_arrived_whole_and_was_released_unread_leaves_a_working_connection(
    http,
):
    """One small read inflates past the client's high-water mark, so it stops reading the
    socket; releasing the (complete) response must not pool a connection that reads nothing."""
    packed = gzip.compress(bytes(1 << 20))
    async with raw_server(keep_answering(ok(packed, b"Content-Encoding: gzip"))) as raw:
        endpoint = http.endpoint(raw.url(), {})
        response = await endpoint.post(b"{}")
        await asyncio.sleep(0.05)  # all of it arrives
        response.release()
        async with asyncio.timeout(0.5):
            assert await body_of(endpoint) == bytes(1 << 20)


# Interim responses


@pytest.mark.parametrize("apart", [False, True], ids=["one-write", "two-writes"])
async def test_a_100_continue_before_the_response_is_skipped(http, apart):
    async def handle(conn: Conn) -> None:
        await conn.request()
        conn.send(head(status=b"100 Continue"))
        if apart:
            await conn.pause()
        conn.send(ok(b"real", b"X-Real: yes"))
        await conn.until_closed()

    async with raw_server(handle) as raw:
        response = await http.endpoint(raw.url(), {}).post(b"{}")
        assert response.status == 200
        assert response.headers["X-Real"] == "yes"
        assert await response.read() == b"real"
        response.release()


async def test_the_headers_of_103_early_hints_are_not_the_responses(http):
    hints = head(b"Link: </style.css>; rel=preload", status=b"103 Early Hints")
    async with raw_server(keep_answering(hints + ok(b"real"))) as raw:
        endpoint = http.endpoint(raw.url(), {})
        for _ in range(2):  # and the connection is kept
            response = await endpoint.post(b"{}")
            assert response.status == 200
            assert "Link" not in response.headers
            assert await response.read() == b"real"
            response.release()
    assert raw.connections == 1


# Closing the client


async def test_closing_the_client_closes_its_idle_connections():
    client = HTTPClient()
    both = asyncio.Event()

    async def handle(conn: Conn) -> None:
        await conn.request()
        if len(conn.server.requests) == 2:
            both.set()
        await both.wait()  # two requests in flight at once: two connections
        conn.send(ok(b"%d" % conn.number))
        await conn.until_closed()

    async with raw_server(handle) as raw:
        endpoint = client.endpoint(raw.url(), {})
        bodies = await asyncio.gather(body_of(endpoint), body_of(endpoint))
        assert sorted(bodies) == [b"1", b"2"]
        assert raw.connections == 2
        assert raw.ended == 0
        await client.close()
        await eventually(lambda: raw.ended == 2)


async def test_a_connection_in_use_when_the_client_closes_is_closed_on_release():
    client = HTTPClient()
    async with raw_server(keep_answering(ok(b"late"))) as raw:
        response = await client.endpoint(raw.url(), {}).post(b"{}")
        await client.close()
        assert await response.read() == b"late"
        response.release()
        await eventually(lambda: raw.ended == 1)
