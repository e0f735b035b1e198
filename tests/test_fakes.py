"""The fake upstreams, driven over loopback by the official Groq and Cerebras SDKs and by aiohttp.

The SDKs are the proof of fidelity: if they parse the fake's streams, usage and errors the way
they parse the real providers', the gateway's tests against the fakes mean something.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import groq
import pytest
from cerebras.cloud import sdk as cerebras
from cerebras.cloud.sdk.types.chat.chat_completion import (
    ChatChunkResponse,
    ChatCompletionResponse,
)

from ai_api.fakes import FLAVORS, FakeUpstream, Fault, Flavor, SeenRequest, cerebras_wire, groq_wire
from ai_api.fakes.answer import answer_tokens, prompt_tokens
from ai_api.fakes.limits import Bucket
from tests.fake_clients import CEREBRAS_KEY, GROQ_KEY

KEYS = {"groq": GROQ_KEY, "cerebras": CEREBRAS_KEY}
GROQ_MODEL = "openai/gpt-oss-120b"
CEREBRAS_MODEL = "gpt-oss-120b"
MODELS = {"groq": GROQ_MODEL, "cerebras": CEREBRAS_MODEL}
# `Any`: the SDKs want their own TypedDicts; the fake takes plain dicts.
MESSAGES: Any = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": 'Say "olé" and tell me the capital of France, in one word.'},
]
# Generous bound that only catches hangs.
HANG = 5.0


def expected(flavor: str, model: str, count: int = 20) -> str:
    return "".join(answer_tokens(FLAVORS[flavor].label, model, MESSAGES, count))


def chat_body(flavor: str, **extra: Any) -> dict[str, Any]:
    return {"model": MODELS[flavor], "messages": MESSAGES, **extra}


def events(raw: bytes | bytearray) -> list[bytes]:
    """The `data:` payloads of an SSE body."""
    return [bytes(e).removeprefix(b"data: ") for e in raw.split(b"\n\n") if e]


def body_of(error: groq.APIStatusError | cerebras.APIStatusError) -> dict[str, Any]:
    assert isinstance(error.body, dict)
    return error.body


async def collect(
    session: aiohttp.ClientSession,
    fake: FakeUpstream,
    into: bytearray,
    client_timeout: aiohttp.ClientTimeout | None = None,
) -> None:
    """Read a raw streaming answer into `into` as it arrives."""
    async with post(session, fake, timeout=client_timeout) as response:
        async for data in response.content.iter_any():
            into.extend(data)


async def drain(stream: Any, into: list[Any]) -> None:
    """Iterate an SDK stream into `into`."""
    async for chunk in stream:
        into.append(chunk)


async def finished(seen: SeenRequest) -> SeenRequest:
    await asyncio.wait_for(seen.finished.wait(), HANG)
    return seen


@pytest.fixture(params=["groq", "cerebras"])
async def fake(request: pytest.FixtureRequest) -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream(request.param, api_key=KEYS[request.param]) as upstream:
        yield upstream


def post(
    session: aiohttp.ClientSession,
    fake: FakeUpstream,
    body: Any = None,
    *,
    key: str | None = None,
    timeout: aiohttp.ClientTimeout | None = None,
) -> Any:
    """A raw chat request; use as `async with post(...) as response`."""
    payload = chat_body(fake.flavor.name, stream=True) if body is None else body
    headers = {"Authorization": f"Bearer {key or fake.api_key}"}
    url = fake.base_url + fake.flavor.chat_path
    return session.post(url, json=payload, headers=headers, timeout=timeout)


# Groq through the official SDK


async def test_groq_stream_text_usage_and_chunk_sequence(groq_fake, groq_client):
    stream = await groq_client.chat.completions.create(
        model=GROQ_MODEL, messages=MESSAGES, stream=True
    )
    chunks = [chunk async for chunk in stream]

    first, contents, last = chunks[0], chunks[1:-1], chunks[-1]
    assert first.choices[0].delta.role == "assistant"
    assert first.choices[0].delta.content == ""
    assert first.x_groq is not None
    assert first.x_groq.id is not None
    assert first.x_groq.id.startswith("req_")
    assert "".join(c.choices[0].delta.content or "" for c in contents) == expected(
        "groq", GROQ_MODEL
    )
    assert len(contents) == 20
    assert all(c.x_groq is None for c in contents)
    assert last.choices[0].finish_reason == "stop"
    assert last.usage is None
    assert last.x_groq is not None
    assert last.x_groq.usage is not None
    assert last.x_groq.id == first.x_groq.id
    assert last.x_groq.usage.completion_tokens == 20
    assert last.x_groq.usage.prompt_tokens == prompt_tokens(MESSAGES)
    assert last.x_groq.usage.total_tokens == 20 + prompt_tokens(MESSAGES)
    assert last.x_groq.usage.queue_time is not None
    assert {c.id for c in chunks} == {first.id}
    assert first.id.startswith("chatcmpl-")
    seen = groq_fake.requests[0]
    assert seen.headers["authorization"] == f"Bearer {GROQ_KEY}"
    assert seen.body["stream"] is True
    assert seen.status == 200
    assert (await finished(seen)).disconnected is False


async def test_groq_stream_include_usage_adds_top_level_usage_and_a_usage_chunk(groq_client):
    stream = await groq_client.chat.completions.create(
        model=GROQ_MODEL,
        messages=MESSAGES,
        stream=True,
        extra_body={"stream_options": {"include_usage": True}},
    )
    chunks = [chunk async for chunk in stream]

    finish, extra = chunks[-2], chunks[-1]
    assert finish.choices[0].finish_reason == "stop"
    assert finish.x_groq is not None
    assert finish.x_groq.usage is not None
    assert finish.usage == finish.x_groq.usage
    assert extra.choices == []
    assert extra.usage is not None
    assert extra.usage.completion_tokens == 20


async def test_groq_completion_shape(groq_client):
    completion = await groq_client.chat.completions.create(model=GROQ_MODEL, messages=MESSAGES)

    assert completion.object == "chat.completion"
    assert completion.model == GROQ_MODEL
    assert completion.choices[0].message.content == expected("groq", GROQ_MODEL)
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 20
    assert completion.usage.queue_time is not None
    assert completion.x_groq is not None
    assert completion.x_groq.id.startswith("req_")
    assert completion.system_fingerprint is not None
    assert completion.system_fingerprint.startswith("fp_")


async def test_groq_max_completion_tokens_cuts_with_finish_reason_length(groq_client):
    completion = await groq_client.chat.completions.create(
        model=GROQ_MODEL, messages=MESSAGES, max_completion_tokens=5
    )

    assert completion.choices[0].finish_reason == "length"
    assert completion.choices[0].message.content == expected("groq", GROQ_MODEL, 5)
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 5


@pytest.mark.parametrize(
    ("fault", "model", "key", "error", "code"),
    [
        (None, GROQ_MODEL, "gsk_wrong", groq.AuthenticationError, "invalid_api_key"),
        (None, "no-such-model", GROQ_KEY, groq.NotFoundError, "model_not_found"),
        (
            None,
            "moonshotai/kimi-k2-instruct-0905",
            GROQ_KEY,
            groq.BadRequestError,
            "model_decommissioned",
        ),
        (Fault(status=429), GROQ_MODEL, GROQ_KEY, groq.RateLimitError, "rate_limit_exceeded"),
        (
            Fault(status=500),
            GROQ_MODEL,
            GROQ_KEY,
            groq.InternalServerError,
            "internal_server_error",
        ),
        (Fault(status=400), GROQ_MODEL, GROQ_KEY, groq.BadRequestError, "context_length_exceeded"),
    ],
)
async def test_groq_errors_raise_the_sdk_class_with_groq_codes(
    groq_fake, fault, model, key, error, code
):
    if fault:
        groq_fake.add_fault(fault)
    client = groq.AsyncGroq(api_key=key, base_url=groq_fake.base_url, max_retries=0)
    async with client:
        with pytest.raises(error) as caught:
            await client.chat.completions.create(model=model, messages=MESSAGES)

    assert body_of(caught.value)["error"]["code"] == code
    assert caught.value.response.headers["x-ratelimit-limit-requests"] == "1000"


async def test_groq_rate_limit_message_reads_like_the_real_one(groq_fake, groq_client):
    groq_fake.add_fault(Fault(status=429, retry_after=16.24))
    with pytest.raises(groq.RateLimitError) as caught:
        await groq_client.chat.completions.create(model=GROQ_MODEL, messages=MESSAGES)

    error = body_of(caught.value)["error"]
    assert error["type"] == "tokens"
    assert error["message"].startswith(f"Rate limit reached for model `{GROQ_MODEL}`")
    assert "tokens per minute (TPM): Limit 8000" in error["message"]
    assert "Please try again in 16.24s." in error["message"]


async def test_groq_in_stream_error_makes_the_sdk_raise(groq_fake, groq_client):
    groq_fake.add_fault(Fault(error_after=3))
    stream = await groq_client.chat.completions.create(
        model=GROQ_MODEL, messages=MESSAGES, stream=True
    )
    chunks: list[Any] = []
    with pytest.raises(groq.APIError, match="Internal Server Error"):
        await drain(stream, chunks)

    assert len(chunks) == 4  # role chunk + 3 tokens


async def test_groq_rate_limit_headers_present_and_decreasing(groq_client):
    seen = []
    for _ in range(2):
        raw = await groq_client.chat.completions.with_raw_response.create(
            model=GROQ_MODEL, messages=MESSAGES
        )
        seen.append(raw.headers)

    go_duration = re.compile(r"^(\d+h)?(\d+m)?(\d+(\.\d+)?s|\d+ms)$")
    for headers in seen:
        assert headers["x-ratelimit-limit-requests"] == "1000"
        assert headers["x-ratelimit-limit-tokens"] == "8000"
        assert go_duration.match(headers["x-ratelimit-reset-requests"])
        assert go_duration.match(headers["x-ratelimit-reset-tokens"])
        assert headers["x-request-id"].startswith("req_")
        assert "x-groq-region" in headers
        assert "retry-after" not in headers
    assert [int(h["x-ratelimit-remaining-requests"]) for h in seen] == [999, 998]
    tokens = [int(h["x-ratelimit-remaining-tokens"]) for h in seen]
    assert 8000 > tokens[0] > tokens[1]


# Cerebras through the official SDK


async def test_cerebras_stream_text_and_usage_on_the_final_chunk(cerebras_client):
    stream = await cerebras_client.chat.completions.create(
        model=CEREBRAS_MODEL, messages=MESSAGES, stream=True
    )
    chunks = [chunk async for chunk in stream]

    assert all(isinstance(c, ChatChunkResponse) for c in chunks)
    typed = [c for c in chunks if isinstance(c, ChatChunkResponse)]
    deltas = [c.choices[0].delta for c in typed if c.choices and c.choices[0].delta]
    assert deltas[0].role == "assistant"
    assert "".join(d.content or "" for d in deltas) == expected("cerebras", CEREBRAS_MODEL)
    last = typed[-1]
    assert last.choices is not None
    assert last.choices[0].finish_reason == "stop"
    assert last.usage is not None
    assert last.time_info is not None
    assert last.usage.completion_tokens == 20
    assert last.usage.prompt_tokens == prompt_tokens(MESSAGES)
    assert last.time_info.total_time is not None
    assert last.time_info.created is not None
    assert all(c.usage is None for c in typed[:-1])


async def test_cerebras_include_usage_adds_a_usage_chunk(cerebras_client):
    stream = await cerebras_client.chat.completions.create(
        model=CEREBRAS_MODEL,
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream if isinstance(c, ChatChunkResponse)]

    finish, extra = chunks[-2], chunks[-1]
    assert finish.choices is not None
    assert finish.choices[0].finish_reason == "stop"
    assert finish.usage is not None
    assert finish.time_info is not None
    assert extra.choices == []
    assert extra.usage == finish.usage
    assert extra.time_info is not None


async def test_cerebras_completion_shape(cerebras_client):
    completion = await cerebras_client.chat.completions.create(
        model=CEREBRAS_MODEL, messages=MESSAGES, max_tokens=7
    )

    assert isinstance(completion, ChatCompletionResponse)
    assert completion.choices[0].message.content == expected("cerebras", CEREBRAS_MODEL, 7)
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 7
    assert completion.time_info is not None
    assert completion.time_info.queue_time is not None
    assert completion.system_fingerprint.startswith("fp_")


@pytest.mark.parametrize(
    ("fault", "model", "key", "error", "status", "code"),
    [
        (None, CEREBRAS_MODEL, "csk-wrong", cerebras.AuthenticationError, 401, "wrong_api_key"),
        (None, "no-such-model", CEREBRAS_KEY, cerebras.NotFoundError, 404, "model_not_found"),
        (None, "zai-glm-4.6", CEREBRAS_KEY, cerebras.NotFoundError, 404, "model_not_found"),
        (None, "zai-glm-4.7", CEREBRAS_KEY, cerebras.NotFoundError, 404, "model_not_found"),
        (
            Fault(status=429),
            CEREBRAS_MODEL,
            CEREBRAS_KEY,
            cerebras.RateLimitError,
            429,
            "request_quota_exceeded",
        ),
        (
            Fault(status=500),
            CEREBRAS_MODEL,
            CEREBRAS_KEY,
            cerebras.InternalServerError,
            500,
            "internal_server_error",
        ),
        (
            Fault(status=402),
            CEREBRAS_MODEL,
            CEREBRAS_KEY,
            cerebras.APIStatusError,
            402,
            "payment_required",
        ),
    ],
)
async def test_cerebras_errors_raise_the_sdk_class_with_top_level_bodies(
    cerebras_fake, fault, model, key, error, status, code
):
    if fault:
        cerebras_fake.add_fault(fault)
    client = cerebras.AsyncCerebras(
        api_key=key, base_url=cerebras_fake.base_url, max_retries=0, warm_tcp_connection=False
    )
    async with client:
        with pytest.raises(error) as caught:
            await client.chat.completions.create(model=model, messages=MESSAGES)

    assert caught.value.status_code == status
    assert body_of(caught.value)["code"] == code
    assert set(body_of(caught.value)) == {"message", "type", "param", "code"}


async def test_cerebras_wrong_key_and_rate_limit_bodies_match_captures(
    cerebras_fake, cerebras_client
):
    cerebras_fake.add_fault(Fault(status=429))
    with pytest.raises(cerebras.RateLimitError) as caught:
        await cerebras_client.chat.completions.create(model=CEREBRAS_MODEL, messages=MESSAGES)

    assert body_of(caught.value) == {
        "message": "Requests per minute limit exceeded - too many requests sent.",
        "type": "too_many_requests_error",
        "param": "quota",
        "code": "request_quota_exceeded",
    }


async def test_cerebras_in_stream_error_raises_the_class_of_its_status_code(
    cerebras_fake, cerebras_client
):
    cerebras_fake.add_fault(Fault(error_after=2, error_status=429))
    stream = await cerebras_client.chat.completions.create(
        model=CEREBRAS_MODEL, messages=MESSAGES, stream=True
    )
    chunks: list[Any] = []
    with pytest.raises(cerebras.RateLimitError) as caught:
        await drain(stream, chunks)

    assert len(chunks) == 3  # role chunk + 2 tokens
    assert caught.value.status_code == 429
    assert body_of(caught.value)["code"] == "request_quota_exceeded"


async def test_cerebras_rate_limit_headers_present_and_decreasing(cerebras_client):
    seen = []
    for _ in range(2):
        raw = await cerebras_client.chat.completions.with_raw_response.create(
            model=CEREBRAS_MODEL, messages=MESSAGES
        )
        seen.append(raw.headers)

    for headers in seen:
        assert headers["x-ratelimit-limit-requests-day"] == "14400"
        assert headers["x-ratelimit-limit-tokens-minute"] == "60000"
        assert float(headers["x-ratelimit-reset-requests-day"]) > 0
        assert float(headers["x-ratelimit-reset-tokens-minute"]) > 0
        assert headers["x-request-id"].startswith("req_")
        assert "retry-after" not in headers
    assert [int(h["x-ratelimit-remaining-requests-day"]) for h in seen] == [14399, 14398]
    tokens = [int(h["x-ratelimit-remaining-tokens-minute"]) for h in seen]
    assert 60000 > tokens[0] > tokens[1]


async def test_cerebras_sync_client_warms_up_against_the_fake(cerebras_fake):
    def use_sync_client() -> str | None:
        client = cerebras.Cerebras(api_key=CEREBRAS_KEY, base_url=cerebras_fake.base_url)
        with client:
            completion = client.chat.completions.create(model=CEREBRAS_MODEL, messages=MESSAGES)
        assert isinstance(completion, ChatCompletionResponse)
        return completion.choices[0].message.content

    content = await asyncio.wait_for(asyncio.to_thread(use_sync_client), HANG)

    assert content == expected("cerebras", CEREBRAS_MODEL)
    assert cerebras_fake.hits["GET /v1/tcp_warming"] == 1
    assert len(cerebras_fake.requests) == 1
    assert cerebras_fake.requests[0].status == 200


# Both flavors, in shapes and faults the SDKs hide


@pytest.mark.parametrize(("retry_after", "header"), [(None, None), (7, "7"), (0.5, "0.5")])
async def test_retry_after_only_when_asked(fake, session, retry_after, header):
    fake.add_fault(Fault(status=429, retry_after=retry_after))
    async with post(session, fake) as response:
        assert response.status == 429
        assert response.headers.get("retry-after") == header
        assert response.headers["x-request-id"].startswith("req_")


async def test_stream_is_bare_data_events_ending_in_done(fake, session):
    async with post(session, fake) as response:
        assert response.headers["content-type"] == "text/event-stream"
        raw = await response.read()

    assert b"\nevent:" not in raw
    assert not raw.startswith(b"event:")
    payloads = events(raw)
    assert payloads[-1] == b"[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert all(c["system_fingerprint"].startswith("fp_") for c in chunks)


async def test_cut_after_breaks_the_chunked_body(fake, session):
    fake.add_fault(Fault(cut_after=3))
    received = bytearray()
    with pytest.raises(aiohttp.ClientPayloadError):
        await collect(session, fake, received)

    assert len(events(received)) == 4  # role chunk + 3 tokens
    seen = await finished(fake.requests[0])
    assert seen.status == 200
    assert seen.disconnected is False


async def test_malformed_after_slips_in_one_bad_line_then_continues(fake, session):
    fake.add_fault(Fault(malformed_after=2))
    async with post(session, fake) as response:
        payloads = events(await response.read())

    bad = []
    for payload in payloads[:-1]:
        try:
            json.loads(payload)
        except json.JSONDecodeError:
            bad.append(payload)
    assert len(bad) == 1
    assert payloads.index(bad[0]) == 3
    assert payloads[-1] == b"[DONE]"


async def test_no_done_finishes_without_the_terminator(fake, session):
    fake.add_fault(Fault(no_done=True))
    async with post(session, fake, chat_body(fake.flavor.name, stream=True)) as response:
        payloads = events(await response.read())

    assert b"[DONE]" not in payloads
    assert json.loads(payloads[-1])["choices"][0]["finish_reason"] == "stop"


async def test_error_after_sends_the_provider_in_stream_error_without_done(fake, session):
    fake.add_fault(Fault(error_after=1, error_status=503))
    async with post(session, fake) as response:
        payloads = events(await response.read())

    error = json.loads(payloads[-1])
    assert len(payloads) == 3
    assert b"[DONE]" not in payloads
    assert error["error"]["message"]
    if fake.flavor.name == "cerebras":
        assert error["status_code"] == 503
    else:
        assert set(error) == {"error"}


async def _raw_post(fake: FakeUpstream) -> bytes:
    """A chat request over a bare socket; what the fake sends back before it closes."""
    body = json.dumps(chat_body(fake.flavor.name)).encode()
    head = (
        f"POST {fake.flavor.chat_path} HTTP/1.1\r\nHost: {fake.host}\r\n"
        f"Authorization: Bearer {fake.api_key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    reader, writer = await asyncio.open_connection(fake.host, fake.port)
    try:
        writer.write(head.encode() + body)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), HANG)
    finally:
        writer.close()


async def test_reset_closes_with_a_tcp_reset_instead_of_a_fin(fake):
    fake.add_fault(Fault(drop=True))
    fake.add_fault(Fault(drop=True, reset=True))
    assert await _raw_post(fake) == b""  # a FIN: the end of the stream
    with pytest.raises(ConnectionResetError):
        await _raw_post(fake)
    assert [seen.status for seen in fake.requests] == [0, 0]


async def test_drop_closes_without_a_response(fake, session):
    fake.add_fault(Fault(drop=True))
    with pytest.raises(aiohttp.ServerDisconnectedError):
        async with post(session, fake) as response:
            await response.read()

    seen = await finished(fake.requests[0])
    assert seen.status == 0


async def test_stall_after_holds_the_stream_until_the_client_gives_up(fake, session):
    fake.add_fault(Fault(stall_after=2))
    timeout = aiohttp.ClientTimeout(sock_read=0.2)
    received = bytearray()
    with pytest.raises(asyncio.TimeoutError):
        await collect(session, fake, received, timeout)

    assert len(events(received)) == 3  # role chunk + 2 tokens
    seen = await finished(fake.requests[0])
    assert seen.disconnected is True
    assert seen.status == 200


async def test_headers_delay_holds_back_the_response(fake, session):
    fake.add_fault(Fault(headers_delay=30))
    with pytest.raises(asyncio.TimeoutError):
        async with post(session, fake, timeout=aiohttp.ClientTimeout(total=0.1)):
            pass
    fake.add_fault(Fault(headers_delay=0.01))
    async with post(session, fake) as response:
        assert response.status == 200

    assert (await finished(fake.requests[0])).disconnected is True
    assert (await finished(fake.requests[1])).disconnected is False


async def test_first_token_delay_comes_after_the_role_chunk(fake, session):
    fake.add_fault(Fault(first_token_delay=30))
    timeout = aiohttp.ClientTimeout(sock_read=0.2)
    received = bytearray()
    with pytest.raises(asyncio.TimeoutError):
        await collect(session, fake, received, timeout)

    assert len(events(received)) == 1
    assert b'"role":"assistant"' in received


async def test_client_disconnect_mid_stream_is_recorded(session):
    async with FakeUpstream("groq", token_delay=0.01, answer_tokens=1000) as fake:
        async with post(session, fake, key="any-key") as response:
            await response.content.readline()
            response.close()
        seen = await finished(fake.requests[0])

    assert seen.disconnected is True
    assert seen.status == 200


async def test_stop_cuts_stalled_streams_promptly(session):
    fake = FakeUpstream("cerebras", api_key=CEREBRAS_KEY)
    await fake.start()
    await fake.start()  # idempotent
    fake.add_fault(Fault(stall_after=1))

    async def stop_while_reading() -> None:
        async with post(session, fake) as response:
            await response.content.readline()
            await asyncio.wait_for(fake.stop(), HANG)
            await response.read()

    with pytest.raises(aiohttp.ClientPayloadError):
        await stop_while_reading()

    seen = await finished(fake.requests[0])
    assert seen.disconnected is False
    await fake.stop()  # idempotent


async def test_restart_keeps_the_port_and_a_stopped_fake_refuses(session):
    fake = FakeUpstream("groq", api_key=GROQ_KEY)
    await fake.start()
    url = fake.base_url
    await fake.stop()
    with pytest.raises(aiohttp.ClientConnectorError):
        async with post(session, fake):
            pass
    async with fake:
        assert fake.base_url == url
        async with post(session, fake) as response:
            assert response.status == 200


async def test_faults_are_fifo_then_default(fake, session):
    fake.add_fault(Fault(status=500), times=2)
    fake.add_fault(Fault(status=503))
    fake.default_fault = Fault(status=429)
    statuses = []
    for _ in range(5):
        async with post(session, fake) as response:
            statuses.append(response.status)
    fake.default_fault = None
    async with post(session, fake) as response:
        statuses.append(response.status)

    assert statuses == [500, 500, 503, 429, 429, 200]
    assert [seen.status for seen in fake.requests] == statuses


async def test_auth_is_checked_before_status_faults(fake, session):
    fake.add_fault(Fault(status=500))
    async with post(session, fake, key="wrong") as response:
        assert response.status == 401
    async with post(session, fake) as response:
        assert response.status == 200


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"model": "x"}, "model"),
        ({"messages": MESSAGES}, "`model`"),
        ({"model": None, "messages": []}, "`model`"),
    ],
)
async def test_invalid_bodies_get_400_or_404(fake, session, body, fragment):
    async with post(session, fake, body) as response:
        assert response.status in (400, 404)
        assert fragment in await response.text()


async def test_bad_json_and_empty_messages_get_400(fake, session):
    url = fake.base_url + fake.flavor.chat_path
    headers = {"Authorization": f"Bearer {fake.api_key}"}
    async with session.post(url, data=b"{nope", headers=headers) as response:
        assert response.status == 400
    body = {"model": MODELS[fake.flavor.name], "messages": []}
    async with post(session, fake, body) as response:
        assert response.status == 400
        assert "messages" in await response.text()
    assert fake.requests[1].body == body


async def test_models_list_and_unknown_paths(fake, session):
    headers = {"Authorization": f"Bearer {fake.api_key}"}
    async with session.get(fake.base_url + fake.flavor.models_path, headers=headers) as response:
        listing = await response.json()
    assert listing["object"] == "list"
    assert [m["id"] for m in listing["data"]] == list(fake.flavor.models)

    async with session.get(fake.base_url + fake.flavor.models_path) as response:
        assert response.status == 401
    async with session.get(fake.base_url + "/v2/nothing") as response:
        assert response.status == 404
        body = await response.json()
        assert any(k.startswith("x-ratelimit-remaining") for k in response.headers)
    error = body["error"] if fake.flavor.name == "groq" else body
    assert error["type"] in ("invalid_request_error", "not_found_error")


async def test_enforced_limits_answer_429_until_the_bucket_refills(session):
    now = [0.0]
    tiny = dataclasses.replace(FLAVORS["groq"], requests_limit=2)
    fake = FakeUpstream(tiny, api_key=GROQ_KEY, clock=lambda: now[0], enforce_limits=True)
    async with fake:
        statuses = []
        for _ in range(3):
            async with post(session, fake) as response:
                statuses.append(response.status)
                retry_after = response.headers.get("retry-after")
        now[0] += 86_400 / 2
        async with post(session, fake) as response:
            statuses.append(response.status)

    assert statuses == [200, 200, 429, 200]
    assert retry_after == "43201"


async def test_cli_serves_a_fake_until_interrupted(session):
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ai_api.fakes",
        "--flavor",
        "cerebras",
        "--api-key",
        CEREBRAS_KEY,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stderr is not None
        line = await asyncio.wait_for(process.stderr.readline(), 20)
        match = re.search(rb"listening on (http://\S+)", line)
        assert match, line
        url = match.group(1).decode()
        headers = {"Authorization": f"Bearer {CEREBRAS_KEY}"}
        async with session.get(url + "/v1/models", headers=headers) as response:
            assert response.status == 200
        process.send_signal(2)
        assert await asyncio.wait_for(process.wait(), HANG) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


# Pure pieces


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (0.94, "940ms"), (7.66, "7.66s"), (179.56, "2m59.56s"), (3723, "1h2m3s")],
)
def test_groq_durations_read_like_go(seconds, text):
    assert groq_wire.duration(seconds) == text


def test_cerebras_durations_are_float_seconds():
    assert cerebras_wire.duration(11.382867097854614) == "11.382867097854614"


def test_bucket_refills_continuously():
    bucket = Bucket(limit=14_400, window=86_400, now=0.0)
    for _ in range(30):
        bucket.take(1, now=0.0)
    assert bucket.remaining(now=0.0) == 14_370
    assert groq_wire.duration(bucket.reset_in(now=0.0)) == "3m0s"
    assert bucket.remaining(now=60.0) == 14_380


def test_answer_tokens_are_words_with_leading_spaces():
    tokens = answer_tokens("Groq", "m", MESSAGES, 30)
    assert len(tokens) == 30
    assert tokens[0] == "Hello"
    assert all(t.startswith(" ") for t in tokens[1:])
    assert "".join(tokens).startswith('Hello from the fake Groq (model m). You said: Say "olé"')


def test_flavor_errors_take_code_and_message_overrides():
    groq_flavor: Flavor = FLAVORS["groq"]
    spec = groq_flavor.error(429, code="custom_code", message="slow down")
    assert groq_flavor.error_body(spec) == {
        "error": {"message": "slow down", "type": "tokens", "code": "custom_code"}
    }
    spec = FLAVORS["cerebras"].error(429, code="token_quota_exceeded")
    assert spec.type == "too_many_tokens_error"
    assert spec.param == "quota"
    assert "over capacity" in groq_flavor.error(503, model="m").message
    assert groq_flavor.error(503).code is None


async def test_a_final_assistant_message_is_continued_as_a_prefill(fake, session):
    name = fake.flavor.name
    full = expected(name, MODELS[name])
    partial = full[:17]  # mid-word
    said = {"role": "assistant", "content": partial}
    for last, answer in [(said, full[17:]), ({**said, "prefix": True}, full)]:
        body = {**chat_body(name), "messages": [*MESSAGES, last]}
        async with post(session, fake, body) as response:
            assert response.status == 200
            reply = await response.json()
        assert reply["choices"][0]["message"]["content"] == answer  # `prefix`: echoed first
        assert reply["usage"]["prompt_tokens"] == prompt_tokens([*MESSAGES, last])


async def test_a_fake_without_prefill_refuses_it_in_its_providers_shape(session):
    flavor = FLAVORS["groq"]
    refusing = dataclasses.replace(flavor, rules=dataclasses.replace(flavor.rules, prefill=False))
    async with FakeUpstream(refusing, api_key=KEYS["groq"]) as fake:
        said = {"role": "assistant", "content": "Hello"}
        body = {**chat_body("groq"), "messages": [*MESSAGES, said]}
        async with post(session, fake, body) as response:
            assert response.status == 400
            error = (await response.json())["error"]
        async with post(session, fake, chat_body("groq")) as plain:
            assert plain.status == 200
    assert error["type"] == "invalid_request_error"
    assert "prefill is not supported" in error["message"]


async def test_down_until_fails_every_request_until_then_and_heal_clears_all(session):
    now = [100.0]
    async with FakeUpstream("groq", api_key=GROQ_KEY, clock=lambda: now[0]) as fake:
        fake.down_until(110.0, Fault(status=503))
        fake.add_fault(Fault(status=500))  # queued faults come first
        statuses = []
        for at in (100.0, 105.0, 109.9, 110.0):
            now[0] = at
            async with post(session, fake) as response:
                statuses.append(response.status)
        fake.down_until(200.0, Fault(status=503))
        fake.add_fault(Fault(status=500))
        fake.default_fault = Fault(status=429)
        fake.heal()
        async with post(session, fake) as response:
            statuses.append(response.status)
    assert statuses == [500, 503, 503, 200, 200]


async def test_a_set_answer_text_is_every_answer_and_what_a_prefill_continues(fake, session):
    text = "One set answer that every model of this fake gives, word for word."
    fake.answer_text = text
    async with post(session, fake, {**chat_body(fake.flavor.name), "stream": False}) as response:
        whole = (await response.json())["choices"][0]["message"]["content"]
    said = {"role": "assistant", "content": "One set answer"}
    body = {**chat_body(fake.flavor.name), "messages": [*MESSAGES, said], "stream": False}
    async with post(session, fake, body) as response:
        rest = (await response.json())["choices"][0]["message"]["content"]
    assert whole == text
    assert "One set answer" + rest == text
