"""Fixtures shared by the fake-upstream tests: the fakes and the official SDK clients on them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import groq
import pytest
from cerebras.cloud import sdk as cerebras

from ai_api.fakes import FakeUpstream

GROQ_KEY = "gsk_test"
CEREBRAS_KEY = "csk-test"


@pytest.fixture
async def groq_fake() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream("groq", api_key=GROQ_KEY) as fake:
        yield fake


@pytest.fixture
async def cerebras_fake() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream("cerebras", api_key=CEREBRAS_KEY) as fake:
        yield fake


@pytest.fixture
async def groq_client(groq_fake: FakeUpstream) -> AsyncIterator[groq.AsyncGroq]:
    client = groq.AsyncGroq(api_key=GROQ_KEY, base_url=groq_fake.base_url, max_retries=0)
    yield client
    await client.close()


@pytest.fixture
async def cerebras_client(cerebras_fake: FakeUpstream) -> AsyncIterator[cerebras.AsyncCerebras]:
    client = cerebras.AsyncCerebras(
        api_key=CEREBRAS_KEY,
        base_url=cerebras_fake.base_url,
        max_retries=0,
        warm_tcp_connection=False,
    )
    yield client
    await client.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client
