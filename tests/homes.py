"""What every home of the shared-state suite shares: a factory of states, all closed at exit."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from ai_api.store.state import SharedState

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
