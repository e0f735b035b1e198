"""The catalogue: each provider's model list read at start and every few hours; a configured
model it no longer lists is routed around and told once, and used again when it comes back;
`/v1/models` lists only what can answer; `ai-api models` prints it all. Against the fakes,
which list their models and answer a withdrawn one as Groq and Cerebras do."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import aiohttp

from ai_api.config import load_settings
from ai_api.fakes import FakeUpstream
from ai_api.server import running

from .conftest import KEYS, settings_for

GONE = "llama-3.1-8b-instant"  # one of the Groq preset's models, listed by the fake


async def listed(client: aiohttp.ClientSession, url: str) -> set[str]:
    async with client.get(url + "/v1/models") as response:
        assert response.status == 200
        return {m["id"] for m in (await response.json())["data"]}


async def ask(client: aiohttp.ClientSession, url: str, model: str) -> tuple[int, Any, Any]:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    async with client.post(url + "/v1/chat/completions", json=body) as response:
        return response.status, response.headers.get("X-AI-API-Provider"), await response.json()


def asked_for(fake: FakeUpstream, model: str) -> int:
    return sum(1 for seen in fake.requests if seen.body.get("model") == model)


async def until(check: Any) -> None:
    """Wait (five seconds at most) until `check()` is true."""
    for _ in range(250):
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the condition never held")


async def test_a_model_withdrawn_before_start_is_noticed_and_routed_around(
    groq, cerebras, client, caplog
):
    caplog.set_level("INFO", "ai_api.catalogue")
    groq.withdraw(GONE)
    async with running(settings_for(groq, cerebras, catalogue_every=3600)) as url:
        names = await listed(client, url)
        status, _, body = await ask(client, url, f"groq/{GONE}")
        same = await ask(client, url, GONE)  # the bare name: served by Groq only
        other = await ask(client, url, "groq/openai/gpt-oss-120b")
        async with client.get(url + "/metrics") as response:
            metrics = await response.text()
        async with client.get(url + "/usage") as response:
            members = (await response.json())["members"]
    assert f'ai_api_model_withdrawn{{model="{GONE}",provider="groq"}} 1.0' in metrics
    assert [m["withdrawn"] for m in members if m["name"] == f"groq/{GONE}"] == [True]
    assert not any(m["withdrawn"] for m in members if m["name"] != f"groq/{GONE}")
    assert groq.hits["GET /openai/v1/models"] >= 1
    assert cerebras.hits["GET /v1/models"] >= 1
    assert f"groq/{GONE}" not in names
    assert GONE not in names
    assert "groq/openai/gpt-oss-120b" in names
    assert "cerebras/gpt-oss-120b" in names
    assert status == 404
    assert body["error"]["code"] == "model_not_found"
    assert "no longer list" in body["error"]["message"]
    assert same[0] == 404
    assert other[0] == 200
    assert asked_for(groq, GONE) == 0  # never tried on a user's request
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert GONE in warnings[0]
    assert "GROQ_MODEL" in warnings[0]
    assert "openai/gpt-oss-120b" in warnings[0]  # what it could be changed to


async def test_a_model_withdrawn_mid_run_is_noticed_and_comes_back(groq, cerebras, client, caplog):
    caplog.set_level("INFO", "ai_api.catalogue")
    default = "openai/gpt-oss-120b"  # Groq's default: a member of `auto`
    settings = settings_for(groq, cerebras, catalogue_every=0.05)
    async with running(settings) as url:
        assert f"groq/{default}" in await listed(client, url)
        before = [await ask(client, url, "auto") for _ in range(4)]
        groq.withdraw(default)

        async def gone() -> bool:
            return f"groq/{default}" not in await listed(client, url)

        await until(gone)
        asked = asked_for(groq, default)
        during = [await ask(client, url, "auto") for _ in range(6)]
        asked_during = asked_for(groq, default)
        groq.restore(default)

        async def back() -> bool:
            return f"groq/{default}" in await listed(client, url)

        await until(back)
        after = [await ask(client, url, "auto") for _ in range(4)]
    assert {p for _, p, _ in before} == {"groq", "cerebras"}
    # While withdrawn, `auto` is answered by Cerebras alone, and Groq is not asked for it.
    assert [(s, p) for s, p, _ in during] == [(200, "cerebras")] * 6
    assert asked_during == asked
    assert {p for _, p, _ in after} == {"groq", "cerebras"}
    messages = [r.getMessage() for r in caplog.records]
    assert sum("no longer lists" in m for m in messages) == 1  # told once, not at every read
    assert sum("lists openai/gpt-oss-120b again" in m for m in messages) == 1


async def test_a_list_that_cannot_be_read_takes_nothing_out(groq, cerebras, client):
    await groq.stop()
    async with running(settings_for(groq, cerebras, catalogue_every=3600)) as url:
        names = await listed(client, url)
    assert f"groq/{GONE}" in names  # unknown is not withdrawn: evidence beats guesses


async def test_ai_api_models_prints_what_each_provider_lists_and_routes(groq, cerebras, tmp_path):
    groq.withdraw(GONE)
    groq.restore("some/new-model")  # listed by the provider, not configured here
    env = {
        "PATH": "/usr/bin:/bin",
        "GROQ_API_KEY": KEYS["groq"],
        "GROQ_BASE_URL": groq.base_url,
        "CEREBRAS_API_KEY": KEYS["cerebras"],
        "CEREBRAS_BASE_URL": cerebras.base_url,
    }
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "ai_api", "models", "--env-file", str(tmp_path / "none")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    out = done.stdout
    assert done.returncode == 1, done.stderr  # something configured is withdrawn
    assert "groq (Groq): lists 4 models" in out
    assert "* openai/gpt-oss-120b  routed as groq/openai/gpt-oss-120b" in out
    assert "requests/day" in out  # the preset's dated free-tier facts
    assert "    some/new-model" in out  # listed, not routed
    assert f"! {GONE}  configured but no longer listed" in out
    assert "cerebras (Cerebras): lists 3 models" in out
    assert "* gpt-oss-120b" in out
    assert KEYS["groq"] not in out + done.stderr


async def test_an_endpoint_reads_its_list_only_when_told_and_variants_count(client, tmp_path):
    async with FakeUpstream("openai") as fake:  # lists generic-large and generic-small
        path = tmp_path / "ai-api.toml"
        table = (
            "[providers.box]\nkind = 'openai'\nbase_url = '{url}/v1'\n"
            "models = ['generic-large:latest', 'generic-small', 'generic-gone']\n{extra}"
        )
        path.write_text(table.format(url=fake.base_url, extra=""))
        settings = load_settings({}, path).with_overrides(port=0, ledger="")
        async with running(settings) as url:
            unread = await listed(client, url)
        assert fake.hits["GET /v1/models"] == 0  # an unknown server's list is opt-in
        assert "box/generic-gone" in unread
        path.write_text(table.format(url=fake.base_url, extra="catalogue = true\n"))
        settings = load_settings({}, path).with_overrides(port=0, ledger="")
        async with running(settings) as url:
            read = await listed(client, url)
    assert fake.hits["GET /v1/models"] == 1
    assert "box/generic-gone" not in read
    assert "box/generic-large:latest" in read  # a variant of a listed model
    assert "box/generic-small" in read
