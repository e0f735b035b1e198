"""RedisState beyond the shared suite: expiring keys, persistence, and a Redis that goes away."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from ai_api.limits import DAY, MINUTE, Cost
from ai_api.ratelimits import RateReading, WindowReading
from ai_api.store.state import Hold, WindowSpec

from .home_redis import RedisServer, require_redis, running_redis

require_redis()

from redis.asyncio import Redis  # noqa: E402
from redis.exceptions import ConnectionError as RedisConnectionError  # noqa: E402
from redis.exceptions import TimeoutError as RedisTimeoutError  # noqa: E402

from ai_api.store.redis_state import RedisState  # noqa: E402

T0 = 1_800_000_000.0 - 1_800_000_000.0 % DAY + 3600
SPECS = (WindowSpec("requests", MINUTE, 10), WindowSpec("tokens", MINUTE, 1000))


def warnings_in(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "ai_api.store" and r.levelno >= logging.WARNING]


async def test_every_key_expires_a_little_after_it_stops_mattering():
    async with running_redis() as server:
        state = await RedisState(server.url, prefix="p:").open()
        specs = (*SPECS, WindowSpec("requests", DAY, 100))
        hold = await state.reserve("acct|m", specs, Cost(tokens=300), T0)
        assert isinstance(hold, Hold)
        await state.settle(hold, 120, T0 + 1)
        reading = RateReading((WindowReading("tokens", MINUTE, 1000, 500, T0 + 30),), None)
        await state.observe("acct|m", reading, T0 + 1)
        await state.exhaust("acct|m", "requests", DAY, T0 + 600, T0 + 2)
        for _ in range(3):
            await state.failed("g/m", T0 + 2, None)
        await state.cool("c/m", T0 + 40)
        await state.turn("route")
        raw = Redis.from_url(server.url, decode_responses=True)
        try:
            ttls = {str(key): await raw.pttl(key) for key in await raw.keys("p:*")}
        finally:
            await raw.aclose()
        await state.close()
    holds = {key for key in ttls if key.startswith("p:b:acct|m:o:")}
    assert len(holds) == 1  # the hold: what it charged, counts for, and its last settlement
    failures = {key for key in ttls if key.startswith("p:h:g/m:f:")}
    assert len(failures) == 3  # each failure, counted once
    assert set(ttls) - holds - failures == {
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
    assert ttls[holds.pop()] <= 900 * 1000
    assert all(ttls[key] <= 900 * 1000 for key in failures)


async def test_state_outlives_the_instance():
    async with running_redis() as server:
        first = await RedisState(server.url).open()
        assert isinstance(await first.reserve("k", SPECS, Cost(tokens=200), T0), Hold)
        for _ in range(3):
            await first.failed("g/m", T0, None)
        await first.close()
        await first.close()  # idempotent
        second = await RedisState(server.url).open()
        windows = {w.kind: w for w in await second.windows("k", SPECS, T0 + 1)}
        health = await second.health("g/m")
        await second.close()
    assert second.persistent
    assert (windows["requests"].used, windows["tokens"].used) == (1, 200)
    assert health.circuit == "open"


async def test_finish_survives_a_redis_that_forgot_its_scripts():
    async with running_redis() as server:
        state = await RedisState(server.url).open()
        for _ in range(2):
            await state.failed("g/m", T0, None)
        hold = await state.begin("g/m", "k", SPECS, Cost(tokens=200), T0)
        assert isinstance(hold, Hold)
        admin = Redis.from_url(server.url)
        await admin.script_flush()  # as after a restart that kept the data, or SCRIPT FLUSH
        await state.finish("g/m", hold, 50, T0 + 1)
        await admin.aclose()
        other = await RedisState(server.url).open()
        health = await other.health("g/m")
        windows = {w.kind: w.used for w in await other.windows("k", SPECS, T0 + 2)}
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
        assert await state.claim("g/m", T0 + 1)
        assert await state.turn("route") == 0
        await state.cool("g/m", T0 + 100)
        await state.settle(during, 40, T0 + 2)
        last = await state.reserve("k", SPECS, Cost(tokens=100), T0 + 3)
        assert isinstance(last, Hold)
        remembered = {w.kind: w.used for w in await state.windows("k", SPECS, T0 + 3)}
        assert remembered == {"requests": 3, "tokens": 240}  # the mirror and the fallback's own
        assert len(warnings_in(caplog)) == 1

        await server.start()  # empty: it kept nothing across the restart
        await asyncio.sleep(0.25)
        await state.settle(last, 60, T0 + 4)  # sees Redis back: replays, then settles there
        other = await RedisState(server.url).open()
        shared = {w.kind: w.used for w in await other.windows("k", SPECS, T0 + 5)}
        cooled_until = await other.ready_at("g/m")
        await other.close()
        await state.close()
    assert shared == {"requests": 2, "tokens": 100}
    assert cooled_until == T0 + 100
    assert len(warnings_in(caplog)) == 1
    assert "replayed 3 writes" in caplog.text


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
    busy = asyncio.ensure_future(admin.eval(_BUSY, 0, "900000"))
    await asyncio.sleep(0.1)  # Redis is in the script now
    try:
        yield
    finally:
        await busy
        await admin.aclose()


async def shared_use(server: RedisServer, now: float) -> dict[str, float]:
    """The windows' use as another instance reads it from Redis."""
    return await shared_use_of(server, "k", SPECS, now)


async def shared_use_of(
    server: RedisServer, key: str, specs: Sequence[WindowSpec], now: float
) -> dict[str, float]:
    other = await RedisState(server.url).open()
    try:
        return {w.kind: w.used for w in await other.windows(key, specs, now)}
    finally:
        await other.close()


async def test_a_settlement_whose_answer_was_lost_counts_once(caplog):
    caplog.set_level(logging.INFO, logger="ai_api.store")
    async with running_redis() as server:
        state = await RedisState(server.url, retry_every=0.2).open()
        hold = await state.reserve("k", SPECS, Cost(tokens=300), T0)
        assert isinstance(hold, Hold)
        async with answers_lost(server):
            await state.settle(hold, 120, T0 + 1)  # gives up: queued for a replay
        await asyncio.sleep(0.25)
        assert await state.turn("route") == 0  # Redis is back: the settlement is replayed
        assert "replayed 1 writes" in caplog.text
        await state.settle(hold, 100, T0 + 2)  # and a later one still counts
        used = await shared_use(server, T0 + 3)
        await state.close()
    assert used == {"requests": 1, "tokens": 100}


async def test_a_finish_whose_answer_was_lost_counts_once(caplog):
    caplog.set_level(logging.INFO, logger="ai_api.store")
    async with running_redis() as server:
        state = await RedisState(server.url, retry_every=0.2).open()
        hold = await state.begin("g/m", "k", SPECS, Cost(tokens=300), T0)
        assert isinstance(hold, Hold)
        async with answers_lost(server):
            await state.finish("g/m", hold, 50, T0 + 1)
        await asyncio.sleep(0.25)
        assert await state.turn("route") == 0
        assert "replayed 1 writes" in caplog.text
        used = await shared_use(server, T0 + 2)
        await state.close()
    assert used == {"requests": 1, "tokens": 50}


async def test_a_failure_whose_answer_was_lost_counts_once():
    async with running_redis() as server:
        state = await RedisState(server.url, threshold=2, retry_every=0).open()
        answer_lost_next(state, "failed")
        await state.failed("g/m", T0, None)  # ran, answer lost: replayed at the next call
        assert await state.turn("route") == 0
        other = await RedisState(server.url).open()
        health = await other.health("g/m")
        await other.close()
        await state.close()
    assert (health.failures, health.circuit) == (1, "closed")


async def test_a_begin_whose_answer_was_lost_is_charged_once(caplog):
    caplog.set_level(logging.INFO, logger="ai_api.store")
    async with running_redis() as server:
        state = await RedisState(server.url, retry_every=0.2).open()
        async with answers_lost(server):
            hold = await state.begin("g/m", "k", SPECS, Cost(tokens=100), T0)
            assert isinstance(hold, Hold)  # from memory: its charge waits for a replay
        await asyncio.sleep(0.25)
        await state.settle(hold, 80, T0 + 1)  # Redis is back: the charge is replayed first
        assert "replayed 1 writes" in caplog.text
        used = await shared_use(server, T0 + 2)
        await state.close()
    assert used == {"requests": 1, "tokens": 80}


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


async def test_a_replay_whose_settlement_was_lost_ends_at_the_count_last_asked_for():
    """A hold charged while Redis was away is replayed: its charge, then its settlement; that
    settlement's answer is lost, the hold is settled again, and the replay runs again."""
    async with running_redis() as server:
        state = await RedisState(server.url, retry_every=0.2).open()
        await server.stop()
        hold = await state.reserve("k", SPECS, Cost(tokens=100), T0)
        assert isinstance(hold, Hold)
        await state.settle(hold, 300, T0 + 1)  # for the replay to settle
        await server.start()
        await asyncio.sleep(0.25)
        answer_lost_next(state, "settle")
        await state.turn("route")  # replays: the charge, then the settlement, its answer lost
        await state.settle(hold, 500, T0 + 2)
        await asyncio.sleep(0.25)
        await state.turn("route")  # replays again
        used = await shared_use(server, T0 + 3)
        await state.close()
    assert used == {"requests": 1, "tokens": 500}


async def test_a_charge_replayed_after_another_instance_learned_a_window_settles_only_its_own():
    """A charge whose answer was lost answers its replay with the windows it charged, not the
    budget's windows of the moment: a window learned since is not settled against."""
    minute = (WindowSpec("tokens", MINUTE, 10**6),)
    async with running_redis() as server:
        a = await RedisState(server.url, retry_every=0.2).open()
        b = await RedisState(server.url).open()
        async with answers_lost(server):
            hold = await a.reserve("k", minute, Cost(tokens=1000), T0)
        assert isinstance(hold, Hold)
        reading = RateReading((WindowReading("tokens", DAY, 10**6, 10**6, T0 + DAY),), None)
        await b.observe("k", reading, T0)  # b learns a daily window
        assert isinstance(await b.reserve("k", minute, Cost(tokens=400), T0), Hold)
        await asyncio.sleep(0.25)
        await a.settle(hold, 100, T0 + 1)  # replays: the charge is not made again, then settles
        windows = {w.period: w.used for w in await b.windows("k", minute, T0 + 2)}
        await a.close()
        await b.close()
    assert windows == {MINUTE: 500, DAY: 400}


async def test_a_begin_whose_answer_was_lost_keeps_its_charge_when_redis_is_back_at_once():
    """The BEGIN ran, its answer was lost, and Redis answers again by the time the begin falls
    back to reserving: that reservation is the charge already made, not a new one that the
    first would leave no room for."""
    async with running_redis() as server:
        state = await RedisState(server.url, retry_every=0).open()
        async with answers_lost(server):
            hold = await state.begin("g/m", "k", SPECS, Cost(tokens=600), T0)
        assert isinstance(hold, Hold)  # 600 of the minute's 1000 tokens: the hold's own charge
        await state.finish("g/m", hold, 100, T0 + 1)
        used = await shared_use(server, T0 + 2)
        await state.close()
    assert used == {"requests": 1, "tokens": 100}


async def test_a_lost_begin_that_is_refused_on_the_way_back_takes_back_its_charge_and_probe():
    """The circuit is open, its rest is over: a BEGIN takes the probe and charges, its answer
    is lost, and the begin's step-by-step fallback finds the probe taken (by that very BEGIN)
    and refuses. What the BEGIN took is given back: the next instance may probe."""
    async with running_redis() as server:
        state = await RedisState(server.url, threshold=1, base=10, retry_every=0).open()
        await state.failed("g/m", T0, None)  # open until T0 + 10
        answer_lost_next(state, "begin")
        refused = await state.begin("g/m", "k", SPECS, Cost(tokens=300), T0 + 11)
        assert not isinstance(refused, Hold)
        used = await shared_use(server, T0 + 12)
        other = await RedisState(server.url).open()
        probe = await other.claim("g/m", T0 + 12)
        await other.close()
        await state.close()
    assert used == {"requests": 0, "tokens": 0}
    assert probe


async def test_writes_made_while_others_wait_for_redis_keep_their_order():
    """A failure, then a success, of one member while earlier writes wait for Redis to come
    back: Redis ends with the success, as the instance's memory does."""
    async with running_redis() as server:
        state = await RedisState(server.url, threshold=2, retry_every=0.05).open()
        await server.stop()
        await state.cool("g/m", T0 + 5)  # waits for Redis
        await server.start()
        await asyncio.sleep(0.06)
        await asyncio.gather(state.failed("g/m", T0, None), state.succeeded("g/m"))
        other = await RedisState(server.url).open()
        shared = await other.health("g/m")
        await other.close()
        mine = await state.fallback.health("g/m")
        await state.close()
    assert shared.failures == mine.failures == 0


def faulty(state: RedisState, rng: random.Random, on: list[bool]) -> None:
    """While `on[0]`, some of `state`'s charges and settlements never reach Redis (unreachable)
    and some run there but their answer is lost (a timeout)."""
    link = state._link
    run, pipelined = link.run, link.pipelined

    def fault() -> str:
        draw = rng.random() if on[0] else 1.0
        return "before" if draw < 0.12 else "after" if draw < 0.27 else "none"

    async def faulty_run(name: str, keys: list[str], args: Sequence[str]) -> Any:
        chosen = "none" if name not in ("reserve", "begin", "settle", "undo") else fault()
        if chosen == "before":
            raise RedisConnectionError("not sent")
        result = await run(name, keys, args)
        if chosen == "after":
            raise RedisTimeoutError("Timeout reading from socket")
        return result

    async def faulty_pipelined(calls: Sequence[Any]) -> None:
        chosen = fault()
        if chosen == "before":
            raise RedisConnectionError("not sent")
        await pipelined(calls)
        if chosen == "after":
            raise RedisTimeoutError("Timeout reading from socket")

    link.run = faulty_run  # type: ignore[method-assign]
    link.pipelined = faulty_pipelined  # type: ignore[method-assign]


async def test_lost_and_unsent_writes_leave_the_shared_budget_exact():
    """Randomised, seeded: two instances reserve, begin, settle and finish holds while some of
    their calls never reach Redis and others run with their answer lost; once Redis answers
    again, it counts each hold once, at the count it was last settled to."""
    roomy = (WindowSpec("requests", MINUTE, 10**9), WindowSpec("tokens", MINUTE, 10**9))
    async with running_redis() as server:
        for trial in range(60):
            rng, on = random.Random(trial), [True]
            states = [await RedisState(server.url, retry_every=0).open() for _ in range(2)]
            for state in states:
                faulty(state, rng, on)
            key, now = f"k{trial}", T0
            holds: list[list[Any]] = []  # state, hold, member, last count, finished
            for _ in range(rng.randint(5, 30)):
                now += 0.01
                state = rng.choice(states)
                if rng.random() < 0.35 or not holds:
                    tokens = rng.randint(1, 500)
                    member = rng.choice([None, "g/m", "c/m"])
                    hold = await (
                        state.reserve(key, roomy, Cost(tokens=tokens), now)
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
                    await entry[0].finish(entry[2], entry[1], entry[3], now)
                    entry[4] = True
                else:
                    await entry[0].settle(entry[1], entry[3], now)
            on[0] = False
            for state in states:
                for _ in range(3):
                    await state.turn("route")  # Redis answers: what waited is replayed
            used = await shared_use_of(server, key, roomy, now + 0.5)
            for state in states:
                await state.close()
            truth = {"requests": len(holds), "tokens": sum(entry[3] for entry in holds)}
            assert used == truth, f"trial {trial}"


async def test_redis_is_retried_at_most_every_interval(caplog):
    async with running_redis() as server:
        state = await RedisState(server.url, retry_every=60).open()
        await server.stop()
        assert await state.turn("route") == 0
        await server.start()
        assert isinstance(await state.reserve("k", SPECS, Cost(tokens=1), T0), Hold)
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
        assert isinstance(await state.reserve("k", SPECS, Cost(tokens=1), T0), Hold)
        await server.stop()
        assert isinstance(await state.reserve("k", SPECS, Cost(tokens=1), T0 + 1), Hold)
        assert await state.claim("g/m", T0 + 1)
        await state.turn("route")
        late = await RedisState(server.url).open()
        await late.failed("g/m", T0 + 2, None)
        await late.close()
        await state.close()
    assert len(warnings_in(caplog)) == 2  # one per instance
    assert "127.0.0.1" in caplog.text
    assert "s3cr3t" not in caplog.text
