"""The rules for optional OpenAI request fields."""

import pytest

from ai_api.errors import InvalidRequest
from ai_api.params import missing, options_of, translate
from ai_api.providers.presets import CEREBRAS, COHERE, GROQ, MISTRAL
from ai_api.schemas import CompletionBody, Message

HI = (Message(role="user", content="hi"),)


def body(**fields):
    return CompletionBody(messages=HI, **fields)


def test_options_keep_only_what_the_client_set():
    options = options_of(body(temperature=0.2, tools=[{"type": "function"}], stream=True))
    assert options == {"temperature": 0.2, "tools": [{"type": "function"}]}


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"logit_bias": {"1": 2.0}}, "logit_bias"),
        ({"temperature": 2.5}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"tool_choice": "required"}, "tool_choice"),
    ],
)
def test_refused_and_out_of_range_fields_are_400s(fields, param):
    with pytest.raises(InvalidRequest) as info:
        options_of(body(**fields))
    assert info.value.param == param


def test_gateway_dropped_fields_never_reach_options():
    assert options_of(body(metadata={"a": "b"}, store=True, service_tier="flex", n=1)) == {}


def test_missing_lists_required_fields_only():
    assert missing(MISTRAL, ["user", "seed", "reasoning_format", "tools"]) == []
    assert missing(COHERE, ["parallel_tool_calls"]) == []
    assert missing(GROQ, ["frequency_penalty"]) == []


def test_translate_drops_renames_and_clamps():
    options = {"temperature": 2.0, "frequency_penalty": 0.5, "seed": 3}
    assert translate(GROQ, options) == {"temperature": 2.0, "seed": 3}
    assert translate(CEREBRAS, options) == {"temperature": 1.5, "frequency_penalty": 0.5, "seed": 3}
    assert translate(MISTRAL, options) == {
        "temperature": 2.0,
        "frequency_penalty": 0.5,
        "random_seed": 3,
    }


def test_a_reasoning_format_a_provider_does_not_document_is_dropped_for_it():
    # Found by schemathesis: `"reasoning_format": ""` reached Groq and Cerebras, both 400.
    assert translate(GROQ, {"reasoning_format": "text_parsed"}) == {}
    assert translate(CEREBRAS, {"reasoning_format": "text_parsed"}) == {
        "reasoning_format": "text_parsed"
    }
    assert translate(CEREBRAS, {"reasoning_format": ""}) == {}
    for spec in (GROQ, CEREBRAS):
        assert translate(spec, {"reasoning_format": "parsed"}) == {"reasoning_format": "parsed"}
    # Groq's other switch stays when the format is dropped: they are exclusive only together.
    options = {"reasoning_format": "none", "include_reasoning": False}
    assert translate(GROQ, options) == {"include_reasoning": False}
