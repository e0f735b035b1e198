"""Responses requests in the gateway's terms: pure translation on recorded payloads."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from ai_api.errors import InvalidRequest
from ai_api.responses_wire import (
    ResponsesBody,
    effort_of,
    format_of,
    split_name,
    translate,
    unwrap_input,
)
from ai_api.schemas import Message, decode_json

SCHEMA = {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]}

# The shape of what Codex CLI sends (fields and items as recorded in reference/apis.md §4.2:
# a developer item for its prompt, ids on items, reasoning items handed back, store false).
CODEX: dict[str, Any] = {
    "model": "auto",
    "input": [
        {
            "type": "message",
            "role": "developer",
            "content": [{"type": "input_text", "text": "You are Codex."}],
        },
        {
            "type": "message",
            "id": "msg_1",
            "role": "user",
            "content": [{"type": "input_text", "text": "ls"}],
        },
        {
            "type": "reasoning",
            "id": "rs_1",
            "summary": [{"type": "summary_text", "text": "list files"}],
            "encrypted_content": None,
        },
        {
            "type": "function_call",
            "id": "fc_1",
            "call_id": "call_1",
            "name": "exec_command",
            "arguments": '{"cmd":"ls"}',
        },
        {"type": "function_call_output", "id": "fco_1", "call_id": "call_1", "output": "a.txt"},
        {
            "type": "message",
            "id": "msg_2",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": "One file.", "annotations": []}],
        },
        {"role": "user", "content": "thanks"},
    ],
    "tools": [
        {
            "type": "function",
            "name": "exec_command",
            "description": "Run a command",
            "strict": False,
            "parameters": SCHEMA,
        }
    ],
    "tool_choice": "auto",
    "parallel_tool_calls": False,
    "reasoning": {"summary": "auto"},
    "store": False,
    "stream": True,
    "include": ["reasoning.encrypted_content"],
    "prompt_cache_key": "0199-conversation",
    "client_metadata": {"x": "y"},
}


def body(**fields: Any) -> ResponsesBody:
    return decode_json(
        msgspec.json.encode({"model": "auto", "input": "hi", **fields}), ResponsesBody, ""
    )


def refused(**fields: Any) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        translate(body(**fields))
    return info.value


def test_a_codex_request():
    wanted = translate(decode_json(msgspec.json.encode(CODEX), ResponsesBody, ""))
    assert wanted.messages == (
        Message(role="system", content="You are Codex."),
        Message(role="user", content="ls"),
        Message(
            role="assistant",
            tool_calls=[
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "exec_command", "arguments": '{"cmd":"ls"}'},
                }
            ],
        ),
        Message(role="tool", tool_call_id="call_1", content="a.txt"),
        Message(role="assistant", content="One file."),
        Message(role="user", content="thanks"),
    )
    assert wanted.options == {
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "exec_command",
                    "parameters": SCHEMA,
                    "description": "Run a command",
                },
            }
        ],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "reasoning_format": "parsed",
    }
    assert wanted.max_tokens is None
    assert wanted.tools[0]["name"] == "exec_command"


def test_a_string_input_with_instructions_and_the_sampling_fields():
    wanted = translate(
        body(instructions="Be brief.", temperature=0.3, top_p=0.9, max_output_tokens=64, user="u1")
    )
    assert wanted.messages == (
        Message(role="system", content="Be brief."),
        Message(role="user", content="hi"),
    )
    assert wanted.options == {"temperature": 0.3, "top_p": 0.9, "user": "u1"}
    assert wanted.max_tokens == 64


def test_text_and_a_function_call_of_one_answer_are_one_assistant_message():
    items = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": "Let me look."},
        {"type": "function_call", "call_id": "a", "name": "w", "arguments": "{}"},
        {"type": "function_call", "call_id": "b", "name": "w", "arguments": "{}"},
        {
            "type": "function_call_output",
            "call_id": "a",
            "output": [{"type": "input_text", "text": "sun"}],
        },
        {"type": "function_call_output", "call_id": "b", "output": "rain"},
    ]
    messages = translate(body(input=items)).messages
    assert messages[1].content == "Let me look."
    assert [c["id"] for c in messages[1].tool_calls or []] == ["a", "b"]
    assert messages[2:] == (
        Message(role="tool", tool_call_id="a", content="sun"),
        Message(role="tool", tool_call_id="b", content="rain"),
    )


def test_images_of_tool_outputs_follow_the_tool_messages_in_a_user_message():
    image = {"type": "input_image", "image_url": "https://e/a.png"}
    items = [
        {"role": "user", "content": "look"},
        {"type": "function_call", "call_id": "a", "name": "view", "arguments": "{}"},
        {"type": "function_call", "call_id": "b", "name": "view", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "a", "output": [image]},
        {
            "type": "function_call_output",
            "call_id": "b",
            "output": [{"type": "input_text", "text": "two:"}, image, image],
        },
        {"role": "user", "content": "and?"},
    ]
    messages = translate(body(input=items)).messages
    assert [(m.role, m.tool_call_id) for m in messages] == [
        ("user", None),
        ("assistant", None),
        ("tool", "a"),
        ("tool", "b"),
        ("user", None),
        ("user", None),
    ]
    assert (messages[2].content, messages[3].content) == (
        "(the output is in the next message)",
        "two:",
    )
    url = {"type": "image_url", "image_url": {"url": "https://e/a.png"}}
    assert messages[4].content == [
        {"type": "text", "text": "The image of the output of call a:"},
        url,
        {"type": "text", "text": "The images of the output of call b:"},
        url,
        url,
    ]
    # Last in the input: the images still come after the tool messages.
    ends = translate(body(input=items[:4])).messages
    assert ends[-1].role == "user"
    assert ends[-1].content == messages[4].content[:2]


def test_an_image_by_url_and_its_detail():
    part = {"type": "input_image", "image_url": "https://example.com/a.png", "detail": "low"}
    (message,) = translate(body(input=[{"role": "user", "content": [part]}])).messages
    assert message.content == [
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "low"}}
    ]


@pytest.mark.parametrize(
    ("effort", "sent"),
    [
        ("none", "low"),
        ("minimal", "low"),
        ("low", "low"),
        ("medium", "medium"),
        ("xhigh", "high"),
        ("max", "high"),
    ],
)
def test_reasoning_effort_in_the_upstreams_words(effort, sent):
    assert effort_of(effort) == sent
    options = translate(body(reasoning={"effort": effort})).options
    assert options == {"reasoning_effort": sent}  # no summary asked: reasoning not shown


def test_text_formats():
    assert format_of(None) is None
    assert format_of({"type": "text"}) is None
    assert format_of({"type": "json_object"}) == {"type": "json_object"}
    assert format_of({"type": "json_schema", "name": "n", "schema": SCHEMA, "strict": True}) == {
        "type": "json_schema",
        "json_schema": {"name": "n", "schema": SCHEMA, "strict": True},
    }
    assert translate(
        body(text={"format": {"type": "json_object"}, "verbosity": "low"})
    ).options == {"response_format": {"type": "json_object"}}


def test_allowed_tools_keeps_only_the_tools_it_names():
    tools = [
        {"type": "function", "name": "a", "parameters": SCHEMA},
        {"type": "function", "name": "b", "parameters": None},
    ]
    choice = {
        "type": "allowed_tools",
        "mode": "required",
        "tools": [{"type": "function", "name": "b"}],
    }
    options = translate(body(tools=tools, tool_choice=choice)).options
    assert options["tool_choice"] == "required"
    assert options["tools"] == [
        {
            "type": "function",
            "function": {"name": "b", "parameters": {"type": "object", "properties": {}}},
        }
    ]


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"store": True}, "store"),
        ({"previous_response_id": "resp_1"}, "previous_response_id"),
        ({"conversation": "conv_1"}, "conversation"),
        ({"background": True}, "background"),
        ({"truncation": "auto"}, "truncation"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"max_tool_calls": 3}, "max_tool_calls"),
        ({"include": ["message.output_text.logprobs"]}, "include"),
        ({"temperature": 2.1}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
        ({"reasoning": {"effort": "huge"}}, "reasoning.effort"),
        ({"text": {"format": {"type": "grammar"}}}, "text.format.type"),
        ({"text": {"format": {"type": "json_schema", "schema": SCHEMA}}}, "text.format"),
        ({"tools": [{"type": "tool_search"}]}, "tools[0].type"),
        ({"tools": [{"type": "custom", "name": "p", "strict": True}]}, "tools[0].strict"),
        (
            {"tools": [{"type": "function", "name": "f", "output_schema": {}}]},
            "tools[0].output_schema",
        ),
        ({"tool_choice": "required"}, "tool_choice"),
        (
            {
                "tools": [{"type": "function", "name": "f"}],
                "tool_choice": {"type": "function", "name": "g"},
            },
            "tool_choice",
        ),
        (
            {"tools": [{"type": "function", "name": "f"}], "tool_choice": {"type": "mcp"}},
            "tool_choice",
        ),
        (
            {
                "tools": [{"type": "function", "name": "f"}],
                "tool_choice": {"type": "function", "name": ["f"]},
            },
            "tool_choice",
        ),
        (
            {
                "tools": [{"type": "function", "name": "f"}],
                "tool_choice": {"type": "allowed_tools", "tools": [{"name": ["f"]}]},
            },
            "tool_choice",
        ),
        ({"input": []}, "input"),
        ({"input": [{"type": "reasoning", "summary": []}]}, "input"),
        ({"input": [{"type": "web_search_call", "id": "ws"}]}, "input[0].type"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type"),
        ({"input": [{"role": "user", "content": "x", "colour": 1}]}, "input[0].colour"),
        (
            {"input": [{"role": "system", "content": [{"type": "input_image", "image_url": "u"}]}]},
            "input[0].content[0]",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]},
            "input[0].content[0].image_url",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
            "input[0].content[0].type",
        ),
        (
            {
                "input": [
                    {
                        "type": "function_call_output",
                        "call_id": "c",
                        "output": [{"type": "input_image", "file_id": "f"}],
                    }
                ]
            },
            "input[0].output[0].image_url",
        ),
    ],
)
def test_what_cannot_be_served_is_refused_naming_the_param(fields, param):
    assert refused(**fields).param == param


def test_an_unknown_field_is_refused_by_name():
    with pytest.raises(InvalidRequest) as info:
        body(frobnicate=1)
    assert info.value.param == "frobnicate"


def test_the_gateway_keeps_nothing_and_says_so():
    assert "keeps no responses" in refused(store=True).message
    assert "keeps no responses" in refused(previous_response_id="resp_1").message
    assert translate(body(store=False)).options == {}


AGENTS: dict[str, Any] = {
    "type": "namespace",
    "name": "multi_agent_v1",
    "description": "Tools for spawning and managing sub-agents.",
    "tools": [
        {"type": "function", "name": "spawn_agent", "strict": False, "parameters": SCHEMA},
        {"type": "function", "name": "wait_agent", "description": "Wait.", "parameters": None},
    ],
}


def test_a_namespace_of_functions_is_flattened_and_its_calls_too():
    history = [
        {"role": "user", "content": "go"},
        {
            "type": "function_call",
            "call_id": "c",
            "namespace": "multi_agent_v1",
            "name": "spawn_agent",
            "arguments": "{}",
        },
    ]
    wanted = translate(body(tools=[AGENTS], input=history))
    assert [t["function"]["name"] for t in wanted.options["tools"]] == [
        "multi_agent_v1__spawn_agent",
        "multi_agent_v1__wait_agent",
    ]
    assert wanted.options["tools"][1]["function"]["description"] == "Wait."
    assert wanted.tools == [AGENTS]  # echoed as given
    assert wanted.namespaces == frozenset({"multi_agent_v1"})
    (call,) = wanted.messages[1].tool_calls or []
    assert call["function"]["name"] == "multi_agent_v1__spawn_agent"
    assert split_name("multi_agent_v1__spawn_agent", wanted.namespaces) == (
        "multi_agent_v1",
        "spawn_agent",
    )
    assert split_name("get__weather", wanted.namespaces) == (None, "get__weather")


@pytest.mark.parametrize(
    ("tool", "param"),
    [
        ({"type": "namespace", "name": "ns"}, "tools[0]"),
        (
            {"type": "namespace", "name": "ns", "tools": [{"type": "custom", "name": "x"}]},
            "tools[0].tools[0].type",
        ),
    ],
)
def test_a_namespace_holds_functions(tool, param):
    assert refused(tools=[tool]).param == param


PATCH: dict[str, Any] = {
    "type": "custom",
    "name": "apply_patch",
    "description": "Edit files.",
    "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"},
}


def test_a_custom_tool_is_a_function_of_one_string_and_its_calls_too():
    history = [
        {"role": "user", "content": "fix it"},
        {"type": "custom_tool_call", "call_id": "c", "name": "apply_patch", "input": "*** Begin"},
        {"type": "custom_tool_call_output", "call_id": "c", "output": "Done!"},
    ]
    wanted = translate(
        body(tools=[PATCH], input=history, tool_choice={"type": "custom", "name": "apply_patch"})
    )
    (tool,) = wanted.options["tools"]
    assert tool["function"]["name"] == "apply_patch"
    assert tool["function"]["parameters"]["required"] == ["input"]
    assert tool["function"]["description"].startswith("Edit files.")
    assert "lark grammar:\nstart: /.+/" in tool["function"]["description"]
    assert wanted.options["tool_choice"] == {
        "type": "function",
        "function": {"name": "apply_patch"},
    }
    assert wanted.customs == frozenset({"apply_patch"})
    assert wanted.tools == [PATCH]
    (call,) = wanted.messages[1].tool_calls or []
    assert call["function"] == {"name": "apply_patch", "arguments": '{"input": "*** Begin"}'}
    assert wanted.messages[2] == Message(role="tool", tool_call_id="c", content="Done!")
    assert unwrap_input('{"input": "*** Begin"}') == "*** Begin"
    assert unwrap_input("not json") == "not json"
