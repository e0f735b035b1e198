"""One adapter for every OpenAI-compatible provider, plus the pure translations it uses.

Provider differences live in data (`ProviderSpec`) or are tolerated here in one place:
usage at the top level (OpenAI, Cerebras) or in `x_groq.usage` (Groq); error bodies nested
under `error` (Groq, OpenAI) or at the top level (Cerebras); in-stream errors as an `error`
payload (with `status_code` on Cerebras) or as `x_groq.error`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from typing import Any

import msgspec

from ..errors import (
    UpstreamError,
    UpstreamProtocol,
    UpstreamStatus,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from ..http_client import BadResponse, HTTPClient, Response
from ..params import translate
from ..ratelimits import read_error_body, read_headers
from ..schemas import ChatRequest, Chunk, ToolCallDelta, Usage
from ..sse import SSEDecoder
from .presets import ProviderSpec


class _Delta(msgspec.Struct):
    content: str | None = None
    reasoning: str | None = None
    reasoning_content: str | None = None
    tool_calls: tuple[ToolCallDelta, ...] | None = None


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
_STREAM_ENDS = (b"[DONE]", b'"error"')
"""Bytes that may end a stream before its body does: `[DONE]`, an error event (a false alarm
only wakes the reader once more)."""
_encode = msgspec.json.encode
_NOTHING = Chunk()


def request_body(spec: ProviderSpec, request: ChatRequest) -> bytes:
    """The upstream JSON body for a streamed chat completion, in `spec`'s dialect."""
    body: dict[str, Any] = {"model": request.model, "messages": request.messages}
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
        tool_calls=delta.tool_calls or (),
        finish_reason=choice.finish_reason,
        usage=usage,
    )


def _plain(event: _StreamEvent) -> _Delta | None:
    """The delta of an event that carries text (or nothing) and no more, else None."""
    if event.usage is not None or event.error or len(event.choices) != 1:
        return None
    groq = event.x_groq
    if groq is not None and (groq.usage is not None or groq.error):
        return None
    choice = event.choices[0]
    delta = choice.delta
    if delta is None or choice.finish_reason is not None or delta.tool_calls:
        return None
    return delta


def parse_events(
    provider: str, events: list[bytes]
) -> tuple[list[Chunk], bool, UpstreamError | None]:
    """The chunks in one block of events; whether the block ended the stream with `[DONE]`;
    and the error an event carried, if one did (the chunks before it still count).

    Consecutive pieces of plain text (or of plain reasoning) that arrived together become one
    chunk: they reach the client as one delta, as soon as they would have anyway. All chunks
    but the last are marked `more`.
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
            if delta is not None:
                content = delta.content
                thought = delta.reasoning or delta.reasoning_content
                if not (content and thought):  # text of one kind, or none (a role chunk)
                    if content or thought:
                        if pieces and bool(thought) != reasoning:
                            chunks.append(_joined(pieces, reasoning))
                            pieces = []
                        reasoning = bool(thought)
                        pieces.append(content or thought or "")
                    continue
            chunk = _chunk_of(provider, event)
        except UpstreamError as exc:
            error = exc
            break
        if chunk == _NOTHING:
            continue
        if pieces:
            chunks.append(_joined(pieces, reasoning))
            pieces = []
        chunks.append(chunk)
    if pieces:
        chunks.append(_joined(pieces, reasoning))
    for i in range(len(chunks) - 1):
        chunks[i] = msgspec.structs.replace(chunks[i], more=True)
    return chunks, done, error


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


class _Watch:
    """Ends a stream whose upstream sent nothing for `limit` seconds while it was awaited, or
    that is still going at `deadline` (the total timeout, on the loop's clock).

    Per block it costs two assignments (`since`), not a new timer per socket read; one timer
    per `limit` seconds checks the stream. Silence counts from the later of the pending read's
    start and the last bytes to arrive (a read in bulk spans many arrivals).
    """

    __slots__ = (
        "_deadline",
        "_handle",
        "_limit",
        "_loop",
        "_provider",
        "_response",
        "since",
        "time",
    )

    def __init__(
        self, provider: str, limit: float | None, deadline: float, response: Response
    ) -> None:
        self._provider = provider
        self._limit = limit
        self._deadline = deadline
        self._loop = loop = asyncio.get_running_loop()
        self._response = response
        self.time = loop.time
        self.since: float | None = None  # when the pending read began; None between reads
        self._handle: asyncio.TimerHandle | None = None
        self._schedule(loop.time())

    def _schedule(self, start: float) -> None:
        when = self._deadline if self._limit is None else min(start + self._limit, self._deadline)
        if when != float("inf"):
            self._handle = self._loop.call_at(when, self._check)

    def _check(self) -> None:
        now = self._loop.time()
        self._handle = None
        if now >= self._deadline:
            message = "the answer took longer than the total timeout"
        elif (
            self._limit is None
            or self.since is None
            or now - max(self.since, self._response.last_data) < self._limit
        ):
            since = self.since
            self._schedule(now if since is None else max(since, self._response.last_data))
            return
        else:
            message = "no data within the read timeout"
        self._response.fail(UpstreamTimeout(self._provider, message))

    def stop(self) -> None:
        """Stop watching (the stream ended, one way or another)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


class OpenAICompatible:
    """A provider speaking the OpenAI chat-completions wire format over one shared HTTP client."""

    def __init__(
        self,
        spec: ProviderSpec,
        *,
        name: str | None = None,
        api_key: str,
        base_url: str,
        client: HTTPClient,
        read_timeout: float | None = None,
        total_timeout: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.spec = spec
        self._name = name or spec.name
        headers = {
            "Authorization": f"Bearer {api_key}",
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
        }
        self._endpoint = client.endpoint(base_url.rstrip("/") + spec.chat_path, headers)
        self._key = api_key
        self._read_timeout = read_timeout
        self._total_timeout = total_timeout
        self._clock = clock

    @property
    def name(self) -> str:
        """The configured name (by default the preset's: `groq`, `cerebras`, ...)."""
        return self._name

    async def stream(self, request: ChatRequest) -> AsyncGenerator[Chunk, None]:
        """Stream the answer; every failure surfaces as an `UpstreamError`.

        `total_timeout` bounds the whole exchange; `read_timeout` each wait for the upstream:
        for its response headers (connecting included), then for every block of the stream.
        """
        watch: _Watch | None = None
        response: Response | None = None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self._total_timeout or float("inf"))
        try:
            read_limit = loop.time() + (self._read_timeout or float("inf"))
            limit = min(read_limit, deadline)
            waiting = asyncio.timeout_at(None if limit == float("inf") else limit)
            try:
                async with waiting:
                    response = await self._endpoint.post(request_body(self.spec, request))
            except TimeoutError as exc:
                if not waiting.expired():
                    raise UpstreamTimeout(self.name, str(exc) or "timed out") from exc
                raise UpstreamTimeout(
                    self.name,
                    "no response within the read timeout"
                    if read_limit <= deadline
                    else "the answer took longer than the total timeout",
                ) from exc
            ended = False
            try:
                watch = _Watch(self.name, self._read_timeout, deadline, response)
                time = watch.time
                now = self._clock()
                reading = read_headers(self.spec.rate_style, response.headers, now, now)
                if response.status >= 400:
                    watch.since = time()
                    raise self._status_error(response.status, await response.read(), response)
                if reading.windows or reading.retry_at is not None:
                    yield Chunk(rate=reading)
                read = response.readany
                finished = False
                decoder = SSEDecoder()
                while True:
                    watch.since = time()
                    block = await read()
                    watch.since = None
                    if not block:
                        break
                    chunks, done, error = parse_events(self.name, decoder.feed(block))
                    for chunk in chunks:
                        finished = finished or chunk.finish_reason is not None
                        yield chunk
                    if chunks and request.whole:  # the first token is out: the rest at once,
                        response.bulk = True  # or as soon as the stream says it ended
                        response.bulk_until = _STREAM_ENDS
                    if error is not None:
                        raise error
                    if done:
                        # The end of the body is normally on its way: read it, and the
                        # connection goes back to the pool (silence now is silence too).
                        response.release_after_end(self._read_timeout)
                        ended = True
                        return
                chunks, done, error = parse_events(self.name, decoder.close())
                for chunk in chunks:
                    finished = finished or chunk.finish_reason is not None
                    yield chunk
                if error is not None:
                    raise error
                if not finished:
                    raise UpstreamProtocol(
                        self.name, "the stream ended before the answer was complete"
                    )
            finally:
                if not ended:
                    response.release()
        except UpstreamError as exc:
            exc.message = self._redact(exc.message)
            raise
        except BadResponse as exc:
            raise UpstreamProtocol(self.name, self._redact(str(exc))) from exc
        except TimeoutError as exc:
            raise UpstreamTimeout(self.name, "timed out") from exc
        except OSError as exc:
            if response is not None:
                raise UpstreamUnreachable(self.name, "the connection was cut mid-answer") from exc
            reason = self._redact(str(exc)) or type(exc).__name__
            raise UpstreamUnreachable(self.name, f"connection failed: {reason}") from exc
        finally:
            if watch is not None:
                watch.stop()

    def _status_error(self, status: int, body: bytes, response: Response) -> UpstreamStatus:
        now = self._clock()
        error = status_error(self.name, status, body, response.headers)
        error.rate = read_headers(self.spec.rate_style, response.headers, now, now)
        told = read_error_body(self.spec.rate_style, status, body, now, now)
        error.retry_at = error.rate.retry_at or told.retry_at
        error.exhausted, error.period = told.exhausted, told.period
        return error

    def _redact(self, text: str) -> str:
        return text.replace(self._key, "[redacted]") if self._key else text
