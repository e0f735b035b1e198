"""Anthropic Messages requests in the gateway's terms: recorded bodies in, messages and
options out, no I/O."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ai_api.anthropic_wire import CountTokensBody, MessagesBody, effort_of, translate
from ai_api.errors import InvalidRequest
from ai_api.schemas import Message, decode_body

WEATHER = {
    "name": "get_weather",
    "description": "Weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
HI = [{"role": "user", "content": "Hola"}]


def body(**fields: Any) -> MessagesBody:
    raw = {"model": "auto", "max_tokens": 256, "messages": HI, **fields}
    return decode_body(json.dumps(raw).encode(), MessagesBody)


def refused(**fields: Any) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        translate(body(**fields))
    return info.value


def test_a_plain_request_is_a_user_message_and_its_cap():
    wanted = translate(body())
    assert wanted.messages == (Message(role="user", content="Hola"),)
    assert wanted.max_tokens == 256
    assert wanted.options == {}
    assert wanted.show_thinking is False


def test_the_system_prompt_as_a_string_or_as_blocks_comes_first():
    blocks = [
        {"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "Answer in Spanish."},
    ]
    for system, text in (
        ("Be terse.", "Be terse."),
        (blocks, "You are terse.\n\nAnswer in Spanish."),
    ):
        wanted = translate(body(system=system))
        assert wanted.messages[0] == Message(role="system", content=text)
        assert wanted.messages[1].role == "user"


def test_text_blocks_of_a_turn_are_joined_and_a_system_turn_is_kept():
    # What Claude Code sends: several text blocks in a user turn, and a system turn among them.
    turns = [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "system", "content": "mid-conversation note"},
        {"role": "assistant", "content": [{"type": "text", "text": "c"}]},
    ]
    assert translate(body(messages=turns)).messages == (
        Message(role="user", content="a\n\nb"),
        Message(role="system", content="mid-conversation note"),
        Message(role="assistant", content="c"),
    )


def test_a_tool_loop_becomes_tool_calls_and_tool_messages():
    # A recorded Anthropic SDK conversation: a call, its results (one failed), a follow-up.
    turns = [
        {"role": "user", "content": "Weather in Lima and Quito?"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "Two cities.", "signature": "sig"},
                {"type": "text", "text": "Let me check."},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Lima"},
                },
                {
                    "type": "tool_use",
                    "id": "toolu_2",
                    "name": "get_weather",
                    "input": {"city": "Quito"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny, 24 C"},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_2",
                    "is_error": True,
                    "content": [{"type": "text", "text": "station offline"}],
                },
                {"type": "text", "text": "And tomorrow?"},
            ],
        },
    ]
    messages = translate(body(messages=turns, tools=[WEATHER])).messages
    assert [m.role for m in messages] == ["user", "assistant", "tool", "tool", "user"]
    assistant = messages[1]
    assert assistant.content == "Let me check."
    assert assistant.tool_calls == [
        {
            "id": "toolu_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Lima"}'},
        },
        {
            "id": "toolu_2",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Quito"}'},
        },
    ]
    assert messages[2] == Message(role="tool", tool_call_id="toolu_1", content="sunny, 24 C")
    assert messages[3] == Message(
        role="tool", tool_call_id="toolu_2", content="Error: station offline"
    )
    assert messages[4] == Message(role="user", content="And tomorrow?")


def test_an_assistant_turn_of_only_tool_use_has_no_content_and_only_thinking_is_dropped():
    turns = [
        *HI,
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t"}]},
        {"role": "assistant", "content": [{"type": "redacted_thinking", "data": "opaque"}]},
    ]
    messages = translate(body(messages=turns)).messages
    assert messages[1].content is None
    assert messages[1].tool_calls is not None
    assert messages[2] == Message(role="tool", tool_call_id="t", content="")
    assert len(messages) == 3


def test_images_by_url_and_base64_are_image_url_parts():
    turn = {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
            {
                "type": "image",
                "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
            },
        ],
    }
    (message,) = translate(body(messages=[turn])).messages
    assert message.content == [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]


def test_a_tool_results_images_follow_the_tool_messages_in_a_user_message():
    png = {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}
    turn = {
        "role": "user",
        "content": [
            {
                "type": "tool_result",
                "tool_use_id": "t1",
                "content": [
                    {"type": "text", "text": "a screenshot"},
                    {"type": "image", "source": png},
                ],
            },
            {
                "type": "tool_result",
                "tool_use_id": "t2",
                "content": [{"type": "image", "source": {"type": "url", "url": "https://e/x.png"}}],
            },
            {"type": "text", "text": "what do you see?"},
        ],
    }
    messages = translate(body(messages=[turn])).messages
    assert [(m.role, m.tool_call_id) for m in messages] == [
        ("tool", "t1"),
        ("tool", "t2"),
        ("user", None),
    ]
    assert messages[0].content == "a screenshot"
    assert messages[1].content == "(the result is in the next message)"
    assert messages[2].content == [
        {"type": "text", "text": "The image of tool result t1:"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "text", "text": "The image of tool result t2:"},
        {"type": "image_url", "image_url": {"url": "https://e/x.png"}},
        {"type": "text", "text": "what do you see?"},
    ]


@pytest.mark.parametrize(
    ("turn", "param"),
    [
        (
            {
                "role": "user",
                "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}],
            },
            "messages[0].content[0]",
        ),
        (
            {
                "role": "assistant",
                "content": [{"type": "image", "source": {"type": "url", "url": "https://e/x.png"}}],
            },
            "messages[0].content[0]",
        ),
    ],
)
def test_blocks_that_cannot_be_served_are_400s_naming_where(turn, param):
    error = refused(messages=[turn])
    assert error.param == param
    assert param in error.message


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, {"tool_choice": "auto"}),
        ({"type": "any"}, {"tool_choice": "required"}),
        (
            {"type": "tool", "name": "get_weather"},
            {"tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
        ),
        ({"type": "none"}, {"tool_choice": "none"}),
        (
            {"type": "auto", "disable_parallel_tool_use": True},
            {"tool_choice": "auto", "parallel_tool_calls": False},
        ),
    ],
)
def test_tools_and_tool_choice_in_openai_words(choice, expected):
    options = translate(body(tools=[WEATHER], tool_choice=choice)).options
    assert options == {
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "parameters": WEATHER["input_schema"],
                    "description": "Weather in a city",
                },
            }
        ],
        **expected,
    }


def test_tool_choice_without_tools():
    assert translate(body(tool_choice={"type": "none"})).options == {}
    assert refused(tool_choice={"type": "any"}).param == "tool_choice"


def test_a_server_tool_is_a_400_naming_it():
    error = refused(tools=[WEATHER, {"type": "web_search_20250305", "name": "web_search"}])
    assert error.param == "tools[1]"
    assert "web_search" in error.message


def test_sampling_fields_and_stop_sequences():
    wanted = translate(body(temperature=0.5, top_p=0.9, stop_sequences=["\n\n", "END"]))
    assert wanted.options == {"temperature": 0.5, "top_p": 0.9, "stop": ["\n\n", "END"]}
    assert translate(body(metadata={"user_id": "u-1"})).options == {}
    # Passed on; members that do not take it are skipped (ai_api.params rule 5).
    assert translate(body(top_k=40)).options == {"top_k": 40}


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"temperature": 1.5}, "temperature"),
        ({"top_p": -0.1}, "top_p"),
        ({"top_k": -1}, "top_k"),
        ({"stop_sequences": ["a", "b", "c", "d", "e"]}, "stop_sequences"),
        ({"max_tokens": 0}, "max_tokens"),
    ],
)
def test_out_of_range_or_unservable_fields_are_400s(fields, param):
    assert refused(**fields).param == param


@pytest.mark.parametrize(
    ("thinking", "options", "shown"),
    [
        (
            {"type": "enabled", "budget_tokens": 12_000},
            {"reasoning_effort": "high", "reasoning_format": "parsed"},
            True,
        ),
        (
            {"type": "enabled", "budget_tokens": 2_048, "display": "omitted"},
            {"reasoning_effort": "low"},
            False,
        ),
        ({"type": "adaptive"}, {}, True),
        ({"type": "adaptive", "display": "omitted"}, {}, False),
        ({"type": "disabled"}, {}, False),
    ],
)
def test_thinking(thinking, options, shown):
    wanted = translate(body(thinking=thinking))
    assert wanted.options == options
    assert wanted.show_thinking is shown


def test_effort_of_a_budget():
    assert [effort_of(n) for n in (1024, 4999, 5000, 9999, 10_000, 64_000)] == [
        "low",
        "low",
        "medium",
        "medium",
        "high",
        "high",
    ]


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        ({"model": "auto", "max_tokens": 5, "messages": HI, "frobnicate": 1}, "frobnicate"),
        ({"model": "auto", "messages": HI}, "max_tokens"),
        (
            {
                "model": "auto",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}],
            },
            "messages[0].content[0]",
        ),
    ],
)
def test_unknown_or_missing_fields_are_400s_naming_them(raw, named):
    with pytest.raises(InvalidRequest) as info:
        decode_body(json.dumps(raw).encode(), MessagesBody)
    assert named in info.value.message


def test_count_tokens_takes_no_generation_controls():
    raw = {"model": "auto", "messages": HI, "tools": [WEATHER]}
    assert decode_body(json.dumps(raw).encode(), CountTokensBody).tools
    with pytest.raises(InvalidRequest):
        decode_body(json.dumps({**raw, "max_tokens": 5}).encode(), CountTokensBody)


def test_output_config_effort_and_format_in_openai_words():
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    wanted = translate(body(output_config={"effort": "medium"}))
    assert wanted.options == {"reasoning_effort": "medium"}
    # OpenAI's scale stops at high; the effort wins over the one a thinking budget gives.
    thinking = {"type": "enabled", "budget_tokens": 1024}
    for effort in ("xhigh", "max"):
        wanted = translate(body(output_config={"effort": effort}, thinking=thinking))
        assert wanted.options["reasoning_effort"] == "high"
    wanted = translate(body(output_config={"format": {"type": "json_schema", "schema": schema}}))
    assert wanted.options == {
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": schema, "strict": True},
        }
    }
    bad = ({"effort": "extreme"}, {"format": {"type": "xml"}}, {"format": {"schema": schema}})
    for config in (*bad, {"verbosity": "low"}):
        with pytest.raises(InvalidRequest):
            body(output_config=config)


CLAUDE_CODE_FIELDS: Any = {
    "metadata": {"user_id": '{"device_id":"74e8","session_id":"c456"}'},
    "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
    "cache_control": {"type": "ephemeral"},
    "service_tier": "auto",
    "container": "container_011",
    "inference_geo": "us",
    "thinking": {"type": "adaptive", "display": "omitted"},
}


def test_fields_claude_code_sends_are_accepted_and_change_nothing_sent():
    assert translate(body(**CLAUDE_CODE_FIELDS)) == translate(body())


def test_tool_beta_fields_strict_is_sent_deferred_tools_are_not():
    tools = [
        {
            **WEATHER,
            "strict": True,
            "eager_input_streaming": True,
            "input_examples": [{"city": "Lima"}],
            "allowed_callers": ["direct"],
            "cache_control": {"type": "ephemeral"},
        },
        {**WEATHER, "name": "later", "defer_loading": True},
    ]
    wanted = translate(body(tools=tools))
    (function,) = wanted.options["tools"]
    assert function == {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": WEATHER["input_schema"],
            "description": "Weather in a city",
            "strict": True,
        },
    }
    # Only deferred tools: nothing to offer, and `auto` has nothing to choose from.
    only_later = [tools[1]]
    assert translate(body(tools=only_later, tool_choice={"type": "auto"})).options == {}
    assert refused(tools=only_later, tool_choice={"type": "any"}).param == "tool_choice"


def test_a_tool_use_block_with_its_caller_is_the_same_call():
    use = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Lima"}}
    turns = [*HI, {"role": "assistant", "content": [{**use, "caller": {"type": "direct"}}]}]
    assert translate(body(messages=turns)) == translate(
        body(messages=[*HI, {"role": "assistant", "content": [use]}])
    )


def test_count_tokens_takes_the_fields_that_shape_a_prompt():
    raw = {
        "model": "auto",
        "messages": HI,
        "output_config": {"effort": "high"},
        "context_management": {"edits": []},
        "cache_control": {"type": "ephemeral"},
    }
    assert decode_body(json.dumps(raw).encode(), CountTokensBody).output_config is not None


def test_a_turns_output_config_wins_over_the_requests():
    # Claude Code's per-turn-control beta: the effort rides on the turn being answered.
    turns = [
        {"role": "user", "content": "Hola", "output_config": {"effort": "low"}},
        {"role": "system", "content": "Env", "output_config": {"effort": "medium"}},
    ]
    wanted = translate(body(messages=turns, output_config={"effort": "high"}))
    assert wanted.options == {"reasoning_effort": "medium"}
    assert [m.content for m in wanted.messages] == ["Hola", "Env"]


@pytest.mark.parametrize(
    "turns",
    [
        [{"role": "system", "content": []}],
        [{"role": "user", "content": []}, {"role": "assistant", "content": []}],
        [{"role": "assistant", "content": [{"type": "thinking", "thinking": "hm"}]}],
    ],
)
def test_a_conversation_of_empty_turns_is_a_400_not_sent_upstream(turns):
    # Found by schemathesis: it went upstream as `"messages": []`, which upstreams refuse.
    with pytest.raises(InvalidRequest) as info:
        translate(body(messages=turns, system="Be brief."))
    assert info.value.param == "messages"
    assert len(translate(body(messages=[*turns, *HI])).messages) == 1


def test_a_tool_choice_naming_no_tool_of_the_request_is_a_400():
    # Found by schemathesis: it went upstream, which refused it.
    choice = {"type": "tool", "name": "get_time"}
    with pytest.raises(InvalidRequest) as info:
        translate(body(tools=[WEATHER], tool_choice=choice))
    assert info.value.param == "tool_choice.name"
    named = translate(body(tools=[WEATHER], tool_choice={"type": "tool", "name": "get_weather"}))
    assert named.options["tool_choice"]["function"]["name"] == "get_weather"
