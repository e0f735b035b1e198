"""Cooldowns and circuits: when a deployment may be tried again after failing.

A `retry-after` or reset time puts a member in cooldown until then. Repeated failures open its
circuit: it rests for a cool-down that doubles with each new opening (up to a cap); after it,
exactly one probe request is let through, and its outcome closes the circuit or opens it again.
Nothing hammers a failing provider.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CircuitPolicy:
    """When a circuit opens (after `threshold` failures in a row) and how long it rests
    (`base` seconds, then `cap` each time its probe fails): one value for every home."""

    threshold: int = 3
    base: float = 15.0
    cap: float = 20.0
    """The longest rest: a probe goes with the first request past it, so a provider that comes
    back is tried again within 30 s while requests flow (every few seconds)."""

    def rest(self, opened: int) -> float:
        """How long a circuit opened for the `opened`th time rests."""
        return min(self.cap, self.base * 2.0 ** (opened - 1))


CIRCUIT = CircuitPolicy()
"""The default policy."""


@dataclass(slots=True)
class Health:
    """The state of one deployment."""

    cooldown_until: float = 0.0
    failures: int = 0
    opened: int = 0
    open_until: float = 0.0
    probing: bool = False

    @property
    def circuit(self) -> str:
        """`closed`, `open` or `half-open` (a probe is allowed or in flight)."""
        if self.opened == 0:
            return "closed"
        return "half-open" if self.probing else "open"


class CooldownBook:
    """Health of every deployment, keyed by any hashable name."""

    def __init__(self, policy: CircuitPolicy = CIRCUIT) -> None:
        self.policy = policy
        self.health: dict[str, Health] = {}

    def _get(self, key: str) -> Health:
        health = self.health.get(key)
        if health is None:
            health = self.health[key] = Health()
        return health

    def available(self, key: str, now: float) -> bool:
        """Whether a request may go to `key` now (a half-open circuit admits one probe)."""
        health = self.health.get(key)
        if health is None:
            return True
        if now < health.cooldown_until:
            return False
        if health.opened == 0:
            return True
        return now >= health.open_until and not health.probing

    def ready_at(self, key: str) -> float:
        """When `key` may next be tried."""
        health = self.health.get(key)
        if health is None:
            return 0.0
        return max(health.cooldown_until, health.open_until if health.opened else 0.0)

    def begin(self, key: str, now: float) -> bool:
        """A request is going to `key`: if its circuit is open past its rest, this is the probe
        (True)."""
        health = self.health.get(key)
        if health is not None and health.opened and now >= health.open_until:
            health.probing = True
            return True
        return False

    def succeeded(self, key: str) -> None:
        """`key` answered: its failures are forgotten and its circuit closes."""
        health = self.health.get(key)
        if health is not None:
            health.failures = health.opened = 0
            health.probing = False

    def release(self, key: str) -> None:
        """A probe ended without a verdict (a 429, a refused request, the client left): the
        next request may probe again."""
        health = self.health.get(key)
        if health is not None:
            health.probing = False

    def failed(self, key: str, now: float, retry_at: float | None = None) -> None:
        """`key` failed; `retry_at` (from the provider) starts a cooldown until then."""
        health = self._get(key)
        if retry_at is not None and retry_at > health.cooldown_until:
            health.cooldown_until = retry_at
        health.failures += 1
        if health.probing or health.failures >= self.policy.threshold:
            health.opened += 1
            health.open_until = now + self.policy.rest(health.opened)
            health.probing = False
            health.failures = 0

    def cool(self, key: str, until: float) -> None:
        """Keep `key` out of rotation until `until` without counting a failure."""
        health = self._get(key)
        health.cooldown_until = max(health.cooldown_until, until)
