"""Providers' rate-limit signals, read into one shape: headers into windows, 429 bodies into causes.

Pure functions: no I/O, no clock. Callers pass `now` (their monotonic clock) and, where a provider
speaks in wall-clock instants, `wall_now`; every `reset_at` and `retry_at` is on the `now` clock.
A value that is missing or malformed reads as None; nothing here raises on provider input.
"""

from __future__ import annotations

import calendar
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

import msgspec
from multidict import CIMultiDict, CIMultiDictProxy

from .limits import DAY, KINDS, MINUTE, MONTH, PERIODS, Kind

__all__ = [
    "STYLES",
    "ErrorReading",
    "RateReading",
    "WindowReading",
    "parse_go_duration",
    "read_error_body",
    "read_headers",
]


class WindowReading(msgspec.Struct, frozen=True):
    """What a provider said about one window: its kind, length in seconds, and state."""

    kind: Kind
    period: float
    limit: int | None
    remaining: int | None
    reset_at: float | None


class RateReading(msgspec.Struct, frozen=True):
    """Everything one response's headers said: the windows and when to retry."""

    windows: tuple[WindowReading, ...]
    retry_at: float | None


class ErrorReading(msgspec.Struct, frozen=True):
    """What an error body said about a limit: when to retry, which kind and window ran out."""

    retry_at: float | None
    exhausted: Kind | None
    period: float | None
    quota_id: str | None


_NOTHING = ErrorReading(None, None, None, None)
_NO_READING = RateReading((), None)

# Go accepts both micro signs: U+00B5 and the Greek U+03BC.
_GO_PART = r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h)"
_GO_PART_RE = re.compile(_GO_PART)
_GO_DURATION_RE = re.compile(rf"([+-]?)((?:{_GO_PART})+|0)")
_GO_UNITS = dict(ns=1e-9, us=1e-6, ms=1e-3, s=1.0, m=60.0, h=3600.0) | {"µs": 1e-6, "μs": 1e-6}
_DECIMAL_RE = re.compile(r"[0-9]{1,30}(?:\.[0-9]*)?|\.[0-9]{1,30}")
_COUNT_RE = re.compile(r"[0-9]{1,30}")


def parse_go_duration(text: str) -> float | None:
    """Seconds in a Go `time.Duration` string (`940ms`, `2m59.56s`, `1h2m3s`, `0`), else None."""
    text = text.strip()
    one = _GO_PART_RE.fullmatch(text)  # one unit, as most resets are: no walk over parts
    if one is not None:
        seconds = float(one[1]) * _GO_UNITS[one[2]]
        return seconds if math.isfinite(seconds) else None
    match = _GO_DURATION_RE.fullmatch(text)
    if match is None:
        return None
    sign, body = match.group(1, 2)
    total = sum(float(n) * _GO_UNITS[unit] for n, unit in _GO_PART_RE.findall(body))
    if not math.isfinite(total):
        return None
    return -total if sign == "-" else total


def _decimal(text: str) -> float | None:
    """A plain non-negative decimal number (no sign, exponent, inf or nan), else None."""
    return float(text) if _DECIMAL_RE.fullmatch(text) else None


def _count(text: str | None) -> int | None:
    if text is None:
        return None
    text = text.strip()
    return int(text) if _COUNT_RE.fullmatch(text) else None


def _reset_after(text: str, now: float, wall_now: float) -> float | None:
    """A reset given as time left: float seconds (Cerebras) or a Go duration (Groq, OpenAI)."""
    seconds = _decimal(text)
    if seconds is None:
        seconds = parse_go_duration(text)
    return None if seconds is None or seconds < 0 else now + seconds


def _reset_epoch_ms(text: str, now: float, wall_now: float) -> float | None:
    """A reset given as a wall-clock instant in epoch milliseconds (OpenRouter)."""
    epoch_ms = _decimal(text)
    return None if epoch_ms is None else now + max(0.0, epoch_ms / 1000.0 - wall_now)


@dataclass(frozen=True, slots=True)
class _Dialect:
    """Header suffix after `x-ratelimit-{limit,remaining,reset}` -> window; how resets read."""

    windows: Mapping[str, tuple[Kind, float]]
    reset_at: Callable[[str, float, float], float | None]
    names: tuple[tuple[Kind, float, str, str, str], ...] = field(init=False)
    """Each window with its three header names, sorted by (kind, period): made once."""

    def __post_init__(self) -> None:
        names = []
        for suffix, (kind, period) in self.windows.items():
            tail = f"-{suffix}" if suffix else ""
            names.append((kind, period, *(f"x-ratelimit-{n}{tail}" for n in _NAMES)))
        object.__setattr__(self, "names", tuple(sorted(names, key=lambda n: (n[0], n[1]))))


_NAMES = ("limit", "remaining", "reset")


_DIALECTS: dict[str, _Dialect] = {
    # Groq: `-requests` is always per DAY, `-tokens` per MINUTE (reference B.1).
    "groq": _Dialect({"requests": ("requests", DAY), "tokens": ("tokens", MINUTE)}, _reset_after),
    "openai": _Dialect(
        {"requests": ("requests", MINUTE), "tokens": ("tokens", MINUTE)}, _reset_after
    ),
    # Cerebras documents requests-day and tokens-minute; the rest of the matrix shows up in
    # third-party captures, so every combination is read when present (reference B.2).
    "cerebras": _Dialect(
        {f"{k}-{p}": (k, PERIODS[p]) for k in KINDS for p in ("minute", "hour", "day")},
        _reset_after,
    ),
    # OpenRouter's bare headers don't name their window; the documented free limits are 20 RPM and
    # 50 (or 1000) RPD, and the 429 body names the daily one. Read as per-minute requests.
    "openrouter": _Dialect({"": ("requests", MINUTE)}, _reset_epoch_ms),
    # Mistral sends no reset headers (reference D), so its windows carry reset_at None.
    "mistral": _Dialect(
        {
            "tokens-minute": ("tokens", MINUTE),
            "tokens-month": ("tokens", MONTH),
            "req-minute": ("requests", MINUTE),
        },
        _reset_after,
    ),
    "gemini": _Dialect({}, _reset_after),
    "none": _Dialect({}, _reset_after),
}

STYLES: frozenset[str] = frozenset(_DIALECTS)
"""Dialect names accepted by `read_headers` and `read_error_body` ("gemini" acts as "none")."""


def _dialect(style: str) -> _Dialect:
    try:
        return _DIALECTS[style]
    except KeyError:
        raise ValueError(
            f"unknown rate-limit style {style!r}; expected one of {sorted(STYLES)}"
        ) from None


def _retry_at(headers: Mapping[str, str], now: float, wall_now: float) -> float | None:
    """`retry-after-ms` first, then `retry-after` as seconds or an HTTP date, as the SDKs do."""
    if "retry-after-ms" not in headers and "retry-after" not in headers:
        return None
    millis = _decimal(headers.get("retry-after-ms", "").strip())
    if millis is not None:
        return now + millis / 1000.0
    text = headers.get("retry-after", "").strip()
    seconds = _decimal(text)
    if seconds is not None:
        return now + seconds
    try:
        instant = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    # HTTP dates are UTC; `-0000` parses as naive, and timegm reads naive and aware alike as UTC.
    return now + max(0.0, calendar.timegm(instant.utctimetuple()) - wall_now)


def read_headers(
    style: str, headers: Mapping[str, str], now: float, wall_now: float
) -> RateReading:
    """Read a response's rate-limit headers in the named provider dialect (see `STYLES`).

    Raises ValueError for an unknown style; bad header values only read as None.
    """
    dialect = _dialect(style)
    # aiohttp's headers already look names up without regard to case: no copy needed then.
    lowered: Mapping[str, str] = (
        headers
        if isinstance(headers, CIMultiDictProxy | CIMultiDict)
        else {name.lower(): value for name, value in headers.items()}
    )
    if not dialect.windows and "retry-after" not in lowered and "retry-after-ms" not in lowered:
        return _NO_READING
    windows = []
    get = lowered.get
    for kind, period, limit_name, remaining_name, reset_name in dialect.names:
        limit = _count(get(limit_name))
        remaining = _count(get(remaining_name))
        if limit is None and remaining is None:
            continue
        reset = get(reset_name)
        reset_at = None if reset is None else dialect.reset_at(reset.strip(), now, wall_now)
        windows.append(WindowReading(kind, period, limit, remaining, reset_at))
    return RateReading(tuple(windows), _retry_at(lowered, now, wall_now))


# Message text is read only where a provider puts the window nowhere else: Groq's RPM and TPD have
# no header, Cerebras's 429 names minute/hour/day only in prose, OpenRouter's daily cap likewise.
# Each pattern is anchored on a documented phrase (reference B.3, D); no other code reads messages.
_GROQ_PHRASES: dict[str, tuple[Kind, float]] = {
    "requests per minute (RPM)": ("requests", MINUTE),
    "requests per day (RPD)": ("requests", DAY),
    "tokens per minute (TPM)": ("tokens", MINUTE),
    "tokens per day (TPD)": ("tokens", DAY),
}
_GROQ_RETRY_RE = re.compile(rf"Please try again in ((?:{_GO_PART})+)")
_CEREBRAS_PHRASE_RE = re.compile(r"(Requests|Tokens) per (minute|hour|day) limit exceeded")
_OPENROUTER_PHRASES: dict[str, tuple[Kind, float]] = {
    "Rate limit exceeded: free-models-per-day": ("requests", DAY),
}

_LIMIT_STATUSES = frozenset({413, 429})
_CEREBRAS_CODES: dict[str, Kind] = {
    "request_quota_exceeded": "requests",
    "token_quota_exceeded": "tokens",
}
_QUOTA_FAILURE = "type.googleapis.com/google.rpc.QuotaFailure"
_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
_QUOTA_PERIOD_RE = re.compile(r"Per(Minute|Hour|Day)")
_QUOTA_KIND_RE = re.compile(r"Requests|Tokens")


def _member(value: object, key: str) -> dict[str, object]:
    """`value[key]` when value is a JSON object and that member is one too, else empty."""
    found = value.get(key) if isinstance(value, dict) else None
    return found if isinstance(found, dict) else {}


def _text(value: dict[str, object], key: str) -> str:
    found = value.get(key)
    return found if isinstance(found, str) else ""


def _kind(value: object) -> Kind | None:
    if value == "requests":
        return "requests"
    return "tokens" if value == "tokens" else None


def _groq_body(data: object, now: float, wall_now: float) -> ErrorReading:
    error = _member(data, "error")
    message = _text(error, "message")
    phrase = next((w for p, w in _GROQ_PHRASES.items() if p in message), None)
    retry = _GROQ_RETRY_RE.search(message)
    delay = None if retry is None else parse_go_duration(retry.group(1))
    return ErrorReading(
        retry_at=None if delay is None else now + delay,
        exhausted=_kind(error.get("type")) or (phrase[0] if phrase else None),
        period=phrase[1] if phrase else None,
        quota_id=None,
    )


def _cerebras_body(data: object, now: float, wall_now: float) -> ErrorReading:
    # HTTP errors are top-level; in-stream errors nest under "error" beside "status_code" (A.2.2).
    error = _member(data, "error") or (data if isinstance(data, dict) else {})
    phrase = _CEREBRAS_PHRASE_RE.match(_text(error, "message"))
    kind = _CEREBRAS_CODES.get(_text(error, "code"))
    if kind is None and phrase is not None:
        kind = _kind(phrase.group(1).lower())
    period = PERIODS[phrase.group(2)] if phrase else None
    return ErrorReading(retry_at=None, exhausted=kind, period=period, quota_id=None)


def _openrouter_body(data: object, now: float, wall_now: float) -> ErrorReading:
    error = _member(data, "error")
    message = _text(error, "message")
    phrase = next((w for p, w in _OPENROUTER_PHRASES.items() if p in message), None)
    copied = _member(_member(error, "metadata"), "headers")
    headers = {k: str(v) for k, v in copied.items() if type(v) in (str, int, float)}
    reading = read_headers("openrouter", headers, now, wall_now)
    retry_at = reading.retry_at
    if retry_at is None:
        retry_at = next((w.reset_at for w in reading.windows if w.reset_at is not None), None)
    return ErrorReading(
        retry_at=retry_at,
        exhausted=phrase[0] if phrase else None,
        period=phrase[1] if phrase else None,
        quota_id=None,
    )


def _google_body(data: object, now: float, wall_now: float) -> ErrorReading:
    if isinstance(data, list):  # some captures wrap the error in a one-element array (D)
        data = data[0] if data else None
    details = _member(data, "error").get("details")
    retry_at: float | None = None
    quotas: list[ErrorReading] = []
    for detail in details if isinstance(details, list) else []:
        if not isinstance(detail, dict):
            continue
        delay = detail.get("retryDelay") if detail.get("@type") == _RETRY_INFO else None
        seconds = parse_go_duration(delay) if isinstance(delay, str) else None
        if seconds is not None and seconds >= 0:
            retry_at = now + seconds
        violations = detail.get("violations") if detail.get("@type") == _QUOTA_FAILURE else None
        for violation in violations if isinstance(violations, list) else []:
            quota_id = violation.get("quotaId") if isinstance(violation, dict) else None
            if isinstance(quota_id, str):
                quotas.append(_quota(quota_id))
    if not quotas:
        return ErrorReading(retry_at, None, None, None)
    # Several violations can be listed at once; the longest window is the one that binds.
    worst = max(quotas, key=lambda q: q.period or 0.0)
    return ErrorReading(retry_at, worst.exhausted, worst.period, worst.quota_id)


def _quota(quota_id: str) -> ErrorReading:
    """Kind and window named by a Google quotaId, e.g. `GenerateRequestsPerDayPerProject…`."""
    period = _QUOTA_PERIOD_RE.search(quota_id)
    kind = _QUOTA_KIND_RE.search(quota_id)
    return ErrorReading(
        retry_at=None,
        exhausted=_kind(kind.group(0).lower()) if kind else None,
        period=PERIODS[period.group(1).lower()] if period else None,
        quota_id=quota_id,
    )


# OpenAI and Mistral bodies don't say which window ran out. The Google RPC form names itself with
# `@type` URLs, so every header-less style may try it without misreading another provider's body.
_BODY_READERS: dict[str, Callable[[object, float, float], ErrorReading]] = {
    "groq": _groq_body,
    "cerebras": _cerebras_body,
    "openrouter": _openrouter_body,
    "gemini": _google_body,
    "none": _google_body,
}


def read_error_body(
    style: str, status: int, body: bytes, now: float, wall_now: float
) -> ErrorReading:
    """Read the limit information in a 413/429 error body; anything else reads as all None.

    `wall_now` converts OpenRouter's epoch-ms reset. Raises ValueError for an unknown style.
    """
    _dialect(style)
    reader = _BODY_READERS.get(style)
    if reader is None or status not in _LIMIT_STATUSES:
        return _NOTHING
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return _NOTHING
    return reader(data, now, wall_now)
