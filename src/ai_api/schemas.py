"""Typed requests, messages, chunks and usage, and the decoding of client bodies into them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, Protocol, TypeVar

import msgspec

from .errors import InvalidRequest

Role = Literal["system", "developer", "user", "assistant", "tool"]


class Message(msgspec.Struct, frozen=True, omit_defaults=True):
    """One chat message in the OpenAI shape; absent fields are not sent upstream."""

    role: Role
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


def has_images(messages: tuple[Message, ...]) -> bool:
    """Whether a message carries an `image_url` part."""
    return any(
        isinstance(m.content, list) and any(p.get("type") == "image_url" for p in m.content)
        for m in messages
    )


class Usage(msgspec.Struct, frozen=True):
    """Token counts as the upstream reported them."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class ChatRequest(msgspec.Struct, frozen=True, kw_only=True):
    """What a provider is asked: messages, upstream model, completion cap, other fields.

    `options` holds the optional OpenAI request fields (temperature, tools, ...) by their
    OpenAI names; each provider translates them (see `ai_api.params`).
    """

    messages: tuple[Message, ...]
    model: str
    max_tokens: int | None = None
    options: dict[str, Any] = {}
    whole: bool = False
    """The answer is taken at once (the client asked for no stream): past its first token a
    provider may read the rest in bulk instead of piece by piece."""
    prefill: str | None = None
    """A partial answer to continue: sent as a final assistant message, in the provider's
    prefill dialect (`ProviderSpec.prefill`)."""


class FunctionDelta(msgspec.Struct, frozen=True, omit_defaults=True):
    """A piece of a tool call's function: its name once, its arguments in pieces."""

    name: str | None = None
    arguments: str | None = None


class ToolCallDelta(msgspec.Struct, frozen=True, omit_defaults=True):
    """A piece of one tool call, as OpenAI streams them (joined by `index`).

    `index` has no default so that it is always written, 0 included: the SDKs' stream
    helpers join pieces by it and lose a call whose pieces lack it."""

    index: int
    id: str | None = None
    type: str | None = None
    function: FunctionDelta | None = None


class Chunk(msgspec.Struct, frozen=True):
    """One piece of a streamed answer: text, reasoning or tool calls; at the end a finish
    reason and usage."""

    content: str = ""
    reasoning: str = ""
    tool_calls: tuple[ToolCallDelta, ...] = ()
    finish_reason: str | None = None
    usage: Usage | None = None


class ChatMessage(msgspec.Struct, frozen=True):
    """A message of the original `/chat` contract: three roles, text content."""

    role: Literal["system", "user", "assistant"]
    content: str


class ChatBody(msgspec.Struct, frozen=True):
    """The body of `POST /chat`, the original bun-ai-api contract."""

    messages: tuple[ChatMessage, ...]

    def to_messages(self) -> tuple[Message, ...]:
        """The messages in the shape providers take."""
        return tuple(Message(role=m.role, content=m.content) for m in self.messages)


class StreamOptions(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """OpenAI `stream_options`."""

    include_usage: bool = False


class CompletionBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The body of `POST /v1/chat/completions`: the OpenAI fields ai-api knows.

    Unknown fields are refused with a 400 rather than sent upstream to fail there.
    """

    messages: tuple[Message, ...]
    model: str | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    n: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    user: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    reasoning_effort: str | None = None
    reasoning_format: str | None = None
    include_reasoning: bool | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    logit_bias: dict[str, float] | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = None


class _Body(Protocol):
    """A client body: it holds messages."""

    @property
    def messages(self) -> Sequence[object]: ...


B = TypeVar("B", bound=_Body)

_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {}


def decode_body(raw: bytes, kind: type[B]) -> B:
    """Decode and validate a request body, or raise `InvalidRequest` saying what is wrong."""
    body = decode_json(raw, kind, '{"messages": [...]}')
    if not body.messages:
        raise InvalidRequest("`messages` must hold at least one message.", param="messages")
    return body


T = TypeVar("T")


def decode_json(raw: bytes, kind: type[T], example: str) -> T:
    """Decode a JSON body into `kind`, or raise `InvalidRequest` saying what is wrong
    (`example`: what an empty body should have held)."""
    if not raw.strip():
        raise InvalidRequest(f"The request body is empty; send JSON like {example}.")
    decoder = _decoders.get(kind)
    if decoder is None:
        decoder = _decoders[kind] = msgspec.json.Decoder(kind)
    try:
        try:
            body: T = decoder.decode(raw)
        except msgspec.ValidationError:
            whole = _with_whole_numbers(raw, kind)
            if whole is None:
                raise
            body = whole
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"Invalid request body: {exc}", param=param_of(exc)) from exc
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}") from exc
    except RecursionError:  # JSON nested deeper than the decoder goes
        raise InvalidRequest(
            "The request body is nested too deeply to be a chat request."
        ) from None
    except UnicodeDecodeError as exc:  # msgspec raises it for a string that is not UTF-8
        raise InvalidRequest(
            f"The request body is not valid UTF-8 (byte {exc.start} of a string); JSON must be"
            " sent as UTF-8."
        ) from exc
    return body


def _integer_fields(kind: type[Any]) -> frozenset[str]:
    """The fields of `kind` that take an integer (or null)."""
    fields = _integers.get(kind)
    if fields is None:
        info = msgspec.inspect.type_info(kind)
        assert isinstance(info, msgspec.inspect.StructType)
        fields = _integers[kind] = frozenset(
            field.name
            for field in info.fields
            if any(
                isinstance(t, msgspec.inspect.IntType)
                for t in (
                    field.type.types
                    if isinstance(field.type, msgspec.inspect.UnionType)
                    else (field.type,)
                )
            )
        )
    return fields


_integers: dict[type[Any], frozenset[str]] = {}


def _with_whole_numbers(raw: bytes, kind: type[T]) -> T | None:
    """`raw` as `kind` with a whole float in an integer field (`"max_tokens": 100.0`) read as
    the integer it is, as JSON Schema reads it; None when there is none to read so. Only a
    body the typed decoder refused pays for this second decoding."""
    data = msgspec.json.decode(raw)
    if not isinstance(data, dict):
        return None
    whole = {
        name: int(value)
        for name in _integer_fields(kind)
        if isinstance(value := data.get(name), float) and value.is_integer()
    }
    if not whole:
        return None
    return msgspec.convert({**data, **whole}, kind)


def decode_chat_body(raw: bytes) -> ChatBody:
    """A validated `/chat` body."""
    return decode_body(raw, ChatBody)


def param_of(exc: msgspec.ValidationError) -> str | None:
    """The JSON path msgspec reports (`... - at `$.messages[0].role``), without the `$.`;
    for an unknown field, the field's own path (`messages[0].colour`, `colour`)."""
    text = str(exc)
    marker = " - at `$."
    path = text.split(marker, 1)[1].rstrip("`") if marker in text else None
    unknown = "unknown field `"
    if unknown in text:
        name = text.split(unknown, 1)[1].split("`", 1)[0]
        return f"{path}.{name}" if path else name
    return path
