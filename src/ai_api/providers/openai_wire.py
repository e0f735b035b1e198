"""The OpenAI chat-completions wire format as pure translations: the upstream request body,
stream events into chunks, error bodies into gateway errors. No I/O; `openai_compat` uses them.

Provider differences live in data (`ProviderSpec`) or are tolerated here in one place:
usage at the top level (OpenAI, Cerebras) or in `x_groq.usage` (Groq); error bodies nested
under `error` (Groq, OpenAI) or at the top level (Cerebras); in-stream errors as an `error`
payload (with `status_code` on Cerebras) or as `x_groq.error`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from ..errors import UpstreamError, UpstreamProtocol, UpstreamStatus
from ..params import translate
from ..schemas import ChatRequest, Chunk, FunctionDelta, ToolCallDelta, Usage
from .presets import ProviderSpec


class _ToolCallPiece(msgspec.Struct):
    # Read with `index` 0 when absent (a provider with one call per answer may leave it out).
    index: int = 0
    id: str | None = None
    type: str | None = None
    function: FunctionDelta | None = None


class _Delta(msgspec.Struct):
    content: str | None = None
    reasoning: str | None = None
    reasoning_content: str | None = None
    tool_calls: tuple[_ToolCallPiece, ...] | None = None


class _Choice(msgspec.Struct):
    delta: _Delta | None = None
    finish_reason: str | None = None


class _XGroq(msgspec.Struct):
    usage: Usage | None = None
    error: str | None = None


class _StreamEvent(msgspec.Struct):
    choices: list[_Choice] = []
    usage: Usage | None = None
    x_groq: _XGroq | None = None
    error: Any = None
    status_code: int | None = None


_event_decoder = msgspec.json.Decoder(_StreamEvent)
STREAM_ENDS = (b"[DONE]", b'"error"', b'"usage":{', b'"usage": {')
"""Bytes that may end a stream before its body does: `[DONE]`, an error event, the usage (the
answer is whole once it and the finish reason are in). A false alarm only wakes a read waiting
for them once more."""
_encode = msgspec.json.encode
_NOTHING = Chunk()


def request_body(spec: ProviderSpec, request: ChatRequest) -> bytes:
    """The upstream JSON body for a streamed chat completion, in `spec`'s dialect (a partial
    answer to continue in its prefill dialect)."""
    messages = request.messages
    if not spec.message_names and any(m.name is not None for m in messages):
        messages = tuple(msgspec.structs.replace(m, name=None) for m in messages)
    body: dict[str, Any] = {"model": request.model, "messages": messages}
    if request.prefill is not None and spec.prefill is not None:
        final = {"role": "assistant", "content": request.prefill, **spec.prefill.message}
        body["messages"] = [*messages, final]
        body.update(spec.prefill.body)
    if request.max_tokens is not None:
        body[spec.max_tokens_field] = request.max_tokens
    body.update(translate(spec, request.options))
    body["stream"] = True
    if spec.stream_usage:
        body["stream_options"] = {"include_usage": True}
    return _encode(body)


def parse_event(provider: str, data: bytes) -> Chunk:
    """One upstream SSE payload as a chunk; raises for error payloads and malformed JSON."""
    return _chunk_of(provider, _decode(provider, data))


def _decode(provider: str, data: bytes) -> _StreamEvent:
    try:
        return _event_decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise UpstreamProtocol(provider, f"sent a malformed stream event: {exc}") from exc


def _chunk_of(provider: str, event: _StreamEvent) -> Chunk:
    if event.error:
        raise _stream_error(provider, event.error, event.status_code)
    usage = event.usage
    if event.x_groq is not None:
        if event.x_groq.error:
            raise UpstreamStatus(provider, 500, f"stream stopped: {event.x_groq.error}")
        usage = usage or event.x_groq.usage
    if not event.choices:
        return Chunk(usage=usage)
    choice = event.choices[0]  # ai-api asks for one choice (n=1)
    delta = choice.delta
    if delta is None:
        return Chunk(finish_reason=choice.finish_reason, usage=usage)
    return Chunk(
        content=delta.content or "",
        reasoning=delta.reasoning or delta.reasoning_content or "",
        tool_calls=tuple(
            ToolCallDelta(c.index, c.id, c.type, c.function) for c in delta.tool_calls or ()
        ),
        finish_reason=choice.finish_reason,
        usage=usage,
    )


def _plain(event: _StreamEvent) -> _Delta | None:
    """The delta of an event that carries text of one kind (or nothing) and no more, else None."""
    if event.usage is not None or event.error or len(event.choices) != 1:
        return None
    groq = event.x_groq
    if groq is not None and (groq.usage is not None or groq.error):
        return None
    choice = event.choices[0]
    delta = choice.delta
    if delta is None or choice.finish_reason is not None or delta.tool_calls:
        return None
    if delta.content and (delta.reasoning or delta.reasoning_content):
        return None
    return delta


def parse_events(
    provider: str, events: list[bytes]
) -> tuple[list[Chunk], bool, UpstreamError | None]:
    """The chunks in one block of events; whether the block ended the stream with `[DONE]`;
    and the error an event carried, if one did (the chunks before it still count).

    Consecutive pieces of plain text (or of plain reasoning) that arrived together become one
    chunk: they reach the client as one delta, as soon as they would have anyway.
    """
    chunks: list[Chunk] = []
    pieces: list[str] = []
    reasoning = False  # what `pieces` holds
    done = False
    error = None
    for data in events:
        if data.startswith(b"[DONE]"):
            done = True
            break
        try:
            event = _decode(provider, data)
            delta = _plain(event)
            chunk = _NOTHING if delta is not None else _chunk_of(provider, event)
        except UpstreamError as exc:
            error = exc
            break
        if delta is not None:
            thought = delta.reasoning or delta.reasoning_content
            piece = thought or delta.content
            if piece:  # else a role chunk: nothing to say
                if pieces and bool(thought) != reasoning:
                    _flush(chunks, pieces, reasoning)
                reasoning = bool(thought)
                pieces.append(piece)
        elif chunk != _NOTHING:
            if pieces:
                _flush(chunks, pieces, reasoning)
            chunks.append(chunk)
    if pieces:
        chunks.append(_joined(pieces, reasoning))
    return chunks, done, error


def _flush(chunks: list[Chunk], pieces: list[str], reasoning: bool) -> None:
    """Join the pieces held into one chunk."""
    chunks.append(_joined(pieces, reasoning))
    pieces.clear()


def _joined(pieces: list[str], reasoning: bool) -> Chunk:
    text = pieces[0] if len(pieces) == 1 else "".join(pieces)
    return Chunk(reasoning=text) if reasoning else Chunk(content=text)


def _stream_error(provider: str, error: Any, status_code: int | None) -> UpstreamStatus:
    message, code = _message_and_code(error if isinstance(error, dict) else {"message": error})
    return UpstreamStatus(provider, status_code or 500, f"failed mid-stream: {message}", code=code)


def status_error(
    provider: str, status: int, body: bytes, headers: Mapping[str, str]
) -> UpstreamStatus:
    """The gateway error for an upstream HTTP error response, whatever its body's shape."""
    try:
        parsed: Any = msgspec.json.decode(body)
    except msgspec.DecodeError:
        parsed = {"message": body[:200].decode("utf-8", "replace").strip() or "no body"}
    if isinstance(parsed, list) and parsed:  # Gemini sometimes wraps the body in a list
        parsed = parsed[0]
    if isinstance(parsed, dict):
        inner = parsed.get("error", parsed)
        error = inner if isinstance(inner, dict) else {"message": inner}
    else:
        error = {"message": str(parsed)}
    message, code = _message_and_code(error)
    passed = {k: v for k in ("retry-after",) if (v := headers.get(k)) is not None}
    return UpstreamStatus(provider, status, message, code=code, headers=passed)


def _message_and_code(error: Mapping[str, Any]) -> tuple[str, str | None]:
    message = str(error.get("message") or "no message")
    code = error.get("code") or error.get("type")
    return message, str(code) if code is not None else None
