"""What the usage ledger records and answers, and the protocol every ledger implements."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import msgspec


class Attempt(msgspec.Struct, frozen=True):
    """One try of one request on one upstream.

    `at` is wall-clock epoch seconds when the attempt started; `status` is the upstream HTTP
    status, 0 when no response came; `error` is the gateway error code, None on success;
    `cooldown_until` is the epoch until which this member must not be used; `learned_window`
    (`requests|60`) and `learned_limit`: a ceiling this attempt's 429 taught for a window no
    header describes; `origin`: a digest of the upstream's base URL (a cooldown is replayed at
    start only for the same upstream); `attempt_id`: the attempt's own name, under which its
    record when it began (`error` IN_PROGRESS) is replaced by the one when it ended.
    """

    at: float
    request_id: str
    route: str
    provider: str
    account: str
    model: str
    status: int
    error: str | None
    prompt_tokens: int
    completion_tokens: int
    estimated: bool
    ttft: float | None
    duration: float
    cooldown_until: float | None = None
    learned_window: str | None = None
    learned_limit: int | None = None
    origin: str | None = None
    attempt_id: str | None = None
    key: str | None = None
    """The label of the key it used when its provider has several (a pool)."""

    @property
    def in_progress(self) -> bool:
        """Whether this records an attempt that had begun and not yet ended."""
        return self.error == IN_PROGRESS


class RequestRecord(msgspec.Struct, frozen=True):
    """What the gateway did with one client request, as it ended (`ai_api.outcomes`).

    `at`: epoch seconds when it began; `api`: which API it spoke (`outcomes.api_of`);
    `route`: the route it was sent to, None before one was chosen; `status`: what the client
    got; `error`: the gateway's error code (also for an answer that failed after its first
    byte, whose status stays 200), None when it was answered whole; `provider`, `account`,
    `model`: the last member tried (the one that answered, when one did); `attempts`: the
    upstream attempts that ended; `ttft`: seconds from `at` to the first token; `prompt_tokens`
    and `completion_tokens`: what its attempts spent.
    """

    at: float
    request_id: str | None
    method: str
    path: str
    api: str
    route: str | None
    status: int
    error: str | None
    provider: str | None
    account: str | None
    model: str | None
    attempts: int
    ttft: float | None
    duration: float
    prompt_tokens: int
    completion_tokens: int
    key: str | None = None
    """The label of the key of the last member tried, when its provider has several."""
    cache: str | None = None
    """What the answer cache did: `hit` (no provider was asked; the tokens are what the
    answer cost when it was kept), `miss` (asked, and kept if it ended well), None: not
    looked at."""


IN_PROGRESS = "in_progress"
"""The `error` of an attempt recorded as it began (it is replaced when it ends); such records
count in no total or query but `in_progress_since`."""
INTERRUPTED = "interrupted"
"""What an attempt still in progress when its process died is marked at the next start."""
SHUTDOWN = "shutdown"
"""The `error` of an attempt still running when the gateway stopped and its drain's grace ran
out: the gateway ended it (status 200 if the upstream had begun answering, else 0)."""

CLIENT_CLOSED = ("client_closed", "client_closed_request")
"""The `error` of an attempt whose client left (the second: its name before 2026-12-02)."""


@dataclass(frozen=True, slots=True)
class UsageRow:
    """Totals for one (day, provider, account, model); `day` is "YYYY-MM-DD" in UTC.

    `requests` counts every recorded attempt, including those that got no response (status 0);
    `errors` counts attempts whose `error` is set, but for a client that left (`client_closed`,
    counted apart: neither the gateway's failure nor the provider's); `estimated_requests` those
    with estimated tokens.
    """

    day: str
    provider: str
    account: str
    model: str
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    estimated_requests: int
    client_closed: int = 0
    key: str = ""
    """The label of the key, for a provider with several ("" otherwise)."""


@dataclass(frozen=True, slots=True)
class HourRow:
    """Totals for one (UTC hour, provider): `hour` is the epoch second it starts at; counted
    as `UsageRow` counts (`errors` leave out clients that left)."""

    hour: int
    provider: str
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True, slots=True)
class CacheTotals:
    """What the answer cache did for the requests recorded since some time: the hits, the
    misses (asked and kept if whole), and the tokens the hits saved (what their answers cost
    when they were kept)."""

    hits: int = 0
    misses: int = 0
    prompt_tokens_saved: int = 0
    completion_tokens_saved: int = 0


def tally_cache(totals: CacheTotals, requests: Iterable[RequestRecord]) -> CacheTotals:
    """`totals` plus what the cache did for `requests`."""
    hits, misses = totals.hits, totals.misses
    prompt, completion = totals.prompt_tokens_saved, totals.completion_tokens_saved
    for r in requests:
        if r.cache == "hit":
            hits += 1
            prompt += r.prompt_tokens
            completion += r.completion_tokens
        elif r.cache == "miss":
            misses += 1
    return CacheTotals(hits, misses, prompt, completion)


def tally_hours(rows: Iterable[HourRow], attempts: Iterable[Attempt]) -> list[HourRow]:
    """Hourly totals already summed plus single attempts (not in progress), by hour then
    provider."""
    sums: dict[tuple[int, str], list[int]] = {}
    for row in rows:
        counts = sums.setdefault((row.hour, row.provider), [0, 0, 0, 0])
        counts[0] += row.requests
        counts[1] += row.errors
        counts[2] += row.prompt_tokens
        counts[3] += row.completion_tokens
    for a in attempts:
        if a.in_progress:
            continue
        counts = sums.setdefault((int(a.at) // 3600 * 3600, a.provider), [0, 0, 0, 0])
        counts[0] += 1
        counts[1] += a.error is not None and a.error not in CLIENT_CLOSED
        counts[2] += a.prompt_tokens
        counts[3] += a.completion_tokens
    return [HourRow(hour, provider, *counts) for (hour, provider), counts in sorted(sums.items())]


class UsageLedger(Protocol):
    """A durable record of upstream attempts."""

    def record(self, attempt: Attempt) -> None:
        """Queue an attempt; never blocks, never raises on I/O (errors are logged and retried)."""

    def record_request(self, request: RequestRecord) -> None:
        """Queue a request's record, as `record` does an attempt's."""

    @property
    def queued(self) -> int:
        """How many records wait to be written."""

    async def requests_since(self, since: float, limit: int) -> list[RequestRecord]:
        """The last `limit` requests with at >= since, oldest first (queued ones too)."""

    async def attempts_since(self, since: float) -> list[Attempt]:
        """Every attempt with at >= since, oldest first, including ones still queued (not those
        in progress: an attempt counts once it has ended, or was interrupted)."""

    async def usage(self, since_day: str) -> list[UsageRow]:
        """Per-day totals from since_day (inclusive), ordered by day, provider, account, model.

        Includes queued attempts.
        """

    async def cache_since(self, since: float) -> CacheTotals:
        """What the answer cache did for the requests with at >= since (queued too)."""

    async def ceilings_since(self, since: float) -> list[Attempt]:
        """The attempts with at >= since that taught a ceiling, oldest first (queued too)."""

    async def hours(self, since: float) -> list[HourRow]:
        """Hourly totals per provider of the attempts with at >= since (queued too)."""

    async def in_progress_since(self, since: float) -> list[Attempt]:
        """The attempts with at >= since recorded as begun and not yet ended (queued too)."""

    async def flush(self) -> None:
        """Wait until every attempt queued so far is durably written."""

    async def close(self) -> None:
        """Flush, then release resources. Idempotent."""


def day_of(at: float) -> str:
    """The UTC day of an epoch time, truncated to whole seconds as the SQLite ledger does."""
    return time.strftime("%Y-%m-%d", time.gmtime(int(at)))


def day_start(day: str) -> float:
    """Epoch seconds at the start of a "YYYY-MM-DD" UTC day; ValueError if malformed."""
    return datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()


def tally(rows: Iterable[UsageRow], attempts: Iterable[Attempt]) -> list[UsageRow]:
    """Totals of rows already summed plus single attempts, merged by key and sorted."""
    sums: dict[tuple[str, str, str, str, str], list[int]] = {}
    for row in rows:
        key = (row.day, row.provider, row.account, row.model, row.key)
        counts = sums.setdefault(key, [0, 0, 0, 0, 0, 0])
        counts[0] += row.requests
        counts[1] += row.errors
        counts[2] += row.prompt_tokens
        counts[3] += row.completion_tokens
        counts[4] += row.estimated_requests
        counts[5] += row.client_closed
    for attempt in attempts:
        if attempt.in_progress:
            continue
        key = (
            day_of(attempt.at),
            attempt.provider,
            attempt.account,
            attempt.model,
            attempt.key or "",
        )
        counts = sums.setdefault(key, [0, 0, 0, 0, 0, 0])
        counts[0] += 1
        closed = attempt.error in CLIENT_CLOSED
        counts[1] += attempt.error is not None and not closed
        counts[2] += attempt.prompt_tokens
        counts[3] += attempt.completion_tokens
        counts[4] += attempt.estimated
        counts[5] += closed
    return [
        UsageRow(day, provider, account, model, c[0], c[1], c[2], c[3], c[4], c[5], label)
        for (day, provider, account, model, label), c in sorted(sums.items())
    ]
