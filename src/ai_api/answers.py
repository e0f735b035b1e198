"""What every API does to answer over HTTP: read the body within its limit, name who answered,
and stream an answer to its end: its last bytes, an error in the API's own shape, or nothing
when the client has left.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from .admission import require_json
from .attempts import Opened
from .connections import CONNECTION
from .errors import GatewayError, PayloadTooLarge, RequestTimeout, ShuttingDown, UpstreamError
from .gateway import GATEWAY

log = logging.getLogger("ai_api.answers")

Body = Callable[[web.StreamResponse], Awaitable[bytes]]
"""Writes the answer as it comes; returns its last bytes, to end the body with in one write."""
Failure = Callable[[GatewayError], bytes | None]
"""The API's in-band error for a failure after the first byte; None: abort the connection
(the client sees an incomplete transfer, never a truncated answer that looks whole)."""


async def read_body(request: web.Request) -> bytes:
    """The raw JSON body: `UnsupportedMediaType` unless declared JSON, `PayloadTooLarge` past
    the configured limit, `RequestTimeout` when it takes longer than the body timeout."""
    require_json(request)
    settings = request.app[GATEWAY].settings
    try:
        if request.content.is_eof():  # the whole body is in (the usual case): no timer needed
            return await request.read()
        async with asyncio.timeout(settings.body_timeout):
            return await request.read()
    except TimeoutError as exc:
        raise RequestTimeout(
            f"The request body did not arrive within {settings.body_timeout:g} s"
            " (AI_API_BODY_TIMEOUT)."
        ) from exc
    except web.HTTPRequestEntityTooLarge as exc:
        raise PayloadTooLarge(
            f"The request body is over the limit of {request.app[GATEWAY].settings.max_body_bytes}"
            " bytes (AI_API_MAX_BODY_BYTES)."
        ) from exc


def answered_by(opened: Opened) -> dict[str, str]:
    """The headers that say who answered, after how many attempts."""
    headers = {
        "X-AI-API-Provider": opened.deployment.name,
        "X-AI-API-Model": opened.deployment.model,
        "X-AI-API-Attempts": str(opened.attempts),
    }
    if opened.cache is not None:
        headers["X-AI-API-Cache"] = opened.cache
    return headers


async def stream(
    request: web.Request, opened: Opened, content_type: str, body: Body, failure: Failure
) -> web.StreamResponse:
    """Stream `opened` with `body`; a failure mid-answer ends it as `failure` says, and so
    does the end of a drain's grace (`ShuttingDown`)."""
    response = web.StreamResponse(
        headers={
            "Content-Type": content_type,
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
            **answered_by(opened),
        }
    )
    connection = request.get(CONNECTION)
    if connection is not None and connection.draining:
        response.force_close()
    name = opened.deployment.name
    ending = False
    try:
        try:
            await response.prepare(request)
            end = await body(response)
        except UpstreamError as exc:
            log.warning("%s failed mid-stream: %s", name, exc.message)
            end_or_none = failure(exc)
            if end_or_none is None:
                return _abort(request, response)
            end = end_or_none
        except ConnectionResetError:  # the client left: neither our failure nor the provider's
            log.debug("client went away; upstream request to %s cancelled", name)
            return response
        ending = True
        await response.write_eof(end)  # the last bytes and the end of the body in one write
    except asyncio.CancelledError:
        if connection is None or not response.prepared or not connection.took_cut():
            raise  # the client left, or nothing began: the middleware answers the cut
        if ending:  # the end is written: what is left is the client's to read
            return response
        end_or_none = failure(ShuttingDown(f"The gateway stopped before {name} finished."))
        if end_or_none is None:
            return _abort(request, response)
        await response.write_eof(end_or_none)
    return response


def _abort(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    """End the connection so that the client sees an incomplete transfer."""
    if request.transport is not None:
        request.transport.abort()
    return response
