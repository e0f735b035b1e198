"""`POST /v1/embeddings` (also under `/openai/v1`): OpenAI's embeddings API over the providers
that offer embeddings (see `embeddings`)."""

from __future__ import annotations

import msgspec
from aiohttp import web

from .answers import read_body
from .embeddings import embed
from .embeddings_wire import client_answer, parse_request
from .gateway import GATEWAY
from .keys import check_model
from .outcomes import routed


def add_routes(app: web.Application) -> None:
    """Mount the endpoint at `/v1` and `/openai/v1`."""
    for prefix in ("/v1", "/openai/v1"):
        app.router.add_post(f"{prefix}/embeddings", embeddings)


async def embeddings(request: web.Request) -> web.Response:
    """The embeddings of `input` from the route named by `model`."""
    ask = parse_request(await read_body(request))
    gateway = request.app[GATEWAY]
    check_model(request, ask.model)
    route = gateway.embeddings.route(ask.model)
    request_id = gateway.ids.next()
    routed(route.name, request_id)
    done = await embed(route, ask, request_id, gateway.rationing, gateway.bounds)
    body = client_answer(ask, done.deployment.model, done.vectors, done.usage)
    headers = {
        "X-AI-API-Provider": done.deployment.name,
        "X-AI-API-Model": done.deployment.model,
        "X-AI-API-Attempts": str(done.attempts),
    }
    return web.Response(
        body=msgspec.json.encode(body), content_type="application/json", headers=headers
    )
