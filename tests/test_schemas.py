"""Decoding and validating `/chat` bodies."""

import pytest

from ai_api.errors import InvalidRequest
from ai_api.schemas import ChatMessage, CompletionBody, Message, decode_body, decode_chat_body


def test_valid_body_decodes_to_typed_messages():
    body = decode_chat_body(
        b'{"messages": [{"role": "system", "content": "be brief"},'
        b' {"role": "user", "content": "hola"}], "extra": 1}'
    )
    assert body.messages == (ChatMessage("system", "be brief"), ChatMessage("user", "hola"))
    assert body.to_messages() == (Message("system", "be brief"), Message("user", "hola"))


@pytest.mark.parametrize(
    ("raw", "fragment", "param"),
    [
        (b"", "empty", None),
        (b"{not json", "not valid JSON", None),
        (b'{"messages": [{"role": "user", "content": "\xff"}]}', "not valid UTF-8", None),
        (b'{"messages": [{"role": "user", "content": "caf\xc3"}]}', "not valid UTF-8", None),
        (b"[]", "Expected `object`", None),
        (b"{}", "missing required field `messages`", None),
        (b'{"messages": []}', "at least one message", "messages"),
        (b'{"messages": "hi"}', "Expected `array`", "messages"),
        (
            b'{"messages": [{"role": "bot", "content": "x"}]}',
            "Invalid enum value",
            "messages[0].role",
        ),
        (
            b'{"messages": [{"role": "user", "content": 3}]}',
            "Expected `str`",
            "messages[0].content",
        ),
        (b'{"messages": [{"role": "user"}]}', "missing required field `content`", "messages[0]"),
    ],
)
def test_bad_bodies_say_what_is_wrong(raw, fragment, param):
    with pytest.raises(InvalidRequest) as info:
        decode_chat_body(raw)
    assert fragment in info.value.message
    assert info.value.status == 400
    assert info.value.param == param


def test_json_nested_too_deeply_is_a_400_not_a_crash():
    deep = b'{"messages": [{"role": "user", "content": "hi"}], "x": ' + b"[" * 5000 + b"]" * 5000
    with pytest.raises(InvalidRequest, match="nested too deeply") as info:
        decode_chat_body(deep + b"}")
    assert info.value.status == 400


def test_an_unknown_field_is_named_in_param():
    raw = b'{"messages": [{"role": "user", "content": "x"}], "colour": 1}'
    with pytest.raises(InvalidRequest, match="unknown field `colour`") as info:
        decode_body(raw, CompletionBody)
    assert info.value.param == "colour"


def test_a_whole_float_in_an_integer_field_is_read_as_the_integer():
    # Found by schemathesis: `"max_tokens": 1.0` is an integer to JSON Schema (and so to the
    # OpenAPI description), and was a 400.
    raw = b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 100.0, "seed": 7e0}'
    body = decode_body(raw, CompletionBody)
    assert (body.max_tokens, body.seed) == (100, 7)
    assert type(body.max_tokens) is int


@pytest.mark.parametrize(
    ("extra", "param"),
    [('"max_tokens": 1.5', "max_tokens"), ('"n": 1.0, "colour": 1', "colour")],
)
def test_a_float_that_is_not_whole_or_beside_another_fault_is_still_a_400(extra, param):
    raw = b'{"messages": [{"role": "user", "content": "hi"}], ' + extra.encode() + b"}"
    with pytest.raises(InvalidRequest) as info:
        decode_body(raw, CompletionBody)
    assert info.value.param == param
