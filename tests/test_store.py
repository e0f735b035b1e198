"""The usage ledgers: one shared suite for every implementation, then what only SQLite promises."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest
from msgspec.structs import replace

from ai_api.store import (
    Attempt,
    MemoryLedger,
    RequestRecord,
    SQLiteLedger,
    UsageLedger,
    UsageRow,
)
from ai_api.store.ledger import IN_PROGRESS, INTERRUPTED
from ai_api.store.ledger_sql import SCHEMA_VERSION

MIDNIGHT = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def attempt(at: float, **changes: object) -> Attempt:
    base = Attempt(
        at=at,
        request_id=f"req-{at}",
        route="auto",
        provider="groq",
        account="groq:default",
        model="llama-3.1-8b-instant",
        status=200,
        error=None,
        prompt_tokens=10,
        completion_tokens=5,
        estimated=False,
        ttft=0.25,
        duration=1.5,
    )
    return replace(base, **changes)


def request(at: float, **changes: object) -> RequestRecord:
    base = RequestRecord(
        at=at,
        request_id=f"req-{at}",
        method="POST",
        path="/v1/chat/completions",
        api="openai",
        route="auto",
        status=200,
        error=None,
        provider="groq",
        account="groq:default",
        model="llama-3.1-8b-instant",
        attempts=1,
        ttft=0.25,
        duration=1.5,
        prompt_tokens=10,
        completion_tokens=5,
    )
    return replace(base, **changes)


def stored(path: Path, sql: str) -> list[tuple[object, ...]]:
    """Rows read straight from the file, bypassing any ledger."""
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute(sql).fetchall()


@contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold the database's write lock from another connection, as a busy peer would."""
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            conn.execute("COMMIT")


class _Notice(logging.Handler):
    def __init__(self, event: threading.Event) -> None:
        super().__init__(logging.WARNING)
        self.event = event

    def emit(self, record: logging.LogRecord) -> None:
        self.event.set()


@contextmanager
def noticing() -> Iterator[threading.Event]:
    """An event set when the store logs a warning (from whichever thread)."""
    event = threading.Event()
    handler = _Notice(event)
    logging.getLogger("ai_api.store").addHandler(handler)
    try:
        yield event
    finally:
        logging.getLogger("ai_api.store").removeHandler(handler)


@pytest.fixture(params=["memory", "sqlite"])
async def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[UsageLedger]:
    instance: UsageLedger
    if request.param == "memory":
        instance = MemoryLedger()
    else:
        instance = await SQLiteLedger(tmp_path / "usage.db").open()
    yield instance
    await instance.close()


async def open_sqlite(path: Path, **options: float) -> SQLiteLedger:
    return await SQLiteLedger(path, **options).open()  # type: ignore[arg-type]


# Shared suite: every ledger.


async def test_attempts_since_is_oldest_first_and_inclusive(ledger: UsageLedger) -> None:
    for at in (MIDNIGHT + 3, MIDNIGHT + 1, MIDNIGHT + 2, MIDNIGHT - 5):
        ledger.record(attempt(at))
    await ledger.flush()

    assert [a.at for a in await ledger.attempts_since(MIDNIGHT + 1)] == [
        MIDNIGHT + 1,
        MIDNIGHT + 2,
        MIDNIGHT + 3,
    ]
    assert len(await ledger.attempts_since(0)) == 4
    assert await ledger.attempts_since(MIDNIGHT + 4) == []


async def test_attempts_come_back_unchanged(ledger: UsageLedger) -> None:
    original = [
        attempt(MIDNIGHT, cooldown_until=MIDNIGHT + 60.5, status=429, error="rate_limit_exceeded"),
        attempt(MIDNIGHT + 1, status=0, error="upstream_timeout", ttft=None, estimated=True),
    ]
    for a in original:
        ledger.record(a)
    await ledger.flush()

    assert await ledger.attempts_since(MIDNIGHT) == original


async def test_ceilings_come_back_alone(ledger: UsageLedger) -> None:
    taught = attempt(MIDNIGHT + 2, status=429, learned_window="requests|60", learned_limit=4)
    for a in (attempt(MIDNIGHT), taught, attempt(MIDNIGHT + 3)):
        ledger.record(a)
    assert await ledger.ceilings_since(MIDNIGHT) == [taught]  # queued ones too
    await ledger.flush()
    assert await ledger.ceilings_since(MIDNIGHT) == [taught]
    assert await ledger.ceilings_since(MIDNIGHT + 2.5) == []
    assert (await ledger.attempts_since(MIDNIGHT))[1] == taught


@pytest.mark.parametrize("flushed", [False, True], ids=["queued", "stored"])
async def test_an_attempt_begun_then_ended_counts_once(ledger: UsageLedger, flushed: bool) -> None:
    begun = attempt(MIDNIGHT, status=0, error=IN_PROGRESS, attempt_id="r.1", estimated=True)
    ledger.record(begun)
    if flushed:
        await ledger.flush()
    assert await ledger.in_progress_since(MIDNIGHT) == [begun]
    assert await ledger.attempts_since(MIDNIGHT) == []  # not counted until it ends
    assert await ledger.usage("2026-01-01") == []
    ended = attempt(MIDNIGHT, attempt_id="r.1", completion_tokens=9)
    ledger.record(ended)
    if flushed:
        await ledger.flush()
    assert await ledger.in_progress_since(MIDNIGHT) == []
    assert await ledger.attempts_since(MIDNIGHT) == [ended]
    [row] = await ledger.usage("2026-01-01")
    assert (row.requests, row.completion_tokens) == (1, 9)


async def test_usage_totals_per_day_and_member(ledger: UsageLedger) -> None:
    ledger.record(attempt(MIDNIGHT - 86_401))  # 2025-12-30 23:59:59: before since_day
    ledger.record(attempt(MIDNIGHT - 1))
    ledger.record(attempt(MIDNIGHT - 0.0004, status=429, error="rate_limit_exceeded"))
    ledger.record(attempt(MIDNIGHT, estimated=True, prompt_tokens=7))
    ledger.record(attempt(MIDNIGHT + 1, status=0, error="upstream_timeout", completion_tokens=0))
    ledger.record(attempt(MIDNIGHT + 2, model="llama-3.3-70b-versatile"))
    ledger.record(attempt(MIDNIGHT + 3, account="groq:second"))
    ledger.record(attempt(MIDNIGHT + 4, provider="cerebras", account="cerebras:default"))
    await ledger.flush()

    rows = await ledger.usage("2025-12-31")

    groq, small = ("groq", "groq:default"), "llama-3.1-8b-instant"
    assert rows == [
        UsageRow("2025-12-31", *groq, small, 2, 1, 20, 10, 0),
        UsageRow("2026-01-01", "cerebras", "cerebras:default", small, 1, 0, 10, 5, 0),
        UsageRow("2026-01-01", *groq, small, 2, 1, 17, 5, 1),
        UsageRow("2026-01-01", *groq, "llama-3.3-70b-versatile", 1, 0, 10, 5, 0),
        UsageRow("2026-01-01", "groq", "groq:second", small, 1, 0, 10, 5, 0),
    ]
    assert [row.day for row in await ledger.usage("2026-01-01")] == ["2026-01-01"] * 4
    assert await ledger.usage("2026-01-02") == []


async def test_queries_include_attempts_not_yet_flushed(ledger: UsageLedger) -> None:
    ledger.record(attempt(MIDNIGHT))
    await ledger.flush()
    ledger.record(attempt(MIDNIGHT + 1))
    ledger.record(attempt(MIDNIGHT + 2, error="upstream_timeout", status=0))

    assert [a.at for a in await ledger.attempts_since(MIDNIGHT)] == [
        MIDNIGHT,
        MIDNIGHT + 1,
        MIDNIGHT + 2,
    ]
    ledger.record(attempt(MIDNIGHT + 3, error="client_closed", status=499))
    ledger.record(attempt(MIDNIGHT + 4, error="client_closed_request", status=499))  # older name
    [row] = await ledger.usage("2026-01-01")
    assert (row.requests, row.errors, row.client_closed, row.prompt_tokens) == (5, 1, 2, 50)
    await ledger.flush()
    assert await ledger.usage("2026-01-01") == [row]


@pytest.mark.parametrize("flushed", [False, True])
async def test_requests_come_back_the_last_ones_oldest_first(
    ledger: UsageLedger, flushed: bool
) -> None:
    kept = [
        request(MIDNIGHT + 2, status=429, error="rate_limited", attempts=0, provider=None),
        request(MIDNIGHT + 1, attempts=2, ttft=None, account=None, model=None),
        request(MIDNIGHT + 3, api="anthropic", path="/v1/messages"),
        request(MIDNIGHT - 9),
    ]
    for r in kept:
        ledger.record_request(r)
        ledger.record(attempt(r.at))  # attempts and requests share the queue
    if flushed:
        await ledger.flush()
    assert await ledger.requests_since(MIDNIGHT, 10) == [kept[1], kept[0], kept[2]]
    assert await ledger.requests_since(0, 2) == [kept[0], kept[2]]
    assert await ledger.requests_since(0, 0) == []
    assert len(await ledger.attempts_since(0)) == 4


@pytest.mark.parametrize("flushed", [False, True])
async def test_hours_total_each_provider_per_utc_hour(ledger: UsageLedger, flushed: bool) -> None:
    ledger.record(attempt(MIDNIGHT + 10))
    ledger.record(attempt(MIDNIGHT + 3599, error="rate_limit_exceeded", completion_tokens=0))
    ledger.record(attempt(MIDNIGHT + 3600, provider="cerebras", prompt_tokens=7))
    ledger.record(attempt(MIDNIGHT + 3700, error="client_closed"))
    ledger.record(attempt(MIDNIGHT + 3800, error=IN_PROGRESS, attempt_id="x"))
    ledger.record(attempt(MIDNIGHT - 1))
    if flushed:
        await ledger.flush()
    rows = await ledger.hours(MIDNIGHT)
    assert [(r.hour - MIDNIGHT, r.provider, r.requests, r.errors) for r in rows] == [
        (0, "groq", 2, 1),
        (3600, "cerebras", 1, 0),
        (3600, "groq", 1, 0),
    ]
    assert (rows[0].prompt_tokens, rows[0].completion_tokens) == (20, 5)
    assert rows[1].prompt_tokens == 7


async def test_usage_rejects_a_malformed_day(ledger: UsageLedger) -> None:
    with pytest.raises(ValueError, match="does not match format"):
        await ledger.usage("01/01/2026")


async def test_close_is_idempotent_and_recording_after_it_fails(ledger: UsageLedger) -> None:
    ledger.record(attempt(MIDNIGHT))
    await ledger.close()
    await ledger.close()

    with pytest.raises(RuntimeError, match="closed"):
        ledger.record(attempt(MIDNIGHT + 1))
    assert len(await ledger.attempts_since(0)) == 1


# SQLite only.


async def test_opening_creates_directory_schema_and_wal(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "usage.db"
    ledger = await open_sqlite(path)
    try:
        assert stored(path, "PRAGMA journal_mode") == [("wal",)]
        assert stored(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
        assert ("attempts_at",) in stored(path, "SELECT name FROM sqlite_master")
        ledger.record(attempt(MIDNIGHT))
        await ledger.flush()
        # What was asked of which provider when is the owner's alone, WAL files included.
        for made in (path, path.with_name("usage.db-wal"), path.with_name("usage.db-shm")):
            assert made.stat().st_mode & 0o777 == 0o600, made
    finally:
        await ledger.close()


async def test_everything_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "usage.db"
    first = await open_sqlite(path)
    recorded = [attempt(MIDNIGHT + i, cooldown_until=MIDNIGHT + 30) for i in range(300)]
    for a in recorded:
        first.record(a)
    await first.close()  # no flush: close alone must keep everything

    second = await open_sqlite(path)
    try:
        assert await second.attempts_since(0) == recorded
        [row] = await second.usage("2026-01-01")
        assert row.requests == 300
    finally:
        await second.close()


async def test_a_version_1_file_is_migrated_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "usage.db"
    with closing(sqlite3.connect(path)) as conn:  # the schema as version 1 made it
        conn.execute(
            """CREATE TABLE attempts (id INTEGER PRIMARY KEY, at REAL NOT NULL,
            request_id TEXT NOT NULL, route TEXT NOT NULL, provider TEXT NOT NULL,
            account TEXT NOT NULL, model TEXT NOT NULL, status INTEGER NOT NULL, error TEXT,
            prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
            estimated INTEGER NOT NULL, ttft REAL, duration REAL NOT NULL, cooldown_until REAL)"""
        )
        conn.execute(
            "INSERT INTO attempts VALUES (1, ?, 'r', 'auto', 'groq', 'groq:default',"
            " 'llama-3.1-8b-instant', 200, NULL, 10, 5, 0, 0.25, 1.5, NULL)",
            (MIDNIGHT,),
        )
        conn.execute("PRAGMA user_version = 1")
        conn.commit()
    ledger = await open_sqlite(path)
    try:
        assert await ledger.attempts_since(0) == [attempt(MIDNIGHT, request_id="r")]
        taught = attempt(MIDNIGHT + 1, learned_window="tokens|60", learned_limit=900)
        ledger.record(taught)
        await ledger.flush()
        assert await ledger.ceilings_since(0) == [taught]
        ledger.record_request(request(MIDNIGHT + 2))
        await ledger.flush()
        assert await ledger.requests_since(0, 5) == [request(MIDNIGHT + 2)]
    finally:
        await ledger.close()
    assert stored(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]


async def test_attempts_left_in_progress_are_interrupted_at_the_next_start(
    tmp_path: Path,
) -> None:
    path = tmp_path / "usage.db"
    first = await open_sqlite(path)
    begun = [
        attempt(MIDNIGHT + i, status=0, error=IN_PROGRESS, attempt_id=f"r.{i}", estimated=True)
        for i in range(3)
    ]
    for a in begun:
        first.record(a)
    first.record(attempt(MIDNIGHT + 2, attempt_id="r.2"))  # this one ended
    await first.close()  # as a process killed mid-answer leaves them (its records written)

    second = await open_sqlite(path)
    try:
        assert await second.in_progress_since(0) == []
        found = await second.attempts_since(0)
        assert [(a.attempt_id, a.error) for a in found] == [
            ("r.0", INTERRUPTED),
            ("r.1", INTERRUPTED),
            ("r.2", None),
        ]
        [row] = await second.usage("2026-01-01")
        assert (row.requests, row.errors) == (3, 2)
    finally:
        await second.close()


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "usage.db"
    with closing(sqlite3.connect(path)) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")

    ledger = SQLiteLedger(path)
    with pytest.raises(RuntimeError, match="newer"):
        await ledger.open()
    with pytest.raises(RuntimeError, match="not open"):
        ledger.record(attempt(MIDNIGHT))
    await ledger.close()


async def test_recording_before_open_fails(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="open"):
        SQLiteLedger(tmp_path / "usage.db").record(attempt(MIDNIGHT))


async def test_two_instances_write_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "usage.db"
    one, two = await open_sqlite(path, batch=16), await open_sqlite(path, batch=16)
    try:
        for i in range(500):
            one.record(attempt(MIDNIGHT + i, request_id=f"one-{i}"))
            two.record(attempt(MIDNIGHT + i, request_id=f"two-{i}"))
            if i % 50 == 0:
                await asyncio.sleep(0)
        await asyncio.gather(one.flush(), two.flush())

        ids = {a.request_id for a in await one.attempts_since(0)}
        assert ids == {f"{who}-{i}" for who in ("one", "two") for i in range(500)}
        assert stored(path, "SELECT count(*) FROM attempts") == [(1000,)]
    finally:
        await asyncio.gather(one.close(), two.close())


async def test_record_never_waits_for_a_locked_file(tmp_path: Path) -> None:
    path = tmp_path / "usage.db"
    ledger = await open_sqlite(path)
    try:
        with exclusive_lock(path):
            started = time.perf_counter()
            for i in range(1000):
                ledger.record(attempt(MIDNIGHT + i))
            # Waiting on the lock would take the 5 s busy timeout at least once; a full garbage
            # collection of the test process's heap takes ~0.12 s on a slow machine.
            assert time.perf_counter() - started < 1.0

            flushed = asyncio.create_task(ledger.flush())
            await asyncio.sleep(0.3)
            assert not flushed.done()
            assert len(await ledger.attempts_since(0)) == 1000  # readers get through WAL
        await asyncio.wait_for(flushed, timeout=5)
        assert stored(path, "SELECT count(*) FROM attempts") == [(1000,)]
    finally:
        await ledger.close()


async def test_failed_writes_are_retried_and_logged_without_data(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "usage.db"
    ledger = await open_sqlite(path, interval=0.0)
    with closing(sqlite3.connect(path, isolation_level=None)) as peer:
        peer.execute(
            "CREATE TRIGGER full BEFORE INSERT ON attempts"
            " BEGIN SELECT RAISE(ABORT, 'disk full'); END"
        )
        try:
            with caplog.at_level(logging.WARNING, logger="ai_api.store"), noticing() as warned:
                ledger.record(attempt(MIDNIGHT, request_id="secret-request"))
                flushed = asyncio.create_task(ledger.flush())
                assert await asyncio.to_thread(warned.wait, 5)
                assert not flushed.done()
                assert len(await ledger.attempts_since(0)) == 1
        finally:
            peer.execute("DROP TRIGGER full")
        await ledger.flush()
        await asyncio.wait_for(flushed, timeout=5)
    await ledger.close()

    assert stored(path, "SELECT request_id FROM attempts") == [("secret-request",)]
    assert "disk full" in caplog.records[0].getMessage()
    assert all("secret" not in record.getMessage() for record in caplog.records)


async def test_a_full_queue_drops_the_oldest_and_counts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "usage.db"
    ledger = await open_sqlite(path, capacity=10)
    try:
        with exclusive_lock(path), caplog.at_level(logging.ERROR, logger="ai_api.store"):
            for i in range(15):
                ledger.record(attempt(MIDNIGHT + i))
        await ledger.flush()
    finally:
        await ledger.close()

    assert ledger.dropped == 5
    assert len(caplog.records) == 1
    assert "full" in caplog.records[0].getMessage()
    kept = {row[0] for row in stored(path, "SELECT at FROM attempts")}
    assert kept >= {MIDNIGHT + i for i in range(5, 15)}


async def test_reads_never_double_count_while_the_writer_commits(tmp_path: Path) -> None:
    ledger = await open_sqlite(tmp_path / "usage.db", batch=3, interval=0.0)
    try:
        for i in range(400):
            ledger.record(attempt(MIDNIGHT + i))
            if i % 2 == 0:
                assert len(await ledger.attempts_since(0)) == i + 1
                [row] = await ledger.usage("2026-01-01")
                assert row.requests == i + 1
    finally:
        await ledger.close()


def test_both_ledgers_satisfy_the_protocol(tmp_path: Path) -> None:
    ledgers: list[UsageLedger] = [MemoryLedger(), SQLiteLedger(tmp_path / "usage.db")]
    assert len(ledgers) == 2


async def test_an_attempt_recorded_during_a_write_waits_no_more_than_the_interval(
    tmp_path: Path,
) -> None:
    # The interval counts from an attempt's recording: one recorded while a write is held up
    # has waited already, and is written right after it (not a whole interval later).
    path = tmp_path / "usage.db"
    ledger = await SQLiteLedger(path, interval=1.0).open()
    try:
        with exclusive_lock(path):
            ledger.record(attempt(MIDNIGHT))  # taken at 1 s; its write waits for the lock
            await asyncio.sleep(1.2)
            ledger.record(attempt(MIDNIGHT + 1))  # recorded during that write
            await asyncio.sleep(1.8)  # past its own interval
        for _ in range(50):  # 0.5 s: the old wait was the whole interval after the first write
            if stored(path, "SELECT count(*) FROM attempts") == [(2,)]:
                break
            await asyncio.sleep(0.01)
        assert stored(path, "SELECT count(*) FROM attempts") == [(2,)]
    finally:
        await ledger.close()
