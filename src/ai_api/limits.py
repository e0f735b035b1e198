"""Budgets: what each (account, model) may still spend in every window, on an injected clock.

A `Window` counts spending locally over a sliding period and is corrected by what the provider
reports (`observe`): the provider's `remaining` wins while its reset lies ahead, minus what was
spent here since. A `Budget` holds the windows of one (account, model); a request first
`reserve`s its estimated cost (prompt estimate plus completion cap, which is also how Cerebras
charges) and `settle`s the real count when the answer ends.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import msgspec

if TYPE_CHECKING:  # ratelimits builds on the kinds and periods here
    from .ratelimits import RateReading

Kind = Literal["requests", "tokens"]
KINDS: tuple[Kind, ...] = ("requests", "tokens")
MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0
MONTH = 30 * DAY
PERIODS = {"minute": MINUTE, "hour": HOUR, "day": DAY, "month": MONTH}
"""The windows providers name, by name."""
BUCKETS = 60
"""Buckets a window counts in (every home of the shared state): constant memory, a charge
counted up to 1/60 of its period longer than exactly."""


def period_name(seconds: float) -> str:
    """`minute`, `hour`, `day`, `month`, or the seconds."""
    return next((name for name, p in PERIODS.items() if p == seconds), f"{seconds:g}s")


Source = Literal["built-in", "configured", "reported", "learned"]
"""Where a window's limit comes from: a preset's guess about one tier (dated in its note), the
user's configuration, the provider's rate-limit headers, or a 429 that named a window no header
describes (the ceiling seen then). Only a guess yields: it orders members, it never refuses."""


@dataclass(frozen=True, slots=True)
class Limit:
    """A window as configured: `limit` requests or tokens per `period` seconds (None: unknown),
    and where that figure comes from."""

    kind: Kind
    period: float
    limit: int | None
    source: Source = "configured"

    @property
    def guess(self) -> bool:
        """Whether the figure is a preset's guess (it never refuses a request alone)."""
        return self.source == "built-in"


@dataclass(frozen=True, slots=True)
class Exhaustion:
    """A window that ran out: every window of `kind` (or every window) unless `period` says."""

    kind: Kind | None
    period: float | None
    until: float


class Cost(msgspec.Struct, frozen=True):
    """What a request spends: one request and some tokens."""

    tokens: int
    requests: int = 1

    def of(self, kind: Kind) -> int:
        """The part of the cost that `kind` windows count."""
        return self.requests if kind == "requests" else self.tokens


class Charge:
    """Where one charge went, so that it can be settled to the real amount."""

    __slots__ = ("amount", "bucket", "generation")

    def __init__(self, bucket: list[float], amount: float, generation: int) -> None:
        self.bucket = bucket
        self.amount = amount
        self.generation = generation


class Window:
    """Spending in one sliding window, corrected by the provider's own count.

    A provider's reading (`observe`) says what remained when it was taken; until it expires
    the window has left that, less what was charged here after it.
    """

    __slots__ = (
        "_buckets",
        "_day",
        "_generation",
        "_observed",
        "_since",
        "_span",
        "_today",
        "_used",
        "kind",
        "limit",
        "period",
        "reported",
    )

    def __init__(self, kind: Kind, period: float, limit: int | None) -> None:
        self.kind = kind
        self.period = period
        self.limit = limit
        self.reported = False  # the limit is the provider's (its headers said so)
        self._span = period / BUCKETS
        self._buckets: deque[list[float]] = deque()  # [start, amount]
        self._used = 0.0
        self._observed: tuple[float, float, float] | None = None  # (remaining, at, valid_until)
        self._since = 0.0  # charged after the reading
        self._generation = 0  # counts readings, so a late settle knows which one it follows
        self._day = 0.0  # the UTC day `_today` counts (for the day's pace, without a walk)
        self._today = 0.0

    def _expire(self, now: float) -> None:
        # A bucket leaves the window once all of it has.
        horizon = now - self.period - self._span
        buckets = self._buckets
        while buckets and buckets[0][0] <= horizon:
            self._used -= buckets.popleft()[1]

    def used(self, now: float) -> float:
        """Spent within the last `period` seconds (and up to one bucket more)."""
        self._expire(now)
        return self._used

    def remaining(self, now: float) -> float | None:
        """What is left now; None when neither a limit nor a reading is known."""
        used = self.used(now)
        local = None if self.limit is None else self.limit - used
        observed = self._observed
        if observed is None or now >= observed[2]:
            return local
        reported = observed[0] - self._since
        return reported if local is None else min(local, reported)

    def spent_today(self, now: float) -> float:
        """Counted since the UTC day of `now` began (for the day's pace)."""
        return self._today if now - now % DAY == self._day else 0.0

    def charge(self, now: float, amount: float) -> Charge:
        """Count `amount` as spent now; the returned charge can be settled later."""
        self._expire(now)
        start = now - now % self._span
        buckets = self._buckets
        if buckets and buckets[-1][0] == start:
            bucket = buckets[-1]
            bucket[1] += amount
        else:
            bucket = [start, float(amount)]
            buckets.append(bucket)
        self._used += amount
        day = now - now % DAY
        if day == self._day:
            self._today += amount
        elif day > self._day:
            self._day, self._today = day, float(amount)
        generation = -1
        observed = self._observed
        if observed is not None and now > observed[1]:
            self._since += amount
            generation = self._generation
        return Charge(bucket, float(amount), generation)

    def settle(self, charge: Charge, amount: float) -> None:
        """Replace a charged amount by the real one."""
        delta = amount - charge.amount
        charge.amount = float(amount)
        charge.bucket[1] += delta
        if self._buckets and charge.bucket[0] >= self._buckets[0][0]:
            self._used += delta
        if charge.bucket[0] >= self._day:
            self._today += delta
        if charge.generation == self._generation:
            self._since += delta

    def observe(
        self, limit: int | None, remaining: int | None, valid_until: float, now: float
    ) -> None:
        """Take the provider's word: its limit, and what remains until `valid_until`."""
        if limit is not None and limit > 0:
            self.limit = limit
            self.reported = True
        if remaining is not None:
            self._read(float(remaining), valid_until, now)

    def exhaust(self, until: float, now: float) -> None:
        """The provider said this window is spent (a 429): nothing is left until `until`."""
        self._read(0.0, until, now)

    def _read(self, remaining: float, valid_until: float, now: float) -> None:
        self._observed = (remaining, now, valid_until)
        self._since = 0.0
        self._generation += 1

    def free_at(self, amount: float, now: float) -> float:
        """The soonest moment `amount` fits in this window (now if it fits already; infinity
        if it never does, being more than the limit)."""
        remaining = self.remaining(now)
        if remaining is None or remaining >= amount:
            return now
        if self.limit is not None and amount > self.limit:
            return math.inf
        observed = self._observed
        if observed is not None and now < observed[2] and observed[0] - self._since < amount:
            return observed[2]
        if self.limit is None:
            return now + self.period
        # Walk the buckets as they leave the window until enough is freed.
        needed = amount - remaining
        for start, spent in self._buckets:
            needed -= spent
            if needed <= 0:
                return start + self._span + self.period
        return now + self.period


@dataclass(slots=True)
class Reservation:
    """A cost charged to a budget ahead of the answer; `settle` with the real tokens."""

    budget: Budget
    entries: list[tuple[Window, Charge]]

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
