"""`POST /chat`: the original bun-ai-api contract, made proper.

Events: `data: {"content": "..."}` per text delta, then `event: done` with provider, model,
finish reason and usage; or `event: error` if the provider fails once the stream has begun.
`?format=text` streams the bare text, as the original server did; a failure then aborts the
connection so the client sees an incomplete transfer, never a truncated answer that looks whole.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

from aiohttp import web

from .errors import InvalidRequest, PayloadTooLarge, UpstreamError
from .gateway import GATEWAY
from .routing import Deployment
from .schemas import Chunk, decode_chat_body
from .sse import encode_data, encode_event

log = logging.getLogger("ai_api.chat")

_FORMATS = {"sse": "text/event-stream", "text": "text/plain; charset=utf-8"}


async def read_body(request: web.Request) -> bytes:
    """The raw body, or `PayloadTooLarge` past the configured limit."""
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise PayloadTooLarge(
            f"The request body is over the limit of {request.app[GATEWAY].settings.max_body_bytes}"
            " bytes (AI_API_MAX_BODY_BYTES)."
        ) from exc


async def chat(request: web.Request) -> web.StreamResponse:
    """Stream one answer from the next provider in turn."""
    gateway = request.app[GATEWAY]
    fmt = request.query.get("format", "sse")
    if fmt not in _FORMATS:
        raise InvalidRequest(
            f"Unknown format {fmt!r}; use 'sse' (default) or 'text'.", param="format"
        )
    body = decode_chat_body(await read_body(request))
    messages = body.to_messages()
    opened = await gateway.open(gateway.router.route(None), messages)
    deployment, chunks = opened.deployment, opened.chunks
    async with aclosing(chunks):
        response = web.StreamResponse(
            headers={
                "Content-Type": _FORMATS[fmt],
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
                "X-AI-API-Provider": deployment.name,
                "X-AI-API-Model": deployment.model,
                "X-AI-API-Attempts": str(opened.attempts),
            }
        )
        try:
            await response.prepare(request)
            if fmt == "text":
                end = await _write_text(response, opened.first, chunks)
            else:
                end = await _write_events(
                    response, opened.first, chunks, deployment, gateway.settings.demo
                )
        except UpstreamError as exc:
            log.warning("%s failed mid-stream: %s", deployment.name, exc.message)
            if fmt == "text" and request.transport is not None:
                request.transport.abort()
                return response
            end = encode_event("error", exc.body())
        except ConnectionResetError:  # the client left: neither our failure nor the provider's
            log.debug("client went away; upstream request to %s cancelled", deployment.name)
            return response
        await response.write_eof(end)  # the last bytes and the end of the body in one write
        return response


async def _write_events(
    response: web.StreamResponse,
    first: list[Chunk] | None,
    chunks: AsyncGenerator[list[Chunk], None],
    deployment: Deployment,
    demo: bool,
) -> bytes:
    """Write each chunk's text as a `data:` event, a block in one write; return the `done`
    event, for the caller to end the body with."""
    finish_reason = None
    usage = None
    block = first
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
