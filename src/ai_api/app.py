"""`create_app(settings)`: routes, one error handler, and the lifespan of shared resources."""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Middleware

from .api_chat import chat
from .api_openai import add_routes
from .attempts import Bounds
from .errors import (
    GatewayError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
)
from .http_client import HTTPClient
from .providers import OpenAICompatible, Provider
from .rationing import Rationing
from .routing import Router, build_router
from .settings import Secret, Settings
from .state import GATEWAY, Gateway
from .store import MemoryLedger, SQLiteLedger
from .store.state import MemoryState, SharedState
from .usage import report

log = logging.getLogger("ai_api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(settings: Settings, *, clock: Callable[[], float] = time.time) -> web.Application:
    """The gateway as an aiohttp application; providers connect and the usage ledger opens
    when it starts. `clock` drives every budget, cooldown and ledger time."""
    middlewares: list[Middleware] = [_errors_as_json]
    if settings.gateway_keys:
        middlewares.append(_require_key(settings.gateway_keys))
    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=middlewares)
    app[GATEWAY] = Gateway(
        settings=settings,
        router=Router({}),
        rationing=Rationing(MemoryLedger(), clock=clock),
        bounds=Bounds(
            max_attempts=settings.max_attempts,
            deadline=settings.deadline,
            first_token_timeout=settings.first_token_timeout,
        ),
    )
    app.cleanup_ctx.append(_lifespan)
    app.router.add_post("/chat", chat)
    app.router.add_get("/health", health)
    app.router.add_get("/usage", usage)
    add_routes(app)
    return app


async def _lifespan(app: web.Application) -> AsyncIterator[None]:
    gateway = app[GATEWAY]
    settings = gateway.settings
    rationing = gateway.rationing
    if settings.ledger:
        rationing.ledger = await SQLiteLedger(Path(settings.ledger)).open()
    rationing.state = await open_state(settings)
    client = HTTPClient(connect_timeout=settings.connect_timeout)
    providers = make_providers(settings, client, rationing.clock)
    gateway.router = build_router(settings, providers)
    replayed = await rationing.rebuild(gateway.router.deployments())
    if replayed:
        log.info("usage ledger: replayed %d attempts of the last day into the budgets", replayed)
    try:
        yield
    finally:
        await client.close()
        await rationing.drain()
        await rationing.state.close()
        await rationing.ledger.close()


async def open_state(settings: Settings) -> SharedState:
    """Where turns, budgets and health live: Redis across machines, a SQLite file across the
    worker processes of one machine, else this process's memory."""
    if settings.redis_url is not None:
        from .store.redis_state import RedisState

        state: SharedState = await RedisState(
            settings.redis_url.reveal(), fallback=MemoryState()
        ).open()
        log.info("shared state: Redis")
        return state
    if settings.state_file:
        from .store.sqlite_state import SQLiteState

        log.info("shared state: %s", settings.state_file)
        return await SQLiteState(Path(settings.state_file)).open()
    return MemoryState()


def make_providers(
    settings: Settings,
    client: HTTPClient,
    clock: Callable[[], float],
) -> dict[str, Provider]:
    """One provider object per configured provider, sharing one HTTP client."""
    return {
        p.name: OpenAICompatible(
            p.spec,
            name=p.name,
            api_key=p.api_key.reveal(),
            base_url=p.base_url,
            client=client,
            read_timeout=settings.read_timeout,
            total_timeout=settings.total_timeout,
            clock=clock,
        )
        for p in settings.providers
    }


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
    if not raw.isdigit() or not 1 <= int(raw) <= 366:
        raise InvalidRequest("`days` must be a whole number from 1 to 366.", param="days")
    data = await report(gateway.rationing, gateway.router.deployments(), int(raw))
    return web.json_response(data)


def error_response(error: GatewayError) -> web.Response:
    """The JSON error body and status for `error`."""
    return web.json_response(error.body(), status=error.status, headers=error.headers)


def _require_key(keys: tuple[Secret, ...]) -> Middleware:
    """Every path but `/health` needs `Authorization: Bearer <one of keys>`."""
    accepted = [key.reveal().encode() for key in keys]

    @web.middleware
    async def require_key(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path != "/health":
            scheme, _, token = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthorized("This gateway needs a key: send Authorization: Bearer <key>.")
            candidate = token.strip().encode()
            # Compare with every key, in constant time, whatever matches first.
            matched = False
            for key in accepted:
                matched |= hmac.compare_digest(key, candidate)
            if not matched:
                raise Unauthorized("The gateway key is not valid.")
        return await handler(request)

    return require_key


@web.middleware
async def _errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except GatewayError as exc:
        return error_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(_from_http_exception(request, exc))
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return error_response(GatewayError("Internal error; the server log has details."))


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
