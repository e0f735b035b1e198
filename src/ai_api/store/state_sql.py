"""The SQL of `SQLiteState`: its tables and every statement, in one place."""

from __future__ import annotations

from ..limits import BUCKETS

# A bucket leaves its window once all of it has: at most a bucket late, never early, so a
# budget is never overspent.
_ENDS = f"start + period / {BUCKETS}"  # when a bucket's last charge leaves its window

_CREATE = (
    "CREATE TABLE state_turns (route TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID",
    """CREATE TABLE state_windows (
        key TEXT NOT NULL, kind TEXT NOT NULL, period REAL NOT NULL,
        learned INTEGER NOT NULL DEFAULT 0, learned_limit INTEGER,
        seen_remaining INTEGER, seen_at REAL, seen_until REAL,
        spent_after INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (key, kind, period)) WITHOUT ROWID""",
    """CREATE TABLE state_spend (
        key TEXT NOT NULL, kind TEXT NOT NULL, period REAL NOT NULL, start REAL NOT NULL,
        amount INTEGER NOT NULL, PRIMARY KEY (key, kind, period, start)) WITHOUT ROWID""",
    """CREATE TABLE state_health (
        member TEXT PRIMARY KEY, cooldown_until REAL NOT NULL, failures INTEGER NOT NULL,
        opened INTEGER NOT NULL, open_until REAL NOT NULL, probing INTEGER NOT NULL
    ) WITHOUT ROWID""",
)

_TURN = """INSERT INTO state_turns VALUES (?, 1)
    ON CONFLICT (route) DO UPDATE SET n = n + 1 RETURNING n - 1"""
_WINDOWS = """SELECT kind, period, learned, learned_limit, seen_remaining, seen_at, seen_until,
    spent_after FROM state_windows WHERE key = ?"""
# A configured window has a row too (learned = 0), so that a 429 naming no window reaches it.
_CONFIGURED = """INSERT INTO state_windows (key, kind, period) VALUES (?, ?, ?)
    ON CONFLICT (key, kind, period) DO NOTHING"""
_USED = f"""SELECT kind, period, total(amount), total(amount) FILTER (WHERE start >= ?3)
    FROM state_spend WHERE key = ?1 AND {_ENDS} > ?2 - period GROUP BY kind, period"""
_BUCKETS = """SELECT kind, period, start, amount FROM state_spend WHERE key = ?
    ORDER BY start"""
_EXPIRE = f"DELETE FROM state_spend WHERE key = ? AND {_ENDS} <= ? - period"
_CHARGE = """INSERT INTO state_spend VALUES (?, ?, ?, ?, ?) ON CONFLICT (key, kind, period, start)
    DO UPDATE SET amount = amount + excluded.amount"""
_SETTLE = """UPDATE state_spend SET amount = amount + ?
    WHERE key = ? AND kind = ? AND period = ? AND start = ?"""
_SPENT_AFTER = """UPDATE state_windows SET spent_after = spent_after + ?
    WHERE key = ? AND kind = ? AND period = ? AND seen_at < ?"""
_OBSERVE = """INSERT INTO state_windows
    (key, kind, period, learned, learned_limit, seen_remaining, seen_at, seen_until)
    VALUES (?, ?, ?, 1, ?, ?, ?, ?) ON CONFLICT (key, kind, period) DO UPDATE SET learned = 1,
    learned_limit = coalesce(excluded.learned_limit, learned_limit),
    seen_remaining = iif(excluded.seen_at IS NULL, seen_remaining, excluded.seen_remaining),
    seen_until = iif(excluded.seen_at IS NULL, seen_until, excluded.seen_until),
    spent_after = iif(excluded.seen_at IS NULL, spent_after, 0),
    seen_at = coalesce(excluded.seen_at, seen_at)"""
_NAMED = """INSERT INTO state_windows (key, kind, period, learned) VALUES (?, ?, ?, 1)
    ON CONFLICT (key, kind, period) DO NOTHING"""
_EXHAUST = """UPDATE state_windows SET seen_remaining = 0, seen_at = :now, seen_until = :until,
    spent_after = 0 WHERE key = :key
    AND (:kind IS NULL OR kind = :kind) AND (:period IS NULL OR period = :period)"""
_HEALTH = "SELECT * FROM state_health WHERE member = ?"
_STORE_HEALTH = "INSERT OR REPLACE INTO state_health VALUES (?, ?, ?, ?, ?, ?)"
# The probe goes to whoever flips `probing` first; the WHERE re-checks what the caller read.
_PROBE = """UPDATE state_health SET probing = 1 WHERE member = ?1 AND opened > 0
    AND open_until <= ?2 AND cooldown_until <= ?2 AND NOT probing"""
_SUCCEEDED = """UPDATE state_health SET failures = 0, opened = 0, probing = 0
    WHERE member = ? AND (failures OR opened OR probing)"""
_RELEASE = "UPDATE state_health SET probing = 0 WHERE member = ? AND probing"
_COOL = """INSERT INTO state_health VALUES (?, max(?, 0.0), 0, 0, 0.0, 0)
    ON CONFLICT (member) DO UPDATE SET cooldown_until = excluded.cooldown_until
    WHERE excluded.cooldown_until > cooldown_until"""
