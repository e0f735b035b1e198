"""What each end of an attempt means: one row per upstream situation, plain values, no I/O."""

from __future__ import annotations

import functools

import pytest

from ai_api.errors import (
    UpstreamError,
    UpstreamProtocol,
    UpstreamStatus,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from ai_api.limits import DAY, MINUTE, Exhaustion
from ai_api.ratelimits import RateReading
from ai_api.verdicts import (
    Alarm,
    Ending,
    Outcome,
    Retry,
    Verdict,
    retry_of,
    verdict_of,
)

T0 = 1_800_000_000.0
READING = RateReading((), T0 + 7)
GONE = T0 + 10 * 365 * DAY
INVALID = (400, "invalid_request_error")
UPSTREAM = (502, "upstream_error")


def refused(status: int, code: str | None = None, *, started: bool = False, **told) -> Outcome:
    """An HTTP error answer (or error payload) as the provider adapter builds it."""
    error = UpstreamStatus("groq", status, "refused", code=code)
    error.rate = told.get("rate")
    error.retry_at = told.get("retry_at")
    error.exhausted, error.period = told.get("exhausted"), told.get("period")
    return error.outcome(started=started)


def _with_reading(error: UpstreamError) -> UpstreamError:
    error.rate = READING
    return error


# An HTTP refusal before any output: the ledger counts no prompt, and reads the member's rest.
Refusal = functools.partial(Verdict, may_rest=True, charges_prompt=False)
# No HTTP answer at all: the prompt may have run; a failure toward the circuit.
Silence = functools.partial(Verdict, Retry.ANY, status=0, counts_failure=True, may_rest=True)

ROWS = [
    pytest.param(
        refused(429, "rate_limit_exceeded", rate=READING, retry_at=T0 + 7),
        Refusal(
            Retry.ANY,
            (429, "rate_limit_error"),
            429,
            "rate_limit_exceeded",
            reading=READING,
            exhausts=Exhaustion(None, None, T0 + 7),
            rest_until=T0 + 7,
            retry_at=T0 + 7,
        ),
        id="429 with retry-after: every window out and the member rests until then",
    ),
    pytest.param(
        refused(429),
        Refusal(
            Retry.ANY,
            (429, "rate_limit_error"),
            429,
            "upstream_http_429",
            exhausts=Exhaustion(None, None, T0 + 60),
            rest_until=T0 + 60,
            retry_at=T0 + 60,
        ),
        id="429 without retry-after: a minute",
    ),
    pytest.param(
        refused(429, retry_at=T0 + 3600, exhausted="tokens", period=DAY),
        Refusal(
            Retry.ANY,
            (429, "rate_limit_error"),
            429,
            "upstream_http_429",
            exhausts=Exhaustion("tokens", DAY, T0 + 3600),
            rest_until=T0 + 3600,
            retry_at=T0 + 3600,
        ),
        id="429 naming the daily token window",
    ),
    pytest.param(
        refused(413, "rate_limit_exceeded", rate=READING),
        Refusal(
            Retry.ANY,
            (413, "invalid_request_error"),
            413,
            "rate_limit_exceeded",
            reading=READING,
        ),
        id="413 Groq tokens per minute: another member, no failure of the member's (the request"
        " caused it), no window exhausted",
    ),
    pytest.param(
        refused(400, "invalid_request_error"),
        Refusal(Retry.NONE, INVALID, 400, "invalid_request_error"),
        id="400: the request is wrong everywhere",
    ),
    pytest.param(
        refused(400, "context_length_exceeded"),
        Refusal(Retry.LARGER_CONTEXT, INVALID, 400, "context_length_exceeded"),
        id="400 context_length_exceeded: only a larger window",
    ),
    pytest.param(
        refused(422),
        Refusal(Retry.NONE, INVALID, 422, "upstream_http_422"),
        id="422 answers the client 400",
    ),
    *(
        pytest.param(
            refused(status),
            Refusal(
                Retry.ANY,
                UPSTREAM,
                status,
                f"upstream_http_{status}",
                rest_until=T0 + 3600,
                alarm=Alarm.KEY_REFUSED,
            ),
            id=f"{status}: the key refused, an hour's rest, the gateway's fault",
        )
        for status in (401, 402, 403)
    ),
    pytest.param(
        refused(404, "model_not_found"),
        Refusal(
            Retry.ANY, UPSTREAM, 404, "model_not_found", rest_until=GONE, alarm=Alarm.MODEL_GONE
        ),
        id="404 model_not_found: out of rotation",
    ),
    pytest.param(
        refused(400, "model_decommissioned"),
        Refusal(
            Retry.NONE,
            INVALID,
            400,
            "model_decommissioned",
            rest_until=GONE,
            alarm=Alarm.MODEL_GONE,
        ),
        id="400 model_decommissioned (Groq): out of rotation, but not failed over",
    ),
    pytest.param(
        refused(404),
        Refusal(Retry.ANY, UPSTREAM, 404, "upstream_http_404"),
        id="404 without a code: another member, no rest",
    ),
    pytest.param(
        refused(408),
        Refusal(Retry.ANY, (504, "upstream_error"), 408, "upstream_http_408", counts_failure=True),
        id="408: a timeout to the client, a failure",
    ),
    pytest.param(
        refused(498, "capacity_exceeded"),
        Refusal(Retry.ANY, UPSTREAM, 498, "capacity_exceeded", counts_failure=True),
        id="498 Groq flex capacity: a failure",
    ),
    *(
        pytest.param(
            refused(status),
            Refusal(Retry.ANY, client, status, f"upstream_http_{status}", counts_failure=True),
            id=f"{status}: another member, a failure",
        )
        for status, client in (
            (500, UPSTREAM),
            (502, UPSTREAM),
            (503, (503, "upstream_error")),
            (504, (504, "upstream_error")),
        )
    ),
    pytest.param(
        refused(503, rate=READING, retry_at=T0 + 7),
        Refusal(
            Retry.ANY,
            (503, "upstream_error"),
            503,
            "upstream_http_503",
            reading=READING,
            counts_failure=True,
            retry_at=T0 + 7,
        ),
        id="503 with retry-after: a failure that cools until then",
    ),
    pytest.param(
        UpstreamTimeout("groq", "timed out").outcome(),
        Silence(client=(504, "upstream_error"), error="upstream_timeout"),
        id="timeout",
    ),
    pytest.param(
        UpstreamUnreachable("groq", "connection failed").outcome(),
        Silence(client=UPSTREAM, error="upstream_unreachable"),
        id="unreachable",
    ),
    pytest.param(
        UpstreamProtocol("groq", "the stream ended early").outcome(started=True),
        Silence(client=UPSTREAM, error="upstream_protocol_error"),
        id="protocol error",
    ),
    pytest.param(
        refused(500, "server_error", started=True),
        Verdict(Retry.ANY, UPSTREAM, 500, "server_error", counts_failure=True, may_rest=True),
        id="in-stream error payload after output: the prompt ran",
    ),
    pytest.param(
        refused(400, "invalid_request_error", started=True),
        Verdict(Retry.NONE, INVALID, 400, "invalid_request_error", may_rest=True),
        id="in-stream 400 after output: the prompt ran",
    ),
    pytest.param(
        refused(499),
        Verdict(Retry.NONE, UPSTREAM, 499, "upstream_http_499"),
        id="an upstream 499 is taken for a client gone: prompt counted, no rest read",
    ),
    pytest.param(
        _with_reading(UpstreamUnreachable("groq", "cut")).outcome(),
        Silence(client=UPSTREAM, error="upstream_unreachable"),
        id="only an HTTP answer's reading is observed",
    ),
    pytest.param(
        Outcome(Ending.LEFT),
        Verdict(Retry.NONE, None, 499, "client_closed"),
        id="client gone: the probe released, nothing rests",
    ),
    pytest.param(
        Outcome(Ending.ANSWERED),
        Verdict(Retry.NONE, None, 200, None, healthy=True),
        id="success: the member healthy",
    ),
]


@pytest.mark.parametrize(("outcome", "verdict"), ROWS)
def test_verdict(outcome: Outcome, verdict: Verdict) -> None:
    assert verdict_of(outcome, T0) == verdict
    assert retry_of(outcome) is verdict.retry


@pytest.mark.parametrize(
    "error",
    [
        UpstreamTimeout("p", "t"),
        UpstreamUnreachable("p", "u"),
        UpstreamProtocol("p", "x"),
        UpstreamError("p", "e"),
        *(UpstreamStatus("p", s, "m") for s in (400, 401, 408, 413, 422, 429, 500, 503, 504)),
    ],
    ids=lambda e: f"{type(e).__name__} {e.upstream_status or ''}".strip(),
)
def test_the_client_gets_what_the_verdict_says(error: UpstreamError) -> None:
    assert verdict_of(error.outcome(), T0).client == (error.status, error.type)


def test_time_moves_only_the_rests() -> None:
    later = T0 + MINUTE
    assert verdict_of(refused(429), later).rest_until == later + 60
    assert verdict_of(refused(401), later).rest_until == later + 3600
