"""Provider-neutral values that each flavor renders in its own wire shape."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
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
    reasoning_tokens: int = 0

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


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One function call the fake makes instead of answering: `arguments` is a JSON text."""

    call_id: str
    name: str
    arguments: str

    def pieces(self, count: int = 3) -> list[str]:
        """`arguments` cut into about `count` consecutive pieces, as a stream delivers them."""
        size = len(self.arguments)
        cuts = [size * i // count for i in range(count + 1)]
        parts = (self.arguments[a:b] for a, b in pairwise(cuts))
        return [p for p in parts if p]

    @property
    def tokens(self) -> int:
        """A completion-token estimate for the call, 4 characters a token like prompts."""
        return (len(self.name) + len(self.arguments)) // 4 + 1

    def full(self) -> JSON:
        """The call as a non-streaming `message.tool_calls` entry."""
        return {
            "id": self.call_id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }

    def deltas(self, typed: bool = False) -> list[JSON]:
        """The call as `delta.tool_calls` entries: name first, then the argument pieces.

        OpenAI and Groq send `id`/`type` only in the first delta; `typed` repeats `type`
        on every delta, as the Cerebras SDK's chunk schema requires.
        """
        head: JSON = {
            "index": 0,
            "id": self.call_id,
            "type": "function",
            "function": {"name": self.name, "arguments": ""},
        }
        rest: list[JSON] = []
        for piece in self.pieces():
            delta: JSON = {"index": 0, "function": {"arguments": piece}}
            if typed:
                delta["type"] = "function"
            rest.append(delta)
        return [head, *rest]
