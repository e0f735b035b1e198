"""What the end of an attempt means: one pure function from an `Outcome` to a `Verdict`.

The failover loop applies the verdict's retry rule, the rationing its effects on the shared
state and the ledger, and `UpstreamStatus` the status its client gets. Nothing else decides.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .limits import DAY, Exhaustion, Kind
from .ratelimits import RateReading

# How long a member rests after the provider refused our key (401/403) or wants payment
# (402): long enough not to hammer it, short enough to notice a fixed key without a restart.
_KEY_REST = 3600.0
# How long a model the provider says no longer exists stays out of rotation.
_GONE_REST = 10 * 365 * DAY
# A 429 without any hint of when to retry: rest this long.
_DEFAULT_RETRY = 60.0
_GONE = frozenset({"model_decommissioned", "model_not_found"})

# Statuses that say nothing against the request itself: another member may serve it. 413 is
# here because Groq answers 413 when one request exceeds its tokens-per-minute budget.
_RETRYABLE = frozenset({401, 402, 403, 404, 408, 409, 413, 429, 498})
# Statuses that count toward the member's circuit (with 5xx and no answer at all); the other
# refusals release a probe the attempt held without a verdict on the member's health. Not 413,
# nor any 4xx about the request: a failure the request caused says nothing of the member (one
# client could otherwise take every member out of service for everyone).
_COUNTED = frozenset({408, 498})

# Upstream HTTP status -> (status the client sees, OpenAI error type). The client sees the
# provider's verdict when it is about the request itself (400, 413, 422) or about load (429,
# 503); a provider rejecting the gateway's own key or configuration is the gateway's fault (502).
_CLIENT: dict[int, tuple[int, str]] = {
    400: (400, "invalid_request_error"),
    413: (413, "invalid_request_error"),
    422: (400, "invalid_request_error"),
    429: (429, "rate_limit_error"),
    503: (503, "upstream_error"),
    408: (504, "upstream_error"),
    504: (504, "upstream_error"),
}
_UPSTREAM = (502, "upstream_error")


class Ending(enum.Enum):
    """How an attempt ended."""

    ANSWERED = "answered"
    STATUS = "status"  # an HTTP error status, or an error payload in the stream
    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"  # refused, reset, or cut mid-answer
    PROTOCOL = "protocol"  # not the provider's wire format
    FAILED = "failed"  # any other upstream failure
    LEFT = "left"  # the client went away


class Retry(enum.Enum):
    """Which members may take the request after this failure."""

    NONE = "none"
    ANY = "any"
    LARGER_CONTEXT = "larger_context"


class Alarm(enum.Enum):
    """A configuration problem the operator must hear of."""

    MODEL_GONE = "model_gone"
    KEY_REFUSED = "key_refused"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What ended an attempt, as the provider told it (times absolute, on the rationing clock)."""

    ending: Ending
    status: int = 0  # the upstream's HTTP status (or the error payload's), 0 without one
    code: str | None = None
    retry_at: float | None = None
    reading: RateReading | None = None
    exhausted: Kind | None = None
    period: float | None = None
    started: bool = False  # a first chunk had arrived


@dataclass(frozen=True, slots=True)
class Verdict:
    """Everything an attempt's end means, for the failover loop, the shared state and the ledger."""

    retry: Retry
    client: tuple[int, str] | None  # the status and OpenAI error type the client gets
    status: int  # what the ledger records: 200, the upstream's status, 0 without one, 499
    error: str | None  # the ledger's error code; None for an answer
    healthy: bool = False  # the member answered: its failures are forgotten, its circuit closes
    reading: RateReading | None = None  # the provider's rate-limit headers to observe
    exhausts: Exhaustion | None = None
    rest_until: float | None = None  # out of rotation until then, without counting a failure
    counts_failure: bool = False  # toward the circuit; otherwise a probe held is released
    retry_at: float | None = None  # when to retry (a 429's default too); a counted failure cools
    may_rest: bool = False  # the member may now rest: the ledger reads until when
    charges_prompt: bool = True  # the estimated prompt counts when the provider gave no usage
    alarm: Alarm | None = None


# What the client gets when the provider gave no HTTP status at all.
_NO_STATUS: dict[Ending, tuple[int, str]] = {
    Ending.TIMEOUT: (504, "upstream_error"),
    Ending.UNREACHABLE: _UPSTREAM,
    Ending.PROTOCOL: _UPSTREAM,
    Ending.FAILED: _UPSTREAM,
}


def client_answer(upstream_status: int) -> tuple[int, str]:
    """The status and OpenAI error type a client gets for an upstream HTTP error status."""
    return _CLIENT.get(upstream_status, _UPSTREAM)


def verdict_of(outcome: Outcome, now: float) -> Verdict:
    """What `outcome` means at `now`."""
    if outcome.ending is Ending.ANSWERED:
        return Verdict(Retry.NONE, None, 200, None, healthy=True)
    if outcome.ending is Ending.LEFT:
        return Verdict(Retry.NONE, None, 499, "client_closed")
    status, code = outcome.status, outcome.code
    http = outcome.ending is Ending.STATUS
    exhausts: Exhaustion | None = None
    rest_until: float | None = None
    alarm: Alarm | None = None
    retry_at = outcome.retry_at
    if status == 429:
        rest_until = retry_at = retry_at or now + _DEFAULT_RETRY
        exhausts = Exhaustion(outcome.exhausted, outcome.period, rest_until)
    elif code in _GONE:
        rest_until, alarm = now + _GONE_REST, Alarm.MODEL_GONE
    elif status in (401, 402, 403):
        rest_until, alarm = now + _KEY_REST, Alarm.KEY_REFUSED
    return Verdict(
        retry_of(outcome),
        client_answer(status) if http else _NO_STATUS[outcome.ending],
        status,
        code,
        reading=outcome.reading if http else None,
        exhausts=exhausts,
        rest_until=rest_until,
        counts_failure=status == 0 or status >= 500 or status in _COUNTED,
        retry_at=retry_at,
        may_rest=status != 499,
        # Refused before processing (no output, an error status): the prompt was not run.
        charges_prompt=outcome.started or status in (0, 200, 499),
        alarm=alarm,
    )


def retry_of(outcome: Outcome) -> Retry:
    """The verdict's retry rule alone (it needs no time)."""
    if outcome.ending in (Ending.ANSWERED, Ending.LEFT):
        return Retry.NONE
    if outcome.code == "context_length_exceeded":
        # Not again on this model: only a member with a larger window may take it.
        return Retry.LARGER_CONTEXT
    if outcome.ending is not Ending.STATUS:
        return Retry.ANY
    status = outcome.status
    return Retry.ANY if status in _RETRYABLE or status >= 500 else Retry.NONE
