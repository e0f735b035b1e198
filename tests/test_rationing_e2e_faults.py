"""Rationing end to end, faults: what failures before and after the first byte do to the
answer, to the choice of the next member and to the usage ledger."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from ai_api.fakes import Fault
from ai_api.server import running

from .conftest import settings_for
from .test_rationing_e2e import (
    CEREBRAS,
    GROQ,
    Answer,
    FakeClock,
    cerebras_member,
    chat,
    complete,
    day_row,
    groq_member,
    member,
    route,
    usage,
)


def stored(path: Path) -> list[dict[str, Any]]:
    """Every attempt in a (closed) SQLite ledger, oldest first."""
    with sqlite3.connect(path) as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute("SELECT * FROM attempts ORDER BY at, id").fetchall()
    return [dict(row) for row in rows]


# 5-6: no answer at all, or no first token in time: the next member answers


@pytest.mark.parametrize(
    ("fault", "code"),
    [(Fault(drop=True), "upstream_unreachable"), (Fault(headers_delay=5), "upstream_timeout")],
    ids=["reset-before-headers", "no-response"],
)
async def test_no_response_fails_over_and_the_ledger_counts_it(
    groq, cerebras, client, tmp_path, fault, code
):
    ledger = tmp_path / "usage.sqlite3"
    groq.add_fault(fault)
    settings = settings_for(groq, cerebras, read_timeout=0.2, ledger=str(ledger))
    async with running(settings, clock=FakeClock()) as url:
        answer = await chat(client, url)
        assert (answer.status, answer.provider, answer.attempts) == (200, "cerebras", "2")
        assert answer.events()[-1][0] == "done"
        report = await usage(client, url)
    assert (day_row(report, "groq")["requests"], day_row(report, "groq")["errors"]) == (1, 1)
    assert (day_row(report, "cerebras")["requests"], day_row(report, "cerebras")["errors"]) == (
        1,
        0,
    )
    groq_attempt, cerebras_attempt = stored(ledger)
    assert (groq_attempt["provider"], groq_attempt["status"]) == ("groq", 0)
    assert groq_attempt["error"] == code
    assert groq_attempt["request_id"] == cerebras_attempt["request_id"]
    assert (cerebras_attempt["status"], cerebras_attempt["error"]) == (200, None)


async def test_a_slow_first_token_fails_over_as_a_timeout(groq, cerebras, client, tmp_path):
    ledger = tmp_path / "usage.sqlite3"
    groq.add_fault(Fault(first_token_delay=2))
    settings = settings_for(groq, cerebras, first_token_timeout=0.2, ledger=str(ledger))
    async with running(settings, clock=FakeClock()) as url:
        answer = await chat(client, url)
        assert (answer.status, answer.provider, answer.attempts) == (200, "cerebras", "2")
        report = await usage(client, url)
    assert day_row(report, "groq")["errors"] == 1
    groq_attempt = stored(ledger)[0]
    assert groq_attempt["provider"] == "groq"
    assert groq_attempt["error"] == "upstream_timeout"
    assert groq_attempt["ttft"] is None


# 7-8: after the first byte


AFTER_FIRST_BYTE = [
    (Fault(cut_after=3), "upstream_unreachable"),
    (Fault(stall_after=3), "upstream_timeout"),
    (Fault(malformed_after=3), "upstream_protocol_error"),
    (Fault(error_after=3), None),
]
IDS = ["cut", "stall", "malformed", "in-stream-error"]


FIRST_THREE = "Hello from the"  # the fakes' answers begin so


def assert_chat_ends_with_error(answer: Answer) -> dict[str, Any]:
    names = [name for name, _ in answer.events()]
    assert set(names[:-1]) == {"message"}
    # The three tokens sent before the fault, as one delta or several (text that arrives
    # together goes on together).
    text = "".join(data["content"] for name, data in answer.events() if name == "message")
    assert text == FIRST_THREE
    assert names[-1] == "error"
    assert "done" not in names
    error: dict[str, Any] = answer.events()[-1][1]["error"]
    return error


def assert_openai_ends_with_error(answer: Answer) -> dict[str, Any]:
    payloads = answer.data()
    assert "[DONE]" not in payloads
    contents = [json.loads(p)["choices"][0]["delta"].get("content") for p in payloads[:-1] if p]
    assert "".join(c for c in contents if c) == FIRST_THREE
    error: dict[str, Any] = json.loads(payloads[-1])["error"]
    return error


@pytest.mark.parametrize("endpoint", ["chat", "openai"])
@pytest.mark.parametrize(("fault", "code"), AFTER_FIRST_BYTE, ids=IDS)
async def test_without_continuation_a_failure_after_the_first_byte_ends_the_stream(
    groq, cerebras, client, tmp_path, endpoint, fault, code
):
    """With continuation off (`test_continuation.py` has it on), the answer ends with the
    in-band error, and the attempt is recorded."""
    ledger = tmp_path / "usage.sqlite3"
    groq.add_fault(fault)
    settings = settings_for(
        groq, cerebras, read_timeout=0.3, ledger=str(ledger), continuation="off"
    )
    async with running(settings, clock=FakeClock()) as url:
        if endpoint == "chat":
            answer = await chat(client, url)
        else:
            answer = await complete(client, url, stream=True)
        assert (answer.status, answer.provider, answer.attempts) == (200, "groq", "1")
        if endpoint == "chat":
            error = assert_chat_ends_with_error(answer)
        else:
            error = assert_openai_ends_with_error(answer)
        assert error["message"].startswith("groq: ")
        if code:
            assert error["code"] == code
        assert len(cerebras.requests) == 0  # no failover once the answer has begun

        report = await usage(client, url)
        row = day_row(report, "groq")
        assert (row["requests"], row["errors"], row["estimated_requests"]) == (1, 1, 1)
        assert row["completion_tokens"] > 0

        # The gateway stays healthy.
        if endpoint == "chat":
            after = await chat(client, url)
            assert after.events()[-1][0] == "done"
        else:
            after = await complete(client, url, stream=True)
            assert after.data()[-1] == "[DONE]"
        assert after.status == 200
    attempt = stored(ledger)[0]
    assert attempt["provider"] == "groq"
    assert attempt["error"] is not None
    if code:
        assert attempt["error"] == code
    assert attempt["completion_tokens"] > 0
    assert attempt["estimated"] == 1


@pytest.mark.parametrize(("fault", "code"), AFTER_FIRST_BYTE, ids=IDS)
async def test_a_whole_answer_fails_over_until_its_end(
    groq, cerebras, client, tmp_path, fault, code
):
    """A client that asked for the answer at once has seen nothing of it when the first
    member fails mid-answer: the next member gives the whole answer."""
    ledger = tmp_path / "usage.sqlite3"
    groq.add_fault(fault)
    settings = settings_for(groq, cerebras, read_timeout=0.3, ledger=str(ledger))
    async with running(settings, clock=FakeClock()) as url:
        answer = await complete(client, url)
        assert (answer.status, answer.provider, answer.attempts) == (200, "cerebras", "2")
        (choice,) = answer.json()["choices"]
        assert choice["finish_reason"] == "stop"
        assert choice["message"]["content"].startswith("Hello from the fake Cerebras ")
        assert "Groq" not in choice["message"]["content"]  # nothing of the failed attempt
        assert answer.json()["model"] == cerebras_member().model
        report = await usage(client, url)
    assert (day_row(report, "groq")["requests"], day_row(report, "groq")["errors"]) == (1, 1)
    assert day_row(report, "cerebras")["errors"] == 0
    groq_attempt, cerebras_attempt = stored(ledger)
    assert groq_attempt["provider"] == "groq"
    assert groq_attempt["completion_tokens"] > 0  # what it sent before failing is counted
    if code:
        assert groq_attempt["error"] == code
    assert groq_attempt["request_id"] == cerebras_attempt["request_id"]
    assert (cerebras_attempt["status"], cerebras_attempt["error"]) == (200, None)


@pytest.mark.parametrize("endpoint", ["chat", "openai"])
async def test_a_missing_done_still_completes_the_answer(groq, cerebras, client, endpoint):
    groq.add_fault(Fault(no_done=True))
    async with running(settings_for(groq, cerebras), clock=FakeClock()) as url:
        if endpoint == "chat":
            answer = await chat(client, url)
            name, done = answer.events()[-1]
            assert name == "done"
            assert done["finish_reason"] == "stop"
        else:
            answer = await complete(client, url, stream=True)
            assert answer.data()[-1] == "[DONE]"
        assert (answer.status, answer.provider) == (200, "groq")
        report = await usage(client, url)
    assert day_row(report, "groq")["errors"] == 0
    assert len(cerebras.requests) == 0


# 9-10: refusals about the request itself


async def test_context_length_goes_only_to_a_larger_window(groq, cerebras, client):
    routes = (
        route("small-first", "fallback", cerebras_member(), groq_member()),
        route("large-first", "fallback", groq_member(), cerebras_member()),
    )
    too_long = Fault(status=400, code="context_length_exceeded")
    async with running(settings_for(groq, cerebras, routes=routes), clock=FakeClock()) as url:
        # Cerebras (65,536) refuses: Groq (131,072) may take it.
        cerebras.add_fault(too_long)
        answer = await complete(client, url, "small-first")
        assert (answer.status, answer.provider, answer.attempts) == (200, "groq", "2")

        # Groq refuses: Cerebras's window is smaller, so it is not asked.
        groq.add_fault(too_long)
        refused = await complete(client, url, "large-first")
        assert refused.status == 400
        assert refused.attempts == "1"
        error = refused.json()["error"]
        assert error["code"] == "context_length_exceeded"
        assert error["type"] == "invalid_request_error"
        assert error["message"].startswith("groq: HTTP 400: ")
        assert "reduce the length" in error["message"]
        report = await usage(client, url)
    assert len(cerebras.requests) == 1
    assert len(groq.requests) == 2
    # A refusal of the request is no reason to rest the member.
    assert member(report, GROQ)["cooldown_seconds"] == 0.0
    assert member(report, CEREBRAS)["cooldown_seconds"] == 0.0


async def test_a_content_policy_refusal_is_not_retried(groq, cerebras, client):
    groq.add_fault(Fault(status=400, code="content_filter", message="flagged by policy"))
    async with running(settings_for(groq, cerebras), clock=FakeClock()) as url:
        refused = await complete(client, url)
        report = await usage(client, url)
    assert refused.status == 400
    assert refused.attempts == "1"
    error = refused.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == "content_filter"
    assert error["message"] == "groq: HTTP 400: flagged by policy"
    assert len(cerebras.requests) == 0
    state = member(report, GROQ)
    assert (state["circuit"], state["cooldown_seconds"]) == ("closed", 0.0)


# Recovery: a provider that comes back is used again within 30 s; a probe is short


async def test_a_provider_down_for_a_minute_is_used_again_within_30_s(groq, cerebras, client):
    routes = (route("fallback", "fallback", groq_member(), cerebras_member()),)
    clock = FakeClock()
    start = clock.now
    groq.add_fault(Fault(status=503), times=1000)  # down
    served: list[tuple[int, str | None]] = []
    async with running(settings_for(groq, cerebras, routes=routes), clock=clock) as url:
        for second in range(0, 150, 5):  # a request every 5 s
            clock.now = start + second
            if second == 60:
                groq.heal()  # back
                tried_while_down = len(groq.requests)
            answer = await complete(client, url, "fallback")
            assert answer.status == 200
            served.append((second, answer.provider))
    back = [second for second, provider in served if provider == "groq"]
    assert back, served
    assert 60 <= back[0] <= 90  # probed again at most 30 s apart
    assert all(provider == "groq" for second, provider in served if second >= back[0])
    # While it was down, requests went to Cerebras and Groq was only probed, not hammered:
    # two requests of two attempts each (a retry, whose failure is not counted), one that
    # opened its circuit, then a probe per rest.
    assert all(provider == "cerebras" for second, provider in served if second < 60)
    assert tried_while_down <= 7


async def test_a_probe_does_not_hold_the_request(groq, cerebras, client):
    routes = (route("fallback", "fallback", groq_member(), cerebras_member()),)
    clock = FakeClock()
    settings = settings_for(
        groq, cerebras, routes=routes, first_token_timeout=30, probe_timeout=0.3
    )
    async with running(settings, clock=clock) as url:
        # Three requests' failures open its circuit (a retry's failure is not counted).
        groq.add_fault(Fault(status=503), times=6)
        for _ in range(3):
            assert (await complete(client, url, "fallback")).provider == "cerebras"
        clock.advance(16)  # past the circuit's rest: the next attempt on Groq is the probe
        groq.heal()
        groq.add_fault(Fault(first_token_delay=3))  # it would answer, late
        answer = await complete(client, url, "fallback")
        assert (answer.status, answer.provider, answer.attempts) == (200, "cerebras", "2")
        # The next probe answers and closes the circuit; a request that is not a probe then
        # waits for the first token as long as configured.
        clock.advance(60)
        assert (await complete(client, url, "fallback")).provider == "groq"
        groq.add_fault(Fault(first_token_delay=1))
        answer = await complete(client, url, "fallback")
        assert (answer.status, answer.provider) == (200, "groq")


# Fair circuits: what a request causes says nothing of the member


async def test_requests_too_large_for_every_member_take_no_member_out(groq, cerebras, client):
    # Groq answers 413 to a request over its tokens-per-minute budget, Cerebras 400s one too
    # long: three such requests from one client must not open any circuit for everyone.
    too_large = Fault(status=413, code="rate_limit_exceeded")
    too_long = Fault(status=400, code="context_length_exceeded")
    routes = (route("fallback", "fallback", groq_member(), cerebras_member()),)
    async with running(settings_for(groq, cerebras, routes=routes), clock=FakeClock()) as url:
        for _ in range(3):
            groq.add_fault(too_large)
            cerebras.add_fault(too_long)
            assert (await complete(client, url, "fallback")).status in (400, 413)
        innocent = [await complete(client, url, "fallback") for _ in range(3)]
        report = await usage(client, url)
    assert [(a.status, a.provider) for a in innocent] == [(200, "groq")] * 3
    assert member(report, GROQ)["circuit"] == "closed"
    assert member(report, CEREBRAS)["circuit"] == "closed"


async def test_one_request_counts_at_most_one_failure_a_member(groq, cerebras, client):
    # A request that every member fails (a retry on Groq, then Cerebras) twice: Groq has two
    # failures, not four, so its circuit (three in a row) stays closed.
    routes = (route("fallback", "fallback", groq_member(), cerebras_member()),)
    async with running(settings_for(groq, cerebras, routes=routes), clock=FakeClock()) as url:
        for _ in range(2):
            groq.add_fault(Fault(status=500), times=2)
            cerebras.add_fault(Fault(status=500))
            assert (await complete(client, url, "fallback")).status == 502
        report = await usage(client, url)
        answer = await complete(client, url, "fallback")
    assert len(groq.requests) == 5
    assert member(report, GROQ)["circuit"] == "closed"
    assert (answer.status, answer.provider, answer.attempts) == (200, "groq", "1")
