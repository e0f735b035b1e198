"""The SSE codec: what clients receive and how upstream streams are read."""

import json
from collections.abc import Iterator

import pytest

from ai_api.sse import EVENT_LIMIT, SSEDecoder, encode_data, encode_event


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


@pytest.mark.parametrize(
    "block",
    [
        b'data: {"n":1}\n\ndata: {"n":2}\n\ndata: [DONE]\n\n',  # what upstreams send
        b"data: a\n\n: keep-alive\n\ndata: b\n\n",  # a comment between events
        b"data: a\ndata: b\n\ndata: c\n\n",  # an event of two lines
        b"data: a\n\nevent: x\ndata: b\n\n",  # another field
        b"data: a\n\ndata:b\n\n",  # no space after the colon
        b"data: a\n\n\ndata: b\n\n",  # an extra blank line
        b"data: \n\ndata: b\n\n",  # empty data
    ],
)
def test_whole_events_in_one_block_read_as_line_by_line(block):
    # Fed a byte at a time, no block holds a whole event: the decoder reads line by line.
    by_byte = SSEDecoder()
    expected = [e for i in range(len(block)) for e in by_byte.feed(block[i : i + 1])]
    assert SSEDecoder().feed(block) == expected
    decoder = SSEDecoder()  # and after a block that ended mid-event
    assert decoder.feed(b"data: x") == []
    assert decoder.feed(b"\n\n" + block) == [b"x", *expected]


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b"\r"])
@pytest.mark.parametrize("size", [1000, 65_536, 300_000])
def test_long_lines_survive_any_cut_and_any_line_ending(ending, size):
    """Lines longer than the decoder joins per block (kept in pieces) read the same."""
    lines = [b"a" * 200_000, b"b" * 70_000 + b"\xe9", b"c"]
    raw = b"".join(b"data: " + line + ending + ending for line in lines) + b"data: " + lines[0]
    decoder = SSEDecoder()
    got = [e for i in range(0, len(raw), size) for e in decoder.feed(raw[i : i + size])]
    assert got + decoder.close() == [*lines, lines[0]]


@pytest.mark.parametrize(
    "unit",
    [b"y" * 1024, b"data: " + b"y" * 1000 + b"\n", b": keep-alive\n"],
    ids=["one-endless-line", "an-event-of-endless-lines", "comments-after-data"],
)
def test_an_event_past_the_limit_is_refused_after_about_the_limit(unit):
    """Fed 1 KiB at a time, the decoder refuses about `EVENT_LIMIT` bytes in (a `ValueError`),
    holding no more, and in linear time (a line is not joined again per block)."""
    decoder = SSEDecoder()
    assert decoder.feed(b"data: begun\n") == []
    raw = unit * (2 * EVENT_LIMIT // len(unit))
    blocks = (raw[start : start + 1024] for start in range(0, len(raw), 1024))
    with pytest.raises(ValueError, match="passes 4194304 bytes"):
        feed_all(decoder, blocks)
    fed = len(raw) - 1024 * (1 + sum(1 for _ in blocks))  # before the block refused
    assert EVENT_LIMIT - 2048 <= fed <= EVENT_LIMIT


def feed_all(decoder: SSEDecoder, blocks: Iterator[bytes]) -> None:
    for block in blocks:
        decoder.feed(block)


def test_an_event_just_under_the_limit_is_read():
    decoder = SSEDecoder()
    payload = b"z" * (EVENT_LIMIT - 1024)
    raw = b"data: " + payload + b"\n\n"
    got = [e for i in range(0, len(raw), 4096) for e in decoder.feed(raw[i : i + 4096])]
    assert got == [payload]


def test_a_stream_past_the_decoders_limit_is_refused():
    decoder = SSEDecoder(limit=40)
    assert decoder.feed(b"data: a\n\n" * 4) == [b"a"] * 4  # 36 bytes
    with pytest.raises(ValueError, match="the answer passes 40 bytes"):
        decoder.feed(b"data: b\n\n")
