"""`create_app(gateway)`: the HTTP routes over a built gateway, and one error handler."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import msgspec
from aiohttp import web
from aiohttp.typedefs import Middleware

from .admission import admission, allow_origin
from .anthropic_events import error_of, speaks_anthropic
from .api_anthropic import add_routes as add_anthropic_routes
from .api_chat import chat
from .api_embeddings import add_routes as add_embeddings_routes
from .api_openai import add_routes
from .api_responses import add_routes as add_responses_routes
from .connections import CONNECTION, ClientConnections
from .dashboard import PAGES
from .dashboard import add_routes as add_dashboard_routes
from .errors import (
    GatewayError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    ShuttingDown,
)
from .gateway import GATEWAY, Gateway
from .keys import PUBLIC, require_key
from .logs import AccessLog
from .metrics import Metrics
from .metrics import add_routes as add_metrics_routes
from .openapi import describe
from .outcomes import Observer, Trace
from .usage import report

log = logging.getLogger("ai_api")

OPENAPI = web.AppKey("openapi", bytes)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(gateway: Gateway, connections: ClientConnections | None = None) -> web.Application:
    """The gateway's HTTP API as an aiohttp application (see `gateway.build_gateway`), told
    when each request begins and ends if `connections` bounds its clients."""
    settings = gateway.settings
    middlewares: list[Middleware] = [
        _front(admission(settings), connections, gateway.observers, gateway.rationing.clock)
    ]
    if settings.gateway_keys:
        public = PUBLIC | PAGES | ({"/metrics"} if settings.metrics_public else set())
        middlewares.append(require_key(settings.gateway_keys, public))
    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=middlewares)
    app[GATEWAY] = gateway
    app[OPENAPI] = msgspec.json.encode(describe(keys=bool(settings.gateway_keys)))
    if settings.cors_origins:
        app.on_response_prepare.append(allow_origin(settings))
    app.router.add_post("/chat", chat)
    app.router.add_get("/health", health)
    app.router.add_get("/usage", usage)
    app.router.add_get("/openapi.json", openapi)
    counts = Metrics(settings.metrics_dir)
    gateway.observers.extend([counts.observe, AccessLog()])
    add_metrics_routes(app, counts)
    add_dashboard_routes(app)
    add_routes(app)
    add_anthropic_routes(app)
    add_embeddings_routes(app)
    add_responses_routes(app)
    return app


async def health(request: web.Request) -> web.Response:
    """`GET /health`: 200 and the active providers."""
    gateway = request.app[GATEWAY]
    return web.json_response(
        {
            "status": "ok",
            "demo": gateway.settings.demo,
            "providers": [{"name": p.name, "model": p.model} for p in gateway.settings.providers],
        }
    )


async def usage(request: web.Request) -> web.Response:
    """`GET /usage[?days=N]`: spending per day, headroom per budget, health per member."""
    gateway = request.app[GATEWAY]
    raw = request.query.get("days", "7")
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 366:
        raise InvalidRequest("`days` must be a whole number from 1 to 366.", param="days")
    data = await report(
        gateway.rationing, gateway.router.deployments(), int(raw), gateway.catalogue.gone
    )
    return web.json_response(data)


async def openapi(request: web.Request) -> web.Response:
    """`GET /openapi.json`: this API as an OpenAPI 3.1 document (`ai_api.openapi`)."""
    return web.Response(body=request.app[OPENAPI], content_type="application/json")


def error_response(error: GatewayError, request: web.Request | None = None) -> web.Response:
    """The JSON error body and status for `error`, in the shape of the API `request` speaks
    (Anthropic's for `/v1/messages`, and for `/v1/models` with `anthropic-version`; else
    OpenAI's)."""
    if request is not None and speaks_anthropic(
        request.path, request.headers.get("anthropic-version")
    ):
        status, body = error_of(error)
        return web.json_response(body, status=status, headers=error.headers)
    return web.json_response(error.body(), status=error.status, headers=error.headers)


def _front(
    admit: Callable[[web.Request], web.StreamResponse | None],
    connections: ClientConnections | None,
    observers: list[Observer],
    clock: Callable[[], float],
) -> Middleware:
    """The one outer middleware (each layer costs every request): it tells the connection a
    request began (in which task: a drain may cut it short) and ended, admits it
    (`ai_api.admission`), answers errors as JSON, and tells `observers` what became of it
    (`ai_api.outcomes`)."""

    async def answer(request: web.Request, handler: Handler, trace: Trace) -> web.StreamResponse:
        try:
            early = admit(request)  # a response is a mapping, falsy when empty: test for None
            response = early if early is not None else await handler(request)
            if trace.keeps:  # before a whole body is sent: the next request finds it kept
                await trace.settle(response.status)
            return response
        except GatewayError as exc:
            trace.error = exc.code
            return error_response(exc, request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            error = _from_http_exception(request, exc)
            trace.error = error.code
            return error_response(error, request)
        except Exception:
            log.exception("unexpected error on %s %s", request.method, request.path)
            error = GatewayError("Internal error; the server log has details.")
            trace.error = error.code
            return error_response(error, request)

    async def traced(request: web.Request, handler: Handler) -> web.StreamResponse:
        trace = Trace(clock())
        end = trace.begin()
        status = 499  # unless an answer is made: the client left, or the drain cut it short
        try:
            response = await answer(request, handler, trace)
            status = response.status
            return response
        finally:
            end()
            record = trace.record(request.method, request.rel_url.raw_path, status, clock())
            for observe in observers:
                try:
                    observe(record, trace.ended)
                except Exception:
                    log.exception("an observer of requests failed")

    @web.middleware
    async def front(request: web.Request, handler: Handler) -> web.StreamResponse:
        connection = connections.of(request) if connections is not None else None
        if connection is None:
            return await traced(request, handler)
        connection.request_began(asyncio.current_task())
        request[CONNECTION] = connection
        try:
            response = await traced(request, handler)
        except asyncio.CancelledError:
            if not connection.took_cut():
                raise
            response = _cut_short(request)
        finally:
            connection.request_ended()
        if connection.draining and not response.prepared:
            response.force_close()
        return response

    return front


def _cut_short(request: web.Request) -> web.StreamResponse:
    """The answer to a request the drain cut short before its answer began: a 503 that says
    to try again (elsewhere: this instance is stopping). One whose answer began and did not
    end it in its own shape (`answers.stream` does) is dropped: never a truncated answer that
    looks whole."""
    if request.writer.output_size > 0:
        if request.transport is not None:
            request.transport.abort()
        raise asyncio.CancelledError
    return error_response(
        ShuttingDown(
            "The gateway is stopping and could not answer in time; try again.",
            headers={"Retry-After": "1"},
        ),
        request,
    )


def _from_http_exception(request: web.Request, exc: web.HTTPException) -> GatewayError:
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        return MethodNotAllowed(
            f"{request.method} is not allowed on {request.path}; use {allowed}.",
            headers={"Allow": allowed},
        )
    if isinstance(exc, web.HTTPNotFound):
        return NotFound(f"No such endpoint: {request.method} {request.path}.")
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return PayloadTooLarge("The request body is over the configured limit.")
    error = GatewayError(exc.reason)
    error.status = exc.status
    return error
