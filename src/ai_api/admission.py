"""Which requests get in, so that no web page can spend the providers' quota: a `Host` the
gateway serves (no DNS rebinding), no `Origin` but the allowed ones (`cors_origins`), JSON
bodies only as `application/json` (a cross-origin form cannot send it); and the CORS answers
for the allowed origins. The allowed sets are built once, at app creation.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp import web

from .errors import CrossOrigin, UnknownHost, UnsupportedMediaType
from .settings import Settings

Prepare = Callable[[web.Request, web.StreamResponse], Awaitable[None]]

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
EVERY_ADDRESS = ("", "0.0.0.0", "::")
PREFLIGHT_MAX_AGE = "600"
"""Seconds a browser may keep a preflight's answer (Chrome caps it at 7200)."""
_ACCEPTED_HOSTS = 64
"""`Host` values remembered as served (a client cannot grow the set past it)."""
EXPOSED = "X-AI-API-Provider, X-AI-API-Model, X-AI-API-Attempts, Retry-After"


def host_name(value: str) -> str:
    """A `Host` header (or a configured host) without its port, lower case: `[::1]:3000` is
    `[::1]`, `LocalHost.:80` is `localhost`, a bare IPv6 address gets its brackets."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[: value.find("]") + 1]
    if value.count(":") > 1:
        return f"[{value}]"
    return value.partition(":")[0].rstrip(".")


def served_hosts(settings: Settings) -> frozenset[str] | None:
    """The host names a request may name; None: any (`*` listed, or bound to every address
    with none listed)."""
    if "*" in settings.allowed_hosts:
        return None
    if not settings.allowed_hosts and settings.host in EVERY_ADDRESS:
        return None
    names = [*LOOPBACK_NAMES, *settings.allowed_hosts]
    if settings.host not in EVERY_ADDRESS:
        names.append(settings.host)
    return frozenset(host_name(name) for name in names)


def normal_origin(origin: str) -> str:
    """An origin as browsers write it: lower case, no trailing slash."""
    return origin.strip().rstrip("/").lower()


def origin_problem(origin: str) -> str | None:
    """What is wrong with a configured origin (None: nothing)."""
    parts = urlsplit(normal_origin(origin))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "is not an origin like https://app.example or http://localhost:5173"
    if parts.path or parts.query or parts.fragment:
        return "is not an origin: an origin has no path (https://app.example)"
    return None


def require_json(request: web.Request) -> None:
    """`UnsupportedMediaType` unless the body is declared `application/json`."""
    media = request.headers.get("Content-Type", "").partition(";")[0].strip().lower()
    if media != "application/json":
        raise UnsupportedMediaType(
            "Send the body as JSON with Content-Type: application/json"
            f" (got {media[:80] or 'no Content-Type'})."
        )


def admission(settings: Settings) -> Callable[[web.Request], web.StreamResponse | None]:
    """A check run on every request before its handler: it raises `UnknownHost` (421) and
    `CrossOrigin` (403), answers the allowed origins' preflights, and returns None to go on."""
    hosts = served_hosts(settings)
    origins = frozenset(normal_origin(origin) for origin in settings.cors_origins)

    accepted: set[str] = set()  # `Host` values as sent that passed: a lookup, not a parse

    def admit(request: web.Request) -> web.StreamResponse | None:
        headers = request.headers
        if hosts is not None:
            raw = headers.get("Host", "")
            if raw not in accepted:
                if host_name(raw) not in hosts:
                    raise UnknownHost(
                        f"This gateway does not serve the host {raw[:100]!r};"
                        " add it to allowed_hosts (AI_API_ALLOWED_HOSTS)."
                    )
                if len(accepted) < _ACCEPTED_HOSTS:
                    accepted.add(raw)
        origin = headers.get("Origin")
        if origin is None:
            return None
        if origin not in origins:
            raise CrossOrigin(
                f"Requests from web pages of {origin[:100]!r} are not allowed; add the"
                " origin to cors_origins (AI_API_CORS_ORIGINS)."
            )
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in headers:
            return _preflight(request, origin)
        return None

    return admit


def allow_origin(settings: Settings) -> Prepare:
    """An `on_response_prepare` hook: every answer to an allowed origin (streams too) says so."""
    origins = frozenset(normal_origin(origin) for origin in settings.cors_origins)

    async def allow(request: web.Request, response: web.StreamResponse) -> None:
        origin = request.headers.get("Origin")
        if origin is not None and origin in origins:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = EXPOSED
            response.headers["Vary"] = "Origin"

    return allow


def _preflight(request: web.Request, origin: str) -> web.StreamResponse:
    exc = request.match_info.http_exception
    if not isinstance(exc, web.HTTPMethodNotAllowed):
        raise exc or web.HTTPNotFound()
    asked = request.headers.get("Access-Control-Request-Headers", "")
    return web.Response(
        status=204,
        headers={
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": ", ".join(sorted(exc.allowed_methods | {"OPTIONS"})),
            # The SDKs' own headers (x-stainless-*...) come on top of these two.
            "Access-Control-Allow-Headers": ", ".join(
                ["Authorization", "Content-Type", *([asked] if asked.strip() else [])]
            ),
            "Access-Control-Max-Age": PREFLIGHT_MAX_AGE,
            "Vary": "Origin",
        },
    )
