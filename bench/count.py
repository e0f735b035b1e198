"""One proxy hop's cost in machine instructions: the same on every run, on a noisy machine too.

    .venv/bin/python bench/count.py [--mode together|separate] [--json] [--loop uvloop|asyncio]
                                    [--targets direct,pass-through,ai-api]

    .venv/bin/python bench/count.py --targets direct,ai-api,ai-api-messages,ai-api-responses

Timings on a shared VM move by tens of percent from one minute to the next; instruction
counts do not (two runs of the same source agree within ~0.3 %). This runs `bench/hop.py
--only TARGET` under valgrind's callgrind twice per target, with 100 and with 400 requests,
and divides the difference by 300: the instructions one request costs the whole process
(upstream, client and, but for `direct`, the proxy), start-up and warm-up cancelled out. A
proxy's hop is its count less the direct one. Instructions are not time (a cache miss or a
system call costs more than its count shows, and valgrind serialises threads), so confirm a
gain with `bench/hop.py` or `bench/run.py`; but a change that lowers the count lowers the work.

The targets `ai-api-messages` and `ai-api-responses` ask ai-api the same question (prompt,
`max_tokens`, the same upstream answer) through `/v1/messages` and `/v1/responses`; with
`ai-api` and `direct` beside them, each facade's hop is also given against the chat
completions hop (what the facade's translation costs).

Needs valgrind (`apt-get install valgrind`). Takes about 3 minutes, two targets at a time.
Everything listens on 127.0.0.1; every run is bounded by its request count and a timeout.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BENCH = Path(__file__).resolve().parent
FACADES = ("ai-api-messages", "ai-api-responses")
TARGETS = ("direct", "pass-through", "ai-api", *FACADES)
SMALL, LARGE = 100, 400
_COLLECTED = re.compile(rb"Collected : (\d+)")


def instructions(target: str, requests: int, args: argparse.Namespace) -> int:
    """Instructions the whole hop.py process executed driving `requests` through `target`."""
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        str(BENCH / "hop.py"),
        "--only",
        target,
        "--requests",
        str(requests),
        "--mode",
        args.mode,
        "--loop",
        args.loop,
    ] + (["--json"] if args.json else [])
    # The C allocator, which valgrind follows; a fixed hash seed, so that dicts and sets are
    # laid out (and probed) the same way on every run.
    env = {**os.environ, "PYTHONMALLOC": "malloc", "PYTHONHASHSEED": "0"}
    done = subprocess.run(command, capture_output=True, env=env, timeout=900, check=False)
    found = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"{target} failed:\n{done.stderr.decode(errors='replace')[-2000:]}")
    return int(found.group(1))


def per_request(target: str, args: argparse.Namespace) -> int:
    small = instructions(target, SMALL, args)
    large = instructions(target, LARGE, args)
    return (large - small) // (LARGE - SMALL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=("together", "separate"), default="together")
    parser.add_argument("--json", action="store_true", help="clients ask for a whole answer")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--targets", default="direct,pass-through,ai-api")
    args = parser.parse_args()
    names = [t for t in args.targets.split(",") if t]
    if not names or not set(names) <= set(TARGETS):
        parser.error(f"--targets: a comma-separated subset of {','.join(TARGETS)}")
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is needed: apt-get install valgrind")
    with ThreadPoolExecutor(max_workers=2) as pool:
        counts = dict(zip(names, pool.map(lambda t: per_request(t, args), names), strict=True))
    kind = "json" if args.json else "stream"
    print(f"{kind}, {args.mode}, {args.loop}: instructions per request (whole process)")
    for name, count in counts.items():
        hop = ""
        if "direct" in counts and name != "direct":
            hop = f"; hop {count - counts['direct']:,}"
        print(f"  {name:<16} {count:>11,}{hop}")
    if {"direct", "pass-through", "ai-api"} <= counts.keys():
        ratio = (counts["ai-api"] - counts["direct"]) / (counts["pass-through"] - counts["direct"])
        print(f"  ai-api / pass-through hop: {ratio:.2f}")
    for name in FACADES:
        if name in counts and "ai-api" in counts:
            whole = counts[name] / counts["ai-api"]
            line = f"  {name} / ai-api: {whole:.3f} (whole process)"
            if "direct" in counts:
                hop = (counts[name] - counts["direct"]) / (counts["ai-api"] - counts["direct"])
                line += f", {hop:.3f} (hop)"
            print(line)


if __name__ == "__main__":
    main()
