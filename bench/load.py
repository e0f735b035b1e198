"""The load generator: fixed concurrency over keep-alive HTTP/1.1 connections to 127.0.0.1.

    python3 bench/load.py --port P [--stream] [--concurrency 64] [--duration 3]
        [--max-requests 100000] [--api chat|messages|responses] [--path P] [--model M]
        [--max-tokens N]

Standard library only (a bare asyncio protocol, so that the load generator is cheap next to
what it measures). Each of the `--concurrency` connections sends one request after the
other: a chat completion, or with `--api` the same question to Anthropic's Messages API
(`/v1/messages`, with `anthropic-version`) or OpenAI's Responses API (`/v1/responses`).
The run is bounded twice: no request starts after `--duration` seconds or once
`--max-requests` have started, and whatever is still in flight `--grace` seconds later is
abandoned and counted as an error; then the process exits by itself.

Measured per request: latency to the last byte, and for streams the time to the first byte
of content (the first non-empty `"content"` delta; a `text_delta`'s `text`, an
`output_text.delta`'s `delta`). A response is an error unless it is a 200 that ends properly:
a stream ending with `data: [DONE]` (`event: message_stop` for Messages), a JSON body with
`choices` (`content`, `output`).

Prints `START` when the connections are open and warmed up (one request each, not counted),
`END` when the measured part is over, then one JSON line with the results.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import resource
import sys
import time


class Api:
    """How one API is asked and how its answers look."""

    def __init__(self, path: str, content: bytes, end: bytes, whole: bytes) -> None:
        self.path = path
        self.content = re.compile(content)  # the first content of a stream
        self.end = end  # what ends a complete stream
        self.whole = whole  # what a complete JSON answer holds


APIS = {
    "chat": Api("/v1/chat/completions", rb'"content"\s*:\s*"[^"]', b"[DONE]", b'"choices"'),
    "messages": Api("/v1/messages", rb'"text"\s*:\s*"[^"]', b"message_stop", b'"content"'),
    "responses": Api("/v1/responses", rb'"delta"\s*:\s*"[^"]', b"[DONE]", b'"output"'),
}
_CL = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)
_CHUNKED = re.compile(rb"\r\ntransfer-encoding:\s*chunked", re.IGNORECASE)
_CLOSE = re.compile(rb"\r\nconnection:\s*close", re.IGNORECASE)
clock = time.perf_counter
# Streams that have received content and not yet ended, now and at most.
STREAMING = {"now": 0, "max": 0}


class Failed(Exception):
    pass


class Conn(asyncio.Protocol):
    """One keep-alive connection; `request()` resolves to (ttft or None) when a response ends."""

    def __init__(self, stream: bool, api: Api) -> None:
        self.stream = stream
        self.api = api
        self.transport: asyncio.Transport | None = None
        self.fut: asyncio.Future | None = None
        self.lost = False
        self._reset()

    def _reset(self) -> None:
        self.buf = bytearray()
        self.head_end = -1
        self.status = 0
        self.length = -1
        self.chunked = False
        self.close = False
        self.pos = 0
        self.ttft: float | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.transport = None
        self.fail("connection closed mid-response")

    def fail(self, message: str) -> None:
        if self.fut is not None and not self.fut.done():
            if self.ttft is not None:
                STREAMING["now"] -= 1
            self.fut.set_exception(Failed(message))

    def request(self, payload: bytes) -> asyncio.Future:
        self._reset()
        self.fut = asyncio.get_running_loop().create_future()
        assert self.transport is not None
        self.transport.write(payload)
        return self.fut

    def data_received(self, data: bytes) -> None:
        if self.fut is None or self.fut.done():
            return
        start = len(self.buf)
        self.buf += data
        buf = self.buf
        if self.head_end < 0:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[: end + 2])
            self.head_end = self.pos = end + 4
            try:
                self.status = int(head[9:12])
            except ValueError:
                self.fut.set_exception(Failed("bad status line"))
                return
            m = _CL.search(head)
            self.length = int(m.group(1)) if m else -1
            self.chunked = _CHUNKED.search(head) is not None
            self.close = _CLOSE.search(head) is not None
            start = self.head_end
        if (
            self.stream
            and self.ttft is None
            and self.api.content.search(buf, max(self.head_end, start - 64))
        ):
            self.ttft = clock()
            STREAMING["now"] += 1
            STREAMING["max"] = max(STREAMING["max"], STREAMING["now"])
        if self.chunked:
            pos = self.pos
            n = len(buf)
            while True:
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    break
                try:
                    size = int(buf[pos:eol].split(b";", 1)[0], 16)
                except ValueError:
                    self.fut.set_exception(Failed("bad chunked framing"))
                    return
                if size == 0:
                    if buf.find(b"\r\n", eol + 2) >= 0:  # end of (empty) trailers
                        self._finish(buf[self.head_end : eol])
                    break
                nxt = eol + 2 + size + 2
                if nxt > n:
                    break
                pos = nxt
            self.pos = pos
        elif self.length >= 0 and len(buf) - self.head_end >= self.length:
            self._finish(buf[self.head_end : self.head_end + self.length])
        # else: body until close; handled in connection_lost (not used by the targets)

    def _finish(self, body: bytearray) -> None:
        fut = self.fut
        assert fut is not None
        if self.ttft is not None:
            STREAMING["now"] -= 1
        if self.status != 200:
            fut.set_exception(Failed(f"HTTP {self.status}: {bytes(body[:160])!r}"))
        elif self.stream and self.api.end not in body[-64:]:
            fut.set_exception(Failed(f"stream without its end: {bytes(body[-160:])!r}"))
        elif not self.stream and self.api.whole not in body:
            fut.set_exception(Failed(f"JSON without {self.api.whole!r}: {bytes(body[:160])!r}"))
        else:
            fut.set_result(self.ttft)
        if self.close and self.transport is not None:
            self.transport.close()


def request_body(args: argparse.Namespace) -> dict:
    """The question: the prompt as one user message (`input` for Responses), `max_tokens`
    (`max_output_tokens`) when given; a chat stream asks for usage, which the others send."""
    body: dict = {"model": args.model}
    if args.api == "responses":
        body["input"] = args.prompt
    else:
        body["messages"] = [{"role": "user", "content": args.prompt}]
    if args.max_tokens is not None:
        body["max_output_tokens" if args.api == "responses" else "max_tokens"] = args.max_tokens
    if args.stream:
        body["stream"] = True
        if args.api == "chat":
            body["stream_options"] = {"include_usage": True}
    return body


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p90": None, "p99": None, "max": None, "mean": None}
    v = sorted(values)

    def q(p: float) -> float:
        return v[max(0, math.ceil(p * len(v)) - 1)]

    return {
        "p50": q(0.50),
        "p90": q(0.90),
        "p99": q(0.99),
        "max": v[-1],
        "mean": sum(v) / len(v),
    }


async def run(args: argparse.Namespace) -> dict:
    loop = asyncio.get_running_loop()
    api = APIS[args.api]
    raw = json.dumps(request_body(args)).encode()
    extra = "anthropic-version: 2023-06-01\r\n" if args.api == "messages" else ""
    extra += "".join(f"{header}\r\n" for header in args.header)
    payload = (
        f"POST {args.path or api.path} HTTP/1.1\r\nHost: 127.0.0.1:{args.port}\r\n"
        f"Authorization: Bearer {args.api_key}\r\n{extra}Content-Type: application/json\r\n"
        f"Accept: {'text/event-stream' if args.stream else 'application/json'}\r\n"
        f"Content-Length: {len(raw)}\r\n\r\n"
    ).encode() + raw

    latencies: list[float] = []
    ttfts: list[float] = []
    errors: dict[str, int] = {}
    examples: list[str] = []
    timeline: list[int] = []  # completions per second of the run
    state = {"started": 0, "done": 0, "open": 0, "max_open": 0, "last": 0.0}
    go = asyncio.Event()
    t = {"start": 0.0, "deadline": 0.0}

    def error(kind: str, detail: str) -> None:
        errors[kind] = errors.get(kind, 0) + 1
        if len(examples) < 5:
            examples.append(f"{kind}: {detail}"[:300])

    async def connect() -> Conn:
        _, conn = await loop.create_connection(
            lambda: Conn(args.stream, api), "127.0.0.1", args.port
        )
        return conn

    async def one(conn: Conn, record: bool) -> Conn:
        if conn.lost:
            conn = await connect()
        t0 = clock()
        state["open"] += 1
        state["max_open"] = max(state["max_open"], state["open"])
        fut = conn.request(payload)
        timer = loop.call_later(args.timeout, conn.fail, f"timeout after {args.timeout}s")
        try:
            ttft = await fut
        except Failed as exc:
            state["open"] -= 1
            if record:
                error("timeout" if str(exc).startswith("timeout") else "bad_response", str(exc))
            if conn.transport is not None:
                conn.transport.close()
            conn.lost = True
            return conn
        finally:
            timer.cancel()
        state["open"] -= 1
        t1 = clock()
        if record:
            latencies.append((t1 - t0) * 1000)
            if ttft is not None:
                ttfts.append((ttft - t0) * 1000)
            elif args.stream:
                error("no_content", "stream carried no content delta")
            state["done"] += 1
            state["last"] = t1
            second = int(t1 - t["start"])
            while len(timeline) <= second:
                timeline.append(0)
            timeline[second] += 1
        return conn

    async def worker(conn: Conn | None) -> None:
        try:
            if conn is None:
                conn = await connect()
            for _ in range(args.warmup):
                conn = await one(conn, record=False)
            ready.append(1)
            if len(ready) == args.concurrency:
                begin()
            await go.wait()
            while state["started"] < args.max_requests and clock() < t["deadline"]:
                state["started"] += 1
                try:
                    conn = await one(conn, record=True)
                except OSError as exc:
                    error("connect", repr(exc))
                    await asyncio.sleep(0.01)
                    conn = Conn(args.stream, api)
                    conn.lost = True
        except OSError as exc:
            error("connect", repr(exc))
            ready.append(1)
            if len(ready) == args.concurrency:
                begin()

    ready: list[int] = []

    def begin() -> None:
        if go.is_set():
            return
        print("START", flush=True)
        t["start"] = clock()
        t["deadline"] = t["start"] + args.duration
        go.set()

    # Open the connections in batches first: the run measures requests, not a connect storm.
    conns: list[Conn | None] = []
    for i in range(0, args.concurrency, 64):
        batch = min(64, args.concurrency - i)
        got = await asyncio.gather(*(connect() for _ in range(batch)), return_exceptions=True)
        for g in got:
            if isinstance(g, BaseException):
                error("connect", repr(g))
                conns.append(None)
            else:
                conns.append(g)
    tasks = [asyncio.ensure_future(worker(c)) for c in conns]
    # Warm-up and start: bounded too.
    try:
        await asyncio.wait_for(go.wait(), timeout=args.timeout + 5)
    except TimeoutError:
        error("warmup", "warm-up did not finish in time")
        begin()
    _, pending = await asyncio.wait(tasks, timeout=args.duration + args.grace)
    for task in pending:
        task.cancel()
    unfinished = state["open"]
    if unfinished:
        errors["unfinished"] = errors.get("unfinished", 0) + unfinished
    end = clock()
    print("END", flush=True)
    elapsed = (state["last"] or end) - t["start"]
    return {
        "completed": state["done"],
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "error_examples": examples,
        "elapsed": elapsed,
        "rps": state["done"] / elapsed if elapsed > 0 else 0.0,
        "latency_ms": percentiles(latencies),
        "ttft_ms": percentiles(ttfts) if args.stream else None,
        "max_open": state["max_open"],
        "max_streaming": STREAMING["max"] if args.stream else None,
        "per_second": timeline,
        "concurrency": args.concurrency,
        "stream": args.stream,
    }


def main() -> None:
    p = argparse.ArgumentParser(description="Bounded HTTP load on 127.0.0.1.")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--api", choices=tuple(APIS), default="chat")
    p.add_argument("--path", help="the API's own path unless given")
    p.add_argument("--model", default="openai/gpt-oss-120b")
    p.add_argument("--prompt", default="Say hello in one sentence.")
    p.add_argument("--max-tokens", type=int)
    p.add_argument("--api-key", default="bench")
    p.add_argument(
        "--header", action="append", default=[], help="`Name: value`, sent with every request"
    )
    p.add_argument("--stream", action="store_true")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument(
        "--duration", type=float, default=3.0, help="seconds during which requests start"
    )
    p.add_argument("--max-requests", type=int, default=200_000)
    p.add_argument("--warmup", type=int, default=1, help="uncounted requests per connection")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds for one request")
    p.add_argument("--grace", type=float, default=30.0, help="seconds to finish in-flight ones")
    args = p.parse_args()
    if args.duration > 3600 or args.max_requests > 50_000_000:
        p.error("refusing an unbounded run")
    if args.api == "messages" and args.max_tokens is None:
        p.error("--api messages needs --max-tokens (the Messages API requires it)")
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    result = asyncio.run(run(args))
    print(json.dumps(result), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
