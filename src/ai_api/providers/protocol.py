"""The one interface every provider implements."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from typing import Any, Protocol, runtime_checkable

import msgspec

from ..ratelimits import RateReading
from ..schemas import ChatRequest, Chunk


class Answer(msgspec.Struct, frozen=True):
    """An answer the upstream began: its rate-limit reading, if its headers held one, and its
    chunks, a list per block the upstream sent (iterate them to the end or close them: that
    frees the exchange). Blocks are never empty; a writer sends each in one write."""

    rate: RateReading | None
    blocks: AsyncGenerator[list[Chunk], None]


class Provider(Protocol):
    """An upstream that answers chat requests as a stream of chunks.

    `open` and the blocks it returns raise `ai_api.errors.UpstreamError` (or a subclass) for
    every upstream failure, before the first chunk or during the stream, and nothing else.
    """

    @property
    def name(self) -> str:
        """Short, stable name used in logs, headers and the API (e.g. `groq`)."""
        ...

    async def open(self, request: ChatRequest) -> Answer:
        """The answer, once begun; its last chunks carry the finish reason and usage."""
        ...


class Embedded(msgspec.Struct, frozen=True):
    """An embeddings answer: its rate-limit reading, if its headers held one, and its body."""

    rate: RateReading | None
    body: bytes


@runtime_checkable
class Embedder(Protocol):
    """An upstream that also answers embeddings requests (OpenAI's `/embeddings` shape).

    `embed` raises `ai_api.errors.UpstreamError` (or a subclass) for every upstream failure.
    """

    @property
    def name(self) -> str: ...

    async def embed(self, model: str, body: Mapping[str, Any]) -> Embedded:
        """The upstream's answer to the JSON `body` for `model`, read whole."""
        ...


@runtime_checkable
class Lister(Protocol):
    """An upstream that lists the models it serves (`GET …/models`, `ai_api.catalogue`).

    `models` raises `ai_api.errors.UpstreamError` (or a subclass) for every upstream failure.
    """

    @property
    def name(self) -> str: ...

    async def models(self) -> list[str]:
        """The ids of the models it lists now."""
        ...
