"""The OpenAI wire format's pure translations, on payloads shaped like real traffic: no I/O."""

import json

import msgspec
import pytest

from ai_api.errors import UpstreamProtocol, UpstreamStatus
from ai_api.providers.openai_wire import parse_event, parse_events, request_body, status_error
from ai_api.providers.presets import CEREBRAS, GROQ, MISTRAL, VLLM
from ai_api.schemas import ChatRequest, Chunk, Message, ToolCallDelta, Usage


def test_request_body_asks_for_a_capped_stream_with_usage():
    request = ChatRequest(
        messages=(Message("user", "hola"),), model="openai/gpt-oss-120b", max_tokens=64
    )
    assert json.loads(request_body(GROQ, request)) == {
        "model": "openai/gpt-oss-120b",
        "messages": [{"role": "user", "content": "hola"}],
        "max_completion_tokens": 64,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_message_names_are_dropped_only_for_a_provider_that_refuses_them():
    request = ChatRequest(
        messages=(Message("system", "be brief"), Message("user", "hola", name="ana")), model="m"
    )
    groq = json.loads(request_body(GROQ, request))
    assert groq["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hola"},
    ]
    cerebras = json.loads(request_body(CEREBRAS, request))
    assert cerebras["messages"][1] == {"role": "user", "content": "hola", "name": "ana"}


def test_a_partial_answer_to_continue_is_sent_in_each_providers_prefill_dialect():
    hola = ChatRequest(messages=(Message("user", "hola"),), model="m", prefill="Hola, soy")
    partial = {"role": "assistant", "content": "Hola, soy"}
    trailing = json.loads(request_body(GROQ, hola))
    assert trailing["messages"] == [{"role": "user", "content": "hola"}, partial]
    assert "continue_final_message" not in trailing
    mistral = json.loads(request_body(MISTRAL, hola))
    assert mistral["messages"][-1] == {**partial, "prefix": True}
    vllm = json.loads(request_body(VLLM, hola))
    assert vllm["messages"][-1] == partial
    assert (vllm["continue_final_message"], vllm["add_generation_prompt"]) == (True, False)
    # Without a prefill the body is as it always was.
    plain = msgspec.structs.replace(hola, prefill=None)
    assert json.loads(request_body(VLLM, plain))["messages"] == [
        {"role": "user", "content": "hola"}
    ]
    assert "continue_final_message" not in json.loads(request_body(VLLM, plain))


GROQ_FIRST = {
    "id": "chatcmpl-1",
    "object": "chat.completion.chunk",
    "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}],
    "x_groq": {"id": "req_1"},
}
GROQ_FINISH = {
    "id": "chatcmpl-1",
    "object": "chat.completion.chunk",
    "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
    "x_groq": {
        "id": "req_1",
        "usage": {
            "queue_time": 0.01,
            "prompt_tokens": 18,
            "completion_tokens": 5,
            "total_tokens": 23,
            "total_time": 0.1,
        },
    },
}
CEREBRAS_FINAL = {
    "id": "chatcmpl-2",
    "object": "chat.completion.chunk",
    "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}],
    "usage": {
        "prompt_tokens": 7,
        "completion_tokens": 3,
        "total_tokens": 10,
        "prompt_tokens_details": {"cached_tokens": 0},
    },
    "time_info": {"queue_time": 0.0001, "total_time": 0.02, "created": 1.7e9},
}
USAGE_ONLY = {
    "id": "c",
    "choices": [],
    "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
}


@pytest.mark.parametrize(
    ("payload", "chunk"),
    [
        (GROQ_FIRST, Chunk()),
        ({"choices": [{"index": 0, "delta": {"content": " hi"}}]}, Chunk(content=" hi")),
        (GROQ_FINISH, Chunk(finish_reason="stop", usage=Usage(18, 5, 23))),
        (CEREBRAS_FINAL, Chunk(finish_reason="length", usage=Usage(7, 3, 10))),
        (USAGE_ONLY, Chunk(usage=Usage(1, 2, 3))),
    ],
)
def test_parse_event(payload, chunk):
    assert parse_event("p", json.dumps(payload).encode()) == chunk


def test_in_stream_error_payloads_raise_with_the_providers_reason():
    groq = {"error": {"message": "over capacity", "type": "internal_server_error"}}
    with pytest.raises(UpstreamStatus) as info:
        parse_event("groq", json.dumps(groq).encode())
    assert info.value.status == 502
    assert "over capacity" in info.value.message
    assert info.value.message.startswith("groq: ")

    cerebras = {
        "error": {
            "message": "Tokens per minute limit exceeded",
            "type": "too_many_tokens_error",
            "code": "token_quota_exceeded",
        },
        "status_code": 429,
    }
    with pytest.raises(UpstreamStatus) as info:
        parse_event("cerebras", json.dumps(cerebras).encode())
    assert info.value.status == 429
    assert info.value.code == "token_quota_exceeded"

    x_groq = {"choices": [], "x_groq": {"id": "r", "error": "stopped early"}}
    with pytest.raises(UpstreamStatus, match="stopped early"):
        parse_event("groq", json.dumps(x_groq).encode())


def test_malformed_event_is_a_protocol_error():
    with pytest.raises(UpstreamProtocol, match="malformed"):
        parse_event("groq", b'{"choices": [')


@pytest.mark.parametrize(
    ("status", "body", "client_status", "code", "fragment"),
    [
        (
            401,
            {
                "error": {
                    "message": "Invalid API Key",
                    "type": "invalid_request_error",
                    "code": "invalid_api_key",
                }
            },
            502,
            "invalid_api_key",
            "Invalid API Key",
        ),
        (
            401,
            {
                "message": "Wrong API Key",
                "type": "invalid_request_error",
                "param": "api_key",
                "code": "wrong_api_key",
            },
            502,
            "wrong_api_key",
            "Wrong API Key",
        ),
        (
            429,
            {
                "error": {
                    "message": "Rate limit reached",
                    "type": "tokens",
                    "code": "rate_limit_exceeded",
                }
            },
            429,
            "rate_limit_exceeded",
            "Rate limit",
        ),
        (
            400,
            {
                "error": {
                    "message": "The model `x` has been decommissioned",
                    "code": "model_decommissioned",
                }
            },
            400,
            "model_decommissioned",
            "decom",
        ),
        (
            404,
            {
                "message": "Model x does not exist",
                "type": "not_found_error",
                "code": "model_not_found",
            },
            502,
            "model_not_found",
            "does not exist",
        ),
        (
            429,
            [
                {
                    "error": {
                        "code": 429,
                        "message": "You exceeded your current quota",
                        "status": "RESOURCE_EXHAUSTED",
                    }
                }
            ],
            429,
            "429",
            "exceeded",
        ),
        (503, "<html>busy</html>", 503, "upstream_http_503", "busy"),
        (
            500,
            {"error": {"message": "boom", "type": "internal_server_error"}},
            502,
            "internal_server_error",
            "boom",
        ),
    ],
)
def test_status_error_reads_every_body_shape(status, body, client_status, code, fragment):
    raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    error = status_error("p", status, raw, {"retry-after": "7"})
    assert (error.status, error.code) == (client_status, code)
    assert fragment in error.message
    assert f"HTTP {status}" in error.message
    assert error.headers == {"retry-after": "7"}


def test_request_body_translates_fields_per_provider():
    options = {
        "temperature": 1.8,
        "seed": 7,
        "user": "u",
        "reasoning_format": "parsed",
        "include_reasoning": True,
        "tools": [{"type": "function"}],
    }
    request = ChatRequest(
        messages=(Message("user", "x"),), model="m", max_tokens=10, options=options
    )
    groq = json.loads(request_body(GROQ, request))
    assert groq["temperature"] == 1.8
    assert groq["reasoning_format"] == "parsed"
    assert "include_reasoning" not in groq  # Groq refuses both together
    cerebras = json.loads(request_body(CEREBRAS, request))
    assert cerebras["temperature"] == 1.5  # its maximum
    assert cerebras["max_completion_tokens"] == 10
    mistral = json.loads(request_body(MISTRAL, request))
    assert mistral["random_seed"] == 7
    assert mistral["max_tokens"] == 10
    assert "seed" not in mistral
    assert "user" not in mistral
    assert "reasoning_format" not in mistral
    assert "stream_options" not in mistral
    assert mistral["tools"] == [{"type": "function"}]


def test_parse_event_reads_reasoning_and_tool_call_deltas():
    reasoning = {"choices": [{"index": 0, "delta": {"reasoning": "hmm", "channel": "analysis"}}]}
    assert parse_event("g", json.dumps(reasoning).encode()) == Chunk(reasoning="hmm")
    call = {
        "choices": [
            {
                "index": 0,
                "delta": {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": ""},
                        }
                    ]
                },
            }
        ]
    }
    chunk = parse_event("g", json.dumps(call).encode())
    assert chunk.tool_calls[0].id == "call_1"
    assert chunk.tool_calls[0].function is not None
    assert chunk.tool_calls[0].function.name == "get_weather"
    more = {
        "choices": [
            {
                "index": 0,
                "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"city"'}}]},
            }
        ]
    }
    (piece,) = parse_event("g", json.dumps(more).encode()).tool_calls
    assert piece == ToolCallDelta(index=0, function=piece.function)
    assert piece.function is not None
    assert piece.function.arguments == '{"city"'


def test_text_that_arrives_together_becomes_one_chunk_and_the_rest_keeps_its_order():
    def event(**delta):
        return json.dumps({"choices": [{"index": 0, "delta": delta}]}).encode()

    finish = json.dumps({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    events = [
        event(reasoning="a"),
        event(reasoning="b"),
        event(content="Hel"),
        event(content="lo"),
        event(tool_calls=[{"index": 0, "function": {"arguments": "{}"}}]),
        event(content="!"),
        finish.encode(),
        b"[DONE]",
        event(content="ignored"),
    ]
    chunks, done, error = parse_events("p", events)
    assert done
    assert error is None
    assert [(c.reasoning, c.content, bool(c.tool_calls), c.finish_reason) for c in chunks] == [
        ("ab", "", False, None),
        ("", "Hello", False, None),
        ("", "", True, None),
        ("", "!", False, None),
        ("", "", False, "stop"),
    ]


def test_an_error_event_keeps_the_text_before_it():
    events = [
        json.dumps({"choices": [{"index": 0, "delta": {"content": "Hi"}}]}).encode(),
        json.dumps({"error": {"message": "boom"}}).encode(),
    ]
    chunks, done, error = parse_events("p", events)
    assert [c.content for c in chunks] == ["Hi"]
    assert not done
    assert isinstance(error, UpstreamStatus)


def _text(content: str) -> bytes:
    return json.dumps({"choices": [{"index": 0, "delta": {"content": content}}]}).encode()


def test_a_block_ending_the_stream_is_read_whole():
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    events = [_text("Hel"), _text("lo"), json.dumps({"choices": [], "usage": usage}).encode()]
    chunks, done, error = parse_events("p", [*events, b"[DONE]"])
    assert (done, error) == (True, None)
    assert [(c.content, c.usage) for c in chunks] == [
        ("Hello", None),
        ("", Usage(prompt_tokens=3, completion_tokens=2, total_tokens=5)),
    ]


@pytest.mark.parametrize(
    "bad",
    [b'{"choices": [', b'{"choices": []},{"choices": []}', b"", b"[DONE] and more"],
    ids=["cut", "two values", "empty", "done-like"],
)
def test_a_malformed_event_among_others_keeps_the_text_before_it(bad):
    chunks, done, error = parse_events("p", [_text("Hi"), bad, _text("lost"), b"[DONE]"])
    if bad.startswith(b"[DONE]"):  # `[DONE]` however it goes on ends the stream
        assert (done, error) == (True, None)
    else:
        assert not done
        assert isinstance(error, UpstreamProtocol)
    assert [c.content for c in chunks] == ["Hi"]
