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
    """A reservation made by `reserve`, to `settle` once the real token count is known.

    `handle` is the home's own record of where the charge went.
    """

    key: str
    tokens: int
    handle: object


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
    """Where turns, budgets and health live."""

    async def turn(self, route: str) -> int:
        """The next round-robin turn of `route`: 0, 1, 2... across every process."""

    async def reserve(
        self, key: str, specs: Sequence[Limit], cost: Cost, now: float
    ) -> Hold | float:
        """Charge `cost` to every window of `key` if all can take it, atomically; otherwise
        charge nothing and return the soonest moment they all could."""

    async def begin(
        self, member: str, key: str, specs: Sequence[Limit], cost: Cost, now: float
    ) -> Hold | float:
        """`claim` on `member` and `reserve` on `key` as one step: the hold; or, charging and
        claiming nothing, when to try again (the member's `ready_at` when it may not be tried,
        else the soonest moment the windows could take `cost`)."""

    async def free_at(self, key: str, specs: Sequence[Limit], cost: Cost, now: float) -> float:
        """The soonest moment every window of `key` could take `cost` (now if it fits)."""

    async def settle(self, hold: Hold, tokens: int, now: float) -> None:
        """Replace the tokens a hold charged by the real count."""

    async def observe(self, member: str, key: str, reading: RateReading, now: float) -> None:
        """Take a provider's rate-limit headers for `key`; a retry time in them rests
        `member` until then."""

    async def end(self, member: str, hold: Hold, end: End, now: float) -> float:
        """An attempt ended, as one step: `hold` settled to `end.tokens`, the reading observed,
        a window exhausted, `member` rested and its health told; when it may next be tried."""

    async def snapshot(self, key: str, specs: Sequence[Limit], member: str, now: float) -> Snapshot:
        """The windows of `key`, and the health and `ready_at` of `member`."""

    async def exhaust(
        self, key: str, kind: Kind | None, period: float | None, until: float, now: float
    ) -> None:
        """A 429 said a window of `key` ran out until `until` (every window of `kind`, or
        every window, when the provider did not say which)."""

    async def windows(self, key: str, specs: Sequence[Limit], now: float) -> list[WindowState]:
        """The state of every window of `key`: the configured ones and any learned."""

    async def claim(self, member: str, now: float) -> bool:
        """Whether a request may go to `member` now; past an open circuit's rest this claims
        its single probe, so only one caller in all processes gets True."""

    async def ready_at(self, member: str) -> float:
        """When `member` may next be tried (0 when it may now)."""

    async def health(self, member: str) -> Health:
        """Cooldown and circuit of `member`."""

    async def succeeded(self, member: str) -> None:
        """`member` answered: failures forgotten, circuit closed."""

    async def finish(self, member: str, hold: Hold, tokens: int, now: float) -> None:
        """`succeeded` for `member` and `settle` for `hold` at `tokens`, as one step."""

    async def failed(self, member: str, now: float, retry_at: float | None) -> None:
        """`member` failed; may open its circuit; `retry_at` starts a cooldown."""

    async def release(self, member: str) -> None:
        """A probe ended without a verdict: the next request may probe again."""

    async def cool(self, member: str, until: float) -> None:
        """Keep `member` out of rotation until `until` without counting a failure."""

    async def close(self) -> None:
        """Release connections; idempotent."""


class MemoryState:
    """State in this process only: fast, and rebuilt from the usage ledger at start."""

    def __init__(self, policy: CircuitPolicy = CIRCUIT) -> None:
        self.book = CooldownBook(policy)
        self.budgets: dict[str, Budget] = {}
        self._configured: set[str] = set()
        self._turns: dict[str, int] = {}

    def budget(self, key: str, specs: Sequence[Limit] = ()) -> Budget:
        """The budget of `key`, with a window for each of `specs` (made on first sight)."""
        budget = self.budgets.get(key)
        if budget is None:
            budget = self.budgets[key] = Budget()
        if specs and key not in self._configured:
            self._configured.add(key)
            for spec in specs:
                window = budget.window(spec.kind, spec.period)
                if window.limit is None:
                    window.limit = spec.limit
        return budget

    async def turn(self, route: str) -> int:
        turn = self._turns.get(route, 0)
        self._turns[route] = turn + 1
        return turn

    async def reserve(
        self, key: str, specs: Sequence[Limit], cost: Cost, now: float
    ) -> Hold | float:
        return self._reserve(key, specs, cost, now)

    def _reserve(self, key: str, specs: Sequence[Limit], cost: Cost, now: float) -> Hold | float:
        budget = self.budget(key, specs)
        if not budget.fits(cost, now):
            return budget.free_at(cost, now)
        return Hold(key, cost.tokens, budget.reserve(cost, now))

    async def begin(
        self, member: str, key: str, specs: Sequence[Limit], cost: Cost, now: float
    ) -> Hold | float:
        if not self.book.available(member, now):
            return self.book.ready_at(member)
        hold = self._reserve(key, specs, cost, now)
        if isinstance(hold, Hold):
            self.book.begin(member, now)  # past an open circuit's rest: the probe
        return hold

    async def free_at(self, key: str, specs: Sequence[Limit], cost: Cost, now: float) -> float:
        return self.budget(key, specs).free_at(cost, now)

    async def settle(self, hold: Hold, tokens: int, now: float) -> None:
        if isinstance(hold.handle, Reservation):
            hold.handle.settle(tokens)

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
        windows = await self.windows(key, specs, now)
        return Snapshot(windows, await self.health(member), self.book.ready_at(member))

    async def exhaust(
        self, key: str, kind: Kind | None, period: float | None, until: float, now: float
    ) -> None:
        self.budget(key).exhaust(kind, period, until, now)

    async def windows(self, key: str, specs: Sequence[Limit], now: float) -> list[WindowState]:
        return [
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

    async def claim(self, member: str, now: float) -> bool:
        if not self.book.available(member, now):
            return False
        self.book.begin(member, now)
        return True

    async def ready_at(self, member: str) -> float:
        return self.book.ready_at(member)

    async def health(self, member: str) -> Health:
        return self.book.health.get(member) or Health()

    async def succeeded(self, member: str) -> None:
        self.book.succeeded(member)

    async def finish(self, member: str, hold: Hold, tokens: int, now: float) -> None:
        self.book.succeeded(member)
        await self.settle(hold, tokens, now)

    async def failed(self, member: str, now: float, retry_at: float | None) -> None:
        self.book.failed(member, now, retry_at)

    async def release(self, member: str) -> None:
        self.book.release(member)

    async def cool(self, member: str, until: float) -> None:
        self.book.cool(member, until)

    async def close(self) -> None:
        return None
