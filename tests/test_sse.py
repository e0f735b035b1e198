"""The SSE codec: what clients receive and how upstream streams are read."""

import json

import pytest

from ai_api.sse import SSEDecoder, encode_data, encode_event


def test_encode_data_and_named_event():
    assert encode_data({"content": "hola"}) == b'data: {"content":"hola"}\n\n'
    assert encode_event("done", {"a": 1}) == b'event: done\ndata: {"a":1}\n\n'


def test_decoder_joins_multiline_data_and_ignores_comments_and_other_fields():
    decoder = SSEDecoder()
    assert decoder.feed(b": keep-alive\n\nid: 7\ndata: one\ndata:two\n\n") == [b"one\ntwo"]


def test_decoder_drops_only_one_leading_space():
    assert SSEDecoder().feed(b"data:  spaced\n\n") == [b" spaced"]


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b"\r"])
@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_events_survive_any_cut_and_any_line_ending(ending, size):
    raw = b"".join(b"data: " + json.dumps({"n": n}).encode() + ending + ending for n in range(3))
    decoder = SSEDecoder()
    got = [e for i in range(0, len(raw), size) for e in decoder.feed(raw[i : i + size])]
    got += decoder.close()
    assert [json.loads(d) for d in got] == [{"n": 0}, {"n": 1}, {"n": 2}]


def test_lone_carriage_returns_split_lines_and_close_flushes_the_tail():
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r\rdata: b\n\ndata: [DO") == [b"a", b"b"]
    assert decoder.feed(b"NE]") == []
    assert decoder.close() == [b"[DONE]"]
