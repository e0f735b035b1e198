"""Shared rationing state: round-robin turns, budget windows and member health.

One protocol, three homes: `MemoryState` (one process), `SQLiteState` (several worker
processes on one machine) and `RedisState` (several machines behind one load balancer). Every
operation that decides whether to spend is atomic in its home, so several processes never
overspend a budget; all three pass the same suite (tests/test_state.py).

Times are epoch seconds from the caller's (injectable) clock. A budget `key` names an
(account, model); a `member` names a deployment (`provider/model`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import msgspec

from ..cooldowns import CIRCUIT, CircuitPolicy, CooldownBook, Health
from ..limits import DAY, Budget, Cost, Exhaustion, Kind, Limit, Reservation
from ..ratelimits import RateReading


class WindowState(msgspec.Struct, frozen=True):
    """A window now: its limit (configured, or learned from the provider), what was counted
    in the last `period`, what is left (the provider's reading wins while valid; None when
    unknown), and, for a daily window, what was counted since the UTC day began (for pacing;
    0 for the others)."""

    kind: Kind
    period: float
    limit: int | None
    used: float
    remaining: float | None
    today: float


class Hold(msgspec.Struct, frozen=True):
    """A charge made by `begin`, settled by `end` once the real token count is known.

    `handle` is the home's own record of where the charge went; `probe`: the attempt is the
    single probe of an open circuit past its rest.
    """

    key: str
    tokens: int
    handle: object
    probe: bool = False


@dataclass(frozen=True, slots=True)
class End:
    """How an attempt ended, as `SharedState.end` applies it: the hold's real tokens, the
    provider's reading, a window that ran out, a rest, and what it says of the member's health
    (`succeeded`: failures forgotten, circuit closed; `failed`: a failure, cooling until
    `retry_at`; `released`: no verdict, a probe held is given back)."""

    tokens: int
    health: Literal["succeeded", "failed", "released"] = "released"
    retry_at: float | None = None
    reading: RateReading | None = None
    exhausts: Exhaustion | None = None
    rest_until: float | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a reader sees of a budget and a member: every window, the health, when it may next
    be tried (0 when now)."""

    windows: list[WindowState]
    health: Health
    ready_at: float


class SharedState(Protocol):
    """Where turns, budgets and health live: six operations, each one step in its home."""

    async def turn(self, route: str) -> int:
        """The next round-robin turn of `route`: 0, 1, 2... across every process."""

    async def begin(
        self, member: str, key: str, specs: Sequence[Limit], cost: Cost, now: float
    ) -> Hold | float:
        """Claim `member` and charge `cost` to every window of `key`, as one step: the hold
        (past an open circuit's rest, its single probe); or, charging and claiming nothing,
        when to try again (when `member` may be tried, if it may not now, else the soonest
        moment every window could take `cost`)."""

    async def observe(self, member: str, key: str, reading: RateReading, now: float) -> None:
        """Take a provider's rate-limit headers for `key`; a retry time in them rests
        `member` until then."""

    async def end(self, member: str, hold: Hold, end: End, now: float) -> float:
        """An attempt ended, as one step: `hold` settled to `end.tokens`, the reading observed,
        a window exhausted, `member` rested and its health told; when it may next be tried."""

    async def snapshot(self, key: str, specs: Sequence[Limit], member: str, now: float) -> Snapshot:
        """The windows of `key` (the configured ones and any learned), and the health and
        `ready_at` of `member`."""

    async def close(self) -> None:
        """Release connections; idempotent."""


class MemoryState:
    """State in this process only: fast, and rebuilt from the usage ledger at start."""

    def __init__(self, policy: CircuitPolicy = CIRCUIT) -> None:
        self.book = CooldownBook(policy)
        self.budgets: dict[str, Budget] = {}
        self._turns: dict[str, int] = {}

    def budget(self, key: str, specs: Sequence[Limit] = ()) -> Budget:
        """The budget of `key`, with a window for each of `specs`, whose limit holds unless the
        provider reported another (as in the other homes, each call's `specs` count)."""
        budget = self.budgets.get(key)
        if budget is None:
            budget = self.budgets[key] = Budget()
        for spec in specs:
            window = budget.window(spec.kind, spec.period)
            if not window.reported:
                window.limit = spec.limit
        return budget

    async def turn(self, route: str) -> int:
        turn = self._turns.get(route, 0)
        self._turns[route] = turn + 1
        return turn

    def reserve(self, key: str, specs: Sequence[Limit], cost: Cost, now: float) -> Hold | float:
        """Charge `cost` to every window of `key` if all can take it; else when they could."""
        budget = self.budget(key, specs)
        if not budget.fits(cost, now):
            return budget.free_at(cost, now)
        return Hold(key, cost.tokens, budget.reserve(cost, now))

    async def begin(
        self, member: str, key: str, specs: Sequence[Limit], cost: Cost, now: float
    ) -> Hold | float:
        if not self.book.available(member, now):
            return self.book.ready_at(member)
        hold = self.reserve(key, specs, cost, now)
        if isinstance(hold, Hold) and self.book.begin(member, now):
            return msgspec.structs.replace(hold, probe=True)  # past an open circuit's rest
        return hold

    async def observe(self, member: str, key: str, reading: RateReading, now: float) -> None:
        self.budget(key).observe(reading, now)
        if reading.retry_at is not None:
            self.book.cool(member, reading.retry_at)

    async def end(self, member: str, hold: Hold, end: End, now: float) -> float:
        budget, book = self.budget(hold.key), self.book
        if end.reading is not None:
            budget.observe(end.reading, now)
        if (spent := end.exhausts) is not None:
            budget.exhaust(spent.kind, spent.period, spent.until, now)
        if end.rest_until is not None:
            book.cool(member, end.rest_until)
        if end.health == "succeeded":
            book.succeeded(member)
        elif end.health == "failed":
            book.failed(member, now, end.retry_at)
        else:
            book.release(member)
        if isinstance(hold.handle, Reservation):
            hold.handle.settle(end.tokens)
        return book.ready_at(member)

    async def snapshot(self, key: str, specs: Sequence[Limit], member: str, now: float) -> Snapshot:
        windows = [
            WindowState(
                w.kind,
                w.period,
                w.limit,
                w.used(now),
                w.remaining(now),
                w.spent_today(now) if w.period == DAY else 0.0,
            )
            for w in self.budget(key, specs).windows
        ]
        health = self.book.health.get(member) or Health()
        return Snapshot(windows, health, self.book.ready_at(member))

    async def close(self) -> None:
        return None
