"""`POST /chat`: the original bun-ai-api contract, made proper.

Events: `data: {"content": "..."}` per text delta, then `event: done` with provider, model,
finish reason and usage; or `event: error` if the provider fails once the stream has begun.
`?format=text` streams the bare text, as the original server did; a failure then aborts the
connection so the client sees an incomplete transfer, never a truncated answer that looks whole.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

from aiohttp import web

from .answers import read_body, stream
from .attempts import Opened
from .cache import HEADER as CACHE_HEADER
from .errors import InvalidRequest
from .gateway import GATEWAY
from .keys import check_model
from .routing import DEFAULT_ROUTE
from .schemas import Chunk, decode_chat_body
from .sse import encode_data, encode_event

_FORMATS = {"sse": "text/event-stream", "text": "text/plain; charset=utf-8"}


async def chat(request: web.Request) -> web.StreamResponse:
    """Stream one answer from the next provider in turn."""
    gateway = request.app[GATEWAY]
    fmt = request.query.get("format", "sse")
    if fmt not in _FORMATS:
        raise InvalidRequest(
            f"Unknown format {fmt!r}; use 'sse' (default) or 'text'.", param="format"
        )
    body = decode_chat_body(await read_body(request))
    check_model(request, DEFAULT_ROUTE)
    opened = await gateway.open(
        gateway.router.route(None), body.to_messages(), cache=request.headers.get(CACHE_HEADER)
    )
    first, chunks = opened.first, opened.chunks
    async with aclosing(chunks):
        if fmt == "text":
            return await stream(
                request,
                opened,
                _FORMATS[fmt],
                lambda response: _write_text(response, first, chunks),
                lambda _: None,
            )
        demo = gateway.settings.demo
        return await stream(
            request,
            opened,
            _FORMATS[fmt],
            lambda response: _write_events(response, opened, demo),
            lambda exc: encode_event("error", exc.body()),
        )


async def _write_events(response: web.StreamResponse, opened: Opened, demo: bool) -> bytes:
    """Write each chunk's text as a `data:` event, a block in one write; return the `done`
    event, for the caller to end the body with (naming who finished an answer that another
    member continued)."""
    chunks, deployment, continued_by = opened.chunks, opened.deployment, opened.continued_by
    finish_reason = None
    usage = None
    block = opened.first
    while block is not None:
        held: list[bytes] = []
        for chunk in block:
            if chunk.content:
                held.append(encode_data({"content": chunk.content}))
            finish_reason = chunk.finish_reason or finish_reason
            usage = chunk.usage or usage
        if held:
            await response.write(b"".join(held))
        block = await anext(chunks, None)
    done: dict[str, Any] = {
        "provider": deployment.name,
        "model": deployment.model,
        "finish_reason": finish_reason,
        "usage": usage,
    }
    if continued_by:
        done["continued_by"] = continued_by[-1]
    if demo:
        done["demo"] = True
    return encode_event("done", done)


async def _write_text(
    response: web.StreamResponse,
    first: list[Chunk] | None,
    chunks: AsyncGenerator[list[Chunk], None],
) -> bytes:
    """Write the text as it comes, a block in one write."""
    block = first
    while block is not None:
        text = "".join([chunk.content for chunk in block])
        if text:
            await response.write(text.encode())
        block = await anext(chunks, None)
    return b""  # all written: nothing left to end the body with
