"""Several gateways sharing one budget: two instances on one Redis, and `--workers 2`."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import re
import signal
import sys
from typing import Any

import aiohttp
import pytest
import redis.asyncio

from ai_api.fakes import FakeUpstream, Fault
from ai_api.providers.presets import rates
from ai_api.server import running
from ai_api.settings import Secret

from .conftest import KEYS, settings_for
from .home_redis import running_redis

HI = {"messages": [{"role": "user", "content": "hola"}]}


def limited(settings: Any, **limits: int) -> Any:
    """`settings` with every model of every provider limited to `limits` (and a small
    completion cap, so that the token windows the fakes report never bind first)."""
    providers = tuple(
        dataclasses.replace(
            p,
            models=tuple(
                dataclasses.replace(m, limits=rates("configured", **limits), max_tokens=64)
                for m in p.models
            ),
        )
        for p in settings.providers
    )
    return dataclasses.replace(settings, providers=providers)


async def hammer(urls: list[str], count: int) -> list[int]:
    """`count` concurrent /chat requests spread over `urls`; their statuses."""
    async with aiohttp.ClientSession() as session:

        async def one(i: int) -> int:
            async with session.post(urls[i % len(urls)] + "/chat", json=HI) as response:
                await response.read()
                return response.status

        return list(await asyncio.gather(*(one(i) for i in range(count))))


async def test_two_instances_on_one_redis_never_overspend_the_upstream():
    async with (
        running_redis() as redis,
        FakeUpstream("groq", api_key=KEYS["groq"], token_delay=0.001) as groq,
    ):
        settings = limited(settings_for(groq, redis_url=Secret(redis.url)), rpm=5)
        async with running(settings) as a, running(settings) as b:
            statuses = await hammer([a, b], 24)
            # A second round inside the same minute: still nothing beyond the limit.
            statuses += await hammer([b, a], 6)
    assert len(groq.requests) == 5
    assert statuses.count(200) == 5
    assert statuses.count(429) == 25


async def test_two_instances_share_round_robin_turns_and_cooldowns():
    async with (
        running_redis() as redis,
        FakeUpstream("groq", api_key=KEYS["groq"]) as groq,
        FakeUpstream("cerebras", api_key=KEYS["cerebras"]) as cerebras,
    ):
        settings = settings_for(groq, cerebras, redis_url=Secret(redis.url))
        async with running(settings) as a, running(settings) as b, aiohttp.ClientSession() as s:
            seen = []
            for url in (a, b, a, b, a, b):
                async with s.post(url + "/chat", json=HI) as response:
                    await response.read()
                    seen.append(response.headers["X-AI-API-Provider"])
            assert seen == ["groq", "cerebras"] * 3
            # A 429 seen by one instance rests Groq for the other too.
            groq.add_fault(Fault(status=429, retry_after=300))
            async with s.post(a + "/chat", json=HI) as response:
                await response.read()
            before = len(groq.requests)
            for _ in range(4):
                async with s.post(b + "/chat", json=HI) as response:
                    await response.read()
                    assert response.headers["X-AI-API-Provider"] == "cerebras"
            assert len(groq.requests) == before


@pytest.mark.parametrize("home", ["sqlite", "redis"])
async def test_workers_share_one_port_and_one_budget(tmp_path, home):
    """Real worker processes (on their default event loop, uvloop where installed), their
    shared state in the ledger's SQLite file or in Redis."""
    async with contextlib.AsyncExitStack() as stack:
        groq = await stack.enter_async_context(
            FakeUpstream("groq", api_key=KEYS["groq"], token_delay=0.001)
        )
        redis_url = (
            (await stack.enter_async_context(running_redis())).url if home == "redis" else ""
        )
        model = '{ name = "openai/gpt-oss-120b", rpm = 6, max_tokens = 64 }'
        (tmp_path / "ai-api.toml").write_text(f"[providers.groq]\nmodels = [{model}]\n")
        env = {
            **{k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_BASE_URL"))},
            "GROQ_API_KEY": KEYS["groq"],
            "GROQ_BASE_URL": groq.base_url,
            "AI_API_CONFIG": str(tmp_path / "ai-api.toml"),
            "AI_API_LEDGER": str(tmp_path / "usage.sqlite3"),
            "REDIS_URL": redis_url,
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "ai_api",
            "serve",
            "--port",
            "0",
            "--workers",
            "2",
            cwd=tmp_path,
            env=env,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            url, ready = await asyncio.wait_for(_workers_ready(process, 2), timeout=30)
            statuses = await hammer([url], 20)
        finally:
            process.send_signal(signal.SIGINT)
            await asyncio.wait_for(process.wait(), timeout=30)
        if home == "redis":  # the shared state really lives there
            client = redis.asyncio.Redis.from_url(redis_url)
            assert await client.dbsize() > 0
            await client.aclose()
    assert process.returncode == 0
    assert len(ready) == 2  # two worker processes served
    assert len(groq.requests) == 6
    assert statuses.count(200) == 6
    assert statuses.count(429) == 14


async def _workers_ready(process: asyncio.subprocess.Process, count: int) -> tuple[str, set[str]]:
    """The parent's URL once `count` workers logged that they listen."""
    assert process.stderr is not None
    url = ""
    pids: set[str] = set()
    log = ""
    while not url or len(pids) < count:
        line = (await process.stderr.readline()).decode()
        if not line:
            raise AssertionError(f"exited early:\n{log}")
        log += line
        if match := re.search(r"listening on (http://\S+) with \d+ workers", line):
            url = match.group(1)
        elif match := re.search(r"worker (\d+) listening on", line):
            pids.add(match.group(1))
    return url, pids
