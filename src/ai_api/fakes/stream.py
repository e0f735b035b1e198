"""Writing one chat answer, as SSE or as one JSON body, misbehaving as a `Fault` asks."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import msgspec
from aiohttp import web

from .flavors import Flavor
from .plan import ChatPlan
from .wire import JSON, Reply

_encode = msgspec.json.encode
_DONE = b"data: [DONE]\n\n"
# A token that cannot occur in an answer; its JSON form splits a content chunk into two halves.
_MARK = "\x00"
_MARK_JSON = b'"\\u0000"'


@dataclass(frozen=True, slots=True)
class Fault:
    """A misbehaviour for one chat request. Every field is optional and they combine.

    The `*_after` counts are body chunks already sent (0 = before the first one): content,
    reasoning and tool-call chunks alike.
    `status` answers an HTTP error in the provider's shape (`code`/`message` override its
    wording, `retry_after` adds the header); `cut_after` closes the connection mid-body;
    `stall_after` holds it open and silent for `stall_seconds` (or until the client leaves or
    the fake stops) and then closes it; `malformed_after` slips in one `data:` line that is not
    JSON; `error_after` sends the provider's in-stream error with `error_status` and ends the
    stream without `[DONE]`; `no_done` omits `[DONE]`; `drop` closes without any response;
    `reset` makes the connection's close (a drop, a cut, the end of a stall) a TCP reset
    instead of a FIN, as a load balancer or a restarting upstream sends; `comment_lines` SSE
    comments (`: keep-alive`, or `: {comment_text}`) precede the first chunk, as keep-alives
    do (OpenRouter sends `: OPENROUTER PROCESSING`); `end_delay` sends the end of the HTTP
    body that many seconds after the last event, as a lagging last packet does.
    Non-streaming answers and error answers (`status`) honour `cut_after`/`stall_after` by
    sending half the body.
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
    reset: bool = False
    comment_lines: int = 0
    comment_text: str = "keep-alive"
    end_delay: float = 0.0


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
            if self.fault.reset:
                _linger_zero(transport)
            transport.close()
        return self.response or web.StreamResponse()

    def drop(self) -> web.StreamResponse:
        """Close the connection before any response."""
        self.dropped = True
        return self.cut()


def _linger_zero(transport: asyncio.BaseTransport) -> None:
    """Make the transport's close send a TCP reset (SO_LINGER on, zero seconds)."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _event(payload: JSON) -> bytes:
    return b"data: " + _encode(payload) + b"\n\n"


def _content_frame(flavor: Flavor, reply: Reply) -> tuple[bytes, bytes]:
    """The bytes around the token of a content chunk, encoded once per answer."""
    head, tail = _encode(flavor.wire.delta_chunk(reply, {"content": _MARK})).split(_MARK_JSON, 1)
    return b"data: " + head, tail + b"\n\n"


def _body_chunks(flavor: Flavor, reply: Reply, plan: ChatPlan) -> Iterator[bytes]:
    """The `plan.chunk_count` events between the role and finish chunks, in order."""
    wire = flavor.wire
    for text in plan.reasoning:
        yield _event(wire.delta_chunk(reply, wire.reasoning_delta(reply.model, text)))
    if plan.tool_call is not None:
        for delta in wire.tool_call_deltas(plan.tool_call):
            yield _event(wire.delta_chunk(reply, {"tool_calls": [delta]}))
    head, tail = _content_frame(flavor, reply)
    for token in plan.tokens:
        yield head + _encode(token) + tail


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
    if fault.comment_lines > 0:
        comment = b": " + fault.comment_text.encode() + b"\n\n"
        await response.write(comment * fault.comment_lines)
    out = [_event(flavor.wire.role_chunk(reply))]

    async def flush() -> None:
        if out:
            await response.write(b"".join(out))
            out.clear()

    if fault.first_token_delay > 0:
        await flush()
        if await exchange.pause(fault.first_token_delay):
            return exchange.cut()
    chunks = _body_chunks(flavor, reply, plan)
    total = plan.chunk_count
    for sent in range(total + 1):
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
        if sent == total:
            break
        if sent and exchange.token_delay > 0:
            await flush()
            await asyncio.sleep(exchange.token_delay)
            if exchange.stopping:
                return exchange.cut()
        out.append(next(chunks))
    finish = flavor.wire.finish_chunks(reply, plan.usage, plan.finish_reason, plan.include_usage)
    out.extend(_event(chunk) for chunk in finish)
    return await _end(exchange, response, out)


async def _end(
    exchange: Exchange, response: web.StreamResponse, out: list[bytes]
) -> web.StreamResponse:
    """Send the last events and `[DONE]` (unless the fault drops it), then end the body."""
    fault = exchange.fault
    if not fault.no_done:
        out.append(_DONE)
    if out:
        await response.write(b"".join(out))
    if await exchange.pause(fault.end_delay):
        return exchange.cut()
    await response.write_eof()
    return response


async def write_completion(
    exchange: Exchange, flavor: Flavor, reply: Reply, plan: ChatPlan, headers: dict[str, str]
) -> web.StreamResponse:
    """Send the answer as one `chat.completion` body (`first_token_delay` delays it all)."""
    fault = exchange.fault
    if fault.first_token_delay > 0 and await exchange.pause(fault.first_token_delay):
        return exchange.drop()
    message = plan.message()
    body = _encode(flavor.wire.completion(reply, message, plan.usage, plan.finish_reason))
    headers["Content-Type"] = "application/json"
    return await write_whole(exchange, 200, body, headers)


async def write_whole(
    exchange: Exchange, status: int, body: bytes, headers: dict[str, str]
) -> web.StreamResponse:
    """Send `body` with its length, or, under `cut_after` or `stall_after`, only its first
    half, then cut or stall."""
    fault = exchange.fault
    if fault.cut_after is None and fault.stall_after is None:
        return web.Response(status=status, body=body, headers=headers)
    response = exchange.response = web.StreamResponse(status=status, headers=headers)
    response.content_length = len(body)
    await response.prepare(exchange.request)
    await response.write(body[: len(body) // 2])
    if fault.cut_after is None:
        await exchange.pause(fault.stall_seconds)
    return exchange.cut()
