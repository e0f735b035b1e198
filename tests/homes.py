"""What every home of the shared-state suite shares: a factory of states, all closed at exit,
and the questions the tests ask, put through the six operations."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager

from ai_api.cooldowns import Health
from ai_api.limits import Cost, Exhaustion, Kind, Limit
from ai_api.ratelimits import RateReading
from ai_api.store.state import End, Hold, SharedState, WindowState

Factory = Callable[[], Awaitable[SharedState]]


@asynccontextmanager
async def closing_states(open_one: Factory) -> AsyncIterator[Factory]:
    """A factory of states made by `open_one`; every state it made is closed at exit."""
    opened: list[SharedState] = []

    async def factory() -> SharedState:
        state = await open_one()
        opened.append(state)
        return state

    try:
        yield factory
    finally:
        for state in opened:
            await state.close()


# The old operations, each through the six: a test asks what it asked before, in their terms.
NOBODY = "-"
"""A member never tried: an end on its behalf tells no member's health."""
NOTHING = "-"
"""A budget key nothing is charged to."""


def _none(key: str = NOTHING) -> Hold:
    """A hold that charged nothing (an end that only tells health, or only exhausts)."""
    return Hold(key, 0, None)


async def reserve(
    state: SharedState, key: str, specs: Sequence[Limit], cost: Cost, now: float
) -> Hold | float:
    """A charge to `key` alone: `begin` for a member never tried."""
    return await state.begin(NOBODY, key, specs, cost, now)


async def free_at(
    state: SharedState, key: str, specs: Sequence[Limit], cost: Cost, now: float
) -> float:
    """When `cost` fits: what a refused `begin` answers (it must not fit now)."""
    got = await reserve(state, key, specs, cost, now)
    assert isinstance(got, float), "it fitted, and was charged"
    return got


async def settle(state: SharedState, hold: Hold, tokens: int, now: float) -> None:
    await state.end(NOBODY, hold, End(tokens), now)


async def finish(state: SharedState, member: str, hold: Hold, tokens: int, now: float) -> None:
    await state.end(member, hold, End(tokens, "succeeded"), now)


async def windows(
    state: SharedState, key: str, specs: Sequence[Limit], now: float
) -> list[WindowState]:
    return (await state.snapshot(key, specs, NOBODY, now)).windows


async def health(state: SharedState, member: str) -> Health:
    return (await state.snapshot(NOTHING, (), member, 0.0)).health


async def ready_at(state: SharedState, member: str) -> float:
    return (await state.snapshot(NOTHING, (), member, 0.0)).ready_at


async def exhaust(
    state: SharedState, key: str, kind: Kind | None, period: float | None, until: float, now: float
) -> None:
    await state.end(NOBODY, _none(key), End(0, exhausts=Exhaustion(kind, period, until)), now)


async def failed(state: SharedState, member: str, now: float, retry_at: float | None) -> None:
    await state.end(member, _none(), End(0, "failed", retry_at), now)


async def succeeded(state: SharedState, member: str) -> None:
    await state.end(member, _none(), End(0, "succeeded"), 0.0)


async def release(state: SharedState, member: str) -> None:
    await state.end(member, _none(), End(0), 0.0)


async def claim(state: SharedState, member: str, now: float) -> bool:
    """Whether `member` may be tried now (past an open circuit's rest, taking its probe)."""
    return isinstance(await state.begin(member, NOTHING, (), Cost(0, 0), now), Hold)


async def cool(state: SharedState, member: str, until: float, now: float = 0.0) -> None:
    """A rest without a failure: a reading that says when to retry."""
    await state.observe(member, NOTHING, RateReading((), until), now)
