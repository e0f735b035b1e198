"""`RedisState`: turns, budgets and health shared by gateway instances on several machines.

Every decision is one Lua script (one round trip, atomic: see `redis_scripts` for the key
layout). When Redis cannot be reached (`redis_link` tells, logs one warning, and tries Redis
again at most every `retry_every` seconds), the state answers from a `MemoryState` fallback
(kept close by mirroring this instance's writes into it), and the writes it made meanwhile
(charges, settlements, readings, health) are replayed, in order, once Redis answers again.
A write whose answer was lost may have run: a hold is named in Redis, a settlement says the
count it brings its hold to and its rank, so that their replays count once.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Sequence

from ..cooldowns import CooldownBook, Health
from ..limits import DAY, Cost, Kind, Reservation
from ..ratelimits import RateReading
from . import redis_scripts
from .redis_holds import Placed, Stranded
from .redis_link import DOWN, Call, Down, RedisLink
from .state import Hold, MemoryState, WindowSpec, WindowState

# How the scripts' arguments and answers are written and read.


def window_id(kind: Kind, period: float) -> str:
    """How a window is named in Redis keys and fields: `tokens|60.0`."""
    return f"{kind}|{float(period)!r}"


def spec_args(specs: Sequence[WindowSpec]) -> list[str]:
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


async def _nothing() -> None:
    return None


def _health(values: Sequence[bytes | str | None]) -> Health | None:
    if all(v is None for v in values):
        return None
    c, f, o, u, p = (float(v or 0) for v in values)
    return Health(c, int(f), int(o), u, bool(p))


class RedisState:
    """State in Redis, shared by every instance that uses the same server and prefix."""

    persistent = True

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "ai-api:",
        threshold: int = 3,
        base: float = 15.0,
        cap: float = 300.0,
        fallback: MemoryState | None = None,
        retry_every: float = 1.0,
    ) -> None:
        self._link = RedisLink(url, retry_every=retry_every)
        self.prefix = prefix
        self.threshold, self.base, self.cap = threshold, base, cap
        self.fallback = (
            fallback
            if fallback is not None
            else MemoryState(threshold=threshold, base=base, cap=cap)
        )
        self._hint: float | None = None
        named = os.urandom(6).hex()  # names of this instance's holds and failures in Redis
        self._names = (f"{named}{n:x}" for n in itertools.count())

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
        self,
        key: str,
        specs: Sequence[WindowSpec],
        cost: Cost,
        now: float,
        mode: str,
        hold: str,
    ) -> list[str]:
        args = [repr(now), repr(now - now % DAY), mode, str(cost.tokens), str(cost.requests)]
        args += [hold, *spec_args(specs)]
        return list(await self._link.run("reserve", [self._budget(key)], args))

    async def reserve(
        self, key: str, specs: Sequence[WindowSpec], cost: Cost, now: float
    ) -> Hold | float:
        return await self._reserve(key, specs, cost, now, next(self._names))

    async def _reserve(
        self, key: str, specs: Sequence[WindowSpec], cost: Cost, now: float, hold: str
    ) -> Hold | float:
        self._seen(now)
        got = await self._link.attempt(lambda: self._charge(key, specs, cost, now, "reserve", hold))
        if got is DOWN:
            local = await self.fallback.reserve(key, specs, cost, now)
            if not isinstance(local, Hold):
                return local
            mirror = local.handle if isinstance(local.handle, Reservation) else None
            stranded = Stranded(key, tuple(specs), cost, now, mirror, hold, cost.tokens)
            self._link.later(lambda: self._replay(stranded))
            return Hold(key, cost.tokens, stranded)
        if got[0] != "1":
            return float(got[1])
        return self._placed(key, specs, cost, now, got[1:], hold)

    def _placed(
        self,
        key: str,
        specs: Sequence[WindowSpec],
        cost: Cost,
        now: float,
        windows: list[str],
        hold: str,
    ) -> Hold:
        """A hold charged in Redis (to its token `windows`), mirrored in the fallback."""
        mirror = self.fallback.budget(key, specs).reserve(cost, now)
        placed = Placed(now, tuple(windows), cost.tokens, mirror, hold, cost.tokens)
        return Hold(key, cost.tokens, placed)

    async def begin(
        self, member: str, key: str, specs: Sequence[WindowSpec], cost: Cost, now: float
    ) -> Hold | float:
        self._seen(now)
        named = next(self._names)  # a BEGIN whose answer was lost is not charged again
        args = [repr(now), repr(now - now % DAY), str(cost.tokens), str(cost.requests), named]
        args += spec_args(specs)
        keys = [self._member(member), self._budget(key)]
        got = await self._link.attempt(lambda: self._link.run("begin", keys, args))
        if got is DOWN:  # step by step, each on the last known state (and Redis if it is back)
            if not await self.claim(member, now):
                await self._undo(member, key, named, now)
                return await self.ready_at(member)
            hold = await self._reserve(key, specs, cost, now, named)
            if not isinstance(hold, Hold):
                await self.release(member)
                await self._undo(member, key, named, now)
            return hold
        if got[0] == "0":
            return self._book_of(member, got[1:]).ready_at(member)
        if got[0] == "2":
            return float(got[1])
        self.fallback.book.begin(member, now)
        return self._placed(key, specs, cost, now, got[1:], named)

    async def _undo(self, member: str, key: str, hold: str, now: float) -> None:
        """Take back what a BEGIN for `hold` charged (and the probe it took), in case it ran
        though its answer was lost: the begin was refused on the way back."""
        keys, args = [self._member(member), self._budget(key)], [hold, repr(now)]
        await self._link.write(lambda: self._link.run("undo", keys, args))

    async def _replay(self, s: Stranded) -> None:
        # The charge as first sent (if Redis ran it already, its answer lost, it answers with
        # what it charged then), then the settlement last asked for; run again whole if it
        # failed on the way.
        if s.placed is None:
            got = await self._charge(s.key, s.specs, s.cost, s.at, "force", s.hold)
            windows = tuple(got[1:])
            s.placed = Placed(s.at, windows, s.cost.tokens, s.mirror, s.hold, s.asked, s.rank)
        placed = s.placed
        if placed.done < placed.rank:
            await self._settle(s.key, placed, placed.rank, placed.asked, s.at)

    async def free_at(self, key: str, specs: Sequence[WindowSpec], cost: Cost, now: float) -> float:
        self._seen(now)
        got = await self._link.attempt(lambda: self._charge(key, specs, cost, now, "peek", ""))
        return await self.fallback.free_at(key, specs, cost, now) if got is DOWN else float(got[1])

    async def settle(self, hold: Hold, tokens: int, now: float) -> None:
        self._seen(now)
        handle = hold.handle
        if isinstance(handle, Placed | Stranded) and handle.mirror is not None:
            handle.mirror.settle(tokens)
        if isinstance(handle, Stranded):
            if handle.placed is None:
                if tokens != handle.asked:  # for its replay to settle
                    handle.asked, handle.rank = tokens, handle.rank + 1
                mine = handle.rank
                await self._link.attempt(_nothing)  # if Redis is back, this replays it
                if handle.placed is None or handle.placed.rank > mine:  # (or a later one)
                    return
            handle = handle.placed
        if not isinstance(handle, Placed):
            return
        placed = handle
        rank = placed.ask(tokens)
        if rank is not None:
            await self._link.write(lambda: self._settle(hold.key, placed, rank, tokens, now))

    async def _settle(self, key: str, placed: Placed, rank: int, tokens: int, now: float) -> None:
        await self._link.run("settle", [self._budget(key)], placed.settlement(rank, tokens, now))
        placed.confirm(rank, tokens)

    async def observe(self, key: str, reading: RateReading, now: float) -> None:
        self._seen(now)
        await self.fallback.observe(key, reading, now)
        args: list[str] = [repr(now)]
        for r in reading.windows:
            until = r.reset_at if r.reset_at is not None else now + r.period
            args += [window_id(r.kind, r.period), opt(r.limit), opt(r.remaining), repr(until)]
        await self._link.write(lambda: self._link.run("observe", [self._budget(key)], args))

    async def exhaust(
        self, key: str, kind: Kind | None, period: float | None, until: float, now: float
    ) -> None:
        self._seen(now)
        await self.fallback.exhaust(key, kind, period, until, now)
        named = window_id(kind, period) if kind is not None and period is not None else ""
        args = [repr(now), repr(until), kind or "", opt(period), named]
        await self._link.write(lambda: self._link.run("exhaust", [self._budget(key)], args))

    async def windows(self, key: str, specs: Sequence[WindowSpec], now: float) -> list[WindowState]:
        self._seen(now)
        args = [repr(now), repr(now - now % DAY), *spec_args(specs)]
        got = await self._link.attempt(lambda: self._link.run("windows", [self._budget(key)], args))
        return await self.fallback.windows(key, specs, now) if got is DOWN else states(got)

    async def _book(self, member: str) -> CooldownBook | Down:
        """A one-member book holding `member`'s health as Redis has it (to read it the
        same way `MemoryState` does)."""

        async def read() -> CooldownBook:
            values = await self._link.redis.hmget(self._member(member), ["c", "f", "o", "u", "p"])
            return self._book_of(member, values)

        return await self._link.attempt(read)

    def _book_of(self, member: str, values: Sequence[bytes | str | None]) -> CooldownBook:
        book = CooldownBook(threshold=self.threshold, base=self.base, cap=self.cap)
        health = _health(values)
        if health is not None:
            book.health[member] = health
        return book

    async def available(self, member: str, now: float) -> bool:
        self._seen(now)
        book = await self._book(member)
        if book is DOWN:
            return await self.fallback.available(member, now)
        return book.available(member, now)

    async def claim(self, member: str, now: float) -> bool:
        self._seen(now)
        got = await self._link.attempt(
            lambda: self._link.run("claim", [self._member(member)], [repr(now)])
        )
        if got is DOWN:
            return await self.fallback.claim(member, now)
        if got:
            self.fallback.book.begin(member, now)
        return bool(got)

    async def ready_at(self, member: str) -> float:
        book = await self._book(member)
        return await self.fallback.ready_at(member) if book is DOWN else book.ready_at(member)

    async def health(self, member: str) -> Health:
        book = await self._book(member)
        if book is DOWN:
            return await self.fallback.health(member)
        return book.health.get(member) or Health()

    async def succeeded(self, member: str) -> None:
        await self.fallback.succeeded(member)
        await self._link.write(lambda: self._link.run("succeeded", [self._member(member)], []))

    async def finish(self, member: str, hold: Hold, tokens: int, now: float) -> None:
        placed = hold.handle
        if not isinstance(placed, Placed):  # charged during an outage: settle knows how
            await self.succeeded(member)
            await self.settle(hold, tokens, now)
            return
        self._seen(now)
        await self.fallback.succeeded(member)
        if placed.mirror is not None:
            placed.mirror.settle(tokens)
        member_key, budget = self._member(member), self._budget(hold.key)
        rank = placed.ask(tokens)

        async def both() -> None:  # one round trip; replayed whole after an outage
            calls: list[Call] = [("succeeded", [member_key], [])]
            if rank is not None:
                calls.append(("settle", [budget], placed.settlement(rank, tokens, now)))
            await self._link.pipelined(calls)
            if rank is not None:
                placed.confirm(rank, tokens)

        await self._link.write(both)

    async def failed(self, member: str, now: float, retry_at: float | None) -> None:
        self._seen(now)
        await self.fallback.failed(member, now, retry_at)
        args = [repr(now), opt(retry_at), str(self.threshold), repr(self.base), repr(self.cap)]
        args.append(next(self._names))  # names the failure: a replay does not count it again
        await self._link.write(lambda: self._link.run("failed", [self._member(member)], args))

    async def release(self, member: str) -> None:
        await self.fallback.release(member)
        await self._link.write(lambda: self._link.run("release", [self._member(member)], []))

    async def cool(self, member: str, until: float) -> None:
        await self.fallback.cool(member, until)
        # COOL carries no `now`: the latest one seen here (else the wall clock) sizes the TTL.
        now = self._hint if self._hint is not None else time.time()
        keep = max(0.0, until - now) + redis_scripts.HEALTH_MARGIN
        args = [repr(float(until)), repr(keep)]
        await self._link.write(lambda: self._link.run("cool", [self._member(member)], args))
