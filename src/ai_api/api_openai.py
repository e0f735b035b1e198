"""The OpenAI-compatible API: `/v1/chat/completions`, `/v1/models` and `/v1/models/{id}` (also
under `/openai`).

Streams are bare `data:` events ending with `data: [DONE]` (the Groq and Cerebras SDKs break on
named events). A failure after the first byte ends the stream with a `data:` payload holding
an `error` object and no `[DONE]`, which every official SDK raises as an error.
"""

from __future__ import annotations

import time
from contextlib import aclosing
from typing import Any

import msgspec
from aiohttp import web

from .answers import answered_by, read_body, stream
from .anthropic_events import anthropic_model
from .api_anthropic import models as anthropic_models
from .attempts import Opened
from .cache import HEADER as CACHE_HEADER
from .errors import GatewayError, NotFound
from .gateway import GATEWAY
from .keys import check_model, visible
from .params import options_of
from .routing import DEFAULT_ROUTE, Route
from .schemas import Chunk, CompletionBody, ToolCallDelta, Usage, decode_body
from .sse import encode_data
from .tokens import estimated_usage

_encode = msgspec.json.encode
_DONE = b"data: [DONE]\n\n"
# The Cerebras SDK tells chunks from completions by this field, so it is always present.
FINGERPRINT = "fp_ai_api"


def add_routes(app: web.Application) -> None:
    """Mount the API at `/v1` and at `/openai/v1` (the Groq SDK's path)."""
    for prefix in ("/v1", "/openai/v1"):
        app.router.add_post(f"{prefix}/chat/completions", chat_completions)
        app.router.add_get(f"{prefix}/models", models)
        # A model id may hold slashes (`groq/openai/gpt-oss-120b`).
        app.router.add_get(f"{prefix}/models/{{model:.+}}", model)


async def models(request: web.Request) -> web.Response:
    """Every routable model name, in the OpenAI list format, the embedding models' too
    (Anthropic's, chat models only, at `/v1/models` for a request with `anthropic-version`)."""
    if request.path == "/v1/models" and "anthropic-version" in request.headers:
        chat = _answerable(request, request.app[GATEWAY].router.routes)
        names = sorted(visible(request, {n: r.name for n, r in chat.items()}), key=_order)
        return anthropic_models(request, names)
    routes = _answerable(request, _catalogue(request))
    names = sorted(visible(request, {n: r.name for n, r in routes.items()}), key=_order)
    data = [
        {"id": name, "object": "model", "created": 0, "owned_by": _owner(name, routes[name])}
        for name in names
    ]
    return web.json_response({"object": "list", "data": data})


async def model(request: web.Request) -> web.Response:
    """One routable model (the openai SDK's `models.retrieve`; Anthropic's shape for a request
    with `anthropic-version`). A name the request's key may not use is a 404, as it is missing
    from the key's list; so is one that cannot answer now (`Gateway.answerable`)."""
    name = request.match_info["model"]
    anthropic = request.path.startswith("/v1/") and "anthropic-version" in request.headers
    route = (request.app[GATEWAY].router.routes if anthropic else _catalogue(request)).get(name)
    if route is None or not visible(request, {name: route.name}):
        raise NotFound(f"The model `{name}` does not exist.", code="model_not_found", param="model")
    if not request.app[GATEWAY].answerable(route):
        raise NotFound(
            f"The model `{name}` cannot answer now: its provider no longer lists it.",
            code="model_not_found",
            param="model",
        )
    if anthropic:
        return web.json_response(anthropic_model(name))
    entry = {"id": name, "object": "model", "created": 0, "owned_by": _owner(name, route)}
    return web.json_response(entry)


def _catalogue(request: web.Request) -> dict[str, Route]:
    """The chat routes and the embedding routes by name (a chat name wins a clash)."""
    gateway = request.app[GATEWAY]
    return {**gateway.embeddings.routes, **gateway.router.routes}


def _answerable(request: web.Request, routes: dict[str, Route]) -> dict[str, Route]:
    """The routes with a member that can answer now (`Gateway.answerable`)."""
    gateway = request.app[GATEWAY]
    return {name: route for name, route in routes.items() if gateway.answerable(route)}


def _order(name: str) -> tuple[int, str]:
    return (0 if name == "auto" else 2 if "/" in name else 1, name)


def _owner(name: str, route: Route) -> str:
    owners = {d.name for d in route.deployments}
    return owners.pop() if len(owners) == 1 and "/" in name else "ai-api"


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """A chat completion from the route named by `model`, streamed or whole."""
    body = decode_body(await read_body(request), CompletionBody)
    options = options_of(body)
    gateway = request.app[GATEWAY]
    check_model(request, body.model or DEFAULT_ROUTE, gateway.router.resolve(body.model))
    route = gateway.router.route(body.model)
    cap = body.max_completion_tokens or body.max_tokens
    opened = await gateway.open(
        route,
        body.messages,
        max_tokens=cap,
        options=options,
        whole=not body.stream,
        cache=request.headers.get(CACHE_HEADER),
    )
    async with aclosing(opened.chunks):
        if body.stream:
            return await _stream(request, body, opened)
        return await _complete(_completion_id(request), body, opened)


def _completion_id(request: web.Request) -> str:
    return f"chatcmpl-{request.app[GATEWAY].ids.next()}"


async def _stream(request: web.Request, body: CompletionBody, opened: Opened) -> web.StreamResponse:
    head = {
        "id": _completion_id(request),
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": opened.deployment.model,
        "system_fingerprint": FINGERPRINT,
    }
    # Every chunk shares its envelope: encode it once, splice each delta in.
    envelope = _encode({**head, "choices": [{"index": 0, "delta": 0}]})
    prefix = envelope[: envelope.rindex(b"0}]}")]
    held: list[bytes] = []

    async def answer(response: web.StreamResponse) -> bytes:
        usage, chars = await _relay(response, opened, prefix, held)
        if body.stream_options is not None and body.stream_options.include_usage:
            usage = usage or estimated_usage(body.messages, chars)
            held.append(encode_data({**head, "choices": [], "usage": usage}))
        return b"".join([*held, _DONE])

    def failure(exc: GatewayError) -> bytes:
        # What was held past the finish reason goes out before the error.
        return b"".join([*held, encode_data(exc.body())])

    return await stream(request, opened, "text/event-stream", answer, failure)


def _event(prefix: bytes, delta: bytes, finish_reason: str | None) -> bytes:
    finish = b',"logprobs":null,"finish_reason":' + _encode(finish_reason)
    return b"data: " + prefix + delta + finish + b"}]}\n\n"


async def _relay(
    response: web.StreamResponse, opened: Opened, prefix: bytes, held: list[bytes]
) -> tuple[Usage | None, int]:
    """Write each chunk as an OpenAI chunk, after the role chunk (in the same write as the
    first); return the upstream usage and characters sent.

    The chunks of one upstream block go out in one write. From the finish reason on, the
    answer is complete and what is left of it stays in `held`, for the caller to end the
    stream with in one write (also when the upstream fails after it).
    """
    usage = None
    chars = 0
    held.append(_event(prefix, b'{"role":"assistant","content":""}', None))
    block = opened.first
    finished = False
    while block is not None:
        for chunk in block:
            delta = _delta(chunk)
            if delta or chunk.finish_reason:
                chars += len(chunk.content) + len(chunk.reasoning)
                held.append(_event(prefix, _encode(delta), chunk.finish_reason))
            usage = chunk.usage or usage
            finished = finished or chunk.finish_reason is not None
        if held and not finished:
            await response.write(b"".join(held))
            held.clear()
        block = await anext(opened.chunks, None)
    return usage, chars


def _delta(chunk: Chunk) -> dict[str, Any]:
    delta: dict[str, Any] = {}
    if chunk.content:
        delta["content"] = chunk.content
    if chunk.reasoning:
        delta["reasoning"] = chunk.reasoning
    if chunk.tool_calls:
        delta["tool_calls"] = chunk.tool_calls
    return delta


async def _complete(completion_id: str, body: CompletionBody, opened: Opened) -> web.Response:
    content: list[str] = []
    reasoning: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    finish_reason = None
    usage = None
    block = opened.first
    while block is not None:
        for chunk in block:
            content.append(chunk.content)
            reasoning.append(chunk.reasoning)
            for call in chunk.tool_calls:
                _merge_call(calls, call)
            finish_reason = chunk.finish_reason or finish_reason
            usage = chunk.usage or usage
        block = await anext(opened.chunks, None)
    text = "".join(content)
    message: dict[str, Any] = {"role": "assistant", "content": text or (None if calls else "")}
    if any(reasoning):
        message["reasoning"] = "".join(reasoning)
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    result = {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": opened.deployment.model,
        "system_fingerprint": FINGERPRINT,
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
        ],
        "usage": usage or estimated_usage(body.messages, len(text) + sum(map(len, reasoning))),
    }
    return web.Response(
        body=_encode(result), content_type="application/json", headers=answered_by(opened)
    )


def _merge_call(calls: dict[int, dict[str, Any]], delta: ToolCallDelta) -> None:
    call = calls.setdefault(
        delta.index, {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
    )
    if delta.id:
        call["id"] = delta.id
    if delta.type:
        call["type"] = delta.type
    if delta.function is not None:
        function = call["function"]
        function["name"] += delta.function.name or ""
        function["arguments"] += delta.function.arguments or ""
