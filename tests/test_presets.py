"""Every built-in preset through the same scenarios, each against a fake speaking its dialect.

Groq and Cerebras have fakes of their own; the other presets are OpenAI-compatible and are
played by the generic fake, mounted at the path of the preset's real base URL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlparse

import openai
import pytest

from ai_api.config import preset_settings
from ai_api.fakes import FLAVORS, FakeUpstream, Fault
from ai_api.providers import PRESETS, ProviderSpec
from ai_api.server import running
from ai_api.settings import Settings

HI: Any = [{"role": "user", "content": "hello"}]


def fake_for(spec: ProviderSpec) -> FakeUpstream:
    if spec.name in ("groq", "cerebras"):
        return FakeUpstream(spec.name, api_key="k")
    prefix = urlparse(spec.base_url.replace("{", "").replace("}", "")).path
    return FakeUpstream(FLAVORS["openai"].mounted(prefix + spec.chat_path))


def model_for(spec: ProviderSpec) -> str:
    return spec.default_model if spec.name in ("groq", "cerebras") else "generic-large"  # type: ignore[return-value]


@pytest.fixture(params=PRESETS, ids=lambda spec: spec.name)
async def served(request) -> AsyncIterator[tuple[ProviderSpec, FakeUpstream, str]]:
    spec: ProviderSpec = request.param
    async with fake_for(spec) as fake:
        prefix = urlparse(spec.base_url.replace("{", "").replace("}", "")).path
        root = fake.base_url if spec.name in ("groq", "cerebras") else fake.base_url + prefix
        env = {f"{spec.env_prefix}_MODEL": model_for(spec)}
        if spec.key_env:
            env[spec.key_env] = "k"
        provider = preset_settings(spec, env, base_url=root)
        async with running(Settings(providers=(provider,), port=0, ledger="")) as url:
            yield spec, fake, url


def sdk(url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0)


async def test_streams_with_usage(served):
    spec, fake, url = served
    fake.add_fault(Fault(comment_lines=2))
    async with sdk(url) as client:
        stream = await client.chat.completions.create(
            model="auto", messages=HI, stream=True, stream_options={"include_usage": True}
        )
        chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("Hello from the fake")
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0
    sent = fake.requests[0].body
    assert sent["model"] == model_for(spec)
    assert ("stream_options" in sent) == spec.stream_usage


async def test_fields_arrive_in_the_providers_dialect(served):
    spec, fake, url = served
    async with sdk(url) as client:
        completion = await client.chat.completions.create(
            model="auto", messages=HI, temperature=1.9, seed=7, user="u", max_tokens=30
        )
    assert completion.usage is not None
    sent = fake.requests[0].body
    assert sent[spec.max_tokens_field] == 30
    other = {"max_tokens", "max_completion_tokens"} - {spec.max_tokens_field}
    assert not other & sent.keys()
    assert sent["temperature"] == min(1.9, spec.max_temperature)
    seed_name = spec.renames.get("seed", "seed")
    assert (sent.get(seed_name) == 7) == ("seed" in spec.params)
    assert ("user" in sent) == ("user" in spec.params)


async def test_rate_limit_is_a_429_naming_the_provider(served):
    spec, fake, url = served
    fake.add_fault(Fault(status=429, retry_after=3))
    async with sdk(url) as client:
        with pytest.raises(openai.RateLimitError) as info:
            await client.chat.completions.create(model="auto", messages=HI)
    assert f"{spec.name}: HTTP 429" in info.value.message
    assert info.value.response.headers["retry-after"] == "3"
