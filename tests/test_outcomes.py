"""What became of each request: the record the front middleware makes of it, as the ledger's
requests table keeps it, over real HTTP to the fakes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

from ai_api.fakes import FakeUpstream, Fault
from ai_api.outcomes import api_of
from ai_api.server import running
from ai_api.store import RequestRecord, SQLiteLedger

from .conftest import settings_for

HI = [{"role": "user", "content": "hi"}]


async def recorded(path: Path) -> list[RequestRecord]:
    ledger = await SQLiteLedger(path).open()
    try:
        return await ledger.requests_since(0, 100)
    finally:
        await ledger.close()


def test_each_path_names_its_api() -> None:
    assert api_of("/chat") == "chat"
    assert api_of("/v1/chat/completions") == "openai"
    assert api_of("/openai/v1/chat/completions") == "openai"
    assert api_of("/v1/messages") == "anthropic"
    assert api_of("/v1/messages/count_tokens") == "count_tokens"
    assert api_of("/v1/responses") == "responses"
    assert api_of("/openai/v1/embeddings") == "embeddings"
    assert api_of("/v1/models/groq/llama") == "models"
    assert api_of("/dashboard") == "dashboard"
    assert api_of("/wp-admin/x") == "other"


async def test_a_streamed_answer_a_failover_and_a_refusal_are_each_recorded_once(
    groq: FakeUpstream, cerebras: FakeUpstream, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    path = tmp_path / "usage.sqlite3"
    async with running(settings_for(groq, cerebras, ledger=str(path))) as url:
        chat = url + "/v1/chat/completions"
        body = {"model": "auto", "messages": HI, "stream": True}
        async with client.post(chat, json=body) as r:
            assert r.status == 200
            await r.read()
        cerebras.add_fault(Fault(status=503, retry_after=60))  # its turn: Groq takes over
        async with client.post(chat, json={**body, "stream": False}) as r:
            assert r.status == 200
        async with client.post(url + "/chat", json={"messages": HI}) as r:
            assert r.status == 200, await r.text()
            await r.read()
        async with client.get(url + "/health") as r:  # not a model API: not kept
            assert r.status == 200
        async with client.post(url + "/v1/messages", json={"model": "auto"}) as r:
            assert r.status == 400
    first, failover, seed, bad = await recorded(path)

    assert (first.api, first.path, first.route, first.status, first.error) == (
        "openai",
        "/v1/chat/completions",
        "auto",
        200,
        None,
    )
    assert first.attempts == 1
    assert first.provider == "groq"
    assert first.request_id
    assert first.ttft is not None
    assert 0 <= first.ttft <= first.duration
    assert first.prompt_tokens > 0
    assert first.completion_tokens > 0

    # Cerebras's turn: it fails, Groq answers; the member is the one that answered.
    assert (failover.status, failover.attempts, failover.error) == (200, 2, None)
    assert failover.provider == "groq"
    assert failover.completion_tokens > 0

    assert (seed.api, seed.status, seed.attempts, seed.error) == ("chat", 200, 1, None)

    assert (bad.api, bad.status, bad.error, bad.attempts, bad.route) == (
        "anthropic",
        400,
        "invalid_request",
        0,
        None,
    )


async def test_a_request_refused_with_every_member_resting_has_no_attempt(
    groq: FakeUpstream, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    path = tmp_path / "usage.sqlite3"
    groq.add_fault(Fault(status=429, retry_after=60))
    async with running(settings_for(groq, ledger=str(path))) as url:
        chat = url + "/v1/chat/completions"
        for _ in range(2):
            async with client.post(chat, json={"messages": HI}) as r:
                assert r.status == 429
    tried, refused = await recorded(path)
    assert tried.attempts == 1
    assert tried.provider == "groq"
    assert (refused.status, refused.attempts, refused.provider, refused.route) == (
        429,
        0,
        None,
        "auto",
    )
    assert refused.error == tried.error == "rate_limit_exceeded"


async def test_an_answer_that_fails_after_its_first_byte_is_200_with_an_error(
    groq: FakeUpstream, client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    path = tmp_path / "usage.sqlite3"
    groq.add_fault(Fault(cut_after=3))
    async with running(settings_for(groq, ledger=str(path))) as url:
        body = {"messages": HI, "stream": True}
        async with client.post(url + "/v1/chat/completions", json=body) as r:
            assert r.status == 200
            assert "[DONE]" not in await r.text()
    [cut] = await recorded(path)
    assert cut.status == 200
    assert cut.error is not None
    assert cut.ttft is not None


async def test_what_waits_for_a_whole_answer_runs_only_for_one() -> None:
    from ai_api.outcomes import Trace, when_answered

    ran: list[str] = []

    def keep(name: str) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            ran.append(name)

        return run

    assert when_answered(keep("no request")) is False  # no trace: the caller decides
    for status, error, expected in (
        (200, None, ["whole"]),
        (200, "bad_tool_input", []),
        (502, None, []),
    ):
        ran.clear()
        trace = Trace(0.0)
        end = trace.begin()
        try:
            assert when_answered(keep("whole")) is True
            trace.error = error
            await trace.settle(status)
        finally:
            end()
        assert ran == expected, (status, error)
        assert trace.keeps == []
