"""The answer cache over real HTTP: a hit spends nothing at the fake and says so, whole and
streamed answers replay either way, `refresh` and `skip`, the route's `cache`, expiry, the
temperature rule, an answer cut short never kept, the SQLite file shared by two gateways and
Redis shared by two instances, and `/usage` counting hits and the tokens they saved."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ai_api.fakes import Fault
from ai_api.server import running
from ai_api.settings import MemberSettings, RouteSettings, Secret

from .conftest import settings_for
from .home_redis import running_redis
from .test_rationing_e2e import FakeClock

MODEL = "groq/openai/gpt-oss-120b"
HI = [{"role": "user", "content": "What is a cache?"}]


async def ask(
    client: aiohttp.ClientSession,
    url: str,
    *,
    stream: bool = False,
    cache: str | None = "use",
    model: str = MODEL,
    **fields: Any,
) -> tuple[int, dict[str, str], str]:
    body = {"model": model, "messages": HI, "stream": stream, **fields}
    headers = {} if cache is None else {"X-AI-API-Cache": cache}
    async with client.post(url + "/v1/chat/completions", json=body, headers=headers) as r:
        return r.status, dict(r.headers), await r.text()


def text_of(answer: str) -> str:
    """The answer's text, from a whole body or a stream."""
    if answer.startswith("{"):
        return str(json.loads(answer)["choices"][0]["message"]["content"])
    parts = []
    for block in answer.split("\n\n"):
        data = block.removeprefix("data: ")
        if data and data != "[DONE]":
            for choice in json.loads(data)["choices"]:
                parts.append(choice["delta"].get("content") or "")
    return "".join(parts)


def chats(fake: Any) -> int:
    return fake.hits["POST /openai/v1/chat/completions"]


async def usage(client: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with client.get(url + "/usage") as response:
        data: dict[str, Any] = await response.json()
        return data


async def test_a_whole_answer_is_kept_and_a_hit_spends_nothing(groq, client):
    async with running(settings_for(groq)) as url:
        first = await ask(client, url)
        asked = chats(groq)
        second = await ask(client, url)
        report = await usage(client, url)
    assert first[0] == second[0] == 200
    assert first[1]["X-AI-API-Cache"] == "miss"
    assert second[1]["X-AI-API-Cache"] == "hit"
    assert second[1]["X-AI-API-Attempts"] == "0"
    assert second[1]["X-AI-API-Provider"] == "groq"
    assert asked == 1
    assert chats(groq) == 1  # the hit asked the fake nothing
    assert text_of(second[2]) == text_of(first[2])
    body = json.loads(second[2])
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["completion_tokens"] == json.loads(first[2])["usage"]["completion_tokens"]
    cache = report["cache"]
    assert cache["hits"] == 1
    assert cache["misses"] == 1
    saved = json.loads(first[2])["usage"]
    assert cache["prompt_tokens_saved"] == saved["prompt_tokens"]
    assert cache["completion_tokens_saved"] == saved["completion_tokens"]
    # The budget was spent once: the ledger's attempts are the miss's alone.
    assert sum(r["requests"] for r in report["days"]) == 1


async def test_a_stream_is_kept_and_replayed_as_a_stream_or_whole(groq, client):
    async with running(settings_for(groq)) as url:
        first = await ask(client, url, stream=True)
        streamed = await ask(client, url, stream=True)
        whole = await ask(client, url)
    assert chats(groq) == 1
    assert first[1]["X-AI-API-Cache"] == "miss"
    assert streamed[1]["X-AI-API-Cache"] == whole[1]["X-AI-API-Cache"] == "hit"
    assert streamed[1]["Content-Type"].startswith("text/event-stream")
    assert streamed[2].rstrip().endswith("data: [DONE]")
    assert text_of(streamed[2]) == text_of(first[2]) == text_of(whole[2])
    assert len(streamed[2].split("\n\n")) == len(first[2].split("\n\n"))  # chunk by chunk


async def test_refresh_asks_again_and_replaces_and_skip_neither_looks_nor_keeps(groq, client):
    async with running(settings_for(groq)) as url:
        await ask(client, url)
        groq.answer_text = "a fresher answer"
        refreshed = await ask(client, url, cache="refresh")
        hit = await ask(client, url)
        skipped = await ask(client, url, cache="skip")
        unasked = await ask(client, url, cache=None)  # no header, and the route says nothing
    assert refreshed[1]["X-AI-API-Cache"] == "miss"
    assert text_of(refreshed[2]) == "a fresher answer"
    assert hit[1]["X-AI-API-Cache"] == "hit"
    assert text_of(hit[2]) == "a fresher answer"
    assert "X-AI-API-Cache" not in skipped[1]
    assert "X-AI-API-Cache" not in unasked[1]
    assert chats(groq) == 4


async def test_a_route_with_cache_true_caches_without_the_header(groq, client):
    route = RouteSettings("kept", "fallback", (MemberSettings("groq", "openai/gpt-oss-120b"),))
    settings = settings_for(groq, routes=(replace(route, cache=True),))
    async with running(settings) as url:
        first = await ask(client, url, model="kept", cache=None)
        second = await ask(client, url, model="kept", cache=None)
        skipped = await ask(client, url, model="kept", cache="skip")
    assert first[1]["X-AI-API-Cache"] == "miss"
    assert second[1]["X-AI-API-Cache"] == "hit"
    assert "X-AI-API-Cache" not in skipped[1]
    assert chats(groq) == 2


async def test_a_sampled_request_is_not_cached_unless_the_route_says_so(groq, client):
    route = RouteSettings("sampled", "fallback", (MemberSettings("groq", "openai/gpt-oss-120b"),))
    settings = settings_for(groq, routes=(replace(route, cache=True, cache_sampled=True),))
    async with running(settings) as url:
        hot = [await ask(client, url, temperature=0.7) for _ in range(2)]
        cold = [await ask(client, url, temperature=0) for _ in range(2)]
        allowed = [await ask(client, url, model="sampled", temperature=0.7) for _ in range(2)]
    assert all("X-AI-API-Cache" not in h for _, h, _ in hot)
    assert [h["X-AI-API-Cache"] for _, h, _ in cold] == ["miss", "hit"]
    assert [h["X-AI-API-Cache"] for _, h, _ in allowed] == ["miss", "hit"]
    assert chats(groq) == 4


async def test_a_different_option_is_a_different_entry(groq, client):
    async with running(settings_for(groq)) as url:
        await ask(client, url, max_tokens=50)
        other = await ask(client, url, max_tokens=60)
        same = await ask(client, url, max_tokens=50, user="someone-else")
    assert other[1]["X-AI-API-Cache"] == "miss"
    assert same[1]["X-AI-API-Cache"] == "hit"  # `user` does not change the answer


async def test_an_entry_expires(groq, client):
    clock = FakeClock()
    async with running(settings_for(groq, cache_ttl=60.0), clock=clock) as url:
        await ask(client, url)
        clock.advance(30)
        young = await ask(client, url)
        clock.advance(31)
        old = await ask(client, url)
    assert young[1]["X-AI-API-Cache"] == "hit"
    assert old[1]["X-AI-API-Cache"] == "miss"
    assert chats(groq) == 2


async def test_an_answer_cut_short_is_never_kept(groq, client):
    groq.add_fault(Fault(cut_after=3))
    async with running(settings_for(groq, continuation="off")) as url:
        cut = await ask(client, url, stream=True)
        again = await ask(client, url, stream=True)
    assert '"error"' in cut[2]  # the stream ended with the in-band error
    assert again[1]["X-AI-API-Cache"] == "miss"  # not a hit of the part that came
    assert chats(groq) == 2


async def test_a_bad_header_is_a_400_in_the_apis_shape(groq, client):
    async with running(settings_for(groq)) as url:
        status, _, body = await ask(client, url, cache="always")
        anthropic = await client.post(
            url + "/v1/messages",
            json={"model": MODEL, "max_tokens": 20, "messages": HI},
            headers={"X-AI-API-Cache": "always", "anthropic-version": "2023-06-01"},
        )
        anthropic_body = await anthropic.json()
    assert status == 400
    assert json.loads(body)["error"]["param"] == "X-AI-API-Cache"
    assert anthropic.status == 400
    assert anthropic_body["type"] == "error"
    assert anthropic_body["error"]["type"] == "invalid_request_error"
    assert chats(groq) == 0


async def test_one_request_through_two_apis_is_one_entry(groq, client):
    async with running(settings_for(groq)) as url:
        body = {"model": MODEL, "max_tokens": 64, "messages": HI}
        headers = {"X-AI-API-Cache": "use", "anthropic-version": "2023-06-01"}
        async with client.post(url + "/v1/messages", json=body, headers=headers) as r:
            first = r.headers["X-AI-API-Cache"]
        second = await ask(client, url, max_tokens=64)
    assert first == "miss"
    assert second[1]["X-AI-API-Cache"] == "hit"


async def test_the_ledger_file_holds_the_cache_across_a_restart(groq, client, tmp_path: Path):
    settings = settings_for(groq, ledger=str(tmp_path / "ledger.sqlite3"))
    async with running(settings) as url:
        first = await ask(client, url, stream=True)
    async with running(settings) as url:
        second = await ask(client, url, stream=True)
        report = await usage(client, url)
    assert second[1]["X-AI-API-Cache"] == "hit"
    assert text_of(second[2]) == text_of(first[2])
    assert chats(groq) == 1
    assert report["cache"]["hits"] == 1  # the ledger's requests table counts it
    assert report["cache"]["misses"] == 1


async def test_redis_shares_the_cache_between_two_instances(groq, client, tmp_path: Path):
    async with running_redis() as redis:
        shared = replace(settings_for(groq), redis_url=Secret(redis.url))
        async with running(shared) as one, running(shared) as two:
            first = await ask(client, one)
            second = await ask(client, two)
            third = await ask(client, two, stream=True)
    assert first[1]["X-AI-API-Cache"] == "miss"
    assert second[1]["X-AI-API-Cache"] == "hit"
    assert third[1]["X-AI-API-Cache"] == "hit"
    assert chats(groq) == 1


@pytest.mark.parametrize("size", [4096])
async def test_the_memory_store_keeps_to_its_size(size: int):
    from ai_api.store.cache import MemoryAnswers

    store = MemoryAnswers(size, 60.0)
    for i in range(50):
        await store.put(f"k{i}", bytes(300))
    assert store.size <= size
    assert await store.get("k49") is not None
    assert await store.get("k0") is None  # the oldest went first
    await store.put("big", bytes(size))  # over a tenth of the bound: not kept
    assert await store.get("big") is None


async def test_metrics_count_hits_misses_and_the_tokens_saved(groq, client):
    from prometheus_client.parser import text_string_to_metric_families

    async with running(settings_for(groq, catalogue_every=3600)) as url:
        first = await ask(client, url)
        for _ in range(2):
            await ask(client, url)
        async with client.get(url + "/metrics") as response:
            text = await response.text()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    route = ("route", MODEL)
    assert samples[("ai_api_cache_requests_total", (("outcome", "hit"), route))] == 2
    assert samples[("ai_api_cache_requests_total", (("outcome", "miss"), route))] == 1
    completion = json.loads(first[2])["usage"]["completion_tokens"]
    saved = samples[("ai_api_cache_tokens_saved_total", (("kind", "completion"),))]
    assert saved == 2 * completion


async def test_the_workers_of_one_machine_share_the_cache(groq, tmp_path: Path):
    from .test_cli import ai_api
    from .test_metrics import answered_by_both, fresh
    from .test_server import gateway_env

    env = gateway_env(groq, tmp_path / "usage.sqlite3")
    async with ai_api("--workers", "2", cwd=tmp_path, env=env) as (process, url):
        await answered_by_both(process, url, 4)  # both workers take connections
        before = chats(groq)
        outcomes = []
        for _ in range(10):  # each on a connection of its own: the workers take turns
            body = {"model": MODEL, "messages": HI}
            status, text = await fresh(
                "POST",
                url + "/v1/chat/completions",
                json=body,
                headers={"X-AI-API-Cache": "use"},
            )
            assert status == 200
            outcomes.append(json.loads(text)["choices"][0]["message"]["content"])
    assert chats(groq) - before == 1  # one miss; the nine others were hits, in either worker
    assert len(set(outcomes)) == 1


async def test_the_original_chat_contract_takes_the_header_too(groq, cerebras, client):
    async with running(settings_for(groq, cerebras)) as url:
        answers = []
        for _ in range(3):
            async with client.post(
                url + "/chat", json={"messages": HI}, headers={"X-AI-API-Cache": "use"}
            ) as r:
                answers.append((r.headers.get("X-AI-API-Cache"), r.headers["X-AI-API-Provider"]))
                answers.append(await r.text())
    assert [answers[0][0], answers[2][0], answers[4][0]] == ["miss", "hit", "hit"]
    assert answers[1] == answers[3] == answers[5]  # the same events, replayed
    # A hit is the provider that gave the answer: the round-robin turn was not taken.
    assert answers[0][1] == answers[2][1] == answers[4][1]
    assert chats(groq) + cerebras.hits["POST /v1/chat/completions"] == 1


async def test_the_file_and_redis_stores_keep_to_their_size_and_age(tmp_path: Path):
    from ai_api.store.cache import AnswerStore, RedisAnswers, SQLiteAnswers

    clock = FakeClock()
    async with running_redis() as redis:
        shared = RedisAnswers(redis.url, 4096, 60.0, clock)
        stores: list[AnswerStore] = [
            await SQLiteAnswers(tmp_path / "ledger.sqlite3", 4096, 60.0, clock).open(),
            shared,
        ]
        try:
            for store in stores:
                for i in range(50):
                    clock.advance(0.01)
                    await store.put(f"k{i}", bytes([i]) * 300)
                assert await store.get("k49") == bytes([49]) * 300
                assert await store.get("k0") is None  # the oldest went first
                kept = [i for i in range(50) if await store.get(f"k{i}") is not None]
                assert 300 * len(kept) <= 4096
                assert kept == list(range(50 - len(kept), 50))
                await store.delete("k49")
                assert await store.get("k49") is None
                await store.put("big", bytes(4096))  # over a tenth of the bound: not kept
                assert await store.get("big") is None
                clock.advance(61)
                assert await store.get("k48") is None  # too old
            # The total counts what the index holds: within the bound, and 0 once all is gone.
            for i in range(50):
                await shared.delete(f"k{i}")
            assert await shared._redis.get("ai-api:cache:#total") == b"0"
        finally:
            for store in stores:
                await store.close()


async def test_a_cache_that_cannot_be_reached_is_a_miss_not_a_failure(groq, client, caplog):
    caplog.set_level("WARNING", "ai_api.store")
    async with running_redis() as redis:
        shared = replace(settings_for(groq), redis_url=Secret(redis.url))
        async with running(shared) as url:
            await redis.stop()
            answers = [await ask(client, url) for _ in range(3)]
    assert [status for status, _, _ in answers] == [200] * 3
    assert [h["X-AI-API-Cache"] for _, h, _ in answers] == ["miss"] * 3
    assert chats(groq) == 3
    told = [r for r in caplog.records if "answer cache's Redis cannot be used" in r.getMessage()]
    assert len(told) == 1  # once an outage


async def test_messages_and_responses_streams_replay_to_their_last_event(groq, client):
    headers = {"X-AI-API-Cache": "use", "anthropic-version": "2023-06-01"}
    messages = {"model": MODEL, "max_tokens": 64, "messages": HI, "stream": True}
    responses = {"model": MODEL, "input": "What is a cache?", "stream": True}
    seen = []
    async with running(settings_for(groq)) as url:
        for path, body, last in (
            ("/v1/messages", messages, "event: message_stop"),
            ("/v1/responses", responses, "event: response.completed"),
        ):
            for _ in range(2):
                async with client.post(url + path, json=body, headers=headers) as r:
                    text = await r.text()
                    seen.append((path, r.headers["X-AI-API-Cache"], last in text))
    assert seen == [
        ("/v1/messages", "miss", True),
        ("/v1/messages", "hit", True),
        ("/v1/responses", "miss", True),
        ("/v1/responses", "hit", True),
    ]
    assert chats(groq) == 2
