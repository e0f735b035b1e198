"""The SSE codec: what clients receive and how upstream streams are read."""

import json

import pytest

from ai_api.sse import SSEDecoder, encode_data, encode_event, iter_sse_data


def test_encode_data_and_named_event():
    assert encode_data({"content": "hola"}) == b'data: {"content":"hola"}\n\n'
    assert encode_event("done", {"a": 1}) == b'event: done\ndata: {"a":1}\n\n'


def test_decoder_joins_multiline_data_and_ignores_comments_and_other_fields():
    decoder = SSEDecoder()
    lines = [b": keep-alive\n", b"id: 7\n", b"data: one\n", b"data:two\n", b"\n"]
    assert [decoder.feed(line) for line in lines] == [None, None, None, None, b"one\ntwo"]


def test_decoder_drops_only_one_leading_space():
    decoder = SSEDecoder()
    decoder.feed(b"data:  spaced")
    assert decoder.feed(b"") == b" spaced"


async def _lines(*items: bytes):
    for item in items:
        yield item


@pytest.mark.parametrize("ending", [b"\n", b"\r\n"])
async def test_iter_sse_data_over_line_endings(ending):
    raw = b"".join(b"data: " + json.dumps({"n": n}).encode() + ending + ending for n in range(3))
    got = [json.loads(d) async for d in iter_sse_data(_lines(*raw.splitlines(keepends=True)))]
    assert got == [{"n": 0}, {"n": 1}, {"n": 2}]


async def test_iter_sse_data_splits_lone_carriage_returns_and_flushes_the_tail():
    got = [d async for d in iter_sse_data(_lines(b"data: a\r\rdata: b\n", b"\n", b"data: [DONE]"))]
    assert got == [b"a", b"b", b"[DONE]"]
