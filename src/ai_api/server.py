"""Running the app: bind, log what is served, stop cleanly on SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from contextlib import AsyncExitStack

from aiohttp import web

from .app import create_app
from .config import Settings
from .demo import demo_upstreams

log = logging.getLogger("ai_api")


async def serve(settings: Settings, *, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve until SIGINT/SIGTERM; `on_ready` receives the URL once the socket is bound."""
    async with AsyncExitStack() as stack:
        if settings.demo:
            settings = await stack.enter_async_context(demo_upstreams(settings))
            log.warning(
                "DEMO MODE: answers come from built-in fake providers, not from real models."
            )
        runner = web.AppRunner(create_app(settings), handler_cancellation=True, access_log=None)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        site = web.TCPSite(runner, settings.host, settings.port)
        await site.start()
        host, port = runner.addresses[0][:2]
        url = f"http://{_bracket(host)}:{port}"
        for p in settings.providers:
            log.info("provider %s: model %s at %s", p.name, p.model, p.base_url)
        log.info("round-robin over: %s", ", ".join(p.name for p in settings.providers))
        log.info("listening on %s (POST /chat, GET /health)", url)
        if on_ready is not None:
            on_ready(url)
        await _until_signalled()


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    log.info("shutting down")


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host
