"""The gateway's chunks as Anthropic stream events and messages, and its errors in Anthropic's
shape: recorded chunk sequences in, events out, no I/O."""

from __future__ import annotations

import itertools

import pytest

from ai_api.anthropic_events import (
    PING,
    TOO_LONG,
    BadToolInput,
    EventStream,
    error_of,
    fold,
    model_page,
    speaks_anthropic,
    stop_reason_of,
)
from ai_api.errors import (
    CrossOrigin,
    InvalidRequest,
    NoProviders,
    NotFound,
    NotPermitted,
    PayloadTooLarge,
    RateLimited,
    ShuttingDown,
    Unauthorized,
    UnsupportedMediaType,
    UpstreamProtocol,
    UpstreamStatus,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from ai_api.schemas import Chunk, FunctionDelta, ToolCallDelta, Usage

USAGE = Usage(prompt_tokens=18, completion_tokens=7, total_tokens=25)


def run(chunks, *, show_thinking=True):
    counter = itertools.count(1)
    stream = EventStream(
        "msg_1",
        "openai/gpt-oss-120b",
        12,
        show_thinking=show_thinking,
        tool_id=lambda: f"toolu_{next(counter)}",
    )
    events = stream.start()
    for chunk in chunks:
        events.extend(stream.feed(chunk))
    return [*events, *stream.finish()]


def kinds(events):
    return [
        (e["type"], e.get("index"), (e.get("delta") or e.get("content_block") or {}).get("type"))
        for e in events
    ]


# A Groq gpt-oss answer with reasoning shown, as the provider adapter yields it.
THOUGHT_THEN_TEXT = [
    Chunk(reasoning="The user "),
    Chunk(reasoning="greets."),
    Chunk(content="Hola"),
    Chunk(content=", ¿qué tal?"),
    Chunk(finish_reason="stop", usage=USAGE),
]
# A streamed tool call: its head with id and name, then the arguments in pieces.
TOOL_CALL = [
    Chunk(content="Let me check."),
    Chunk(
        tool_calls=(
            ToolCallDelta(
                index=0,
                id="call_abc",
                type="function",
                function=FunctionDelta(name="get_weather", arguments=""),
            ),
        )
    ),
    Chunk(
        tool_calls=(
            ToolCallDelta(
                index=0,
                function=FunctionDelta(arguments='{"city'),
            ),
        )
    ),
    Chunk(tool_calls=(ToolCallDelta(index=0, function=FunctionDelta(arguments='":"Lima"}')),)),
    Chunk(
        tool_calls=(
            ToolCallDelta(index=1, function=FunctionDelta(name="get_time", arguments="{}")),
        )
    ),
    Chunk(finish_reason="tool_calls", usage=USAGE),
]


def test_a_text_answer_is_the_sdk_event_sequence():
    events = run([Chunk(content="Hola"), Chunk(content="!"), Chunk(finish_reason="stop")])
    assert events[0] == {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "openai/gpt-oss-120b",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 12, "output_tokens": 0},
        },
    }
    assert events[1:] == [
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": "Hola"},
        },
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "!"}},
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            # No usage from the upstream: the prompt's estimate, five characters as 2 tokens.
            "usage": {"input_tokens": 12, "output_tokens": 2},
        },
        {"type": "message_stop"},
    ]


def test_thinking_then_text_are_two_blocks_and_usage_is_the_upstreams():
    events = run(THOUGHT_THEN_TEXT)
    assert kinds(events) == [
        ("message_start", None, None),
        ("content_block_start", 0, "thinking"),
        ("content_block_delta", 0, "thinking_delta"),
        ("content_block_delta", 0, "thinking_delta"),
        ("content_block_stop", 0, None),
        ("content_block_start", 1, "text"),
        ("content_block_delta", 1, "text_delta"),
        ("content_block_delta", 1, "text_delta"),
        ("content_block_stop", 1, None),
        ("message_delta", None, None),
        ("message_stop", None, None),
    ]
    assert events[1]["content_block"] == {"type": "thinking", "thinking": "", "signature": ""}
    assert events[-2]["usage"] == {"input_tokens": 18, "output_tokens": 7}
    message = fold(events)
    assert message["content"] == [
        {"type": "thinking", "thinking": "The user greets.", "signature": ""},
        {"type": "text", "text": "Hola, ¿qué tal?"},
    ]
    assert message["stop_reason"] == "end_turn"
    assert message["usage"] == {"input_tokens": 18, "output_tokens": 7}


def test_reasoning_not_asked_for_is_dropped():
    events = run(THOUGHT_THEN_TEXT, show_thinking=False)
    assert [b["type"] for b in fold(events)["content"]] == ["text"]
    assert events[-2]["usage"]["output_tokens"] == 7


def test_tool_calls_are_tool_use_blocks_with_their_arguments_as_partial_json():
    events = run(TOOL_CALL)
    assert kinds(events)[1:] == [
        ("content_block_start", 0, "text"),
        ("content_block_delta", 0, "text_delta"),
        ("content_block_stop", 0, None),
        ("content_block_start", 1, "tool_use"),
        ("content_block_delta", 1, "input_json_delta"),
        ("content_block_delta", 1, "input_json_delta"),
        ("content_block_stop", 1, None),
        ("content_block_start", 2, "tool_use"),
        ("content_block_delta", 2, "input_json_delta"),
        ("content_block_stop", 2, None),
        ("message_delta", None, None),
        ("message_stop", None, None),
    ]
    # The SDKs build the input from the deltas only: the start holds an empty object.
    assert events[4]["content_block"] == {
        "type": "tool_use",
        "id": "call_abc",
        "name": "get_weather",
        "input": {},
    }
    assert events[8]["content_block"]["id"] == "toolu_1"  # the upstream gave none: minted
    message = fold(events)
    assert message["stop_reason"] == "tool_use"
    assert message["content"][1]["input"] == {"city": "Lima"}
    assert message["content"][2] == {
        "type": "tool_use",
        "id": "toolu_1",
        "name": "get_time",
        "input": {},
    }


def test_tool_arguments_that_are_not_a_json_object_are_refused():
    for arguments in ('{"city": "Li', "[1, 2]"):
        call = ToolCallDelta(index=0, id="c", function=FunctionDelta(name="f", arguments=arguments))
        with pytest.raises(BadToolInput):
            fold(run([Chunk(tool_calls=(call,)), Chunk(finish_reason="tool_calls")]))


def test_an_empty_answer_has_no_blocks():
    message = fold(run([Chunk(finish_reason="length", usage=USAGE)]))
    assert message["content"] == []
    assert message["stop_reason"] == "max_tokens"


@pytest.mark.parametrize(
    ("finish", "tool_used", "reason"),
    [
        ("stop", False, "end_turn"),
        (None, False, "end_turn"),
        ("length", False, "max_tokens"),
        ("length", True, "max_tokens"),
        ("tool_calls", True, "tool_use"),
        ("tool_calls", False, "end_turn"),  # no tool_use block: not a tool_use stop
        ("stop", True, "tool_use"),  # an upstream that says `stop` after a call
        ("content_filter", False, "refusal"),
        ("something_new", False, "end_turn"),
    ],
)
def test_stop_reasons(finish, tool_used, reason):
    assert stop_reason_of(finish, tool_used) == reason


@pytest.mark.parametrize(
    ("error", "status", "kind"),
    [
        (InvalidRequest("bad"), 400, "invalid_request_error"),
        (UnsupportedMediaType("form"), 415, "invalid_request_error"),
        (PayloadTooLarge("big"), 413, "request_too_large"),
        (Unauthorized("who"), 401, "authentication_error"),
        (NotPermitted("no"), 403, "permission_error"),
        (CrossOrigin("page"), 403, "permission_error"),
        (NotFound("where"), 404, "not_found_error"),
        (RateLimited("later"), 429, "rate_limit_error"),
        (UpstreamStatus("groq", 429, "slow down"), 429, "rate_limit_error"),
        (UpstreamStatus("groq", 400, "context too long"), 400, "invalid_request_error"),
        (UpstreamStatus("groq", 503, "over capacity"), 529, "overloaded_error"),
        (UpstreamStatus("groq", 500, "oops"), 502, "api_error"),
        (UpstreamTimeout("groq", "silent"), 504, "timeout_error"),
        (UpstreamUnreachable("groq", "cut"), 502, "api_error"),
        (UpstreamProtocol("groq", "nonsense"), 502, "api_error"),
        (NoProviders("none"), 503, "api_error"),
        (ShuttingDown("stopping"), 503, "api_error"),
    ],
)
def test_errors_in_anthropic_shape(error, status, kind):
    assert error_of(error) == (
        status,
        {"type": "error", "error": {"type": kind, "message": error.message}},
    )


def test_a_prompt_over_the_window_is_prompt_is_too_long_for_claude_code():
    error = UpstreamStatus(
        "groq", 400, "Please reduce the length of the messages.", code="context_length_exceeded"
    )
    status, body = error_of(error)
    assert status == 400
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["message"] == (
        "prompt is too long: groq: HTTP 400: Please reduce the length of the messages."
    )
    assert body["error"]["message"].startswith(TOO_LONG)
    # Another 400 keeps its words: only the classified code says the prompt is too long.
    assert not error_of(UpstreamStatus("groq", 400, "bad"))[1]["error"]["message"].startswith(
        TOO_LONG
    )


def test_the_ping_event_is_anthropics():
    assert PING == {"type": "ping"}


def test_which_requests_are_answered_in_anthropic_shapes():
    for version in (None, "2023-06-01"):
        assert speaks_anthropic("/v1/messages", version)
        assert speaks_anthropic("/v1/messages/count_tokens", version)
        assert speaks_anthropic("/v1/messages/nope", version)
        assert not speaks_anthropic("/v1/messagesx", version)
        assert not speaks_anthropic("/v1/chat/completions", version)
        assert not speaks_anthropic("/openai/v1/models", version)
    assert speaks_anthropic("/v1/models", "2023-06-01")
    assert not speaks_anthropic("/v1/models", None)


NAMES = ["auto", "smart", "gpt-oss-120b", "groq/openai/gpt-oss-120b", "cerebras/gpt-oss-120b"]


def ids(page):
    return [m["id"] for m in page["data"]]


def test_model_pages_by_cursor():
    first = model_page(NAMES, limit=2, after_id=None, before_id=None)
    assert first["data"][0] == {
        "type": "model",
        "id": "auto",
        "display_name": "auto",
        "created_at": "1970-01-01T00:00:00Z",
    }
    assert (ids(first), first["has_more"], first["first_id"], first["last_id"]) == (
        ["auto", "smart"],
        True,
        "auto",
        "smart",
    )
    last = model_page(NAMES, limit=2, after_id="groq/openai/gpt-oss-120b", before_id=None)
    assert (ids(last), last["has_more"]) == (["cerebras/gpt-oss-120b"], False)
    back = model_page(NAMES, limit=2, after_id=None, before_id="gpt-oss-120b")
    assert (ids(back), back["has_more"]) == (["auto", "smart"], False)
    back = model_page(NAMES, limit=1, after_id=None, before_id="gpt-oss-120b")
    assert (ids(back), back["has_more"]) == (["smart"], True)
    empty = model_page([], limit=20, after_id=None, before_id=None)
    assert empty == {"data": [], "has_more": False, "first_id": None, "last_id": None}
    with pytest.raises(ValueError, match="not in list"):
        model_page(NAMES, limit=2, after_id="nope", before_id=None)
