"""`RedisState`: turns, budgets and health shared by gateway instances on several machines.

Every decision is one Lua script (one round trip, atomic: see `redis_scripts` for the key
layout). When Redis cannot be reached, the state logs one warning and answers from a
`MemoryState` fallback (kept close by mirroring this instance's writes into it), notes the
writes it made meanwhile (charges, settlements, readings, health), tries Redis again at most
every `retry_every` seconds, and replays those writes, in order, once Redis answers again.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final, TypeVar
from urllib.parse import parse_qs, urlsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..cooldowns import CooldownBook, Health
from ..limits import DAY, Cost, Kind, Reservation
from ..ratelimits import RateReading
from . import redis_scripts
from .redis_scripts import opt, spec_args, states, window_id
from .state import Hold, MemoryState, WindowSpec, WindowState

log = logging.getLogger("ai_api.store")

T = TypeVar("T")
_UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)
_MAX_PENDING = 10_000  # writes kept while Redis is away; the oldest go first


class _Down(Enum):
    """Redis could not be asked: answer from the fallback."""

    DOWN = 0


DOWN: Final = _Down.DOWN


@dataclass(slots=True)
class _Placed:
    """Where a reservation was charged in Redis (token windows, at `at`), and its mirror."""

    at: float
    windows: tuple[str, ...]
    tokens: int
    mirror: Reservation | None


@dataclass(slots=True)
class _Stranded:
    """A reservation charged to the fallback while Redis was away: replayed once it is back."""

    key: str
    specs: tuple[WindowSpec, ...]
    cost: Cost
    at: float
    mirror: Reservation | None
    placed: _Placed | None = None


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
        parts = urlsplit(url)
        self._url = url
        self._secrets = [
            p for p in (parts.password, *parse_qs(parts.query).get("password", [])) if p
        ]
        self._where = (
            parts.path if parts.scheme == "unix" else f"{parts.hostname}:{parts.port or 6379}"
        )
        self.prefix = prefix
        self.threshold, self.base, self.cap = threshold, base, cap
        self.fallback = (
            fallback
            if fallback is not None
            else MemoryState(threshold=threshold, base=base, cap=cap)
        )
        self.retry_every = retry_every
        self._client: Redis | None = None
        self._scripts: dict[str, AsyncScript] = {}
        self._down = False
        self._retry_at = 0.0
        self._pending: deque[Callable[[], Awaitable[object]]] = deque(maxlen=_MAX_PENDING)
        self._hint: float | None = None

    async def open(self) -> RedisState:
        """Connect and load the scripts; an unreachable Redis is waited for, not fatal."""
        try:
            client = Redis.from_url(
                self._url,
                decode_responses=True,
                socket_timeout=0.5,
                socket_connect_timeout=0.5,
                retry=Retry(NoBackoff(), 0),
            )
        except ValueError as exc:
            raise ValueError(self._redact(str(exc))) from None
        self._client = client
        self._scripts = {
            name: client.register_script(text) for name, text in redis_scripts.SCRIPTS.items()
        }
        try:
            await client.ping()
            async with client.pipeline(transaction=False) as pipe:
                for text in redis_scripts.SCRIPTS.values():
                    pipe.script_load(text)
                await pipe.execute()
        except _UNREACHABLE as exc:
            self._lost(exc)
        return self

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _lost(self, exc: BaseException) -> None:
        self._retry_at = time.monotonic() + self.retry_every
        if not self._down:
            self._down = True
            log.warning(
                "Redis at %s is unreachable (%s: %s): serving from this instance's memory until"
                " it is back",
                self._where,
                type(exc).__name__,
                self._redact(str(exc)),
            )

    @property
    def _redis(self) -> Redis:
        if self._client is None:
            raise RuntimeError("RedisState is not open")
        return self._client

    async def _try(self, call: Callable[[], Awaitable[T]]) -> T | _Down:
        """`call` against Redis, or DOWN when it cannot be reached (now or lately)."""
        if self._down and not await self._reconcile():
            return DOWN
        try:
            return await call()
        except _UNREACHABLE as exc:
            self._lost(exc)
            return DOWN

    async def _write(self, call: Callable[[], Awaitable[object]]) -> None:
        """A write to Redis; replayed later when Redis cannot be reached now."""
        if await self._try(call) is DOWN:
            self._pending.append(call)

    async def _reconcile(self) -> bool:
        """Whether Redis is back: if so, replay what was written meanwhile (once per outage)."""
        if time.monotonic() < self._retry_at:
            return False
        self._retry_at = time.monotonic() + self.retry_every  # one attempt at a time
        replayed = 0
        try:
            await self._redis.ping()
            while self._pending:
                await self._pending[0]()
                self._pending.popleft()
                replayed += 1
        except _UNREACHABLE as exc:
            self._lost(exc)
            return False
        self._down = False
        log.info(
            "Redis at %s is reachable again: replayed %d writes made while it was away",
            self._where,
            replayed,
        )
        return True

    async def _run(self, name: str, keys: list[str], args: Sequence[str]) -> Any:
        return await self._scripts[name](keys=keys, args=list(args), client=self._redis)

    async def _pipelined(self, calls: Sequence[tuple[str, list[str], list[str]]]) -> None:
        """Run scripts in one round trip. (A pipeline of `AsyncScript`s would first ask
        SCRIPT EXISTS, a round trip of its own; a script Redis lost since `open` runs again
        alone, which loads it.)"""
        async with self._redis.pipeline(transaction=False) as pipe:
            for name, keys, args in calls:
                pipe.evalsha(self._scripts[name].sha, len(keys), *keys, *args)
            results = await pipe.execute(raise_on_error=False)
        for (name, keys, args), result in zip(calls, results, strict=True):
            if isinstance(result, NoScriptError):
                await self._run(name, keys, args)
            elif isinstance(result, Exception):
                raise result

    def _budget(self, key: str) -> str:
        return f"{self.prefix}b:{key}"

    def _member(self, member: str) -> str:
        return f"{self.prefix}h:{member}"

    def _seen(self, now: float) -> None:
        self._hint = now if self._hint is None else max(self._hint, now)

    async def turn(self, route: str) -> int:
        async def incr() -> int:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.incr(f"{self.prefix}t:{route}")
                pipe.pexpire(f"{self.prefix}t:{route}", redis_scripts.TURN_TTL_MS)
                count, _ = await pipe.execute()
            return int(count) - 1

        turn = await self._try(incr)
        return await self.fallback.turn(route) if turn is DOWN else turn

    async def _charge(
        self, key: str, specs: Sequence[WindowSpec], cost: Cost, now: float, mode: str
    ) -> list[str]:
        args = [repr(now), repr(now - now % DAY), mode, str(cost.tokens), str(cost.requests)]
        args += spec_args(specs)
        return list(await self._run("reserve", [self._budget(key)], args))

    async def reserve(
        self, key: str, specs: Sequence[WindowSpec], cost: Cost, now: float
    ) -> Hold | float:
        self._seen(now)
        got = await self._try(lambda: self._charge(key, specs, cost, now, "reserve"))
        if got is DOWN:
            hold = await self.fallback.reserve(key, specs, cost, now)
            if not isinstance(hold, Hold):
                return hold
            mirror = hold.handle if isinstance(hold.handle, Reservation) else None
            stranded = _Stranded(key, tuple(specs), cost, now, mirror)
            self._pending.append(lambda: self._replay(stranded))
            return Hold(key, cost.tokens, stranded)
        if got[0] != "1":
            return float(got[1])
        return self._placed(key, specs, cost, now, got[1:])

    def _placed(
        self, key: str, specs: Sequence[WindowSpec], cost: Cost, now: float, windows: list[str]
    ) -> Hold:
        """A hold charged in Redis (to its token `windows`), mirrored in the fallback."""
        mirror = self.fallback.budget(key, specs).reserve(cost, now)
        return Hold(key, cost.tokens, _Placed(now, tuple(windows), cost.tokens, mirror))

    async def begin(
        self, member: str, key: str, specs: Sequence[WindowSpec], cost: Cost, now: float
    ) -> Hold | float:
        self._seen(now)
        args = [repr(now), repr(now - now % DAY), str(cost.tokens), str(cost.requests)]
        args += spec_args(specs)
        keys = [self._member(member), self._budget(key)]
        got = await self._try(lambda: self._run("begin", keys, args))
        if got is DOWN:  # step by step, each on the last known state (and Redis if it is back)
            if not await self.claim(member, now):
                return await self.ready_at(member)
            hold = await self.reserve(key, specs, cost, now)
            if not isinstance(hold, Hold):
                await self.release(member)
            return hold
        if got[0] == "0":
            return self._book_of(member, got[1:]).ready_at(member)
        if got[0] == "2":
            return float(got[1])
        self.fallback.book.begin(member, now)
        return self._placed(key, specs, cost, now, got[1:])

    async def _replay(self, stranded: _Stranded) -> None:
        s, cost = stranded, stranded.cost
        got = await self._charge(s.key, s.specs, cost, s.at, "force")
        s.placed = _Placed(s.at, tuple(got[1:]), cost.tokens, s.mirror)
        # Settled while the charge was on its way: correct it now.
        await self._settle(s.key, s.placed, s.cost.tokens, s.at)

    async def free_at(self, key: str, specs: Sequence[WindowSpec], cost: Cost, now: float) -> float:
        self._seen(now)
        got = await self._try(lambda: self._charge(key, specs, cost, now, "peek"))
        return await self.fallback.free_at(key, specs, cost, now) if got is DOWN else float(got[1])

    async def settle(self, hold: Hold, tokens: int, now: float) -> None:
        self._seen(now)
        handle = hold.handle
        if isinstance(handle, _Placed | _Stranded) and handle.mirror is not None:
            handle.mirror.settle(tokens)
        if isinstance(handle, _Stranded):
            handle.cost = Cost(tokens, handle.cost.requests)  # what its replay will charge
            if handle.placed is None:
                await self._try(_nothing)  # if Redis is back, this replays it
            if handle.placed is None:
                return
            handle = handle.placed
        if not isinstance(handle, _Placed):
            return
        placed = handle
        await self._write(lambda: self._settle(hold.key, placed, tokens, now))

    async def _settle(self, key: str, placed: _Placed, tokens: int, now: float) -> None:
        delta = tokens - placed.tokens
        if delta != 0:
            args = [repr(now), repr(placed.at), str(delta), *placed.windows]
            await self._run("settle", [self._budget(key)], args)
            placed.tokens = tokens

    async def observe(self, key: str, reading: RateReading, now: float) -> None:
        self._seen(now)
        await self.fallback.observe(key, reading, now)
        args: list[str] = [repr(now)]
        for r in reading.windows:
            until = r.reset_at if r.reset_at is not None else now + r.period
            args += [window_id(r.kind, r.period), opt(r.limit), opt(r.remaining), repr(until)]
        await self._write(lambda: self._run("observe", [self._budget(key)], args))

    async def exhaust(
        self, key: str, kind: Kind | None, period: float | None, until: float, now: float
    ) -> None:
        self._seen(now)
        await self.fallback.exhaust(key, kind, period, until, now)
        named = window_id(kind, period) if kind is not None and period is not None else ""
        args = [repr(now), repr(until), kind or "", opt(period), named]
        await self._write(lambda: self._run("exhaust", [self._budget(key)], args))

    async def windows(self, key: str, specs: Sequence[WindowSpec], now: float) -> list[WindowState]:
        self._seen(now)
        args = [repr(now), repr(now - now % DAY), *spec_args(specs)]
        got = await self._try(lambda: self._run("windows", [self._budget(key)], args))
        return await self.fallback.windows(key, specs, now) if got is DOWN else states(got)

    async def _book(self, member: str) -> CooldownBook | _Down:
        """A one-member book holding `member`'s health as Redis has it (to read it the
        same way `MemoryState` does)."""

        async def read() -> CooldownBook:
            values = await self._redis.hmget(self._member(member), ["c", "f", "o", "u", "p"])
            return self._book_of(member, values)

        return await self._try(read)

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
        got = await self._try(lambda: self._run("claim", [self._member(member)], [repr(now)]))
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
        await self._write(lambda: self._run("succeeded", [self._member(member)], []))

    async def finish(self, member: str, hold: Hold, tokens: int, now: float) -> None:
        placed = hold.handle
        if not isinstance(placed, _Placed):  # charged during an outage: settle knows how
            await self.succeeded(member)
            await self.settle(hold, tokens, now)
            return
        self._seen(now)
        await self.fallback.succeeded(member)
        if placed.mirror is not None:
            placed.mirror.settle(tokens)
        member_key, budget = self._member(member), self._budget(hold.key)

        async def both() -> None:  # one round trip; replayed whole after an outage
            delta = tokens - placed.tokens
            calls: list[tuple[str, list[str], list[str]]] = [("succeeded", [member_key], [])]
            if delta != 0:
                args = [repr(now), repr(placed.at), str(delta), *placed.windows]
                calls.append(("settle", [budget], args))
            await self._pipelined(calls)
            placed.tokens = tokens

        await self._write(both)

    async def failed(self, member: str, now: float, retry_at: float | None) -> None:
        self._seen(now)
        await self.fallback.failed(member, now, retry_at)
        args = [repr(now), opt(retry_at), str(self.threshold), repr(self.base), repr(self.cap)]
        await self._write(lambda: self._run("failed", [self._member(member)], args))

    async def release(self, member: str) -> None:
        await self.fallback.release(member)
        await self._write(lambda: self._run("release", [self._member(member)], []))

    async def cool(self, member: str, until: float) -> None:
        await self.fallback.cool(member, until)
        # COOL carries no `now`: the latest one seen here (else the wall clock) sizes the TTL.
        now = self._hint if self._hint is not None else time.time()
        keep = max(0.0, until - now) + redis_scripts.HEALTH_MARGIN
        args = [repr(float(until)), repr(keep)]
        await self._write(lambda: self._run("cool", [self._member(member)], args))
