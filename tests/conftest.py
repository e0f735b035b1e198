"""Shared fixtures: fake upstreams on loopback and a gateway served over real HTTP."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import replace
from typing import Any

import aiohttp
import pytest

from ai_api.config import preset_settings
from ai_api.fakes import FakeUpstream
from ai_api.providers import PRESETS
from ai_api.server import running
from ai_api.settings import Settings

PRESETS_BY_NAME = {spec.name: spec for spec in PRESETS}

pytest_plugins = ["tests.fake_clients"]

_ON_BOTH_LOOPS = {
    "test_http_client.py",
    "test_http_tunnel.py",
    "test_openai_compat.py",
    "test_connections.py",
}


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """The upstream client's tests run on asyncio's loop and on uvloop (the gateway's default):
    their transports differ. The others run on asyncio's."""
    loops: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {"asyncio": asyncio.new_event_loop}
    if item.path.name in _ON_BOTH_LOOPS:
        try:
            import uvloop
        except ImportError:  # Windows: the gateway runs on asyncio's loop there too
            return loops
        loops["uvloop"] = uvloop.new_event_loop
    return loops


KEYS = {"groq": "gsk_test_key_0123456789", "cerebras": "csk-test-key-0123456789"}


@pytest.fixture
async def groq() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream("groq", api_key=KEYS["groq"], token_delay=0.0) as fake:
        yield fake


@pytest.fixture
async def cerebras() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream("cerebras", api_key=KEYS["cerebras"], token_delay=0.0) as fake:
        yield fake


def settings_for(*fakes: FakeUpstream, limits: bool = False, **overrides: Any) -> Settings:
    """Settings with one provider per fake, in the order given, on a free port, with an
    in-memory ledger; without the presets' free-tier limits unless `limits`; without reading
    the providers' model lists unless `catalogue_every` is given (a list read at start opens a
    connection that the first request would reuse, which tests of first attempts must not
    have: `test_catalogue` reads them)."""
    overrides.setdefault("catalogue_every", 0.0)
    providers = []
    for fake in fakes:
        spec = PRESETS_BY_NAME[fake.flavor.name]
        p = preset_settings(spec, {str(spec.key_env): KEYS[spec.name]}, base_url=fake.base_url)
        if not limits:
            p = replace(p, models=tuple(replace(m, limits=()) for m in p.models))
        providers.append(p)
    return Settings(providers=tuple(providers), port=0, ledger="").with_overrides(**overrides)


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


@pytest.fixture
async def gateway(groq: FakeUpstream, cerebras: FakeUpstream) -> AsyncIterator[str]:
    """A gateway over both fakes, Groq first; yields its base URL."""
    async with running(settings_for(groq, cerebras)) as url:
        yield url


def seeing(settings: Settings, provider: str) -> Settings:
    """`settings` with every model of `provider` marked as taking images (the fakes' models
    are gpt-oss, which the presets know to take text only)."""
    providers = tuple(
        replace(p, models=tuple(replace(m, images=True) for m in p.models))
        if p.name == provider
        else p
        for p in settings.providers
    )
    return replace(settings, providers=providers)


@pytest.fixture
async def seeing_gateway(groq: FakeUpstream, cerebras: FakeUpstream) -> AsyncIterator[str]:
    """A gateway over both fakes, Groq first, whose Groq models take images."""
    async with running(seeing(settings_for(groq, cerebras), "groq")) as url:
        yield url


def parse_events(text: str) -> list[tuple[str, Any]]:
    """(event name, decoded data) for each SSE event; unnamed events are `message`."""
    events = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        name, data = "message", []
        for line in block.split("\n"):
            field, _, value = line.partition(": ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
        events.append((name, json.loads("\n".join(data))))
    return events


def content_of(events: list[tuple[str, Any]]) -> str:
    return "".join(data["content"] for name, data in events if name == "message")
