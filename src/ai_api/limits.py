"""Budgets: what each (account, model) may still spend in every window, on an injected clock.

A `Window` counts spending locally over a sliding period and is corrected by what the provider
reports (`observe`): the provider's `remaining` wins while its reset lies ahead, minus what was
spent here since. A `Budget` holds the windows of one (account, model); a request first
`reserve`s its estimated cost (prompt estimate plus completion cap, which is also how Cerebras
charges) and `settle`s the real count when the answer ends.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from .ratelimits import RateReading

Kind = Literal["requests", "tokens"]
MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0


@dataclass(frozen=True, slots=True)
class Limit:
    """A provider's limit on one window: `limit` requests or tokens per `period` seconds."""

    kind: Kind
    period: float
    limit: int


@dataclass(frozen=True, slots=True)
class Cost:
    """What a request spends: one request and some tokens."""

    tokens: int
    requests: int = 1

    def of(self, kind: Kind) -> int:
        """The part of the cost that `kind` windows count."""
        return self.requests if kind == "requests" else self.tokens


class Window:
    """Spending in one sliding window, corrected by the provider's own count."""

    __slots__ = ("_events", "_observed", "_used", "kind", "limit", "period")

    def __init__(self, kind: Kind, period: float, limit: int | None) -> None:
        self.kind = kind
        self.period = period
        self.limit = limit
        self._events: deque[list[float]] = deque()  # [time, amount], amounts settle in place
        self._used = 0.0
        self._observed: tuple[float, float, float] | None = None  # (remaining, at, valid_until)

    def _expire(self, now: float) -> None:
        horizon = now - self.period
        events = self._events
        while events and events[0][0] <= horizon:
            self._used -= events.popleft()[1]

    def used(self, now: float) -> float:
        """Spent within the last `period` seconds, as counted here."""
        self._expire(now)
        return self._used

    def remaining(self, now: float) -> float | None:
        """What is left now; None when neither a limit nor a reading is known."""
        used = self.used(now)
        local = None if self.limit is None else self.limit - used
        observed = self._observed
        if observed is None or now >= observed[2]:
            return local
        remaining, at, _ = observed
        reported = remaining - self.spent_since(at)
        return reported if local is None else min(local, reported)

    def spent_since(self, since: float) -> float:
        """Counted here after `since` (within the window); what was charged at `since` itself
        is already in a reading taken then."""
        return sum(amount for t, amount in self._events if t > since)

    def charge(self, now: float, amount: float) -> list[float]:
        """Count `amount` as spent now; the returned entry can be settled later."""
        self._expire(now)
        entry = [now, float(amount)]
        self._events.append(entry)
        self._used += amount
        return entry

    def settle(self, entry: list[float], amount: float) -> None:
        """Replace a charged amount by the real one (if it is still in the window)."""
        if self._events and entry[0] >= self._events[0][0]:
            self._used += amount - entry[1]
        entry[1] = float(amount)

    def observe(
        self, limit: int | None, remaining: int | None, valid_until: float, now: float
    ) -> None:
        """Take the provider's word: its limit, and what remains until `valid_until`."""
        if limit is not None and limit > 0:
            self.limit = limit
        if remaining is not None:
            self._observed = (float(remaining), now, valid_until)

    def exhaust(self, until: float, now: float) -> None:
        """The provider said this window is spent (a 429): nothing is left until `until`."""
        self._observed = (0.0, now, until)

    def free_at(self, amount: float, now: float) -> float:
        """The soonest moment `amount` fits in this window (now if it fits already)."""
        remaining = self.remaining(now)
        if remaining is None or remaining >= amount:
            return now
        observed = self._observed
        if observed is not None and now < observed[2] and observed[0] - amount < 0:
            return observed[2]
        if self.limit is None or amount > self.limit:
            return now + self.period
        # Walk the events as they expire until enough is freed.
        needed = amount - remaining
        for t, spent in self._events:
            needed -= spent
            if needed <= 0:
                return t + self.period
        return now + self.period


@dataclass(slots=True)
class Reservation:
    """A cost charged to a budget ahead of the answer; `settle` with the real tokens."""

    budget: Budget
    entries: list[tuple[Window, list[float]]]

    def settle(self, tokens: int) -> None:
        """Correct the token windows to the tokens really spent."""
        for window, entry in self.entries:
            if window.kind == "tokens":
                window.settle(entry, tokens)


class Budget:
    """All windows of one (account, model)."""

    __slots__ = ("windows",)

    def __init__(self, limits: Iterable[Limit] = ()) -> None:
        self.windows: list[Window] = [Window(lim.kind, lim.period, lim.limit) for lim in limits]

    def window(self, kind: Kind, period: float) -> Window:
        """The window of `kind` and `period`, made on first use (providers report new ones)."""
        for window in self.windows:
            if window.kind == kind and window.period == period:
                return window
        window = Window(kind, period, None)
        self.windows.append(window)
        return window

    def fits(self, cost: Cost, now: float) -> bool:
        """Whether every window can take `cost` now."""
        for window in self.windows:
            remaining = window.remaining(now)
            if remaining is not None and remaining < cost.of(window.kind):
                return False
        return True

    def free_at(self, cost: Cost, now: float) -> float:
        """The soonest moment every window can take `cost`."""
        return max([now, *(w.free_at(cost.of(w.kind), now) for w in self.windows)])

    def reserve(self, cost: Cost, now: float) -> Reservation:
        """Charge `cost` to every window."""
        entries = [(w, w.charge(now, cost.of(w.kind))) for w in self.windows]
        return Reservation(self, entries)

    def observe(self, reading: RateReading, now: float) -> None:
        """Correct the windows with a provider's rate-limit headers."""
        for r in reading.windows:
            until = r.reset_at if r.reset_at is not None else now + r.period
            self.window(r.kind, r.period).observe(r.limit, r.remaining, until, now)

    def exhaust(self, kind: Kind | None, period: float | None, until: float, now: float) -> None:
        """A 429 said a window ran out: the named one, or else every window of `kind`."""
        if kind is not None and period is not None:
            self.window(kind, period)  # a window the provider named exists from now on
        for window in self.windows:
            if (kind is None or window.kind == kind) and (
                period is None or window.period == period
            ):
                window.exhaust(until, now)

    def daily_share(self, now: float) -> float:
        """The smallest remaining share of a daily (or longer) limit; 1.0 when there is none."""
        shares = [
            max(0.0, remaining) / w.limit
            for w in self.windows
            if w.period >= DAY and w.limit and (remaining := w.remaining(now)) is not None
        ]
        return min(shares, default=1.0)

    def ahead_of_pace(self, now: float, day_started: float, burst: float) -> bool:
        """Whether today's spending passed the elapsed share of the day plus `burst` (a share)."""
        elapsed = min(1.0, max(0.0, (now - day_started) / DAY))
        for w in self.windows:
            allowed = (w.limit or 0) * min(1.0, elapsed + burst)
            if w.period == DAY and w.limit and w.spent_since(day_started) >= allowed:
                return True
        return False
