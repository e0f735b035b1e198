"""Where the answer cache keeps its entries (`ai_api.cache`): this process's memory, a table
of the SQLite ledger file (shared by the workers of one machine), or Redis (shared by
instances). Each is bounded by age (`ttl` seconds) and by size (`max_bytes`, the oldest
entries go first); an entry larger than a tenth of that is not kept.

A store that fails is a miss, never a failed request: errors are logged once and the
request is answered by a provider.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from .ledger_sql import connect, create_private

log = logging.getLogger("ai_api.store")

TIMEOUT = 2.0
"""The longest one lookup or write may take before it counts as a miss (or is dropped)."""
LOCK_WAIT = 1.0
"""The longest the SQLite table's connections wait for the file's lock (under `TIMEOUT`)."""


class AnswerStore(Protocol):
    """Bytes by key, bounded by age and size."""

    async def get(self, key: str) -> bytes | None:
        """The entry kept under `key` and younger than the age bound, else None."""

    async def put(self, key: str, value: bytes) -> None:
        """Keep `value` under `key` (replacing), evicting the oldest entries past the bound."""

    async def delete(self, key: str) -> None:
        """Drop the entry under `key`, if any."""

    async def close(self) -> None:
        """Release what it holds."""


class _Outage:
    """Whether a store is failing: the first failure of an outage is logged, the others not."""

    __slots__ = ("failing", "where")

    def __init__(self, where: str) -> None:
        self.where = where
        self.failing = False

    def failed(self, exc: BaseException) -> None:
        if not self.failing:
            log.warning(
                "the answer cache's %s cannot be used (%s): misses meanwhile",
                self.where,
                type(exc).__name__,
            )
        self.failing = True


class MemoryAnswers:
    """This process's answers, least recently kept first."""

    def __init__(self, max_bytes: int, ttl: float, clock: Callable[[], float] = time.time) -> None:
        self.max_bytes = max_bytes
        self.ttl = ttl
        self.clock = clock
        self.size = 0
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    async def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] < self.clock() - self.ttl:
            await self.delete(key)
            return None
        return entry[1]

    async def put(self, key: str, value: bytes) -> None:
        if len(value) > self.max_bytes // 10:
            return
        await self.delete(key)
        self._entries[key] = (self.clock(), value)
        self.size += len(value)
        while self.size > self.max_bytes:
            _, (_, old) = self._entries.popitem(last=False)
            self.size -= len(old)

    async def delete(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.size -= len(entry[1])

    async def close(self) -> None:
        self._entries.clear()
        self.size = 0


_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS answers (
        key TEXT PRIMARY KEY,
        at REAL NOT NULL,
        size INTEGER NOT NULL,
        body BLOB NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS answers_at ON answers (at)",
)


class SQLiteAnswers:
    """Answers in a table of their own in the ledger's file (WAL: the workers of one machine
    read and write it at once). Lookups and writes each have a connection and a thread of
    their own, so a lookup never waits behind a write that waits for the file's lock; and
    that wait is shorter than `TIMEOUT`, so a write gives up rather than hangs."""

    def __init__(
        self, path: Path, max_bytes: int, ttl: float, clock: Callable[[], float] = time.time
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.ttl = ttl
        self.clock = clock
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="ai-api-cache-read")
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="ai-api-cache-write")
        self._conns: dict[ThreadPoolExecutor, sqlite3.Connection] = {}
        self._outage = _Outage("table")
        self._total: int | None = None  # the table's bytes as the writer last knew them

    async def open(self) -> SQLiteAnswers:
        await self._run(self._create, self._writer)
        await self._run(lambda: self._connect(self._reader), self._reader)
        return self

    def _connect(self, thread: ThreadPoolExecutor) -> sqlite3.Connection:
        conn = self._conns[thread] = connect(self.path)
        conn.execute(f"PRAGMA busy_timeout = {int(LOCK_WAIT * 1000)}")
        return conn

    def _create(self) -> None:
        create_private(self.path)
        conn = self._connect(self._writer)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        for statement in _SCHEMA:
            conn.execute(statement)

    def _db(self, thread: ThreadPoolExecutor) -> sqlite3.Connection:
        conn = self._conns.get(thread)
        if conn is None:
            raise sqlite3.OperationalError("the answer cache's table is not open")
        return conn

    async def _run(self, call: Callable[[], Any], thread: ThreadPoolExecutor) -> Any:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(TIMEOUT):
                result = await loop.run_in_executor(thread, call)
        except (sqlite3.Error, OSError, TimeoutError) as exc:
            self._outage.failed(exc)
            return None
        self._outage.failing = False
        return result

    async def get(self, key: str) -> bytes | None:
        since = self.clock() - self.ttl

        def read() -> bytes | None:
            row = (
                self._db(self._reader)
                .execute("SELECT body FROM answers WHERE key = ? AND at >= ?", (key, since))
                .fetchone()
            )
            return None if row is None else bytes(row[0])

        result: bytes | None = await self._run(read, self._reader)
        return result

    async def put(self, key: str, value: bytes) -> None:
        if len(value) > self.max_bytes // 10:
            return
        now = self.clock()

        def write() -> None:
            conn = self._db(self._writer)
            conn.execute("BEGIN IMMEDIATE")
            try:
                old = conn.execute("SELECT size FROM answers WHERE key = ?", (key,)).fetchone()
                conn.execute(
                    "INSERT OR REPLACE INTO answers (key, at, size, body) VALUES (?, ?, ?, ?)",
                    (key, now, len(value), value),
                )
                expired = conn.execute("DELETE FROM answers WHERE at < ?", (now - self.ttl,))
                total = self._total
                if total is not None and not expired.rowcount:
                    total += len(value) - (old[0] if old else 0)
                # Counted again from the table when unknown, after expiry, and before evicting
                # (the other workers write it too): a sum over every row, not at every write.
                if total is None or expired.rowcount or total > self.max_bytes:
                    total = conn.execute("SELECT coalesce(sum(size), 0) FROM answers").fetchone()[0]
                while total > self.max_bytes:
                    oldest = conn.execute(
                        "SELECT key, size FROM answers ORDER BY at LIMIT 64"
                    ).fetchall()
                    for old, size in oldest:
                        conn.execute("DELETE FROM answers WHERE key = ?", (old,))
                        total -= size
                        if total <= self.max_bytes:
                            break
                conn.execute("COMMIT")
                self._total = total
            except BaseException:
                conn.execute("ROLLBACK")
                self._total = None
                raise

        await self._run(write, self._writer)

    async def delete(self, key: str) -> None:
        def drop() -> None:
            self._db(self._writer).execute("DELETE FROM answers WHERE key = ?", (key,))
            self._total = None  # counted again at the next write

        await self._run(drop, self._writer)

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        for thread in (self._reader, self._writer):
            conn = self._conns.pop(thread, None)
            if conn is not None:
                await loop.run_in_executor(thread, conn.close)
            thread.shutdown(wait=False)


# KEYS: the entry, the index (entry -> when kept), the sizes (entry -> bytes), the total.
# ARGV (of _PUT): the entry's suffix, its value, now, ttl, max_bytes, the prefix. The index
# and sizes name entries by suffix; expired entries leave the index and the total here too.
_DROP_FUNCTION = """
local function drop(prefix, suffix)
  local size = tonumber(redis.call('HGET', KEYS[3], suffix) or '0')
  redis.call('DEL', prefix .. suffix)
  redis.call('HDEL', KEYS[3], suffix)
  redis.call('ZREM', KEYS[2], suffix)
  redis.call('DECRBY', KEYS[4], size)
end
"""
# _GET: the same KEYS; ARGV: the entry's suffix, the oldest time kept (an entry older is a
# miss on the gateway's clock, which Redis's own expiry does not follow).
_GET = """
local at = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not at or tonumber(at) < tonumber(ARGV[2]) then return false end
return redis.call('GET', KEYS[1])
"""
# _DROP: the same KEYS; ARGV: the entry's suffix, the prefix.
_DROP = _DROP_FUNCTION + "drop(ARGV[2], ARGV[1])\nreturn 1\n"
_PUT = (
    _DROP_FUNCTION
    + """
local prefix = ARGV[6]
local now, ttl, max = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local function drop_one(suffix) drop(prefix, suffix) end
drop_one(ARGV[1])
for _, old in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - ttl)) do drop_one(old) end
redis.call('SET', KEYS[1], ARGV[2], 'PX', math.floor(ttl * 1000))
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], string.len(ARGV[2]))
local total = redis.call('INCRBY', KEYS[4], string.len(ARGV[2]))
while total > max do
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0)
  if #oldest == 0 then break end
  drop_one(oldest[1])
  total = tonumber(redis.call('GET', KEYS[4]) or '0')
end
return total
"""
)


class RedisAnswers:
    """Answers in Redis, shared by every instance that uses it: each entry with its own
    expiry, and an index that evicts the oldest past the size bound (one script, atomic)."""

    def __init__(
        self,
        url: str,
        max_bytes: int,
        ttl: float,
        clock: Callable[[], float] = time.time,
        prefix: str = "ai-api:cache:",
    ) -> None:
        from redis.asyncio import Redis

        self._redis = Redis.from_url(url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT)
        self.max_bytes = max_bytes
        self.ttl = ttl
        self.clock = clock
        self.prefix = prefix
        self._put = self._redis.register_script(_PUT)
        self._drop = self._redis.register_script(_DROP)
        self._get = self._redis.register_script(_GET)
        self._outage = _Outage("Redis")

    async def _run(self, call: Callable[[], Any]) -> Any:
        from redis.exceptions import RedisError

        try:
            async with asyncio.timeout(TIMEOUT):
                result = await call()
        except (RedisError, OSError, TimeoutError) as exc:
            self._outage.failed(exc)
            return None
        self._outage.failing = False
        return result

    async def get(self, key: str) -> bytes | None:
        since = self.clock() - self.ttl
        result: bytes | None = await self._run(
            lambda: self._get(keys=self._keys(key), args=[key, since])
        )
        return result

    async def put(self, key: str, value: bytes) -> None:
        if len(value) > self.max_bytes // 10:
            return
        args: list[bytes | str | float] = [
            key,
            value,
            self.clock(),
            self.ttl,
            self.max_bytes,
            self.prefix,
        ]
        await self._run(lambda: self._put(keys=self._keys(key), args=args))

    async def delete(self, key: str) -> None:
        await self._run(lambda: self._drop(keys=self._keys(key), args=[key, self.prefix]))

    def _keys(self, key: str) -> list[str]:
        """The entry, the index, the sizes and the total (the scripts' KEYS)."""
        p = self.prefix
        return [p + key, p + "#index", p + "#sizes", p + "#total"]

    async def close(self) -> None:
        await self._redis.aclose()
