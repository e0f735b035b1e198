"""`RedisState`: turns, budgets and health shared by gateway instances on several machines.

Every decision is one Lua script (one round trip, atomic: see `redis_scripts` for the key
layout). When Redis cannot be reached (`redis_link` tells, logs one warning, and tries Redis
again at most every `retry_every` seconds), the state answers from a `MemoryState` fallback
(kept close by mirroring this instance's writes into it), and the writes it made meanwhile
are replayed, in order, once Redis answers again; a hold charged meanwhile is charged to Redis
at the count it was last settled to. A write whose answer was lost may have run: one that adds
to a count is replayed (it may count twice), one that takes away is not (it may not count at
all), so a lost answer over-counts, never under-counts.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from ..cooldowns import CIRCUIT, CircuitPolicy, CooldownBook, Health
from ..limits import DAY, Cost, Exhaustion, Kind, Limit, Reservation
from ..ratelimits import RateReading
from . import redis_scripts
from .redis_link import DOWN, Call, Down, RedisLink
from .state import End, Hold, MemoryState, Snapshot, WindowState

# How the scripts' arguments and answers are written and read.


def window_id(kind: Kind, period: float) -> str:
    """How a window is named in Redis keys and fields: `tokens|60.0`."""
    return f"{kind}|{float(period)!r}"


def spec_args(specs: Sequence[Limit]) -> list[str]:
    """(window id, configured limit) pairs, as RESERVE and WINDOWS take them."""
    args: list[str] = []
    for spec in specs:
        args += [window_id(spec.kind, spec.period), "" if spec.limit is None else str(spec.limit)]
    return args


def opt(value: float | None) -> str:
    """A number, or "" for unknown."""
    return "" if value is None else repr(float(value))


def states(flat: list[str]) -> list[WindowState]:
    """The windows in the answer of WINDOWS."""
    states = []
    for i in range(0, len(flat), 5):
        wid, limit, used, remaining, today = flat[i : i + 5]
        name, period = wid.split("|")
        kind: Kind = "tokens" if name == "tokens" else "requests"
        states.append(
            WindowState(
                kind,
                float(period),
                int(float(limit)) if limit else None,
                float(used),
                float(remaining) if remaining else None,
                float(today),
            )
        )
    return states


def quads(reading: RateReading, now: float) -> list[str]:
    """(window id, limit, remaining, until) per window of `reading`, as OBSERVE takes them."""
    args: list[str] = []
    for r in reading.windows:
        until = r.reset_at if r.reset_at is not None else now + r.period
        args += [window_id(r.kind, r.period), opt(r.limit), opt(r.remaining), repr(until)]
    return args


def end_args(end: End, now: float, policy: CircuitPolicy) -> list[str]:
    """END's arguments up to the hold's charge time."""
    spent = end.exhausts or Exhaustion(None, None, math.nan)
    named = (
        "" if spent.kind is None or spent.period is None else window_id(spent.kind, spent.period)
    )
    return [
        repr(now),
        end.health,
        opt(end.retry_at),
        str(policy.threshold),
        repr(policy.base),
        repr(policy.cap),
        opt(end.rest_until),
        "" if end.exhausts is None else repr(spent.until),
        spent.kind or "",
        opt(spent.period),
        named,
    ]


def _health(values: Sequence[bytes | str | None]) -> Health | None:
    if all(v is None for v in values):
        return None
    c, f, o, u, p = (float(v or 0) for v in values)
    return Health(c, int(f), int(o), u, bool(p))


@dataclass(slots=True)
class Charged:
    """A hold of this instance: charged at `at`, mirrored in the fallback, to count `tokens`.
    Redis counts `counted` tokens for it in its token `windows`, as last sent; None while it
    was charged in the fallback only, for a replay to charge it to Redis."""

    key: str
    specs: tuple[Limit, ...]
    cost: Cost
    at: float
    mirror: Reservation | None
    tokens: int
    counted: int | None = None
    windows: tuple[str, ...] = ()


class RedisState:
    """State in Redis, shared by every instance that uses the same server and prefix."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "ai-api:",
        policy: CircuitPolicy = CIRCUIT,
        fallback: MemoryState | None = None,
        retry_every: float = 1.0,
    ) -> None:
        self._link = RedisLink(url, retry_every=retry_every)
        self.prefix = prefix
        self.policy = policy
        self.fallback = fallback if fallback is not None else MemoryState(policy)
        self._hint: float | None = None

    async def open(self) -> RedisState:
        """Connect and load the scripts; an unreachable Redis is waited for, not fatal."""
        await self._link.open(redis_scripts.SCRIPTS)
        return self

    async def close(self) -> None:
        await self._link.close()

    def _budget(self, key: str) -> str:
        return f"{self.prefix}b:{key}"

    def _member(self, member: str) -> str:
        return f"{self.prefix}h:{member}"

    def _seen(self, now: float) -> None:
        self._hint = now if self._hint is None else max(self._hint, now)

    async def turn(self, route: str) -> int:
        async def incr() -> int:
            async with self._link.redis.pipeline(transaction=False) as pipe:
                pipe.incr(f"{self.prefix}t:{route}")
                pipe.pexpire(f"{self.prefix}t:{route}", redis_scripts.TURN_TTL_MS)
                count, _ = await pipe.execute()
            return int(count) - 1

        turn = await self._link.attempt(incr)
        return await self.fallback.turn(route) if turn is DOWN else turn

    async def _charge(
        self, key: str, specs: Sequence[Limit], cost: Cost, now: float, mode: str
    ) -> list[str]:
        args = [repr(now), repr(now - now % DAY), mode, str(cost.tokens), str(cost.requests)]
        args += spec_args(specs)
        return list(await self._link.run("reserve", [self._budget(key)], args))

    async def _reserve(
        self, key: str, specs: Sequence[Limit], cost: Cost, now: float
    ) -> Hold | float:
        """RESERVE (begin's step after a claim when BEGIN's answer was lost), else the
        fallback's, its charge replayed once Redis is back."""
        got = await self._link.attempt(lambda: self._charge(key, specs, cost, now, "reserve"))
        if got is DOWN:
            local = self.fallback.reserve(key, specs, cost, now)
            if not isinstance(local, Hold):
                return local
            mirror = local.handle if isinstance(local.handle, Reservation) else None
            charged = Charged(key, tuple(specs), cost, now, mirror, cost.tokens)
            self._link.later(lambda: self._replay(charged))
            return Hold(key, cost.tokens, charged)
        if got[0] != "1":
            return float(got[1])
        return self._placed(key, specs, cost, now, got[1:])

    def _placed(
        self, key: str, specs: Sequence[Limit], cost: Cost, now: float, windows: list[str]
    ) -> Hold:
        """A hold charged in Redis (to its token `windows`), mirrored in the fallback."""
        mirror = self.fallback.budget(key, specs).reserve(cost, now)
        charged = Charged(key, tuple(specs), cost, now, mirror, cost.tokens, cost.tokens)
        charged.windows = tuple(windows)
        return Hold(key, cost.tokens, charged)

    async def begin(
        self, member: str, key: str, specs: Sequence[Limit], cost: Cost, now: float
    ) -> Hold | float:
        self._seen(now)
        args = [repr(now), repr(now - now % DAY), str(cost.tokens), str(cost.requests)]
        args += spec_args(specs)
        keys = [self._member(member), self._budget(key)]
        sent = not self._link.down
        got = await self._link.attempt(lambda: self._link.run("begin", keys, args))
        if got is DOWN:  # step by step, each on the last known state (and Redis if it is back)
            if not await self._claim(member, now):
                if sent:  # the BEGIN may have run, its answer lost, and taken the probe
                    await self._release(member)
                return await self._ready_at(member)
            hold = await self._reserve(key, specs, cost, now)
            if not isinstance(hold, Hold):
                self.fallback.book.release(member)
                await self._release(member)
            return hold
        if got[0] == "0":
            return self._book_of(member, got[1:]).ready_at(member)
        if got[0] == "2":
            return float(got[1])
        self.fallback.book.begin(member, now)
        hold = self._placed(key, specs, cost, now, got[1:])
        return msgspec.structs.replace(hold, probe=True) if got[0] == "3" else hold

    async def _replay(self, charged: Charged) -> None:
        """Charge to Redis, at its count now, a hold charged in the fallback while Redis was
        away (run again whole if its answer is lost: it may count twice)."""
        c = charged
        tokens = c.tokens
        cost = Cost(tokens=tokens, requests=c.cost.requests)
        got = await self._charge(c.key, c.specs, cost, c.at, "force")
        c.counted, c.windows = tokens, tuple(got[1:])
        settlement = self._settlement(c, c.tokens, self._hint or c.at)  # settled meanwhile
        if settlement is not None:
            (name, keys, args), adds = settlement
            self._link.later(lambda: self._link.run(name, keys, args), again=adds)

    def _settlement(self, c: Charged, tokens: int, now: float) -> tuple[Call, bool] | None:
        """SETTLE bringing what Redis counts for `c` to `tokens` (None when it is there), and
        whether it adds (when its answer is lost, one that adds is replayed, one that takes
        away is not). `c` counts `tokens` from now on, whatever the outcome."""
        if c.counted is None or tokens == c.counted:
            return None
        delta, c.counted = tokens - c.counted, tokens
        args = [repr(now), repr(c.at), str(delta), *c.windows]
        return ("settle", [self._budget(c.key)], args), delta > 0

    async def observe(self, member: str, key: str, reading: RateReading, now: float) -> None:
        self._seen(now)
        await self.fallback.observe(member, key, reading, now)
        args = [repr(now), opt(reading.retry_at), *quads(reading, now)]
        keys = [self._member(member), self._budget(key)]
        await self._link.write(lambda: self._link.run("observe", keys, args))

    async def end(self, member: str, hold: Hold, end: End, now: float) -> float:
        self._seen(now)
        c = hold.handle if isinstance(hold.handle, Charged) else None
        mirror = None if c is None else c.mirror
        ready = await self.fallback.end(member, Hold(hold.key, end.tokens, mirror), end, now)
        delta, at = 0, now
        windows: tuple[str, ...] = ()
        if c is not None:
            c.tokens = end.tokens
            if c.counted is not None:  # else its replay charges `end.tokens`
                delta, c.counted, at, windows = end.tokens - c.counted, end.tokens, c.at, c.windows
        head = [*end_args(end, now, self.policy), repr(at)]
        tail = [str(len(windows)), *windows, *(quads(end.reading, now) if end.reading else ())]
        keys = [self._member(member), self._budget(hold.key)]

        def run(delta: int) -> Callable[[], Awaitable[Any]]:
            return lambda: self._link.run("end", keys, [*head, str(delta), *tail])

        # A lost answer replays what adds, never a refund (the rest of the step goes again).
        got = await self._link.write(run(delta), again=True if delta >= 0 else run(0))
        return ready if got is DOWN else float(got)

    async def snapshot(self, key: str, specs: Sequence[Limit], member: str, now: float) -> Snapshot:
        self._seen(now)
        args = [repr(now), repr(now - now % DAY), *spec_args(specs)]
        keys = [self._member(member), self._budget(key)]
        got = await self._link.attempt(lambda: self._link.run("snapshot", keys, args))
        if got is DOWN:
            return await self.fallback.snapshot(key, specs, member, now)
        return Snapshot(states(got[6:]), _health(got[:5]) or Health(), float(got[5]))

    async def _book(self, member: str) -> CooldownBook | Down:
        """A one-member book holding `member`'s health as Redis has it (to read it the
        same way `MemoryState` does)."""

        async def read() -> CooldownBook:
            values = await self._link.redis.hmget(self._member(member), ["c", "f", "o", "u", "p"])
            return self._book_of(member, values)

        return await self._link.attempt(read)

    def _book_of(self, member: str, values: Sequence[bytes | str | None]) -> CooldownBook:
        book = CooldownBook(self.policy)
        health = _health(values)
        if health is not None:
            book.health[member] = health
        return book

    async def _claim(self, member: str, now: float) -> bool:
        """CLAIM (begin's first step when BEGIN's answer was lost), else the fallback's."""
        got = await self._link.attempt(
            lambda: self._link.run("claim", [self._member(member)], [repr(now)])
        )
        book = self.fallback.book
        if got is DOWN and not book.available(member, now):
            return False
        if got is DOWN or got:
            book.begin(member, now)
        return got is DOWN or bool(got)

    async def _ready_at(self, member: str) -> float:
        book = await self._book(member)
        return self.fallback.book.ready_at(member) if book is DOWN else book.ready_at(member)

    async def _release(self, member: str) -> None:
        """RELEASE: a probe taken is given back."""
        await self._link.write(lambda: self._link.run("release", [self._member(member)], []))
