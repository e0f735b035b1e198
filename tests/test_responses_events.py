"""Chunks to Responses events and the response object: pure, on recorded chunk sequences,
each event checked against the openai SDK's own (pydantic) event and response types."""

from __future__ import annotations

import itertools
from typing import Any

import msgspec
import pydantic
import pytest
from openai.types.responses import Response, ResponseStreamEvent

from ai_api.errors import RateLimited, UpstreamUnreachable
from ai_api.responses_events import EventStream, head_of, usage_of
from ai_api.responses_wire import ResponsesBody, translate
from ai_api.schemas import Chunk, FunctionDelta, ToolCallDelta, Usage, decode_json

EVENTS: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ResponseStreamEvent)
USAGE = Usage(prompt_tokens=20, completion_tokens=7, total_tokens=27)

# What Groq's gpt-oss streams, as the gateway's chunks: reasoning, then text, then the
# finish reason with usage (reference/providers.md A.1).
REASONED = [
    Chunk(reasoning="The user "),
    Chunk(reasoning="greets."),
    Chunk(content="Hola"),
    Chunk(content=", ¿qué tal?"),
    Chunk(finish_reason="stop", usage=USAGE),
]
# Two tool calls in one answer, each announced with id and name, arguments in pieces.
CALLS = [
    Chunk(tool_calls=(ToolCallDelta(0, "call_a", "function", FunctionDelta("get_weather", "")),)),
    Chunk(tool_calls=(ToolCallDelta(0, function=FunctionDelta(arguments='{"city":')),)),
    Chunk(tool_calls=(ToolCallDelta(0, function=FunctionDelta(arguments='"Lima"}')),)),
    Chunk(tool_calls=(ToolCallDelta(1, "call_b", "function", FunctionDelta("get_time", "{}")),)),
    Chunk(finish_reason="tool_calls", usage=USAGE),
]


def stream_for(**fields: Any) -> EventStream:
    raw = msgspec.json.encode({"model": "auto", "input": "hi", **fields})
    body = decode_json(raw, ResponsesBody, "")
    counter = itertools.count()
    return EventStream(
        head_of("resp_1", "openai/gpt-oss-120b", body, translate(body)),
        12,
        new_id=lambda prefix: f"{prefix}_{next(counter)}",
        clock=iter([1_700_000_000.2, 1_700_000_005.5]).__next__,  # created, then completed
    )


def run(events: EventStream, chunks: list[Chunk]) -> list[dict[str, Any]]:
    out = events.start()
    for chunk in chunks:
        out.extend(events.feed(chunk))
    return [*out, *events.finish()]


def checked(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events, each validated by the SDK's types, numbered 0, 1, 2..."""
    for event in events:
        EVENTS.validate_python(event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return events


def test_reasoning_then_text():
    events = checked(run(stream_for(), REASONED))
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert events[0]["response"]["status"] == "in_progress"
    assert events[0]["response"]["output"] == []
    assert events[6]["text"] == "The user greets."
    assert [e["output_index"] for e in events[2:9]] == [0] * 7
    assert [e["output_index"] for e in events[9:16]] == [1] * 7
    response = Response.model_validate(events[-1]["response"])
    assert response.status == "completed"
    assert response.completed_at == 1_700_000_005
    assert response.output_text == "Hola, ¿qué tal?"
    reasoning, message = response.output
    assert reasoning.type == "reasoning"
    assert reasoning.id == "rs_0"
    assert [s.text for s in reasoning.summary] == ["The user greets."]
    assert message.type == "message"
    assert message.id == "msg_1"
    assert message.status == "completed"
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (20, 7)
    assert response.usage.total_tokens == 27


def test_two_function_calls():
    events = checked(run(stream_for(), CALLS))
    kinds = [e["type"] for e in events]
    assert kinds.count("response.function_call_arguments.delta") == 3
    done = [e for e in events if e["type"] == "response.function_call_arguments.done"]
    assert [(e["name"], e["arguments"]) for e in done] == [
        ("get_weather", '{"city":"Lima"}'),
        ("get_time", "{}"),
    ]
    added = [e["item"] for e in events if e["type"] == "response.output_item.added"]
    assert added[0] == {
        "type": "function_call",
        "id": "fc_0",
        "call_id": "call_a",
        "name": "get_weather",
        "arguments": "",
        "status": "in_progress",
    }
    response = Response.model_validate(events[-1]["response"])
    assert response.status == "completed"
    assert [(i.type, getattr(i, "call_id", None)) for i in response.output] == [
        ("function_call", "call_a"),
        ("function_call", "call_b"),
    ]


def test_a_call_without_an_id_gets_one():
    chunks = [
        Chunk(tool_calls=(ToolCallDelta(0, function=FunctionDelta("f", "{}")),)),
        Chunk(finish_reason="tool_calls"),
    ]
    final = run(stream_for(), chunks)[-1]["response"]
    assert final["output"][0]["call_id"] == "call_1"  # fc_0, then the minted call id


def test_a_length_cut_is_incomplete_and_so_is_its_last_item():
    chunks = [Chunk(content="Hola"), Chunk(finish_reason="length", usage=USAGE)]
    events = checked(run(stream_for(max_output_tokens=1), chunks))
    assert events[-1]["type"] == "response.incomplete"
    response = Response.model_validate(events[-1]["response"])
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.completed_at is None
    assert response.max_output_tokens == 1
    (message,) = response.output
    assert message.type == "message"
    assert message.status == "incomplete"


def test_without_upstream_usage_the_counts_are_estimates():
    final = run(stream_for(), [Chunk(content="12345678"), Chunk(finish_reason="stop")])[-1]
    assert final["response"]["usage"] == usage_of(Usage(12, 2, 14))


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (UpstreamUnreachable("groq", "groq: the connection was cut mid-answer"), "server_error"),
        (RateLimited("every member is out of headroom"), "rate_limit_exceeded"),
    ],
)
def test_a_failure_mid_answer_is_an_error_event_and_response_failed(error, code):
    events = stream_for()
    out = [*events.start(), *events.feed(Chunk(content="Hol")), *events.fail(error)]
    checked(out)
    assert [e["type"] for e in out[-2:]] == ["error", "response.failed"]
    assert out[-2]["code"] == code
    assert out[-2]["error"]["message"] == error.message  # the key the SDKs raise on
    response = Response.model_validate(out[-1]["response"])
    assert response.status == "failed"
    assert response.error is not None
    assert response.error.code == code
    (message,) = response.output
    assert message.type == "message"
    assert message.status == "incomplete"
    assert "response.completed" not in [e["type"] for e in out]


def test_the_response_echoes_the_request():
    tool = {"type": "function", "name": "f", "parameters": {"type": "object"}}
    events = stream_for(
        instructions="Be brief.",
        tools=[tool],
        tool_choice="required",
        parallel_tool_calls=False,
        temperature=0.5,
        reasoning={"effort": "high", "summary": "auto"},
        text={"format": {"type": "json_object"}},
        metadata={"k": "v"},
        store=False,
    )
    response = Response.model_validate(run(events, [Chunk(finish_reason="stop")])[-1]["response"])
    assert response.id == "resp_1"
    assert response.object == "response"
    assert response.model == "openai/gpt-oss-120b"
    assert response.created_at == 1_700_000_000
    assert response.instructions == "Be brief."
    assert response.tool_choice == "required"
    assert response.parallel_tool_calls is False
    assert response.temperature == 0.5
    assert response.reasoning is not None
    assert (response.reasoning.effort, response.reasoning.summary) == ("high", "auto")
    assert response.text is not None
    assert response.text.format is not None
    assert response.text.format.type == "json_object"
    assert response.metadata == {"k": "v"}
    assert response.previous_response_id is None
    assert response.output == []
    (echoed,) = response.tools
    assert echoed.type == "function"
    assert echoed.name == "f"


def test_a_call_of_a_namespace_tool_comes_back_with_its_namespace():
    agents = {
        "type": "namespace",
        "name": "agents",
        "description": "Sub-agents.",
        "tools": [{"type": "function", "name": "spawn", "parameters": {"type": "object"}}],
    }
    chunks = [
        Chunk(
            tool_calls=(
                ToolCallDelta(0, "call_s", "function", FunctionDelta("agents__spawn", "{}")),
            )
        ),
        Chunk(finish_reason="tool_calls"),
    ]
    raw = msgspec.json.encode({"model": "auto", "input": "hi", "tools": [agents]})
    body = decode_json(raw, ResponsesBody, "")
    wanted = translate(body)
    events = EventStream(
        head_of("resp_1", "m", body, wanted),
        1,
        new_id=lambda prefix: f"{prefix}_0",
        clock=lambda: 0.0,
        namespaces=wanted.namespaces,
    )
    out = checked(run(events, chunks))
    done = [e for e in out if e["type"] == "response.function_call_arguments.done"]
    assert done[0]["name"] == "spawn"
    response = Response.model_validate(out[-1]["response"])
    (call,) = response.output
    assert call.type == "function_call"
    assert (call.namespace, call.name) == ("agents", "spawn")
    assert response.tools[0].type == "namespace"


def test_a_custom_tool_call_comes_back_as_raw_input():
    patch = {"type": "custom", "name": "apply_patch"}
    chunks = [
        Chunk(
            tool_calls=(
                ToolCallDelta(0, "call_p", "function", FunctionDelta("apply_patch", '{"inp')),
            )
        ),
        Chunk(
            tool_calls=(ToolCallDelta(0, function=FunctionDelta(arguments='ut": "*** Begin\\n"}')),)
        ),
        Chunk(finish_reason="tool_calls"),
    ]
    raw = msgspec.json.encode({"model": "auto", "input": "hi", "tools": [patch]})
    body = decode_json(raw, ResponsesBody, "")
    wanted = translate(body)
    events = EventStream(
        head_of("resp_1", "m", body, wanted),
        1,
        new_id=lambda prefix: f"{prefix}_0",
        clock=lambda: 0.0,
        customs=wanted.customs,
    )
    out = checked(run(events, chunks))
    kinds = [e["type"] for e in out]
    assert "response.function_call_arguments.delta" not in kinds
    assert kinds[2:6] == [
        "response.output_item.added",
        "response.custom_tool_call_input.delta",
        "response.custom_tool_call_input.done",
        "response.output_item.done",
    ]
    assert out[4]["input"] == "*** Begin\n"
    response = Response.model_validate(out[-1]["response"])
    (call,) = response.output
    assert call.type == "custom_tool_call"
    assert (call.call_id, call.name, call.input) == ("call_p", "apply_patch", "*** Begin\n")
