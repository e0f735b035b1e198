"""RedisState beyond the shared suite: expiring keys, persistence, and a Redis that goes away."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from ai_api.cooldowns import CircuitPolicy
from ai_api.limits import DAY, MINUTE, Cost, Limit
from ai_api.ratelimits import RateReading, WindowReading
from ai_api.store.state import Hold

from . import homes as h
from .home_redis import RedisServer, require_redis, running_redis

require_redis()

from redis.asyncio import Redis  # noqa: E402
from redis.exceptions import ConnectionError as RedisConnectionError  # noqa: E402
from redis.exceptions import TimeoutError as RedisTimeoutError  # noqa: E402

from ai_api.store.redis_state import RedisState  # noqa: E402

T0 = 1_800_000_000.0 - 1_800_000_000.0 % DAY + 3600
SPECS = (Limit("requests", MINUTE, 10), Limit("tokens", MINUTE, 1000))


def warnings_in(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "ai_api.store" and r.levelno >= logging.WARNING]


async def test_every_key_expires_a_little_after_it_stops_mattering():
    async with running_redis() as server:
        state = await RedisState(server.url, prefix="p:").open()
        specs = (*SPECS, Limit("requests", DAY, 100))
        hold = await h.reserve(state, "acct|m", specs, Cost(tokens=300), T0)
        assert isinstance(hold, Hold)
        await h.settle(state, hold, 120, T0 + 1)
        reading = RateReading((WindowReading("tokens", MINUTE, 1000, 500, T0 + 30),), None)
        await state.observe("g/m", "acct|m", reading, T0 + 1)
        await h.exhaust(state, "acct|m", "requests", DAY, T0 + 600, T0 + 2)
        for _ in range(3):
            await h.failed(state, "g/m", T0 + 2, None)
        await h.cool(state, "c/m", T0 + 40)
        await state.turn("route")
        raw = Redis.from_url(server.url, decode_responses=True)
        try:
            ttls = {str(key): await raw.pttl(key) for key in await raw.keys("p:*")}
        finally:
            await raw.aclose()
        await state.close()
    assert set(ttls) == {
        "p:b:acct|m:meta",
        "p:b:acct|m:w:requests|60.0",
        "p:b:acct|m:w:tokens|60.0",
        "p:b:acct|m:w:requests|86400.0",
        "p:b:acct|m:r:tokens|60.0",
        "p:b:acct|m:r:requests|86400.0",
        "p:h:g/m",
        "p:h:c/m",
        "p:t:route",
    }
    assert all(ttl > 0 for ttl in ttls.values())
    assert ttls["p:b:acct|m:w:tokens|60.0"] <= (61 + 60) * 1000
    assert ttls["p:b:acct|m:r:tokens|60.0"] <= (29 + 60) * 1000
    assert ttls["p:b:acct|m:r:requests|86400.0"] <= (598 + 60) * 1000
    assert ttls["p:h:g/m"] <= (15 + 900) * 1000


async def test_state_outlives_the_instance():
    async with running_redis() as server:
        first = await RedisState(server.url).open()
        assert isinstance(await h.reserve(first, "k", SPECS, Cost(tokens=200), T0), Hold)
        for _ in range(3):
            await h.failed(first, "g/m", T0, None)
        await first.close()
        await first.close()  # idempotent
        second = await RedisState(server.url).open()
        windows = {w.kind: w for w in await h.windows(second, "k", SPECS, T0 + 1)}
        health = await h.health(second, "g/m")
        await second.close()
    assert (windows["requests"].used, windows["tokens"].used) == (1, 200)
    assert health.circuit == "open"


async def test_finish_survives_a_redis_that_forgot_its_scripts():
    async with running_redis() as server:
        state = await RedisState(server.url).open()
        for _ in range(2):
            await h.failed(state, "g/m", T0, None)
        hold = await state.begin("g/m", "k", SPECS, Cost(tokens=200), T0)
        assert isinstance(hold, Hold)
        admin = Redis.from_url(server.url)
        await admin.script_flush()  # as after a restart that kept the data, or SCRIPT FLUSH
        await h.finish(state, "g/m", hold, 50, T0 + 1)
        await admin.aclose()
        other = await RedisState(server.url).open()
        health = await h.health(other, "g/m")
        windows = {w.kind: w.used for w in await h.windows(other, "k", SPECS, T0 + 2)}
        await other.close()
        await state.close()
    assert (health.failures, health.circuit) == (0, "closed")
    assert windows == {"requests": 1, "tokens": 50}


async def test_an_unreachable_redis_is_served_from_memory_then_reconciled(caplog):
    caplog.set_level(logging.INFO, logger="ai_api.store")
    async with running_redis() as server:
        state = await RedisState(server.url, retry_every=0.2).open()
        assert isinstance(await state.begin("g/m", "k", SPECS, Cost(tokens=100), T0), Hold)
        await server.stop()
        during = await state.begin("g/m", "k", SPECS, Cost(tokens=100), T0 + 1)
        assert isinstance(during, Hold)
        assert await h.claim(state, "g/m", T0 + 1)
        assert await state.turn("route") == 0
        await h.cool(state, "g/m", T0 + 100)
        await h.settle(state, during, 40, T0 + 2)
        last = await h.reserve(state, "k", SPECS, Cost(tokens=100), T0 + 3)
        assert isinstance(last, Hold)
        remembered = {w.kind: w.used for w in await h.windows(state, "k", SPECS, T0 + 3)}
        assert remembered == {"requests": 3, "tokens": 240}  # the mirror and the fallback's own
        assert len(warnings_in(caplog)) == 1

        await server.start()  # empty: it kept nothing across the restart
        await asyncio.sleep(0.25)
        await h.settle(state, last, 60, T0 + 4)  # sees Redis back: replays, then settles there
        other = await RedisState(server.url).open()
        shared = {w.kind: w.used for w in await h.windows(other, "k", SPECS, T0 + 5)}
        cooled_until = await h.ready_at(other, "g/m")
        await other.close()
        await state.close()
    assert shared == {"requests": 2, "tokens": 100}
    assert cooled_until == T0 + 100
    assert len(warnings_in(caplog)) == 1
    # The three charges (a claim is a begin charging nothing), the rest, the two ends.
    assert "replayed 6 writes" in caplog.text


# Keeps Redis busy for ARGV[1] microseconds: commands sent meanwhile wait, then run.
_BUSY = """
local t = redis.call('TIME')
local start = t[1] * 1000000 + t[2]
repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] - start > tonumber(ARGV[1])
return 1
"""


@contextlib.asynccontextmanager
async def answers_lost(server: RedisServer) -> AsyncIterator[None]:
    """Within the block, Redis runs what it is sent only after the sender (whose socket timeout
    is 0.5 s) has given up waiting for the answer: the write ran, its answer was lost. At the
    end, Redis has run it."""
    admin = Redis.from_url(server.url)
    busy = asyncio.ensure_future(admin.eval(_BUSY, 0, "1500000"))
    # Redis is in the script by then: on a loaded machine 0.1 s was sometimes too short, and
    # the write then ran and answered before the script began (nothing lost).
    await asyncio.sleep(0.3)
    try:
        yield
    finally:
        await busy
        await admin.aclose()


async def shared_use(server: RedisServer, now: float) -> dict[str, float]:
    """The windows' use as another instance reads it from Redis."""
    return await shared_use_of(server, "k", SPECS, now)


async def shared_use_of(
    server: RedisServer, key: str, specs: Sequence[Limit], now: float
) -> dict[str, float]:
    other = await RedisState(server.url).open()
    try:
        return {w.kind: w.used for w in await h.windows(other, key, specs, now)}
    finally:
        await other.close()


async def test_a_refund_whose_answer_was_lost_is_not_replayed_an_addition_is(caplog):
    """A settlement that takes tokens back may have run when its answer is lost: its END is
    replayed without it (at worst it never counts: an over-count). One that adds is replayed
    whole (at worst it counts twice: an over-count too). Either way Redis never counts less
    than was spent."""
    caplog.set_level(logging.INFO, logger="ai_api.store")
    async with running_redis() as server:
        state = await RedisState(server.url, retry_every=0.2).open()
        hold = await h.reserve(state, "k", SPECS, Cost(tokens=300), T0)
        assert isinstance(hold, Hold)
        async with answers_lost(server):
            await h.settle(state, hold, 120, T0 + 1)  # runs, its answer lost: refund not replayed
        await asyncio.sleep(0.25)
        assert await state.turn("route") == 0
        assert caplog.text.count("replayed 1 writes") == 1  # the END, without its refund
        await h.settle(state, hold, 100, T0 + 2)  # a later one still counts
        settled = await shared_use(server, T0 + 3)
        async with answers_lost(server):
            await h.settle(state, hold, 400, T0 + 4)  # runs, its answer lost: replayed
        await asyncio.sleep(0.25)
        assert await state.turn("route") == 1
        assert caplog.text.count("replayed 1 writes") == 2
        await h.settle(state, hold, 200, T0 + 5)
        used = await shared_use(server, T0 + 6)
        await state.close()
    assert settled == {"requests": 1, "tokens": 100}
    assert used == {"requests": 1, "tokens": 500}  # 200 spent, the 300 added counted twice


async def test_a_finish_whose_answer_was_lost_is_not_replayed_when_it_takes_back(caplog):
    caplog.set_level(logging.INFO, logger="ai_api.store")
    async with running_redis() as server:
        state = await RedisState(server.url, retry_every=0.2).open()
        hold = await state.begin("g/m", "k", SPECS, Cost(tokens=300), T0)
        assert isinstance(hold, Hold)
        async with answers_lost(server):
            await h.finish(state, "g/m", hold, 50, T0 + 1)
        await asyncio.sleep(0.25)
        assert await state.turn("route") == 0
        assert "replayed 1 writes" in caplog.text  # the END, without its refund
        used = await shared_use(server, T0 + 2)
        await state.close()
    assert used == {"requests": 1, "tokens": 50}


async def test_a_failure_whose_answer_was_lost_may_count_twice():
    async with running_redis() as server:
        state = await RedisState(
            server.url, policy=CircuitPolicy(threshold=3), retry_every=0
        ).open()
        answer_lost_next(state, "end")
        await h.failed(state, "g/m", T0, None)  # ran, answer lost: replayed at the next call
        assert await state.turn("route") == 0
        other = await RedisState(server.url).open()
        health = await h.health(other, "g/m")
        await other.close()
        await state.close()
    assert (health.failures, health.circuit) == (2, "closed")


async def test_a_begin_whose_answer_was_lost_is_charged_again(caplog):
    """The BEGIN ran, its answer lost: the begin is served from memory and its charge replayed
    at the hold's last count; the lost charge stays, as estimated (an over-count)."""
    caplog.set_level(logging.INFO, logger="ai_api.store")
    async with running_redis() as server:
        state = await RedisState(server.url, retry_every=0.2).open()
        async with answers_lost(server):
            hold = await state.begin("g/m", "k", SPECS, Cost(tokens=100), T0)
            assert isinstance(hold, Hold)  # from memory: its charge waits for a replay
        await asyncio.sleep(0.25)
        await h.settle(state, hold, 80, T0 + 1)  # Redis is back: the charge is replayed, at 80
        assert "replayed 2 writes" in caplog.text  # the charge, then the END
        used = await shared_use(server, T0 + 2)
        await state.close()
    assert used == {"requests": 2, "tokens": 180}


def answer_lost_next(state: RedisState, script: str) -> None:
    """The next run of `script` by `state` runs in Redis, and its answer is lost: the caller
    gets the timeout redis-py raises when an answer does not come."""
    link = state._link
    run = link.run

    async def lost(name: str, keys: list[str], args: Sequence[str]) -> Any:
        if name != script:
            return await run(name, keys, args)
        link.run = run  # type: ignore[method-assign]
        await run(name, keys, args)
        raise RedisTimeoutError("Timeout reading from socket")

    link.run = lost  # type: ignore[method-assign]


async def test_a_hold_charged_while_redis_was_away_is_replayed_at_its_last_count(caplog):
    """The charge is replayed at the count the hold was last settled to (the END that settled
    it adds nothing more); a settlement after the replay counts from there."""
    caplog.set_level(logging.INFO, logger="ai_api.store")
    async with running_redis() as server:
        state = await RedisState(server.url, retry_every=0.2).open()
        await server.stop()
        hold = await h.reserve(state, "k", SPECS, Cost(tokens=100), T0)
        assert isinstance(hold, Hold)
        await h.settle(state, hold, 300, T0 + 1)  # for the replay to charge
        await server.start()
        await asyncio.sleep(0.25)
        await state.turn("route")  # replays
        assert "replayed 2 writes" in caplog.text
        replayed = await shared_use(server, T0 + 2)
        await h.settle(state, hold, 500, T0 + 2)
        used = await shared_use(server, T0 + 3)
        await state.close()
    assert replayed == {"requests": 1, "tokens": 300}
    assert used == {"requests": 1, "tokens": 500}


async def test_a_begin_whose_answer_was_lost_counts_when_redis_is_back_at_once():
    """The BEGIN ran, its answer was lost, and Redis answers again by the time the begin falls
    back to reserving: the lost charge counts, as estimated, and leaves no room for the
    reservation (an over-count for a minute, never an overspent window)."""
    async with running_redis() as server:
        state = await RedisState(server.url, retry_every=0).open()
        async with answers_lost(server):
            refused = await state.begin("g/m", "k", SPECS, Cost(tokens=600), T0)
        assert not isinstance(refused, Hold)  # 600 of the minute's 1000 tokens taken already
        used = await shared_use(server, T0 + 1)
        await state.close()
    assert used == {"requests": 1, "tokens": 600}


async def test_a_lost_begin_that_is_refused_on_the_way_back_gives_the_probe_back():
    """The circuit is open, its rest is over: a BEGIN takes the probe and charges, its answer
    is lost, and the begin's step-by-step fallback finds the probe taken (by that very BEGIN)
    and refuses. The probe is given back, so the next instance may probe; the charge stays."""
    async with running_redis() as server:
        state = await RedisState(
            server.url, policy=CircuitPolicy(threshold=1, base=10), retry_every=0
        ).open()
        await h.failed(state, "g/m", T0, None)  # open until T0 + 10
        answer_lost_next(state, "begin")
        refused = await state.begin("g/m", "k", SPECS, Cost(tokens=300), T0 + 11)
        assert not isinstance(refused, Hold)
        used = await shared_use(server, T0 + 12)
        other = await RedisState(server.url).open()
        probe = await h.claim(other, "g/m", T0 + 12)
        await other.close()
        await state.close()
    assert used == {"requests": 1, "tokens": 300}
    assert probe


async def test_writes_made_while_others_wait_for_redis_keep_their_order():
    """A failure, then a success, of one member while earlier writes wait for Redis to come
    back: Redis ends with the success, as the instance's memory does."""
    async with running_redis() as server:
        state = await RedisState(
            server.url, policy=CircuitPolicy(threshold=2), retry_every=0.05
        ).open()
        await server.stop()
        await h.cool(state, "g/m", T0 + 5)  # waits for Redis
        await server.start()
        await asyncio.sleep(0.06)
        await asyncio.gather(h.failed(state, "g/m", T0, None), h.succeeded(state, "g/m"))
        other = await RedisState(server.url).open()
        shared = await h.health(other, "g/m")
        await other.close()
        mine = await h.health(state.fallback, "g/m")
        await state.close()
    assert shared.failures == mine.failures == 0


def faulty(state: RedisState, rng: random.Random, on: list[bool], lost: list[int]) -> None:
    """While `on[0]`, some of `state`'s charges and settlements never reach Redis (unreachable)
    and some run there but their answer is lost (a timeout); `lost[0]` counts lost charges."""
    link = state._link
    run = link.run

    def fault() -> str:
        draw = rng.random() if on[0] else 1.0
        return "before" if draw < 0.12 else "after" if draw < 0.27 else "none"

    async def faulty_run(name: str, keys: list[str], args: Sequence[str]) -> Any:
        chosen = "none" if name not in ("reserve", "begin", "settle", "end") else fault()
        if chosen == "before":
            raise RedisConnectionError("not sent")
        result = await run(name, keys, args)
        if chosen == "after":
            lost[0] += name in ("reserve", "begin")
            raise RedisTimeoutError("Timeout reading from socket")
        return result

    link.run = faulty_run  # type: ignore[method-assign]


async def test_lost_and_unsent_writes_never_leave_the_shared_budget_short():
    """Randomised, seeded: two instances reserve, begin, settle and finish holds while some of
    their calls never reach Redis and others run with their answer lost; once Redis answers
    again, it counts at least what every hold was last settled to, and at most one request
    more for each charge whose answer was lost."""
    roomy = (Limit("requests", MINUTE, 10**9), Limit("tokens", MINUTE, 10**9))
    async with running_redis() as server:
        for trial in range(60):
            rng, on, lost = random.Random(trial), [True], [0]
            states = [await RedisState(server.url, retry_every=0).open() for _ in range(2)]
            for state in states:
                faulty(state, rng, on, lost)
            key, now = f"k{trial}", T0
            holds: list[list[Any]] = []  # state, hold, member, last count, finished
            for _ in range(rng.randint(5, 30)):
                now += 0.01
                state = rng.choice(states)
                if rng.random() < 0.35 or not holds:
                    tokens = rng.randint(1, 500)
                    member = rng.choice([None, "g/m", "c/m"])
                    hold = await (
                        h.reserve(state, key, roomy, Cost(tokens=tokens), now)
                        if member is None
                        else state.begin(member, key, roomy, Cost(tokens=tokens), now)
                    )
                    assert isinstance(hold, Hold)
                    holds.append([state, hold, member, tokens, False])
                    continue
                entry = rng.choice(holds)
                if entry[4]:
                    continue
                entry[3] = rng.randint(0, 800)
                if entry[2] is not None and rng.random() < 0.4:
                    await h.finish(entry[0], entry[2], entry[1], entry[3], now)
                    entry[4] = True
                else:
                    await h.settle(entry[0], entry[1], entry[3], now)
            on[0] = False
            for state in states:
                for _ in range(3):
                    await state.turn("route")  # Redis answers: what waited is replayed
            used = await shared_use_of(server, key, roomy, now + 0.5)
            for state in states:
                await state.close()
            truth = {"requests": len(holds), "tokens": sum(entry[3] for entry in holds)}
            assert used["tokens"] >= truth["tokens"], f"trial {trial}: {used} {truth}"
            assert truth["requests"] <= used["requests"] <= truth["requests"] + lost[0], (
                f"trial {trial}: {used} {truth}, {lost[0]} charges lost"
            )


async def test_redis_is_retried_at_most_every_interval(caplog):
    async with running_redis() as server:
        state = await RedisState(server.url, retry_every=60).open()
        await server.stop()
        assert await state.turn("route") == 0
        await server.start()
        assert isinstance(await h.reserve(state, "k", SPECS, Cost(tokens=1), T0), Hold)
        raw = Redis.from_url(server.url, decode_responses=True)
        try:
            assert await raw.keys("*") == []  # still served from memory, Redis left alone
        finally:
            await raw.aclose()
        await state.close()
    assert len(warnings_in(caplog)) == 1


async def test_a_state_opened_before_redis_waits_for_it(caplog, tmp_path):
    server = RedisServer(str(tmp_path))
    state = await RedisState(server.url, retry_every=0.1).open()
    assert await state.turn("route") == 0
    await server.start()
    try:
        await asyncio.sleep(0.15)
        assert await state.turn("route") == 0  # Redis's own count starts now
        assert await state.turn("route") == 1
        await state.close()
    finally:
        await server.stop()
    assert len(warnings_in(caplog)) == 1


async def test_the_password_never_reaches_the_logs(caplog):
    caplog.set_level(logging.DEBUG)
    async with running_redis(password="s3cr3t-pw") as server:
        assert ":s3cr3t-pw@" in server.url
        state = await RedisState(server.url, retry_every=0).open()
        assert isinstance(await h.reserve(state, "k", SPECS, Cost(tokens=1), T0), Hold)
        await server.stop()
        assert isinstance(await h.reserve(state, "k", SPECS, Cost(tokens=1), T0 + 1), Hold)
        assert await h.claim(state, "g/m", T0 + 1)
        await state.turn("route")
        late = await RedisState(server.url).open()
        await h.failed(late, "g/m", T0 + 2, None)
        await late.close()
        await state.close()
    assert len(warnings_in(caplog)) == 2  # one per instance
    assert "127.0.0.1" in caplog.text
    assert "s3cr3t" not in caplog.text
