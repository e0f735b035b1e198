"""Gateway keys: who may call the gateway, and for what.

A key from `AI_API_KEYS` or `[server] gateway_keys` may do everything. A named key of the
config file (`[keys.NAME]`) may be held to some scopes (`chat`: ask for answers; `models`: list
them; `usage`: read what everyone spent) and to some model names, so that a key handed to a CI
job or a teammate cannot read the spending or reach the models saved for something else.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web
from aiohttp.typedefs import Middleware

from .errors import NotPermitted, Unauthorized
from .settings import SCOPES, GatewayKey

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

PUBLIC = frozenset({"/health", "/openapi.json"})
"""Paths served without a key: they hold nothing secret and spend nothing."""

_SCOPE_OF = {
    "/chat": "chat",
    "/v1/chat/completions": "chat",
    "/openai/v1/chat/completions": "chat",
    "/v1/messages": "chat",
    "/v1/messages/count_tokens": "chat",
    "/v1/embeddings": "chat",
    "/openai/v1/embeddings": "chat",
    "/v1/responses": "chat",
    "/v1/models": "models",
    "/openai/v1/models": "models",
    "/usage": "usage",
    "/metrics": "usage",
}
"""The scope each path needs; a path not named here (nor under `_SCOPE_UNDER`) needs a key
of every scope."""
_SCOPE_UNDER = {"/v1/models/": "models", "/openai/v1/models/": "models", "/usage/": "usage"}
"""The scope of the paths under each prefix (one model, `/v1/models/{id}`)."""


def scope_of(path: str) -> str | None:
    """The scope `path` needs; None: a path of no scope (it needs them all)."""
    scope = _SCOPE_OF.get(path)
    if scope is None:
        scope = next((s for prefix, s in _SCOPE_UNDER.items() if path.startswith(prefix)), None)
    return scope


KEY = web.RequestKey("gateway_key", GatewayKey)
"""Where a request keeps the `GatewayKey` it came with, when that key is held to some models."""


def require_key(keys: tuple[GatewayKey, ...], public: frozenset[str] = PUBLIC) -> Middleware:
    """Every path but the `public` ones needs a key whose scopes cover the path, sent as
    `Authorization: Bearer <key>` (the OpenAI SDKs) or `x-api-key: <key>` (the Anthropic
    SDK); when both are sent, either may hold it. The request keeps its key under `KEY`."""
    accepted = [(key.secret.reveal().encode(), key) for key in keys]

    @web.middleware
    async def require(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if path in public:
            return await handler(request)
        candidates = _presented(request)
        if not candidates:
            raise Unauthorized(
                "This gateway needs a key: send Authorization: Bearer <key> (or x-api-key)."
            )
        # Compare with every key, in constant time, whichever matches.
        matched = None
        for candidate in candidates:
            for secret, key in accepted:
                if hmac.compare_digest(secret, candidate) and matched is None:
                    matched = key
        if matched is None:
            raise Unauthorized("The gateway key is not valid.")
        scope = scope_of(path)
        if scope is not None:
            allowed = scope in matched.scopes
        else:  # a path of no scope needs them all (but one that is not served is a 404)
            allowed = matched.scopes == SCOPES or request.match_info.http_exception is not None
        if not allowed:
            raise NotPermitted(
                f"The gateway key {matched.name!r} may not use {path}"
                f" (its scopes: {', '.join(sorted(matched.scopes)) or 'none'})."
            )
        if matched.models is not None:
            request[KEY] = matched
        return await handler(request)

    return require


def _presented(request: web.Request) -> list[bytes]:
    """The keys a request presents: a Bearer token, then an `x-api-key`."""
    keys = []
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        keys.append(token.strip().encode())
    api_key = request.headers.get("x-api-key", "").strip()
    if api_key:
        keys.append(api_key.encode())
    return keys


def check_model(request: web.Request, model: str, target: str | None = None) -> None:
    """Refuse `model` if the request's key may not ask for it, nor for the `target` it is an
    alias of."""
    key = request.get(KEY)
    if key is not None and not key.may_use(model) and not (target and key.may_use(target)):
        raise NotPermitted(
            f"The gateway key {key.name!r} may not use the model {model!r}.", param="model"
        )


def visible(request: web.Request, models: Mapping[str, str]) -> list[str]:
    """The model names the request's key may ask for, of `models` (each name -> the name it
    stands for: itself, or an alias's target)."""
    key = request.get(KEY)
    if key is None or key.models is None:
        return list(models)
    return [name for name, target in models.items() if key.may_use(name) or key.may_use(target)]
