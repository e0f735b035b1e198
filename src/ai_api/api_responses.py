"""The OpenAI Responses API: `POST /v1/responses`.

A facade over the same routes, rationing, failover and ledger as `/v1/chat/completions`: the
request is translated (`ai_api.responses_wire`), the answer streamed back as Responses events
or as one response object (`ai_api.responses_events`). A failure after the first byte ends
the stream with an `error` event (which the OpenAI SDKs raise) and `response.failed`, never
with `response.completed`. No response is stored.
"""

from __future__ import annotations

import time
from contextlib import aclosing

import msgspec
from aiohttp import web

from .answers import answered_by, read_body, stream
from .attempts import Opened
from .cache import HEADER as CACHE_HEADER
from .gateway import GATEWAY
from .keys import check_model
from .responses_events import Event, EventStream, head_of
from .responses_wire import ResponsesBody, translate
from .schemas import decode_json
from .sse import encode_event
from .tokens import prompt_tokens

_encode = msgspec.json.encode
_DONE = b"data: [DONE]\n\n"


def add_routes(app: web.Application) -> None:
    """Mount the Responses API at `/v1/responses`."""
    app.router.add_post("/v1/responses", responses)


async def responses(request: web.Request) -> web.StreamResponse:
    """A response from the route named by `model`, streamed or whole."""
    body = decode_json(await read_body(request), ResponsesBody, '{"model": ..., "input": ...}')
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
    head = head_of(f"resp_{ids.next()}", opened.deployment.model, body, wanted)
    events = EventStream(
        head,
        prompt_tokens(wanted.messages),
        new_id=lambda prefix: f"{prefix}_{ids.next()}",
        clock=time.time,
        namespaces=wanted.namespaces,
        customs=wanted.customs,
    )
    async with aclosing(opened.chunks):
        if body.stream:
            held: list[Event] = []
            return await stream(
                request,
                opened,
                "text/event-stream",
                lambda response: _relay(response, opened, events, held),
                lambda exc: _frame([*held, *events.fail(exc)]) + _DONE,
            )
        await _collect(opened, events)
        final = events.finish()[-1]["response"]
        return web.Response(
            body=_encode(final), content_type="application/json", headers=answered_by(opened)
        )


_HEADS: dict[str, bytes] = {}  # an event's first line and `data: `, per type (a few dozen)


def _frame(events: list[Event]) -> bytes:
    """The SSE frames of `events` (as `sse.encode_event` makes them), in one buffer."""
    heads = _HEADS
    parts = []
    for event in events:
        kind = event["type"]
        head = heads.get(kind)
        if head is None:
            head = heads[kind] = encode_event(kind, None)[: -len(b"null\n\n")]
        parts.append(head)
        parts.append(_encode(event))
        parts.append(b"\n\n")
    return b"".join(parts)


async def _relay(
    response: web.StreamResponse, opened: Opened, events: EventStream, held: list[Event]
) -> bytes:
    """Write `response.created`, `response.in_progress` and each block of chunks' events as
    they come, a block in one write; return the rest, the terminal event and `[DONE]`.

    From the finish reason on, the answer is complete: its events stay in `held`, to go out
    with the end in one write (before the error, when the upstream fails after it).
    """
    held.extend(events.start())
    block = opened.first
    finished = False
    while block is not None:
        for chunk in block:
            held.extend(events.feed(chunk))
            finished = finished or chunk.finish_reason is not None
        if held and not finished:
            await response.write(_frame(held))
            held.clear()
        block = await anext(opened.chunks, None)
    return _frame([*held, *events.finish()]) + _DONE


async def _collect(opened: Opened, events: EventStream) -> None:
    block = opened.first
    while block is not None:
        for chunk in block:
            events.feed(chunk)
        block = await anext(opened.chunks, None)
