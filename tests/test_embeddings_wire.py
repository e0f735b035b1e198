"""The embeddings translations and the fake's vectors, on plain values."""

from __future__ import annotations

import base64
import math
import struct

import msgspec
import pytest

from ai_api.embeddings_wire import (
    EmbeddingAsk,
    client_answer,
    parse_request,
    read_answer,
    takes,
    upstream_body,
)
from ai_api.errors import InvalidRequest, UpstreamProtocol
from ai_api.fakes.embeddings import as_base64, embeddings_answer, inputs_of, vector
from ai_api.fakes.rules import Violation
from ai_api.providers.presets import CLOUDFLARE, HUGGINGFACE, MISTRAL, NVIDIA, OLLAMA
from ai_api.schemas import Usage


def raw(**body: object) -> bytes:
    return msgspec.json.encode(body)


def test_a_request_is_checked():
    ask = parse_request(raw(model="m", input="hi", user="u", input_type="passage"))
    assert ask == EmbeddingAsk("m", ("hi",), "float", None, {"input_type": "passage"})
    assert parse_request(raw(model="m", input=["a", "b"], encoding_format=None)).texts == (
        "a",
        "b",
    )
    assert parse_request(raw(model="m", input="x", dimensions=4)).dimensions == 4


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "x"}, "model"),
        ({"model": "m"}, "input"),
        ({"model": "m", "input": []}, "input"),
        ({"model": "m", "input": [""]}, "input"),
        ({"model": "m", "input": [1, 2]}, "input"),
        ({"model": "m", "input": [[1, 2]]}, "input"),
        ({"model": "m", "input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"model": "m", "input": "x", "dimensions": 0}, "dimensions"),
        ({"model": "m", "input": "x", "dimensions": True}, "dimensions"),
        ({"model": "m", "input": "x", "user": 7}, "user"),
    ],
)
def test_bad_requests_name_their_field(body, param):
    with pytest.raises(InvalidRequest) as info:
        parse_request(msgspec.json.encode(body))
    assert info.value.param == param


@pytest.mark.parametrize("text", [b"", b"[1]", b"{", b'"x"'])
def test_a_body_that_is_no_object(text):
    with pytest.raises(InvalidRequest):
        parse_request(text)


def test_upstream_bodies_in_each_providers_names():
    ask = EmbeddingAsk("r", ("a",), "base64", 256, {"input_type": "passage", "truncate": "END"})
    assert MISTRAL.embeddings is not None
    assert NVIDIA.embeddings is not None
    assert upstream_body(MISTRAL.embeddings, "mistral-embed", ask) == {
        "model": "mistral-embed",
        "input": ["a"],
        "output_dimension": 256,
    }
    plain = EmbeddingAsk("r", ("a",))
    assert upstream_body(NVIDIA.embeddings, "nvidia/nv-embedqa-e5-v5", plain)["input_type"] == (
        "query"  # the default its retrieval models need
    )
    chosen = upstream_body(NVIDIA.embeddings, "nvidia/nv-embedqa-e5-v5", ask)
    assert (chosen["input_type"], chosen["truncate"]) == ("passage", "END")


def test_which_providers_take_a_request():
    assert CLOUDFLARE.embeddings is not None
    assert OLLAMA.embeddings is not None
    assert MISTRAL.embeddings is not None
    assert takes(CLOUDFLARE.embeddings, EmbeddingAsk("r", ("x",) * 100))
    assert not takes(CLOUDFLARE.embeddings, EmbeddingAsk("r", ("x",) * 101))
    assert not takes(OLLAMA.embeddings, EmbeddingAsk("r", ("x",), dimensions=8))
    assert takes(MISTRAL.embeddings, EmbeddingAsk("r", ("x",), dimensions=8))


def test_upstream_answers_are_read_in_input_order():
    body = raw(
        data=[
            {"index": 1, "embedding": as_base64([0.5, -0.25])},
            {"index": 0, "embedding": [1.0, 0.0]},
        ],
        usage={"prompt_tokens": 3, "total_tokens": 3},
    )
    vectors, usage = read_answer("p", body, 2)
    assert vectors == [[1.0, 0.0], [0.5, -0.25]]
    assert usage == Usage(3, 0, 3)
    assert read_answer("p", raw(data=[{"embedding": [1.0]}]), 1) == ([[1.0]], None)


@pytest.mark.parametrize(
    "body",
    [
        raw(data=[{"embedding": [1.0]}]),  # one for two inputs
        raw(data="nope"),
        b"not json",
        raw(data=[{"embedding": "!!"}, {"embedding": "AAA="}]),
    ],
)
def test_upstream_answers_that_do_not_fit(body):
    with pytest.raises(UpstreamProtocol):
        read_answer("p", body, 2)


def test_client_answers_float_or_base64():
    vectors = [[0.1, 0.2]]
    usage = Usage(2, 0, 2)
    floats = client_answer(EmbeddingAsk("r", ("a",)), "m", vectors, usage)
    assert floats == {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
        "model": "m",
        "usage": {"prompt_tokens": 2, "total_tokens": 2},
    }
    coded = client_answer(EmbeddingAsk("r", ("a",), "base64"), "m", vectors, usage)
    data = base64.b64decode(coded["data"][0]["embedding"])
    assert struct.unpack("<2f", data) == pytest.approx((0.1, 0.2))


def test_the_fakes_vectors_are_unit_and_stable():
    one = vector("hello")
    assert one == vector("hello") != vector("hello!")
    assert math.isclose(math.fsum(v * v for v in one), 1.0)
    assert len(vector("x", 100)) == 100
    assert inputs_of({"input": [1, 2]}) == ["1 2"]
    assert isinstance(inputs_of({"input": [""]}), Violation)
    assert isinstance(embeddings_answer({"input": "x", "dimensions": 0}, "m"), Violation)
    answer = embeddings_answer({"input": ["a", "b"], "encoding_format": "base64"}, "m")
    assert not isinstance(answer, Violation)
    assert [d["index"] for d in answer["data"]] == [0, 1]
    assert isinstance(answer["data"][0]["embedding"], str)


def test_the_feature_extraction_dialect():
    assert HUGGINGFACE.embeddings is not None
    ask = EmbeddingAsk("r", ("a", "b"), dimensions=None, extra={"input_type": "query"})
    assert upstream_body(HUGGINGFACE.embeddings, "BAAI/bge-m3", ask) == {"inputs": ["a", "b"]}
    vectors, usage = read_answer("hf", b"[[0.5, 1], [0, -1]]", 2, "feature-extraction")
    assert (vectors, usage) == ([[0.5, 1.0], [0.0, -1.0]], None)
    for body in (b"[[[0.5]], [[1]]]", b"[[1]]", b'{"error": "x"}'):
        with pytest.raises(UpstreamProtocol):
            read_answer("hf", body, 2, "feature-extraction")
