"""The SQLite home of the shared-state suite: every state it makes is one more process's view."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from ai_api.store.sqlite_state import SQLiteState
from ai_api.store.state import SharedState

from .homes import closing_states


@asynccontextmanager
async def sqlite_home(tmp_path: Path) -> AsyncIterator[Callable[[], Awaitable[SharedState]]]:
    """A factory of states opened on one file (each its own connection and thread), all closed
    at exit."""
    path = tmp_path / "state.sqlite3"
    async with closing_states(lambda: SQLiteState(path).open()) as factory:
        yield factory
