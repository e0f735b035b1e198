"""The failover loop and the rationing behind it, with in-memory providers and a fake clock."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncGenerator

import pytest

from ai_api.attempts import Ask, Bounds, open_stream
from ai_api.errors import (
    InvalidRequest,
    NoProviders,
    PayloadTooLarge,
    RateLimited,
    UpstreamError,
    UpstreamStatus,
    UpstreamUnreachable,
)
from ai_api.headroom import COLD_COMPLETION, daily_share
from ai_api.limits import MINUTE
from ai_api.providers import Answer
from ai_api.providers.presets import CEREBRAS, GROQ, MISTRAL, rates
from ai_api.ratelimits import RateReading, WindowReading
from ai_api.rationing import Rationing, Ticket
from ai_api.routing import Deployment, Member, Route
from ai_api.schemas import ChatRequest, Chunk, Message, Usage
from ai_api.store import MemoryLedger

T0 = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class Scripted:
    """A provider that fails with the queued errors, then answers `ok` with usage."""

    def __init__(self, name: str, *errors: UpstreamError, delay: float = 0.0) -> None:
        self.name = name
        self.errors = list(errors)
        self.seen: list[ChatRequest] = []
        self.delay = delay

    async def open(self, request: ChatRequest) -> Answer:
        self.seen.append(request)
        if self.errors:
            raise self.errors.pop(0)
        if self.delay:
            await asyncio.sleep(self.delay)
        return Answer(None, self.chunks())

    async def chunks(self) -> AsyncGenerator[list[Chunk], None]:
        yield [Chunk(content="ok")]
        yield [Chunk(finish_reason="stop", usage=Usage(10, 2, 12))]


def member(provider: Scripted, spec=GROQ, limits=(), context=None, pace=False, model="m") -> Member:
    return Member(Deployment(provider, spec, model, 100, "", limits, context), pace=pace)


HI = (Message(role="user", content="hi"),)


def ask(required=()) -> Ask:
    return Ask("req-1", 10, None, required, lambda d: d.request(HI))


async def drain(opened) -> list[Chunk]:
    blocks = [opened.first] if opened.first else []
    blocks += [b async for b in opened.chunks]
    return [chunk for block in blocks for chunk in block]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def rationing(clock) -> Rationing:
    return Rationing(MemoryLedger(), clock=clock)


async def test_retryable_errors_pass_to_the_next_member_and_every_attempt_is_recorded(rationing):
    groq = Scripted("groq", UpstreamStatus("groq", 500, "boom"))
    cerebras = Scripted("cerebras")
    route = Route("r", "round-robin", (member(groq), member(cerebras, CEREBRAS)))
    opened = await open_stream(route, ask(), rationing, Bounds())
    assert (opened.deployment.name, opened.attempts) == ("cerebras", 2)
    assert [c.content for c in await drain(opened)] == ["ok", ""]
    attempts = await rationing.ledger.attempts_since(0)
    assert [(a.provider, a.status, a.error) for a in attempts] == [
        ("groq", 500, "upstream_http_500"),
        ("cerebras", 200, None),
    ]
    assert (attempts[1].prompt_tokens, attempts[1].completion_tokens) == (10, 2)
    assert not attempts[1].estimated


class WallClock:
    """The rationing clock moving with the event loop's (a wait passes on both)."""

    def __init__(self) -> None:
        self.start = asyncio.get_running_loop().time()

    def __call__(self) -> float:
        return T0 + asyncio.get_running_loop().time() - self.start


def in_seconds(clock: WallClock, seconds: float) -> float:
    return clock() + seconds


@pytest.mark.parametrize(
    ("strategy", "failure", "served_by", "primary_tries"),
    [
        ("fallback", lambda c: UpstreamStatus("groq", 500, "boom"), "groq", 2),
        ("fallback", lambda c: UpstreamStatus("groq", 503, "busy"), "groq", 2),
        ("fallback", lambda c: status_429(in_seconds(c, 0.1)), "groq", 2),
        ("fallback", lambda c: status_429(in_seconds(c, 5.0)), "cerebras", 1),
        ("fallback", lambda c: status_429(None), "cerebras", 1),
        ("fallback", lambda c: UpstreamUnreachable("groq", "refused"), "cerebras", 1),
        ("round-robin", lambda c: UpstreamStatus("groq", 500, "boom"), "cerebras", 1),
        ("round-robin", lambda c: status_429(in_seconds(c, 0.1)), "cerebras", 1),
    ],
)
async def test_a_fallback_route_gives_its_first_member_a_second_chance(
    strategy, failure, served_by, primary_tries
):
    """A lone 5xx, or a 429 asking for at most 2 s, is tried once more on the member the user
    put first, after the wait; round-robin routes go on at once."""
    clock = WallClock()
    rationing = Rationing(MemoryLedger(), clock=clock)
    groq = Scripted("groq", failure(clock))
    cerebras = Scripted("cerebras")
    route = Route("r", strategy, (member(groq), member(cerebras, CEREBRAS)))
    opened = await open_stream(route, ask(), rationing, Bounds())
    assert (opened.deployment.name, opened.attempts) == (served_by, 2)
    assert len(groq.seen) == primary_tries
    await drain(opened)


async def test_a_second_chance_is_given_once(rationing):
    groq = Scripted(
        "groq", UpstreamStatus("groq", 500, "boom"), UpstreamStatus("groq", 500, "boom")
    )
    cerebras = Scripted("cerebras")
    route = Route("r", "fallback", (member(groq), member(cerebras, CEREBRAS)))
    opened = await open_stream(route, ask(), rationing, Bounds())
    assert (opened.deployment.name, opened.attempts, len(groq.seen)) == ("cerebras", 3, 2)
    await drain(opened)


def status_429(retry_at: float | None) -> UpstreamStatus:
    error = UpstreamStatus("groq", 429, "slow down")
    error.retry_at = retry_at
    return error


async def test_request_errors_are_not_retried(rationing):
    groq = Scripted("groq", UpstreamStatus("groq", 400, "bad tool schema"))
    cerebras = Scripted("cerebras")
    route = Route("r", "fallback", (member(groq), member(cerebras, CEREBRAS)))
    with pytest.raises(UpstreamStatus) as info:
        await open_stream(route, ask(), rationing, Bounds())
    assert info.value.status == 400
    assert cerebras.seen == []


def too_long() -> UpstreamStatus:
    return UpstreamStatus("p", 400, "too long", code="context_length_exceeded")


async def test_context_errors_go_only_to_models_whose_window_is_larger_or_unknown(rationing):
    small = Scripted("small", too_long())
    same_window = Scripted("same-window")
    same_model = Scripted("same-model")
    unknown = Scripted("unknown")
    route = Route(
        "r",
        "fallback",
        (
            member(small, context=65_536, model="a"),
            member(same_window, context=65_536, model="b"),
            member(same_model, model="a"),  # another provider of the model that refused
            member(unknown, model="c"),
            member(Scripted("large"), context=131_072, model="d"),
        ),
    )
    opened = await open_stream(route, ask(), rationing, Bounds())
    assert opened.deployment.name == "unknown"
    assert same_window.seen == same_model.seen == []
    await drain(opened)
    largest = Scripted("largest", too_long())
    route = Route(
        "r2",
        "fallback",
        (
            member(largest, context=131_072, model="a"),
            member(same_window, context=65_536, model="b"),
        ),
    )
    with pytest.raises(UpstreamStatus, match="too long"):
        await open_stream(route, ask(), rationing, Bounds())
    assert same_window.seen == []


async def test_context_retries_keep_to_the_attempt_bound(rationing):
    providers = [Scripted(f"p{i}", too_long()) for i in range(4)]
    route = Route("r", "fallback", tuple(member(p, model=f"m{i}") for i, p in enumerate(providers)))
    with pytest.raises(UpstreamStatus) as info:
        await open_stream(route, ask(), rationing, Bounds(max_attempts=2))
    assert info.value.message.startswith("2 attempts failed")
    assert [len(p.seen) for p in providers] == [1, 1, 0, 0]


async def test_attempts_are_bounded_and_name_every_failure(rationing):
    providers = [Scripted(f"p{i}", UpstreamUnreachable(f"p{i}", "refused")) for i in range(4)]
    route = Route("r", "fallback", tuple(member(p) for p in providers))
    with pytest.raises(UpstreamError) as info:
        await open_stream(route, ask(), rationing, Bounds(max_attempts=3))
    assert "3 attempts failed" in info.value.message
    assert info.value.headers["X-AI-API-Attempts"] == "3"
    assert providers[3].seen == []


async def test_a_silent_first_token_is_a_timeout_and_the_next_member_answers(rationing):
    slow = Scripted("slow", delay=5)
    fast = Scripted("fast")
    route = Route("r", "fallback", (member(slow), member(fast)))
    opened = await open_stream(route, ask(), rationing, Bounds(first_token_timeout=0.05))
    assert opened.deployment.name == "fast"
    await drain(opened)
    attempts = await rationing.ledger.attempts_since(0)
    assert attempts[0].error == "upstream_timeout"


async def test_members_that_cannot_take_a_field_are_skipped(rationing):
    mistral = Scripted("mistral")
    groq = Scripted("groq")
    route = Route("r", "fallback", (member(mistral, MISTRAL), member(groq)))
    opened = await open_stream(route, ask(["reasoning_format", "tools"]), rationing, Bounds())
    assert opened.deployment.name == "mistral"  # reasoning_format is only dropped
    await drain(opened)
    with pytest.raises(NoProviders):
        await open_stream(Route("empty", "round-robin", ()), ask(), rationing, Bounds())
    no_stop = Member(Deployment(groq, dataclasses.replace(GROQ, params=frozenset()), "m", 1))
    with pytest.raises(InvalidRequest, match="takes `stop`"):
        await open_stream(Route("r", "fallback", (no_stop,)), ask(["stop"]), rationing, Bounds())


async def test_out_of_headroom_everywhere_is_a_pooled_429(rationing, clock):
    a = Scripted("a")
    b = Scripted("b")
    route = Route(
        "r",
        "round-robin",
        (
            member(a, limits=rates("configured", rpm=1)),
            member(b, limits=rates("configured", rpm=1)),
        ),
    )
    for _ in range(2):
        await drain(await open_stream(route, ask(), rationing, Bounds()))
    clock.now += 10
    with pytest.raises(RateLimited) as info:
        await open_stream(route, ask(), rationing, Bounds())
    assert info.value.status == 429
    assert info.value.headers["Retry-After"] == "51"  # the minute, and its last bucket
    assert info.value.headers["x-ratelimit-limit-requests"] == "2"
    assert info.value.headers["x-ratelimit-remaining-requests"] == "0"
    clock.now += 51
    await drain(await open_stream(route, ask(), rationing, Bounds()))
    assert len(a.seen) + len(b.seen) == 3


async def test_a_429_exhausts_the_window_it_names_and_cools_the_member(rationing, clock):
    limited = UpstreamStatus("a", 429, "slow down")
    limited.retry_at = T0 + 30
    limited.exhausted, limited.period = "requests", 86400.0
    a = Scripted("a", limited)
    b = Scripted("b")
    route = Route("r", "fallback", (member(a, limits=rates(rpd=100)), member(b)))
    await drain(await open_stream(route, ask(), rationing, Bounds()))
    clock.now += 10
    opened = await open_stream(route, ask(), rationing, Bounds())
    assert opened.deployment.name == "b"
    await drain(opened)
    clock.now += 25
    opened = await open_stream(route, ask(), rationing, Bounds())
    assert opened.deployment.name == "a"  # rested, and the day window's reading expired
    await drain(opened)


class Resting(Scripted):
    """Answers, with rate-limit headers asking for a rest until `until`."""

    def __init__(self, name: str, until: float) -> None:
        super().__init__(name)
        self.until = until

    async def open(self, request: ChatRequest) -> Answer:
        answer = await super().open(request)
        return Answer(RateReading((), self.until), answer.blocks)


async def test_each_attempt_records_the_rest_it_left_its_member(rationing):
    limited = UpstreamStatus("a", 429, "slow down")
    limited.retry_at = T0 + 30
    route = Route("r", "fallback", (member(Scripted("a", limited)), member(Resting("b", T0 + 40))))
    await drain(await open_stream(route, ask(), rationing, Bounds()))
    route = Route("r", "fallback", (member(Scripted("c")),))
    await drain(await open_stream(route, ask(), rationing, Bounds()))
    attempts = await rationing.ledger.attempts_since(0)
    assert [(a.provider, a.status, a.cooldown_until) for a in attempts] == [
        ("a", 429, T0 + 30),  # what the 429 asked
        ("b", 200, T0 + 40),  # an answer whose headers asked for a rest
        ("c", 200, None),
    ]


async def test_a_client_leaving_is_recorded_with_what_was_spent(rationing):
    a = Scripted("a")
    route = Route("r", "fallback", (member(a),))
    opened = await open_stream(route, ask(), rationing, Bounds())
    await opened.chunks.aclose()
    await rationing.drain()
    (attempt,) = await rationing.ledger.attempts_since(0)
    assert (attempt.status, attempt.error, attempt.estimated) == (
        499,
        "client_closed",
        True,
    )
    assert attempt.completion_tokens == 1  # "ok": two characters, about one token


async def test_budget_strategy_keeps_daily_shares_together(rationing, clock):
    big = Member(Deployment(Scripted("big"), GROQ, "m", 100, "", rates(rpd=1000)))
    small = Member(Deployment(Scripted("small"), GROQ, "m", 100, "", rates(rpd=300)))
    route = Route("r", "budget", (small, big))
    for _ in range(1000):
        chosen = (await rationing.plan(route, route.order()))[0].deployment
        ticket = await rationing.begin(chosen, "r", "x", 0, 0)
        assert isinstance(ticket, Ticket)
        await rationing.succeeded(ticket, Usage(0, 0, 0))
        clock.now += 10
    shares = [daily_share((await rationing.snapshot(m.deployment)).windows) for m in (big, small)]
    assert abs(shares[0] - shares[1]) < 0.03
    assert 0.15 < shares[0] < 0.3  # 1000 of 1300 spent: both near 23 % left


async def test_round_robin_skips_a_member_without_headroom(rationing):
    full = Scripted("full")
    free = Scripted("free")
    route = Route(
        "r",
        "round-robin",
        (member(full, limits=rates("configured", rpm=1)), member(free, CEREBRAS)),
    )
    assert isinstance(await rationing.begin(route.members[0].deployment, "r", "x", 0, 0), Ticket)
    for _ in range(4):
        opened = await open_stream(route, ask(), rationing, Bounds())
        assert (opened.deployment.name, opened.attempts) == ("free", 1)
        await drain(opened)
    assert full.seen == []
    only_full = Route("only-full", "fallback", (route.members[0],))
    with pytest.raises(RateLimited) as info:
        await open_stream(only_full, ask(), rationing, Bounds())
    assert info.value.headers["Retry-After"] == "61"  # when the full one has room again


async def test_paced_members_come_last_once_ahead_of_the_day(rationing, clock):
    clock.now = T0 - T0 % 86400 + 3600  # one hour into the UTC day
    paced = Member(Deployment(Scripted("paced"), GROQ, "m", 100, "", rates(rpd=48)), pace=True)
    other = Member(Deployment(Scripted("other"), GROQ, "m", 100, "", rates(rpd=1000)))
    route = Route("r", "fallback", (paced, other), burst=0.1)
    used = 0
    for _ in range(20):
        chosen = (await rationing.plan(route, route.order()))[0].deployment
        used += chosen.name == "paced"
        ticket = await rationing.begin(chosen, "r", "x", 0, 0)
        assert isinstance(ticket, Ticket)
        await rationing.succeeded(ticket, None)
        clock.now += 1
    assert used == 7  # 48 x (1/24 + 0.1) = 6.8: the seventh puts it ahead of pace


# Limits that yield to evidence


async def test_a_member_out_of_guessed_room_is_tried_last_not_skipped(rationing):
    guessed = Scripted("guessed")  # the preset guesses 1 a minute
    other = Scripted("other", UpstreamUnreachable("other", "connection reset"))
    route = Route("r", "fallback", (member(guessed, limits=rates(rpm=1)), member(other, CEREBRAS)))
    await drain(await open_stream(route, ask(), rationing, Bounds()))
    # The guess is spent: the other member goes first; when it fails, the guessed one answers.
    opened = await open_stream(route, ask(), rationing, Bounds())
    assert (opened.deployment.name, opened.attempts) == ("guessed", 2)
    await drain(opened)
    assert [len(guessed.seen), len(other.seen)] == [2, 1]
    # Alone, a member out of guessed room still answers: a guess never refuses.
    alone = Route("alone", "fallback", (route.members[0],))
    for _ in range(3):
        await drain(await open_stream(alone, ask(), rationing, Bounds()))
    assert len(guessed.seen) == 5


async def test_only_evidence_refuses(rationing, clock):
    # The provider's reading says nothing is left: that refuses, guess or not.
    a = Scripted("a")
    route = Route("r", "fallback", (member(a, limits=rates(rpm=100)),))
    d = route.members[0].deployment
    ticket = await rationing.begin(d, "r", "x", 0, 0)
    assert isinstance(ticket, Ticket)
    reading = RateReading((WindowReading("requests", MINUTE, None, 0, T0 + 30),), None)
    await rationing.observe(ticket, reading)
    with pytest.raises(RateLimited) as info:
        await open_stream(route, ask(), rationing, Bounds())
    assert info.value.headers["Retry-After"] == "30"
    assert a.seen == []


async def test_headers_unlike_the_guesses_drop_the_guesses(rationing, caplog):
    # A paid account: the provider reports 1,000 tokens a minute where the preset guesses
    # 100; the guessed request window it does not report no longer orders the member last.
    a, b = Scripted("a"), Scripted("b")
    guesses = rates(rpm=1, tpm=100)
    route = Route("r", "fallback", (member(a, limits=guesses), member(b, CEREBRAS)))
    d = route.members[0].deployment
    assert [lim.limit for lim in rationing.limits(d)] == [1, 100]
    ticket = await rationing.begin(d, "r", "x", 0, 0)
    assert isinstance(ticket, Ticket)
    reading = RateReading((WindowReading("tokens", MINUTE, 1000, 990, T0 + 60),), None)
    with caplog.at_level("INFO", "ai_api.rationing"):
        await rationing.observe(ticket, reading)
    assert "another tier" in caplog.text
    assert [(lim.limit, lim.source) for lim in rationing.limits(d)] == [
        (None, "built-in"),
        (None, "built-in"),
    ]
    for _ in range(3):  # past the guessed 1 a minute, still the first member
        opened = await open_stream(route, ask(), rationing, Bounds())
        assert (opened.deployment.name, opened.attempts) == ("a", 1)
        await drain(opened)
    assert b.seen == []


async def test_a_request_no_window_can_ever_take_is_413_not_429(rationing):
    small = Scripted("small")
    large = Scripted("large")
    tiny = rates("configured", tpm=50)
    route = Route("r", "round-robin", (member(small, limits=tiny), member(large, CEREBRAS)))
    big = Ask("req-2", 60, 5, (), lambda d: d.request(HI))
    for _ in range(2):  # too large for `small`: it is skipped, whatever the turn
        opened = await open_stream(route, big, rationing, Bounds())
        assert opened.deployment.name == "large"
        await drain(opened)
    with pytest.raises(PayloadTooLarge) as info:
        await open_stream(Route("s", "fallback", (route.members[0],)), big, rationing, Bounds())
    assert (info.value.status, info.value.code) == (413, "request_too_large")
    assert small.seen == []
    # A guess never makes a request too large: the member is asked.
    guessed = Route("g", "fallback", (member(small, limits=rates(tpm=50)),))
    await drain(await open_stream(guessed, big, rationing, Bounds()))
    assert len(small.seen) == 1


async def test_a_reservation_is_the_expected_completion_after_the_first_answer(rationing):
    # Before any answer, a request reserves a short answer's worth (within its cap); once
    # answers are seen (2 completion tokens each here), the expectation: so a window of 400
    # tokens takes many at once, not two.
    a = Scripted("a")
    d = member(a, limits=rates("configured", tpm=400)).deployment
    first = await rationing.begin(d, "r", "x", 10, 100)
    assert isinstance(first, Ticket)
    assert first.hold.tokens == 110
    capped = await rationing.begin(d, "r", "x", 10, 4096)
    assert isinstance(capped, Ticket)
    assert capped.hold.tokens == 10 + COLD_COMPLETION
    await rationing.succeeded(capped, None)
    first.first_token = T0
    await rationing.succeeded(first, Usage(10, 2, 12))
    held = [await rationing.begin(d, "r", "x", 10, 100) for _ in range(20)]
    assert all(isinstance(t, Ticket) for t in held)
    assert {t.hold.tokens for t in held if isinstance(t, Ticket)} == {12}
    # Cerebras charges the cap up front: its reservations stay at the cap.
    c = member(Scripted("c"), CEREBRAS).deployment
    ticket = await rationing.begin(c, "r", "x", 10, 100)
    assert isinstance(ticket, Ticket)
    ticket.first_token = T0
    await rationing.succeeded(ticket, Usage(10, 2, 12))
    again = await rationing.begin(c, "r", "x", 10, 100)
    assert isinstance(again, Ticket)
    assert again.hold.tokens == 110


async def test_a_restart_on_a_persistent_state_remembers_the_expected_completion(clock, tmp_path):
    # Expectations live in the process: after a restart they come back from the ledger, also
    # when budgets live in a shared state (no cold start reserving every request at its cap).
    from ai_api.store.sqlite_state import SQLiteState

    d = member(Scripted("a"), limits=rates("configured", tpm=400)).deployment
    ledger = MemoryLedger()
    before = Rationing(ledger, clock=clock)
    ticket = await before.begin(d, "r", "x", 10, 100)
    assert isinstance(ticket, Ticket)
    ticket.first_token = T0
    await before.succeeded(ticket, Usage(10, 2, 12))
    state = await SQLiteState(tmp_path / "state.sqlite3").open()
    try:
        after = Rationing(ledger, state, clock=clock)
        assert await after.rebuild([d]) == 0  # nothing replayed: the state kept its budgets
        again = await after.begin(d, "r", "x", 10, 100)
        assert isinstance(again, Ticket)
        assert again.hold.tokens == 12
    finally:
        await state.close()


async def test_a_burst_at_a_cold_start_is_not_refused_on_the_cap(rationing):
    # Groq's 8,000 tokens a minute and 4,096-token cap: 20 requests at once, before any answer
    # was seen, all go to the provider (reserved at the cap, the third would wait a minute).
    d = member(Scripted("g"), limits=rates("configured", tpm=8000)).deployment
    held = [await rationing.begin(d, "r", f"x{i}", 20, 4096) for i in range(20)]
    assert all(isinstance(t, Ticket) for t in held)
