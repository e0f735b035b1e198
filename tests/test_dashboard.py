"""The dashboard: its data endpoints over real HTTP, and the page in a real headless Chromium
(Debian's, driven by Playwright) over a gateway of the fakes."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Page, async_playwright, expect

from ai_api.fakes import FakeUpstream, Fault
from ai_api.server import running
from ai_api.settings import GatewayKey, Secret, Settings

from .conftest import KEYS, settings_for
from .test_cli import ai_api
from .test_metrics import answered_by_both, fresh
from .test_server import gateway_env

GATEWAY_KEY = "gw-dashboard-test-key-0123456789"
AUTH = {"Authorization": f"Bearer {GATEWAY_KEY}"}
HI = [{"role": "user", "content": "hi"}]


def keyed(*fakes: FakeUpstream, tmp_path: Path) -> Settings:
    keys = (GatewayKey("AI_API_KEYS", Secret(GATEWAY_KEY)),)
    return settings_for(*fakes, limits=True, gateway_keys=keys, ledger=str(tmp_path / "u.db"))


async def events(response: aiohttp.ClientResponse, wanted: int) -> list[tuple[str, object]]:
    """The first `wanted` named events of an SSE answer."""
    found: list[tuple[str, object]] = []
    buffer = ""
    while len(found) < wanted:
        chunk = await asyncio.wait_for(response.content.readany(), 10)
        assert chunk, "the feed ended"
        buffer += chunk.decode()
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            lines = dict(line.split(": ", 1) for line in block.split("\n") if ": " in line)
            if "event" in lines:
                found.append((lines["event"], json.loads(lines["data"])))
    return found


async def test_the_data_endpoints_tell_what_was_sent(
    groq: FakeUpstream, cerebras: FakeUpstream, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    async with running(keyed(groq, cerebras, tmp_path=tmp_path)) as url:
        async with client.get(url + "/dashboard") as r:  # the page needs no key
            assert r.status == 200
            assert r.content_type == "text/html"
            page = await r.text()
        for asset in ("/dashboard/app.js", "/dashboard/app.css"):
            async with client.get(url + asset) as r:
                assert r.status == 200
        async with client.get(url + "/", allow_redirects=False) as r:
            assert (r.status, r.headers["Location"]) == (302, "/dashboard")
        async with client.get(url + "/usage/requests") as r:  # the data does
            assert r.status == 401
        async with client.get(url + "/usage/requests/stream", headers=AUTH) as feed:
            assert feed.headers["Content-Type"] == "text/event-stream"
            [(kind, _)] = await events(feed, 1)  # the usage of today comes first
            assert kind == "usage"
            chat = url + "/v1/chat/completions"
            for _ in range(2):
                async with client.post(chat, json={"messages": HI}, headers=AUTH) as r:
                    assert r.status == 200
            told = await events(feed, 2)
        async with client.get(url + "/usage/requests?limit=5", headers=AUTH) as r:
            last = (await r.json())["requests"]
        async with client.get(url + "/usage/hours?hours=2", headers=AUTH) as r:
            hours = await r.json()
        async with client.get(url + "/usage/hours?hours=0", headers=AUTH) as r:
            assert r.status == 400
            assert (await r.json())["error"]["param"] == "hours"
    assert '<script src="/dashboard/app.js">' in page
    assert [kind for kind, _ in told] == ["request", "request"]
    assert [r["provider"] for _, r in told] == ["groq", "cerebras"]  # type: ignore[index]
    assert [r["provider"] for r in last] == ["groq", "cerebras"]
    assert all(r["status"] == 200 and r["attempts"] == 1 for r in last)
    assert sorted((h["provider"], h["requests"]) for h in hours["hours"]) == [
        ("cerebras", 1),
        ("groq", 1),
    ]
    assert sum(h["completion_tokens"] for h in hours["hours"]) == sum(
        r["completion_tokens"] for r in last
    )


@pytest.fixture
async def page() -> AsyncIterator[Page]:
    chromium = shutil.which("chromium")
    assert chromium, "the browser test needs Debian's chromium (.ci/run installs it)"
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            yield await browser.new_page(viewport={"width": 1100, "height": 1300})
        finally:
            await browser.close()


async def test_the_page_asks_for_the_key_and_shows_requests_live(
    groq: FakeUpstream,
    cerebras: FakeUpstream,
    client: aiohttp.ClientSession,
    page: Page,
    tmp_path: Path,
) -> None:
    async with running(keyed(groq, cerebras, tmp_path=tmp_path)) as url:
        await page.goto(url + "/dashboard")
        await expect(page.locator("#key-form")).to_be_visible()
        await page.fill("#key", "not-the-key")
        await page.click("#key-form button")
        await expect(page.locator("#key-error")).to_contain_text("not valid")
        await page.fill("#key", GATEWAY_KEY)
        await page.click("#key-form button")
        await expect(page.locator("#status")).to_have_text("live")
        await expect(page.locator("#key-form")).to_be_hidden()
        groq_budget = page.locator(".budget", has_text="openai/gpt-oss-120b").first
        await expect(groq_budget).to_contain_text("requests / ")
        await expect(groq_budget).to_contain_text("built-in")  # where its limits come from
        cerebras_budget = page.locator(".budget", has_text="gpt-oss-120b").filter(
            has_text="cerebras"
        )
        await expect(cerebras_budget).to_contain_text("tokens / ")
        for member in ("groq/openai/gpt-oss-120b", "cerebras/gpt-oss-120b"):
            await expect(page.locator(f'.member[data-member="{member}"]')).to_have_count(1)

        chat = url + "/v1/chat/completions"
        async with client.post(chat, json={"messages": HI}, headers=AUTH) as r:  # Groq
            assert r.status == 200
        cerebras.add_fault(Fault(status=503, retry_after=60))  # its turn: Groq takes over
        async with client.post(chat, json={"messages": HI}, headers=AUTH) as r:
            assert r.headers["X-AI-API-Provider"] == "groq"
        groq.add_fault(Fault(status=429, retry_after=60))
        async with client.post(chat, json={"messages": HI}, headers=AUTH) as r:
            assert r.status == 429  # Groq's 429, Cerebras resting
        async with client.post(chat, json={"messages": HI}, headers=AUTH) as r:
            assert r.status == 429  # every member out: no attempt

        rows = page.locator("#requests tbody tr")
        await expect(rows).to_have_count(4, timeout=10_000)
        newest = rows.nth(0)
        await expect(newest).to_have_attribute("data-status", "429")
        await expect(newest).to_have_attribute("data-attempts", "0")
        await expect(newest).to_contain_text("rate_limit_exceeded")
        failover = rows.nth(2)
        await expect(failover).to_have_attribute("data-status", "200")
        await expect(failover).to_have_attribute("data-attempts", "2")
        await expect(failover).to_have_attribute("data-member", "groq/openai/gpt-oss-120b")
        await expect(rows.nth(3)).to_have_attribute("data-attempts", "1")
        # The rests show on the members once the next usage event comes.
        await expect(page.locator('.member[data-member="cerebras/gpt-oss-120b"]')).to_contain_text(
            "rests until", timeout=10_000
        )
        await expect(page.locator("#chart .error-mark")).to_have_count(1, timeout=20_000)
        await page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
        if target := os.environ.get("AI_API_DASHBOARD_SCREENSHOT"):  # the README's picture
            await page.screenshot(path=target, full_page=True, type="jpeg", quality=40)

        await page.set_viewport_size({"width": 375, "height": 800})
        await page.reload()
        await expect(page.locator("#status")).to_have_text("live")  # the key was kept
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375
        await page.screenshot(path=str(tmp_path / "dashboard-phone.png"), full_page=True)


async def test_every_worker_shows_every_workers_requests(tmp_path: Path) -> None:
    async with FakeUpstream("groq", api_key=KEYS["groq"], token_delay=0.0) as groq:
        env = gateway_env(groq, tmp_path / "usage.sqlite3")
        async with ai_api("--workers", "2", cwd=tmp_path, env=env) as (process, url):
            sent, _ = await answered_by_both(process, url, 10)
            await asyncio.sleep(0.3)  # each worker's ledger writes within 50 ms of a record
            seen = []
            for _ in range(6):  # fresh connections: both workers answer these too
                status, text = await fresh("GET", url + "/usage/requests?limit=100")
                assert status == 200
                seen.append(len(json.loads(text)["requests"]))
    assert seen == [sent] * 6


async def test_the_page_shows_pooled_keys_withdrawn_models_and_cache_hits(
    client: aiohttp.ClientSession, page: Page, tmp_path: Path
) -> None:
    from ai_api.config import preset_settings
    from ai_api.providers import GROQ
    from ai_api.settings import key_label

    one, two = "gsk_dash_pool_one_0123456789", "gsk_dash_pool_two_0123456789"
    async with FakeUpstream("groq", api_key={one: "a", two: "b"}) as fake:
        fake.withdraw("llama-3.1-8b-instant")
        p = preset_settings(GROQ, {"GROQ_API_KEY": f"{one},{two}"}, base_url=fake.base_url)
        keys = (GatewayKey("AI_API_KEYS", Secret(GATEWAY_KEY)),)
        settings = Settings(
            providers=(p,), port=0, ledger=str(tmp_path / "u.db"), gateway_keys=keys
        )
        async with running(settings) as url:
            body = {"model": "groq/openai/gpt-oss-120b", "messages": HI}
            headers = {**AUTH, "X-AI-API-Cache": "use"}
            for _ in range(2):
                async with client.post(
                    url + "/v1/chat/completions", json=body, headers=headers
                ) as r:
                    assert r.status == 200
            await page.goto(url + "/dashboard")
            await page.fill("#key", GATEWAY_KEY)
            await page.click("#key-form button")
            await expect(page.locator("#status")).to_have_text("live")
            for key in (one, two):
                label = key_label(key)
                member = page.locator(
                    f'.member[data-member="groq/openai/gpt-oss-120b"][data-key="{label}"]'
                )
                await expect(member).to_contain_text(f"key {label}")
            gone = page.locator('.member[data-member="groq/llama-3.1-8b-instant"]').first
            await expect(gone).to_contain_text("withdrawn by the provider")
            await expect(page.locator("#cache")).to_contain_text("1 hits, 1 misses")
            await expect(page.locator("#requests tr", has_text="cache hit")).to_have_count(1)
            text = await page.content()
    assert one not in text  # the page names the keys by their labels only
    assert two not in text
