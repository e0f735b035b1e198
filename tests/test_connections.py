"""Bounded clients, over raw sockets on 127.0.0.1: slow headers, slow bodies and idle
keep-alive connections are dropped after their timeouts, and past the connection cap new
connections are answered 503 and closed, with one log line."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import aiohttp

from ai_api.server import running

from .conftest import settings_for

HEAD = b"POST /chat HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"


@asynccontextmanager
async def raw(url: str) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        yield reader, writer
    finally:
        writer.close()


async def trickle(url: str, data: bytes, pause: float = 0.1) -> float:
    """Send `data` a byte at a time; seconds until the gateway closed the connection."""
    started = time.monotonic()
    async with raw(url) as (reader, writer):
        try:
            for byte in data:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(pause)
                if reader.at_eof() or writer.is_closing():
                    break
            await asyncio.wait_for(reader.read(), 5)
        except ConnectionError:
            pass
    return time.monotonic() - started


async def closed_after(reader: asyncio.StreamReader) -> float:
    started = time.monotonic()
    with suppress(ConnectionError):
        await asyncio.wait_for(reader.read(), 5)
    return time.monotonic() - started


async def test_trickling_headers_are_dropped_and_a_fresh_client_is_served_meanwhile(
    groq, client: aiohttp.ClientSession
):
    settings = settings_for(groq, header_timeout=0.5)
    async with running(settings) as url:
        tricklers = [asyncio.create_task(trickle(url, HEAD * 10)) for _ in range(20)]
        await asyncio.sleep(0.2)
        async with client.get(url + "/health") as response:
            assert response.status == 200
        took = await asyncio.gather(*tricklers)
    assert all(0.4 < t < 1.5 for t in took), took


async def test_a_connection_that_never_sends_is_dropped_after_the_header_timeout(groq):
    async with running(settings_for(groq, header_timeout=0.3)) as url, raw(url) as (reader, _):
        assert 0.2 < await closed_after(reader) < 1.5


async def test_an_idle_keep_alive_connection_is_dropped_after_the_keep_alive_timeout(groq):
    settings = settings_for(groq, keepalive_timeout=0.5, header_timeout=5)
    async with running(settings) as url, raw(url) as (reader, writer):
        writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        assert 0.3 < await closed_after(reader) < 2.5


async def test_a_trickling_body_is_a_408_in_the_api_shape_and_the_connection_closes(groq):
    settings = settings_for(groq, body_timeout=0.4, header_timeout=5)
    async with running(settings) as url, raw(url) as (reader, writer):
        writer.write(HEAD + b"Content-Length: 100\r\n\r\n{")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
        assert head.startswith(b"HTTP/1.1 408")
        body = await asyncio.wait_for(reader.read(), 3)  # then EOF: the connection is closed
    assert json.loads(body)["error"]["code"] == "request_timeout"
    assert groq.requests == []


async def test_past_the_connection_cap_new_connections_get_a_503_and_one_log_line(
    groq, client: aiohttp.ClientSession, caplog
):
    settings = settings_for(groq, max_connections=3, header_timeout=10)
    async with running(settings) as url:
        host, port = url.removeprefix("http://").split(":")
        held = [await asyncio.open_connection(host, int(port)) for _ in range(3)]
        await asyncio.sleep(0.05)
        answers = []
        for _ in range(5):
            async with raw(url) as (reader, _):
                answers.append(await asyncio.wait_for(reader.read(), 3))
        for _, writer in held:
            writer.close()
        await asyncio.sleep(0.05)
        async with client.get(url + "/health") as response:
            assert response.status == 200
    for answer in answers:
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503")
        assert json.loads(body)["error"]["code"] == "too_many_connections"
    lines = [r for r in caplog.records if "client connections are open" in r.getMessage()]
    assert len(lines) == 1
    assert lines[0].levelno == logging.WARNING
