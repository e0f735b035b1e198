"""Embeddings as pure translations: the client's request, the upstream body, the upstream
answer, the client's answer (OpenAI's `POST /v1/embeddings` shapes). No I/O.

Hugging Face's feature-extraction dialect (`{"inputs": [...]}` in, bare arrays out) is put
into the same shapes. Upstreams are always asked for floats; `encoding_format: "base64"` is
encoded here (float32, little-endian, as OpenAI does). Token-array inputs are refused: no
upstream tokenizer is known.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from .errors import InvalidRequest, UpstreamProtocol
from .providers.presets import Embeddings
from .schemas import Usage
from .tokens import text_tokens

FORMATS = ("float", "base64")
FEATURE_EXTRACTION = "feature-extraction"


@dataclass(frozen=True, slots=True)
class EmbeddingAsk:
    """One client request for embeddings, checked."""

    model: str
    texts: tuple[str, ...]
    encoding_format: str = "float"
    dimensions: int | None = None
    extra: Mapping[str, Any] | None = None
    """Fields outside OpenAI's (NVIDIA's `input_type`): passed to the members that take them."""

    @property
    def prompt_tokens(self) -> int:
        """The estimated tokens of the inputs."""
        return sum(text_tokens(t) for t in self.texts)


_KNOWN = frozenset({"model", "input", "encoding_format", "dimensions", "user"})


def parse_request(raw: bytes) -> EmbeddingAsk:
    """The checked request, or `InvalidRequest` saying what is wrong."""
    try:
        body = msgspec.json.decode(raw) if raw.strip() else None
    except (msgspec.DecodeError, RecursionError) as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise InvalidRequest('Send a JSON object like {"model": "...", "input": "text"}.')
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("`model` is required: an embedding model's name.", param="model")
    form = body.get("encoding_format")
    if form is None:
        form = "float"
    if form not in FORMATS:
        raise InvalidRequest(
            "`encoding_format` must be `float` or `base64`.", param="encoding_format"
        )
    dimensions = body.get("dimensions")
    if dimensions is not None and (
        not isinstance(dimensions, int) or isinstance(dimensions, bool) or dimensions < 1
    ):
        raise InvalidRequest("`dimensions` must be a positive integer.", param="dimensions")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise InvalidRequest("`user` must be a string.", param="user")
    extra = {k: v for k, v in body.items() if k not in _KNOWN}
    return EmbeddingAsk(model, _texts(body.get("input")), form, dimensions, extra)


def _texts(given: Any) -> tuple[str, ...]:
    if isinstance(given, str):
        given = [given]
    if not isinstance(given, list) or not given:
        raise InvalidRequest(
            "`input` must be a string or a non-empty array of strings.", param="input"
        )
    if any(isinstance(item, int | list) for item in given):
        raise InvalidRequest(
            "Token arrays are not supported as `input`: send the text.", param="input"
        )
    if not all(isinstance(item, str) and item for item in given):
        raise InvalidRequest("Every `input` must be a non-empty string.", param="input")
    return tuple(given)


def takes(offer: Embeddings, ask: EmbeddingAsk) -> bool:
    """Whether a provider with `offer` can serve `ask` (its `dimensions`, its batch size)."""
    if ask.dimensions is not None and offer.dimensions_field is None:
        return False
    return len(ask.texts) <= offer.max_inputs


def upstream_body(offer: Embeddings, model: str, ask: EmbeddingAsk) -> dict[str, Any]:
    """The JSON body for a provider with `offer`: floats, its field names, its defaults."""
    if offer.dialect == FEATURE_EXTRACTION:
        return {"inputs": list(ask.texts)}
    body: dict[str, Any] = {"model": model, "input": list(ask.texts)}
    body.update(offer.defaults)
    body.update({k: v for k, v in (ask.extra or {}).items() if k in offer.extra})
    if ask.dimensions is not None and offer.dimensions_field is not None:
        body[offer.dimensions_field] = ask.dimensions
    return body


class _Item(msgspec.Struct):
    embedding: list[float] | str
    index: int | None = None


class _Answer(msgspec.Struct):
    data: list[_Item]
    usage: Usage | None = None


_answer = msgspec.json.Decoder(_Answer)
_arrays = msgspec.json.Decoder(list[list[float]])


def read_answer(
    provider: str, raw: bytes, count: int, dialect: str = "openai"
) -> tuple[list[list[float]], Usage | None]:
    """The vectors of an upstream answer, in input order, and the usage it reported."""
    if dialect == FEATURE_EXTRACTION:
        return _read_arrays(provider, raw, count), None
    try:
        answer = _answer.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise UpstreamProtocol(provider, f"not an embeddings answer: {exc}") from exc
    items = sorted(answer.data, key=lambda item: -1 if item.index is None else item.index)
    if len(items) != count:
        raise UpstreamProtocol(provider, f"{len(items)} embeddings for {count} inputs")
    vectors = [
        item.embedding if isinstance(item.embedding, list) else _floats(provider, item.embedding)
        for item in items
    ]
    return vectors, answer.usage


def _read_arrays(provider: str, raw: bytes, count: int) -> list[list[float]]:
    """A feature-extraction answer: one array of floats per input (a model that answers
    per token, arrays of arrays, is no sentence embedder)."""
    try:
        vectors = _arrays.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise UpstreamProtocol(provider, f"not one array of floats an input: {exc}") from exc
    if len(vectors) != count:
        raise UpstreamProtocol(provider, f"{len(vectors)} embeddings for {count} inputs")
    return vectors


def _floats(provider: str, text: str) -> list[float]:
    try:
        data = base64.b64decode(text, validate=True)
    except ValueError as exc:
        raise UpstreamProtocol(provider, "an embedding is neither floats nor base64") from exc
    if len(data) % 4:
        raise UpstreamProtocol(provider, "a base64 embedding is not whole float32s")
    return list(struct.unpack(f"<{len(data) // 4}f", data))


def client_answer(
    ask: EmbeddingAsk, model: str, vectors: list[list[float]], usage: Usage
) -> dict[str, Any]:
    """OpenAI's answer from `model`: each vector as floats, or base64 float32 when asked."""
    data = [
        {"object": "embedding", "index": i, "embedding": _encoded(v, ask.encoding_format)}
        for i, v in enumerate(vectors)
    ]
    counts = {"prompt_tokens": usage.prompt_tokens, "total_tokens": usage.total_tokens}
    return {"object": "list", "data": data, "model": model, "usage": counts}


def _encoded(vector: list[float], form: str) -> list[float] | str:
    if form != "base64":
        return vector
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
