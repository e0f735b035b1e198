"""Tool calls, shown reasoning, request validation, the generic OpenAI-compatible flavor and SSE
comments of the fake upstreams, driven by the official Groq and Cerebras SDKs and by aiohttp.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import AsyncIterator
from typing import Any, Literal

import aiohttp
import groq
import pydantic
import pytest
from cerebras.cloud import sdk as cerebras
from cerebras.cloud.sdk.types.chat.chat_completion import (
    ChatChunkResponse,
    ChatCompletionResponse,
)

from ai_api.fakes import FLAVORS, FakeUpstream, Fault
from ai_api.fakes.__main__ import parse_args
from ai_api.fakes.answer import THOUGHT, answer_tokens, prompt_tokens
from ai_api.fakes.rules import RequestRules, Violation, violation
from ai_api.fakes.tools import example_arguments, tool_call
from ai_api.fakes.wire import ToolCall
from tests.test_fakes import (
    CEREBRAS_MODEL,
    GROQ_MODEL,
    MESSAGES,
    body_of,
    events,
)

GENERIC_KEY = "sk-generic-test"
GENERIC_MODEL = "generic-large"
THOUGHT_TOKENS = len(THOUGHT.split())
WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer"},
                "detailed": {"type": "boolean"},
            },
            "required": ["city"],
        },
    },
}
TIME: Any = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}},
    },
}
WEATHER_ARGS = {"city": "example", "unit": "celsius", "days": 1, "detailed": True}
TOOL_ROUND: Any = [
    {"role": "user", "content": "Weather in Paris?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "21 degrees and sunny"},
]


@pytest.fixture
async def generic_fake() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream("openai", api_key=GENERIC_KEY) as fake:
        yield fake


def post(session: aiohttp.ClientSession, fake: FakeUpstream, body: Any, key: str = "") -> Any:
    """A raw chat request; use as `async with post(...) as response`."""
    headers = {"Authorization": f"Bearer {key or fake.api_key}"}
    return session.post(fake.base_url + fake.flavor.chat_path, json=body, headers=headers)


def chunks_of(raw: bytes) -> list[dict[str, Any]]:
    payloads = events(raw)
    assert payloads[-1] == b"[DONE]"
    return [json.loads(p) for p in payloads[:-1]]


def answer(flavor: str, model: str, messages: Any, count: int = 20) -> str:
    return "".join(answer_tokens(FLAVORS[flavor].label, model, messages, count))


# Tool calls


async def test_groq_streamed_tool_call_reassembles(groq_fake, groq_client):
    stream = await groq_client.chat.completions.create(
        model=GROQ_MODEL, messages=MESSAGES, tools=[WEATHER, TIME], stream=True
    )
    chunks = [chunk async for chunk in stream]

    calls = [c.choices[0].delta.tool_calls for c in chunks if c.choices[0].delta.tool_calls]
    head, pieces = calls[0][0], [c[0] for c in calls[1:]]
    assert head.id is not None
    assert head.id.startswith("call_")
    assert head.type == "function"
    assert head.function is not None
    assert head.function.name == "get_weather"
    assert head.function.arguments == ""
    assert 2 <= len(pieces) <= 3
    assert all(p.index == 0 and p.id is None and p.function for p in pieces)
    arguments = "".join(p.function.arguments or "" for p in pieces if p.function)
    assert json.loads(arguments) == WEATHER_ARGS
    assert all(not c.choices[0].delta.content for c in chunks)
    last = chunks[-1]
    assert last.choices[0].finish_reason == "tool_calls"
    assert last.x_groq is not None
    assert last.x_groq.usage is not None
    call = ToolCall("x", "get_weather", arguments)
    assert last.x_groq.usage.completion_tokens == call.tokens
    assert groq_fake.requests[0].body["tools"] == [WEATHER, TIME]


async def test_cerebras_streamed_tool_call_honours_a_named_tool_choice(cerebras_client):
    stream = await cerebras_client.chat.completions.create(
        model=CEREBRAS_MODEL,
        messages=MESSAGES,
        tools=[WEATHER, TIME],
        tool_choice={"type": "function", "function": {"name": "get_time"}},
        stream=True,
    )
    chunks = [c async for c in stream if isinstance(c, ChatChunkResponse)]

    deltas = [c.choices[0].delta for c in chunks if c.choices and c.choices[0].delta]
    calls = [d.tool_calls[0] for d in deltas if d.tool_calls]
    assert calls[0].function.name == "get_time"
    assert all(call.type == "function" for call in calls)
    assert json.loads("".join(c.function.arguments or "" for c in calls)) == {"zone": "example"}
    last = chunks[-1]
    assert last.choices is not None
    assert last.choices[0].finish_reason == "tool_calls"
    assert last.usage is not None


async def test_groq_non_streaming_tool_call(groq_client):
    completion = await groq_client.chat.completions.create(
        model=GROQ_MODEL, messages=MESSAGES, tools=[WEATHER], tool_choice="required"
    )

    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.tool_calls is not None
    (call,) = choice.message.tool_calls
    assert call.id.startswith("call_")
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == WEATHER_ARGS


async def test_cerebras_non_streaming_tool_call(cerebras_client):
    completion = await cerebras_client.chat.completions.create(
        model=CEREBRAS_MODEL, messages=MESSAGES, tools=[TIME], tool_choice="auto"
    )

    assert isinstance(completion, ChatCompletionResponse)
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.tool_calls is not None
    assert choice.message.tool_calls[0].function.name == "get_time"
    assert json.loads(choice.message.tool_calls[0].function.arguments or "") == {"zone": "example"}


async def test_tool_result_gets_a_text_answer_quoting_it(groq_client, cerebras_client):
    completion = await groq_client.chat.completions.create(
        model=GROQ_MODEL, messages=TOOL_ROUND, tools=[WEATHER]
    )
    stream = await cerebras_client.chat.completions.create(
        model=CEREBRAS_MODEL, messages=TOOL_ROUND, tools=[WEATHER], stream=True
    )
    chunks = [c async for c in stream if isinstance(c, ChatChunkResponse)]

    text = completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "stop"
    assert completion.choices[0].message.tool_calls is None
    assert text == answer("groq", GROQ_MODEL, TOOL_ROUND)
    assert text.split(". ")[0].endswith("the tool said: 21 degrees and sunny")
    streamed = "".join(
        c.choices[0].delta.content or "" for c in chunks if c.choices and c.choices[0].delta
    )
    assert streamed == answer("cerebras", CEREBRAS_MODEL, TOOL_ROUND)
    assert chunks[-1].choices is not None
    assert chunks[-1].choices[0].finish_reason == "stop"


async def test_tool_choice_none_answers_in_text(groq_client):
    completion = await groq_client.chat.completions.create(
        model=GROQ_MODEL, messages=MESSAGES, tools=[WEATHER], tool_choice="none"
    )

    assert completion.choices[0].finish_reason == "stop"
    assert completion.choices[0].message.tool_calls is None
    assert completion.choices[0].message.content == answer("groq", GROQ_MODEL, MESSAGES)


async def test_tool_choice_naming_an_absent_function_is_refused(groq_client):
    with pytest.raises(groq.BadRequestError) as caught:
        await groq_client.chat.completions.create(
            model=GROQ_MODEL,
            messages=MESSAGES,
            tools=[WEATHER],
            tool_choice={"type": "function", "function": {"name": "launch"}},
        )

    assert body_of(caught.value)["error"]["param"] == "tool_choice"


async def test_faults_count_tool_call_chunks(groq_fake, session):
    groq_fake.add_fault(Fault(error_after=2))
    body = {"model": GROQ_MODEL, "messages": MESSAGES, "tools": [WEATHER], "stream": True}
    async with post(session, groq_fake, body) as response:
        payloads = [json.loads(p) for p in events(await response.read())]

    assert len(payloads) == 4  # role chunk, tool-call head, one argument piece, error
    assert payloads[1]["choices"][0]["delta"]["tool_calls"][0]["function"]["name"]
    assert "error" in payloads[-1]


def test_example_arguments_follow_the_schema():
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "score": {"type": "number"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "where": {"type": "object", "properties": {"lat": {"type": "number"}}},
            "maybe": {"type": ["null", "boolean"]},
            "nothing": {"type": "null"},
            "free": {},
        },
    }
    assert example_arguments(schema) == {
        "name": "example",
        "score": 1,
        "tags": ["example"],
        "where": {"lat": 1},
        "maybe": True,
        "nothing": None,
        "free": "example",
    }
    assert example_arguments(None) == {}


def test_tool_call_only_after_a_user_turn():
    body = {"messages": MESSAGES, "tools": [WEATHER]}
    assert tool_call(body, "call_1") == ToolCall(
        "call_1", "get_weather", json.dumps(WEATHER_ARGS, separators=(",", ":"))
    )
    assert tool_call({**body, "messages": TOOL_ROUND}, "call_1") is None
    assert tool_call({**body, "tools": []}, "call_1") is None
    # Claude Code's environment comes as a system turn after the user's: still the user's turn.
    system = {"role": "system", "content": "Working directory: /tmp"}
    assert tool_call({**body, "messages": [*MESSAGES, system]}, "call_1") is not None
    assert tool_call({**body, "messages": [*TOOL_ROUND, system]}, "call_1") is None
    assert tool_call({**body, "messages": [system]}, "call_1") is None


def test_the_last_user_turn_can_tell_the_fake_which_call_to_make():
    told = 'Run this.\nfake-tool-call: get_time {"zone": "Europe/Madrid"}'
    parts = [{"type": "text", "text": "first"}, {"type": "text", "text": told}]
    for content in (told, parts):
        body = {"messages": [{"role": "user", "content": content}], "tools": [WEATHER, TIME]}
        assert tool_call(body, "c") == ToolCall("c", "get_time", '{"zone":"Europe/Madrid"}')
    body = {"messages": [{"role": "user", "content": told}], "tools": [WEATHER, TIME]}
    # A tool not offered, arguments that are not an object, or a forced other tool: the
    # usual example call.
    example = ToolCall("c", "get_weather", json.dumps(WEATHER_ARGS, separators=(",", ":")))
    assert tool_call({**body, "tools": [WEATHER]}, "c") == example
    not_object = {"role": "user", "content": "fake-tool-call: get_time [1]"}
    assert tool_call({**body, "messages": [not_object]}, "c") == example
    forced = {"type": "function", "function": {"name": "get_weather"}}
    assert tool_call({**body, "tool_choice": forced}, "c") == example
    # Told none: a text answer, unless a tool is forced.
    none = {"role": "user", "content": "Say hello.\nfake-tool-call: none"}
    assert tool_call({**body, "messages": [none]}, "c") is None
    assert tool_call({**body, "messages": [none], "tool_choice": forced}, "c") == example
    assert tool_call({**body, "messages": [none], "tool_choice": "required"}, "c") == example
    # Only the last user turn counts.
    earlier = [{"role": "user", "content": told}, {"role": "assistant", "content": "ok"}]
    assert tool_call({**body, "messages": [*earlier, *MESSAGES]}, "c") == example


def test_an_answer_quotes_the_tool_result_before_a_system_turn():
    system = {"role": "system", "content": "Working directory: /tmp"}
    text = answer("groq", "m", [*TOOL_ROUND, system], 30)
    assert "the tool said: 21 degrees and sunny." in text


def test_tool_call_pieces_cover_the_arguments():
    call = ToolCall("call_1", "f", '{"city":"example"}')
    assert len(call.pieces()) == 3
    assert "".join(call.pieces()) == call.arguments
    assert ToolCall("call_1", "f", "{}").pieces() == ["{", "}"]


# Reasoning


async def test_groq_gpt_oss_streams_reasoning_on_the_analysis_channel(groq_client):
    stream = await groq_client.chat.completions.create(
        model=GROQ_MODEL,
        messages=MESSAGES,
        stream=True,
        reasoning_format="parsed",
        extra_body={"stream_options": {"include_usage": True}},
    )
    chunks = [chunk async for chunk in stream]

    deltas = [c.choices[0].delta for c in chunks if c.choices]
    thinking = [d for d in deltas if d.reasoning]
    assert "".join(d.reasoning or "" for d in thinking) == THOUGHT
    assert all(getattr(d, "channel", None) == "analysis" for d in thinking)
    first_content = next(i for i, d in enumerate(deltas) if d.content)
    assert first_content > deltas.index(thinking[-1])
    assert "".join(d.content or "" for d in deltas) == answer("groq", GROQ_MODEL, MESSAGES)
    usage = chunks[-1].usage
    assert usage is not None
    assert usage.completion_tokens == 20 + THOUGHT_TOKENS
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == THOUGHT_TOKENS


async def test_groq_qwen3_include_reasoning_non_streaming(groq_client):
    completion = await groq_client.chat.completions.create(
        model="qwen/qwen3.6-27b", messages=MESSAGES, include_reasoning=True
    )

    assert completion.choices[0].message.reasoning == THOUGHT
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 20 + THOUGHT_TOKENS
    assert completion.usage.completion_tokens_details is not None
    assert completion.usage.completion_tokens_details.reasoning_tokens == THOUGHT_TOKENS


@pytest.mark.parametrize(
    ("model", "extra"),
    [
        (GROQ_MODEL, {}),
        (GROQ_MODEL, {"reasoning_format": "hidden"}),
        (GROQ_MODEL, {"include_reasoning": False}),
        ("llama-3.1-8b-instant", {"reasoning_format": "parsed"}),
    ],
)
async def test_groq_shows_no_reasoning_unless_asked(groq_fake, session, model, extra):
    body = {"model": model, "messages": MESSAGES, "stream": True, **extra}
    async with post(session, groq_fake, body) as response:
        raw = await response.read()

    assert b'"reasoning"' not in raw
    assert chunks_of(raw)[-1]["x_groq"]["usage"]["completion_tokens"] == 20


async def test_groq_reasoning_format_and_include_reasoning_are_exclusive(groq_client):
    with pytest.raises(groq.BadRequestError) as caught:
        await groq_client.chat.completions.create(
            model=GROQ_MODEL, messages=MESSAGES, reasoning_format="parsed", include_reasoning=True
        )

    error = body_of(caught.value)["error"]
    assert error["type"] == "invalid_request_error"
    assert "mutually exclusive" in error["message"]


async def test_cerebras_parsed_reasoning_streams_and_completes(cerebras_client):
    stream = await cerebras_client.chat.completions.create(
        model=CEREBRAS_MODEL, messages=MESSAGES, stream=True, reasoning_format="parsed"
    )
    chunks = [c async for c in stream if isinstance(c, ChatChunkResponse)]
    completion = await cerebras_client.chat.completions.create(
        model=CEREBRAS_MODEL,
        messages=MESSAGES,
        reasoning_format="parsed",
        max_tokens=THOUGHT_TOKENS + 5,
    )
    hidden = await cerebras_client.chat.completions.create(
        model=CEREBRAS_MODEL, messages=MESSAGES, reasoning_format="hidden"
    )

    deltas = [c.choices[0].delta for c in chunks if c.choices and c.choices[0].delta]
    assert "".join(d.reasoning or "" for d in deltas) == THOUGHT
    assert not any("channel" in (d.model_extra or {}) for d in deltas)
    usage = chunks[-1].usage
    assert usage is not None
    assert usage.completion_tokens == 20 + THOUGHT_TOKENS
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == THOUGHT_TOKENS
    assert isinstance(completion, ChatCompletionResponse)
    assert completion.choices[0].message.reasoning == THOUGHT
    assert completion.choices[0].finish_reason == "length"
    assert completion.choices[0].message.content == answer("cerebras", CEREBRAS_MODEL, MESSAGES, 5)
    assert isinstance(hidden, ChatCompletionResponse)
    assert hidden.choices[0].message.reasoning is None


# Validation


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"logit_bias": {"1234": 5}}, "logit_bias"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"temperature": 2.5}, "temperature"),
        ({"temperature": -0.1}, "temperature"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"reasoning_format": "verbose"}, "reasoning_format"),
    ],
)
async def test_groq_refuses_what_its_docs_refuse(groq_fake, groq_client, extra, param):
    with pytest.raises(groq.BadRequestError) as caught:
        await groq_client.chat.completions.create(
            model=GROQ_MODEL, messages=MESSAGES, extra_body=extra
        )

    assert caught.value.status_code == 400
    error = body_of(caught.value)["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert "code" not in error
    seen = groq_fake.requests[0]
    assert seen.status == 400
    assert all(seen.body[k] == v for k, v in extra.items())


async def test_groq_refuses_named_messages_and_accepts_the_edges(groq_client):
    named: Any = [{"role": "user", "content": "hi", "name": "ana"}]
    with pytest.raises(groq.BadRequestError) as caught:
        await groq_client.chat.completions.create(model=GROQ_MODEL, messages=named)
    assert body_of(caught.value)["error"]["param"] == "messages.0.name"

    for extra in (
        {"temperature": 0, "n": 1, "logprobs": False, "stop": ["a", "b", "c", "d"]},
        {"temperature": 2, "logit_bias": None, "top_logprobs": None},
    ):
        completion = await groq_client.chat.completions.create(
            model=GROQ_MODEL, messages=MESSAGES, extra_body=extra
        )
        assert completion.choices[0].finish_reason == "stop"


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ({"temperature": 1.6}, "temperature"),
        ({"top_logprobs": 21, "logprobs": True}, "top_logprobs"),
        ({"reasoning_format": "verbose"}, "reasoning_format"),
    ],
)
async def test_cerebras_refuses_in_its_own_shape(cerebras_client, extra, fragment):
    with pytest.raises(cerebras.BadRequestError) as caught:
        await cerebras_client.chat.completions.create(
            model=CEREBRAS_MODEL, messages=MESSAGES, extra_body=extra
        )

    body = body_of(caught.value)
    assert caught.value.status_code == 400
    assert set(body) == {"message", "type", "param", "code"}
    assert body["type"] == "invalid_request_error"
    assert body["param"] == "validation_error"
    assert body["code"] == "wrong_api_format"
    assert fragment in body["message"]


async def test_cerebras_accepts_what_groq_refuses(cerebras_client):
    completion = await cerebras_client.chat.completions.create(
        model=CEREBRAS_MODEL,
        messages=[{"role": "user", "content": "hi", "name": "ana"}],
        temperature=1.5,
        n=1,
        logprobs=True,
        top_logprobs=20,
        stop=["a", "b", "c", "d", "e"],
    )
    assert isinstance(completion, ChatCompletionResponse)


def test_rules_are_plain_data():
    strict = RequestRules(temperature_max=1.0, unsupported=("seed",))
    assert violation({"temperature": 1.0, "seed": None}, strict) is None
    assert violation({"temperature": "hot"}, strict) == Violation(
        "temperature", "`temperature` must be a number."
    )
    assert violation({"seed": 7}, strict) == Violation(
        "seed", "`seed` is not supported with this model"
    )
    assert violation({"n": 3}, RequestRules()) is None


# The generic OpenAI-compatible flavor


async def test_generic_stream_has_no_usage_unless_asked(generic_fake, session):
    body = {"model": GENERIC_MODEL, "messages": MESSAGES, "stream": True}
    async with post(session, generic_fake, body) as response:
        assert response.status == 200
        assert not any(h.lower().startswith("x-ratelimit") for h in response.headers)
        plain = chunks_of(await response.read())
    body["stream_options"] = {"include_usage": True}
    async with post(session, generic_fake, body) as response:
        counted = chunks_of(await response.read())

    assert all("usage" not in c for c in plain)
    assert plain[0]["choices"][0]["delta"]["role"] == "assistant"
    assert plain[-1]["choices"][0]["finish_reason"] == "stop"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in plain)
    assert text == answer("openai", GENERIC_MODEL, MESSAGES)
    assert len(counted) == len(plain) + 1
    assert all("usage" not in c for c in counted[:-1])
    assert counted[-1]["choices"] == []
    assert counted[-1]["usage"]["completion_tokens"] == 20
    assert counted[-1]["usage"]["prompt_tokens"] == prompt_tokens(MESSAGES)
    assert counted[-1]["usage"]["total_tokens"] == 20 + prompt_tokens(MESSAGES)


async def test_generic_completion_and_tool_call_shapes(generic_fake, session):
    async with post(session, generic_fake, {"model": "generic-small", "messages": MESSAGES}) as r:
        completion = await r.json()
    body = {"model": GENERIC_MODEL, "messages": MESSAGES, "tools": [WEATHER]}
    async with post(session, generic_fake, body) as response:
        called = await response.json()

    assert completion["object"] == "chat.completion"
    assert completion["choices"][0]["message"]["content"] == answer(
        "openai", "generic-small", MESSAGES
    )
    assert completion["usage"]["completion_tokens"] == 20
    message = called["choices"][0]["message"]
    assert called["choices"][0]["finish_reason"] == "tool_calls"
    assert message["content"] is None
    assert json.loads(message["tool_calls"][0]["function"]["arguments"]) == WEATHER_ARGS


@pytest.mark.parametrize(
    ("fault", "body", "key", "status", "code"),
    [
        (None, {"model": GENERIC_MODEL, "messages": MESSAGES}, "sk-wrong", 401, "invalid_api_key"),
        (None, {"model": "gpt-9", "messages": MESSAGES}, "", 404, "model_not_found"),
        (Fault(status=429), {"model": GENERIC_MODEL, "messages": MESSAGES}, "", 429, None),
        (None, {"model": GENERIC_MODEL, "messages": MESSAGES, "temperature": 3}, "", 400, None),
        (Fault(status=500), {"model": GENERIC_MODEL, "messages": MESSAGES}, "", 500, None),
    ],
)
async def test_generic_errors_are_nested_with_four_fields(
    generic_fake, session, fault, body, key, status, code
):
    if fault:
        generic_fake.add_fault(fault)
    async with post(session, generic_fake, body, key) as response:
        assert response.status == status
        error = (await response.json())["error"]

    assert set(error) == {"message", "type", "param", "code"}
    if code:
        assert error["code"] == code
    if status == 429:
        assert error["code"] == "rate_limit_exceeded"
        assert "Please try again in 1s." in error["message"]
    if status == 400:
        assert (error["type"], error["param"]) == ("invalid_request_error", "temperature")
    if status == 500:
        assert error["type"] == "server_error"


async def test_generic_rate_limit_headers_once_limits_are_given(session):
    limited = dataclasses.replace(FLAVORS["openai"], requests_limit=60, tokens_limit=150_000)
    async with FakeUpstream(limited, api_key=GENERIC_KEY) as fake:
        body = {"model": GENERIC_MODEL, "messages": MESSAGES}
        async with post(session, fake, body) as response:
            headers = response.headers

    assert headers["x-ratelimit-limit-requests"] == "60"
    assert headers["x-ratelimit-remaining-requests"] == "59"
    assert headers["x-ratelimit-reset-requests"] == "1s"
    assert headers["x-ratelimit-limit-tokens"] == "150000"
    assert int(headers["x-ratelimit-remaining-tokens"]) < 150_000
    assert re.fullmatch(r"\d+ms", headers["x-ratelimit-reset-tokens"])


@pytest.mark.parametrize(
    ("chat_path", "models_path"),
    [
        ("/api/v1/chat/completions", "/api/v1/models"),
        ("/v1beta/openai/chat/completions", "/v1beta/openai/models"),
    ],
)
async def test_generic_mounts_at_other_paths(session, chat_path, models_path):
    fake = FakeUpstream(FLAVORS["openai"].mounted(chat_path, models_path), api_key=GENERIC_KEY)
    headers = {"Authorization": f"Bearer {GENERIC_KEY}"}
    async with fake:
        body = {"model": GENERIC_MODEL, "messages": MESSAGES}
        async with session.post(fake.base_url + chat_path, json=body, headers=headers) as r:
            assert r.status == 200
        async with session.get(fake.base_url + models_path, headers=headers) as r:
            assert [m["id"] for m in (await r.json())["data"]] == list(fake.flavor.models)
        url = fake.base_url + "/v1/chat/completions"
        async with session.post(url, json=body, headers=headers) as r:
            assert r.status == 404
            error = (await r.json())["error"]

    assert fake.flavor.chat_path == chat_path
    assert FLAVORS["openai"].chat_path == "/v1/chat/completions"
    assert error["message"] == "Invalid URL (POST /v1/chat/completions)"


def test_cli_takes_the_generic_flavor_and_paths():
    args = parse_args(["--flavor", "openai", "--chat-path", "/api/v1/chat/completions"])
    assert (args.flavor, args.chat_path, args.models_path) == (
        "openai",
        "/api/v1/chat/completions",
        None,
    )


# SSE comments


async def test_sdks_ignore_comment_lines(groq_fake, groq_client, cerebras_fake, cerebras_client):
    groq_fake.add_fault(Fault(comment_lines=3))
    cerebras_fake.add_fault(Fault(comment_lines=2, comment_text="OPENROUTER PROCESSING"))
    stream = await groq_client.chat.completions.create(
        model=GROQ_MODEL, messages=MESSAGES, stream=True
    )
    groq_text = "".join([c.choices[0].delta.content or "" async for c in stream])
    stream = await cerebras_client.chat.completions.create(
        model=CEREBRAS_MODEL, messages=MESSAGES, stream=True
    )
    cerebras_chunks = [c async for c in stream]

    assert groq_text == answer("groq", GROQ_MODEL, MESSAGES)
    assert all(isinstance(c, ChatChunkResponse) for c in cerebras_chunks)
    assert len(cerebras_chunks) == 22  # role chunk + 20 tokens + finish chunk


async def test_comment_lines_come_before_the_first_chunk(generic_fake, session):
    generic_fake.add_fault(Fault(comment_lines=2, comment_text="OPENROUTER PROCESSING"))
    body = {"model": GENERIC_MODEL, "messages": MESSAGES, "stream": True}
    async with post(session, generic_fake, body) as response:
        raw = await response.read()

    assert raw.startswith(b": OPENROUTER PROCESSING\n\n" * 2 + b"data: {")


def test_a_forced_tool_call_is_an_instance_of_its_pydantic_parameters():
    class Leg(pydantic.BaseModel):
        city: str
        nights: int = pydantic.Field(ge=1)

    class Trip(pydantic.BaseModel):
        legs: list[Leg] = pydantic.Field(min_length=2)
        kind: Literal["work", "leisure"]
        budget: float | None

    book = {
        "type": "function",
        "function": {"name": "book", "parameters": Trip.model_json_schema()},
    }
    body = {
        "messages": MESSAGES,
        "tools": [WEATHER, book],
        "tool_choice": {"type": "function", "function": {"name": "book"}},
    }
    call = tool_call(body, "call_1")
    assert call is not None
    assert call.name == "book"
    trip = Trip.model_validate_json(call.arguments)
    assert len(trip.legs) == 2
    assert trip.kind == "work"
