"""What only the SQLite home promises: it survives restarts, shares a file with the ledger, keeps
spending in buckets, and stays atomic across real processes."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from contextlib import closing
from pathlib import Path

import pytest

import ai_api
from ai_api.limits import DAY, MINUTE, Cost, Limit
from ai_api.ratelimits import RateReading, WindowReading
from ai_api.store import Attempt, SQLiteLedger
from ai_api.store.sqlite_state import SQLiteState
from ai_api.store.state import Hold, MemoryState, SharedState

from . import homes as h

T0 = 1_800_000_000.0 - 1_800_000_000.0 % DAY + 3600  # one hour into a UTC day
RPM = (Limit("requests", MINUTE, 2),)

# A worker process: opens the state, says "ready", waits for a line on stdin, then acts.
CHILD = """
import asyncio, sys
from pathlib import Path
from ai_api.limits import Cost, Limit, MINUTE
from ai_api.store.sqlite_state import SQLiteState
from ai_api.store.state import Hold

async def main(path, action, now):
    state = await SQLiteState(Path(path)).open()
    print("ready", flush=True)
    sys.stdin.readline()
    if action == "reserve":  # 40 tries over 40 ms, so both processes' tries interleave
        specs = (Limit("requests", MINUTE, 50),)

        async def one(delay):
            await asyncio.sleep(delay)
            return await state.begin("-", "k", specs, Cost(tokens=0), now)

        tries = await asyncio.gather(*(one(i / 1000) for i in range(40)))
        print(sum(isinstance(r, Hold) for r in tries), flush=True)
    else:
        begun = await state.begin("m", "-", (), Cost(tokens=0, requests=0), now)
        print(int(isinstance(begun, Hold)), flush=True)
    await state.close()

asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
"""


async def workers(path: Path, action: str, now: float, count: int = 2) -> list[int]:
    """Run `count` worker processes on `path` at once; what each printed."""
    src = os.path.dirname(os.path.dirname(ai_api.__file__))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    pipe = asyncio.subprocess.PIPE
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CHILD,
            str(path),
            action,
            str(now),
            stdin=pipe,
            stdout=pipe,
            env=env,
        )
        for _ in range(count)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert await asyncio.wait_for(proc.stdout.readline(), 30) == b"ready\n"
        for proc in procs:  # start them together
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
        outputs = [await asyncio.wait_for(proc.communicate(), 30) for proc in procs]
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert [proc.returncode for proc in procs] == [0] * count
    return [int(out) for out, _ in outputs]


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute(sql).fetchall()


async def test_two_processes_never_overspend(tmp_path):
    path = tmp_path / "state.sqlite3"
    holds = await workers(path, "reserve", T0)
    assert sum(holds) == 50
    state = await SQLiteState(path).open()
    (window,) = await h.windows(state, "k", (Limit("requests", MINUTE, 50),), T0)
    assert (window.used, window.remaining) == (50, 0)
    await state.close()


async def test_one_process_gets_the_probe(tmp_path):
    path = tmp_path / "state.sqlite3"
    state = await SQLiteState(path).open()
    for _ in range(3):
        await h.failed(state, "m", T0, None)
    assert (await h.health(state, "m")).circuit == "open"
    assert sorted(await workers(path, "claim", T0 + 16)) == [0, 1]
    assert (await h.health(state, "m")).circuit == "half-open"
    await state.close()


async def test_state_survives_close_and_reopen(tmp_path):
    path = tmp_path / "state.sqlite3"
    state = await SQLiteState(path).open()
    assert [await state.turn("r"), await state.turn("r")] == [0, 1]
    assert isinstance(await h.reserve(state, "k", RPM, Cost(tokens=5), T0), Hold)
    reading = RateReading((WindowReading("tokens", MINUTE, 8000, 7000, T0 + 30),), None)
    await state.observe("m", "k", reading, T0)
    await h.cool(state, "m", T0 + 30)
    assert path.stat().st_mode & 0o777 == 0o600  # the owner's alone
    await state.close()
    await state.close()  # idempotent

    again = await SQLiteState(path).open()
    assert await again.turn("r") == 2
    windows = {w.kind: w for w in await h.windows(again, "k", RPM, T0 + 1)}
    assert (windows["requests"].used, windows["requests"].remaining) == (1, 1)
    assert (windows["tokens"].limit, windows["tokens"].remaining) == (8000, 7000)
    assert await h.ready_at(again, "m") == T0 + 30
    await again.close()
    with pytest.raises(RuntimeError, match="not open"):
        await again.turn("r")


async def test_shares_a_file_with_the_usage_ledger(tmp_path):
    path = tmp_path / "ai-api.sqlite3"
    state = await SQLiteState(path).open()
    ledger = await SQLiteLedger(path).open()
    attempt = Attempt(
        T0, "req", "auto", "groq", "groq:default", "m", 200, None, 1, 2, False, None, 1
    )
    ledger.record(attempt)
    await ledger.flush()
    assert await ledger.attempts_since(T0) == [attempt]
    assert await state.turn("r") == 0
    await ledger.close()
    await state.close()
    reopened = await SQLiteState(path).open()
    assert await reopened.turn("r") == 1
    await reopened.close()


async def test_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / "state.sqlite3"
    await (await SQLiteState(path).open()).close()
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("UPDATE state_schema SET version = 99")
    with pytest.raises(RuntimeError, match="newer"):
        await SQLiteState(path).open()


async def test_a_charge_leaves_with_its_bucket_never_early(tmp_path):
    path = tmp_path / "state.sqlite3"
    state = await SQLiteState(path).open()
    specs = (Limit("requests", MINUTE, 1),)
    assert isinstance(await h.reserve(state, "k", specs, Cost(tokens=0), T0 + 0.5), Hold)
    assert await h.reserve(state, "k", specs, Cost(tokens=0), T0 + 60.7) == T0 + 61
    assert isinstance(await h.reserve(state, "k", specs, Cost(tokens=0), T0 + 61), Hold)
    # The first bucket, wholly out of the window, was deleted by that reservation.
    assert rows(path, "SELECT start FROM state_spend") == [(T0 + 61,)]
    await state.close()


async def test_spending_around_a_reading_counts_as_in_memory(tmp_path):
    """A day window has 24-minute buckets, yet what was spent before a reading taken in the
    same bucket is not counted twice, and settling corrects only what came after it."""
    specs = (Limit("tokens", DAY, 10_000),)
    reading = RateReading((WindowReading("tokens", DAY, None, 9000, T0 + 600),), None)
    sqlite_state = await SQLiteState(tmp_path / "state.sqlite3").open()
    seen = []
    for state in (MemoryState(), sqlite_state):
        before = await h.reserve(state, "k", specs, Cost(tokens=1000), T0)
        await state.observe("m", "k", reading, T0 + 10)
        after = await h.reserve(state, "k", specs, Cost(tokens=500), T0 + 20)
        assert isinstance(before, Hold)
        assert isinstance(after, Hold)
        await h.settle(state, after, 200, T0 + 30)
        await h.settle(state, before, 100, T0 + 40)
        seen.append(
            [(w.used, w.remaining, w.today) for w in await h.windows(state, "k", specs, T0 + 50)]
        )
    await sqlite_state.close()
    assert seen[0] == seen[1] == [(300, 8800, 300)]


async def test_the_configuration_of_the_caller_decides(tmp_path):
    """Specs are read at each call, so a restart with new limits takes effect on the old file."""
    state: SharedState = await SQLiteState(tmp_path / "state.sqlite3").open()
    one = (Limit("requests", MINUTE, 1),)
    assert isinstance(await h.reserve(state, "k", one, Cost(tokens=0), T0), Hold)
    assert isinstance(await h.reserve(state, "k", one, Cost(tokens=0), T0 + 1), float)
    five = (Limit("requests", MINUTE, 5),)
    assert isinstance(await h.reserve(state, "k", five, Cost(tokens=0), T0 + 1), Hold)
    assert isinstance(await h.reserve(state, "k", (), Cost(tokens=0), T0 + 1), Hold)
    (window,) = await h.windows(state, "k", five, T0 + 2)
    assert (window.used, window.remaining) == (2, 3)  # the unconfigured call charged nothing
    await state.close()


async def test_a_429_naming_no_window_closes_the_configured_ones(tmp_path):
    state = await SQLiteState(tmp_path / "state.sqlite3").open()
    assert isinstance(await h.reserve(state, "k", RPM, Cost(tokens=1), T0), Hold)
    await h.exhaust(state, "k", None, None, T0 + 30, T0 + 1)
    assert await h.reserve(state, "k", RPM, Cost(tokens=1), T0 + 2) == T0 + 30
    assert isinstance(await h.reserve(state, "k", RPM, Cost(tokens=1), T0 + 30), Hold)
    await state.close()
