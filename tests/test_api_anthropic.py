"""The Anthropic Messages API, driven by the official anthropic SDK over the fake upstreams."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Any

import anthropic
import pytest

from ai_api.config import preset_settings
from ai_api.fakes import FakeUpstream, Fault
from ai_api.providers.presets import VLLM
from ai_api.server import running
from ai_api.settings import GatewayKey, MemberSettings, RouteSettings, Secret

from .conftest import parse_events, settings_for
from .test_api_openai import fake_text

HI: Any = [{"role": "user", "content": "Hola, ¿cómo estás?"}]
WEATHER: Any = {
    "name": "get_weather",
    "description": "Weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "number"}},
        "required": ["city"],
    },
}
GROQ = "groq/openai/gpt-oss-120b"


def body_of(error: anthropic.APIStatusError) -> Any:
    """The JSON error body the SDK kept."""
    return error.body


def client_for(url: str, key: str = "unused", **kwargs: Any) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=url, api_key=key, max_retries=0, **kwargs)


async def test_a_message_with_the_async_sdk(gateway, groq):
    async with client_for(gateway) as client:
        raw = await client.messages.with_raw_response.create(
            model="auto", max_tokens=256, messages=HI, system="Be kind."
        )
    message = await raw.parse()
    assert raw.headers["x-ai-api-provider"] == "groq"
    assert raw.headers["x-ai-api-attempts"] == "1"
    assert message.id.startswith("msg_")
    assert message.type == "message"
    assert message.role == "assistant"
    assert message.model == "openai/gpt-oss-120b"
    (block,) = message.content
    assert block.type == "text"
    assert block.text == await fake_text(groq, "openai/gpt-oss-120b")
    assert message.stop_reason == "end_turn"
    assert message.stop_sequence is None
    assert message.usage.output_tokens == groq.answer_tokens
    assert message.usage.input_tokens > 0
    sent = groq.requests[0].body
    assert sent["messages"][0] == {"role": "system", "content": "Be kind."}
    assert sent["max_completion_tokens"] == 256


async def test_a_message_with_the_sync_sdk_and_a_bearer_token(gateway):
    def call() -> anthropic.types.Message:
        with anthropic.Anthropic(base_url=gateway, auth_token="anything", max_retries=0) as client:
            return client.messages.create(model="cerebras/gpt-oss-120b", max_tokens=64, messages=HI)

    message = await asyncio.to_thread(call)
    assert message.model == "gpt-oss-120b"
    assert message.content[0].type == "text"
    assert message.stop_reason == "end_turn"


async def test_the_stream_helper_gives_the_text_and_the_final_message(gateway, groq):
    async with (
        client_for(gateway) as client,
        client.messages.stream(model=GROQ, max_tokens=256, messages=HI) as stream,
    ):
        text = "".join([piece async for piece in stream.text_stream])
        final = await stream.get_final_message()
    assert text == await fake_text(groq, "openai/gpt-oss-120b")
    assert final.content[0].type == "text"
    assert final.content[0].text == text
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == groq.answer_tokens
    assert groq.requests[0].body["stream"] is True


async def test_the_stream_is_named_events_in_the_sdk_order(gateway, client):
    body = {"model": GROQ, "max_tokens": 256, "messages": HI, "stream": True}
    headers = {"anthropic-version": "2023-06-01", "anthropic-beta": "fine-grained-tool-streaming"}
    # Claude Code's path: the query is no part of the route.
    url = gateway + "/v1/messages?beta=true"
    async with client.post(url, json=body, headers=headers) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/event-stream"
        raw = await response.text()
    events = parse_events(raw)
    assert all(name == data["type"] for name, data in events)
    names = [name for name, _ in events]
    assert names[:2] == ["message_start", "content_block_start"]
    assert set(names[2:-3]) == {"content_block_delta"}
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert events[0][1]["message"]["content"] == []
    assert events[-2][1]["usage"]["output_tokens"] > 0
    assert "[DONE]" not in raw


@pytest.mark.parametrize("stream", [True, False])
async def test_a_tool_loop(gateway, groq, stream):
    async with client_for(gateway) as client:
        args: Any = {"model": GROQ, "max_tokens": 256, "tools": [WEATHER]}
        if stream:
            async with client.messages.stream(**args, messages=HI) as s:
                first = await s.get_final_message()
        else:
            first = await client.messages.create(**args, messages=HI)
        assert first.stop_reason == "tool_use"
        (call,) = [b for b in first.content if b.type == "tool_use"]
        assert call.name == "get_weather"
        assert call.input == {"city": "example", "days": 1}
        history: Any = [
            *HI,
            {"role": "assistant", "content": first.content},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": call.id, "content": "sunny, 24 C"}
                ],
            },
        ]
        final = await client.messages.create(**args, messages=history)
    assert final.stop_reason == "end_turn"
    assert final.content[0].type == "text"
    assert final.content[0].text
    assert groq.requests[0].body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": WEATHER["input_schema"],
                "description": "Weather in a city",
            },
        }
    ]
    sent = groq.requests[1].body["messages"]
    assert sent[1]["tool_calls"][0]["id"] == call.id
    assert json.loads(sent[1]["tool_calls"][0]["function"]["arguments"]) == call.input
    assert sent[2] == {"role": "tool", "tool_call_id": call.id, "content": "sunny, 24 C"}


async def test_a_forced_tool_with_no_parallel_calls(gateway, groq):
    async with client_for(gateway) as client:
        message = await client.messages.create(
            model=GROQ,
            max_tokens=256,
            messages=HI,
            tools=[WEATHER],
            tool_choice={"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
        )
    assert message.content[0].type == "tool_use"
    sent = groq.requests[0].body
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert sent["parallel_tool_calls"] is False


async def test_thinking_streams_as_a_thinking_block(gateway, groq):
    async with (
        client_for(gateway) as client,
        client.messages.stream(
            model=GROQ,
            max_tokens=2048,
            messages=HI,
            thinking={"type": "enabled", "budget_tokens": 1024},
        ) as stream,
    ):
        kinds = [event.type async for event in stream]
        final = await stream.get_final_message()
    assert "thinking" in kinds
    assert [b.type for b in final.content] == ["thinking", "text"]
    assert final.content[0].type == "thinking"
    assert final.content[0].thinking
    sent = groq.requests[0].body
    assert (sent["reasoning_effort"], sent["reasoning_format"]) == ("low", "parsed")


async def test_an_image_goes_upstream_as_an_image_url_part(seeing_gateway, groq):
    turn: Any = {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is it?"},
            {
                "type": "image",
                "source": {"type": "base64", "media_type": "image/png", "data": "AA=="},
            },
        ],
    }
    async with client_for(seeing_gateway) as client:
        await client.messages.create(model=GROQ, max_tokens=64, messages=[turn])
    assert groq.requests[0].body["messages"][0]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,AA=="},
    }


PNG: Any = {"type": "base64", "media_type": "image/png", "data": "AA=="}


async def test_images_go_only_to_members_that_take_them(seeing_gateway, groq, cerebras):
    # A tool result's image comes as a user message after the tool message: Groq only too.
    looked: Any = [
        {"role": "user", "content": "Look."},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "t1", "name": "look", "input": {}}],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "t1",
                    "content": [{"type": "image", "source": PNG}],
                },
            ],
        },
    ]
    tool: Any = {"name": "look", "input_schema": {"type": "object"}}
    async with client_for(seeing_gateway) as client:
        shown: Any = [{"role": "user", "content": [{"type": "image", "source": PNG}]}]
        for messages in (shown, looked):
            await client.messages.create(
                model="auto", max_tokens=16, messages=messages, tools=[tool]
            )
        await client.messages.create(model="auto", max_tokens=16, messages=HI)
        await client.messages.create(model="auto", max_tokens=16, messages=HI)
    assert len(groq.requests) == 3  # both image requests, and the first text one
    assert len(cerebras.requests) == 1  # text goes round
    sent = groq.requests[1].body["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "user"]
    assert sent[3]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,AA=="},
    }


async def test_images_on_a_route_of_text_only_models_are_a_400(gateway, groq, cerebras):
    turn: Any = {"role": "user", "content": [{"type": "image", "source": PNG}]}
    async with client_for(gateway) as client:
        with pytest.raises(anthropic.BadRequestError) as info:
            await client.messages.create(model="auto", max_tokens=16, messages=[turn])
    message = body_of(info.value)["error"]["message"]
    assert "images" in message
    assert "groq/openai/gpt-oss-120b" in message
    assert groq.requests == []
    assert cerebras.requests == []


@pytest.mark.parametrize(
    ("args", "named"),
    [
        ({"extra_body": {"temperature": 1.5}}, "temperature"),
        ({"extra_body": {"top_k": 5}}, "top_k"),
        ({"extra_body": {"frobnicate": 1}}, "frobnicate"),
        ({"max_tokens": 0}, "max_tokens"),
    ],
)
async def test_bad_input_is_a_bad_request_error_in_anthropic_shape(gateway, groq, args, named):
    async with client_for(gateway) as client:
        with pytest.raises(anthropic.BadRequestError) as info:
            await client.messages.create(
                **{"model": "auto", "max_tokens": 5, "messages": HI, **args}
            )
    assert info.value.status_code == 400
    assert body_of(info.value)["type"] == "error"
    assert body_of(info.value)["error"]["type"] == "invalid_request_error"
    assert named in body_of(info.value)["error"]["message"]
    assert groq.requests == []


async def test_top_k_goes_to_the_member_that_takes_it(groq):
    # vLLM takes top_k, Groq does not: the request skips Groq although it is first.
    async with FakeUpstream("openai") as vllm_fake:
        vllm = preset_settings(
            VLLM, {"VLLM_MODEL": "generic-large"}, base_url=f"{vllm_fake.base_url}/v1"
        )
        settings = settings_for(groq)
        settings = replace(settings, providers=(*settings.providers, vllm))
        async with running(settings) as url, client_for(url) as client:
            # The pinned SDK has no top_k argument any more; older ones and raw clients send it.
            message = await client.messages.create(
                model="auto", max_tokens=16, messages=HI, extra_body={"top_k": 7}
            )
    assert message.model == "generic-large"
    assert [r.body.get("top_k") for r in vllm_fake.requests] == [7]
    assert groq.requests == []


async def test_a_local_servers_placeholder_key_is_not_redacted_from_its_errors(groq):
    # A server that needs no key is sent "local": not a secret, and "localhost" stays whole.
    async with FakeUpstream("openai") as vllm_fake:
        url = f"{vllm_fake.base_url}/v1"
        vllm = preset_settings(VLLM, {"VLLM_MODEL": "not-loaded-locally"}, base_url=url)
        settings = replace(settings_for(groq), providers=(vllm,))
        async with running(settings) as gateway, client_for(gateway) as client:
            with pytest.raises(anthropic.InternalServerError) as info:  # the upstream's 404
                await client.messages.create(model="auto", max_tokens=16, messages=HI)
    assert "not-loaded-locally" in body_of(info.value)["error"]["message"]
    assert "[redacted]" not in body_of(info.value)["error"]["message"]


async def test_an_unknown_model_is_a_not_found_error(gateway):
    async with client_for(gateway) as client:
        with pytest.raises(anthropic.NotFoundError) as info:
            await client.messages.create(model="claude-sonnet-4-5", max_tokens=5, messages=HI)
    assert body_of(info.value)["error"]["type"] == "not_found_error"
    assert "auto" in body_of(info.value)["error"]["message"]


async def test_admission_and_routing_errors_are_in_anthropic_shape(gateway, client):
    url = gateway + "/v1/messages"
    body = json.dumps({"model": "auto", "max_tokens": 5, "messages": HI})
    cases = [
        (client.post(url, data=body, headers={"Content-Type": "text/plain"}), 415),
        (client.post(url, data=body, headers={"Origin": "https://evil.example"}), 403),
        (client.get(url), 405),
        (client.post(gateway + "/v1/messages/nope", data=body), 404),
    ]
    for request, status in cases:
        async with request as response:
            assert response.status == status
            error = await response.json()
        assert error["type"] == "error"
        assert set(error["error"]) == {"type", "message"}


async def test_gateway_keys_by_x_api_key_or_bearer_on_every_path(groq, client):
    keys = (
        GatewayKey("full", Secret("gw-key-full-0123456789")),
        GatewayKey("lister", Secret("gw-key-list-0123456789"), scopes=frozenset({"models"})),
        GatewayKey("cerebras-only", Secret("gw-key-cere-0123456789"), models=("cerebras/*",)),
    )
    async with running(settings_for(groq, gateway_keys=keys)) as url:
        async with client_for(url, "wrong-key-0123456789") as sdk:
            with pytest.raises(anthropic.AuthenticationError) as info:
                await sdk.messages.create(model="auto", max_tokens=5, messages=HI)
        assert body_of(info.value)["error"]["type"] == "authentication_error"
        assert "wrong-key" not in str(info.value.body)
        body = {"model": "auto", "max_tokens": 5, "messages": HI}
        async with client.post(url + "/v1/messages", json=body) as response:
            assert response.status == 401
            error = await response.json()
        assert error["error"]["type"] == "authentication_error"
        assert "x-api-key" in error["error"]["message"]
        # x-api-key is a gateway key on every path, as Authorization: Bearer is.
        headers = {"x-api-key": "gw-key-full-0123456789"}
        async with client.get(url + "/v1/models", headers=headers) as response:
            assert response.status == 200
        async with client_for(url, "gw-key-full-0123456789") as sdk:
            message = await sdk.messages.create(model="auto", max_tokens=5, messages=HI)
            assert message.content
        bearer = anthropic.AsyncAnthropic(
            base_url=url, auth_token="gw-key-full-0123456789", max_retries=0
        )
        async with bearer as sdk:
            count = await sdk.messages.count_tokens(model="auto", messages=HI)
            assert count.input_tokens > 0
        for key, model in (("gw-key-list-0123456789", "auto"), ("gw-key-cere-0123456789", GROQ)):
            async with client_for(url, key) as sdk:
                with pytest.raises(anthropic.PermissionDeniedError) as denied:
                    await sdk.messages.create(model=model, max_tokens=5, messages=HI)
            assert body_of(denied.value)["error"]["type"] == "permission_error"


async def test_an_upstream_429_before_the_first_byte_is_a_rate_limit_error(groq):
    groq.add_fault(Fault(status=429, retry_after=7))
    async with running(settings_for(groq)) as url, client_for(url) as client:
        with pytest.raises(anthropic.RateLimitError) as info:
            await client.messages.create(model="auto", max_tokens=5, messages=HI)
    assert body_of(info.value)["error"]["type"] == "rate_limit_error"
    assert int(info.value.response.headers["retry-after"]) > 0


async def test_an_overloaded_upstream_is_an_overloaded_error(groq):
    groq.add_fault(Fault(status=503))
    async with running(settings_for(groq)) as url, client_for(url) as client:
        with pytest.raises(anthropic.OverloadedError) as info:
            await client.messages.create(model="auto", max_tokens=5, messages=HI)
    assert info.value.status_code == 529
    assert body_of(info.value)["error"]["type"] == "overloaded_error"


@pytest.mark.parametrize("fault", [Fault(cut_after=3), Fault(error_after=2)])
async def test_a_failure_after_the_first_byte_raises_in_the_sdk(groq, client, fault):
    groq.add_fault(fault, times=2)
    async with running(settings_for(groq, continuation="off")) as url:
        async with client_for(url) as sdk:
            with pytest.raises(anthropic.APIError):
                async with sdk.messages.stream(model="auto", max_tokens=256, messages=HI) as s:
                    _ = [piece async for piece in s.text_stream]
        body = {"model": "auto", "max_tokens": 256, "messages": HI, "stream": True}
        async with client.post(url + "/v1/messages", json=body) as response:
            events = parse_events(await response.text())
    names = [name for name, _ in events]
    assert names[0] == "message_start"
    assert names[-1] == "error"
    assert "message_stop" not in names
    assert events[-1][1]["type"] == "error"
    assert events[-1][1]["error"]["type"] == "api_error"


async def test_failover_through_the_facade_and_the_ledger_records_the_attempts(
    groq, cerebras, client, tmp_path
):
    groq.add_fault(Fault(status=503, retry_after=10))
    members = (
        MemberSettings("groq", "openai/gpt-oss-120b"),
        MemberSettings("cerebras", "gpt-oss-120b"),
    )
    settings = settings_for(
        groq,
        cerebras,
        routes=(RouteSettings("smart", "fallback", members),),
        ledger=str(tmp_path / "usage.sqlite3"),
    )
    async with running(settings) as url:
        async with client_for(url) as sdk:
            raw = await sdk.messages.with_raw_response.create(
                model="smart", max_tokens=64, messages=HI
            )
        for _ in range(100):  # attempts are recorded in the background
            async with client.get(url + "/usage") as response:
                days = (await response.json())["days"]
            if sum(day["requests"] for day in days) == 2:
                break
            await asyncio.sleep(0.02)
    assert raw.headers["x-ai-api-provider"] == "cerebras"
    assert raw.headers["x-ai-api-attempts"] == "2"
    assert (await raw.parse()).model == "gpt-oss-120b"
    rows = {day["provider"]: (day["requests"], day["errors"]) for day in days}
    assert rows == {"groq": (1, 1), "cerebras": (1, 0)}


async def test_count_tokens_is_the_gateways_estimate(gateway, groq):
    async with client_for(gateway) as client:
        plain = await client.messages.count_tokens(model="auto", messages=HI)
        with_tools = await client.messages.count_tokens(
            model="auto", messages=HI, system="Be kind.", tools=[WEATHER]
        )
        with pytest.raises(anthropic.NotFoundError):
            await client.messages.count_tokens(model="nope", messages=HI)
    assert 0 < plain.input_tokens < with_tools.input_tokens
    assert groq.requests == []


async def test_an_alias_lands_on_its_route_and_shares_its_rotation(groq, cerebras, client):
    members = (
        MemberSettings("groq", "openai/gpt-oss-120b"),
        MemberSettings("cerebras", "gpt-oss-120b"),
    )
    keys = (GatewayKey("smart-only", Secret("gw-key-smart-0123456789"), models=("smart",)),)
    settings = settings_for(
        groq,
        cerebras,
        routes=(RouteSettings("smart", "round-robin", members),),
        aliases=(("claude-sonnet-4-5", "smart"),),
        gateway_keys=keys,
    )
    async with running(settings) as url, client_for(url, "gw-key-smart-0123456789") as sdk:
        served = []
        for model in ("claude-sonnet-4-5", "smart", "claude-sonnet-4-5"):
            raw = await sdk.messages.with_raw_response.create(
                model=model, max_tokens=16, messages=HI
            )
            served.append(raw.headers["x-ai-api-provider"])
        async with client.get(
            url + "/v1/models", headers={"x-api-key": "gw-key-smart-0123456789"}
        ) as response:
            listed = [m["id"] for m in (await response.json())["data"]]
    assert served == ["groq", "cerebras", "groq"]  # one rotation for both names
    assert sorted(listed) == ["claude-sonnet-4-5", "smart"]  # the key may use both names


async def test_models_in_anthropic_shape_for_the_anthropic_sdk(gateway, client):
    async with client_for(gateway) as sdk:
        names = [m.id async for m in sdk.models.list(limit=3)]  # the SDK pages by after_id
        page = await sdk.models.list()
        with pytest.raises(anthropic.BadRequestError) as info:
            await sdk.models.list(limit=0)
    assert body_of(info.value)["error"]["type"] == "invalid_request_error"
    async with client.get(gateway + "/v1/models") as response:
        openai_names = [m["id"] for m in (await response.json())["data"]]
    assert names == openai_names
    assert names[0] == "auto"
    assert page.data[0].type == "model"
    assert page.data[0].display_name == "auto"
    assert page.has_more is (len(names) > 20)


async def test_models_retrieve_in_anthropic_shape(gateway):
    async with client_for(gateway) as sdk:
        got = await sdk.models.retrieve("groq/openai/gpt-oss-120b")
        with pytest.raises(anthropic.NotFoundError) as info:
            await sdk.models.retrieve("nowhere/nothing")
    assert (got.type, got.id, got.display_name) == ("model", "groq/openai/gpt-oss-120b", got.id)
    assert body_of(info.value)["type"] == "error"


async def test_a_slow_upstream_gets_ping_events_between_its_chunks(groq, client):
    groq.token_delay, groq.answer_tokens = 0.2, 3
    body = {"model": GROQ, "max_tokens": 64, "messages": HI, "stream": True}
    async with running(settings_for(groq, ping_interval=0.05)) as url:
        async with client.post(url + "/v1/messages", json=body) as response:
            events = parse_events(await response.text())
        async with (
            client_for(url) as sdk,
            sdk.messages.stream(model=GROQ, max_tokens=64, messages=HI) as stream,
        ):
            kinds = [event.type async for event in stream]
            final = await stream.get_final_message()
    names = [name for name, _ in events]
    assert names.count("ping") >= 2
    assert ("ping", {"type": "ping"}) in events
    # Pings fall between events, never inside a block's deltas' order or after the end.
    assert names[0] == "message_start"
    assert names[-1] == "message_stop"
    assert [n for n in names if n != "ping"][-3:] == [
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert final.content[0].type == "text"
    assert final.stop_reason == "end_turn"
    assert "text" in kinds


async def test_a_fast_upstream_gets_no_ping(gateway, client):
    body = {"model": GROQ, "max_tokens": 64, "messages": HI, "stream": True}
    async with client.post(gateway + "/v1/messages", json=body) as response:
        names = [name for name, _ in parse_events(await response.text())]
    assert "ping" not in names


async def test_a_prompt_over_the_window_is_prompt_is_too_long(gateway, groq):
    groq.add_fault(Fault(status=400, code="context_length_exceeded"))
    async with client_for(gateway) as client:
        with pytest.raises(anthropic.BadRequestError) as info:
            await client.messages.create(model=GROQ, max_tokens=64, messages=HI)
    error = body_of(info.value)["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith("prompt is too long: groq: HTTP 400")


async def test_every_anthropic_answer_has_a_request_id(gateway, client):
    seen = set()
    async with client_for(gateway) as sdk:
        raw = await sdk.messages.with_raw_response.create(model=GROQ, max_tokens=8, messages=HI)
        seen.add(raw.headers["request-id"])
        async with sdk.messages.with_streaming_response.create(
            model=GROQ, max_tokens=8, messages=HI, stream=True
        ) as streamed:
            seen.add(streamed.headers["request-id"])
        counted = await sdk.messages.with_raw_response.count_tokens(model=GROQ, messages=HI)
        seen.add(counted.headers["request-id"])
        listed = await sdk.models.with_raw_response.list()
        seen.add(listed.headers["request-id"])
        with pytest.raises(anthropic.NotFoundError) as info:
            await sdk.messages.create(model="no-such-model", max_tokens=8, messages=HI)
        seen.add(info.value.response.headers["request-id"])
        assert info.value.request_id in seen
    assert len(seen) == 5
    assert all(value.startswith("req_") for value in seen)
    async with client.get(gateway + "/v1/models") as response:  # the OpenAI list: none
        assert "request-id" not in response.headers
