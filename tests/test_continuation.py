"""Mid-stream continuation: a stream whose member fails after its first byte goes on on the
next member, over real HTTP against fake upstreams (two Groq fakes give the same canned answer,
so a continued answer can be checked word for word)."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from ai_api.config import preset_settings
from ai_api.continuation import Diverged, Sent, Tail
from ai_api.errors import UpstreamStatus, UpstreamUnreachable
from ai_api.fakes import FLAVORS, FakeUpstream, Fault
from ai_api.fakes.answer import answer_tokens
from ai_api.fakes.plan import continued
from ai_api.providers.presets import CEREBRAS, GROQ, PREFILLS, ProviderSpec
from ai_api.schemas import Chunk, ToolCallDelta, Usage
from ai_api.server import running
from ai_api.settings import MemberSettings, ProviderSettings, RouteSettings, Settings

from .conftest import KEYS, parse_events, settings_for

HI: Any = [{"role": "user", "content": "Hola, ¿cómo estás?"}]
MODEL = "openai/gpt-oss-120b"
FULL = "".join(answer_tokens("Groq", MODEL, HI, 20))  # what every Groq fake answers
SENT = "Hello from the"  # the three tokens a fault after 3 chunks lets through

FAULTS = [
    (Fault(cut_after=3), "upstream_unreachable"),
    (Fault(stall_after=3), "upstream_timeout"),
    (Fault(malformed_after=3), "upstream_protocol_error"),
    (Fault(error_after=3), None),
]
IDS = ["cut", "stall", "malformed", "in-stream-error"]


def groq_fake(**rules: Any) -> FakeUpstream:
    flavor = FLAVORS["groq"]
    if rules:
        flavor = dataclasses.replace(flavor, rules=dataclasses.replace(flavor.rules, **rules))
    return FakeUpstream(flavor, api_key=KEYS["groq"])


@pytest.fixture
async def first() -> AsyncIterator[FakeUpstream]:
    async with groq_fake() as fake:
        yield fake


@pytest.fixture
async def second() -> AsyncIterator[FakeUpstream]:
    async with groq_fake() as fake:
        yield fake


def provider(name: str, fake: FakeUpstream, spec: ProviderSpec = GROQ) -> ProviderSettings:
    """`fake` as the provider `name` of kind `spec` (without built-in limits)."""
    env = {str(spec.key_env): KEYS[fake.flavor.name]}
    p = preset_settings(spec, env, name=name, base_url=fake.base_url)
    return dataclasses.replace(p, models=tuple(dataclasses.replace(m, limits=()) for m in p.models))


def smart(
    *providers: ProviderSettings, ledger: Path | None = None, route_continues: bool = True
) -> Settings:
    """A `fallback` route `smart` over `providers`, in order (`/chat` takes `auto`, which
    starts at the first of them on a fresh gateway)."""
    members = tuple(MemberSettings(p.name, p.model) for p in providers)
    route = RouteSettings("smart", "fallback", members, continuation=route_continues)
    return Settings(
        providers=providers,
        routes=(route,),
        port=0,
        ledger=str(ledger or ""),
        read_timeout=0.3,
    )


async def post_chat(client: aiohttp.ClientSession, url: str) -> tuple[Any, list[Any]]:
    body = {"messages": HI}
    async with client.post(url + "/chat", json=body) as response:
        return response.headers, parse_events(await response.text())


async def post_stream(
    client: aiohttp.ClientSession, url: str, **extra: Any
) -> tuple[Any, list[str]]:
    body = {"model": "smart", "messages": HI, "stream": True, **extra}
    async with client.post(url + "/v1/chat/completions", json=body) as response:
        text = await response.text()
    return response.headers, [b.removeprefix("data: ") for b in text.split("\n\n") if b.strip()]


def stored(path: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(path) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM attempts ORDER BY at, id")]


def contents(payloads: list[str]) -> str:
    chunks = [json.loads(p) for p in payloads if p != "[DONE]"]
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def last_message(fake: FakeUpstream, index: int = -1) -> dict[str, Any]:
    message: dict[str, Any] = fake.requests[index].body["messages"][-1]
    return message


# Over HTTP: the faults after the first byte


@pytest.mark.parametrize(("fault", "code"), FAULTS, ids=IDS)
async def test_a_stream_failing_mid_answer_is_finished_by_the_next_member(
    first, second, client, tmp_path, fault, code
):
    ledger = tmp_path / "usage.sqlite3"
    first.add_fault(fault)
    settings = smart(provider("groq", first), provider("groq2", second), ledger=ledger)
    async with running(settings) as url:
        headers, payloads = await post_stream(client, url, stream_options={"include_usage": True})
    assert (headers["X-AI-API-Provider"], headers["X-AI-API-Attempts"]) == ("groq", "1")
    assert contents(payloads) == FULL  # the whole answer, once
    assert payloads.count("[DONE]") == 1
    assert payloads[-1] == "[DONE]"
    assert all("error" not in json.loads(p) for p in payloads[:-1])
    # The second member was asked to continue the text sent, as a trailing assistant message.
    assert last_message(second) == {"role": "assistant", "content": SENT}
    groq_attempt, groq2_attempt = stored(ledger)
    assert groq_attempt["provider"] == "groq"
    assert groq_attempt["error"] is not None
    if code:
        assert groq_attempt["error"] == code
    assert (groq2_attempt["provider"], groq2_attempt["status"]) == ("groq2", 200)
    assert groq_attempt["request_id"] == groq2_attempt["request_id"]
    # Usage adds both attempts: the failed one's estimate and the continuation's report.
    usage = json.loads(payloads[-2])["usage"]
    assert usage["prompt_tokens"] == groq_attempt["prompt_tokens"] + groq2_attempt["prompt_tokens"]
    assert usage["completion_tokens"] == (
        groq_attempt["completion_tokens"] + groq2_attempt["completion_tokens"]
    )


async def test_chat_says_who_finished_a_continued_answer(first, second, client):
    first.add_fault(Fault(cut_after=3))
    async with running(smart(provider("groq", first), provider("groq2", second))) as url:
        headers, events = await post_chat(client, url)
    names = [name for name, _ in events]
    assert names.count("done") == 1
    assert "error" not in names
    assert "".join(data["content"] for name, data in events if name == "message") == FULL
    done = events[-1][1]
    assert (done["provider"], done["continued_by"]) == ("groq", "groq2")
    assert done["finish_reason"] == "stop"
    assert headers["X-AI-API-Attempts"] == "1"


async def test_the_openai_sdk_reads_one_continued_answer(first, second):
    first.add_fault(Fault(cut_after=5))
    async with (
        running(smart(provider("groq", first), provider("groq2", second))) as url,
        openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0) as sdk,
    ):
        stream = await sdk.chat.completions.create(
            model="smart", messages=HI, stream=True, stream_options={"include_usage": True}
        )
        chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == FULL
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes.count("stop") == 1
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0


async def test_a_member_that_refuses_prefill_is_asked_anew_at_once(first, client):
    async with groq_fake(prefill=False) as refuser, groq_fake() as third:
        settings = smart(
            provider("groq", first), provider("refuser", refuser), provider("third", third)
        )
        async with running(settings) as url:
            first.add_fault(Fault(cut_after=3))
            _, payloads = await post_stream(client, url)
            assert contents(payloads) == FULL
            assert payloads[-1] == "[DONE]"
            # It refused the prefill (a 400 in Groq's shape), and was asked at once for the
            # whole answer again, which begins with the part sent: forwarded past it.
            assert refuser.requests[0].body["messages"][-1] == {
                "role": "assistant",
                "content": SENT,
            }
            assert refuser.requests[0].status == 400
            assert refuser.requests[1].body["messages"][-1] == HI[0]
            assert refuser.requests[1].status == 200
            assert third.requests == []

            # Remembered: the next continuation asks it for the whole answer at once.
            first.add_fault(Fault(cut_after=4))
            _, payloads = await post_stream(client, url)
    assert contents(payloads) == FULL
    assert last_message(refuser) == HI[0]
    assert [r.status for r in refuser.requests] == [400, 200, 200]
    assert third.requests == []


async def test_a_member_asked_anew_is_forwarded_past_the_part_sent(first, second, client):
    first.add_fault(Fault(cut_after=6))
    regenerates = dataclasses.replace(GROQ, prefill=None)
    settings = smart(provider("groq", first), provider("groq2", second, regenerates))
    async with running(settings) as url:
        _, events = await post_chat(client, url)
    assert "".join(data["content"] for name, data in events if name == "message") == FULL
    assert events[-1][0] == "done"
    assert last_message(second) == HI[0]  # no prefill: the whole answer again


async def test_a_member_whose_new_answer_differs_ends_the_stream_with_the_error(
    first, cerebras, client, tmp_path
):
    ledger = tmp_path / "usage.sqlite3"
    first.add_fault(Fault(cut_after=5))  # "Hello from the fake Groq": Cerebras says otherwise
    anew = dataclasses.replace(CEREBRAS, prefill=None)
    settings = smart(provider("groq", first), provider("cerebras", cerebras, anew), ledger=ledger)
    async with running(settings) as url:
        _, events = await post_chat(client, url)
        _, payloads = await post_stream(client, url)  # no fault: answered whole by groq
    names = [name for name, _ in events]
    assert names[-1] == "error"
    assert "done" not in names
    text = "".join(data["content"] for name, data in events if name == "message")
    assert text == "Hello from the fake Groq"  # nothing of the other answer: no splice
    error = events[-1][1]["error"]
    assert error["code"] == "upstream_unreachable"
    assert "not continued: cerebras answered anew, and differently" in error["message"]
    assert contents(payloads) == FULL
    attempts = stored(ledger)
    # The regeneration was stopped by the gateway, not by a client that left.
    assert [(a["provider"], a["status"], a["error"]) for a in attempts[:2]] == [
        ("groq", 0, "upstream_unreachable"),
        ("cerebras", 200, "continuation_diverged"),
    ]


async def test_an_echoing_prefill_dialect_is_forwarded_past_the_echo(first, second, client):
    """Mistral's `prefix: true` answers with the prefix first."""
    first.add_fault(Fault(cut_after=3))
    mistral_like = dataclasses.replace(GROQ, prefill=PREFILLS["mistral"])
    settings = smart(provider("groq", first), provider("groq2", second, mistral_like))
    async with running(settings) as url:
        _, payloads = await post_stream(client, url)
    assert contents(payloads) == FULL
    assert last_message(second) == {"role": "assistant", "content": SENT, "prefix": True}


async def test_a_failure_inside_a_tool_calls_arguments_is_not_continued(first, second, client):
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
    first.add_fault(Fault(cut_after=2))  # the call's name, then a piece of its arguments
    async with running(smart(provider("groq", first), provider("groq2", second))) as url:
        _, payloads = await post_stream(client, url, tools=[tool])
    assert "[DONE]" not in payloads
    assert json.loads(payloads[-1])["error"]["code"] == "upstream_unreachable"
    assert second.requests == []


@pytest.mark.parametrize("where", ["route", "server"])
async def test_continuation_can_be_turned_off(first, second, client, where):
    first.add_fault(Fault(cut_after=3))
    providers = (provider("groq", first), provider("groq2", second))
    if where == "route":
        settings = smart(*providers, route_continues=False)
    else:
        settings = smart(*providers).with_overrides(continuation="off")
    async with running(settings) as url:
        _, payloads = await post_stream(client, url)
    assert "[DONE]" not in payloads
    assert json.loads(payloads[-1])["error"]["code"] == "upstream_unreachable"
    assert contents(payloads[:-1]) == SENT
    assert second.requests == []


async def test_a_lone_member_ends_with_the_error_as_before(first, client):
    first.add_fault(Fault(cut_after=3))
    async with running(smart(provider("groq", first))) as url:
        _, events = await post_chat(client, url)
    assert events[-1][0] == "error"
    assert "not continued" not in events[-1][1]["error"]["message"]


async def test_the_default_pair_continues_on_cerebras(groq, cerebras, client):
    """Groq fails after three words; Cerebras, asked to continue them, says the rest."""
    groq.add_fault(Fault(cut_after=3))
    settings = settings_for(groq, cerebras)
    async with running(settings) as url:
        _, events = await post_chat(client, url)
    rest = "".join(answer_tokens("Cerebras", "gpt-oss-120b", HI, 20)[3:])
    assert "".join(data["content"] for name, data in events if name == "message") == SENT + rest
    assert events[-1][1]["continued_by"] == "cerebras"
    assert last_message(cerebras) == {"role": "assistant", "content": SENT}


# Pure parts


def test_sent_is_continuable_outside_tool_calls_and_before_the_finish():
    cut = UpstreamUnreachable("groq", "cut")
    assert Sent.of([[Chunk("Hel"), Chunk("lo")]]) == Sent("Hello", False, False)
    assert Sent.of([[Chunk("Hi")]]).continuable(cut)
    call = Chunk(tool_calls=(ToolCallDelta(0, "c1", "function"),))
    assert not Sent.of([[call]]).continuable(cut)
    assert not Sent.of([[Chunk("Hi", finish_reason="stop")]]).continuable(cut)
    refused = UpstreamStatus("groq", 400, "failed mid-stream: flagged", code="content_filter")
    assert not Sent.of([[Chunk("Hi")]]).continuable(refused)
    assert Sent.of([[Chunk("Hi")]]).continuable(UpstreamStatus("groq", 500, "failed"))


def test_a_tail_strips_the_repeated_part_and_adds_usage():
    tail = Tail("Hello wor", True, Usage(10, 3, 13))
    out = tail.take([Chunk(reasoning="hmm"), Chunk("Hello"), Chunk(" world"), Chunk("!")])
    assert out == [Chunk("ld"), Chunk("!")]
    assert tail.take([Chunk(finish_reason="stop", usage=Usage(12, 4, 16))]) == [
        Chunk(finish_reason="stop", usage=Usage(22, 7, 29))
    ]
    assert "".join(tail.text) == "Hello world!"
    with pytest.raises(Diverged):
        Tail("Hello", True, Usage()).take([Chunk("Help")])
    with pytest.raises(Diverged):
        Tail("Hello", True, Usage()).take([Chunk("Hel", finish_reason="stop")])
    assert Tail("Hello", False, Usage()).take([Chunk(" there")]) == [Chunk(" there")]


def test_the_fake_continues_a_partial_answer():
    tokens = ["Hello", " from", " the", " fake"]
    assert continued(tokens, "Hello fr") == ["om", " the", " fake"]
    assert continued(tokens, "Hello from") == [" the", " fake"]
    assert continued(tokens, "Howdy there") == [" the", " fake"]
    assert continued(tokens, "Hello", echo=True) == ["Hello", " from", " the", " fake"]
