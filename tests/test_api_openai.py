"""The OpenAI-compatible API, driven by the official openai, groq and cerebras SDKs."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import aiohttp
import groq as groq_sdk
import openai
import pytest
from cerebras.cloud.sdk import AsyncCerebras
from cerebras.cloud.sdk.types.chat.chat_completion import ChatChunkResponse

from ai_api.fakes import FakeUpstream, Fault
from ai_api.server import running
from ai_api.settings import MemberSettings, RouteSettings

from .conftest import KEYS, settings_for

HI: Any = [{"role": "user", "content": "Hola, ¿cómo estás?"}]
WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "number"}},
            "required": ["city"],
        },
    },
}


def client_for(url: str, key: str = "unused") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=url + "/v1", api_key=key, max_retries=0)


async def fake_text(fake: FakeUpstream, model: str, messages=HI) -> str:
    """What the fake answers, asked directly."""
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            fake.base_url + fake.flavor.chat_path,
            json={"model": model, "messages": messages},
            headers={"Authorization": f"Bearer {KEYS[fake.flavor.name]}"},
        ) as response,
    ):
        return (await response.json())["choices"][0]["message"]["content"]


async def test_streaming_with_the_openai_sdk(gateway, groq):
    async with client_for(gateway) as client:
        stream = await client.chat.completions.create(
            model="auto", messages=HI, stream=True, stream_options={"include_usage": True}
        )
        chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == await fake_text(groq, "openai/gpt-oss-120b")
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert {c.model for c in chunks} == {"openai/gpt-oss-120b"}
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.completion_tokens == groq.answer_tokens
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens > 0


async def test_no_usage_chunk_without_include_usage(gateway):
    async with client_for(gateway) as client:
        stream = await client.chat.completions.create(model="auto", messages=HI, stream=True)
        chunks = [chunk async for chunk in stream]
    assert all(c.choices for c in chunks)


async def test_non_streaming_with_the_sync_openai_sdk_carries_usage_and_headers(gateway):
    def call():
        with openai.OpenAI(base_url=gateway + "/v1", api_key="x", max_retries=0) as client:
            raw = client.chat.completions.with_raw_response.create(model="auto", messages=HI)
            return raw, raw.parse()

    raw, completion = await asyncio.to_thread(call)
    assert raw.headers["x-ai-api-provider"] == "groq"
    assert raw.headers["x-ai-api-model"] == "openai/gpt-oss-120b"
    assert raw.headers["x-ai-api-attempts"] == "1"
    assert completion.object == "chat.completion"
    assert completion.model == "openai/gpt-oss-120b"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content.startswith("Hello from the fake Groq")
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.completion_tokens > 0


@pytest.mark.parametrize("stream", [True, False])
async def test_tool_calls_pass_through(gateway, groq, stream):
    async with client_for(gateway) as client:
        args = {"model": "groq/openai/gpt-oss-120b", "messages": HI, "tools": [WEATHER_TOOL]}
        if stream:
            calls: dict[int, dict] = {}
            finish = None
            async for chunk in await client.chat.completions.create(**args, stream=True):
                for call in chunk.choices[0].delta.tool_calls or []:
                    assert call.index == 0
                    entry = calls.setdefault(call.index, {"name": "", "arguments": ""})
                    entry["name"] += call.function.name or ""
                    entry["arguments"] += call.function.arguments or ""
                finish = chunk.choices[0].finish_reason or finish
            (call,) = calls.values()
        else:
            completion = await client.chat.completions.create(**args)
            (tool_call,) = completion.choices[0].message.tool_calls
            assert tool_call.id.startswith("call_")
            call = {"name": tool_call.function.name, "arguments": tool_call.function.arguments}
            finish = completion.choices[0].finish_reason
            assert completion.choices[0].message.content is None
    assert call["name"] == "get_weather"
    assert json.loads(call["arguments"])["city"]
    assert finish == "tool_calls"
    assert groq.requests[0].body["tools"] == [WEATHER_TOOL]


async def test_every_streamed_tool_call_piece_carries_its_index(gateway, client):
    body = {"model": "groq/openai/gpt-oss-120b", "messages": HI, "tools": [WEATHER_TOOL]}
    async with client.post(gateway + "/v1/chat/completions", json={**body, "stream": True}) as r:
        raw = await r.text()
    pieces = [
        call
        for line in raw.split("\n")
        if line.startswith("data: {")
        for choice in json.loads(line[6:])["choices"]
        for call in choice["delta"].get("tool_calls", [])
    ]
    assert len(pieces) >= 2  # the call's head, then its arguments
    assert all(piece["index"] == 0 for piece in pieces), pieces
    assert pieces[0]["id"].startswith("call_")
    assert "id" not in pieces[-1]


async def test_the_openai_sdk_stream_helper_assembles_the_tool_call(gateway):
    async with (
        client_for(gateway) as client,
        client.chat.completions.stream(
            model="groq/openai/gpt-oss-120b", messages=HI, tools=[WEATHER_TOOL]
        ) as stream,
    ):
        done = [
            e
            for e in [event async for event in stream]
            if e.type == "tool_calls.function.arguments.done"
        ]
        final = await stream.get_final_completion()
    (call,) = final.choices[0].message.tool_calls or []
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "example", "days": 1}
    assert final.choices[0].finish_reason == "tool_calls"
    assert [e.name for e in done] == ["get_weather"]


async def test_tool_results_go_upstream_as_sent(gateway, groq):
    messages = [
        *HI,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Lima"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 24 C"},
    ]
    async with client_for(gateway) as client:
        completion = await client.chat.completions.create(
            model="groq/openai/gpt-oss-120b", messages=messages, tools=[WEATHER_TOOL]
        )
    assert completion.choices[0].message.content
    sent = groq.requests[0].body["messages"]
    assert sent[1]["tool_calls"][0]["function"]["arguments"] == '{"city": "Lima"}'
    assert sent[2] == {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 24 C"}
    assert "name" not in sent[0]


async def test_reasoning_deltas_stream_through(gateway, groq):
    async with client_for(gateway) as client:
        stream = await client.chat.completions.create(
            model="groq/openai/gpt-oss-120b",
            messages=HI,
            stream=True,
            extra_body={"reasoning_format": "parsed"},
        )
        chunks = [c async for c in stream]
    reasoning = "".join((c.choices[0].delta.model_extra or {}).get("reasoning", "") for c in chunks)
    assert reasoning
    assert groq.requests[0].body["reasoning_format"] == "parsed"


async def test_fields_are_translated_for_each_provider(gateway, groq, cerebras):
    async with client_for(gateway) as client:
        for model in ("groq/openai/gpt-oss-120b", "cerebras/gpt-oss-120b"):
            await client.chat.completions.create(
                model=model,
                messages=HI,
                temperature=1.9,
                top_p=0.9,
                stop=["\n\n"],
                seed=42,
                user="u-1",
                max_tokens=50,
                frequency_penalty=0.1,
                response_format={"type": "json_object"},
            )
    g, c = groq.requests[0].body, cerebras.requests[0].body
    assert (g["temperature"], c["temperature"]) == (1.9, 1.5)
    assert g["max_completion_tokens"] == c["max_completion_tokens"] == 50
    assert "max_tokens" not in g
    assert "frequency_penalty" not in g  # Groq accepts but ignores it: dropped
    assert c["frequency_penalty"] == 0.1
    for body in (g, c):
        assert body["top_p"] == 0.9
        assert body["stop"] == ["\n\n"]
        assert body["seed"] == 42
        assert body["response_format"] == {"type": "json_object"}
        assert body["stream"] is True
        assert body["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize(
    ("args", "param"),
    [
        ({"n": 2}, "n"),
        ({"temperature": 3}, "temperature"),
        ({"logprobs": True}, "logprobs"),
        ({"extra_body": {"frobnicate": 1}}, "frobnicate"),
    ],
)
async def test_bad_fields_are_400s_in_the_openai_shape(gateway, groq, args, param):
    async with client_for(gateway) as client:
        with pytest.raises(openai.BadRequestError) as info:
            await client.chat.completions.create(model="auto", messages=HI, **args)
    assert info.value.status_code == 400
    assert info.value.type == "invalid_request_error"
    assert info.value.param == param
    assert groq.requests == []


async def test_a_body_that_is_not_utf8_is_a_400_and_the_server_stays_healthy(gateway, client):
    raw = b'{"model": "auto", "messages": [{"role": "user", "content": "caf\xe9"}]}'
    headers = {"Content-Type": "application/json"}
    async with client.post(gateway + "/v1/chat/completions", data=raw, headers=headers) as response:
        assert response.status == 400
        error = (await response.json())["error"]
    assert error["type"] == "invalid_request_error"
    assert "UTF-8" in error["message"]
    async with client_for(gateway) as sdk:
        completion = await sdk.chat.completions.create(model="auto", messages=HI)
    assert completion.choices[0].message.content


async def test_a_message_with_a_name_is_answered_by_every_member_in_turn(gateway, groq, cerebras):
    named: Any = [{"role": "user", "content": "Hola", "name": "ana"}]
    async with client_for(gateway) as client:
        answers = [
            await client.chat.completions.with_raw_response.create(model="auto", messages=named)
            for _ in range(4)
        ]
    assert [a.headers["x-ai-api-provider"] for a in answers] == ["groq", "cerebras"] * 2
    assert [a.headers["x-ai-api-attempts"] for a in answers] == ["1"] * 4
    assert all("name" not in m for r in groq.requests for m in r.body["messages"])
    assert all(r.body["messages"][0]["name"] == "ana" for r in cerebras.requests)


async def test_unknown_model_is_a_404_listing_what_exists(gateway):
    async with client_for(gateway) as client:
        with pytest.raises(openai.NotFoundError) as info:
            await client.chat.completions.create(model="gpt-5", messages=HI)
    assert info.value.code == "model_not_found"
    assert "groq/openai/gpt-oss-120b" in info.value.message
    assert "auto" in info.value.message


async def test_models_lists_every_routable_name(gateway):
    async with client_for(gateway) as client:
        names = [m.id async for m in client.models.list()]
    assert names[0] == "auto"
    for name in (
        "groq/openai/gpt-oss-120b",
        "groq/llama-3.1-8b-instant",
        "cerebras/gpt-oss-120b",
        "openai/gpt-oss-120b",
        "gpt-oss-120b",
    ):
        assert name in names


async def test_the_groq_sdk_works_with_the_gateway_as_base_url(gateway, groq):
    async with groq_sdk.AsyncGroq(base_url=gateway, api_key="x", max_retries=0) as client:
        stream = await client.chat.completions.create(model="auto", messages=HI, stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream])
        models = await client.models.list()
    assert text == await fake_text(groq, "openai/gpt-oss-120b")
    assert "auto" in [m.id for m in models.data]


async def test_the_cerebras_sdk_works_with_the_gateway_as_base_url(gateway, groq):
    client: Any = AsyncCerebras(
        base_url=gateway, api_key="x", max_retries=0, warm_tcp_connection=False
    )
    async with client:
        completion = await client.chat.completions.create(
            model="groq/llama-3.1-8b-instant", messages=HI
        )
        stream = await client.chat.completions.create(model="auto", messages=HI, stream=True)
        chunks = [c async for c in stream]
    assert completion.model == "llama-3.1-8b-instant"
    assert completion.choices[0].message.content
    # The SDK picks the chunk type by its fields; a wrong guess leaves `delta` a plain dict.
    assert all(isinstance(c, ChatChunkResponse) for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == await fake_text(groq, "openai/gpt-oss-120b")


async def test_failure_mid_stream_raises_in_the_sdk_and_sends_no_done(groq, client):
    groq.add_fault(Fault(cut_after=3))
    async with running(settings_for(groq)) as url:
        async with client_for(url) as sdk:
            stream = await sdk.chat.completions.create(model="auto", messages=HI, stream=True)
            with pytest.raises(openai.APIError, match="cut mid-answer"):
                async for _ in stream:
                    pass
        groq.add_fault(Fault(error_after=2))
        async with client.post(
            url + "/v1/chat/completions", json={"messages": HI, "stream": True}
        ) as response:
            raw = await response.text()
    assert "[DONE]" not in raw
    assert json.loads(raw.strip().split("\n\n")[-1].removeprefix("data: "))["error"]["message"]


async def test_fallback_route_from_the_config_moves_on_and_says_so(groq, cerebras):
    groq.add_fault(Fault(status=503, retry_after=10))
    members = (
        MemberSettings("groq", "openai/gpt-oss-120b"),
        MemberSettings("cerebras", "gpt-oss-120b"),
    )
    route = RouteSettings("smart", "fallback", members)
    settings = settings_for(groq, cerebras, routes=(route,))
    async with running(settings) as url, client_for(url) as client:
        create = client.chat.completions.with_raw_response.create
        raw = await create(model="smart", messages=HI)
        again = await create(model="smart", messages=HI)
    assert raw.headers["x-ai-api-provider"] == "cerebras"
    assert raw.headers["x-ai-api-attempts"] == "2"
    assert raw.parse().model == "gpt-oss-120b"
    # Groq asked for 10 s of rest: the next request goes straight to Cerebras.
    assert again.headers["x-ai-api-provider"] == "cerebras"
    assert again.headers["x-ai-api-attempts"] == "1"
    assert len(groq.requests) == 1


async def test_gateway_keys_guard_every_endpoint_but_health(groq, caplog):
    caplog.set_level(logging.DEBUG)
    keys = ("gw-key-one-0123456789", "gw-key-two-0123456789")
    from ai_api.settings import GatewayKey, Secret

    settings = settings_for(groq, gateway_keys=tuple(GatewayKey("t", Secret(k)) for k in keys))
    async with running(settings) as url, aiohttp.ClientSession() as session:
        async with client_for(url, "wrong-key-0123456789") as client:
            with pytest.raises(openai.AuthenticationError) as info:
                await client.chat.completions.create(model="auto", messages=HI)
        assert info.value.code == "invalid_api_key"
        assert "wrong-key" not in str(info.value.body)
        for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer "}):
            async with session.post(
                url + "/v1/chat/completions", json={"messages": HI}, headers=headers
            ) as response:
                assert response.status == 401
                assert "Bearer" in (await response.json())["error"]["message"]
        for path in ("/v1/models", "/chat"):
            async with session.request(
                "POST" if path == "/chat" else "GET", url + path, json={"messages": HI}
            ) as response:
                assert response.status == 401
                assert (await response.json())["error"]["type"] == "invalid_request_error"
        async with session.get(url + "/health") as response:
            assert response.status == 200
        for key in keys:
            async with client_for(url, key) as client:
                completion = await client.chat.completions.create(model="auto", messages=HI)
                assert completion.choices[0].message.content
    for secret in (*keys, KEYS["groq"]):
        assert secret not in caplog.text


async def test_open_gateway_on_a_public_address_warns(groq, caplog):
    caplog.set_level(logging.WARNING)
    async with running(settings_for(groq, host="0.0.0.0")):
        pass
    assert "no gateway keys" in caplog.text


async def test_a_finished_stream_leaves_its_upstream_connection_for_the_next(gateway, groq):
    # The end of the upstream's body lags behind its `[DONE]`: the client has its whole answer
    # before it, and the connection still goes back to the pool once it comes.
    groq.add_fault(Fault(end_delay=0.3), times=2)
    async with client_for(gateway) as client:
        for i in range(3):
            stream = await client.chat.completions.create(
                model="groq/openai/gpt-oss-120b", messages=HI, stream=True
            )
            assert [c async for c in stream][-1].choices[0].finish_reason == "stop"
            if i < 2:
                assert not groq.requests[i].finished.is_set()
            await groq.requests[i].finished.wait()
            await asyncio.sleep(0.1)  # the gateway reads the end and pools the connection
        groq.add_fault(Fault(cut_after=2))
        stream = await client.chat.completions.create(
            model="groq/openai/gpt-oss-120b", messages=HI, stream=True
        )
        with pytest.raises(openai.APIError):
            _ = [c async for c in stream]
        await client.chat.completions.create(model="groq/openai/gpt-oss-120b", messages=HI)
    peers = [seen.peer for seen in groq.requests]
    assert len(peers) == 5
    assert None not in peers
    assert peers[0] == peers[1] == peers[2] == peers[3]  # one connection, reused
    assert peers[4] != peers[3]  # the cut one was not put back in the pool


async def test_an_upstream_silent_after_done_loses_its_connection_not_the_answer(groq):
    groq.add_fault(Fault(end_delay=30))
    async with running(settings_for(groq, read_timeout=0.3)) as url, client_for(url) as client:
        stream = await client.chat.completions.create(
            model="auto", messages=HI, stream=True, stream_options={"include_usage": True}
        )
        chunks = [c async for c in stream]
        assert chunks[-1].usage is not None  # the whole answer, at once
        async with asyncio.timeout(5):
            await groq.requests[0].finished.wait()  # dropped after the read timeout
        assert groq.requests[0].disconnected
        await client.chat.completions.create(model="auto", messages=HI)
    assert groq.requests[1].peer != groq.requests[0].peer


@pytest.mark.parametrize("flavor", ["groq", "cerebras"])
async def test_a_stream_with_its_finish_and_usage_ends_without_waiting_for_done(flavor):
    # No `[DONE]`, and the body's end comes 30 s later: the answer is whole already. Tokens
    # come apart, so a whole answer's reads in bulk see the usage arrive on its own.
    key = KEYS[flavor]
    async with FakeUpstream(flavor, api_key=key, token_delay=0.01) as fake:
        fake.add_fault(Fault(no_done=True, end_delay=30), times=2)
        model = {"groq": "openai/gpt-oss-120b", "cerebras": "gpt-oss-120b"}[flavor]
        async with running(settings_for(fake)) as url, client_for(url) as client:
            async with asyncio.timeout(5):
                stream = await client.chat.completions.create(
                    model="auto", messages=HI, stream=True, stream_options={"include_usage": True}
                )
                chunks = [c async for c in stream]
                whole = await client.chat.completions.create(model="auto", messages=HI)
            assert chunks[-1].usage is not None
            assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            assert text == whole.choices[0].message.content == await fake_text(fake, model)
            assert whole.usage is not None
            assert whole.usage.completion_tokens == fake.answer_tokens
