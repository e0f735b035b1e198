"""A usage ledger kept in a list: for tests, and for running without a database file."""

from __future__ import annotations

from collections import deque

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

REQUESTS_KEPT = 10_000
"""How many requests' records a memory ledger keeps (a day of attempts stays whole)."""


class MemoryLedger:
    """A usage ledger in memory; lost on exit, but it behaves like the durable ones."""

    def __init__(self) -> None:
        self._attempts: list[Attempt] = []
        self._at: dict[str, int] = {}  # attempt_id -> its place in `_attempts`
        self._requests: deque[RequestRecord] = deque(maxlen=REQUESTS_KEPT)
        self._closed = False

    def record(self, attempt: Attempt) -> None:
        """Keep an attempt; RuntimeError once the ledger is closed."""
        if self._closed:
            raise RuntimeError("MemoryLedger is closed: cannot record more attempts")
        place = None if attempt.attempt_id is None else self._at.get(attempt.attempt_id)
        if place is not None:  # its end replaces its beginning
            self._attempts[place] = attempt
            return
        if attempt.attempt_id is not None:
            self._at[attempt.attempt_id] = len(self._attempts)
        self._attempts.append(attempt)

    @property
    def queued(self) -> int:
        """Nothing waits: everything is kept at once."""
        return 0

    def record_request(self, request: RequestRecord) -> None:
        """Keep a request's record (the last REQUESTS_KEPT); RuntimeError once closed."""
        if self._closed:
            raise RuntimeError("MemoryLedger is closed: cannot record more requests")
        self._requests.append(request)

    async def requests_since(self, since: float, limit: int) -> list[RequestRecord]:
        """The last `limit` requests with at >= since, oldest first."""
        found = [r for r in self._requests if r.at >= since]
        found.sort(key=lambda r: r.at)
        return found[-limit:] if limit > 0 else []

    async def cache_since(self, since: float) -> CacheTotals:
        """What the answer cache did for the requests kept with at >= since."""
        return tally_cache(CacheTotals(), (r for r in self._requests if r.at >= since))

    async def attempts_since(self, since: float) -> list[Attempt]:
        """Every attempt with at >= since, oldest first (not those in progress)."""
        found = (a for a in self._attempts if a.at >= since and not a.in_progress)
        return sorted(found, key=lambda a: a.at)

    async def in_progress_since(self, since: float) -> list[Attempt]:
        """The attempts with at >= since that began and have not ended."""
        return sorted(
            (a for a in self._attempts if a.at >= since and a.in_progress), key=lambda a: a.at
        )

    async def ceilings_since(self, since: float) -> list[Attempt]:
        """The attempts with at >= since that taught a ceiling, oldest first."""
        taught = (a for a in self._attempts if a.at >= since and a.learned_limit is not None)
        return sorted(taught, key=lambda a: a.at)

    async def hours(self, since: float) -> list[HourRow]:
        """Hourly totals per provider of the attempts with at >= since."""
        return tally_hours((), (a for a in self._attempts if a.at >= since))

    async def usage(self, since_day: str) -> list[UsageRow]:
        """Per-day totals from since_day (inclusive), ordered by day, provider, account, model."""
        start = day_start(since_day)
        return tally((), (a for a in self._attempts if a.at >= start))

    async def flush(self) -> None:
        """Nothing to write."""

    async def close(self) -> None:
        """Refuse further attempts; what was recorded stays queryable. Idempotent."""
        self._closed = True
