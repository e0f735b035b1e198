"""A fast canned LLM upstream for the benchmark: the OpenAI/Groq chat-completions wire format.

    python bench/upstream.py --port P [--impl raw|aiohttp] [--chunk-delay S] [--chunks 20]

Serves `POST /openai/v1/chat/completions` and `POST /v1/chat/completions` (any path, in fact)
with pre-encoded bytes: a stream (`"stream": true` in the body) is a role chunk, N content
chunks, a finish chunk carrying Groq's `x_groq.usage`, a usage chunk with empty `choices`, and
`data: [DONE]`, each written separately (as a real upstream sends them; `--coalesce` sends
them in one write); otherwise one canned
`chat.completion` JSON body. Rate-limit headers in Groq's style announce a huge allowance, so a
gateway reading them still runs its accounting but never throttles.

`--impl raw` (default) is a bare asyncio protocol: the cheapest upstream that still speaks
HTTP/1.1 with keep-alive and chunked streams, so that the upstream costs the 2-core box as
little CPU as possible. `--impl aiohttp` is the same answers from an aiohttp server.
`--chunk-delay` sleeps between chunks (the slow upstream of the 1,000-open-streams run).
Listens on 127.0.0.1 only; it records nothing and runs until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import resource
import signal
import sys

MODEL = "openai/gpt-oss-120b"
WORDS = [
    "Hello",
    "from",
    "the",
    "canned",
    "benchmark",
    "upstream.",
    "This",
    "answer",
    "is",
    "about",
    "twenty",
    "tokens",
    "long,",
    "written",
    "word",
    "by",
    "word,",
    "like",
    "a",
    "model",
    "streaming",
    "its",
    "reply.",
]
_STREAM_RE = re.compile(rb'"stream"\s*:\s*true')
_CL_RE = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)
_CLOSE_RE = re.compile(rb"\r\nconnection:\s*close", re.IGNORECASE)
RATE_HEADERS = (
    ("x-ratelimit-limit-requests", "100000000"),
    ("x-ratelimit-limit-tokens", "1000000000000"),
    ("x-ratelimit-remaining-requests", "99999999"),
    ("x-ratelimit-remaining-tokens", "999999999999"),
    ("x-ratelimit-reset-requests", "864ms"),
    ("x-ratelimit-reset-tokens", "6ms"),
    ("x-request-id", "req_01benchcannedupstream0000"),
)


def _dump(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def canned_usage(n: int) -> dict[str, float]:
    """Groq's usage block for an answer of `n` tokens to the benchmark's prompt."""
    return {
        "queue_time": 0.0002,
        "prompt_tokens": 18,
        "prompt_time": 0.00004,
        "completion_tokens": n,
        "completion_time": 0.04,
        "total_tokens": 18 + n,
        "total_time": 0.04004,
    }


def canned_events(n: int) -> list[bytes]:
    """The SSE events of one streamed answer, as Groq sends them (one `data:` each)."""
    head = {
        "id": "chatcmpl-7b1e6f0e-3c1d-4a8b-9b1e-0a1b2c3d4e5f",
        "object": "chat.completion.chunk",
        "created": 1767225600,
        "model": MODEL,
        "system_fingerprint": "fp_bench00000",
    }
    usage = canned_usage(n)

    def choice(delta: dict, finish: str | None = None) -> list:
        return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]

    events = [
        {
            **head,
            "choices": choice({"role": "assistant", "content": ""}),
            "x_groq": {"id": "req_01benchcannedupstream0000", "seed": 1234567},
        }
    ]
    for i in range(n):
        word = WORDS[i % len(WORDS)]
        events.append({**head, "choices": choice({"content": word if i == 0 else " " + word})})
    events.append(
        {
            **head,
            "choices": choice({}, "stop"),
            "x_groq": {"id": "req_01benchcannedupstream0000", "usage": usage},
            "usage": usage,
        }
    )
    events.append({**head, "choices": [], "usage": usage, "service_tier": "on_demand"})
    out = [b"data: " + _dump(e) + b"\n\n" for e in events]
    out.append(b"data: [DONE]\n\n")
    return out


def canned_completion(n: int) -> bytes:
    text = " ".join(WORDS[i % len(WORDS)] for i in range(n))
    return _dump(
        {
            "id": "chatcmpl-7b1e6f0e-3c1d-4a8b-9b1e-0a1b2c3d4e5f",
            "object": "chat.completion",
            "created": 1767225600,
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": canned_usage(n),
            "system_fingerprint": "fp_bench00000",
            "x_groq": {"id": "req_01benchcannedupstream0000"},
        }
    )


# --------------------------------------------------------------------------- raw asyncio


class _RawProtocol(asyncio.Protocol):
    def __init__(self, server: RawServer) -> None:
        self.s = server
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.busy:
            self._next()

    def _next(self) -> None:
        while self.transport is not None:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end]
            m = _CL_RE.search(head)
            length = int(m.group(1)) if m else 0
            total = end + 4 + length
            if len(self.buf) < total:
                return
            body = self.buf[end + 4 : total]
            self.buf = self.buf[total:]
            close = _CLOSE_RE.search(head) is not None
            stream = _STREAM_RE.search(body) is not None
            if not stream:
                self.transport.write(self.s.json_response)
            elif self.s.delay <= 0 and self.s.coalesce:
                self.transport.write(self.s.whole_stream)
            elif self.s.delay <= 0:
                t = self.transport
                t.write(self.s.stream_head)
                for frame in self.s.frames:
                    t.write(frame)
                t.write(b"0\r\n\r\n")
            else:
                self.busy = True
                asyncio.get_running_loop().create_task(self._slow(close))
                return
            if close:
                self.transport.close()
                return

    async def _slow(self, close: bool) -> None:
        t = self.transport
        try:
            if t is None:
                return
            t.write(self.s.stream_head)
            for frame in self.s.frames:
                await asyncio.sleep(self.s.delay)
                if self.transport is None:
                    return
                t.write(frame)
            t.write(b"0\r\n\r\n")
            if close:
                t.close()
        finally:
            self.busy = False
        if self.transport is not None and self.buf:
            self._next()


class RawServer:
    def __init__(self, chunks: int, delay: float, coalesce: bool = False) -> None:
        self.delay = delay
        self.coalesce = coalesce
        events = canned_events(chunks)
        self.frames = [b"%x\r\n%s\r\n" % (len(e), e) for e in events]
        extra = "".join(f"{k}: {v}\r\n" for k, v in RATE_HEADERS)
        self.stream_head = (
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            f"{extra}Transfer-Encoding: chunked\r\n\r\n"
        ).encode()
        self.whole_stream = self.stream_head + b"".join(self.frames) + b"0\r\n\r\n"
        body = canned_completion(chunks)
        self.json_response = (
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            f"{extra}Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body

    async def serve(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: _RawProtocol(self), host, port, backlog=4096, reuse_address=True
        )
        await _run_until_signal(server.sockets[0].getsockname()[1])
        server.close()


# --------------------------------------------------------------------------- aiohttp


async def serve_aiohttp(host: str, port: int, chunks: int, delay: float, coalesce: bool) -> None:
    from aiohttp import web

    events = canned_events(chunks)
    completion = canned_completion(chunks)
    headers = dict(RATE_HEADERS)

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if _STREAM_RE.search(body) is None:
            return web.Response(body=completion, content_type="application/json", headers=headers)
        response = web.StreamResponse(
            headers={**headers, "Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        if coalesce and delay <= 0:
            await response.write(b"".join(events))
            await response.write_eof()
            return response
        for event in events:
            if delay > 0:
                await asyncio.sleep(delay)
            await response.write(event)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/{tail:.*}", chat)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=4096)
    await site.start()
    await _run_until_signal(runner.addresses[0][1])
    await runner.cleanup()


async def _run_until_signal(port: int) -> None:
    print(f"listening on http://127.0.0.1:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--impl", choices=("raw", "aiohttp"), default="raw")
    p.add_argument("--chunks", type=int, default=20, help="content chunks per answer")
    p.add_argument("--chunk-delay", type=float, default=0.0, help="seconds between chunks")
    p.add_argument(
        "--coalesce",
        action="store_true",
        help="without a delay, send a whole stream in one write (default: one write per event)",
    )
    args = p.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    host = "127.0.0.1"  # loopback only, whatever happens
    if args.impl == "raw":
        coro = RawServer(args.chunks, args.chunk_delay, args.coalesce).serve(host, args.port)
    else:
        coro = serve_aiohttp(host, args.port, args.chunks, args.chunk_delay, args.coalesce)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(coro)
    sys.exit(0)


if __name__ == "__main__":
    main()
