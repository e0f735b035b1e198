"""Provider-neutral values that each flavor renders in its own wire shape."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

JSON = dict[str, Any]

# Made-up but plausible speeds, so usage timings look like a fast inference provider's.
_QUEUE_TIME = 0.000_2
_PROMPT_SECONDS_PER_TOKEN = 0.000_01
_COMPLETION_SECONDS_PER_TOKEN = 0.002


@dataclass(frozen=True, slots=True)
class Reply:
    """Identity of one completion: the fields every chunk of it repeats."""

    completion_id: str
    request_id: str
    created: int
    model: str
    fingerprint: str
    seed: int


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one completion, with the timings providers report beside them."""

    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def queue_time(self) -> float:
        return _QUEUE_TIME

    @property
    def prompt_time(self) -> float:
        return round(self.prompt_tokens * _PROMPT_SECONDS_PER_TOKEN, 6)

    @property
    def completion_time(self) -> float:
        return round(self.completion_tokens * _COMPLETION_SECONDS_PER_TOKEN, 6)

    @property
    def total_time(self) -> float:
        return round(self.queue_time + self.prompt_time + self.completion_time, 6)


@dataclass(frozen=True, slots=True)
class ErrorSpec:
    """One error as a provider states it: HTTP status, type, code, param and message."""

    status: int
    type: str
    code: str | None
    param: str | None
    message: str


@dataclass(frozen=True, slots=True)
class RateSnapshot:
    """What the rate-limit headers of one response say; resets in seconds."""

    limit_requests: int
    remaining_requests: int
    reset_requests: float
    limit_tokens: int
    remaining_tokens: int
    reset_tokens: float
