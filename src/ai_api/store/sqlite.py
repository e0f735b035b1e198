"""The SQLite usage ledger: a queue drained by one writer thread, so requests never wait on disk."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Self, TypeVar

from . import ledger_sql
from .ledger import (
    Attempt,
    CacheTotals,
    HourRow,
    RequestRecord,
    UsageRow,
    day_start,
    tally,
    tally_cache,
    tally_hours,
)

Record = Attempt | RequestRecord
"""What the writer's queue holds."""

logger = logging.getLogger("ai_api.store")

T = TypeVar("T")
R = TypeVar("R", Attempt, RequestRecord)

_FIRST_BACKOFF = 0.1
_MAX_BACKOFF = 2.0


class SQLiteLedger:
    """A usage ledger in a SQLite file (WAL), written in batches by one background thread.

    Use ``ledger = await SQLiteLedger(path).open()``, which creates the file, its directory and
    schema, and ``await ledger.close()`` when done. `batch` caps the attempts per transaction;
    `interval` is how long the writer lets a burst gather before writing it; at most `capacity`
    attempts wait in memory, beyond which the oldest are dropped and counted in `dropped`.
    """

    def __init__(
        self, path: Path, *, batch: int = 256, interval: float = 0.05, capacity: int = 100_000
    ) -> None:
        if batch < 1 or capacity < 1 or interval < 0:
            raise ValueError("batch and capacity must be positive, interval not negative")
        self._path = path
        self._batch = batch
        self._interval = interval
        self._capacity = capacity
        # Guards the queue, waiters and flags; never held during I/O, so record() cannot stall.
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._queue: deque[tuple[int, Record]] = deque()
        self._since = 0.0
        """When the oldest attempt not yet taken into a batch was recorded (monotonic)."""
        self._seq = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._kick = False
        self._stopping = False
        self._overflowing = False
        self._dropped = 0
        # Held around a commit and the dequeuing of what it wrote, so a reader's snapshot plus
        # its copy of the queue hold every attempt exactly once.
        self._commit_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closing = False

    @property
    def dropped(self) -> int:
        """Attempts evicted from a full queue (each eviction was logged as an error)."""
        return self._dropped

    async def open(self) -> Self:
        """Create the file, directory and schema, and start the writer; returns the ledger."""
        if self._thread is not None or self._closing:
            raise RuntimeError("SQLiteLedger.open() may be called once")
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()

        def opened(exc: Exception | None) -> None:
            loop.call_soon_threadsafe(_settle, ready, exc)

        self._thread = threading.Thread(
            target=self._run, args=(opened,), name="ai_api.store writer", daemon=True
        )
        self._thread.start()
        try:
            await ready
        except BaseException:
            self._thread = None
            raise
        return self

    @property
    def queued(self) -> int:
        """Records (attempts and requests) waiting for the writer."""
        return len(self._queue)

    def record(self, attempt: Attempt) -> None:
        """Queue an attempt for the writer; RuntimeError unless the ledger is open."""
        self._enqueue(attempt)

    def record_request(self, request: RequestRecord) -> None:
        """Queue a request's record for the writer, like an attempt."""
        self._enqueue(request)

    async def cache_since(self, since: float) -> CacheTotals:
        """What the answer cache did for the requests with at >= since (queued ones too)."""
        stored, queued = await self._read(
            lambda conn: ledger_sql.cache_since(conn, since), RequestRecord
        )
        return tally_cache(stored, (r for r in queued if r.at >= since))

    async def requests_since(self, since: float, limit: int) -> list[RequestRecord]:
        """The last `limit` requests with at >= since, oldest first (queued ones too)."""
        stored, queued = await self._read(
            lambda conn: ledger_sql.requests_since(conn, since, limit), RequestRecord
        )
        found = sorted(stored + [r for r in queued if r.at >= since], key=lambda r: r.at)
        return found[-limit:] if limit > 0 else []

    def _enqueue(self, attempt: Record) -> None:
        if self._closing:
            raise RuntimeError("SQLiteLedger is closed: cannot record more attempts")
        if self._thread is None:
            raise RuntimeError("SQLiteLedger is not open: await ledger.open() first")
        overflowed = False
        with self._lock:  # the condition's own lock: `with self._cond` costs two more calls
            if len(self._queue) >= self._capacity:
                self._queue.popleft()
                self._dropped += 1
                overflowed, self._overflowing = not self._overflowing, True
            self._seq += 1
            self._queue.append((self._seq, attempt))
            if len(self._queue) == 1:
                self._since = time.monotonic()
                self._cond.notify_all()
            elif len(self._queue) == self._batch:
                self._cond.notify_all()
        if overflowed:
            logger.error(
                "usage ledger queue is full (%d attempts): dropping the oldest", self._capacity
            )

    async def attempts_since(self, since: float) -> list[Attempt]:
        """Every attempt with at >= since, oldest first, including ones still queued."""
        stored, queued = await self._read(
            lambda conn: ledger_sql.attempts_since(conn, since), Attempt
        )
        queued = [a for a in queued if a.at >= since and not a.in_progress]
        return sorted(stored + queued, key=lambda a: a.at)

    async def in_progress_since(self, since: float) -> list[Attempt]:
        """The attempts with at >= since that began and have not ended (stored or queued)."""
        stored, queued = await self._read(
            lambda conn: ledger_sql.in_progress_since(conn, since), Attempt
        )
        ended = {a.attempt_id for a in queued if not a.in_progress}
        found = {a.attempt_id: a for a in stored if a.attempt_id not in ended}
        begun = (a for a in queued if a.in_progress and a.at >= since)
        found.update({a.attempt_id: a for a in begun if a.attempt_id not in ended})
        return sorted(found.values(), key=lambda a: a.at)

    async def ceilings_since(self, since: float) -> list[Attempt]:
        """The attempts with at >= since that taught a ceiling, oldest first (queued too)."""
        stored, queued = await self._read(
            lambda conn: ledger_sql.ceilings_since(conn, since), Attempt
        )
        queued = [a for a in queued if a.at >= since and a.learned_limit is not None]
        return sorted(stored + queued, key=lambda a: a.at)

    async def hours(self, since: float) -> list[HourRow]:
        """Hourly totals per provider of the attempts with at >= since (queued ones too)."""
        stored, queued = await self._read(lambda conn: ledger_sql.hours_since(conn, since), Attempt)
        return tally_hours(stored, (a for a in queued if a.at >= since))

    async def usage(self, since_day: str) -> list[UsageRow]:
        """Per-day totals from since_day (inclusive), sorted; includes queued attempts."""
        start = day_start(since_day)
        stored, queued = await self._read(lambda conn: ledger_sql.usage_since(conn, start), Attempt)
        return tally(stored, (a for a in queued if a.at >= start))

    async def flush(self) -> None:
        """Wait until every attempt recorded before the call is committed."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with self._cond:
            if not self._queue:
                return
            waiter = (self._seq, fut)
            self._waiters.append(waiter)
            self._kick = True
            self._cond.notify_all()
        try:
            await fut
        finally:
            with self._cond:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    async def close(self) -> None:
        """Refuse new attempts, flush, stop the writer and close its connection. Idempotent."""
        self._closing = True
        if self._thread is None:
            return
        await self.flush()
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        await asyncio.to_thread(self._thread.join)

    async def _read(
        self, query: Callable[[sqlite3.Connection], T], kind: type[R]
    ) -> tuple[T, list[R]]:
        """What `query` finds in the file, and the queued records of `kind` not yet in it."""
        if self._thread is None and not self._closing:
            raise RuntimeError("SQLiteLedger is not open: await ledger.open() first")
        return await asyncio.to_thread(self._snapshot, query, kind)

    def _snapshot(
        self, query: Callable[[sqlite3.Connection], T], kind: type[R]
    ) -> tuple[T, list[R]]:
        conn = ledger_sql.connect(self._path)
        try:
            with self._commit_lock:
                conn.execute("BEGIN")
                conn.execute("SELECT 1 FROM attempts LIMIT 1").fetchall()
                with self._cond:
                    queued = [item for _, item in self._queue if isinstance(item, kind)]
            result = query(conn)
            conn.execute("COMMIT")
        finally:
            conn.close()
        return result, queued

    def _run(self, opened: Callable[[Exception | None], None]) -> None:
        try:
            ledger_sql.create_private(self._path)
            conn = ledger_sql.connect(self._path)
        except Exception as exc:
            opened(exc)
            return
        try:
            ledger_sql.prepare(conn)
            interrupted = ledger_sql.mark_interrupted(conn)
        except Exception as exc:
            conn.close()
            opened(exc)
            return
        if interrupted:
            logger.warning(
                "usage ledger: %d attempts were in progress when ai-api last stopped without"
                " ending them: marked interrupted",
                interrupted,
            )
        opened(None)
        try:
            self._drain(conn)
        finally:
            conn.close()

    def _drain(self, conn: sqlite3.Connection) -> None:
        failures = 0
        while (batch := self._next_batch()) is not None:
            try:
                self._write(conn, batch)
            except Exception as exc:
                _rollback(conn)
                failures += 1
                delay = min(_FIRST_BACKOFF * 2 ** (failures - 1), _MAX_BACKOFF)
                logger.warning(
                    "usage ledger write failed (%s: %s); %d attempts stay queued, retry in %.1fs",
                    type(exc).__name__,
                    exc,
                    len(self._queue),
                    delay,
                )
                self._pause(delay)
            else:
                if failures:
                    logger.warning("usage ledger writes resumed after %d failures", failures)
                    failures = 0

    def _next_batch(self) -> list[tuple[int, Record]] | None:
        with self._cond:
            while not self._queue:
                if self._stopping:
                    return None
                self._cond.wait()
            # The interval counts from the oldest attempt's recording, not from now: one that
            # came during the last write has waited for it already.
            self._cond.wait_for(
                lambda: len(self._queue) >= self._batch or bool(self._waiters) or self._stopping,
                timeout=max(0.0, self._since + self._interval - time.monotonic()),
            )
            if len(self._queue) <= self._batch:  # all taken: what comes next is newer
                self._since = time.monotonic()
            return list(itertools.islice(self._queue, self._batch))

    def _pause(self, delay: float) -> None:
        """Back off after a failure; a flush() arriving meanwhile asks for a retry at once."""
        with self._cond:
            self._kick = False
            self._cond.wait_for(lambda: self._kick, timeout=delay)

    def _write(self, conn: sqlite3.Connection, batch: list[tuple[int, Record]]) -> None:
        # An attempt that began and ended within one batch is written once, as it ended.
        last: dict[object, Attempt] = {}
        requests: list[tuple[object, ...]] = []
        for seq, item in batch:
            if isinstance(item, Attempt):
                last[item.attempt_id or seq] = item
            else:
                requests.append(ledger_sql.request_row(item))
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            ledger_sql.INSERT, [ledger_sql.to_row(attempt) for attempt in last.values()]
        )
        if requests:
            conn.executemany(ledger_sql.INSERT_REQUEST, requests)
        with self._commit_lock:
            conn.execute("COMMIT")
            self._written(batch[-1][0])

    def _written(self, last: int) -> None:
        with self._cond:
            # Items of the batch may already be gone, evicted from a full queue meanwhile.
            while self._queue and self._queue[0][0] <= last:
                self._queue.popleft()
            self._overflowing = len(self._queue) >= self._capacity
            head = self._queue[0][0] if self._queue else self._seq + 1
            done = [fut for target, fut in self._waiters if target < head]
            self._waiters = [(target, fut) for target, fut in self._waiters if target >= head]
        for fut in done:
            # A closed event loop raises RuntimeError: nobody is waiting there any more.
            with contextlib.suppress(RuntimeError):
                fut.get_loop().call_soon_threadsafe(_settle, fut, None)


def _settle(fut: asyncio.Future[None], exc: Exception | None) -> None:
    if fut.done():
        return
    if exc is None:
        fut.set_result(None)
    else:
        fut.set_exception(exc)


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            logger.debug("usage ledger rollback failed", exc_info=True)
