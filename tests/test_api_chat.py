"""`POST /chat` end to end: real HTTP from a client, through the gateway, to fake upstreams."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import socket
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from ai_api.fakes import FakeUpstream, Fault
from ai_api.server import running

from .conftest import KEYS, content_of, parse_events, settings_for

HELLO = {"messages": [{"role": "user", "content": "Hola, ¿cómo estás?"}]}


async def direct_answer(client: aiohttp.ClientSession, fake: FakeUpstream, body: dict) -> Any:
    """What the fake itself answers (non-streaming) to the same messages."""
    model = {"groq": "openai/gpt-oss-120b", "cerebras": "gpt-oss-120b"}[fake.flavor.name]
    async with client.post(
        fake.base_url + fake.flavor.chat_path,
        json={**body, "model": model, "stream": False},
        headers={"Authorization": f"Bearer {KEYS[fake.flavor.name]}"},
    ) as response:
        assert response.status == 200
        return await response.json()


async def test_streams_content_events_then_done(gateway, groq, client):
    async with client.post(gateway + "/chat", json=HELLO) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/event-stream"
        assert response.headers["Cache-Control"] == "no-cache"
        assert response.headers["X-AI-API-Provider"] == "groq"
        assert response.headers["X-AI-API-Model"] == "openai/gpt-oss-120b"
        events = parse_events(await response.text())
    expected = await direct_answer(client, groq, HELLO)
    assert content_of(events) == expected["choices"][0]["message"]["content"]
    assert all(set(data) == {"content"} for name, data in events[:-1])
    name, done = events[-1]
    assert name == "done"
    assert done["provider"] == "groq"
    assert done["model"] == "openai/gpt-oss-120b"
    assert done["finish_reason"] == "stop"
    usage = expected["usage"]
    assert done["usage"] == {
        k: usage[k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")
    }
    assert "demo" not in done
    sent = groq.requests[0].body
    assert sent["model"] == "openai/gpt-oss-120b"
    assert sent["max_completion_tokens"] == 4096
    assert sent["messages"] == HELLO["messages"]


async def test_cerebras_usage_from_its_final_chunk(groq, cerebras, client):
    async with running(settings_for(cerebras)) as url, client.post(url + "/chat", json=HELLO) as r:
        events = parse_events(await r.text())
    expected = await direct_answer(client, cerebras, HELLO)
    assert content_of(events) == expected["choices"][0]["message"]["content"]
    assert events[-1][1]["usage"]["completion_tokens"] == expected["usage"]["completion_tokens"]
    assert events[-1][1]["provider"] == "cerebras"


async def test_round_robin_alternates_groq_then_cerebras(gateway, groq, cerebras, client):
    order = []
    for _ in range(5):
        async with client.post(gateway + "/chat", json=HELLO) as response:
            await response.read()
            order.append(response.headers["X-AI-API-Provider"])
    assert order == ["groq", "cerebras", "groq", "cerebras", "groq"]
    assert (len(groq.requests), len(cerebras.requests)) == (3, 2)


async def test_round_robin_is_exact_under_concurrency(gateway, groq, cerebras, client):
    async def one() -> str:
        async with client.post(gateway + "/chat", json=HELLO) as response:
            events = parse_events(await response.text())
            assert events[-1][0] == "done"
            return response.headers["X-AI-API-Provider"]

    providers = await asyncio.gather(*(one() for _ in range(40)))
    assert providers.count("groq") == providers.count("cerebras") == 20
    assert len(groq.requests) == len(cerebras.requests) == 20


async def test_text_format_streams_bare_text(gateway, groq, client):
    async with client.post(gateway + "/chat?format=text", json=HELLO) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
        text = await response.text()
    expected = await direct_answer(client, groq, HELLO)
    assert text == expected["choices"][0]["message"]["content"]


async def test_health_lists_active_providers(gateway, client):
    async with client.get(gateway + "/health") as response:
        assert response.status == 200
        assert await response.json() == {
            "status": "ok",
            "demo": False,
            "providers": [
                {"name": "groq", "model": "openai/gpt-oss-120b"},
                {"name": "cerebras", "model": "gpt-oss-120b"},
            ],
        }


def assert_error_shape(body: dict, status_type: str) -> dict:
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "code", "param"}
    assert body["error"]["type"] == status_type
    assert body["error"]["message"]
    return body["error"]


@pytest.mark.parametrize(
    ("data", "status", "fragment"),
    [
        (b"{oops", 400, "not valid JSON"),
        (b'{"messages": [{"role": "user", "content": "\xe9t\xe9"}]}', 400, "UTF-8"),
        (b"", 400, "empty"),
        (b"{}", 400, "messages"),
        (b'{"messages": []}', 400, "at least one message"),
        (b'{"messages": [{"role": "robot", "content": "x"}]}', 400, "role"),
        (b'{"messages": [{"role": "user", "content": ["x"]}]}', 400, "content"),
        (b'{"messages": [{"role": "user", "content": "' + b"x" * 3000 + b'"}]}', 413, "limit"),
    ],
)
async def test_bad_input_is_a_clear_4xx_and_the_server_stays_healthy(
    groq, client, data, status, fragment
):
    async with running(settings_for(groq, max_body_bytes=2048)) as url:
        async with client.post(
            url + "/chat", data=data, headers={"Content-Type": "application/json"}
        ) as response:
            assert response.status == status
            error = assert_error_shape(await response.json(), "invalid_request_error")
            assert fragment in error["message"]
        async with client.post(url + "/chat", json=HELLO) as response:
            assert response.status == 200
            assert parse_events(await response.text())[-1][0] == "done"
    assert len(groq.requests) == 1  # bad requests never reached the provider


async def test_wrong_method_unknown_path_and_unknown_format(gateway, client):
    async with client.get(gateway + "/chat") as response:
        assert response.status == 405
        assert "POST" in response.headers["Allow"]
        assert assert_error_shape(await response.json(), "invalid_request_error")["code"] == (
            "method_not_allowed"
        )
    async with client.post(gateway + "/nope", json=HELLO) as response:
        assert response.status == 404
        assert (
            "/nope" in assert_error_shape(await response.json(), "invalid_request_error")["message"]
        )
    async with client.post(gateway + "/chat?format=xml", json=HELLO) as response:
        assert response.status == 400
        assert assert_error_shape(await response.json(), "invalid_request_error")["param"] == (
            "format"
        )


@pytest.mark.parametrize(
    ("fault", "status", "code", "fragment"),
    [
        (Fault(status=500), 502, None, "HTTP 500"),
        (Fault(status=503, retry_after=40), 503, None, "HTTP 503"),
        (Fault(status=429, retry_after=7), 429, "rate_limit_exceeded", "HTTP 429"),
        (Fault(status=429), 429, "rate_limit_exceeded", "HTTP 429"),
        (Fault(status=401), 502, "invalid_api_key", "Invalid API Key"),
        (Fault(status=400, code="context_length_exceeded"), 400, "context_length_exceeded", ""),
        (Fault(drop=True), 502, "upstream_unreachable", "connection"),
    ],
)
async def test_upstream_error_before_first_byte_is_an_http_error(
    groq, client, fault, status, code, fragment
):
    groq.add_fault(fault)
    solo = running(settings_for(groq))
    async with solo as url, client.post(url + "/chat", json=HELLO) as response:
        assert response.status == status
        body = await response.json()
        error = body["error"]
        assert set(error) == {"message", "type", "code", "param"}
        assert error["message"].startswith("groq: ")
        assert fragment in error["message"]
        if code:
            assert error["code"] == code
        if fault.retry_after is not None:
            assert response.headers["Retry-After"] == str(fault.retry_after).removesuffix(".0")
        elif status == 429:  # Groq's body says when ("try again in 1.2s"): whole seconds
            assert response.headers["Retry-After"].isdigit()
        else:
            assert "Retry-After" not in response.headers


async def test_unreachable_upstream_and_slow_headers(groq, client):
    async with FakeUpstream("groq", api_key=KEYS["groq"]) as doomed:
        dead_url = doomed.base_url
    settings = settings_for(groq, read_timeout=0.2)
    dead = dataclasses.replace(settings.providers[0], base_url=dead_url)
    dead_settings = settings.with_overrides(providers=(dead,))
    async with running(dead_settings) as url, client.post(url + "/chat", json=HELLO) as response:
        assert response.status == 502
        error = (await response.json())["error"]
        assert error["code"] == "upstream_unreachable"
        assert error["message"].startswith("groq: connection failed")
    groq.add_fault(Fault(headers_delay=2))
    async with running(settings) as url, client.post(url + "/chat", json=HELLO) as response:
        assert response.status == 504
        assert (await response.json())["error"]["code"] == "upstream_timeout"


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        (Fault(cut_after=3), "upstream_unreachable"),
        (Fault(error_after=3), None),
        (Fault(malformed_after=3), "upstream_protocol_error"),
        (Fault(stall_after=3), "upstream_timeout"),
    ],
)
async def test_failure_after_first_byte_ends_with_an_error_event(groq, client, fault, code):
    groq.add_fault(fault)
    settings = settings_for(groq, read_timeout=0.3)
    async with running(settings) as url, client.post(url + "/chat", json=HELLO) as response:
        assert response.status == 200
        events = parse_events(await response.text())
    names = [name for name, _ in events]
    assert set(names[:-1]) == {"message"}
    assert names[-1] == "error"
    expected = (await direct_answer(client, groq, HELLO))["choices"][0]["message"]["content"]
    # The three tokens sent before the fault arrive (as one delta or several), and no more.
    assert content_of(events) == " ".join(expected.split(" ")[:3])
    error = events[-1][1]["error"]
    assert error["message"].startswith("groq: ")
    if code:
        assert error["code"] == code


async def test_a_provider_failing_before_the_first_byte_is_replaced_by_the_next(
    gateway, groq, cerebras, client
):
    groq.add_fault(Fault(status=429, retry_after=30))
    async with client.post(gateway + "/chat", json=HELLO) as response:
        assert response.status == 200
        assert response.headers["X-AI-API-Provider"] == "cerebras"
        assert response.headers["X-AI-API-Attempts"] == "2"
        events = parse_events(await response.text())
    assert events[-1][1]["provider"] == "cerebras"
    assert (len(groq.requests), len(cerebras.requests)) == (1, 1)


async def test_missing_done_after_a_finished_answer_still_completes(gateway, groq, client):
    groq.add_fault(Fault(no_done=True))
    async with client.post(gateway + "/chat", json=HELLO) as response:
        events = parse_events(await response.text())
    assert events[-1][0] == "done"
    assert events[-1][1]["finish_reason"] == "stop"


async def test_text_format_failure_aborts_instead_of_looking_complete(groq, client):
    groq.add_fault(Fault(error_after=2))
    solo = running(settings_for(groq))
    async with solo as url, client.post(url + "/chat?format=text", json=HELLO) as response:
        assert response.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()


async def test_client_disconnect_cancels_the_upstream_request(groq, client):
    # The upstream goes silent after two tokens: only cancellation, not a failed write to the
    # departed client, can end the upstream request before the read timeout.
    slow = FakeUpstream("groq", api_key=KEYS["groq"])
    slow.add_fault(Fault(stall_after=2))
    async with slow, running(settings_for(slow)) as url:
        response = await client.post(url + "/chat", json=HELLO)
        await response.content.readuntil(b"\n\n")
        response.close()
        seen = slow.requests[0]
        await asyncio.wait_for(seen.finished.wait(), timeout=5)
        assert seen.disconnected


async def test_no_key_ever_reaches_a_log_or_a_response(groq, client, caplog):
    caplog.set_level(logging.DEBUG)
    key = KEYS["groq"]
    groq.add_fault(Fault(status=401, message=f"Invalid API Key {key}"))
    async with running(settings_for(groq)) as url:
        async with client.post(url + "/chat", json=HELLO) as response:
            text = await response.text()
            assert response.status == 502
        async with client.get(url + "/health") as response:
            text += await response.text()
    assert key not in text
    assert "[redacted]" in text
    assert key not in caplog.text
    assert json.loads(text.split("}}")[0] + "}}")["error"]["code"] == "invalid_api_key"


EVENT = b'data: {"choices":[{"index":0,"delta":{"content":"hola"}}]}\n\n'


@pytest.mark.parametrize("path", ["/chat", "/v1/chat/completions"])
async def test_a_client_leaving_as_its_stream_starts_is_no_error(
    groq, client, tmp_path, caplog, path
):
    """The upstream's first bytes reach the gateway in the same turn of the loop as the
    client's goodbye: the gateway starts the answer on a closing connection."""
    leaving: list[asyncio.StreamWriter] = []

    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        await reader.readexactly(length)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n" % (len(EVENT), EVENT)
        )
        leaving[0].get_extra_info("socket").shutdown(socket.SHUT_RDWR)
        await reader.read()  # until the gateway lets go
        writer.close()

    server = await asyncio.start_server(upstream, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = settings_for(groq, ledger=str(tmp_path / "usage.sqlite3"))
    settings = dataclasses.replace(
        settings,
        providers=(
            dataclasses.replace(settings.providers[0], base_url=f"http://127.0.0.1:{port}"),
        ),
    )
    body = json.dumps({"model": "auto", "stream": True, **HELLO}).encode()
    caplog.set_level(logging.DEBUG)
    async with server, running(settings) as url:
        host, gateway_port = url.removeprefix("http://").split(":")
        _, writer = await asyncio.open_connection(host, int(gateway_port))
        leaving.append(writer)
        writer.write(
            b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (path.encode(), len(body), body)
        )
        for _ in range(100):  # the attempt is recorded in the background
            async with client.get(url + "/usage") as response:
                (day,) = (await response.json())["days"] or [None]
            if day is not None:
                break
            await asyncio.sleep(0.02)
        writer.close()
    assert day is not None
    assert (day["requests"], day["errors"], day["client_closed"]) == (1, 0, 1)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert any("client went away" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("days", ["\u00b2", "0", "367", "-1", "7.5", "x"])
async def test_usage_days_out_of_range_or_not_ascii_digits_is_a_400(gateway, client, days):
    async with client.get(gateway + "/usage", params={"days": days}) as response:
        assert response.status == 400
        assert (await response.json())["error"]["param"] == "days"


def _echoing_bodies(key: str) -> list[tuple[int, dict[str, str], bytes]]:
    """Upstream answers that echo the key in every field an error has."""
    fields = {"message": f"bad key {key}", "type": f"t-{key}", "code": f"c-{key}", "param": key}
    straddling = b"x" * (200 - len(key) // 2) + key.encode() + b" and more"  # across the cut
    stream = (
        b'data: {"choices":[{"index":0,"delta":{"content":"hola"}}]}\n\n'
        b'data: {"error": {"message": "mid '
        + key.encode()
        + b'", "code": "c'
        + key.encode()
        + b'"}}\n\n'
    )
    return [
        (401, {"retry-after": key}, json.dumps({"error": fields}).encode()),
        (500, {}, straddling),
        (200, {"content-type": "text/event-stream"}, stream),
    ]


@pytest.mark.parametrize("case", range(3), ids=["json-fields", "text-body-cut", "in-stream"])
async def test_a_key_echoed_anywhere_by_an_upstream_is_redacted_everywhere(
    groq, client, caplog, tmp_path, case
):
    key = KEYS["groq"]
    status, headers, body = _echoing_bodies(key)[case]

    async def answer(request: web.Request) -> web.Response:
        return web.Response(status=status, headers=headers, body=body)

    app = web.Application()
    app.router.add_post("/openai/v1/chat/completions", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    ledger = tmp_path / "usage.sqlite3"
    caplog.set_level(logging.DEBUG)
    try:
        settings = settings_for(groq, ledger=str(ledger))
        p = dataclasses.replace(settings.providers[0], base_url=f"http://127.0.0.1:{port}")
        settings = dataclasses.replace(settings, providers=(p,))
        seen = ""
        async with running(settings) as url:
            for path in ("/chat", "/v1/chat/completions"):
                body_of = {"model": "auto", "stream": True, **HELLO}
                async with client.post(url + path, json=body_of) as response:
                    seen += json.dumps(dict(response.headers)) + await response.text()
            async with client.get(url + "/metrics") as response:  # labels hold codes only
                scraped = await response.text()
            async with client.get(url + "/usage") as response:
                scraped += await response.text()
    finally:
        await runner.cleanup()
    assert "[redacted]" in seen
    assert "ai_api.access" in caplog.text  # the access lines are among what is searched
    for place in (seen, scraped, caplog.text, ledger.read_bytes().decode("latin-1")):
        assert key not in place
        assert key[: len(key) // 2] not in place  # not even the part before a cut


async def test_a_malformed_http_request_is_a_400_without_an_error_in_the_log(gateway, caplog):
    caplog.set_level(logging.DEBUG)
    host, port = gateway.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GARBAGE \x00\x01 HTTP/9\r\n\r\n")
    await writer.drain()
    reply = await asyncio.wait_for(reader.read(200), timeout=5)
    writer.close()
    assert reply.startswith(b"HTTP/1.0 400 ") or reply.startswith(b"HTTP/1.1 400 ")
    # At the default level (INFO) it leaves no error and no traceback (aiohttp's is at DEBUG).
    shown = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert [r for r in shown if r.levelno >= logging.ERROR or r.exc_info] == []
