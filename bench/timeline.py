"""Where one request's time goes at c=1: when each of ai-api's steps happens, counted from the
moment the request's bytes arrive.

    .venv/bin/python bench/timeline.py [--json] [--requests 3000]

Runs the canned upstream and ai-api each in its own process, as `bench/run.py` does, and drives
them with `bench/load.py` at concurrency 1. ai-api runs under this file's `--serve`, which wraps
a few named functions (aiohttp's request intake and its writes to the client; ai-api's handler,
the start of the attempt, the upstream request, the upstream's bytes, headers and reader
wake-ups, event parsing, the settlement and, for whole answers, the JSON assembly) to note when
each is entered (`>`) and left (`<`), and reports for every step the median of its first and
last moment in a request. Each wrap costs about a microsecond, so the timeline reads a little
long: its shape is the point. The names are ai-api's internals; when one moves, `--serve` fails
naming it. Everything listens on 127.0.0.1; the load is bounded by `--requests` and a timeout.
"""

from __future__ import annotations

import argparse
import atexit
import functools
import importlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent

# (step, module, attribute path, async?, also note the exit?)
STEPS = (
    ("request in", "aiohttp.web_protocol", "RequestHandler.data_received", False, False),
    ("handler", "ai_api.api_openai", "chat_completions", True, False),
    ("attempt begun", "ai_api.rationing", "Rationing.begin", True, True),
    ("upstream request", "ai_api.http_client", "Endpoint.post", True, False),
    ("upstream bytes", "ai_api.http_connection", "Connection.data_received", False, False),
    ("upstream headers", "ai_api.http_response", "Response._start", False, False),
    ("reader woken", "ai_api.http_response", "Response._wake", False, False),
    ("events parsed", "ai_api.providers.openai_compat", "parse_events", False, True),
    ("settlement", "ai_api.rationing", "Rationing.succeeded", True, True),
    ("JSON assembled", "ai_api.api_openai", "_complete", True, True),
    ("written to the client", "aiohttp.http_writer", "StreamWriter._writelines", False, False),
    ("written to the client", "aiohttp.http_writer", "StreamWriter._write", False, False),
)


def serve(out: Path, argv: list[str]) -> int:
    """Run `ai-api argv` with the steps wrapped; write their timeline to `out` at exit."""
    marks: list[tuple[str, float]] = []
    clock = time.perf_counter

    def wrapped(step: str, fn: Callable[..., Any], is_async: bool, exit_too: bool) -> Any:
        if is_async:

            @functools.wraps(fn)
            async def noted_async(*args: Any, **kwargs: Any) -> Any:
                marks.append((f"> {step}", clock()))
                try:
                    return await fn(*args, **kwargs)
                finally:
                    if exit_too:
                        marks.append((f"< {step}", clock()))

            return noted_async

        @functools.wraps(fn)
        def noted(*args: Any, **kwargs: Any) -> Any:
            if args[1:2] != (b"",):  # aiohttp calls data_received(b"") to re-parse: no arrival
                marks.append((f"> {step}", clock()))
            try:
                return fn(*args, **kwargs)
            finally:
                if exit_too:
                    marks.append((f"< {step}", clock()))

        return noted

    for step, module_name, path, is_async, exit_too in STEPS:
        owner: Any = importlib.import_module(module_name)
        *parents, name = path.split(".")
        for parent in parents:
            owner = getattr(owner, parent)
        if not hasattr(owner, name):
            raise SystemExit(f"bench/timeline.py: {module_name}.{path} is gone; update STEPS")
        setattr(owner, name, wrapped(step, getattr(owner, name), is_async, exit_too))

    atexit.register(lambda: out.write_text(json.dumps(summarize(marks))))
    from ai_api.cli import main

    return main(argv)


def summarize(marks: list[tuple[str, float]]) -> dict[str, Any]:
    """Per step: the median of its first and last moment in a request (µs since the request's
    first bytes) and of its count; requests split where a request arrives after a write."""
    requests: list[list[tuple[str, float]]] = []
    written = True
    for mark, at in marks:
        if mark == "> request in" and written:
            requests.append([])
            written = False
        if requests:
            requests[-1].append((mark, at))
        written = written or mark == "> written to the client"
    requests = requests[len(requests) // 5 :]  # the first fifth warms up
    firsts: dict[str, list[float]] = {}
    lasts: dict[str, list[float]] = {}
    counts: dict[str, list[int]] = {}
    for request in requests:
        start = request[0][1]
        seen: dict[str, list[float]] = {}
        for mark, at in request:
            seen.setdefault(mark, []).append((at - start) * 1e6)
        for mark, times in seen.items():
            firsts.setdefault(mark, []).append(times[0])
            lasts.setdefault(mark, []).append(times[-1])
            counts.setdefault(mark, []).append(len(times))
    steps = [
        {
            "mark": mark,
            "first_us": statistics.median(firsts[mark]),
            "last_us": statistics.median(lasts[mark]),
            "count": statistics.median(counts[mark]),
        }
        for mark in firsts
    ]
    steps.sort(key=lambda s: s["first_us"])
    return {"requests": len(requests), "steps": steps}


def drive(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(BENCH))
    import run as bench

    tmp = tempfile.mkdtemp(prefix="ai-api-timeline-")
    bench.snapshot_source(tmp)
    key = "sk-bench-timeline"
    upstream = [str(bench.PY), str(BENCH / "upstream.py")]
    fast_port, slow_port = bench.free_port(), bench.free_port()
    env = bench.base_env(tmp)
    fast = bench.Proc("upstream-fast", [*upstream, "--port", str(fast_port)], env, tmp, tmp)
    slow_cmd = [*upstream, "--port", str(slow_port), "--chunk-delay", "0.1"]
    slow = bench.Proc("upstream-slow", slow_cmd, env, tmp, tmp)
    out = Path(tmp) / "timeline.json"
    launcher = [str(Path(__file__).resolve()), "--serve", str(out)]
    ai_api, port = bench.start_ai_api("ai-api", tmp, fast_port, slow_port, key, launcher)
    try:
        for proc, p in ((fast, fast_port), (slow, slow_port), (ai_api, port)):
            bench.wait_ready(proc, p, key, bench.MODEL, 30)
        target = bench.Target("b", "b (ai-api)", ai_api, port, key)
        result = bench.run_load(
            target,
            stream=not args.json,
            concurrency=1,
            duration=60,
            max_requests=args.requests,
            upstream=[fast],
        )
    finally:
        for proc in (ai_api, fast, slow):
            proc.stop()
    kind = "whole answers (json)" if args.json else "streams"
    latency = result.get("latency_ms", {})
    print(
        f"{kind}, c=1, {result.get('completed', 0)} requests: p50 {latency.get('p50', 0):.3f} ms"
        f" at the client, ai-api's CPU {result.get('cpu_ms_per_req') or 0:.3f} ms a request"
    )
    if not out.exists():
        raise SystemExit(f"no timeline written; ai-api's log:\n{ai_api.tail()}")
    timeline = json.loads(out.read_text())
    print(f"median µs since the request's bytes arrived, over {timeline['requests']} requests:")
    print(f"{'first':>8} {'last':>8} {'count':>5}  step (> entered, < left)")
    for s in timeline["steps"]:
        print(f"{s['first_us']:8.1f} {s['last_us']:8.1f} {s['count']:5g}  {s['mark']}")


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--serve":
        sys.exit(serve(Path(sys.argv[2]), sys.argv[3:]))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="clients ask for whole answers")
    parser.add_argument("--requests", type=int, default=3000)
    drive(parser.parse_args())


if __name__ == "__main__":
    main()
