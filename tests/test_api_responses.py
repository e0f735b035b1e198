"""The OpenAI Responses API, driven by the official openai SDK over the fake upstreams."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import openai
import pytest

from ai_api.fakes import Fault
from ai_api.server import running
from ai_api.settings import GatewayKey, MemberSettings, RouteSettings, Secret

from .conftest import parse_events, settings_for
from .test_api_openai import fake_text

HI = "Hola, ¿cómo estás?"
WEATHER: Any = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "number"}},
        "required": ["city"],
    },
    "strict": False,
}
GROQ = "groq/openai/gpt-oss-120b"


def client_for(url: str, key: str = "unused") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=url + "/v1", api_key=key, max_retries=0)


async def test_a_response_with_the_async_sdk(gateway, groq):
    async with client_for(gateway) as client:
        raw = await client.responses.with_raw_response.create(
            model="auto", input=HI, instructions="Be kind.", max_output_tokens=256
        )
    response = raw.parse()
    assert raw.headers["x-ai-api-provider"] == "groq"
    assert response.id.startswith("resp_")
    assert response.object == "response"
    assert response.status == "completed"
    assert response.model == "openai/gpt-oss-120b"
    assert response.instructions == "Be kind."
    (item,) = response.output
    assert item.type == "message"
    assert item.id.startswith("msg_")
    assert item.status == "completed"
    assert item.role == "assistant"
    assert response.output_text == await fake_text(groq, "openai/gpt-oss-120b")
    assert item.content[0].type == "output_text"
    assert item.content[0].annotations == []
    assert response.usage is not None
    assert response.usage.output_tokens == groq.answer_tokens
    assert response.usage.input_tokens > 0
    assert response.usage.total_tokens == response.usage.input_tokens + groq.answer_tokens
    assert response.usage.input_tokens_details.cached_tokens == 0
    assert response.usage.output_tokens_details.reasoning_tokens == 0
    assert response.to_dict()["store"] is False  # not a field of the SDK's model
    sent = groq.requests[0].body
    assert sent["messages"] == [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": HI},
    ]
    assert sent["max_completion_tokens"] == 256
    assert "store" not in sent


async def test_a_response_with_the_sync_sdk_and_message_items(seeing_gateway, groq):
    items: Any = [
        {"role": "developer", "content": "Answer briefly."},
        {"role": "user", "content": [{"type": "input_text", "text": "Hi"}]},
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Hello!", "annotations": []}],
        },
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "What is it?"},
                {
                    "type": "input_image",
                    "image_url": "data:image/png;base64,AA==",
                    "detail": "auto",
                },
            ],
        },
    ]

    def call() -> Any:
        with openai.OpenAI(base_url=seeing_gateway + "/v1", api_key="x", max_retries=0) as c:
            return c.responses.create(model=GROQ, input=items, store=False)

    response = await asyncio.to_thread(call)
    assert response.status == "completed"
    assert response.output_text
    assert groq.requests[0].body["messages"] == [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is it?"},
                {
                    "type": "image_url",
                    "image_url": {"url": "data:image/png;base64,AA==", "detail": "auto"},
                },
            ],
        },
    ]


async def test_the_stream_helper_gives_the_text_and_the_final_response(gateway, groq):
    async with (
        client_for(gateway) as client,
        client.responses.stream(model=GROQ, input=HI) as stream,
    ):
        kinds = []
        text = []
        async for event in stream:
            kinds.append(event.type)
            if event.type == "response.output_text.delta":
                text.append(event.delta)
        final = await stream.get_final_response()
    assert "".join(text) == await fake_text(groq, "openai/gpt-oss-120b")
    assert final.output_text == "".join(text)
    assert final.status == "completed"
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert groq.requests[0].body["stream"] is True


async def test_the_raw_stream_is_named_events_with_sequence_numbers(gateway, client):
    body = {"model": GROQ, "input": HI, "stream": True}
    async with client.post(gateway + "/v1/responses", json=body) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/event-stream"
        raw = await response.text()
    assert raw.endswith("data: [DONE]\n\n")
    events = parse_events(raw.removesuffix("data: [DONE]\n\n"))
    assert all(name == data["type"] for name, data in events)
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    assert events[0][1]["response"]["status"] == "in_progress"
    assert events[0][1]["response"]["output"] == []
    assert events[-1][0] == "response.completed"
    assert events[-1][1]["response"]["output"][0]["content"][0]["text"]


async def test_create_with_stream_true_in_the_sdk(gateway, groq):
    async with client_for(gateway) as client:
        stream = await client.responses.create(model=GROQ, input=HI, stream=True)
        events = [event async for event in stream]
    assert events[-1].type == "response.completed"
    assert events[-1].response.output_text == await fake_text(groq, "openai/gpt-oss-120b")


@pytest.mark.parametrize("streamed", [True, False])
async def test_a_tool_loop(gateway, groq, streamed):
    async with client_for(gateway) as client:
        args: Any = {"model": GROQ, "tools": [WEATHER]}
        if streamed:
            async with client.responses.stream(**args, input=HI) as s:
                kinds = [event.type async for event in s]
                first = await s.get_final_response()
            assert "response.function_call_arguments.delta" in kinds
            assert "response.function_call_arguments.done" in kinds
        else:
            first = await client.responses.create(**args, input=HI)
        assert first.status == "completed"
        (call,) = [item for item in first.output if item.type == "function_call"]
        assert call.name == "get_weather"
        assert json.loads(call.arguments) == {"city": "example", "days": 1}
        assert call.id is not None
        assert call.id.startswith("fc_")
        assert call.status == "completed"
        history: Any = [
            {"role": "user", "content": HI},
            *first.output,  # as the SDK gives them back, parsed fields and all
            {"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 24 C"},
        ]
        final = await client.responses.create(**args, input=history)
    assert final.status == "completed"
    assert "sunny, 24 C" in final.output_text
    assert final.tools[0].type == "function"
    assert final.tools[0].name == "get_weather"
    assert groq.requests[0].body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": WEATHER["parameters"],
                "description": "Weather in a city",
            },
        }
    ]
    sent = groq.requests[1].body["messages"]
    assert sent[1]["role"] == "assistant"
    assert sent[1]["tool_calls"][0]["id"] == call.call_id
    assert json.loads(sent[1]["tool_calls"][0]["function"]["arguments"]) == {
        "city": "example",
        "days": 1,
    }
    assert sent[2] == {"role": "tool", "tool_call_id": call.call_id, "content": "sunny, 24 C"}


async def test_a_namespace_tool_round_trip(gateway, groq):
    agents: Any = {
        "type": "namespace",
        "name": "agents",
        "description": "Sub-agents.",
        "tools": [{**WEATHER, "name": "spawn"}],
    }
    async with client_for(gateway) as client:
        first = await client.responses.create(model=GROQ, input=HI, tools=[agents])
        (call,) = first.output
        assert call.type == "function_call"
        assert (call.namespace, call.name) == ("agents", "spawn")
        history: Any = [
            {"role": "user", "content": HI},
            call,
            {"type": "function_call_output", "call_id": call.call_id, "output": "spawned"},
        ]
        final = await client.responses.create(model=GROQ, input=history, tools=[agents])
    assert "spawned" in final.output_text
    assert groq.requests[0].body["tools"][0]["function"]["name"] == "agents__spawn"
    sent = groq.requests[1].body["messages"][1]["tool_calls"][0]
    assert sent["function"]["name"] == "agents__spawn"


async def test_a_custom_tool_round_trip(gateway, groq):
    patch: Any = {"type": "custom", "name": "apply_patch", "description": "Edit files."}
    async with client_for(gateway) as client:
        async with client.responses.stream(model=GROQ, input=HI, tools=[patch]) as stream:
            kinds = [event.type async for event in stream]
            first = await stream.get_final_response()
        (call,) = first.output
        assert call.type == "custom_tool_call"
        assert (call.name, call.input) == ("apply_patch", "example")
        assert "response.custom_tool_call_input.done" in kinds
        history: Any = [
            {"role": "user", "content": HI},
            call,
            {"type": "custom_tool_call_output", "call_id": call.call_id, "output": "patched"},
        ]
        final = await client.responses.create(model=GROQ, input=history, tools=[patch])
    assert "patched" in final.output_text
    sent = groq.requests[1].body["messages"][1]["tool_calls"][0]
    assert json.loads(sent["function"]["arguments"]) == {"input": "example"}


async def test_a_forced_function_and_no_parallel_calls(gateway, groq):
    async with client_for(gateway) as client:
        response = await client.responses.create(
            model=GROQ,
            input=HI,
            tools=[WEATHER],
            tool_choice={"type": "function", "name": "get_weather"},
            parallel_tool_calls=False,
        )
    assert response.output[0].type == "function_call"
    assert response.parallel_tool_calls is False
    sent = groq.requests[0].body
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert sent["parallel_tool_calls"] is False


async def test_reasoning_streams_as_a_reasoning_item_with_a_summary(gateway, groq):
    async with (
        client_for(gateway) as client,
        client.responses.stream(
            model=GROQ, input=HI, reasoning={"effort": "minimal", "summary": "auto"}
        ) as stream,
    ):
        kinds = [event.type async for event in stream]
        final = await stream.get_final_response()
    assert [item.type for item in final.output] == ["reasoning", "message"]
    reasoning = final.output[0]
    assert reasoning.type == "reasoning"
    assert reasoning.id.startswith("rs_")
    assert reasoning.summary[0].type == "summary_text"
    assert reasoning.summary[0].text
    for kind in (
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
    ):
        assert kind in kinds
    assert final.reasoning is not None
    assert final.reasoning.effort == "minimal"
    sent = groq.requests[0].body
    assert (sent["reasoning_effort"], sent["reasoning_format"]) == ("low", "parsed")


async def test_a_json_schema_format_goes_upstream_as_response_format(gateway, groq):
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    }
    async with client_for(gateway) as client:
        response = await client.responses.create(
            model=GROQ,
            input=HI,
            text={
                "format": {"type": "json_schema", "name": "place", "schema": schema, "strict": True}
            },
        )
        await client.responses.create(model=GROQ, input=HI, text={"format": {"type": "text"}})
    assert response.text is not None
    assert response.text.format is not None
    assert response.text.format.type == "json_schema"
    assert groq.requests[0].body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "place", "schema": schema, "strict": True},
    }
    assert "response_format" not in groq.requests[1].body


async def test_a_length_cut_is_an_incomplete_response(gateway):
    async with client_for(gateway) as client:
        response = await client.responses.create(model=GROQ, input=HI, max_output_tokens=2)
        stream = await client.responses.create(
            model=GROQ, input=HI, max_output_tokens=2, stream=True
        )
        events = [event async for event in stream]
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    (item,) = response.output
    assert item.type == "message"
    assert item.status == "incomplete"
    assert events[-1].type == "response.incomplete"


@pytest.mark.parametrize(
    ("args", "named"),
    [
        ({"extra_body": {"frobnicate": 1}}, "frobnicate"),
        ({"temperature": 2.5}, "temperature"),
        ({"store": True}, "store"),
        ({"previous_response_id": "resp_123"}, "previous_response_id"),
        ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type"),
        ({"input": [{"role": "user", "content": [{"type": "input_text"}]}]}, "input[0].content[0]"),
        ({"input": [{"role": "robot", "content": "hi"}]}, "input[0].role"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
    ],
)
async def test_bad_input_is_a_bad_request_error_naming_the_param(gateway, groq, args, named):
    async with client_for(gateway) as client:
        with pytest.raises(openai.BadRequestError) as info:
            await client.responses.create(**{"model": "auto", "input": HI, **args})
    assert info.value.status_code == 400
    assert info.value.param == named
    assert info.value.type == "invalid_request_error"
    assert groq.requests == []


async def test_an_unknown_model_is_a_not_found_error(gateway):
    async with client_for(gateway) as client:
        with pytest.raises(openai.NotFoundError) as info:
            await client.responses.create(model="gpt-5.9", input=HI)
    assert "auto" in info.value.message


async def test_gateway_keys(groq):
    keys = (
        GatewayKey("full", Secret("gw-key-full-0123456789")),
        GatewayKey("lister", Secret("gw-key-list-0123456789"), scopes=frozenset({"models"})),
        GatewayKey("chat", Secret("gw-key-chat-0123456789"), scopes=frozenset({"chat"})),
    )
    async with running(settings_for(groq, gateway_keys=keys)) as url:
        async with client_for(url, "wrong-key-0123456789") as sdk:
            with pytest.raises(openai.AuthenticationError):
                await sdk.responses.create(model="auto", input=HI)
        async with client_for(url, "gw-key-list-0123456789") as sdk:
            with pytest.raises(openai.PermissionDeniedError):
                await sdk.responses.create(model="auto", input=HI)
        async with client_for(url, "gw-key-chat-0123456789") as sdk:
            response = await sdk.responses.create(model="auto", input=HI)
    assert response.status == "completed"


async def test_an_upstream_429_before_the_first_byte_is_a_rate_limit_error(groq):
    groq.add_fault(Fault(status=429, retry_after=7))
    async with running(settings_for(groq)) as url, client_for(url) as client:
        with pytest.raises(openai.RateLimitError) as info:
            await client.responses.create(model="auto", input=HI, stream=True)
    assert int(info.value.response.headers["retry-after"]) > 0


@pytest.mark.parametrize("fault", [Fault(cut_after=3), Fault(error_after=2)])
async def test_a_failure_after_the_first_byte_raises_and_ends_failed(groq, client, fault):
    groq.add_fault(fault, times=2)
    async with running(settings_for(groq, continuation="off")) as url:
        async with client_for(url) as sdk:
            with pytest.raises(openai.APIError):
                async with sdk.responses.stream(model="auto", input=HI) as s:
                    _ = [event async for event in s]
        body = {"model": "auto", "input": HI, "stream": True}
        async with client.post(url + "/v1/responses", json=body) as response:
            raw = await response.text()
    events = parse_events(raw.removesuffix("data: [DONE]\n\n"))
    names = [name for name, _ in events]
    assert names[0] == "response.created"
    assert names[-2:] == ["error", "response.failed"]
    assert "response.completed" not in names
    failed = events[-1][1]["response"]
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "server_error"
    assert failed["output"][0]["status"] == "incomplete"
    assert events[-2][1]["code"] == "server_error"


async def test_a_member_failing_mid_stream_is_continued_and_the_response_completes(groq, cerebras):
    groq.add_fault(Fault(cut_after=3))
    async with (
        running(settings_for(groq, cerebras)) as url,
        client_for(url) as sdk,
        sdk.responses.stream(model="auto", input=HI) as stream,
    ):
        kinds = [event.type async for event in stream]
        final = await stream.get_final_response()
    assert kinds[-1] == "response.completed"
    assert "error" not in kinds
    assert final.status == "completed"
    (asked,) = cerebras.requests
    said = asked.body["messages"][-1]  # what Groq had said, for Cerebras to go on from
    assert said["role"] == "assistant"
    assert final.output_text.startswith(said["content"])
    assert len(final.output_text) > len(said["content"])


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
            raw = await sdk.responses.with_raw_response.create(model="smart", input=HI)
        for _ in range(100):  # attempts are recorded in the background
            async with client.get(url + "/usage") as response:
                days = (await response.json())["days"]
            if sum(day["requests"] for day in days) == 2:
                break
            await asyncio.sleep(0.02)
    assert raw.headers["x-ai-api-provider"] == "cerebras"
    assert raw.headers["x-ai-api-attempts"] == "2"
    assert raw.parse().model == "gpt-oss-120b"
    rows = {day["provider"]: (day["requests"], day["errors"]) for day in days}
    assert rows == {"groq": (1, 1), "cerebras": (1, 0)}
