"""Request and token allowances of one fake upstream, refilling continuously on a clock.

Both providers describe their limits as buckets that refill over the window (Groq's
`x-ratelimit-reset-requests` is the time until the daily bucket is full again: 30 requests spent
of 14400 a day read `2m59.56s`), so a bucket is what the fake keeps.
"""

from __future__ import annotations

from collections.abc import Callable

from .wire import RateSnapshot


class Bucket:
    """An allowance of `limit` units that refills at `limit / window` units a second."""

    __slots__ = ("_level", "_rate", "_stamp", "limit")

    def __init__(self, limit: int, window: float, now: float) -> None:
        self.limit = limit
        self._rate = limit / window
        self._level = float(limit)
        self._stamp = now

    def _refill(self, now: float) -> None:
        if now > self._stamp:
            self._level = min(float(self.limit), self._level + (now - self._stamp) * self._rate)
        self._stamp = now

    def take(self, amount: int, now: float) -> None:
        """Spend `amount` units; the level never goes below zero."""
        self._refill(now)
        self._level = max(0.0, self._level - amount)

    def remaining(self, now: float) -> int:
        self._refill(now)
        return int(self._level)

    def reset_in(self, now: float) -> float:
        """Seconds until the bucket is full again."""
        self._refill(now)
        return (self.limit - self._level) / self._rate

    def wait_for(self, amount: int, now: float) -> float:
        """Seconds until `amount` units are available (0.0 if they are now)."""
        self._refill(now)
        missing = min(amount, self.limit) - self._level
        return max(0.0, missing / self._rate)


class RateBook:
    """The two allowances a fake reports: requests per day and tokens per minute."""

    __slots__ = ("_clock", "requests", "tokens")

    def __init__(
        self,
        requests_limit: int,
        tokens_limit: int,
        clock: Callable[[], float],
        request_window: float = 86_400.0,
        token_window: float = 60.0,
    ) -> None:
        self._clock = clock
        now = clock()
        self.requests = Bucket(requests_limit, request_window, now)
        self.tokens = Bucket(tokens_limit, token_window, now)

    def charge(self, tokens: int) -> None:
        """Count one request costing `tokens` tokens."""
        now = self._clock()
        self.requests.take(1, now)
        self.tokens.take(tokens, now)

    def shortfall(self, tokens: int) -> float:
        """Seconds until one request of `tokens` tokens fits (0.0 if it fits now)."""
        now = self._clock()
        return max(self.requests.wait_for(1, now), self.tokens.wait_for(tokens, now))

    def snapshot(self) -> RateSnapshot:
        now = self._clock()
        return RateSnapshot(
            limit_requests=self.requests.limit,
            remaining_requests=self.requests.remaining(now),
            reset_requests=self.requests.reset_in(now),
            limit_tokens=self.tokens.limit,
            remaining_tokens=self.tokens.remaining(now),
            reset_tokens=self.tokens.reset_in(now),
        )
