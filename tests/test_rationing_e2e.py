"""Rationing end to end: budgets, cooldowns, circuits, strategies and the usage ledger, driven
over real HTTP against fake upstreams, on a fake clock (no test sleeps for a cooldown).

Faults before and after the first byte live in `test_rationing_e2e_faults.py`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from ai_api.fakes import FLAVORS, FakeUpstream, Fault
from ai_api.limits import DAY
from ai_api.providers.presets import rates
from ai_api.server import running
from ai_api.settings import MemberSettings, RouteSettings, Settings

from .conftest import KEYS, parse_events, settings_for

START = 1_800_000_000.0  # 2027-01-15T08:00:00Z
HI: list[dict[str, str]] = [{"role": "user", "content": "Hola, ¿cómo estás?"}]
GROQ = "groq/openai/gpt-oss-120b"
CEREBRAS = "cerebras/gpt-oss-120b"
MODELS = {"groq": "openai/gpt-oss-120b", "cerebras": "gpt-oss-120b"}


class FakeClock:
    """The gateway's clock: frozen unless advanced; `step` makes every reading move it on a
    little, as a real clock does between the start of an attempt and its response."""

    def __init__(self, start: float = START, step: float = 0.0) -> None:
        self.now = start
        self.step = step

    def __call__(self) -> float:
        now = self.now
        self.now += self.step
        return now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Answer:
    """One gateway response, read whole."""

    status: int
    headers: Mapping[str, str]
    text: str

    @property
    def provider(self) -> str | None:
        return self.headers.get("X-AI-API-Provider")

    @property
    def attempts(self) -> str | None:
        return self.headers.get("X-AI-API-Attempts")

    def json(self) -> Any:
        return json.loads(self.text)

    def events(self) -> list[tuple[str, Any]]:
        return parse_events(self.text)

    def data(self) -> list[str]:
        """The `data:` payloads of an OpenAI stream, in order."""
        return [block.removeprefix("data: ") for block in self.text.split("\n\n") if block.strip()]


async def chat(client: aiohttp.ClientSession, url: str) -> Answer:
    """`POST /chat` (the `auto` route)."""
    async with client.post(url + "/chat", json={"messages": HI}) as response:
        return Answer(response.status, response.headers, await response.text())


async def complete(
    client: aiohttp.ClientSession, url: str, model: str = "auto", *, stream: bool = False
) -> Answer:
    """`POST /v1/chat/completions` on `model`."""
    body = {"model": model, "messages": HI, "stream": stream}
    async with client.post(url + "/v1/chat/completions", json=body) as response:
        return Answer(response.status, response.headers, await response.text())


async def usage(client: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with client.get(url + "/usage") as response:
        assert response.status == 200
        data: dict[str, Any] = await response.json()
        return data


def member(report: dict[str, Any], name: str) -> dict[str, Any]:
    """The `members` entry of `provider/model`."""
    found = [m for m in report["members"] if m["name"] == name]
    assert len(found) == 1, report["members"]
    return found[0]


def day_row(report: dict[str, Any], provider: str) -> dict[str, Any]:
    """The only `days` row of `provider` (every test runs within one UTC day)."""
    found = [r for r in report["days"] if r["provider"] == provider]
    assert len(found) == 1, report["days"]
    return found[0]


def budget(report: dict[str, Any], account: str) -> dict[str, Any]:
    """The budget of `account`'s default model (the one every test uses)."""
    model = MODELS[account]
    found = [b for b in report["budgets"] if (b["account"], b["model"]) == (account, model)]
    assert len(found) == 1, report["budgets"]
    return found[0]


def window(report: dict[str, Any], account: str, kind: str, period: str) -> dict[str, Any]:
    found = [
        w for w in budget(report, account)["windows"] if w["kind"] == kind and w["period"] == period
    ]
    assert len(found) == 1, budget(report, account)
    return found[0]


def with_limits(settings: Settings, provider: str, **limits: int) -> Settings:
    """`settings` with every model of `provider` limited by `rates(**limits)`."""
    providers = tuple(
        dataclasses.replace(
            p,
            models=tuple(
                dataclasses.replace(m, limits=rates("configured", **limits)) for m in p.models
            ),
        )
        if p.name == provider
        else p
        for p in settings.providers
    )
    return settings.with_overrides(providers=providers)


def route(name: str, strategy: Any, *members: MemberSettings, burst: float = 0.1) -> RouteSettings:
    return RouteSettings(name, strategy, members, burst)


def groq_member(**kwargs: Any) -> MemberSettings:
    return MemberSettings("groq", MODELS["groq"], **kwargs)


def cerebras_member(**kwargs: Any) -> MemberSettings:
    return MemberSettings("cerebras", MODELS["cerebras"], **kwargs)


FALLBACK = route("smart", "fallback", groq_member(), cerebras_member())


def quiet(name: str, **kwargs: Any) -> FakeUpstream:
    """A fake that publishes no rate-limit headers: the configured limits are the only truth."""
    flavor = dataclasses.replace(FLAVORS[name], requests_limit=None, tokens_limit=None)
    return FakeUpstream(flavor, api_key=KEYS[name], token_delay=0.0, answer_tokens=3, **kwargs)


@pytest.fixture
async def quiet_pair() -> AsyncIterator[tuple[FakeUpstream, FakeUpstream]]:
    async with quiet("groq") as groq, quiet("cerebras") as cerebras:
        yield groq, cerebras


# 1-4: cooldowns and circuits


async def test_429_with_retry_after_rests_the_member_until_then(groq, cerebras, client):
    clock = FakeClock()
    groq.add_fault(Fault(status=429, retry_after=30))
    async with running(settings_for(groq, cerebras), clock=clock) as url:
        first = await chat(client, url)
        assert first.status == 200
        assert (first.provider, first.attempts) == ("cerebras", "2")
        assert first.events()[-1][0] == "done"
        groq_state = member(await usage(client, url), GROQ)
        assert groq_state["cooldown_seconds"] == 30.0
        assert groq_state["circuit"] == "closed"

        for _ in range(4):
            answer = await chat(client, url)
            assert (answer.status, answer.provider, answer.attempts) == (200, "cerebras", "1")
        assert len(groq.requests) == 1

        clock.advance(29)
        answer = await chat(client, url)
        assert (answer.provider, answer.attempts) == ("cerebras", "1")
        answer = await chat(client, url)
        assert (answer.provider, answer.attempts) == ("cerebras", "1")
        assert len(groq.requests) == 1

        clock.advance(2)
        providers = [(await chat(client, url)).provider for _ in range(2)]
        assert "groq" in providers
        assert len(groq.requests) == 2
        assert groq.requests[-1].status == 200
        assert member(await usage(client, url), GROQ)["cooldown_seconds"] == 0.0


async def test_429_without_any_retry_hint_rests_the_default_minute(groq, cerebras, client):
    clock = FakeClock()
    # No `retry-after` header, and a message without Groq's "Please try again in ...".
    groq.add_fault(Fault(status=429, message="Rate limit reached. Slow down."))
    settings = settings_for(groq, cerebras, routes=(FALLBACK,))
    async with running(settings, clock=clock) as url:
        first = await complete(client, url, "smart")
        assert (first.status, first.provider, first.attempts) == (200, "cerebras", "2")
        assert member(await usage(client, url), GROQ)["cooldown_seconds"] == 60.0

        for _ in range(3):
            answer = await complete(client, url, "smart")
            assert (answer.provider, answer.attempts) == ("cerebras", "1")
        clock.advance(59)
        assert member(await usage(client, url), GROQ)["cooldown_seconds"] == 1.0
        answer = await complete(client, url, "smart")
        assert (answer.provider, answer.attempts) == ("cerebras", "1")
        assert len(groq.requests) == 1

        clock.advance(1.5)
        answer = await complete(client, url, "smart")
        assert (answer.status, answer.provider, answer.attempts) == (200, "groq", "1")
        assert len(groq.requests) == 2


async def test_one_500_fails_over_without_resting_the_member(groq, cerebras, client):
    clock = FakeClock()
    groq.add_fault(Fault(status=500))
    settings = settings_for(groq, cerebras)  # the auto route: round-robin
    async with running(settings, clock=clock) as url:
        first = await complete(client, url, "auto")
        assert (first.status, first.provider, first.attempts) == (200, "cerebras", "2")
        state = member(await usage(client, url), GROQ)
        assert (state["circuit"], state["cooldown_seconds"]) == ("closed", 0.0)

        again = await complete(client, url, "auto")  # Cerebras's turn: it answers
        third = await complete(client, url, "auto")
        assert (again.provider, third.provider, third.attempts) == ("cerebras", "groq", "1")
    assert [r.status for r in groq.requests] == [500, 200]
    assert len(cerebras.requests) == 2


async def test_one_500_on_a_fallback_route_is_tried_again_on_its_first_member(
    groq, cerebras, client
):
    groq.add_fault(Fault(status=500))
    settings = settings_for(groq, cerebras, routes=(FALLBACK,))
    async with running(settings, clock=FakeClock()) as url:
        first = await complete(client, url, "smart")
        assert (first.status, first.provider, first.attempts) == (200, "groq", "2")
        state = member(await usage(client, url), GROQ)
        assert (state["circuit"], state["cooldown_seconds"]) == ("closed", 0.0)
    assert [r.status for r in groq.requests] == [500, 200]
    assert cerebras.requests == []


async def test_a_failing_provider_opens_its_circuit_probes_once_and_recovers(
    groq, cerebras, client
):
    clock = FakeClock()
    groq.default_fault = Fault(status=503)
    settings = settings_for(groq, cerebras, routes=(FALLBACK,))
    async with running(settings, clock=clock) as url:
        # Groq, first on the route, is given a second chance after its first 503 (whose failure
        # is not counted: one request, one failure); the third request's failure is the third
        # in a row and opens its circuit, which that request's second chance meets.
        for expected, attempts in (("closed", "3"), ("closed", "3"), ("open", "2")):
            answer = await complete(client, url, "smart")
            assert (answer.status, answer.provider, answer.attempts) == (200, "cerebras", attempts)
            assert member(await usage(client, url), GROQ)["circuit"] == expected
        assert member(await usage(client, url), GROQ)["cooldown_seconds"] == 15.0
        assert len(groq.requests) == 5

        # Resting: nothing reaches Groq.
        for _ in range(3):
            answer = await complete(client, url, "smart")
            assert (answer.provider, answer.attempts) == ("cerebras", "1")
        clock.advance(14)
        answer = await complete(client, url, "smart")
        assert (answer.provider, answer.attempts) == ("cerebras", "1")
        assert len(groq.requests) == 5

        # Past the rest: of several concurrent requests, exactly one probes Groq; it fails and
        # the circuit rests again, 20 s.
        clock.advance(2)
        answers = await asyncio.gather(*(complete(client, url, "smart") for _ in range(5)))
        assert all(a.status == 200 and a.provider == "cerebras" for a in answers)
        assert sorted(a.attempts or "" for a in answers) == ["1", "1", "1", "1", "2"]
        assert len(groq.requests) == 6
        state = member(await usage(client, url), GROQ)
        assert (state["circuit"], state["cooldown_seconds"]) == ("open", 20.0)

        clock.advance(21)  # the rest stays at 20 s: a provider back is used again soon
        answer = await complete(client, url, "smart")
        assert (answer.provider, answer.attempts) == ("cerebras", "2")
        assert len(groq.requests) == 7
        state = member(await usage(client, url), GROQ)
        assert (state["circuit"], state["cooldown_seconds"]) == ("open", 20.0)

        # Groq recovers: the next probe succeeds and it is back in rotation.
        groq.default_fault = None
        clock.advance(21)
        answer = await complete(client, url, "smart")
        assert (answer.status, answer.provider, answer.attempts) == (200, "groq", "1")
        state = member(await usage(client, url), GROQ)
        assert (state["circuit"], state["cooldown_seconds"]) == ("closed", 0.0)
        for _ in range(3):
            answer = await complete(client, url, "smart")
            assert (answer.provider, answer.attempts) == ("groq", "1")
    assert [r.status for r in groq.requests] == [503] * 7 + [200] * 4


async def open_groq_circuit(client: aiohttp.ClientSession, url: str, groq: FakeUpstream) -> None:
    """Three requests' 503s on the `smart` route (five attempts: the first two requests retry
    Groq once) open Groq's circuit for 15 s; then Groq is healthy."""
    groq.default_fault = Fault(status=503)
    for _ in range(3):
        assert (await complete(client, url, "smart")).provider == "cerebras"
    assert member(await usage(client, url), GROQ)["circuit"] == "open"
    groq.default_fault = None


@pytest.mark.parametrize(
    ("probe_fault", "probe_status"),
    [
        (Fault(status=429, retry_after=5), 200),  # rate limited: the request moves on
        (Fault(status=400, code="content_filter", message="flagged"), 400),  # a bad request
    ],
    ids=["probe-429", "probe-400"],
)
async def test_a_probe_that_ends_without_verdict_does_not_strand_the_member(
    groq, cerebras, client, probe_fault, probe_status
):
    clock = FakeClock()
    settings = settings_for(groq, cerebras, routes=(FALLBACK,))
    async with running(settings, clock=clock) as url:
        await open_groq_circuit(client, url, groq)
        clock.advance(16)
        groq.add_fault(probe_fault)
        probe = await complete(client, url, "smart")
        assert probe.status == probe_status
        assert len(groq.requests) == 6

        # Long after the probe, its 429's retry-after and any doubled rest: Groq (healthy all
        # along) must be tried again.
        clock.advance(600)
        answer = await complete(client, url, "smart")
        assert (answer.status, answer.provider) == (200, "groq"), member(
            await usage(client, url), GROQ
        )
    assert len(groq.requests) == 7


async def test_a_probe_abandoned_by_its_client_does_not_strand_the_member(groq, cerebras, client):
    clock = FakeClock()
    settings = settings_for(groq, cerebras, routes=(FALLBACK,))
    async with running(settings, clock=clock) as url:
        await open_groq_circuit(client, url, groq)
        clock.advance(16)
        groq.add_fault(Fault(headers_delay=5))
        body = {"model": "smart", "messages": HI}
        with pytest.raises(TimeoutError):
            await client.post(
                url + "/v1/chat/completions", json=body, timeout=aiohttp.ClientTimeout(total=0.2)
            )
        probe = groq.requests[-1]
        await asyncio.wait_for(probe.finished.wait(), timeout=2)
        assert len(groq.requests) == 6

        clock.advance(600)
        answer = await complete(client, url, "smart")
        assert (answer.status, answer.provider) == (200, "groq"), member(
            await usage(client, url), GROQ
        )
    assert len(groq.requests) == 7


# 11-13: budgets, provider headers, the ledger across a restart


async def test_every_member_out_of_headroom_is_a_pooled_429_until_the_window_frees(
    groq, cerebras, client
):
    clock = FakeClock()
    settings = with_limits(settings_for(groq, cerebras), "groq", rpm=2)
    settings = with_limits(settings, "cerebras", rpm=2)
    async with running(settings, clock=clock) as url:
        answers = [await complete(client, url) for _ in range(4)]
        assert [a.status for a in answers] == [200] * 4
        assert [a.provider for a in answers] == ["groq", "cerebras"] * 2

        refused = await complete(client, url)
        assert refused.status == 429
        body = refused.json()
        assert set(body) == {"error"}
        assert set(body["error"]) == {"message", "type", "param", "code"}
        assert body["error"]["type"] == "rate_limit_error"
        assert body["error"]["code"] == "rate_limit_exceeded"
        retry_after = refused.headers["Retry-After"]
        assert retry_after.isdigit()
        assert 0 < int(retry_after) <= 61  # a minute, plus the window's last one-second bucket
        assert refused.headers["x-ratelimit-limit-requests"] == "4"
        assert refused.headers["x-ratelimit-remaining-requests"] == "0"
        assert (len(groq.requests), len(cerebras.requests)) == (2, 2)

        clock.advance(int(retry_after))
        answers = [await complete(client, url) for _ in range(2)]
        assert [a.status for a in answers] == [200, 200]
        assert sorted(a.provider or "" for a in answers) == ["cerebras", "groq"]
        assert (len(groq.requests), len(cerebras.requests)) == (3, 3)


async def test_provider_headers_steer_away_before_it_answers_429(cerebras, client):
    # The clock moves a little on every reading, as a real one does between the start of an
    # attempt and its response headers.
    clock = FakeClock(step=0.001)
    tiny = dataclasses.replace(FLAVORS["groq"], requests_limit=3)
    strict = FakeUpstream(tiny, api_key=KEYS["groq"], enforce_limits=True, answer_tokens=3)
    async with strict as groq:
        settings = settings_for(groq, cerebras, routes=(FALLBACK,))
        async with running(settings, clock=clock) as url:
            answers = [await complete(client, url, "smart") for _ in range(5)]
            report = await usage(client, url)
    assert [a.status for a in answers] == [200] * 5
    assert [a.provider for a in answers] == ["groq"] * 3 + ["cerebras"] * 2
    assert [a.attempts for a in answers] == ["1"] * 5
    assert [r.status for r in groq.requests] == [200, 200, 200]
    requests_day = window(report, "groq", "requests", "day")
    assert (requests_day["limit"], requests_day["remaining"]) == (3, 0)


async def test_the_ledger_survives_a_restart(quiet_pair, client, tmp_path):
    groq, cerebras = quiet_pair
    clock = FakeClock()
    settings = with_limits(
        settings_for(groq, cerebras, ledger=str(tmp_path / "usage.sqlite3")), "groq", rpd=5
    )
    cerebras.add_fault(Fault(status=429, retry_after=300))
    async with running(settings, clock=clock) as url:
        for _ in range(3):
            assert (await complete(client, url, GROQ)).status == 200
        refused = await complete(client, url, CEREBRAS)
        assert refused.status == 429
        assert refused.headers["Retry-After"] == "300"
        before = await usage(client, url)
    assert (day_row(before, "groq")["requests"], day_row(before, "groq")["errors"]) == (3, 0)
    assert (day_row(before, "cerebras")["requests"], day_row(before, "cerebras")["errors"]) == (
        1,
        1,
    )

    async with running(settings, clock=clock) as url:
        after = await usage(client, url)
        assert after["days"] == before["days"]
        rpd = window(after, "groq", "requests", "day")
        assert (rpd["limit"], rpd["used"], rpd["remaining"]) == (5, 3, 2)
        assert member(after, CEREBRAS)["cooldown_seconds"] == 300.0

        # The cooldown holds: Cerebras is not asked, and the auto route uses Groq alone.
        refused = await complete(client, url, CEREBRAS)
        assert refused.status == 429
        assert refused.headers["X-AI-API-Attempts"] == "0"
        assert refused.headers["Retry-After"] == "300"
        auto = [await complete(client, url) for _ in range(2)]
        assert [(a.status, a.provider) for a in auto] == [(200, "groq")] * 2
        # The day's five are spent: three before the restart, two after.
        out = await complete(client, url, GROQ)
        assert out.status == 429
        assert (len(groq.requests), len(cerebras.requests)) == (5, 1)


# 14-16: strategies


async def test_round_robin_skips_a_member_without_headroom(quiet_pair, client):
    groq, cerebras = quiet_pair
    settings = with_limits(settings_for(groq, cerebras), "groq", rpm=1)
    async with running(settings, clock=FakeClock()) as url:
        answers = [await chat(client, url) for _ in range(4)]
    assert [a.status for a in answers] == [200] * 4
    assert [a.provider for a in answers] == ["groq", "cerebras", "cerebras", "cerebras"]
    assert [a.attempts for a in answers] == ["1"] * 4  # skipped, not tried and refused
    assert (len(groq.requests), len(cerebras.requests)) == (1, 3)


async def test_budget_strategy_keeps_daily_shares_even(quiet_pair, client):
    groq, cerebras = quiet_pair
    settings = settings_for(
        groq,
        cerebras,
        routes=(route("thrifty", "budget", groq_member(), cerebras_member()),),
    )
    settings = with_limits(settings, "groq", rpd=200)
    settings = with_limits(settings, "cerebras", rpd=100)
    async with running(settings, clock=FakeClock()) as url:
        for checkpoint in range(6):
            answers = [await complete(client, url, "thrifty") for _ in range(25)]
            assert all(a.status == 200 for a in answers)
            report = await usage(client, url)
            shares = [budget(report, name)["daily_share_left"] for name in ("groq", "cerebras")]
            assert abs(shares[0] - shares[1]) <= 0.05, (checkpoint, shares)
    assert len(groq.requests) + len(cerebras.requests) == 150
    assert abs(len(groq.requests) - 100) <= 2
    assert shares[0] == pytest.approx(0.5, abs=0.05)


async def test_weighted_route_follows_its_weights(quiet_pair, client):
    groq, cerebras = quiet_pair
    weighted = route("mix", "weighted", groq_member(weight=3), cerebras_member(weight=1))
    async with running(settings_for(groq, cerebras, routes=(weighted,)), clock=FakeClock()) as url:
        answers = [await complete(client, url, "mix") for _ in range(40)]
    assert [a.status for a in answers] == [200] * 40
    assert [a.provider for a in answers].count("groq") == 30
    assert (len(groq.requests), len(cerebras.requests)) == (30, 10)


async def test_a_paced_member_waits_for_its_pace_while_others_have_room(quiet_pair, client):
    groq, cerebras = quiet_pair
    # One hour into the UTC day: 48 a day allow 48 * (1/24 + 10% burst) = 6.8 so far.
    clock = FakeClock(start=START - START % DAY + 3600)
    paced = route("paced", "fallback", groq_member(pace=True), cerebras_member())
    settings = with_limits(settings_for(groq, cerebras, routes=(paced,)), "groq", rpd=48)
    settings = with_limits(settings, "cerebras", rpm=3)
    async with running(settings, clock=clock) as url:
        answers = [await complete(client, url, "paced") for _ in range(10)]
        assert [a.status for a in answers] == [200] * 10
        assert [a.provider for a in answers] == ["groq"] * 7 + ["cerebras"] * 3
        # Cerebras has no room left this minute: the paced member serves rather than nobody.
        answer = await complete(client, url, "paced")
        assert (answer.status, answer.provider) == (200, "groq")

        # An hour later the pace allows 48 * (2/24 + 10%) = 8.8: one more, then Cerebras.
        clock.advance(3600)
        answers = [await complete(client, url, "paced") for _ in range(2)]
        assert [a.provider for a in answers] == ["groq", "cerebras"]
    assert (len(groq.requests), len(cerebras.requests)) == (9, 4)


# Limits that yield to evidence: the presets' figures are guesses about one tier


async def test_a_paid_cerebras_takes_20_concurrent_requests(client, caplog):
    # Every Cerebras account is a paid one since 2026-08-17: its headers report 10,000,000
    # tokens a minute and 100,000 requests a day, where the preset guesses the trial tier's
    # 5 requests and 30,000 tokens a minute.
    paid = dataclasses.replace(FLAVORS["cerebras"], requests_limit=100_000, tokens_limit=10_000_000)
    fake = FakeUpstream(paid, api_key=KEYS["cerebras"], enforce_limits=True)
    async with fake as cerebras:
        settings = settings_for(cerebras, limits=True)
        caplog.set_level("INFO", "ai_api.rationing")
        async with running(settings, clock=FakeClock(step=0.001)) as url:
            answers = await asyncio.gather(*(complete(client, url, CEREBRAS) for _ in range(20)))
            later = [await complete(client, url, CEREBRAS) for _ in range(10)]
            report = await usage(client, url)
    assert [a.status for a in answers + later] == [200] * 30
    assert {a.attempts for a in answers + later} == {"1"}
    assert [r.status for r in cerebras.requests] == [200] * 30
    assert "another tier" in caplog.text
    tpm = window(report, "cerebras", "tokens", "minute")
    assert (tpm["limit"], tpm["source"]) == (10_000_000, "reported")
    rpm = window(report, "cerebras", "requests", "minute")
    assert (rpm["limit"], rpm["source"]) == (None, "unknown")  # the guess was dropped


async def test_an_unknown_model_with_huge_reported_limits_is_never_throttled(client):
    # A model in no table gets the preset's `*` guesses (30 a minute, 6,000 tokens a minute).
    custom = dataclasses.replace(
        FLAVORS["groq"],
        models=(*FLAVORS["groq"].models, "my-custom-model"),
        requests_limit=1_000_000,
        tokens_limit=100_000_000,
    )
    async with FakeUpstream(custom, api_key=KEYS["groq"], enforce_limits=True) as groq:
        settings = settings_for(groq, limits=True)
        p = settings.providers[0]
        guesses = p.spec.limits_for("my-custom-model")
        assert guesses == p.spec.limits["*"]
        models = (dataclasses.replace(p.models[0], name="my-custom-model", limits=guesses),)
        settings = dataclasses.replace(settings, providers=(dataclasses.replace(p, models=models),))
        async with running(settings, clock=FakeClock(step=0.001)) as url:
            answers = []
            for _ in range(4):
                answers += await asyncio.gather(*(complete(client, url) for _ in range(25)))
    assert [a.status for a in answers] == [200] * 100
    assert len(groq.requests) == 100


async def test_six_concurrent_requests_on_groqs_free_figures_all_go_to_groq(groq, cerebras, client):
    # Groq's free plan: 8,000 tokens a minute, and its headers report that room. A request is
    # reserved at what its answer is expected to cost, not at the 4,096-token cap.
    settings = settings_for(groq, cerebras, limits=True, routes=(FALLBACK,))
    async with running(settings, clock=FakeClock(step=0.001)) as url:
        first = await complete(client, url, "smart")
        answers = await asyncio.gather(*(complete(client, url, "smart") for _ in range(6)))
        again = await asyncio.gather(*(complete(client, url, "smart") for _ in range(3)))
    assert (first.status, first.provider) == (200, "groq")
    assert [(a.status, a.provider) for a in answers + again] == [(200, "groq")] * 9
    assert cerebras.requests == []


async def test_a_prompt_over_a_guessed_window_is_sent_and_answered(groq, client):
    # 20 KB (~5,000 tokens) plus the 4,096 cap is more than the 8,000 tokens a minute Groq's
    # free figures guess: the guess does not refuse it, and Groq takes it.
    settings = settings_for(groq, limits=True)
    big = [{"role": "user", "content": "palabra " * 2_500}]
    async with (
        running(settings, clock=FakeClock(step=0.001)) as url,
        client.post(
            url + "/v1/chat/completions", json={"model": GROQ, "messages": big}
        ) as response,
    ):
        assert response.status == 200
        assert response.headers["X-AI-API-Attempts"] == "1"


async def test_a_ceiling_learned_from_a_429_survives_a_restart(cerebras, client, tmp_path):
    # Cerebras's headers describe requests a day and tokens a minute, not requests a minute:
    # a 429 "Requests per minute limit exceeded" after four teaches a ceiling of four.
    clock = FakeClock()
    settings = settings_for(cerebras, ledger=str(tmp_path / "usage.sqlite3"))
    async with running(settings, clock=clock) as url:
        for _ in range(4):
            assert (await complete(client, url, CEREBRAS)).status == 200
        cerebras.add_fault(Fault(status=429))
        assert (await complete(client, url, CEREBRAS)).status == 429
        rpm = window(await usage(client, url), "cerebras", "requests", "minute")
        assert (rpm["limit"], rpm["source"]) == (4, "learned")
    async with running(settings, clock=clock) as url:
        rpm = window(await usage(client, url), "cerebras", "requests", "minute")
        assert (rpm["limit"], rpm["source"]) == (4, "learned")
        clock.advance(61)  # the window and the rest are over: four go, the fifth waits
        answers = [await complete(client, url, CEREBRAS) for _ in range(5)]
    assert [a.status for a in answers] == [200] * 4 + [429]
    assert answers[-1].attempts == "0"  # refused on evidence, before the provider says so
    assert len(cerebras.requests) == 9


@pytest.mark.parametrize("state", ["memory", "sqlite"])
async def test_a_rest_is_the_upstreams_another_base_url_starts_afresh(
    groq, client, tmp_path, state
):
    # A rest the old URL earned (its circuit, a retry-after) is not the new one's after a
    # restart; the budget is the account's and stays.
    ledger = str(tmp_path / "usage.sqlite3")
    shared: dict[str, Any] = (
        {"state_file": str(tmp_path / "state.sqlite3")} if state == "sqlite" else {}
    )
    clock = FakeClock()
    groq.add_fault(Fault(status=503), times=5)  # three requests' failures open its circuit
    settings = settings_for(groq, ledger=ledger, **shared)
    async with running(settings, clock=clock) as url:
        for _ in range(3):  # each retried once on the same member, uncounted, until it opens
            assert (await complete(client, url, GROQ)).status == 503
    async with running(settings, clock=clock) as url:
        again = await complete(client, url, GROQ)
        assert (again.status, again.attempts) == (429, "0")  # still resting: same upstream
    async with FakeUpstream("groq", api_key=KEYS["groq"], token_delay=0.0) as moved:
        settings = settings_for(moved, ledger=ledger, **shared)
        async with running(settings, clock=clock) as url:
            answer = await complete(client, url, GROQ)
            report = await usage(client, url)
    assert (answer.status, answer.attempts) == (200, "1")
    assert len(moved.requests) == 1
    assert member(report, GROQ)["cooldown_seconds"] == 0.0
    assert day_row(report, "groq")["requests"] == 6  # the ledger kept the account's spending
