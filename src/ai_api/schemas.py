"""Typed request, message, chunk and usage, and the decoding of client bodies into them."""

from __future__ import annotations

from typing import Literal

import msgspec

from .errors import InvalidRequest

Role = Literal["system", "user", "assistant"]


class Message(msgspec.Struct, frozen=True):
    """One chat message: who said it and what."""

    role: Role
    content: str


class Usage(msgspec.Struct, frozen=True):
    """Token counts as the upstream reported them."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class ChatRequest(msgspec.Struct, frozen=True):
    """What a provider is asked: the messages, the upstream model and the completion cap."""

    messages: tuple[Message, ...]
    model: str
    max_tokens: int


class Chunk(msgspec.Struct, frozen=True):
    """One piece of a streamed answer: text, and at the end a finish reason and usage."""

    content: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None


class ChatBody(msgspec.Struct, frozen=True):
    """The body of `POST /chat`, the original bun-ai-api contract."""

    messages: tuple[Message, ...]


_chat_body_decoder = msgspec.json.Decoder(ChatBody)


def decode_chat_body(raw: bytes) -> ChatBody:
    """Decode and validate a `/chat` body, or raise `InvalidRequest` saying what is wrong."""
    if not raw.strip():
        raise InvalidRequest('The request body is empty; send JSON like {"messages": [...]}.')
    try:
        body = _chat_body_decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"Invalid request body: {exc}", param=_param_of(exc)) from exc
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}") from exc
    if not body.messages:
        raise InvalidRequest("`messages` must hold at least one message.", param="messages")
    return body


def _param_of(exc: msgspec.ValidationError) -> str | None:
    """The JSON path msgspec reports (`... - at `$.messages[0].role``), without the `$.`."""
    text = str(exc)
    marker = " - at `$."
    if marker in text:
        return text.split(marker, 1)[1].rstrip("`")
    return None
