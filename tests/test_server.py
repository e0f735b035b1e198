"""The drain at SIGTERM: a real gateway process, streams from slow fake upstreams, its ledger;
and what the running server logs of a malformed request."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sqlite3
import time
from pathlib import Path

import aiohttp
import pytest

from ai_api.fakes import FakeUpstream, Fault
from ai_api.server import running

from .conftest import KEYS, parse_events, settings_for
from .test_cli import HELLO, ai_api

WHOLE = {**HELLO, "model": "auto", "max_tokens": 64}
STREAM = {**WHOLE, "stream": True}


def gateway_env(groq: FakeUpstream, ledger: Path, **extra: str) -> dict[str, str]:
    """A gateway over `groq` (without the preset's free-tier guesses: every request in flight
    at once), its ledger in `ledger`."""
    config = ledger.with_name("ai-api.toml")
    config.write_text("[providers.groq]\nguesses = false\n")
    return {
        "GROQ_API_KEY": KEYS["groq"],
        "GROQ_BASE_URL": groq.base_url,
        "AI_API_LEDGER": str(ledger),
        "AI_API_CONFIG": str(config),
        **extra,
    }


def ledger_rows(ledger: Path) -> list[tuple[int, str | None]]:
    with contextlib.closing(sqlite3.connect(ledger)) as conn:
        return conn.execute("SELECT status, error FROM attempts ORDER BY at").fetchall()


async def first_bytes(response: aiohttp.ClientResponse) -> bytes:
    """The stream's first bytes: the request is in flight, its answer under way."""
    return await asyncio.wait_for(response.content.readany(), timeout=10)


async def refused(url: str) -> bool:
    """Whether a new connection to `url` is refused at once (not left in a listening socket's
    queue, for no process to take, until it closes)."""
    started = time.monotonic()
    try:
        async with aiohttp.ClientSession() as s:
            await s.get(url + "/health", timeout=aiohttp.ClientTimeout(total=3))
    except aiohttp.ClientConnectorError:
        return time.monotonic() - started < 0.5
    return False


async def test_sigterm_lets_a_stream_in_flight_finish_and_refuses_new_connections(tmp_path):
    ledger = tmp_path / "usage.sqlite3"
    slow = FakeUpstream("groq", api_key=KEYS["groq"], token_delay=0.1, answer_tokens=15)
    async with slow as groq:
        env = gateway_env(groq, ledger)
        async with (
            ai_api(cwd=tmp_path, env=env) as (process, url),
            aiohttp.ClientSession() as s,
            s.post(url + "/chat", json=HELLO) as response,
        ):
            head = await first_bytes(response)
            process.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.2)
            assert await refused(url)
            events = parse_events((head + await response.read()).decode())
            assert await asyncio.wait_for(process.wait(), timeout=10) == 0
            assert process.stderr is not None
            log = (await process.stderr.read()).decode()
    assert events[-1][0] == "done"  # the whole answer, with its normal end
    assert events[-1][1]["finish_reason"] == "stop"
    assert "draining: 1 requests in flight, grace 20 s" in log
    assert "drained: 1 requests finished, 0 ended at the end of the grace" in log
    assert ledger_rows(ledger) == [(200, None)]


async def test_streams_still_running_at_the_end_of_the_grace_end_with_the_in_band_error(
    tmp_path,
):
    ledger = tmp_path / "usage.sqlite3"
    slower = FakeUpstream("groq", api_key=KEYS["groq"], token_delay=0.3, answer_tokens=40)
    async with slower as groq:
        env = gateway_env(groq, ledger, AI_API_DRAIN_GRACE="1")
        async with (
            ai_api(cwd=tmp_path, env=env) as (process, url),
            aiohttp.ClientSession() as s,
            s.post(url + "/chat", json=HELLO) as chat,
            s.post(url + "/v1/chat/completions", json=STREAM) as openai,
            s.post(url + "/chat?format=text", json=HELLO) as text,
        ):
            heads = [await first_bytes(chat), await first_bytes(openai), await first_bytes(text)]
            # A whole answer (no stream) whose upstream has not answered yet.
            groq.add_fault(Fault(first_token_delay=30))
            whole = asyncio.create_task(s.post(url + "/v1/chat/completions", json=WHOLE))
            for _ in range(100):
                if len(groq.requests) == 4:
                    break
                await asyncio.sleep(0.02)
            signalled = time.monotonic()
            process.send_signal(signal.SIGTERM)
            chat_text = (heads[0] + await chat.read()).decode()
            openai_text = (heads[1] + await openai.read()).decode()
            with pytest.raises(aiohttp.ClientPayloadError):  # bare text: cut, never whole
                await text.read()
            refusal = await whole
            refusal_body = await refusal.json()
            assert await asyncio.wait_for(process.wait(), timeout=10) == 0
            took = time.monotonic() - signalled
            assert process.stderr is not None
            log = (await process.stderr.read()).decode()
    events = parse_events(chat_text)
    assert events[-1][0] == "error"  # not `done`: the answer was cut, and says so
    assert events[-1][1]["error"]["code"] == "shutting_down"
    payloads = [line[6:] for line in openai_text.split("\n") if line.startswith("data: ")]
    assert payloads[-1] != "[DONE]"
    assert json.loads(payloads[-1])["error"]["code"] == "shutting_down"
    assert (refusal.status, refusal.headers["Retry-After"]) == (503, "1")
    assert refusal.headers["Connection"] == "close"
    assert refusal_body["error"]["code"] == "shutting_down"
    assert took < 4  # the grace (1 s) and a little
    assert "draining: 4 requests in flight, grace 1 s" in log
    assert "drained: 0 requests finished, 4 ended at the end of the grace" in log
    rows = ledger_rows(ledger)
    assert len(rows) == 4
    assert {error for _, error in rows} == {"shutdown"}  # none lost, none left in progress
    assert sorted(status for status, _ in rows) == [0, 200, 200, 200]


async def test_idle_connections_close_at_once_and_answers_during_the_drain_say_close():
    async with FakeUpstream("groq", api_key=KEYS["groq"], token_delay=0.0) as groq:
        stack = contextlib.AsyncExitStack()
        url = await stack.enter_async_context(running(settings_for(groq, drain_grace=5)))
        host, port = url.removeprefix("http://").split(":")
        async with stack, aiohttp.ClientSession() as s:
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(f"GET /health HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
            await reader.readuntil(b'"providers"')  # answered; the connection is kept alive
            groq.add_fault(Fault(first_token_delay=2.0))
            answer = asyncio.create_task(s.post(url + "/chat", json=HELLO))
            for _ in range(100):
                if groq.requests:
                    break
                await asyncio.sleep(0.02)
            stopping = asyncio.create_task(stack.aclose())
            started = time.monotonic()
            rest = await asyncio.wait_for(reader.read(), timeout=2)
            closed_after = time.monotonic() - started
            response = await answer
            events = parse_events(await response.text())
            await stopping
            writer.close()
    assert rest.endswith(b"}")  # the rest of the answer, then the end of the connection:
    assert closed_after < 1.0  # closed without waiting for the answer in flight (2 s)
    assert response.headers["Connection"] == "close"
    assert events[-1][0] == "done"


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
