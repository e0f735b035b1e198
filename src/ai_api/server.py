"""Running the app: bind, log what is served, and on SIGINT or SIGTERM drain and stop.

The drain: no new connection is taken (the listening socket closes) and idle ones close at
once; the requests in flight have `drain_grace` seconds to finish, every answer meanwhile
saying `Connection: close`; then the ones still running are ended in the API's own shape (a
stream with its in-band error, a request not answered yet with a 503) and recorded in the
ledger as `shutdown`. The ledger is flushed and the upstream connections closed before exit.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage

from .app import create_app
from .connections import CUT_MARGIN, LINGERING, ClientConnections, GuardedSite
from .demo import demo_upstreams
from .gateway import build_gateway
from .rationing import Rationing
from .settings import ConfigError, Settings

log = logging.getLogger("ai_api")


@asynccontextmanager
async def running(
    settings: Settings,
    *,
    clock: Callable[[], float] = time.time,
    sock: socket.socket | None = None,
) -> AsyncIterator[str]:
    """Serve in the background of the current event loop; yield the URL it listens on.
    `clock` drives budgets, cooldowns and the ledger (tests pass a fake one)."""
    async with AsyncExitStack() as stack:
        if settings.demo:
            settings = await stack.enter_async_context(demo_upstreams(settings))
            log.warning(
                "DEMO MODE: answers come from built-in fake providers, not from real models."
            )
        gateway = await stack.enter_async_context(build_gateway(settings, clock))
        clients = ClientConnections(asyncio.get_running_loop(), settings)
        grace = settings.drain_grace
        runner = web.AppRunner(
            create_app(gateway, clients),
            handler_cancellation=True,
            access_log=None,
            keepalive_timeout=settings.keepalive_timeout,
            lingering_time=LINGERING,
            logger=ProtocolLog(logging.getLogger("aiohttp.server")),
            # How long aiohttp waits for the handlers: past the drain's own ends.
            shutdown_timeout=grace + CUT_MARGIN + 1.0,
        )
        await runner.setup()
        site = GuardedSite(runner, clients, host=settings.host, port=settings.port, sock=sock)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        stack.push_async_callback(_drain, runner, clients, gateway.rationing, grace)
        host, port = runner.addresses[0][:2]
        url = f"http://{_bracket(host)}:{port}"
        for p in settings.providers:
            log.info("provider %s: model %s at %s", p.name, p.model, p.base_url)
        log.info("auto route, round-robin over: %s", ", ".join(p.name for p in settings.providers))
        for route in settings.routes:
            members = ", ".join(m.name for m in route.members)
            log.info("route %s (%s): %s", route.name, route.strategy, members)
        if sock is not None:
            log.info("worker %d listening on %s", os.getpid(), url)
        else:
            log.info(
                "listening on %s (POST /chat, /v1/chat/completions, /v1/messages, /v1/responses,"
                " GET /v1/models, /openapi.json;"
                " event loop: %s)",
                url,
                loop_name(asyncio.get_running_loop()),
            )
        if not settings.gateway_keys and not _loopback(settings.host):
            log.warning(
                "no gateway keys are set and %s is reachable from other machines: anyone who"
                " can connect can spend your providers' quota; set AI_API_KEYS",
                settings.host,
            )
        for problem in settings.problems:
            log.warning("configuration: %s", problem)
        yield url


class ProtocolLog(logging.LoggerAdapter[logging.Logger]):
    """aiohttp's log of its connections, with a client's malformed request (a NUL in a header,
    a line too long...) at DEBUG, as aiohttp itself logs a malformed request line: it is the
    client's error, answered 400, and at ERROR with a traceback anyone who can connect could
    fill the log."""

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__(logger, {})

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        """Log an exception: at DEBUG when a client sent a malformed request."""
        if isinstance(exc_info, BadHttpMessage):
            self.debug(msg, *args, exc_info=exc_info, **kwargs)
        else:
            super().exception(msg, *args, exc_info=exc_info, **kwargs)


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """How to make the event loop for `choice` (see `Settings.event_loop`): uvloop's, measured
    ~25 % less CPU per streamed request than asyncio's here (docs/benchmarks.md), or asyncio's."""
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise ConfigError(
                    "The event loop is set to uvloop, which is not installed: pip install uvloop,"
                    " or set AI_API_EVENT_LOOP=auto."
                ) from None
        else:
            return uvloop.new_event_loop
    return asyncio.new_event_loop


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """`uvloop` or `asyncio`: whose loop this is."""
    return type(loop).__module__.split(".")[0]


async def serve(settings: Settings, sock: socket.socket | None = None) -> None:
    """Serve until SIGINT or SIGTERM, then drain (on `sock` when a parent handed one down).
    A signal during the drain changes nothing: it ends as it would have."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in _SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    try:
        async with running(settings, sock=sock):
            await stop.wait()
    finally:
        for sig in _SIGNALS:
            loop.remove_signal_handler(sig)


_SIGNALS = (signal.SIGINT, signal.SIGTERM)


async def _drain(
    runner: web.AppRunner, clients: ClientConnections, rationing: Rationing, grace: float
) -> None:
    """Stop taking connections and let the requests in flight finish within `grace` seconds;
    then cut the ones still running short (recorded as `shutdown`), and abort the connections
    of those that could not write their end within `CUT_MARGIN` more."""
    log.info("draining: %d requests in flight, grace %g s", clients.drain(), grace)

    def cut() -> None:
        rationing.stop()
        clients.cut()

    loop = asyncio.get_running_loop()
    timers = [loop.call_later(grace, cut), loop.call_later(grace + CUT_MARGIN, clients.abort)]
    try:
        # Closes the listening socket, closes idle connections (and the others once their
        # answer is written), waits for the handlers.
        await runner.cleanup()
    finally:
        for timer in timers:
            timer.cancel()
    log.info(
        "drained: %d requests finished, %d ended at the end of the grace",
        clients.finished,
        clients.ended,
    )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host
