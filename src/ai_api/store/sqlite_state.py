"""Shared state in a SQLite file: turns, budgets and health for the worker processes of one host.

Every decision is one transaction on the file (WAL), so the workers of `ai-api serve --workers N`
share round-robin turns, budgets, cooldowns and circuits and never overspend a budget together.
Spending is kept in `limits.BUCKETS` buckets a window; a provider's reading is kept with what was
spent after it. The tables have a `state_` prefix and their own version, so they can share a
file with the usage ledger.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Self, TypeVar

import msgspec

from ..cooldowns import CIRCUIT, CircuitPolicy, CooldownBook, Health
from ..limits import BUCKETS, DAY, Budget, Cost, Exhaustion, Kind, Limit, Window
from ..ratelimits import RateReading
from . import ledger_sql
from .state import End, Hold, Snapshot, WindowState
from .state_sql import (
    _BUCKETS,
    _CHARGE,
    _CONFIGURED,
    _COOL,
    _CREATE,
    _EXHAUST,
    _EXPIRE,
    _HEALTH,
    _NAMED,
    _OBSERVE,
    _PROBE,
    _RELEASE,
    _SETTLE,
    _SPENT_AFTER,
    _STORE_HEALTH,
    _SUCCEEDED,
    _TURN,
    _USED,
    _WINDOWS,
)

T = TypeVar("T")
_Job = tuple[Callable[[sqlite3.Connection], Any], "asyncio.Future[Any]"]
_Charges = list[tuple[Kind, float, float, float]]  # (kind, period, time, amount)

SCHEMA_VERSION = 1


class _Stored(NamedTuple):
    kind: Kind
    period: float
    learned: int
    limit: int | None
    seen_remaining: int | None
    seen_at: float | None
    seen_until: float | None
    spent_after: int


@dataclass(slots=True)
class _Charge:
    """A hold's record: when it charged, the bucket of each token window, the tokens there now."""

    at: float
    buckets: tuple[tuple[Kind, float, float], ...]
    tokens: int


def _reserve(
    conn: sqlite3.Connection, key: str, specs: Sequence[Limit], cost: Cost, now: float
) -> Hold | float:
    """Charge `cost` to every window of `key` if all can take it, else when they could (to be
    run in a write transaction)."""
    rows, missing = _windows(conn, key, specs)
    conn.executemany(_CONFIGURED, [(key, *at) for at in missing])
    conn.execute(_EXPIRE, (key, now))
    if not _budget(rows, _used(conn, key, now, now)[0]).fits(cost, now):
        return _walk(conn, key, rows).free_at(cost, now)
    starts = [(r.kind, r.period, _bucket(now, r.period)) for r in rows]
    conn.executemany(_CHARGE, [(key, *at, cost.of(at[0])) for at in starts])
    seen = [r for r in rows if r.seen_at is not None]
    conn.executemany(_SPENT_AFTER, [(cost.of(r.kind), key, *r[:2], now) for r in seen])
    tokens = tuple(at for at in starts if at[0] == "tokens")
    return Hold(key, cost.tokens, _Charge(now, tokens, cost.tokens))


def _observe(conn: sqlite3.Connection, key: str, reading: RateReading, now: float) -> None:
    """Take a provider's reading of the windows of `key` (in a write transaction)."""
    rows = []
    for r in reading.windows:
        until = r.reset_at if r.reset_at is not None else now + r.period
        limit = r.limit if r.limit is not None and r.limit > 0 else None
        seen = (r.remaining, now, until) if r.remaining is not None else (None, None, None)
        rows.append((key, r.kind, r.period, limit, *seen))
    conn.executemany(_OBSERVE, rows)


def _exhaust(conn: sqlite3.Connection, key: str, spent: Exhaustion, now: float) -> None:
    """A 429 said windows of `key` ran out (in a write transaction)."""
    kind, period = spent.kind, spent.period
    if kind is not None and period is not None:
        conn.execute(_NAMED, (key, kind, period))
    named = {"key": key, "kind": kind, "period": period, "now": now, "until": spent.until}
    conn.execute(_EXHAUST, named)


def _states(
    conn: sqlite3.Connection, key: str, specs: Sequence[Limit], now: float
) -> tuple[list[WindowState], list[tuple[Kind, float]]]:
    """Every window of `key` now, and which configured ones have no row yet."""
    used, today = _used(conn, key, now, now - now % DAY)
    rows, missing = _windows(conn, key, specs)
    states = [
        _state(w, now, today.get((w.kind, w.period), 0.0) if w.period == DAY else 0.0)
        for w in _budget(rows, used).windows
    ]
    return states, missing


def _settle_charge(conn: sqlite3.Connection, key: str, charge: _Charge, tokens: int) -> None:
    """Replace the tokens `charge` counted by `tokens` (in a write transaction)."""
    delta = tokens - charge.tokens
    conn.executemany(_SETTLE, [(delta, key, *at) for at in charge.buckets])
    after = [(delta, key, k, p, charge.at) for k, p, _ in charge.buckets]
    conn.executemany(_SPENT_AFTER, after)


class SQLiteState:
    """Turns, budgets and health in a SQLite file shared by the processes of one machine.

    ``state = await SQLiteState(path).open()`` creates the file and tables and starts the thread
    that owns the connection and runs the operations in turn; ``await state.close()`` stops it.
    """

    def __init__(self, path: Path, *, policy: CircuitPolicy = CIRCUIT) -> None:
        self._path = path
        self._policy = policy
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closed = False

    async def open(self) -> Self:
        """Create the file, its directory and tables, and start the thread; returns the state."""
        if self._thread is not None or self._closed:
            raise RuntimeError("SQLiteState.open() may be called once")
        conn = await asyncio.to_thread(_connect, self._path)
        self._thread = threading.Thread(
            target=self._serve, args=(conn,), name="ai_api.state", daemon=True
        )
        self._thread.start()
        return self

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._jobs.put(None)
            await asyncio.to_thread(self._thread.join)

    async def turn(self, route: str) -> int:
        return await self._call(lambda conn: int(conn.execute(_TURN, (route,)).fetchall()[0][0]))

    async def begin(
        self, member: str, key: str, specs: Sequence[Limit], cost: Cost, now: float
    ) -> Hold | float:
        def begin(conn: sqlite3.Connection) -> Hold | float:
            book = self._book(conn, member)
            if not book.available(member, now):
                return book.ready_at(member)
            hold = _reserve(conn, key, specs, cost, now)
            health = book.health.get(member)
            if not isinstance(hold, Hold) or health is None or not health.opened:
                return hold
            # An open circuit past its rest: the probe.
            probe = conn.execute(_PROBE, (member, now)).rowcount > 0
            return msgspec.structs.replace(hold, probe=True) if probe else hold

        return await self._transaction(begin, write=True)

    async def observe(self, member: str, key: str, reading: RateReading, now: float) -> None:
        def observe(conn: sqlite3.Connection) -> None:
            _observe(conn, key, reading, now)
            if reading.retry_at is not None:
                conn.execute(_COOL, (member, reading.retry_at))

        if reading.windows or reading.retry_at is not None:
            await self._transaction(observe, write=True)

    async def end(self, member: str, hold: Hold, end: End, now: float) -> float:
        charge = hold.handle

        def run(conn: sqlite3.Connection) -> float:
            if end.reading is not None:
                _observe(conn, hold.key, end.reading, now)
            if end.exhausts is not None:
                _exhaust(conn, hold.key, end.exhausts, now)
            if end.rest_until is not None:
                conn.execute(_COOL, (member, end.rest_until))
            if end.health == "succeeded":
                conn.execute(_SUCCEEDED, (member,))
            elif end.health == "failed":
                self._failed(conn, member, now, end.retry_at)
            else:
                conn.execute(_RELEASE, (member,))
            if isinstance(charge, _Charge) and end.tokens != charge.tokens:
                _settle_charge(conn, hold.key, charge, end.tokens)
            return self._book(conn, member).ready_at(member)

        ready = await self._transaction(run, write=True)
        if isinstance(charge, _Charge):
            charge.tokens = end.tokens
        return ready

    async def snapshot(self, key: str, specs: Sequence[Limit], member: str, now: float) -> Snapshot:
        def read(conn: sqlite3.Connection) -> tuple[Snapshot, list[tuple[Kind, float]]]:
            states, missing = _states(conn, key, specs, now)
            book = self._book(conn, member)
            health = book.health.get(member, Health())
            return Snapshot(states, health, book.ready_at(member)), missing

        snapshot, missing = await self._transaction(read)
        await self._configure(key, missing)  # a write, the first time `key` is read only
        return snapshot

    async def _configure(self, key: str, missing: list[tuple[Kind, float]]) -> None:
        """Give configured windows seen for the first time their row (as `_reserve` does), so
        that a 429 naming no window reaches them, as it does in the other homes."""
        if missing:
            rows = [(key, *at) for at in missing]
            await self._transaction(lambda conn: conn.executemany(_CONFIGURED, rows), write=True)

    def _failed(
        self, conn: sqlite3.Connection, member: str, now: float, retry_at: float | None
    ) -> None:
        """CooldownBook's `failed` on `member` as stored (in a write transaction)."""
        book = self._book(conn, member)
        book.failed(member, now, retry_at)
        h = book.health[member]
        row = (member, h.cooldown_until, h.failures, h.opened, h.open_until, int(h.probing))
        conn.execute(_STORE_HEALTH, row)

    def _book(self, conn: sqlite3.Connection, member: str) -> CooldownBook:
        """A cooldown book holding `member` as stored, so transitions are CooldownBook's own."""
        book = CooldownBook(self._policy)
        for _, until, failures, opened, open_until, probing in conn.execute(_HEALTH, (member,)):
            book.health[member] = Health(until, failures, opened, open_until, bool(probing))
        return book

    async def _transaction(
        self, op: Callable[[sqlite3.Connection], T], *, write: bool = False
    ) -> T:
        """Run `op` in one transaction: BEGIN IMMEDIATE when it writes, so that no other process
        writes between its reads and its writes (`_serve` rolls back a failure)."""

        def run(conn: sqlite3.Connection) -> T:
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            result = op(conn)
            conn.execute("COMMIT")
            return result

        return await self._call(run)

    async def _call(self, op: Callable[[sqlite3.Connection], T]) -> T:
        if self._thread is None or self._closed:
            raise RuntimeError("SQLiteState is not open: await state.open() first")
        done: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._jobs.put((op, done))
        return await done

    def _serve(self, conn: sqlite3.Connection) -> None:
        """The thread that owns the connection: runs the jobs in order, until None."""
        try:
            while (job := self._jobs.get()) is not None:
                op, done = job
                try:
                    result, error = op(conn), None
                except Exception as exc:
                    result, error = None, exc
                    if conn.in_transaction:
                        with contextlib.suppress(sqlite3.Error):  # the thread must live on
                            conn.execute("ROLLBACK")
                # A closed event loop raises RuntimeError: nobody is waiting there any more.
                with contextlib.suppress(RuntimeError):
                    done.get_loop().call_soon_threadsafe(_settle, done, result, error)
        finally:
            conn.close()


def _connect(path: Path) -> sqlite3.Connection:
    """A connection for the state's thread (WAL), with the tables at SCHEMA_VERSION (kept in
    `state_schema`: user_version belongs to whatever else is in the file, like the ledger)."""
    ledger_sql.create_private(path)
    conn = sqlite3.connect(
        path, timeout=ledger_sql.BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
    )
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("CREATE TABLE IF NOT EXISTS state_schema (version INTEGER NOT NULL)")
        version = conn.execute("SELECT max(version) FROM state_schema").fetchone()[0] or 0
        if version > SCHEMA_VERSION:
            raise RuntimeError(f"{path}: shared state version {version} is newer than ai-api's")
        if version == 0:  # migrations from version n to n + 1 will go here
            for statement in _CREATE:
                conn.execute(statement)
            conn.execute("INSERT INTO state_schema VALUES (?)", (SCHEMA_VERSION,))
        conn.execute("COMMIT")
    except BaseException:
        conn.close()  # rolls back
        raise
    return conn


def _windows(
    conn: sqlite3.Connection, key: str, specs: Sequence[Limit]
) -> tuple[list[_Stored], list[tuple[Kind, float]]]:
    """The windows of `key`, the configured ones (`specs`; a limit a provider taught wins) then
    the learned ones; and which configured ones have no row yet."""
    stored = {(row[0], row[1]): _Stored(*row) for row in conn.execute(_WINDOWS, (key,))}
    configured: dict[tuple[Kind, float], int | None] = {}
    for spec in specs:
        configured.setdefault((spec.kind, spec.period), spec.limit)
    rows = []
    for (kind, period), limit in configured.items():
        row = stored.get((kind, period)) or _Stored(kind, period, 0, None, None, None, None, 0)
        rows.append(row if row.limit is not None else row._replace(limit=limit))
    rows += [row for at, row in sorted(stored.items()) if row.learned and at not in configured]
    return rows, [at for at in configured if at not in stored]


def _used(
    conn: sqlite3.Connection, key: str, now: float, day_started: float
) -> tuple[_Charges, dict[tuple[Kind, float], float]]:
    """What each window of `key` counts now, as one charge, and what since `day_started`."""
    rows = conn.execute(_USED, (key, now, day_started)).fetchall()
    today: dict[tuple[Kind, float], float] = {(r[0], r[1]): r[3] for r in rows}
    return [(kind, period, now, used) for kind, period, used, _ in rows], today


def _budget(rows: list[_Stored], charges: _Charges) -> Budget:
    """The windows as `limits.Window`s, so the arithmetic is MemoryState's own."""
    budget = Budget()
    by_window: dict[tuple[Kind, float], Window] = {}
    for r in rows:
        window = by_window[r.kind, r.period] = Window(r.kind, r.period, r.limit)
        if r.seen_remaining is not None and r.seen_until is not None:
            # Net of what was spent after the reading, so as if read after every charge.
            window.observe(None, r.seen_remaining - r.spent_after, r.seen_until, math.inf)
        budget.windows.append(window)
    for kind, period, at, amount in charges:
        if (charged := by_window.get((kind, period))) is not None:
            charged.charge(at, amount)
    return budget


def _walk(conn: sqlite3.Connection, key: str, rows: list[_Stored]) -> Budget:
    """The windows with every bucket, charged at its start (the same buckets as `Window`'s):
    what `free_at` walks."""
    return _budget(rows, conn.execute(_BUCKETS, (key,)).fetchall())


def _state(w: Window, now: float, today: float) -> WindowState:
    return WindowState(w.kind, w.period, w.limit, w.used(now), w.remaining(now), today)


def _bucket(now: float, period: float) -> float:
    span = period / BUCKETS
    return math.floor(now / span) * span


def _settle(done: asyncio.Future[Any], result: object, error: BaseException | None) -> None:
    if done.done():
        return
    if error is None:
        done.set_result(result)
    else:
        done.set_exception(error)
