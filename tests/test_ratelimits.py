"""Rate-limit signals: each provider's headers and 429 bodies, read into one shape."""

import json
from types import MappingProxyType

import pytest
from msgspec.structs import astuple

from ai_api.ratelimits import (
    STYLES,
    ErrorReading,
    RateReading,
    parse_go_duration,
    read_error_body,
    read_headers,
)

NOW = 1000.0  # the caller's monotonic clock
WALL = 1_741_305_600.0  # the wall clock at the same instant (2025-03-07T00:00:00Z)
MINUTE, HOUR, DAY, MONTH = 60.0, 3600.0, 86400.0, 2592000.0
NOTHING = ErrorReading(None, None, None, None)


def windows(reading: RateReading) -> list[tuple[object, ...]]:
    return [astuple(window) for window in reading.windows]


def assert_windows(reading: RateReading, expected: list[tuple[object, ...]]) -> None:
    got = windows(reading)
    assert len(got) == len(expected), got
    for actual, wanted in zip(got, expected, strict=True):
        assert actual == pytest.approx(wanted)


def assert_error(reading: ErrorReading, expected: tuple[object, ...]) -> None:
    assert astuple(reading) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("940ms", 0.94),
        ("7.66s", 7.66),
        ("2m59.56s", 179.56),
        ("1h2m3s", 3723.0),
        ("0s", 0.0),
        ("0", 0.0),
        ("16.239999999s", 16.239999999),
        ("1.5µs", 1.5e-6),  # U+00B5 micro sign
        ("1.5μs", 1.5e-6),  # U+03BC Greek mu, which Go also accepts
        ("1.5us", 1.5e-6),
        ("250ns", 2.5e-7),
        ("6m0s", 360.0),
        ("20ms", 0.02),
        (".5s", 0.5),
        ("1.s", 1.0),
        ("1s1h", 3601.0),
        ("+5s", 5.0),
        ("-1.5h", -5400.0),
        (" 3s ", 3.0),
    ],
)
def test_parse_go_duration(text, seconds):
    assert parse_go_duration(text) == pytest.approx(seconds, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "s",
        "5",
        "00",
        "1d",
        "5S",
        "1.2.3s",
        "1h 2m",
        "1e3s",
        "--1s",
        "nan",
        "inf",
        "٣s",
        ".",
    ],
)
def test_parse_go_duration_rejects_garbage(text):
    assert parse_go_duration(text) is None


def test_parse_go_duration_rejects_overflow():
    assert parse_go_duration("9" * 400 + "h") is None


GROQ_HEADERS = {
    "x-ratelimit-limit-requests": "14400",
    "x-ratelimit-limit-tokens": "18000",
    "x-ratelimit-remaining-requests": "14370",
    "x-ratelimit-remaining-tokens": "17997",
    "x-ratelimit-reset-requests": "2m59.56s",
    "x-ratelimit-reset-tokens": "7.66s",
}


def test_groq_requests_are_per_day_and_tokens_per_minute():
    reading = read_headers("groq", GROQ_HEADERS, NOW, WALL)
    assert_windows(
        reading,
        [
            ("requests", DAY, 14400, 14370, NOW + 179.56),
            ("tokens", MINUTE, 18000, 17997, NOW + 7.66),
        ],
    )
    assert reading.retry_at is None


def test_openai_windows_are_both_per_minute():
    headers = {
        "x-ratelimit-limit-requests": "500",
        "x-ratelimit-remaining-requests": "499",
        "x-ratelimit-reset-requests": "20ms",
        "x-ratelimit-limit-tokens": "30000",
        "x-ratelimit-remaining-tokens": "29000",
        "x-ratelimit-reset-tokens": "6m0s",
    }
    assert_windows(
        read_headers("openai", headers, NOW, WALL),
        [
            ("requests", MINUTE, 500, 499, NOW + 0.02),
            ("tokens", MINUTE, 30000, 29000, NOW + 360.0),
        ],
    )


CEREBRAS_HEADERS = {
    "x-ratelimit-limit-requests-day": "1000000000",
    "x-ratelimit-limit-tokens-minute": "1000000000",
    "x-ratelimit-remaining-requests-day": "999997455",
    "x-ratelimit-remaining-tokens-minute": "999998298",
    "x-ratelimit-reset-requests-day": "33011.382867097855",
    "x-ratelimit-reset-tokens-minute": "11.382867097854614",
}


def test_cerebras_documented_headers_with_float_second_resets():
    assert_windows(
        read_headers("cerebras", CEREBRAS_HEADERS, NOW, WALL),
        [
            ("requests", DAY, 1000000000, 999997455, NOW + 33011.382867097855),
            ("tokens", MINUTE, 1000000000, 999998298, NOW + 11.382867097854614),
        ],
    )


def test_cerebras_reads_any_window_of_the_matrix():
    headers = {
        "x-ratelimit-limit-requests-minute": "30",
        "x-ratelimit-remaining-requests-minute": "29",
        "x-ratelimit-reset-requests-minute": "41.5",
        "x-ratelimit-remaining-requests-hour": "880",
        "x-ratelimit-limit-tokens-day": "1000000",
        "x-ratelimit-limit-tokens-hour": "1000000",
        "x-ratelimit-reset-tokens-week": "5",
        "x-ratelimit-limit-tokens-week": "5",
    }
    assert_windows(
        read_headers("cerebras", headers, NOW, WALL),
        [
            ("requests", MINUTE, 30, 29, NOW + 41.5),
            ("requests", HOUR, None, 880, None),
            ("tokens", HOUR, 1000000, None, None),
            ("tokens", DAY, 1000000, None, None),
        ],
    )


def test_openrouter_reset_is_epoch_ms_converted_to_the_callers_clock():
    headers = {
        "X-RateLimit-Limit": "20",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": str(int((WALL + 42) * 1000)),
    }
    assert_windows(
        read_headers("openrouter", headers, NOW, WALL), [("requests", MINUTE, 20, 0, NOW + 42)]
    )


def test_openrouter_reset_in_the_past_means_now():
    headers = {"X-RateLimit-Remaining": "3", "X-RateLimit-Reset": str(int((WALL - 5) * 1000))}
    assert_windows(
        read_headers("openrouter", headers, NOW, WALL), [("requests", MINUTE, None, 3, NOW)]
    )


def test_mistral_minute_and_month_windows_without_resets():
    headers = {
        "x-ratelimit-limit-tokens-minute": "500000",
        "x-ratelimit-remaining-tokens-minute": "498500",
        "x-ratelimit-limit-tokens-month": "1000000000",
        "x-ratelimit-remaining-tokens-month": "999000000",
        "x-ratelimit-limit-req-minute": "60",
        "x-ratelimit-remaining-req-minute": "59",
        "x-ratelimit-tokens-query-cost": "1500",
    }
    assert_windows(
        read_headers("mistral", headers, NOW, WALL),
        [
            ("requests", MINUTE, 60, 59, None),
            ("tokens", MINUTE, 500000, 498500, None),
            ("tokens", MONTH, 1000000000, 999000000, None),
        ],
    )


@pytest.mark.parametrize("style", ["none", "gemini"])
def test_headerless_styles_read_only_retry_info(style):
    headers = {**GROQ_HEADERS, **CEREBRAS_HEADERS, "retry-after": "37"}
    assert read_headers(style, headers, NOW, WALL) == RateReading((), NOW + 37)


@pytest.mark.parametrize(
    ("style", "headers"),
    [("groq", CEREBRAS_HEADERS), ("cerebras", GROQ_HEADERS), ("openrouter", GROQ_HEADERS)],
)
def test_a_dialect_ignores_another_dialects_headers(style, headers):
    assert read_headers(style, headers, NOW, WALL) == RateReading((), None)


@pytest.mark.parametrize("case", [str.lower, str.upper, str.title])
def test_header_names_are_case_insensitive(case):
    headers = MappingProxyType({case(name): value for name, value in GROQ_HEADERS.items()})
    assert windows(read_headers("groq", headers, NOW, WALL)) == windows(
        read_headers("groq", GROQ_HEADERS, NOW, WALL)
    )
    assert len(read_headers("groq", headers, NOW, WALL).windows) == 2


def test_header_values_are_stripped():
    headers = {"x-ratelimit-limit-tokens": " 18000 ", "x-ratelimit-reset-tokens": "\t7s "}
    assert_windows(
        read_headers("groq", headers, NOW, WALL), [("tokens", MINUTE, 18000, None, NOW + 7)]
    )


@pytest.mark.parametrize("bad", ["", "abc", "-5", "1e3", "12.5", "1_000", "١٢", "0x10", "9" * 40])
def test_malformed_count_is_skipped_but_the_window_stays(bad):
    headers = {"x-ratelimit-limit-tokens": bad, "x-ratelimit-remaining-tokens": "17"}
    assert_windows(read_headers("groq", headers, NOW, WALL), [("tokens", MINUTE, None, 17, None)])


@pytest.mark.parametrize("bad", ["", "abc", "-5", "1e3"])
def test_no_window_without_a_readable_limit_or_remaining(bad):
    headers = {
        "x-ratelimit-limit-tokens": bad,
        "x-ratelimit-remaining-tokens": bad,
        "x-ratelimit-reset-tokens": "7s",
    }
    assert read_headers("groq", headers, NOW, WALL).windows == ()


@pytest.mark.parametrize(
    ("style", "suffix"), [("groq", "tokens"), ("cerebras", "tokens-minute"), ("openrouter", "")]
)
@pytest.mark.parametrize("bad", ["soon", "-3s", "-1", "nan", "inf", "1e3", ""])
def test_malformed_reset_is_skipped(style, suffix, bad):
    tail = f"-{suffix}" if suffix else ""
    headers = {f"x-ratelimit-limit{tail}": "10", f"x-ratelimit-reset{tail}": bad}
    (window,) = read_headers(style, headers, NOW, WALL).windows
    assert (window.limit, window.reset_at) == (10, None)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("2m59.56s", 179.56), ("2", 2.0), ("0", 0.0), ("11.5", 11.5), ("940ms", 0.94)],
)
def test_relative_resets_accept_plain_seconds_or_go_durations(text, seconds):
    headers = {"x-ratelimit-remaining-requests": "1", "x-ratelimit-reset-requests": text}
    (window,) = read_headers("groq", headers, NOW, WALL).windows
    assert window.reset_at == pytest.approx(NOW + seconds)


@pytest.mark.parametrize(
    ("headers", "retry_at"),
    [
        ({"retry-after": "2"}, NOW + 2),
        ({"Retry-After": "1.5"}, NOW + 1.5),
        ({"retry-after": "0"}, NOW),
        ({"retry-after-ms": "1500"}, NOW + 1.5),
        ({"Retry-After-Ms": "250.5"}, NOW + 0.2505),
        ({"retry-after-ms": "1500", "retry-after": "60"}, NOW + 1.5),
        ({"retry-after-ms": "soon", "retry-after": "60"}, NOW + 60),
        ({"retry-after": "Fri, 07 Mar 2025 00:00:30 GMT"}, NOW + 30),
        ({"retry-after": "Fri, 07 Mar 2025 00:01:00 -0000"}, NOW + 60),
        ({"retry-after": "Thu, 06 Mar 2025 23:59:00 GMT"}, NOW),
    ],
)
def test_retry_after_forms(headers, retry_at):
    assert read_headers("none", headers, NOW, WALL).retry_at == pytest.approx(retry_at)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"retry-after": "soon"},
        {"retry-after": "-1"},
        {"retry-after": ""},
        {"retry-after": "inf"},
        {"retry-after": "nan"},
        {"retry-after": "1e3"},
        {"retry-after": "Fri, 99 Foo 2025 00:00:30 GMT"},
        {"retry-after-ms": "-5"},
        {"retry-after-ms": "nan"},
    ],
)
def test_retry_after_garbage_is_ignored(headers):
    assert read_headers("none", headers, NOW, WALL).retry_at is None


def test_retry_after_uses_the_wall_clock_only_for_dates():
    later_wall = WALL + 10
    reading = read_headers(
        "groq", {"retry-after": "Fri, 07 Mar 2025 00:00:30 GMT"}, NOW, later_wall
    )
    assert reading.retry_at == pytest.approx(NOW + 20)
    assert read_headers("groq", {"retry-after": "5"}, NOW, later_wall).retry_at == NOW + 5


def test_styles():
    assert {"groq", "cerebras", "openai", "openrouter", "mistral", "gemini", "none"} == STYLES


def test_unknown_style_raises():
    with pytest.raises(ValueError, match="fireworks"):
        read_headers("fireworks", {}, NOW, WALL)
    with pytest.raises(ValueError, match="fireworks"):
        read_error_body("fireworks", 429, b"{}", NOW, WALL)


def groq_error(message: str, kind: str | None) -> bytes:
    error = {"message": message, "code": "rate_limit_exceeded"}
    if kind is not None:
        error["type"] = kind
    return json.dumps({"error": error}).encode()


GROQ_PREFIX = (
    "Rate limit reached for model `openai/gpt-oss-20b` in organization `org_01` service tier"
)


@pytest.mark.parametrize(
    ("status", "message", "kind", "expected"),
    [
        (
            429,
            f"{GROQ_PREFIX} `on_demand` on tokens per minute (TPM): Limit 6000, Used 4093, "
            "Requested 3531. Please try again in 16.24s. Need more tokens? Upgrade to Dev Tier "
            "today at https://console.groq.com/settings/billing",
            "tokens",
            (NOW + 16.24, "tokens", MINUTE, None),
        ),
        (
            429,
            f"{GROQ_PREFIX} `on_demand` on requests per minute (RPM): Limit 30, Used 30, "
            "Requested 1. Please try again in 2s. Need more tokens?",
            "requests",
            (NOW + 2, "requests", MINUTE, None),
        ),
        (
            429,
            f"{GROQ_PREFIX} `on_demand` on tokens per day (TPD): Limit 200000, Used 199000, "
            "Requested 3000. Please try again in 2m59.56s. Need more tokens?",
            "tokens",
            (NOW + 179.56, "tokens", DAY, None),
        ),
        (
            429,
            f"{GROQ_PREFIX} `on_demand` on requests per day (RPD): Limit 1000, Used 1000, "
            "Requested 1. Please try again in 1h2m3s.",
            "requests",
            (NOW + 3723, "requests", DAY, None),
        ),
        (
            429,
            f"{GROQ_PREFIX} `on_demand` on tokens per day (TPD): Limit 1, Used 1, Requested 1. "
            "Please try again in 16.239999999s.",
            None,
            (NOW + 16.239999999, "tokens", DAY, None),
        ),
        (
            413,
            "Request too large for model `qwen/qwen3-32b` in organization `org_01` service tier "
            "`on_demand` on tokens per minute (TPM): Limit 6000, Requested 15041, please reduce "
            "your message size and try again. Need more tokens?",
            "tokens",
            (None, "tokens", MINUTE, None),
        ),
        (429, "Something else entirely", "requests", (None, "requests", None, None)),
        (429, "Please try again in soon", "tokens", (None, "tokens", None, None)),
    ],
)
def test_groq_bodies(status, message, kind, expected):
    reading = read_error_body("groq", status, groq_error(message, kind), NOW, WALL)
    assert_error(reading, expected)


def test_groq_over_capacity_is_not_a_limit():
    body = groq_error("openai/gpt-oss-20b is currently over capacity.", "internal_server_error")
    assert read_error_body("groq", 503, body, NOW, WALL) == NOTHING
    assert read_error_body("groq", 429, body, NOW, WALL) == NOTHING


def cerebras_error(message: str, kind: str, code: str) -> dict[str, object]:
    return {"message": message, "type": kind, "param": "quota", "code": code}


RPM = cerebras_error(
    "Requests per minute limit exceeded - too many requests sent.",
    "too_many_requests_error",
    "request_quota_exceeded",
)
TPM = cerebras_error(
    "Tokens per minute limit exceeded - too many tokens processed.",
    "too_many_tokens_error",
    "token_quota_exceeded",
)
TPD = cerebras_error(
    "Tokens per day limit exceeded - too many tokens processed.",
    "too_many_tokens_error",
    "token_quota_exceeded",
)
RPH = cerebras_error(
    "Requests per hour limit exceeded - too many requests sent.",
    "too_many_requests_error",
    "request_quota_exceeded",
)
QUEUE = {
    "message": "We're experiencing high traffic right now! Please try again soon.",
    "type": "too_many_requests_error",
    "param": "queue",
    "code": "queue_exceeded",
}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (RPM, (None, "requests", MINUTE, None)),
        (TPM, (None, "tokens", MINUTE, None)),
        (TPD, (None, "tokens", DAY, None)),
        (RPH, (None, "requests", HOUR, None)),
        (QUEUE, (None, None, None, None)),
        ({**TPD, "code": "something_new"}, (None, "tokens", DAY, None)),
        ({**TPM, "message": "Rate limited."}, (None, "tokens", None, None)),
        ({"error": TPD, "status_code": 429}, (None, "tokens", DAY, None)),
    ],
)
def test_cerebras_bodies(body, expected):
    reading = read_error_body("cerebras", 429, json.dumps(body).encode(), NOW, WALL)
    assert_error(reading, expected)


def gemini_error(*quota_ids: str, retry_delay: str | None = "37s") -> dict[str, object]:
    details: list[dict[str, object]] = [
        {
            "@type": "type.googleapis.com/google.rpc.QuotaFailure",
            "violations": [
                {"quotaMetric": "generativelanguage.googleapis.com/x", "quotaId": quota_id}
                for quota_id in quota_ids
            ],
        },
        {"@type": "type.googleapis.com/google.rpc.Help", "links": []},
    ]
    if retry_delay is not None:
        details.append(
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry_delay}
        )
    return {
        "error": {
            "code": 429,
            "message": "You exceeded your current quota, please check your plan.",
            "status": "RESOURCE_EXHAUSTED",
            "details": details,
        }
    }


RPD_ID = "GenerateRequestsPerDayPerProjectPerModel-FreeTier"
RPM_ID = "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"
TPM_ID = "GenerateContentInputTokensPerModelPerMinute-FreeTier"


@pytest.mark.parametrize("wrap", [lambda body: body, lambda body: [body]], ids=["object", "list"])
@pytest.mark.parametrize("style", ["gemini", "none"])
@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (gemini_error(RPD_ID), (NOW + 37, "requests", DAY, RPD_ID)),
        (gemini_error(RPM_ID, retry_delay="0.5s"), (NOW + 0.5, "requests", MINUTE, RPM_ID)),
        (gemini_error(TPM_ID, retry_delay=None), (None, "tokens", MINUTE, TPM_ID)),
        (gemini_error(RPM_ID, RPD_ID), (NOW + 37, "requests", DAY, RPD_ID)),
        (gemini_error(TPM_ID, RPM_ID), (NOW + 37, "tokens", MINUTE, TPM_ID)),
        (gemini_error("SomethingElse"), (NOW + 37, None, None, "SomethingElse")),
        (gemini_error(retry_delay="later"), (None, None, None, None)),
        (gemini_error(retry_delay="-3s"), (None, None, None, None)),
    ],
)
def test_gemini_bodies(wrap, style, body, expected):
    reading = read_error_body(style, 429, json.dumps(wrap(body)).encode(), NOW, WALL)
    assert_error(reading, expected)


def openrouter_error(message: str, headers: dict[str, object]) -> bytes:
    error = {"message": message, "code": 429, "metadata": {"headers": headers}}
    return json.dumps({"error": error}).encode()


PER_DAY = (
    "Rate limit exceeded: free-models-per-day. "
    "Add 10 credits to unlock 1000 free model requests per day"
)
RESET_MS = int((WALL + 3600) * 1000)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            openrouter_error(
                PER_DAY,
                {
                    "X-RateLimit-Limit": "50",
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": str(RESET_MS),
                },
            ),
            (NOW + 3600, "requests", DAY, None),
        ),
        (
            openrouter_error(
                PER_DAY,
                {
                    "X-RateLimit-Limit": 50,
                    "X-RateLimit-Remaining": 0,
                    "X-RateLimit-Reset": RESET_MS,
                },
            ),
            (NOW + 3600, "requests", DAY, None),
        ),
        (
            openrouter_error("Provider returned error", {"X-RateLimit-Remaining": "0"}),
            (None, None, None, None),
        ),
        (
            openrouter_error(
                "Rate limited upstream",
                {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(RESET_MS)},
            ),
            (NOW + 3600, None, None, None),
        ),
        (
            openrouter_error(PER_DAY, {"X-RateLimit-Reset": RESET_MS, "X-RateLimit-Limit": [1]}),
            (None, "requests", DAY, None),
        ),
        (openrouter_error(PER_DAY, {}), (None, "requests", DAY, None)),
    ],
)
def test_openrouter_bodies(body, expected):
    assert_error(read_error_body("openrouter", 429, body, NOW, WALL), expected)


VALID_BODIES = {
    "groq": groq_error(f"{GROQ_PREFIX} on tokens per minute (TPM): Try again in 1s.", "tokens"),
    "cerebras": json.dumps(TPM).encode(),
    "gemini": json.dumps(gemini_error(RPD_ID)).encode(),
    "openrouter": openrouter_error(PER_DAY, {}),
}


@pytest.mark.parametrize("style", sorted(VALID_BODIES))
@pytest.mark.parametrize("status", [200, 400, 401, 500, 503])
def test_only_413_and_429_carry_limit_information(style, status):
    assert read_error_body(style, 429, VALID_BODIES[style], NOW, WALL) != NOTHING
    assert read_error_body(style, status, VALID_BODIES[style], NOW, WALL) == NOTHING


@pytest.mark.parametrize("style", ["openai", "mistral"])
def test_styles_without_body_readers(style):
    mistral = b'{"object":"error","message":"Requests rate limit exceeded","type":"rate_limited"}'
    for body in [*VALID_BODIES.values(), mistral]:
        assert read_error_body(style, 429, body, NOW, WALL) == NOTHING


@pytest.mark.parametrize("style", sorted(STYLES))
@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"{",
        b"\xff\xfe",
        b"null",
        b"[]",
        b"[1, 2]",
        b'"error"',
        b"42",
        b'{"error": "string"}',
        b'{"error": {"details": "nope", "metadata": [], "message": 5, "type": 7}}',
        b'{"error": {"details": [1, {"@type": 3}, {"violations": [{"quotaId": 9}]}]}}',
        b"[" * 100_000,
    ],
)
def test_unparseable_bodies_read_as_nothing(style, body):
    assert read_error_body(style, 429, body, NOW, WALL) == NOTHING
