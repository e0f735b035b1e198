"""`GET /metrics`: parsed as Prometheus parses it, its figures equal to what was sent, across
the workers of `serve --workers 2` too."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from ai_api.fakes import FakeUpstream, Fault
from ai_api.server import running
from ai_api.settings import GatewayKey, Secret

from .conftest import KEYS, settings_for
from .test_cli import HELLO, ai_api
from .test_server import gateway_env
from .test_workers import worker_pids

GATEWAY_KEY = "gw-metrics-test-key-0123456789"
AUTH = {"Authorization": f"Bearer {GATEWAY_KEY}"}
HI = [{"role": "user", "content": "hi"}]


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Every sample by its name (as the exposition names it: `_total`, `_bucket`...)."""
    found: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[s.name].append((s.labels, s.value))
    return found


def total(found: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    return sum(
        v for have, v in found[name] if all(have.get(k) == want for k, want in labels.items())
    )


async def test_counts_match_what_was_sent_and_state_matches_usage(
    groq: FakeUpstream, cerebras: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    keys = (GatewayKey("AI_API_KEYS", Secret(GATEWAY_KEY)),)
    async with running(settings_for(groq, cerebras, limits=True, gateway_keys=keys)) as url:
        chat = url + "/v1/chat/completions"
        for _ in range(3):  # turns: Groq, Cerebras, Groq
            body = {"messages": HI, "stream": True, "stream_options": {"include_usage": True}}
            async with client.post(chat, json=body, headers=AUTH) as r:
                assert r.status == 200
                await r.read()
        cerebras.add_fault(Fault(status=503, retry_after=60))  # its turn: Groq takes over
        async with client.post(chat, json={"messages": HI}, headers=AUTH) as r:
            assert r.status == 200
            assert r.headers["X-AI-API-Provider"] == "groq"
        async with client.get(url + "/usage", headers=AUTH) as r:
            usage = await r.json()
        async with client.get(url + "/metrics", headers=AUTH) as r:
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = await r.text()
        async with client.get(url + "/metrics") as r:
            assert r.status == 401
    found = samples(text)

    assert total(found, "ai_api_requests_total", api="openai", status="200") == 4
    assert total(found, "ai_api_requests_total", api="openai", provider="groq") == 3
    assert total(found, "ai_api_requests_total", api="usage") == 1
    assert total(found, "ai_api_upstream_attempts_total", outcome="ok") == 4
    [(failed, count)] = [
        (labels, v)
        for labels, v in found["ai_api_upstream_attempts_total"]
        if labels["outcome"] != "ok"
    ]
    assert (failed["provider"], count) == ("cerebras", 1)
    for row in usage["days"]:
        for kind in ("prompt", "completion"):
            spent = total(found, "ai_api_tokens_total", provider=row["provider"], kind=kind)
            assert spent == row[f"{kind}_tokens"]
    assert total(found, "ai_api_time_to_first_token_seconds_count", api="openai") == 4
    assert total(found, "ai_api_request_duration_seconds_count", api="openai") == 4

    for budget in usage["budgets"]:
        for w in budget["windows"]:
            labels = {
                "account": budget["account"],
                "model": budget["model"],
                "kind": w["kind"],
                "period": w["period"],
                "source": w["source"],
            }
            if w["limit"] is not None:
                assert total(found, "ai_api_window_limit", **labels) == w["limit"]
            if w["remaining"] is not None:
                assert round(total(found, "ai_api_window_remaining", **labels)) == w["remaining"]
    resting = {m["name"]: m["cooldown_seconds"] for m in usage["members"]}
    cooling = {labels["member"]: v for labels, v in found["ai_api_cooldown_until_seconds"]}
    assert cooling.keys() == resting.keys()
    assert [name for name, v in cooling.items() if v > 0] == [
        name for name, rest in resting.items() if rest > 0
    ]
    states = {(labels["member"], labels["state"]): v for labels, v in found["ai_api_circuit_state"]}
    assert all(sum(v for (m, _), v in states.items() if m == name) == 1 for name in resting)
    assert total(found, "ai_api_ledger_queue_depth") == 0  # an in-memory ledger
    [(build, one)] = found["ai_api_build_info"]
    assert one == 1
    assert build["version"]
    assert KEYS["groq"] not in text
    assert KEYS["cerebras"] not in text
    assert GATEWAY_KEY not in text


async def test_metrics_public_serves_a_scraper_without_a_key(
    groq: FakeUpstream, client: aiohttp.ClientSession
) -> None:
    keys = (GatewayKey("AI_API_KEYS", Secret(GATEWAY_KEY)),)
    settings = settings_for(groq, gateway_keys=keys, metrics_public=True)
    async with running(settings) as url:
        async with client.get(url + "/metrics") as r:
            assert r.status == 200
            assert "ai_api_build_info" in await r.text()
        async with client.get(url + "/usage") as r:  # the rest still needs a key
            assert r.status == 401


def metrics_folder(pid: int) -> Path:
    """The folder a worker counts into, as its environment says."""
    environ = Path(f"/proc/{pid}/environ").read_text().split("\0")
    return Path(dict(item.split("=", 1) for item in environ if "=" in item)["AI_API_METRICS_DIR"])


def counted_by(folder: Path, pids: set[int]) -> bool:
    """Whether every worker of `pids` has counted something."""
    return all((folder / f"counter_{pid}.db").exists() for pid in pids)


async def fresh(method: str, url: str, **options: object) -> tuple[int, str]:
    """One request on a connection of its own (the workers take turns accepting them)."""
    connector = aiohttp.TCPConnector(force_close=True)
    async with (
        aiohttp.ClientSession(connector=connector) as s,
        s.request(method, url, **options) as r,  # type: ignore[arg-type]
    ):
        return r.status, await r.text()


async def answered_by_both(
    process: asyncio.subprocess.Process, url: str, least: int
) -> tuple[int, Path]:
    """Send `/chat` requests on fresh connections, at least `least`, until both workers of
    `serve --workers 2` have answered some (each has counted into the metrics folder); how
    many were sent, and that folder."""
    pids = await asyncio.wait_for(worker_pids(process, 2), timeout=30)
    folder = await asyncio.to_thread(metrics_folder, min(pids))
    sent, both = 0, False
    while sent < least or (sent < 60 and not both):
        status, _ = await fresh("POST", url + "/chat", json=HELLO)
        assert status == 200
        sent += 1
        both = await asyncio.to_thread(counted_by, folder, pids)
    assert both
    return sent, folder


async def test_the_workers_scrapes_sum_every_worker(tmp_path: Path) -> None:
    async with FakeUpstream("groq", api_key=KEYS["groq"], token_delay=0.0) as groq:
        env = gateway_env(groq, tmp_path / "usage.sqlite3")
        async with ai_api("--workers", "2", cwd=tmp_path, env=env) as (process, url):
            sent, folder = await answered_by_both(process, url, 20)
            scraped = []
            for _ in range(6):
                status, text = await fresh("GET", url + "/metrics")
                assert status == 200
                scraped.append(total(samples(text), "ai_api_requests_total", api="chat"))
        assert not await asyncio.to_thread(folder.exists)  # the parent removed it
    assert scraped == [sent] * 6
