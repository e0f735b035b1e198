"""Serving the app: what the running server logs of the connections it takes."""

from __future__ import annotations

import asyncio
import logging

import pytest


@pytest.mark.parametrize(
    "head",
    [
        b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Probe: \x00\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Long: " + b"a" * 10_000 + b"\r\n\r\n",
    ],
    ids=["nul-in-a-header", "header-too-long"],
)
async def test_a_malformed_header_is_a_400_without_an_error_in_the_log(gateway, caplog, head):
    # Found by schemathesis (its NUL-in-a-header probe): aiohttp logged each at ERROR with
    # a traceback, so anyone who could connect could fill the log.
    caplog.set_level(logging.DEBUG)
    host, port = gateway.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(head)
    await writer.drain()
    reply = await asyncio.wait_for(reader.read(200), timeout=5)
    writer.close()
    assert reply.startswith(b"HTTP/1.1 400 ") or reply.startswith(b"HTTP/1.0 400 ")
    shown = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert [r for r in shown if r.levelno >= logging.ERROR or r.exc_info] == []
    assert any(r.name == "aiohttp.server" and r.exc_info for r in caplog.records)  # at DEBUG
