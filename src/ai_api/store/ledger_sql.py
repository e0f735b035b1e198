"""The SQL of the usage ledger's file: connections, schema and migrations, rows."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from .ledger import (
    CLIENT_CLOSED,
    IN_PROGRESS,
    INTERRUPTED,
    Attempt,
    CacheTotals,
    HourRow,
    RequestRecord,
    UsageRow,
)

SCHEMA_VERSION = 4
BUSY_TIMEOUT = 5.0

_CREATE = (
    """CREATE TABLE IF NOT EXISTS attempts (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        request_id TEXT NOT NULL,
        route TEXT NOT NULL,
        provider TEXT NOT NULL,
        account TEXT NOT NULL,
        model TEXT NOT NULL,
        status INTEGER NOT NULL,
        error TEXT,
        prompt_tokens INTEGER NOT NULL,
        completion_tokens INTEGER NOT NULL,
        estimated INTEGER NOT NULL,
        ttft REAL,
        duration REAL NOT NULL,
        cooldown_until REAL
    )""",
    "CREATE INDEX IF NOT EXISTS attempts_at ON attempts (at)",
)


def _ceilings(conn: sqlite3.Connection) -> None:
    """Version 2: the ceilings that 429s taught (for windows no header describes), and the
    upstream each attempt went to."""
    conn.execute("ALTER TABLE attempts ADD COLUMN learned_window TEXT")
    conn.execute("ALTER TABLE attempts ADD COLUMN learned_limit INTEGER")
    conn.execute("ALTER TABLE attempts ADD COLUMN origin TEXT")
    conn.execute("ALTER TABLE attempts ADD COLUMN attempt_id TEXT")
    conn.execute(
        "CREATE UNIQUE INDEX attempts_id ON attempts (attempt_id) WHERE attempt_id IS NOT NULL"
    )
    conn.execute("CREATE INDEX attempts_learned ON attempts (at) WHERE learned_limit IS NOT NULL")


def _requests(conn: sqlite3.Connection) -> None:
    """Version 3: one row per client request to a model API, as it ended (what the dashboard's
    feed and chart read: every worker writes here)."""
    conn.execute(
        """CREATE TABLE requests (
            id INTEGER PRIMARY KEY,
            at REAL NOT NULL,
            request_id TEXT,
            method TEXT NOT NULL,
            path TEXT NOT NULL,
            api TEXT NOT NULL,
            route TEXT,
            status INTEGER NOT NULL,
            error TEXT,
            provider TEXT,
            account TEXT,
            model TEXT,
            attempts INTEGER NOT NULL,
            ttft REAL,
            duration REAL NOT NULL,
            prompt_tokens INTEGER NOT NULL,
            completion_tokens INTEGER NOT NULL
        )"""
    )
    conn.execute("CREATE INDEX requests_at ON requests (at)")


def _keys(conn: sqlite3.Connection) -> None:
    """Version 4: the key of a provider with several (a pool) an attempt and a request used,
    and what the answer cache did for a request."""
    conn.execute("ALTER TABLE attempts ADD COLUMN key TEXT")
    conn.execute("ALTER TABLE requests ADD COLUMN key TEXT")
    conn.execute("ALTER TABLE requests ADD COLUMN cache TEXT")


# MIGRATIONS[n] brings a file from schema version n to n + 1 (a new file is made at version 1
# and brought up to date the same way).
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {
    1: _ceilings,
    2: _requests,
    3: _keys,
}

_COLUMNS = (
    "at, request_id, route, provider, account, model, status, error, "
    "prompt_tokens, completion_tokens, estimated, ttft, duration, cooldown_until, "
    "learned_window, learned_limit, origin, attempt_id, key"
)
# An attempt's record when it ends replaces the one made when it began.
INSERT = f"""INSERT INTO attempts ({_COLUMNS}) VALUES ({", ".join("?" * 19)})
    ON CONFLICT (attempt_id) WHERE attempt_id IS NOT NULL DO UPDATE SET
    {", ".join(f"{c.strip()} = excluded.{c.strip()}" for c in _COLUMNS.split(","))}"""
_REQUEST_COLUMNS = (
    "at, request_id, method, path, api, route, status, error, provider, account, model, "
    "attempts, ttft, duration, prompt_tokens, completion_tokens, key, cache"
)
INSERT_REQUEST = f"INSERT INTO requests ({_REQUEST_COLUMNS}) VALUES ({', '.join('?' * 18)})"
_REQUESTS_SINCE = f"""SELECT {_REQUEST_COLUMNS} FROM requests
    WHERE at >= ? ORDER BY at DESC, id DESC LIMIT ?"""
_CACHE_SINCE = """SELECT count(CASE WHEN cache = 'hit' THEN 1 END),
    count(CASE WHEN cache = 'miss' THEN 1 END),
    coalesce(sum(CASE WHEN cache = 'hit' THEN prompt_tokens END), 0),
    coalesce(sum(CASE WHEN cache = 'hit' THEN completion_tokens END), 0)
    FROM requests WHERE at >= ?"""
_NOT_IN_PROGRESS = f"error IS NOT '{IN_PROGRESS}'"
_SELECT_SINCE = (
    f"SELECT {_COLUMNS} FROM attempts WHERE at >= ? AND {_NOT_IN_PROGRESS} ORDER BY at, id"
)
_IN_PROGRESS_SINCE = f"SELECT {_COLUMNS} FROM attempts WHERE at >= ? AND error = '{IN_PROGRESS}'"
_INTERRUPTED = f"UPDATE attempts SET error = '{INTERRUPTED}' WHERE error = '{IN_PROGRESS}'"
_CEILINGS_SINCE = f"""SELECT {_COLUMNS} FROM attempts
    WHERE learned_limit IS NOT NULL AND at >= ? ORDER BY at, id"""
_CLOSED = (
    "count(CASE WHEN error IN (" + ", ".join(f"'{c}'" for c in CLIENT_CLOSED) + ") THEN 1 END)"
)
# Whole seconds, because date(at, 'unixepoch') rounds to the millisecond and could put an
# attempt a hair before midnight on the next day, unlike ledger.day_of.
_USAGE_SINCE = f"""
    SELECT date(CAST(at AS INTEGER), 'unixepoch') AS day, provider, account, model,
           count(*), count(error) - {_CLOSED}, sum(prompt_tokens), sum(completion_tokens),
           sum(estimated), {_CLOSED}, coalesce(key, '') AS label
    FROM attempts WHERE at >= ? AND {_NOT_IN_PROGRESS}
    GROUP BY day, provider, account, model, label
"""
_HOURS_SINCE = f"""
    SELECT CAST(at AS INTEGER) / 3600 * 3600 AS hour, provider, count(*),
           count(error) - {_CLOSED}, sum(prompt_tokens), sum(completion_tokens)
    FROM attempts WHERE at >= ? AND {_NOT_IN_PROGRESS}
    GROUP BY hour, provider
"""


def create_private(path: Path) -> None:
    """Make `path` (and its folders) if missing, readable by its owner only: a ledger or state
    file tells what was asked of which provider when (SQLite makes its -wal and -shm files with
    the same permissions)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))


def connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit) that waits out locks."""
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
    return conn


def prepare(conn: sqlite3.Connection) -> None:
    """Turn on WAL, then create the schema or migrate it to SCHEMA_VERSION."""
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"usage ledger schema version {version} is newer than this ai-api's "
                f"({SCHEMA_VERSION}); upgrade ai-api or use another file"
            )
        if version == 0:
            for statement in _CREATE:
                conn.execute(statement)
        for step in range(max(version, 1), SCHEMA_VERSION):
            MIGRATIONS[step](conn)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def to_row(a: Attempt) -> tuple[object, ...]:
    """The INSERT parameters for an attempt."""
    return (
        a.at,
        a.request_id,
        a.route,
        a.provider,
        a.account,
        a.model,
        a.status,
        a.error,
        a.prompt_tokens,
        a.completion_tokens,
        int(a.estimated),
        a.ttft,
        a.duration,
        a.cooldown_until,
        a.learned_window,
        a.learned_limit,
        a.origin,
        a.attempt_id,
        a.key,
    )


def request_row(r: RequestRecord) -> tuple[object, ...]:
    """The INSERT_REQUEST parameters for a request's record."""
    return msgspec.structs.astuple(r)


def requests_since(conn: sqlite3.Connection, since: float, limit: int) -> list[RequestRecord]:
    """The last `limit` stored requests with at >= since, oldest first."""
    rows = conn.execute(_REQUESTS_SINCE, (since, limit)).fetchall()
    return [RequestRecord(*row) for row in reversed(rows)]


def cache_since(conn: sqlite3.Connection, since: float) -> CacheTotals:
    """What the answer cache did for the stored requests with at >= since."""
    row = conn.execute(_CACHE_SINCE, (since,)).fetchone()
    return CacheTotals(*row)


def attempts_since(conn: sqlite3.Connection, since: float) -> list[Attempt]:
    """Stored attempts with at >= since, oldest first."""
    return _attempts(conn.execute(_SELECT_SINCE, (since,)).fetchall())


def in_progress_since(conn: sqlite3.Connection, since: float) -> list[Attempt]:
    """Stored attempts with at >= since recorded as begun and not ended."""
    return _attempts(conn.execute(_IN_PROGRESS_SINCE, (since,)).fetchall())


def mark_interrupted(conn: sqlite3.Connection) -> int:
    """Attempts left in progress by a process that died are interrupted (at start)."""
    return conn.execute(_INTERRUPTED).rowcount


def ceilings_since(conn: sqlite3.Connection, since: float) -> list[Attempt]:
    """Stored attempts with at >= since that taught a ceiling, oldest first."""
    return _attempts(conn.execute(_CEILINGS_SINCE, (since,)).fetchall())


def _attempts(rows: list[tuple[Any, ...]]) -> list[Attempt]:
    return [
        Attempt(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], bool(r[10]), *r[11:])
        for r in rows
    ]


def hours_since(conn: sqlite3.Connection, since: float) -> list[HourRow]:
    """Stored hourly totals per provider of attempts with at >= since (unordered; the
    `attempts_at` index finds them)."""
    return [HourRow(*row) for row in conn.execute(_HOURS_SINCE, (since,))]


def usage_since(conn: sqlite3.Connection, since: float) -> list[UsageRow]:
    """Stored per-day totals of attempts with at >= since (unordered)."""
    return [UsageRow(*row) for row in conn.execute(_USAGE_SINCE, (since,))]
