"""The yardstick: a bare pass-through proxy, aiohttp server and client, nothing else.

    .venv/bin/python bench/passthrough.py --port P --upstream http://127.0.0.1:U [--uvloop]

Every POST is sent to the same path on the upstream with its body and content type, and the
answer is copied back chunk by chunk as it arrives. No validation, routing, accounting or
ledger: what Python with aiohttp can do for a streaming proxy on this machine. On asyncio's
own event loop by default (the yardstick as the issue defines it); `--uvloop` runs it on
uvloop, as ai-api runs by default.
"""

import argparse
import asyncio
import resource
import signal

import aiohttp
from aiohttp import web

HOP = {"content-length", "transfer-encoding", "connection", "keep-alive", "date", "server"}


def make_app(upstream: str) -> web.Application:
    """The pass-through as an aiohttp application forwarding every POST to `upstream`."""
    session: aiohttp.ClientSession | None = None

    async def proxy(request: web.Request) -> web.StreamResponse:
        assert session is not None
        body = await request.read()
        headers = {
            "Content-Type": request.headers.get("Content-Type", "application/json"),
            "Authorization": "Bearer bench",
        }
        async with session.post(upstream + request.path, data=body, headers=headers) as up:
            response = web.StreamResponse(
                status=up.status,
                headers={k: v for k, v in up.headers.items() if k.lower() not in HOP},
            )
            await response.prepare(request)
            async for chunk in up.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    async def start(app: web.Application):
        nonlocal session
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=600),
        )
        yield
        await session.close()

    app = web.Application(client_max_size=1 << 20)
    app.cleanup_ctx.append(start)
    app.router.add_post("/{tail:.*}", proxy)
    return app


async def main(port: int, upstream: str) -> None:
    app = make_app(upstream)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
    print(f"listening on http://127.0.0.1:{runner.addresses[0][1]}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop's event loop")
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    factory = asyncio.new_event_loop
    if args.uvloop:
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main(args.port, args.upstream.rstrip("/")))
