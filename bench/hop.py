"""One proxy hop's cost, measured in one process on one event loop: a quick, steadier check.

    .venv/bin/python bench/hop.py [--mode together|separate] [--loop uvloop|asyncio]
                                  [--requests 500] [--rounds 6] [--facades]

The full benchmark (`bench/run.py`) runs every target in its own process, as users do; on a
shared 2-core machine its numbers move with the scheduling of those processes. This runs the
canned upstream, the pass-through (`bench/passthrough.py`) and ai-api (SQLite ledger, a
gateway key, huge limits: every request still planned, reserved, settled and recorded) in
this one process, and a bare client that streams the same request through each of them in
turn, sequentially. The CPU time of a request through a proxy, less that of a direct request,
is what one hop of that proxy costs; the ratio of ai-api's hop to the pass-through's is the
number to watch when changing the hot path (lower is better; the minimum over the rounds is
reported, as noise only adds).

`--mode together` has the upstream write a whole answer at once (what a busy gateway reads
from a fast upstream); `--mode separate` gives each event its own turn of the loop (each one
read and forwarded alone, as at low load). `--loop` is the event loop all of them share
(ai-api's default, uvloop, unless told otherwise). Everything listens on 127.0.0.1; every loop
is bounded by `--requests` and `--rounds`.

`--facades` adds ai-api's two other APIs over the same upstream answer: the same prompt and
`max_tokens` asked of `/v1/messages` (Anthropic's body) and `/v1/responses` (`input`), and
reports each one's hop against the chat completions hop (the targets `ai-api-messages` and
`ai-api-responses`, which `bench/count.py` counts too).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json as json_module
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from aiohttp import web

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from passthrough import make_app  # noqa: E402
from upstream import RATE_HEADERS, canned_completion, canned_events  # noqa: E402

MODEL = "openai/gpt-oss-120b"
PROMPT = "Say hello in one short sentence."
MAX_TOKENS = 256
LIMITS = "rpm = 100000000, rpd = 1000000000, tpm = 1000000000000, tpd = 10000000000000"


class Upstream(asyncio.Protocol):
    """The canned Groq-style stream, or the whole answer when not asked for a stream, per
    request, over keep-alive HTTP/1.1."""

    def __init__(self, head: bytes, frames: list[bytes], whole: bytes, separate: bool) -> None:
        self.head, self.frames, self.whole, self.separate = head, frames, whole, separate
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while (end := self.buf.find(b"\r\n\r\n")) >= 0:
            head = self.buf[:end].lower()
            at = head.find(b"content-length:")
            length = int(head[at + 15 :].split(b"\r\n")[0]) if at >= 0 else 0
            if len(self.buf) < end + 4 + length:
                return
            streamed = b'"stream":true' in self.buf[end + 4 : end + 4 + length]
            self.buf = self.buf[end + 4 + length :]
            asyncio.get_running_loop().create_task(self.answer(streamed))

    async def answer(self, streamed: bool) -> None:
        assert self.transport is not None
        if not streamed:
            self.transport.write(self.whole)
            return
        self.transport.write(self.head)
        if not self.separate:
            self.transport.write(b"".join(self.frames) + b"0\r\n\r\n")
            return
        for frame in self.frames:
            self.transport.write(frame)
            await asyncio.sleep(0)  # the next event in a later turn of the loop
        self.transport.write(b"0\r\n\r\n")


@dataclass(frozen=True)
class Endpoint:
    """What a client sends to one API (its path, extra headers and body) and what a complete
    answer of that API holds."""

    path: bytes
    headers: bytes
    body: bytes
    ends: bytes


def endpoint(api: str, json: bool) -> Endpoint:
    """The same question (prompt, `max_tokens`, streamed or not) asked of `api`: `chat`
    (chat completions, usage asked for, as the other two always report it), `messages`
    (Anthropic's Messages API) or `responses` (OpenAI's Responses API)."""
    user = [{"role": "user", "content": PROMPT}]
    stream = not json
    if api == "messages":
        body: dict[str, object] = {"model": MODEL, "max_tokens": MAX_TOKENS, "messages": user}
        ends = b'"stop_reason":"end_turn"' if json else b"event: message_stop"
        headers = b"anthropic-version: 2023-06-01\r\n"
    elif api == "responses":
        body = {"model": MODEL, "input": PROMPT, "max_output_tokens": MAX_TOKENS}
        ends = b'"status":"completed"' if json else b"data: [DONE]"
        headers = b""
    else:
        body = {"model": MODEL, "messages": user, "max_tokens": MAX_TOKENS}
        if stream:
            body["stream_options"] = {"include_usage": True}
        ends = b'"finish_reason":"stop"' if json else b"data: [DONE]"
        headers = b""
    body["stream"] = stream
    path = {"messages": "/v1/messages", "responses": "/v1/responses"}.get(
        api, "/openai/v1/chat/completions"
    )
    return Endpoint(path.encode(), headers, _dumps(body).encode(), ends)


def _dumps(value: object) -> str:
    return json_module.dumps(value, separators=(",", ":"))


class Client(asyncio.Protocol):
    """One keep-alive connection sending the same request, one at a time."""

    def __init__(self, to: Endpoint) -> None:
        self.to = to
        self.buf = b""
        self.done: asyncio.Future[bytes] | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.done is None or self.done.done():
            return
        end = self.buf.find(b"\r\n\r\n")
        at = self.buf.lower().find(b"content-length:", 0, end) if end >= 0 else -1
        if at >= 0:  # a whole answer (chunked from the pass-through: below)
            length = int(self.buf[at + 15 : self.buf.index(b"\r\n", at)])
            if len(self.buf) >= end + 4 + length:
                self.done.set_result(self.buf)
        elif end >= 0 and self.buf.endswith(b"\r\n0\r\n\r\n", end):
            # The last chunk (after a chunk's or the head's CRLF: a head whose last header
            # value ends in 0, as a request id may, is no end).
            self.done.set_result(self.buf)

    async def request(self) -> None:
        assert self.transport is not None
        self.buf = b""
        self.done = asyncio.get_running_loop().create_future()
        to = self.to
        self.transport.write(
            b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer bench\r\n%s"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (to.path, to.headers, len(to.body), to.body)
        )
        answer = await asyncio.wait_for(self.done, timeout=10)
        if to.ends not in answer:
            raise RuntimeError(f"an incomplete answer: {answer[:300]!r}")


async def cpu_per_request(port: int, to: Endpoint, requests: int) -> float:
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_connection(lambda: Client(to), "127.0.0.1", port)
    try:
        for _ in range(20):  # warm-up
            await client.request()
        gc.collect()
        started = time.process_time()
        for _ in range(requests):
            await client.request()
        return (time.process_time() - started) / requests * 1e6
    finally:
        transport.close()


def canned_answers() -> tuple[bytes, list[bytes], bytes]:
    """The upstream's stream head, its chunked frames, and a whole JSON answer with its head."""
    frames = [b"%x\r\n%s\r\n" % (len(e), e) for e in canned_events(20)]
    rates = "".join(f"{k}: {v}\r\n" for k, v in RATE_HEADERS)
    head = (
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
        + rates
        + "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    completion = canned_completion(20)
    whole = (
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        + rates
        + f"Content-Length: {len(completion)}\r\n\r\n"
    ).encode() + completion
    return head, frames, whole


@contextlib.asynccontextmanager
async def targets(mode: str) -> AsyncIterator[dict[str, int]]:
    """The upstream, the pass-through and ai-api listening on 127.0.0.1: name -> port."""
    from ai_api.config import load_settings
    from ai_api.server import running

    head, frames, whole = canned_answers()
    upstream = await asyncio.get_running_loop().create_server(
        lambda: Upstream(head, frames, whole, mode == "separate"), "127.0.0.1", 0
    )
    up_port = upstream.sockets[0].getsockname()[1]
    runner = web.AppRunner(
        make_app(f"http://127.0.0.1:{up_port}"), access_log=None, handler_cancellation=True
    )
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / "ai-api.toml"
            config.write_text(f'[providers.groq]\nmodels = [{{ name = "{MODEL}", {LIMITS} }}]\n')
            env = {
                "GROQ_API_KEY": "bench",
                "GROQ_BASE_URL": f"http://127.0.0.1:{up_port}",
                "AI_API_CONFIG": str(config),
                "AI_API_LEDGER": str(Path(tmp) / "usage.sqlite3"),
                "AI_API_KEYS": "bench",
                "HOST": "127.0.0.1",
                "PORT": "0",
            }
            async with running(load_settings(env)) as url:
                yield {
                    "direct": up_port,
                    "pass-through": runner.addresses[0][1],
                    "ai-api": int(url.rsplit(":", 1)[1]),
                }
    finally:
        await runner.cleanup()
        upstream.close()


FACADES = {"ai-api-messages": "messages", "ai-api-responses": "responses"}
"""The targets that ask ai-api's other APIs the chat completions question, and their API."""
TARGETS = ("direct", "pass-through", "ai-api", *FACADES)


async def main(args: argparse.Namespace) -> None:
    from ai_api.server import loop_name

    async with targets(args.mode) as ports:
        # name -> (port, API): the facades are ai-api's port asked through another API.
        asked = {
            name: (ports.get(name, ports["ai-api"]), FACADES.get(name, "chat")) for name in TARGETS
        }
        if args.only is not None:  # one target, once: for an outside meter (bench/count.py)
            port, api = asked[args.only]
            await cpu_per_request(port, endpoint(api, args.json), args.requests)
            return
        names = [n for n in asked if args.facades or n not in FACADES]
        best = {name: float("inf") for name in names}
        for _ in range(args.rounds):
            for name in names:
                port, api = asked[name]
                cost = await cpu_per_request(port, endpoint(api, args.json), args.requests)
                best[name] = min(best[name], cost)
    direct, through, ai_api = best["direct"], best["pass-through"], best["ai-api"]
    kind = "json" if args.json else "stream"
    print(
        f"{kind}, {args.mode}, {loop_name(asyncio.get_running_loop())}: CPU µs per request:"
        f" direct {direct:.0f}; pass-through hop +{through - direct:.0f};"
        f" ai-api hop +{ai_api - direct:.0f};"
        f" ai-api / pass-through hop {(ai_api - direct) / (through - direct):.2f}"
        f" (min of {args.rounds} rounds of {args.requests})"
    )
    for name in FACADES:
        if name in best:
            hop = best[name] - direct
            print(
                f"  {name} hop +{hop:.0f}: {hop / (ai_api - direct):.2f}x the chat completions hop"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=("together", "separate"), default="together")
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--json", action="store_true", help="clients ask for a whole answer")
    parser.add_argument("--only", choices=TARGETS, help="drive one target, once")
    parser.add_argument(
        "--facades", action="store_true", help="also /v1/messages and /v1/responses"
    )
    args = parser.parse_args()
    if not (1 <= args.requests <= 20_000 and 1 <= args.rounds <= 50):
        parser.error("bounded runs only: 1-20000 requests, 1-50 rounds")
    from ai_api.server import loop_factory

    with asyncio.Runner(loop_factory=loop_factory(args.loop)) as runner:
        runner.run(main(args))
