#!/usr/bin/env python3
"""Schemathesis against the gateway's own OpenAPI description, in one command:

    python3 bench/fuzz.py [--examples N] [--seed S] [--workers W]

Starts fake Groq and Cerebras upstreams and a gateway over them, all on 127.0.0.1 (real HTTP,
answers without delay, a gateway key required), then runs `schemathesis run` on the
gateway's `/openapi.json`: every phase (examples, coverage, fuzzing, stateful), both positive
and negative data, every default check (no 5xx, status codes, content types, headers and
bodies as described, invalid data refused, valid data accepted, auth not ignored, `Allow` on
405...). At most `--examples` cases per operation and phase, one seed: the same run each time.
Prints the requests per endpoint and per status, the failures, the seconds taken; exits 1 if
schemathesis found a failure. The default count sends more than 20,000 requests, in about 11
minutes on a 2-core machine (docs/fuzzing.md has the last run's figures).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

try:
    import aiohttp  # noqa: F401 - only to tell whether this python has the dependencies
except ModuleNotFoundError:  # a python3 without the project's dependencies: use the repo's venv
    _VENV = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "python"
    if __name__ == "__main__" and _VENV.exists() and Path(sys.executable) != _VENV:
        os.execv(str(_VENV), [str(_VENV), *sys.argv])
    raise

from ai_api.config import preset_settings
from ai_api.fakes import FLAVORS, FakeUpstream
from ai_api.openapi import describe
from ai_api.providers.presets import CEREBRAS, GROQ
from ai_api.server import running
from ai_api.settings import GatewayKey, Secret, Settings

GATEWAY_KEY = "fuzz-gateway-key-0123456789"
KEYS = {"groq": "gsk_fuzz_key_0123456789", "cerebras": "csk-fuzz-key-0123456789"}
FULL_EXAMPLES = 2500
SEED = 14
ENDLESS = "/usage/requests/stream"
"""The dashboard's feed stays open until its client leaves: not fuzzed (a request of it can
only time out); tests/test_dashboard.py reads it."""
OPERATIONS = frozenset(
    (method.upper(), path)
    for path, item in describe(keys=True)["paths"].items()
    for method in item
    if path != ENDLESS
)
API_PATHS = frozenset(path for _, path in OPERATIONS)
_TEMPLATES = [
    (re.compile("^" + re.sub(r"\\\{[^}]*\\\}", ".+", re.escape(path)) + "$"), path)
    for path in sorted(API_PATHS)
    if "{" in path
]
"""Each templated path (`/v1/models/{model}`) as a pattern of the paths it stands for."""


def template_of(path: str) -> str:
    """The API path `path` is an instance of (itself when it has no parameter)."""
    if path in API_PATHS:
        return path
    return next((template for pattern, template in _TEMPLATES if pattern.match(path)), path)


CONFIG = """
# A tool_choice naming a tool of the request's tools cannot be said in JSON Schema: a valid
# body naming another tool is rightly a 400 (anthropic_wire.tool_options), on this operation.
[[operations]]
include-operation-id = "messages"
checks.positive_data_acceptance.expected-statuses = [
    "2xx", "3xx", "400", "401", "403", "404", "409", "429", "5xx",
]

# The items of `input` and `tools` are described as any objects: which ones the facade takes
# is checked by responses_wire.translate, a 400 naming them, on this operation.
[[operations]]
include-operation-id = "responses"
checks.positive_data_acceptance.expected-statuses = [
    "2xx", "3xx", "400", "401", "403", "404", "409", "429", "5xx",
]
"""
RUN_TIMEOUT = 3600.0
"""Seconds the schemathesis process may take before it is stopped (a bound, not a target)."""


@dataclass
class Findings:
    """What one run sent and found."""

    requests: int = 0
    per_endpoint: Counter[str] = field(default_factory=Counter)
    per_status: Counter[int] = field(default_factory=Counter)
    exit_code: int = 0
    output: str = ""
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        """Schemathesis found a failure or an error (its exit code says so)."""
        return self.exit_code != 0


@asynccontextmanager
async def gateway() -> AsyncIterator[str]:
    """Fakes and a gateway over them that requires `GATEWAY_KEY`; yields its base URL."""
    async with AsyncExitStack() as stack:
        providers = []
        for spec in (GROQ, CEREBRAS):
            # No free-tier limits, the fakes' or the presets': thousands of answers a minute,
            # none of them a 429 (the run is about the API, not about rationing).
            flavor = replace(FLAVORS[spec.name], requests_limit=None, tokens_limit=None)
            fake = FakeUpstream(flavor, api_key=KEYS[spec.name], token_delay=0.0)
            await stack.enter_async_context(fake)
            p = preset_settings(spec, {str(spec.key_env): KEYS[spec.name]}, base_url=fake.base_url)
            providers.append(replace(p, models=tuple(replace(m, limits=()) for m in p.models)))
        settings = Settings(
            providers=tuple(providers),
            port=0,
            ledger="",
            gateway_keys=(GatewayKey("fuzz", Secret(GATEWAY_KEY)),),
        )
        yield await stack.enter_async_context(running(settings))


def command(url: str, examples: int, seed: int, workers: int, scratch: Path) -> list[str]:
    """The `schemathesis run` command line for the gateway at `url`; its configuration and
    its HAR report in `scratch`."""
    config = scratch / "schemathesis.toml"
    config.write_text(CONFIG)
    return [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(config),
        "run",
        f"{url}/openapi.json",
        # Every operation: without a filter schemathesis leaves out the one serving the schema.
        "--include-path-regex",
        "^/",
        "--exclude-path",
        ENDLESS,
        "--header",
        f"Authorization: Bearer {GATEWAY_KEY}",
        "--max-examples",
        str(examples),
        "--seed",
        str(seed),
        "--workers",
        str(workers),
        "--generation-database",
        "none",
        "--request-timeout",
        "30",
        "--report",
        "har",
        "--report-har-path",
        str(scratch / "run.har"),
        "--no-color",
    ]


async def fuzz(url: str, examples: int, seed: int = SEED, workers: int = 1) -> Findings:
    """Run schemathesis on the gateway at `url`; count what it sent from its HAR report."""
    with tempfile.TemporaryDirectory(prefix="ai-api-fuzz-") as scratch:
        har = Path(scratch) / "run.har"
        started = time.perf_counter()
        process = await asyncio.create_subprocess_exec(
            *command(url, examples, seed, workers, Path(scratch)),
            cwd=scratch,  # schemathesis writes nothing else, but never into the checkout
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            out, _ = await asyncio.wait_for(process.communicate(), RUN_TIMEOUT)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise
        findings = Findings(
            exit_code=process.returncode or 0,
            output=out.decode(errors="replace"),
            seconds=time.perf_counter() - started,
        )
        entries = json.loads(har.read_text())["log"]["entries"] if har.exists() else []
    for entry in entries:
        method, url = entry["request"]["method"], entry["request"]["url"]
        path = template_of(urlsplit(url).path)
        # Probes of methods and paths the API does not have count on a line each.
        name = f"{method} {path}"
        if (method, path) not in OPERATIONS:
            name = "(other methods)" if path in API_PATHS else "(paths not in the API)"
        findings.per_endpoint[name] += 1
        findings.per_status[entry["response"]["status"]] += 1
    findings.requests = len(entries)
    return findings


def report(findings: Findings) -> str:
    """The figures of a run, as lines to print."""
    lines = [f"{findings.requests} requests in {findings.seconds:.0f} s", "", "Per endpoint:"]
    for name, count in sorted(findings.per_endpoint.items(), key=lambda item: -item[1]):
        lines.append(f"  {count:>7}  {name}")
    lines.append("Per status:")
    for status, count in sorted(findings.per_status.items()):
        lines.append(f"  {count:>7}  {status}")
    verdict = "FAILURES FOUND" if findings.failed else "no failure"
    lines.append(f"schemathesis: {verdict} (exit code {findings.exit_code})")
    return "\n".join(lines)


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=FULL_EXAMPLES)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    async with gateway() as url:
        findings = await fuzz(url, args.examples, args.seed, args.workers)
    print(findings.output)
    print(report(findings))
    return 1 if findings.failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
