"""The shared-state suite: every home of turns, budgets and health passes the same tests.

`homes` yields a factory of state objects that share one backing store (two objects of a
persistent home are two processes' views of the same budget; the memory home has only one).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from ai_api.limits import DAY, MINUTE, Cost, Exhaustion, Limit
from ai_api.ratelimits import RateReading, WindowReading
from ai_api.store.state import End, Hold, MemoryState, SharedState

from . import homes as h

T0 = 1_800_000_000.0 - 1_800_000_000.0 % DAY + 3600  # one hour into a UTC day
RPM3 = (Limit("requests", MINUTE, 3),)
Factory = Callable[[], Awaitable[SharedState]]


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def home(request, tmp_path) -> AsyncIterator[Factory]:
    if request.param == "sqlite":
        from .home_sqlite import sqlite_home

        async with sqlite_home(tmp_path) as factory:
            yield factory
    elif request.param == "redis":
        from .home_redis import redis_home

        async with redis_home() as factory:
            yield factory
    else:
        shared = MemoryState()

        async def factory() -> SharedState:
            return shared

        yield factory
        await shared.close()


async def test_turns_count_per_route(home):
    a, b = await home(), await home()
    assert [await a.turn("r"), await b.turn("r"), await a.turn("r")] == [0, 1, 2]
    assert await b.turn("other") == 0


async def test_reserve_charges_until_a_window_is_full(home):
    state = await home()
    holds = [await h.reserve(state, "k", RPM3, Cost(tokens=0), T0 + i) for i in range(3)]
    assert all(isinstance(h, Hold) for h in holds)
    refused = await h.reserve(state, "k", RPM3, Cost(tokens=0), T0 + 3)
    assert isinstance(refused, float)
    assert T0 + 59 <= refused <= T0 + 61
    assert isinstance(await h.reserve(state, "k", RPM3, Cost(tokens=0), T0 + 62), Hold)


async def test_a_refused_reservation_charges_nothing(home):
    state = await home()
    specs = (Limit("requests", MINUTE, 10), Limit("tokens", MINUTE, 100))
    assert isinstance(await h.reserve(state, "k", specs, Cost(tokens=60), T0), Hold)
    assert isinstance(await h.reserve(state, "k", specs, Cost(tokens=60), T0 + 1), float)
    windows = {w.kind: w for w in await h.windows(state, "k", specs, T0 + 2)}
    assert windows["requests"].used == 1
    assert windows["tokens"].used == 60
    assert windows["tokens"].remaining == 40


async def test_settle_replaces_the_reserved_tokens(home):
    state = await home()
    specs = (Limit("tokens", MINUTE, 10_000),)
    hold = await h.reserve(state, "k", specs, Cost(tokens=4096), T0)
    assert isinstance(hold, Hold)
    await h.settle(state, hold, 150, T0 + 1)
    (window,) = await h.windows(state, "k", specs, T0 + 2)
    assert window.used == 150
    assert window.remaining == 10_000 - 150


async def test_windows_report_use_remaining_and_today(home):
    state = await home()
    specs = (Limit("requests", DAY, 100), Limit("requests", MINUTE, 10))
    for i in range(4):
        assert isinstance(await h.reserve(state, "k", specs, Cost(tokens=0), T0 + i), Hold)
    by_period = {w.period: w for w in await h.windows(state, "k", specs, T0 + 120)}
    assert by_period[DAY].used == 4
    assert by_period[DAY].remaining == 96
    assert by_period[DAY].today == 4
    assert by_period[MINUTE].used == 0  # those four left the minute window
    assert by_period[MINUTE].limit == 10


async def test_a_providers_reading_wins_until_its_reset(home):
    state = await home()
    specs = (Limit("requests", DAY, 1000),)
    reading = RateReading(
        windows=(WindowReading("requests", DAY, 1000, 0, T0 + 500),), retry_at=None
    )
    await state.observe("m", "k", reading, T0)
    assert await h.free_at(state, "k", specs, Cost(tokens=0), T0 + 1) == pytest.approx(
        T0 + 500, abs=1
    )
    assert isinstance(await h.reserve(state, "k", specs, Cost(tokens=0), T0 + 1), float)
    assert isinstance(await h.reserve(state, "k", specs, Cost(tokens=0), T0 + 501), Hold)


async def test_readings_teach_limits_of_windows_not_configured(home):
    state = await home()
    reading = RateReading(
        windows=(WindowReading("tokens", MINUTE, 8000, 7000, T0 + 10),), retry_at=None
    )
    await state.observe("m", "k", reading, T0)
    (window,) = await h.windows(state, "k", (), T0 + 1)
    assert (window.kind, window.period, window.limit, window.remaining) == (
        "tokens",
        MINUTE,
        8000,
        7000,
    )


async def test_exhaust_closes_the_named_windows_until_then(home):
    state = await home()
    specs = (Limit("requests", DAY, 1000), Limit("tokens", MINUTE, 10_000))
    await h.exhaust(state, "k", "requests", DAY, T0 + 300, T0)
    assert isinstance(await h.reserve(state, "k", specs, Cost(tokens=1), T0 + 1), float)
    assert isinstance(await h.reserve(state, "k", specs, Cost(tokens=1), T0 + 301), Hold)


async def test_concurrent_reservations_never_overspend(home):
    a, b = await home(), await home()
    specs = (Limit("requests", MINUTE, 20),)
    results = await asyncio.gather(
        *(h.reserve(s, "k", specs, Cost(tokens=0), T0) for _ in range(25) for s in (a, b))
    )
    assert sum(isinstance(r, Hold) for r in results) == 20


async def test_cooldowns_and_circuits(home):
    a, b = await home(), await home()
    assert await h.claim(a, "m", T0)  # a closed circuit: nothing to claim
    await h.cool(a, "m", T0 + 30)
    assert not await h.claim(b, "m", T0 + 29)
    assert await h.ready_at(b, "m") == pytest.approx(T0 + 30)
    assert await h.claim(b, "m", T0 + 30)
    for _ in range(3):
        await h.failed(a, "m", T0 + 40, None)
    assert (await h.health(b, "m")).circuit == "open"
    assert not await h.claim(b, "m", T0 + 54)
    claims = [await h.claim(s, "m", T0 + 56) for s in (a, b, a)]
    assert claims.count(True) == 1  # one probe, whichever process asks first
    assert (await h.health(a, "m")).circuit == "half-open"
    await h.release(b, "m")
    assert await h.claim(a, "m", T0 + 57)
    await h.succeeded(a, "m")
    assert (await h.health(b, "m")).circuit == "closed"
    assert await h.claim(b, "m", T0 + 58)
    assert await h.claim(b, "m", T0 + 58)  # a closed circuit admits everyone


async def test_begin_claims_and_reserves_as_one(home):
    a, b = await home(), await home()
    specs = (Limit("requests", MINUTE, 10), Limit("tokens", MINUTE, 100))
    hold = await a.begin("m", "k", specs, Cost(tokens=60), T0)
    assert isinstance(hold, Hold)
    await h.settle(b, hold, 50, T0 + 1)  # the hold settles like a reservation's
    # No room: when there will be, and nothing charged.
    refused = await b.begin("m", "k", specs, Cost(tokens=60), T0 + 1)
    assert isinstance(refused, float)
    assert T0 + 59 <= refused <= T0 + 61
    windows = {w.kind: w for w in await h.windows(a, "k", specs, T0 + 2)}
    assert (windows["requests"].used, windows["tokens"].used) == (1, 50)
    # A resting member: when it may be tried, and nothing charged.
    await h.cool(a, "m", T0 + 30)
    assert await b.begin("m", "k", specs, Cost(tokens=10), T0 + 2) == pytest.approx(T0 + 30)
    assert (await h.windows(a, "k", specs, T0 + 3))[0].used == 1


async def test_begin_takes_an_open_circuits_probe_only_with_room(home):
    a, b = await home(), await home()
    for _ in range(3):
        await h.failed(a, "m", T0, None)
    assert (await h.health(b, "m")).circuit == "open"
    full = (Limit("requests", MINUTE, 0),)
    # Past the rest, but no room: the probe stays for a request that can go.
    assert isinstance(await a.begin("m", "full", full, Cost(tokens=0), T0 + 16), float)
    assert (await h.health(b, "m")).circuit == "open"
    begun = [await s.begin("m", "k", RPM3, Cost(tokens=0), T0 + 16) for s in (a, b, a)]
    assert [isinstance(x, Hold) for x in begun] == [True, False, False]  # one probe
    assert isinstance(begun[0], Hold)
    assert begun[0].probe
    assert (await h.health(b, "m")).circuit == "half-open"
    assert (await h.windows(a, "k", RPM3, T0 + 16))[0].used == 1  # only the probe charged


async def test_finish_marks_the_member_healthy_and_settles_in_one_step(home):
    a, b = await home(), await home()
    specs = (Limit("tokens", MINUTE, 100),)
    for _ in range(2):
        await h.failed(a, "m", T0, None)
    hold = await a.begin("m", "k", specs, Cost(tokens=80), T0)
    assert isinstance(hold, Hold)
    await h.finish(a, "m", hold, 30, T0 + 1)
    assert (await h.health(b, "m")).failures == 0  # a third failure now opens nothing
    await h.failed(b, "m", T0 + 2, None)
    assert (await h.health(a, "m")).circuit == "closed"
    assert (await h.windows(b, "k", specs, T0 + 2))[0].used == 30
    await h.finish(a, "m", hold, 30, T0 + 3)  # the same count again changes nothing
    assert (await h.windows(b, "k", specs, T0 + 3))[0].used == 30


async def test_free_at_counts_what_was_spent_since_a_reading(home):
    """100 tokens left until T0+30 by the provider's word, 50 reserved since: 80 fit at T0+30
    (when the reading's window resets), not a minute after the reservation leaves."""
    state = await home()
    specs = (Limit("tokens", MINUTE, 1000),)
    reading = RateReading((WindowReading("tokens", MINUTE, 1000, 100, T0 + 30),), None)
    await state.observe("m", "k", reading, T0)
    assert isinstance(await h.reserve(state, "k", specs, Cost(tokens=50), T0 + 1), Hold)
    assert await h.free_at(state, "k", specs, Cost(tokens=80), T0 + 2) == T0 + 30
    assert await h.reserve(state, "k", specs, Cost(tokens=80), T0 + 2) == T0 + 30


async def test_only_a_daily_window_counts_today(home):
    state = await home()
    specs = (Limit("tokens", MINUTE, 1000), Limit("tokens", DAY, 10_000))
    assert isinstance(await h.reserve(state, "k", specs, Cost(tokens=70), T0), Hold)
    today = {w.period: w.today for w in await h.windows(state, "k", specs, T0 + 1)}
    assert today == {MINUTE: 0, DAY: 70}


async def test_a_charge_at_the_moment_of_a_reading_counts_as_before_it(home):
    """Homes tell charges made after a reading by their time: one at the reading's very moment
    is taken as counted in it."""
    state = await home()
    specs = (Limit("tokens", MINUTE, 1000),)
    reading = RateReading((WindowReading("tokens", MINUTE, 1000, 500, T0 + 30),), None)
    await state.observe("m", "k", reading, T0)
    assert isinstance(await h.reserve(state, "k", specs, Cost(tokens=100), T0), Hold)
    assert isinstance(await h.reserve(state, "k", specs, Cost(tokens=40), T0 + 1), Hold)
    (window,) = await h.windows(state, "k", specs, T0 + 2)
    assert (window.used, window.remaining) == (140, 460)


async def test_a_429_naming_no_window_reaches_configured_windows_only_asked_about(home):
    state = await home()
    specs = (Limit("tokens", MINUTE, 1000),)
    full = (Limit("tokens", MINUTE, 1000), Limit("requests", MINUTE, 0))
    assert isinstance(await h.reserve(state, "k", full, Cost(tokens=1), T0), float)  # no room
    await h.windows(state, "j", specs, T0)
    await h.exhaust(state, "k", "tokens", None, T0 + 30, T0 + 1)
    await h.exhaust(state, "j", None, None, T0 + 30, T0 + 1)
    assert await h.free_at(state, "k", full, Cost(tokens=1, requests=0), T0 + 2) == T0 + 30
    assert await h.reserve(state, "j", specs, Cost(tokens=1), T0 + 2) == T0 + 30


async def test_what_was_spent_since_a_reading_counts_until_its_reset_past_the_window(home):
    """A reading counts what was charged after it until the provider's reset, even once that
    charge has left the sliding window here."""
    state = await home()
    specs = (Limit("tokens", MINUTE, 1000),)
    reading = RateReading((WindowReading("tokens", MINUTE, 1000, 30, T0 + 300),), None)
    await state.observe("m", "k", reading, T0)
    assert isinstance(await h.reserve(state, "k", specs, Cost(tokens=10), T0 + 1), Hold)
    (window,) = await h.windows(state, "k", specs, T0 + 70)
    assert (window.used, window.remaining) == (0, 20)


async def test_end_is_one_step_settling_observing_exhausting_resting_and_failing(home):
    a, b = await home(), await home()
    specs = (Limit("tokens", MINUTE, 1000), Limit("requests", DAY, 100))
    hold = await a.begin("m", "k", specs, Cost(tokens=400), T0)
    assert isinstance(hold, Hold)
    reading = RateReading((WindowReading("tokens", MINUTE, 1000, 700, T0 + 30),), None)
    end = End(
        120,
        "failed",
        retry_at=T0 + 20,
        reading=reading,
        exhausts=Exhaustion("requests", DAY, T0 + 90),
        rest_until=T0 + 40,
    )
    assert await a.end("m", hold, end, T0 + 1) == T0 + 40
    snapshot = await b.snapshot("k", specs, "m", T0 + 2)
    by_kind = {w.kind: w for w in snapshot.windows}
    assert (by_kind["tokens"].used, by_kind["tokens"].remaining) == (120, 700)
    assert by_kind["requests"].remaining == 0
    assert (snapshot.health.failures, snapshot.health.cooldown_until) == (1, T0 + 40)
    assert snapshot.ready_at == T0 + 40


async def test_end_tells_success_and_release(home):
    a, b = await home(), await home()
    specs = (Limit("tokens", MINUTE, 1000),)
    readies, holds = [], []
    for _ in range(3):
        hold = await a.begin("m", "k", specs, Cost(tokens=10), T0)
        assert isinstance(hold, Hold)
        holds.append(hold)
        readies.append(await a.end("m", hold, End(10, "failed"), T0))
    assert readies == [0.0, 0.0, T0 + 15]  # the third failure opened the circuit
    assert not any(hold.probe for hold in holds)  # a closed circuit's attempts probe nothing
    probe = await b.begin("m", "k", specs, Cost(tokens=10), T0 + 15)
    assert isinstance(probe, Hold)
    assert probe.probe
    assert (await a.snapshot("k", specs, "m", T0 + 15)).health.circuit == "half-open"
    await b.end("m", probe, End(10), T0 + 16)  # released: the next request may probe
    probe = await a.begin("m", "k", specs, Cost(tokens=10), T0 + 16)
    assert isinstance(probe, Hold)
    assert await a.end("m", probe, End(10, "succeeded"), T0 + 17) == 0.0
    snapshot = await b.snapshot("k", specs, "m", T0 + 17)
    assert (snapshot.health.circuit, snapshot.ready_at) == ("closed", 0.0)
    assert snapshot.windows[0].used == 50


async def test_a_reading_that_says_when_to_retry_rests_the_member(home):
    a, b = await home(), await home()
    reading = RateReading((WindowReading("tokens", MINUTE, 1000, 900, T0 + 30),), T0 + 25)
    await a.observe("m", "k", reading, T0)
    snapshot = await b.snapshot("k", (), "m", T0 + 1)
    assert snapshot.ready_at == T0 + 25
    assert [(w.limit, w.remaining) for w in snapshot.windows] == [(1000, 900)]
    assert await b.begin("m", "k", (), Cost(tokens=1), T0 + 1) == T0 + 25


async def test_a_failing_probe_rests_its_circuit_at_most_20_s(home):
    # A provider that comes back is tried again within 30 s while requests flow (a probe goes
    # with the first request after a rest of at most 20 s).
    a = await home()
    specs = (Limit("tokens", MINUTE, 10**9),)
    now, rests = T0, []
    for _ in range(3):
        hold = await a.begin("m", "k", specs, Cost(tokens=1), now)
        assert isinstance(hold, Hold)
        ready = await a.end("m", hold, End(1, "failed"), now)
    for _ in range(5):  # each probe fails: the circuit opens again
        rests.append(ready - now)
        now = ready
        probe = await a.begin("m", "k", specs, Cost(tokens=1), now)
        assert isinstance(probe, Hold)
        assert probe.probe
        ready = await a.end("m", probe, End(1, "failed"), now)
    assert rests == [15.0, 20.0, 20.0, 20.0, 20.0]
