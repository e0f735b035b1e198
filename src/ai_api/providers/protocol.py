"""The one interface every provider implements."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Protocol

from ..schemas import ChatRequest, Chunk


class Provider(Protocol):
    """An upstream that answers chat requests as a stream of chunks.

    `stream` raises `ai_api.errors.UpstreamError` (or a subclass) for every upstream failure,
    before the first chunk or during the stream, and nothing else.
    """

    @property
    def name(self) -> str:
        """Short, stable name used in logs, headers and the API (e.g. `groq`)."""
        ...

    def stream(self, request: ChatRequest) -> AsyncGenerator[Chunk, None]:
        """The answer, chunk by chunk; the last chunks carry the finish reason and usage."""
        ...
