#!/usr/bin/env python3
"""Fault runs against a real ai-api process, one command each:

    python3 bench/faults.py kill9 [--repeats 5] [--slow 50] [--scale small]
    python3 bench/faults.py hostile [--scale small]
    python3 bench/faults.py slowloris [--tricklers 990] [--scale small]

kill9: a gateway serving slow streams and a flow of fast ones is sent SIGKILL mid-burst and
started again on its ledger; every attempt a fake upstream received must be in the ledger,
but those begun within the ledger's flush interval (50 ms) before the kill.

hostile: raw upstreams that send a 64 MiB header line, an SSE line that never ends, a 300 MB
whole answer, 30,000 headers, a NUL in a header value. For each: how long until the gateway
gives up, its peak RSS increase, the slowest /health answer of a probe asking every 10 ms
meanwhile, and what a client received asking that member alone and through a fallback route.

slowloris: trickling clients (a header byte every 2 s; a body byte every 2 s; more than the
connection cap), then a fresh client meanwhile: is it served and how fast, how many of the
trickling connections the gateway closed and when, and its log lines.

Each prints its figures and a last line `verdict: ok` or `verdict: FAIL (why)`, and stays
under about two minutes (`--scale small`: a few seconds, for the tests). The fake upstreams
and the attackers run in this process; the gateway is `python -m ai_api serve`, on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import re
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rig

Closed = tuple[float | None, bytes]
"""When the gateway closed a connection (None: it did not) and what it sent on it."""
FLUSH = 0.05
"""The SQLite ledger's flush interval, seconds (`SQLiteLedger(interval=...)`)."""


def ok_line(problems: list[str]) -> str:
    return "verdict: ok" if not problems else f"verdict: FAIL ({'; '.join(problems)})"


# kill -9


def ledger_counts(path: Path) -> Counter[tuple[str, str]]:
    """(provider, error or "ok") -> attempts in the ledger file."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        rows = conn.execute(
            "SELECT provider, coalesce(error, 'ok'), count(*) FROM attempts GROUP BY 1, 2"
        ).fetchall()
    return Counter({(p, e): n for p, e, n in rows})


async def kill9_once(args: argparse.Namespace, workdir: Path) -> dict:
    from ai_api.fakes import FakeUpstream

    slow = FakeUpstream("openai", token_delay=0.5, answer_tokens=20)  # ~10 s an answer
    fast = FakeUpstream("openai", token_delay=0.0, answer_tokens=20)
    async with slow, fast:
        config = rig.fake_toml("slow", slow.base_url)
        config += rig.fake_toml("fast", fast.base_url)
        gateway = rig.Gateway(workdir, config)
        await asyncio.to_thread(gateway.start)
        port = gateway.port
        stop = asyncio.Event()
        fast_answered = 0

        async def fast_flow() -> None:
            nonlocal fast_answered
            body = rig.chat_body(True, "fast/" + rig.FAKE_MODEL)
            while not stop.is_set():
                reply = await rig.chat(port, body, limit=10)
                fast_answered += reply.done
                if reply.error:
                    await asyncio.sleep(0.01)

        body = rig.chat_body(True, "slow/" + rig.FAKE_MODEL)
        slows = [asyncio.create_task(rig.chat(port, body, limit=30)) for _ in range(args.slow)]
        flows = [asyncio.create_task(fast_flow()) for _ in range(args.fast)]
        for _ in range(2000):  # at most 20 s, until the slow upstream has every stream
            if len(slow.requests) >= args.slow:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(random.uniform(0.2, 0.8))  # mid-burst: the fast flow goes on
        killed_at = time.monotonic()
        gateway.kill9()
        stop.set()
        await asyncio.gather(*slows, *flows, return_exceptions=True)
        received = {"slow": list(slow.requests), "fast": list(fast.requests)}
    ages = sorted(killed_at - seen.started for seen in received["slow"] + received["fast"])
    late = sum(1 for age in ages if age < FLUSH)
    await asyncio.to_thread(gateway.start)  # on the same ledger: marks what was in progress
    await asyncio.to_thread(gateway.stop)
    said = re.search(r"(\d+) attempts were in progress", gateway.log_text())
    counts = ledger_counts(workdir / "usage.sqlite3")
    result: dict = {"late": late, "marked_at_restart": int(said.group(1)) if said else 0}
    result["ages"] = ages
    for name, seen in received.items():
        recorded = sum(n for (p, _), n in counts.items() if p == name)
        result[name] = {
            "received": len(seen),
            "recorded": recorded,
            "missing": max(0, len(seen) - recorded),
            "interrupted": counts[(name, "interrupted")],
            "ended": recorded - counts[(name, "interrupted")],
        }
    result["fast_answered"] = fast_answered
    return result


async def kill9(args: argparse.Namespace, tmp: Path) -> list[str]:
    problems = []
    for n in range(1, args.repeats + 1):
        workdir = tmp / f"kill9-{n}"
        workdir.mkdir()
        r = await kill9_once(args, workdir)
        missing = r["slow"]["missing"] + r["fast"]["missing"]
        # The missing are at most the youngest `missing` attempts: all begun within `window`.
        window = r["ages"][missing - 1] * 1000 if missing else 0.0
        print(
            f"run {n}: "
            + "; ".join(
                f"{name}: received {r[name]['received']}, recorded {r[name]['recorded']}"
                f" (ended {r[name]['ended']}, marked interrupted {r[name]['interrupted']}),"
                f" missing {r[name]['missing']}"
                for name in ("slow", "fast")
            )
            + f"; begun in the last {FLUSH * 1000:.0f} ms: {r['late']}"
            f" (the missing fit in the last {window:.0f} ms);"
            f" the restart marked {r['marked_at_restart']} interrupted",
            flush=True,
        )
        if missing > r["late"]:
            problems.append(
                f"run {n}: {missing} attempts missing, {missing - r['late']} or more of them"
                f" begun over {FLUSH * 1000:.0f} ms before the kill"
            )
        if r["slow"]["received"] != args.slow:
            problems.append(f"run {n}: the slow upstream saw {r['slow']['received']}")
    return problems


# hostile upstreams

BLOCK = 1 << 16
HOLD = 90.0
"""Seconds an attacker keeps its connection open after its attack, unless the gateway closes."""


def _token(n: int) -> bytes:
    return (
        b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
        b'"choices":[{"index":0,"delta":{"content":"%d "},"finish_reason":null}]}\n\n' % n
    )


SSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"


def attacks(small: bool) -> dict[str, tuple[bytes, Callable[[], AsyncIterator[bytes]]]]:
    """name -> (what the attacker sends first, the rest, in blocks). Small: sizes past the
    gateway's limits still (64 KiB a head, 4 MiB a line, and 1 MiB a whole answer then)."""
    mib = 1 if small else 64  # the huge header line and the endless SSE line
    answer = 4 if small else 300
    tokens = b"".join(_token(n) for n in range(BLOCK // len(_token(0))))
    filler = b"y" * BLOCK

    async def blocks(block: bytes, count: int) -> AsyncIterator[bytes]:
        for _ in range(count):
            yield block

    lines = 8 if small else mib
    return {
        "huge-header": (SSE_HEAD + b"X-Huge: ", lambda: blocks(filler, mib * 16)),
        "endless-line": (
            SSE_HEAD + b"\r\n" + _token(0) + b"data: ",
            lambda: blocks(filler, lines * 16),
        ),
        "huge-answer": (SSE_HEAD + b"\r\n", lambda: blocks(tokens, answer * 16)),
        "30000-headers": (
            SSE_HEAD,
            lambda: blocks(b"".join(b"X-%d: y\r\n" % n for n in range(30_000)) + b"\r\n", 1),
        ),
        "nul-in-header": (SSE_HEAD + b"X-Odd: a\x00b\r\n\r\n" + _token(0), lambda: blocks(b"", 0)),
    }


class Attacker:
    """A raw upstream on 127.0.0.1 that reads a request and sends its attack, a block at a
    time, until the attack ends (then holds the connection open, silent) or the gateway
    closes; counts the bytes it wrote."""

    def __init__(self, first: bytes, rest: Callable[[], AsyncIterator[bytes]]) -> None:
        self.first, self.rest = first, rest
        self.sent = 0
        self.served = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.served += 1
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"(?i)content-length:\s*(\d+)", head)
            await reader.readexactly(int(length.group(1)) if length else 0)
            writer.write(self.first)
            self.sent += len(self.first)
            async for block in self.rest():
                writer.write(block)
                self.sent += len(block)
                await writer.drain()
                await asyncio.sleep(0)
            with contextlib.suppress(TimeoutError):  # then hold on, as a stalled upstream
                await asyncio.wait_for(reader.read(), HOLD)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the gateway closed the connection
        finally:
            writer.close()


async def attack_once(gateway: rig.Gateway, attacker: Attacker, name: str, stream: bool) -> dict:
    """One request to `name` alone and one through its fallback route, under the probe."""
    figures: dict = {}
    for label, model in (("alone", f"{name}/{rig.MODEL}"), ("route", f"{name}-route")):
        await asyncio.sleep(0.2)
        gateway.reset_peak()
        before = gateway.rss_mb()
        sent = attacker.sent
        probe = rig.LagProbe(gateway.port)
        await asyncio.to_thread(probe.__enter__)
        await asyncio.sleep(0.05)
        reply = await rig.chat(gateway.port, rig.chat_body(stream, model), limit=90)
        await asyncio.sleep(0.05)
        await asyncio.to_thread(probe.__exit__)
        figures[label] = {
            "seconds": reply.seconds,
            "peak_mb": max(0.0, gateway.peak_mb() - before),
            "lag_ms": probe.worst * 1000,
            "got": reply.shape(),
            "sent_mb": (attacker.sent - sent) / (1 << 20),
        }
    return figures


async def hostile(args: argparse.Namespace, tmp: Path) -> list[str]:
    from ai_api.fakes import FakeUpstream

    problems = []
    plan = attacks(args.scale == "small")
    attackers = {name: Attacker(first, rest) for name, (first, rest) in plan.items()}
    servers = {
        name: await asyncio.start_server(a.serve, "127.0.0.1", 0) for name, a in attackers.items()
    }
    async with FakeUpstream("openai", token_delay=0.0) as good:
        config = rig.fake_toml("good", good.base_url)
        for name, server in servers.items():
            url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
            config += rig.provider_toml(name, url, "openai")
            config += rig.provider_toml(f"{name}-fo", url, "openai")
            config += (
                f'[routes."{name}-route"]\nstrategy = "fallback"\n'
                f'members = ["{name}-fo/{rig.MODEL}", "good/{rig.FAKE_MODEL}"]\n\n'
            )
        env = {"AI_API_MAX_ANSWER_BYTES": str(1 << 20)} if args.scale == "small" else {}
        gateway = rig.Gateway(tmp, config, env)
        await asyncio.to_thread(gateway.start)
        try:
            for name, attacker in attackers.items():
                f = await attack_once(gateway, attacker, name, stream=name != "huge-answer")
                a, r = f["alone"], f["route"]
                print(
                    f"{name}: alone, after {a['seconds']:.2f} s: {a['got']}; through a fallback"
                    f" route, after {r['seconds']:.2f} s: {r['got']}; peak RSS"
                    f" +{max(a['peak_mb'], r['peak_mb']):.1f} MB; /health at most"
                    f" {max(a['lag_ms'], r['lag_ms']):.1f} ms; the attacker wrote"
                    f" {a['sent_mb']:.2f} and {r['sent_mb']:.2f} MB",
                    flush=True,
                )
                if "error" not in f["alone"]["got"]:
                    problems.append(f"{name}: alone, the client got {f['alone']['got']}")
                if f["route"]["got"] != "200, complete answer":
                    problems.append(f"{name}: the route's client got {f['route']['got']}")
            if gateway.proc is not None and gateway.proc.poll() is not None:
                problems.append("the gateway died")
            if args.verbose:
                print(gateway.log_text())
        finally:
            await asyncio.to_thread(gateway.stop)
            for server in servers.values():
                server.close()
    return problems


# slowloris


async def trickle(port: int, sent: bytes, head: bytes, every: float, limit: float) -> Closed:
    """Send `sent` at once, then `head` a byte every `every` s: when the gateway closed the
    connection (seconds after it opened; None if still open after `limit`) and what it sent."""
    begun = time.monotonic()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return 0.0, b""
    closed = asyncio.create_task(reader.read())
    try:
        async with asyncio.timeout(limit):
            writer.write(sent)
            for byte in head:
                writer.write(bytes([byte]))
                done, _ = await asyncio.wait({closed}, timeout=every)
                if done:
                    break
            return time.monotonic() - begun, await closed
    except TimeoutError:
        return None, b""
    except OSError:
        return time.monotonic() - begun, b""
    finally:
        closed.cancel()
        writer.close()


async def hold_open(port: int, limit: float) -> Closed:
    """A connection that sends nothing: when it was closed, and what it got before."""
    begun = time.monotonic()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return 0.0, b""
    try:
        async with asyncio.timeout(limit):
            got = await reader.read()
        return time.monotonic() - begun, got
    except TimeoutError:
        return None, b""
    except OSError:
        return time.monotonic() - begun, b""
    finally:
        writer.close()


def closings(ends: list[Closed]) -> str:
    """How many were closed and when; the statuses they were answered with."""
    shut = sorted(t for t, _ in ends if t is not None)
    said = Counter(got[9:12].decode(errors="replace") for t, got in ends if got[:5] == b"HTTP/")
    answered = ", ".join(f"{n} answered {status}" for status, n in sorted(said.items()))
    if not shut:
        return f"0 of {len(ends)} closed"
    return (
        f"{len(shut)} of {len(ends)} closed, after {shut[0]:.1f}-{shut[-1]:.1f} s"
        f" (median {shut[len(shut) // 2]:.1f} s){'; ' + answered if answered else ''}"
    )


async def fresh(port: int, until_served: float = 0.0) -> tuple[rig.Reply, str]:
    """A fresh client's stream, asked again every 0.2 s for `until_served` s while it is not
    served: the last reply (its time counted from the first try) and what the first got."""
    begun = time.monotonic()
    first = ""
    while True:
        reply = await rig.chat(port, rig.chat_body(True, "good/" + rig.FAKE_MODEL), limit=30)
        first = first or served(reply)
        if reply.done or time.monotonic() - begun > until_served:
            reply.seconds = time.monotonic() - begun
            return reply, first
        await asyncio.sleep(0.2)


async def _after(delay: float, job: Awaitable[Closed]) -> Closed:
    await asyncio.sleep(delay)
    return await job


async def with_fresh(
    port: int,
    crowd: list[Awaitable[Closed]],
    spread: float,
    wait: float,
    until_served: float = 0.0,
) -> tuple[list[Closed], rig.Reply, str]:
    """Start `crowd` over `spread` s (a burst of connections faster than the gateway accepts
    them would overflow its listen backlog, and the kernel would make some wait), and `wait` s
    later a fresh client: what each of the crowd saw, the fresh client's reply and what its
    first try got."""
    tasks = [asyncio.ensure_future(_after(i * spread / len(crowd), c)) for i, c in enumerate(crowd)]
    await asyncio.sleep(spread + wait)
    reply, first = await fresh(port, until_served)
    return list(await asyncio.gather(*tasks)), reply, first


async def slowloris(args: argparse.Namespace, tmp: Path) -> list[str]:
    from ai_api.fakes import FakeUpstream

    problems = []
    small = args.scale == "small"
    header_timeout, body_timeout, cap = (1.0, 2.0, 40) if small else (10.0, 30.0, 1024)
    every = 0.25 if small else 2.0
    crowd = args.tricklers or (30 if small else 990)
    spread = 0.1 if small else 2.0
    env = {
        "AI_API_HEADER_TIMEOUT": str(header_timeout),
        "AI_API_BODY_TIMEOUT": str(body_timeout),
        "AI_API_MAX_CONNECTIONS": str(cap),
    }
    async with FakeUpstream("openai", token_delay=0.0) as good:
        gateway = rig.Gateway(tmp, rig.fake_toml("good", good.base_url), env)
        await asyncio.to_thread(gateway.start)
        port = gateway.port
        print(
            f"gateway: header_timeout {header_timeout:g} s, body_timeout {body_timeout:g} s,"
            f" max_connections {cap}; tricklers send a byte every {every:g} s",
            flush=True,
        )
        limit = body_timeout * 2 + 5
        try:
            head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"a" * 200
            ends, reply, _ = await with_fresh(
                port, [trickle(port, b"", head, every, limit) for _ in range(crowd)], spread, every
            )
            print(f"{crowd} header tricklers: {closings(ends)}; fresh client: {served(reply)}")
            problems += check("headers", ends, reply, header_timeout, crowd)

            body = b"x" * 1000
            body_head = rig.post_head("/v1/chat/completions", port, len(body))
            body_head = body_head.replace(b"Connection: close\r\n", b"")
            ends, reply, _ = await with_fresh(
                port,
                [trickle(port, body_head, body, every, limit) for _ in range(crowd)],
                spread,
                every,
            )
            print(f"{crowd} body tricklers: {closings(ends)}; fresh client: {served(reply)}")
            problems += check("body", ends, reply, body_timeout, crowd)

            over = cap + max(10, cap // 20)
            ends, reply, first = await with_fresh(
                port,
                [hold_open(port, limit) for _ in range(over)],
                spread,
                every,
                header_timeout * 3,
            )
            print(
                f"{over} silent connections (cap {cap}): {closings(ends)}; a fresh client"
                f" meanwhile: first {first}, served after {reply.seconds:.1f} s"
            )
            refused = sum(1 for _, got in ends if got[9:12] == b"503")
            if refused < over - cap:
                problems.append(f"only {refused} refused past the cap")
            if not reply.done:
                problems.append(f"over the cap: the fresh client got {served(reply)}")
        finally:
            await asyncio.to_thread(gateway.stop)
    lines = [line for line in gateway.log_text().splitlines() if line]
    kinds: dict[str, list[str]] = {}
    for line in lines:  # alike but for their numbers: one kind
        kinds.setdefault(re.sub(r"\d+", "N", line.split(" ", 2)[-1]), []).append(line)
    print(f"log lines: {len(lines)}")
    for same in sorted(kinds.values(), key=len, reverse=True)[:10]:
        print(f"  {len(same)} x {same[0][:200]}")
    return problems


def served(reply: rig.Reply) -> str:
    return f"{reply.shape()} in {reply.seconds * 1000:.0f} ms"


def check(what: str, ends: list[Closed], reply: rig.Reply, timeout: float, crowd: int) -> list[str]:
    """The fresh client was served; every trickler was closed, within its timeout (+50 %)."""
    problems = []
    if reply.status != 200 or not reply.done:
        problems.append(f"{what}: the fresh client got {reply.shape()}")
    shut = [t for t, _ in ends if t is not None]
    if len(shut) < crowd:
        problems.append(f"{what}: {crowd - len(shut)} tricklers never closed")
    elif max(shut) > timeout * 1.5 + 2:
        problems.append(f"{what}: a trickler held on {max(shut):.1f} s")
    return problems


RUNS = {"kill9": kill9, "hostile": hostile, "slowloris": slowloris}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", choices=sorted(RUNS))
    parser.add_argument("--scale", choices=("full", "small"), default="full")
    parser.add_argument("--repeats", type=int, default=0, help="kill9: runs (5; small 1)")
    parser.add_argument("--slow", type=int, default=0, help="kill9: slow streams (50; small 10)")
    parser.add_argument("--fast", type=int, default=4, help="kill9: fast request flows")
    parser.add_argument("--tricklers", type=int, default=0, help="slowloris: (990; small 30)")
    parser.add_argument("--verbose", action="store_true", help="hostile: print the gateway's log")
    args = parser.parse_args(argv)
    small = args.scale == "small"
    args.repeats = args.repeats or (1 if small else 5)
    args.slow = args.slow or (10 if small else 50)
    rig.raise_fd_limit()
    print(f"{args.run} ({args.scale}), {rig.machine()}", flush=True)
    import logging

    logging.getLogger("aiohttp").setLevel(logging.CRITICAL)  # the fakes' own complaints
    begun = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"ai-api-{args.run}-") as tmp:
        problems = asyncio.run(RUNS[args.run](args, Path(tmp)))
    print(f"ran in {time.monotonic() - begun:.1f} s")
    print(ok_line(problems), flush=True)


if __name__ == "__main__":
    rig.use_venv()
    main()
