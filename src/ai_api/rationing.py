"""Rationing: the budgets, cooldowns and usage ledger behind every routing decision.

For each request it says which members have headroom, in which order to try them, and when
the first of the others will have room again; for each attempt it reserves the estimated
cost, reads what the provider reports, settles the real cost and records the attempt.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .cooldowns import CooldownBook
from .errors import UpstreamError, UpstreamStatus
from .limits import DAY, Budget, Cost, Reservation
from .ratelimits import RateReading
from .routing import Deployment, Member, Route
from .schemas import Usage
from .store import Attempt, UsageLedger

log = logging.getLogger("ai_api.rationing")

# How long a member rests after the provider refused our key (401/403) or wants payment
# (402): long enough not to hammer it, short enough to notice a fixed key without a restart.
_KEY_REST = 3600.0
# How long a model the provider says no longer exists stays out of rotation.
_GONE_REST = 10 * 365 * DAY
# A 429 without any hint of when to retry: rest this long.
_DEFAULT_RETRY = 60.0
_GONE = frozenset({"model_decommissioned", "model_not_found"})


@dataclass(slots=True)
class Plan:
    """The members to try, in order, and when a member now without room will have some."""

    members: list[Member]
    next_free: float | None


@dataclass(slots=True)
class Ticket:
    """One attempt in flight."""

    deployment: Deployment
    route: str
    request_id: str
    started: float
    prompt_tokens: int
    reservation: Reservation
    first_token: float | None = None
    chars: int = 0
    closed: bool = field(default=False)


class Rationing:
    """Budgets per (account, model), health per deployment, and the ledger."""

    def __init__(
        self,
        ledger: UsageLedger,
        *,
        clock: Callable[[], float] = time.time,
        book: CooldownBook | None = None,
    ) -> None:
        self.ledger = ledger
        self.clock = clock
        self.book = book or CooldownBook()
        self.budgets: dict[tuple[str, str], Budget] = {}

    def budget(self, deployment: Deployment) -> Budget:
        """The budget `deployment` spends, made from its known limits on first use."""
        key = deployment.budget_key
        budget = self.budgets.get(key)
        if budget is None:
            budget = self.budgets[key] = Budget(deployment.limits)
        return budget

    def plan(
        self, route: Route, members: Iterable[Member], cost_of: Callable[[Deployment], Cost]
    ) -> Plan:
        """Members with headroom in the order to try them (paced members ahead of their pace
        last), and the soonest moment one without room will have some."""
        now = self.clock()
        ready: list[Member] = []
        paced: list[Member] = []
        waits: list[float] = []
        for member in members:
            d = member.deployment
            key = d.public_name
            if not self.book.available(key, now):
                waits.append(self.book.ready_at(key))
                continue
            budget = self.budget(d)
            cost = cost_of(d)
            if not budget.fits(cost, now):
                waits.append(budget.free_at(cost, now))
                continue
            if member.pace and budget.ahead_of_pace(now, now - now % DAY, route.burst):
                paced.append(member)
                continue
            ready.append(member)
        if route.strategy == "budget":
            ready.sort(key=lambda m: -self.budget(m.deployment).daily_share(now))
        return Plan(ready + paced, min(waits) if waits else None)

    def begin(
        self, deployment: Deployment, route: str, request_id: str, prompt: int, cap: int
    ) -> Ticket:
        """Reserve the estimated cost (prompt plus completion cap) and start an attempt."""
        now = self.clock()
        self.book.begin(deployment.public_name, now)
        reservation = self.budget(deployment).reserve(Cost(tokens=prompt + cap), now)
        return Ticket(deployment, route, request_id, now, prompt, reservation)

    def observe(self, ticket: Ticket, reading: RateReading) -> None:
        """The provider's rate-limit headers for this attempt."""
        now = self.clock()
        self.budget(ticket.deployment).observe(reading, now)
        if reading.retry_at is not None:
            self.book.cool(ticket.deployment.public_name, reading.retry_at)

    def succeeded(self, ticket: Ticket, usage: Usage | None) -> None:
        """The answer ended well: settle its real cost and record it."""
        self.book.succeeded(ticket.deployment.public_name)
        self._close(ticket, 200, None, usage)

    def failed(self, ticket: Ticket, error: UpstreamError, usage: Usage | None = None) -> None:
        """The attempt failed: cool the member down as the provider asks, and record it."""
        now = self.clock()
        d = ticket.deployment
        key = d.public_name
        status = error.upstream_status if isinstance(error, UpstreamStatus) else 0
        if isinstance(error, UpstreamStatus) and error.rate is not None:
            self.budget(d).observe(error.rate, now)
        retry_at = error.retry_at
        if status == 429:
            retry_at = retry_at or now + _DEFAULT_RETRY
            self.budget(d).exhaust(error.exhausted, error.period, retry_at, now)
            self.book.cool(key, retry_at)
        elif error.code in _GONE:
            self.book.cool(key, now + _GONE_REST)
            log.error(
                "%s answered %s for %s: it is out of rotation. Remove it from your configuration"
                " or set %s_MODEL to a current model (see `ai-api config check`).",
                d.name,
                error.code,
                d.model,
                d.spec.env_prefix,
            )
        elif status in (401, 402, 403):
            self.book.cool(key, now + _KEY_REST)
            log.error("%s refused the key (HTTP %d): check %s", d.name, status, d.spec.key_env)
        if status == 0 or status >= 500 or status in (408, 413, 498):
            self.book.failed(key, now, retry_at)
        else:
            self.book.release(key)
        self._close(ticket, status, error.code, usage)

    def cancelled(self, ticket: Ticket) -> None:
        """The client went away: record what was spent, with status 499."""
        self.book.release(ticket.deployment.public_name)
        self._close(ticket, 499, "client_closed_request", None)

    def _close(self, ticket: Ticket, status: int, error: str | None, usage: Usage | None) -> None:
        if ticket.closed:
            return
        ticket.closed = True
        now = self.clock()
        estimated = usage is None
        if usage is None:
            completion = (ticket.chars + 3) // 4
            # Refused before processing (no output, an error status): the prompt was not run.
            refused = ticket.first_token is None and status not in (0, 200, 499)
            prompt = 0 if refused else ticket.prompt_tokens
        else:
            prompt, completion = usage.prompt_tokens, usage.completion_tokens
        ticket.reservation.settle(prompt + completion)
        d = ticket.deployment
        self.ledger.record(
            Attempt(
                at=ticket.started,
                request_id=ticket.request_id,
                route=ticket.route,
                provider=d.name,
                account=d.budget_key[0],
                model=d.model,
                status=status,
                error=error,
                prompt_tokens=prompt,
                completion_tokens=completion,
                estimated=estimated,
                ttft=None if ticket.first_token is None else ticket.first_token - ticket.started,
                duration=now - ticket.started,
                cooldown_until=self.book.ready_at(d.public_name) or None,
            )
        )

    async def rebuild(self, deployments: Iterable[Deployment]) -> int:
        """Replay the last day of the ledger into budgets and cooldowns (after a restart)."""
        now = self.clock()
        by_key = {(d.name, d.model): d for d in deployments}
        attempts = await self.ledger.attempts_since(now - DAY)
        for a in attempts:
            d = by_key.get((a.provider, a.model))
            if d is None:
                continue
            tokens = a.prompt_tokens + a.completion_tokens
            self.budget(d).reserve(Cost(tokens=tokens), a.at)
            if a.cooldown_until is not None and a.cooldown_until > now:
                self.book.cool(d.public_name, a.cooldown_until)
        return len(attempts)
