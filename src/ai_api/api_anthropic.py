"""The Anthropic Messages API: `POST /v1/messages` and `POST /v1/messages/count_tokens`.

A facade over the same routes, rationing, failover and ledger as `/v1/chat/completions`: the
request is translated (`ai_api.anthropic_wire`), the answer streamed back as Anthropic's
named events or as one message (`ai_api.anthropic_events`). A failure after the first byte
ends the stream with an `event: error` and no `message_stop`, which the SDKs raise.
`anthropic-version` and `anthropic-beta` are accepted and not needed; with
`anthropic-version`, `GET /v1/models` answers Anthropic's model list (`models`). A stream
the upstream leaves silent gets a `ping` event every `ping_interval` seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import msgspec
from aiohttp import web

from .answers import answered_by, read_body, stream
from .anthropic_events import (
    PING,
    BadToolInput,
    Event,
    EventStream,
    error_of,
    fold,
    model_page,
    speaks_anthropic,
)
from .anthropic_wire import CountTokensBody, MessagesBody, Tool, to_messages, translate
from .attempts import Opened
from .cache import HEADER as CACHE_HEADER
from .errors import GatewayError, InvalidRequest, UpstreamProtocol
from .gateway import GATEWAY
from .keys import check_model
from .schemas import Chunk, decode_body
from .sse import encode_event
from .tokens import prompt_tokens, text_tokens

_encode = msgspec.json.encode


def add_routes(app: web.Application) -> None:
    """Mount the Messages API at `/v1/messages`; its answers (errors and Anthropic's model
    list too) carry a `request-id` header, as Anthropic's do."""
    app.router.add_post("/v1/messages", messages)
    app.router.add_post("/v1/messages/count_tokens", count_tokens)
    app.on_response_prepare.append(_request_id)


async def _request_id(request: web.Request, response: web.StreamResponse) -> None:
    if speaks_anthropic(request.path, request.headers.get("anthropic-version")):
        response.headers["request-id"] = f"req_{request.app[GATEWAY].ids.next()}"


async def messages(request: web.Request) -> web.StreamResponse:
    """A message from the route named by `model`, streamed or whole."""
    body = decode_body(await read_body(request), MessagesBody)
    wanted = translate(body)
    gateway = request.app[GATEWAY]
    check_model(request, body.model, gateway.router.resolve(body.model))
    route = gateway.router.route(body.model)
    opened = await gateway.open(
        route,
        wanted.messages,
        max_tokens=wanted.max_tokens,
        options=wanted.options,
        whole=not body.stream,
        cache=request.headers.get(CACHE_HEADER),
    )
    ids = gateway.ids
    events = EventStream(
        f"msg_{ids.next()}",
        opened.deployment.model,
        prompt_tokens(wanted.messages),
        show_thinking=wanted.show_thinking,
        tool_id=lambda: f"toolu_{ids.next()}",
    )
    async with aclosing(opened.chunks):
        if body.stream:
            held: list[Event] = []
            interval = gateway.settings.ping_interval
            return await stream(
                request,
                opened,
                "text/event-stream",
                lambda response: _relay(response, opened, events, interval, held),
                lambda exc: _frame(held) + _failure(exc),
            )
        return _whole(opened, [*events.start(), *await _collect(opened, events), *events.finish()])


def _frame(events: list[Event]) -> bytes:
    return b"".join(encode_event(event["type"], event) for event in events)


_PING = encode_event("ping", PING)


async def _relay(
    response: web.StreamResponse,
    opened: Opened,
    events: EventStream,
    ping_interval: float,
    held: list[Event],
) -> bytes:
    """Write `message_start` and each block of chunks' events as they come, a block in one
    write, and a `ping` each `ping_interval` seconds the client has been sent nothing;
    return the rest, `message_delta` and `message_stop`, to end the body with.

    From the finish reason on, the answer is complete: its events stay in `held`, to go out
    with the end in one write (before the error, when the upstream fails after it).
    """
    held.extend(events.start())
    pings = _Pings(response, ping_interval)
    block = opened.first
    finished = False
    while block is not None:
        for chunk in block:
            held.extend(events.feed(chunk))
            finished = finished or chunk.finish_reason is not None
        if held and not finished:
            await response.write(_frame(held))
            held.clear()
            pings.sent()
        block = await pings.next_block(opened.chunks)
    return _frame([*held, *events.finish()])


class _Pings:
    """The `ping` events of one stream: while the relay awaits the next block, a timer fires
    once the client has been sent nothing for `interval` seconds, and a task of its own sends
    a ping (the block is awaited where it is, not cancelled, which would end the stream).
    A timer costs a block far less than awaiting it in a task with a timeout."""

    def __init__(self, response: web.StreamResponse, interval: float) -> None:
        self._response, self._interval = response, interval
        self._loop = asyncio.get_running_loop()
        self._quiet_until = self._loop.time() + interval
        self._timer: asyncio.TimerHandle | None = None  # set while a block is awaited
        self._sending: asyncio.Task[None] | None = None

    def sent(self) -> None:
        """The client has just been sent something."""
        self._quiet_until = self._loop.time() + self._interval

    async def next_block(self, chunks: AsyncIterator[list[Chunk]]) -> list[Chunk] | None:
        """The next block of `chunks` (None: the end), pinging the client while it is due.
        A ping that failed raises here, as the relay's own write would have."""
        self._timer = self._loop.call_at(self._quiet_until, self._due)
        try:
            block = await anext(chunks, None)
        finally:
            self._timer.cancel()
            self._timer = None
            sending, self._sending = self._sending, None
            if sending is not None and not sending.done():
                sending.cancel()  # what it wrote went out ahead of what comes next
                await asyncio.wait((sending,))
        if sending is not None and not sending.cancelled():
            sending.result()
        return block

    def _due(self) -> None:
        self._sending = asyncio.ensure_future(self._ping())

    async def _ping(self) -> None:
        await self._response.write(_PING)
        self.sent()
        if self._timer is not None:  # still awaiting the block
            self._timer = self._loop.call_at(self._quiet_until, self._due)


def _failure(exc: GatewayError) -> bytes:
    return encode_event("error", error_of(exc)[1])


async def _collect(opened: Opened, events: EventStream) -> list[Event]:
    out: list[Event] = []
    block = opened.first
    while block is not None:
        for chunk in block:
            out.extend(events.feed(chunk))
        block = await anext(opened.chunks, None)
    return out


def _whole(opened: Opened, events: list[Event]) -> web.Response:
    try:
        message = fold(events)
    except BadToolInput as exc:
        raise UpstreamProtocol(opened.deployment.name, str(exc)) from exc
    return web.Response(
        body=_encode(message), content_type="application/json", headers=answered_by(opened)
    )


async def count_tokens(request: web.Request) -> web.Response:
    """`{"input_tokens": N}`: the gateway's estimate (about four characters a token) of the
    prompt, system and tool definitions included; not any model's tokenizer."""
    body = decode_body(await read_body(request), CountTokensBody)
    router = request.app[GATEWAY].router
    check_model(request, body.model, router.resolve(body.model))
    router.route(body.model)  # an unknown model is a 404, as for messages
    count = prompt_tokens(to_messages(body.system, body.messages))
    if body.tools:
        count += text_tokens(_encode([_tool_text(tool) for tool in body.tools]).decode())
    return web.json_response({"input_tokens": count})


def _tool_text(tool: Tool) -> dict[str, Any]:
    return {"name": tool.name, "description": tool.description, "schema": tool.input_schema}


def models(request: web.Request, names: list[str]) -> web.Response:
    """`GET /v1/models` as Anthropic lists models (for a request with `anthropic-version`):
    pages of `limit` (1-1000, default 20) by the `after_id` / `before_id` cursors."""
    raw = request.query.get("limit", "20")
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 1000:
        raise InvalidRequest("`limit` must be a whole number from 1 to 1000.", param="limit")
    after, before = request.query.get("after_id"), request.query.get("before_id")
    try:
        page = model_page(names, limit=int(raw), after_id=after, before_id=before)
    except ValueError:
        raise InvalidRequest(
            f"No model {before if before is not None else after!r} to page from.",
            param="before_id" if before is not None else "after_id",
        ) from None
    return web.json_response(page)
