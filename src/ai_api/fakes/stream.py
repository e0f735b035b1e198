"""Writing one chat answer, as SSE or as one JSON body, misbehaving as a `Fault` asks."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import msgspec
from aiohttp import web

from .flavors import Flavor
from .wire import JSON, Reply, Usage

_encode = msgspec.json.encode
_DONE = b"data: [DONE]\n\n"
# A token that cannot occur in an answer; its JSON form splits a content chunk into two halves.
_MARK = "\x00"
_MARK_JSON = b'"\\u0000"'


@dataclass(frozen=True, slots=True)
class Fault:
    """A misbehaviour for one chat request. Every field is optional and they combine.

    The `*_after` counts are content chunks already sent (0 = before the first one).
    `status` answers an HTTP error in the provider's shape (`code`/`message` override its
    wording, `retry_after` adds the header); `cut_after` closes the connection mid-body;
    `stall_after` holds it open and silent for `stall_seconds` (or until the client leaves or
    the fake stops) and then closes it; `malformed_after` slips in one `data:` line that is not
    JSON; `error_after` sends the provider's in-stream error with `error_status` and ends the
    stream without `[DONE]`; `no_done` omits `[DONE]`; `drop` closes without any response.
    Non-streaming answers honour `cut_after`/`stall_after` by sending half the body.
    """

    status: int | None = None
    code: str | None = None
    message: str | None = None
    retry_after: float | None = None
    headers_delay: float = 0.0
    first_token_delay: float = 0.0
    cut_after: int | None = None
    stall_after: int | None = None
    stall_seconds: float = 3600.0
    malformed_after: int | None = None
    error_after: int | None = None
    error_status: int = 500
    no_done: bool = False
    drop: bool = False


@dataclass(frozen=True, slots=True)
class ChatPlan:
    """What the fake will answer to one valid chat request."""

    tokens: list[str]
    finish_reason: str
    prompt_tokens: int
    stream: bool
    include_usage: bool


class Exchange:
    """One chat request in flight: its fault, its response once started, and how to end it."""

    __slots__ = ("_stopping", "dropped", "fault", "request", "response", "token_delay")

    def __init__(
        self, request: web.Request, fault: Fault, stopping: asyncio.Event, token_delay: float
    ) -> None:
        self.request = request
        self.fault = fault
        self.token_delay = token_delay
        self.response: web.StreamResponse | None = None
        self.dropped = False
        self._stopping = stopping

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def pause(self, seconds: float) -> bool:
        """Wait `seconds`, or less if the fake stops; True when it is stopping."""
        if seconds > 0 and not self._stopping.is_set():
            try:
                async with asyncio.timeout(seconds):
                    await self._stopping.wait()
            except TimeoutError:
                pass
        return self._stopping.is_set()

    def cut(self) -> web.StreamResponse:
        """Close the connection wherever the answer is; what was written still arrives."""
        transport = self.request.transport
        if transport is not None:
            transport.close()
        return self.response or web.StreamResponse()

    def drop(self) -> web.StreamResponse:
        """Close the connection before any response."""
        self.dropped = True
        return self.cut()


def _event(payload: JSON) -> bytes:
    return b"data: " + _encode(payload) + b"\n\n"


def _content_frame(flavor: Flavor, reply: Reply) -> tuple[bytes, bytes]:
    """The bytes around the token of a content chunk, encoded once per answer."""
    head, tail = _encode(flavor.wire.content_chunk(reply, _MARK)).split(_MARK_JSON, 1)
    return b"data: " + head, tail + b"\n\n"


def _malformed(reply: Reply) -> bytes:
    return b'data: {"id":"' + reply.completion_id.encode() + b'","choices":[{"delta":{\n\n'


async def write_stream(
    exchange: Exchange, flavor: Flavor, reply: Reply, plan: ChatPlan, headers: dict[str, str]
) -> web.StreamResponse:
    """Send the answer as bare `data:` events; consecutive events go out in one write."""
    fault = exchange.fault
    headers["Content-Type"] = "text/event-stream"
    headers["Cache-Control"] = "no-cache"
    response = exchange.response = web.StreamResponse(headers=headers)
    await response.prepare(exchange.request)
    out = [_event(flavor.wire.role_chunk(reply))]

    async def flush() -> None:
        if out:
            await response.write(b"".join(out))
            out.clear()

    if fault.first_token_delay > 0:
        await flush()
        if await exchange.pause(fault.first_token_delay):
            return exchange.cut()
    head, tail = _content_frame(flavor, reply)
    tokens = plan.tokens
    for sent in range(len(tokens) + 1):
        if sent == fault.malformed_after:
            out.append(_malformed(reply))
        if sent == fault.error_after:
            spec = flavor.error(
                fault.error_status, code=fault.code, message=fault.message, model=reply.model
            )
            out.append(_event(flavor.stream_error(spec)))
            await flush()
            await response.write_eof()
            return response
        if sent == fault.cut_after:
            await flush()
            return exchange.cut()
        if sent == fault.stall_after:
            await flush()
            await exchange.pause(fault.stall_seconds)
            return exchange.cut()
        if sent == len(tokens):
            break
        if sent and exchange.token_delay > 0:
            await flush()
            await asyncio.sleep(exchange.token_delay)
            if exchange.stopping:
                return exchange.cut()
        out.append(head + _encode(tokens[sent]) + tail)
    usage = Usage(plan.prompt_tokens, len(tokens))
    finish = flavor.wire.finish_chunks(reply, usage, plan.finish_reason, plan.include_usage)
    out.extend(_event(chunk) for chunk in finish)
    if not fault.no_done:
        out.append(_DONE)
    await flush()
    await response.write_eof()
    return response


async def write_completion(
    exchange: Exchange, flavor: Flavor, reply: Reply, plan: ChatPlan, headers: dict[str, str]
) -> web.StreamResponse:
    """Send the answer as one `chat.completion` body (`first_token_delay` delays it all)."""
    fault = exchange.fault
    if fault.first_token_delay > 0 and await exchange.pause(fault.first_token_delay):
        return exchange.drop()
    usage = Usage(plan.prompt_tokens, len(plan.tokens))
    text = "".join(plan.tokens)
    body = _encode(flavor.wire.completion(reply, text, usage, plan.finish_reason))
    headers["Content-Type"] = "application/json"
    if fault.cut_after is None and fault.stall_after is None:
        return web.Response(body=body, headers=headers)
    response = exchange.response = web.StreamResponse(headers=headers)
    response.content_length = len(body)
    await response.prepare(exchange.request)
    await response.write(body[: len(body) // 2])
    if fault.cut_after is None:
        await exchange.pause(fault.stall_seconds)
    return exchange.cut()
