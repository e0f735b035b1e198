"""Windows and budgets on a fake clock."""

import pytest

from ai_api.headroom import ahead_of_pace, daily_share
from ai_api.limits import DAY, MINUTE, Budget, Cost, Limit, Window
from ai_api.ratelimits import RateReading, WindowReading
from ai_api.store.state import MemoryState

from . import homes as h

T0 = 1_800_000_000.0


def test_a_window_counts_over_a_sliding_period_in_sixtieths():
    w = Window("requests", MINUTE, 3)
    for t in (0, 10, 20):
        w.charge(T0 + t, 1)
    assert w.remaining(T0 + 30) == 0
    assert w.remaining(T0 + 60.5) == 0  # its one-second bucket has not wholly left yet
    assert w.remaining(T0 + 61) == 1  # now it has
    assert w.remaining(T0 + 81) == 3


def test_memory_stays_constant_however_many_charges():
    w = Window("tokens", DAY, None)
    for i in range(100_000):
        w.charge(T0 + i * 0.5, 1)
    assert len(w._buckets) <= 61
    assert w.used(T0 + 50_000) == 100_000


def test_free_at_is_when_enough_expires():
    w = Window("tokens", MINUTE, 100)
    w.charge(T0, 60)
    w.charge(T0 + 10, 30)
    assert w.free_at(10, T0 + 20) == T0 + 20  # fits now
    assert w.free_at(50, T0 + 20) == T0 + 61  # once the first 60 (and their bucket) leave
    assert w.free_at(95, T0 + 20) == T0 + 71  # needs both


def test_the_providers_remaining_wins_while_valid():
    w = Window("requests", DAY, 1000)
    w.charge(T0, 1)
    w.observe(limit=1000, remaining=10, valid_until=T0 + 3600, now=T0 + 1)
    assert w.remaining(T0 + 2) == 10
    w.charge(T0 + 3, 1)
    assert w.remaining(T0 + 4) == 9  # the reading minus what was spent since
    assert w.remaining(T0 + 3601) == 998  # reading expired: local count
    w.exhaust(until=T0 + 4000, now=T0 + 3700)
    assert w.remaining(T0 + 3800) == 0
    assert w.free_at(1, T0 + 3800) == T0 + 4000


def test_a_window_without_limit_learns_it_from_headers():
    w = Window("tokens", MINUTE, None)
    assert w.remaining(T0) is None
    w.observe(limit=8000, remaining=7000, valid_until=T0 + 10, now=T0)
    assert w.limit == 8000
    assert w.remaining(T0 + 1) == 7000


def test_reservation_settles_to_real_tokens():
    budget = Budget([Limit("tokens", MINUTE, 10_000), Limit("requests", MINUTE, 10)])
    reservation = budget.reserve(Cost(tokens=4096 + 100), T0)
    tokens = budget.window("tokens", MINUTE)
    assert tokens.remaining(T0) == 10_000 - 4196
    reservation.settle(150)
    assert tokens.remaining(T0 + 1) == 10_000 - 150
    assert budget.window("requests", MINUTE).remaining(T0 + 1) == 9


def test_fits_checks_every_window():
    budget = Budget([Limit("requests", DAY, 100), Limit("tokens", MINUTE, 1000)])
    assert budget.fits(Cost(tokens=1000), T0)
    assert not budget.fits(Cost(tokens=1001), T0)
    budget.reserve(Cost(tokens=900), T0)
    assert not budget.fits(Cost(tokens=200), T0 + 1)
    assert budget.free_at(Cost(tokens=200), T0 + 1) == T0 + MINUTE + 1


def test_observe_headers_adds_windows_it_did_not_know():
    budget = Budget()
    reading = RateReading(
        windows=(WindowReading("requests", DAY, 1000, 0, T0 + 500),),
        retry_at=None,
    )
    budget.observe(reading, T0)
    assert not budget.fits(Cost(tokens=0), T0 + 1)
    assert budget.free_at(Cost(tokens=0), T0 + 1) == T0 + 500


async def test_daily_share_and_pace():
    state = MemoryState()
    specs = (Limit("requests", DAY, 100), Limit("tokens", DAY, 1000))
    start = T0 - T0 % DAY + DAY / 24  # one hour into a UTC day
    assert daily_share(await h.windows(state, "k", specs, start)) == 1.0
    for i in range(10):
        await h.reserve(state, "k", specs, Cost(tokens=5), start + i)
    now = await h.windows(state, "k", specs, start + 20)
    assert daily_share(now) == pytest.approx(0.9)  # requests: 90 of 100 left
    assert ahead_of_pace(now, start + 20, burst=0.0)
    assert not ahead_of_pace(now, start + 20, burst=0.1)  # 10 of 100+ allowed
    assert daily_share([]) == 1.0


def test_spent_today_counts_from_utc_midnight_and_settles_only_todays_charges():
    w = Window("tokens", DAY, 1_000)
    midnight = T0 - T0 % DAY + DAY
    yesterday = w.charge(midnight - 10, 100)
    assert w.spent_today(midnight - 5) == 100
    assert w.spent_today(midnight + 5) == 0  # a new day, though the window still holds it
    today = w.charge(midnight + 10, 30)
    w.settle(yesterday, 40)  # yesterday's charge corrected: not today's spending
    w.settle(today, 50)
    assert w.spent_today(midnight + 20) == 50
    assert w.used(midnight + 20) == 90
    w.charge(midnight - 20, 7)  # a late replay of yesterday does not restart the day
    assert w.spent_today(midnight + 20) == 50
