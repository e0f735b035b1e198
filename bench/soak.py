#!/usr/bin/env python3
"""The soak: a real ai-api holding 1,000 slow streams open for 10 minutes, its memory sampled.

    python3 bench/soak.py [--minutes 10] [--streams 1000] [--chunk-delay 1.0] [--chunks 40]
                          [--warmup 1] [--every 10] [--json]

Starts the canned upstream (`bench/upstream.py`: one event every `--chunk-delay` s, `--chunks`
content events, ~44 s an answer by default) and `python -m ai_api serve` (SQLite ledger in a
temporary directory, limits too large to reach, `AI_API_MAX_CONNECTIONS` at streams + 256 so
the closing connections of replaced streams never meet the cap), then holds `--streams`
streams on `/v1/chat/completions`, each on its own connection and replaced by a new one the
moment it ends. The first ones start spread over one answer's length, so ends are spread too.
Every `--every` s it samples the gateway's RSS (VmRSS), its open descriptors and the streams
open (their head received, their end not yet). At the end: streams answered and in error,
RSS at the end of the warm-up against the end, the least-squares slope after the warm-up
(MB per 10 minutes), the peak, and the verdict: flat when the fitted growth after the warm-up,
over 10 minutes, is under 5 MB or under 5 % of the warm-up RSS.

Bounded: every stream gives up after 180 s, the run stops replacing streams at its end and
cancels those still open; everything on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rig

STREAM_LIMIT = 180.0
FLAT_MB = 5.0
FLAT_SHARE = 0.05


@dataclass(slots=True)
class Tally:
    """The clients' counts."""

    open: int = 0
    """Streams asked for (the request sent) and not yet ended."""
    streaming: int = 0
    """Of those, the ones whose head came (the gateway sends it with the first event)."""
    most_open: int = 0
    answered: int = 0
    errors: int = 0
    kinds: dict[str, int] = field(default_factory=dict)

    def error(self, what: str) -> None:
        self.errors += 1
        self.kinds[what] = self.kinds.get(what, 0) + 1


async def one_stream(port: int, tally: Tally) -> None:
    body = rig.chat_body(True)
    request = rig.post_head("/v1/chat/completions", port, len(body)) + body
    writer: asyncio.StreamWriter | None = None
    counted = streamed = False
    try:
        async with asyncio.timeout(STREAM_LIMIT):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request)
            tally.open += 1
            counted = True
            tally.most_open = max(tally.most_open, tally.open)
            first = await reader.read(1 << 16)
            if not first.startswith(b"HTTP/1.1 200"):
                tally.error(first[:12].decode(errors="replace") or "closed before a head")
                return
            tally.streaming += 1
            streamed = True
            tail = first[-16:]
            done = b"data: [DONE]" in first
            while data := await reader.read(1 << 16):
                done = done or b"data: [DONE]" in tail + data
                tail = data[-16:]
            if done:
                tally.answered += 1
            else:
                tally.error("stream without [DONE]")
    except TimeoutError:
        tally.error(f"no end within {STREAM_LIMIT:g} s")
    except OSError as exc:
        tally.error(type(exc).__name__)
    finally:
        tally.open -= counted
        tally.streaming -= streamed
        if writer is not None:
            writer.close()


async def keep_open(port: int, tally: Tally, delay: float, until: float) -> None:
    """One slot: a stream, and another when it ends, until `until`."""
    await asyncio.sleep(delay)
    while time.monotonic() < until:
        await one_stream(port, tally)


@dataclass(slots=True)
class Sample:
    t: float
    rss_mb: float
    fds: int
    open_streams: int
    streaming: int
    answered: int
    errors: int


async def drive(args: argparse.Namespace, gateway: rig.Gateway) -> tuple[Tally, list[Sample]]:
    tally = Tally()
    begun = time.monotonic()
    until = begun + args.minutes * 60
    spread = (args.chunks + 4) * args.chunk_delay
    slots = [
        asyncio.create_task(keep_open(gateway.port, tally, i * spread / args.streams, until))
        for i in range(args.streams)
    ]
    samples: list[Sample] = []
    while (now := time.monotonic()) < until:
        sample = Sample(
            round(now - begun, 1),
            round(gateway.rss_mb(), 2),
            gateway.fds(),
            tally.open,
            tally.streaming,
            tally.answered,
            tally.errors,
        )
        samples.append(sample)
        if not args.json:
            print(
                f"  {sample.t:6.0f} s  RSS {sample.rss_mb:6.1f} MB  fds {sample.fds:5d}"
                f"  open {sample.open_streams:5d} ({sample.streaming:5d} streaming)"
                f"  answered {sample.answered:6d}"
                f"  errors {sample.errors}",
                flush=True,
            )
        await asyncio.sleep(min(args.every, max(0.0, until - time.monotonic())))
    samples.append(
        Sample(
            round(time.monotonic() - begun, 1),
            round(gateway.rss_mb(), 2),
            gateway.fds(),
            tally.open,
            tally.streaming,
            tally.answered,
            tally.errors,
        )
    )
    for slot in slots:
        slot.cancel()
    await asyncio.gather(*slots, return_exceptions=True)
    return tally, samples


def report(args: argparse.Namespace, tally: Tally, samples: list[Sample]) -> dict:
    warm = args.warmup * 60
    after = [s for s in samples if s.t >= warm] or samples[-1:]
    start, end = after[0].rss_mb, after[-1].rss_mb
    slope = rig.least_squares([(s.t, s.rss_mb) for s in after]) * 600  # MB per 10 min
    threshold = max(FLAT_MB, FLAT_SHARE * start)
    steady = [s.open_streams for s in after]
    streaming = [s.streaming for s in after]
    return {
        "when": rig.machine(),
        "minutes": args.minutes,
        "streams": args.streams,
        "answered": tally.answered,
        "errors": tally.errors,
        "error_kinds": tally.kinds,
        "most_open": tally.most_open,
        "open_after_warmup_min": min(steady),
        "open_after_warmup_max": max(steady),
        "streaming_after_warmup_min": min(streaming),
        "streaming_after_warmup_max": max(streaming),
        "rss_warm_mb": start,
        "rss_end_mb": end,
        "rss_max_mb": max(s.rss_mb for s in samples),
        "fds_max": max(s.fds for s in samples),
        "slope_mb_per_10min": round(slope, 2),
        "threshold_mb": round(threshold, 2),
        "verdict": "flat" if slope < threshold else "growing",
        "samples": [asdict(s) for s in samples],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--chunk-delay", type=float, default=1.0, help="s between events")
    parser.add_argument("--chunks", type=int, default=40, help="content events an answer")
    parser.add_argument("--warmup", type=float, default=1.0, help="minutes left out of the fit")
    parser.add_argument("--every", type=float, default=10.0, help="s between samples")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rig.raise_fd_limit()
    with tempfile.TemporaryDirectory(prefix="ai-api-soak-") as tmp:
        port = rig.free_port()
        upstream = subprocess.Popen(
            [
                *(str(rig.PY), str(rig.ROOT / "bench" / "upstream.py"), "--port", str(port)),
                *("--chunks", str(args.chunks), "--chunk-delay", str(args.chunk_delay)),
            ],
            stdout=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        env = {"AI_API_MAX_CONNECTIONS": str(args.streams + 256)}
        config = rig.provider_toml("groq", f"http://127.0.0.1:{port}")
        gateway = rig.Gateway(Path(tmp), config, env)
        try:
            gateway.start()
            if not args.json:
                print(f"soak: {args.streams} streams for {args.minutes:g} min, {rig.machine()}")
            tally, samples = asyncio.run(drive(args, gateway))
        finally:
            gateway.stop()
            upstream.terminate()
            upstream.wait(timeout=10)
    result = report(args, tally, samples)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"answered {result['answered']}, errors {result['errors']} {result['error_kinds'] or ''}"
        f"\nopen streams after warm-up: {result['open_after_warmup_min']}"
        f"-{result['open_after_warmup_max']} (most {result['most_open']}), of which"
        f" {result['streaming_after_warmup_min']}-{result['streaming_after_warmup_max']} had"
        " their head (it comes with the first event),"
        f" descriptors at most {result['fds_max']}"
        f"\nRSS {result['rss_warm_mb']:.1f} MB after warm-up, {result['rss_end_mb']:.1f} MB at"
        f" the end, max {result['rss_max_mb']:.1f} MB;"
        f" slope {result['slope_mb_per_10min']:+.2f} MB per 10 min"
        f"\nverdict: {result['verdict']} (threshold {result['threshold_mb']:.1f} MB per 10 min)"
    )


if __name__ == "__main__":
    rig.use_venv()
    main()
