"""`RedisLink`: one client of Redis that outlives outages, for `RedisState`.

It loads the Lua scripts, runs them (alone, or several in one round trip), and tells its
caller when Redis cannot be asked (`DOWN`), logging one warning an outage. Writes made while
Redis is away are queued and replayed, in order, when it answers again; it is asked again at
most every `retry_every` seconds. A write whose answer was lost may have run: it is replayed
unless its caller said it must not run twice (`again=False`), and then it is dropped.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from enum import Enum
from typing import Any, Final, TypeVar
from urllib.parse import parse_qs, urlsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger("ai_api.store")

T = TypeVar("T")
_UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)
_MAX_PENDING = 10_000  # writes kept while Redis is away; the oldest go first
_REFUSALS = 3  # times a replayed write Redis refuses is tried before it is dropped


class Down(Enum):
    """Redis could not be asked: answer from the fallback."""

    DOWN = 0


DOWN: Final = Down.DOWN

Call = tuple[str, list[str], list[str]]
"""A script's name, its keys and its arguments."""
Again = bool | Callable[[], Awaitable[object]]
"""When a write's answer is lost: run it again (True), not (False), or run this instead."""
Write = tuple[Callable[[], Awaitable[object]], Again]
"""A write waiting for Redis, and what to do when its answer is lost."""


class RedisLink:
    """A Redis client, its scripts, and the writes waiting for it to come back."""

    def __init__(self, url: str, *, retry_every: float = 1.0) -> None:
        parts = urlsplit(url)
        self._url = url
        self._secrets = [
            p for p in (parts.password, *parse_qs(parts.query).get("password", [])) if p
        ]
        self._where = (
            parts.path if parts.scheme == "unix" else f"{parts.hostname}:{parts.port or 6379}"
        )
        self.retry_every = retry_every
        self._client: Redis | None = None
        self._scripts: dict[str, AsyncScript] = {}
        self._down = False
        self._retry_at = 0.0
        self._reconciling = False  # one replay at a time, however long it takes
        self._refused: tuple[Write, int] | None = None  # and its tries
        self._pending: deque[Write] = deque(maxlen=_MAX_PENDING)

    async def open(self, scripts: Mapping[str, str]) -> None:
        """Connect and load `scripts` (name -> Lua); an unreachable Redis is waited for."""
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
        self._scripts = {name: client.register_script(text) for name, text in scripts.items()}
        try:
            await client.ping()
            async with client.pipeline(transaction=False) as pipe:
                for text in scripts.values():
                    pipe.script_load(text)
                await pipe.execute()
        except _UNREACHABLE as exc:
            self._lost(exc)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    @property
    def down(self) -> bool:
        """Whether Redis was unreachable when last asked (calls are served from the fallback)."""
        return self._down

    @property
    def redis(self) -> Redis:
        """The client (RuntimeError before `open`)."""
        if self._client is None:
            raise RuntimeError("RedisState is not open")
        return self._client

    async def attempt(self, call: Callable[[], Awaitable[T]]) -> T | Down:
        """`call` against Redis, or DOWN when it cannot be reached (now or lately)."""
        if self._down and not await self._reconcile():
            return DOWN
        try:
            return await call()
        except _UNREACHABLE as exc:
            self._lost(exc)
            return DOWN

    async def write(self, call: Callable[[], Awaitable[T]], *, again: Again = True) -> T | Down:
        """A write to Redis, and its answer; DOWN when Redis cannot be reached now, and then it
        is replayed later (when its answer was lost, as `again` says). While writes wait for
        Redis, a new one goes after them (and with them, if Redis is back)."""
        if self._down:
            self.later(call, again=again)
            await self._reconcile()
            return DOWN
        got = await self.attempt(call)
        if got is DOWN and again is not False:
            self.later(call if again is True else again)
        return got

    def later(self, call: Callable[[], Awaitable[object]], *, again: Again = True) -> None:
        """Replay `call` once Redis is back (after the writes queued before it); when its
        answer is lost then, as `again` says."""
        self._pending.append((call, again))

    async def run(self, name: str, keys: list[str], args: Sequence[str]) -> Any:
        """The script `name`'s answer."""
        return await self._scripts[name](keys=keys, args=list(args), client=self.redis)

    async def _reconcile(self) -> bool:
        """Whether Redis is back: if so, replay what was written meanwhile (once per outage)."""
        if self._reconciling or time.monotonic() < self._retry_at:
            return False
        self._retry_at = time.monotonic() + self.retry_every
        self._reconciling = True
        replayed = 0
        try:
            await self.redis.ping()
            while self._pending:
                write = self._pending[0]
                call, again = write
                try:
                    await call()
                except _UNREACHABLE:
                    if again is not True:  # it may have run: not again, or what replaces it
                        self._pop(write)
                        if again is not False:
                            self._pending.appendleft((again, True))
                    raise
                except RedisError as exc:  # Redis refused it (out of memory, read-only, ...)
                    if not self._drop(write, exc):
                        return False
                self._pop(write)
                replayed += 1
        except _UNREACHABLE as exc:
            self._lost(exc)
            return False
        finally:
            self._reconciling = False
        self._down = False
        log.info(
            "Redis at %s is reachable again: replayed %d writes made while it was away",
            self._where,
            replayed,
        )
        return True

    def _pop(self, write: Write) -> None:
        if self._pending and self._pending[0] is write:  # (not pushed out meanwhile)
            self._pending.popleft()

    def _drop(self, write: Write, exc: RedisError) -> bool:
        """Whether to drop a replayed write Redis refused: after `_REFUSALS` tries (a refusal
        that lasts would hold every later write back); until then Redis is asked again later."""
        tries = self._refused[1] + 1 if self._refused and self._refused[0] is write else 1
        self._retry_at = time.monotonic() + self.retry_every
        if tries < _REFUSALS:
            self._refused = (write, tries)
            log.warning(
                "Redis at %s refused a replayed write (%s); trying again later",
                self._where,
                self._redact(str(exc)),
            )
            return False
        self._refused = None
        log.error(
            "Redis at %s refused a replayed write %d times (%s): dropped",
            self._where,
            tries,
            self._redact(str(exc)),
        )
        return True

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

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text
