"""`GET /dashboard`: one page of what is left today, who rests, what just happened; and the
JSON it reads, which other tools may read too.

The page and its two files (`static/`) hold no data and are served without a key; the page
asks for one when the gateway has keys and keeps it for the browser's session. The data
comes from the shared state and the ledger, never from one process's memory, so any worker
or instance shows the same:

- `GET /usage` (`ai_api.usage`): headroom per budget, health per member, per-day totals;
- `GET /usage/hours?hours=24`: hourly requests, errors and tokens per provider;
- `GET /usage/requests?limit=50`: the last requests, oldest first;
- `GET /usage/requests/stream`: Server-Sent Events: `request` for each request as it ends (the
  ledger read once a second), `usage` (the `/usage` report of today) every few seconds.
"""

from __future__ import annotations

import asyncio
from importlib.resources import files

import msgspec
from aiohttp import web

from .connections import CONNECTION
from .errors import InvalidRequest
from .gateway import GATEWAY, Gateway
from .usage import report

PAGES = frozenset({"/", "/dashboard", "/dashboard/app.js", "/dashboard/app.css"})
"""The paths served without a key: the page and its files (the data needs one)."""
_FILES = {"app.js": "text/javascript", "app.css": "text/css", "index.html": "text/html"}
STATIC = web.AppKey("dashboard_files", dict[str, bytes])
POLL = 1.0
"""Seconds between the feed's reads of the ledger."""
USAGE_EVERY = 5.0
"""Seconds between the feed's `usage` events."""
PING_EVERY = 15.0
"""Longest silence on the feed (a comment keeps proxies from closing it)."""
_encode = msgspec.json.encode


def add_routes(app: web.Application) -> None:
    """Serve the page, its files and its data endpoints."""
    static = files("ai_api") / "static"
    app[STATIC] = {name: (static / name).read_bytes() for name in _FILES}
    app.router.add_get("/", home)
    app.router.add_get("/dashboard", page)
    for name in ("app.js", "app.css"):
        app.router.add_get(f"/dashboard/{name}", asset)
    app.router.add_get("/usage/hours", hours)
    app.router.add_get("/usage/requests", requests)
    app.router.add_get("/usage/requests/stream", stream)


async def home(request: web.Request) -> web.StreamResponse:
    """`GET /`: to the dashboard."""
    raise web.HTTPFound("/dashboard")


async def page(request: web.Request) -> web.Response:
    """`GET /dashboard`: the page."""
    return _file(request, "index.html")


async def asset(request: web.Request) -> web.Response:
    """`GET /dashboard/app.js` and `app.css`."""
    return _file(request, request.path.rsplit("/", 1)[1])


def _file(request: web.Request, name: str) -> web.Response:
    return web.Response(
        body=request.app[STATIC][name],
        content_type=_FILES[name],
        charset="utf-8",
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )


def _whole(request: web.Request, name: str, default: int, most: int) -> int:
    raw = request.query.get(name, str(default))
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= most:
        raise InvalidRequest(f"`{name}` must be a whole number from 1 to {most}.", param=name)
    return int(raw)


async def hours(request: web.Request) -> web.Response:
    """`GET /usage/hours[?hours=24]`: per UTC hour and provider, the attempts' requests,
    errors and tokens, for the last `hours` hours (1-168)."""
    count = _whole(request, "hours", 24, 168)
    rationing = request.app[GATEWAY].rationing
    now = rationing.clock()
    since = (int(now) // 3600 - count + 1) * 3600
    rows = await rationing.ledger.hours(since)
    return web.json_response(
        {
            "now": now,
            "since": since,
            "hours": [
                {
                    "hour": r.hour,
                    "provider": r.provider,
                    "requests": r.requests,
                    "errors": r.errors,
                    "prompt_tokens": r.prompt_tokens,
                    "completion_tokens": r.completion_tokens,
                }
                for r in rows
            ],
        }
    )


async def requests(request: web.Request) -> web.Response:
    """`GET /usage/requests[?limit=50]`: the last requests to the model APIs (1-500), oldest
    first, as the ledger keeps them."""
    limit = _whole(request, "limit", 50, 500)
    gateway = request.app[GATEWAY]
    since = gateway.rationing.clock() - 7 * 86400
    found = await gateway.rationing.ledger.requests_since(since, limit)
    body = b'{"requests":' + _encode(found) + b"}"
    return web.Response(body=body, content_type="application/json")


def _lookback(gateway: Gateway) -> float:
    """How far back the feed looks for requests that ended since its last read: a request is
    kept under the time it began, and may last its deadline and total timeout."""
    s = gateway.settings
    return s.deadline + s.total_timeout + 60.0


async def stream(request: web.Request) -> web.StreamResponse:
    """`GET /usage/requests/stream`: `request` events as requests end, `usage` events every
    few seconds; it ends when the gateway drains (a browser's EventSource, or the page's own
    reader, comes back)."""
    gateway = request.app[GATEWAY]
    clock = gateway.rationing.clock
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    connection = request.get(CONNECTION)
    sent: dict[tuple[float, str | None, str], float] = {}
    last_usage = last_write = float("-inf")
    try:
        while connection is None or not connection.draining:
            last_usage, last_write = await _tell(
                response, gateway, sent, last_usage, last_write, clock()
            )
            await asyncio.sleep(POLL)
        await response.write_eof()
    except ConnectionError:  # the page was closed
        pass
    return response


async def _tell(
    response: web.StreamResponse,
    gateway: Gateway,
    sent: dict[tuple[float, str | None, str], float],
    last_usage: float,
    last_write: float,
    now: float,
) -> tuple[float, float]:
    """One turn of the feed: the requests not yet `sent` (every one of the lookback at the
    first turn: the page sorts them out), a `usage` event when one is due, else a ping when
    the feed was long silent; when the `usage` event and the last write were."""
    rationing = gateway.rationing
    since = now - _lookback(gateway)
    found = await rationing.ledger.requests_since(since, 500)
    frames = []
    for record in found:
        key = (record.at, record.request_id, record.path)
        if key not in sent:
            sent[key] = record.at
            frames.append(b"event: request\ndata: " + _encode(record) + b"\n\n")
    for key in [k for k, at in sent.items() if at < since]:
        del sent[key]
    if now - last_usage >= USAGE_EVERY:
        data = await report(rationing, gateway.router.deployments(), 1, gateway.catalogue.gone)
        frames.append(b"event: usage\ndata: " + _encode(data) + b"\n\n")
        last_usage = now
    if not frames and now - last_write >= PING_EVERY:
        frames.append(b": ping\n\n")
    if frames:
        await response.write(b"".join(frames))
        last_write = now
    return last_usage, last_write
