"""Rationing: the budgets, cooldowns and usage ledger behind every routing decision.

For each request it says which members have headroom, in which order to try them, and when
the first of the others will have room again; for each attempt it reserves the estimated
cost (atomically, in the shared state), reads what the provider reports, settles the real cost
and records the attempt.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import msgspec

from .errors import UpstreamError
from .headroom import (
    CEILING_MEMORY,
    COLD_COMPLETION,
    EXPECTATION_WEIGHT,
    ahead_of_pace,
    contradicts,
    daily_share,
    headroom_share,
    held_to,
    source_of,
)
from .limits import DAY, KINDS, Cost, Exhaustion, Kind, Limit, period_name
from .outcomes import attempted
from .pools import Refusals, keys_first, runs
from .ratelimits import RateReading
from .routing import Deployment, Member, Route
from .schemas import Usage
from .store import Attempt, UsageLedger
from .store.ledger import IN_PROGRESS, SHUTDOWN
from .store.state import End, Hold, MemoryState, SharedState, Snapshot
from .verdicts import Alarm, Ending, Outcome, Verdict, verdict_of

log = logging.getLogger("ai_api.rationing")

# An answer and a client leaving mean the same at any time (and reading the clock once more
# would move a test's stepping clock).
_ANSWERED = verdict_of(Outcome(Ending.ANSWERED), 0.0)
_LEFT = verdict_of(Outcome(Ending.LEFT), 0.0)
# A continuation that said something else than the part already sent: stopped by the gateway.
_DIVERGED = dataclasses.replace(_LEFT, status=200, error="continuation_diverged")
# Ended by the gateway as it stopped, after the upstream's first chunk or before it.
_SHUTDOWN = dataclasses.replace(_LEFT, status=200, error=SHUTDOWN)
_SHUTDOWN_EARLY = dataclasses.replace(_LEFT, status=0, error=SHUTDOWN)


@dataclass(slots=True)
class Ticket:
    """One attempt in flight."""

    deployment: Deployment
    route: str
    request_id: str
    started: float
    prompt_tokens: int
    hold: Hold
    attempt_id: str = ""
    """Its name in the ledger, where it is recorded as it begins and again as it ends."""
    first_token: float | None = None
    chars: int = 0
    cooled_until: float | None = None  # a rest the provider's headers asked for meanwhile
    diverged: bool = False  # a regenerated continuation said something else: it was stopped
    counts: bool = True  # a failure counts toward the circuit (a request's first on the member)
    closed: bool = field(default=False)

    @property
    def completion_estimate(self) -> int:
        """The completion tokens of what it answered, estimated (when usage did not come)."""
        return (self.chars + 3) // 4


def end_of(verdict: Verdict, tokens: int) -> End:
    """What `verdict` does to the shared state, the hold settled to `tokens`."""
    health: Literal["succeeded", "failed", "released"] = "released"
    if verdict.healthy:
        health = "succeeded"
    elif verdict.counts_failure:
        health = "failed"
    return End(
        tokens,
        health,
        verdict.retry_at,
        verdict.reading,
        verdict.exhausts,
        verdict.rest_until,
    )


class Rationing:
    """Budgets per (account, model), health per deployment, and the ledger."""

    def __init__(
        self,
        ledger: UsageLedger,
        state: SharedState | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ledger = ledger
        self.state: SharedState = state or MemoryState()
        self.clock = clock
        self._background: set[asyncio.Task[None]] = set()
        self._discredited: set[str] = set()  # budget keys whose guesses the provider belied
        self.learned: dict[str, dict[tuple[Kind, float], int]] = {}
        """Ceilings learned from 429s, by budget key and window."""
        self.expected: dict[str, float] = {}
        """The completion tokens an answer is expected to cost, by budget key."""
        self._held: dict[tuple[str, bool], tuple[Limit, ...]] = {}
        self._ids = itertools.count(1)
        self._stopping = False
        self._spin = itertools.count()
        self.refused = Refusals()
        """Keys a provider refused, until when they are out of rotation."""

    def limits(self, deployment: Deployment, guesses: bool = True) -> tuple[Limit, ...]:
        """The limits `deployment` is held to now (`guesses`: the preset's count, unless the
        provider's headers showed that the account is on another tier)."""
        d = deployment
        at = (d.public_name, guesses)
        held = self._held.get(at)
        if held is None:
            trusted = guesses and d.budget_key not in self._discredited
            learned = self.learned.get(d.budget_key, {})
            held = self._held[at] = held_to(d.limits, learned, trusted)
        return held

    def completion(self, deployment: Deployment, cap: int) -> int:
        """What the completion is reserved at: the cap for a provider that charges it up
        front; else the expected completion of its budget (`COLD_COMPLETION` before any
        answer was seen), within the cap."""
        d = deployment
        if d.spec.charges_cap:
            return cap
        expected = self.expected.get(d.budget_key)
        return min(cap, COLD_COMPLETION if expected is None else max(1, math.ceil(expected)))

    def expect(self, key: str, completion: int) -> None:
        """An answer of `key` cost `completion` tokens: move its expectation towards it."""
        old = self.expected.get(key)
        new = completion if old is None else old + EXPECTATION_WEIGHT * (completion - old)
        self.expected[key] = float(new)

    async def snapshot(self, deployment: Deployment) -> Snapshot:
        """The windows `deployment` spends from, and its health."""
        d = deployment
        limits = self.limits(d)
        return await self.state.snapshot(d.budget_key, limits, d.member, self.clock())

    async def turn(self, route: Route) -> int:
        """This request's turn on `route` (shared by every process)."""
        return await self.state.turn(route.name) if route.rotates else 0

    async def plan(
        self, route: Route, members: Sequence[Member], prefer: str | None = None
    ) -> Sequence[Member]:
        """`members` in the order to try them: the keys of a pool by their headroom (the
        member `prefer` names first: it served this conversation), keys the provider refused
        left out; on the `budget` route the largest remaining share of a daily limit first;
        paced members ahead of the day's pace last.

        Keys refused (401/403) are left out unless every member's was (then their rests say
        when). Health and headroom are not otherwise looked at here: `begin` checks both,
        atomically, as it claims and reserves, and says when a member without them will have
        them again.
        """
        now = self.clock()
        if self.refused:
            usable = [m for m in members if not self.refused.out(m.deployment, now)]
            members = usable or members
        if route.pooled:
            members = await self._keys_ordered(members, prefer)
        if prefer is not None and route.sticky == "members":
            members = sorted(members, key=lambda m: m.deployment.member != prefer)
        budget = route.strategy == "budget"
        if not budget and not any(m.pace for m in members):
            return members
        ready: list[tuple[float, Member]] = []
        paced: list[Member] = []
        for member in members:
            d = member.deployment
            limits = self.limits(d)
            snapshot = await self.state.snapshot(d.budget_key, limits, d.member, now)
            windows = snapshot.windows
            if member.pace and ahead_of_pace(windows, now, route.burst):
                paced.append(member)
            else:
                ready.append((daily_share(windows) if budget else 1.0, member))
        if budget:
            ready.sort(key=lambda item: -item[0])
        return [m for _, m in ready] + paced

    async def _keys_ordered(self, members: Sequence[Member], prefer: str | None) -> list[Member]:
        """Within each run of one pool's keys: `prefer` first, then the most headroom; keys
        with as much (one account's, or none known yet) take turns."""
        ordered: list[Member] = []
        for run in runs(members):
            if len(run) > 1:
                spin = next(self._spin) % len(run)
                run = run[spin:] + run[:spin]
                shares = {
                    m.deployment.member: headroom_share((await self.snapshot(m.deployment)).windows)
                    for m in run
                }
                run = keys_first(run, prefer, shares)
            ordered += run
        return ordered

    async def begin(
        self,
        deployment: Deployment,
        route: str,
        request_id: str,
        prompt: int,
        cap: int,
        *,
        guesses: bool = True,
    ) -> Ticket | float:
        """Reserve the expected cost (the prompt estimate and `completion`) and start an
        attempt; or, when there is no room or another request took the probe, when to try
        again (infinity: the request is larger than a window can ever take). `guesses`: the
        preset's guessed limits count (see `limits`)."""
        d = deployment
        now = self.clock()
        cost = Cost(tokens=prompt + self.completion(d, cap))
        limits = self.limits(d, guesses)
        hold = await self.state.begin(d.member, d.budget_key, limits, cost, now)
        if not isinstance(hold, Hold):
            return hold
        ticket = Ticket(d, route, request_id, now, prompt, hold, f"{request_id}.{next(self._ids)}")
        # In the ledger from its beginning: a process killed mid-answer loses no attempt.
        self.ledger.record(self._attempt(ticket, 0, IN_PROGRESS, prompt, 0, True, now))
        return ticket

    async def observe(self, ticket: Ticket, reading: RateReading) -> None:
        """The provider's rate-limit headers for this attempt."""
        d = ticket.deployment
        key = d.budget_key
        if d.guessed and key not in self._discredited and contradicts(d.limits, reading):
            self._discredited.add(key)
            self._held.clear()
            log.info(
                "%s reports limits unlike the built-in %s figures for %s: its account is on"
                " another tier, so the guessed windows it does not report are dropped",
                d.name,
                d.spec.label,
                d.model,
            )
        await self.state.observe(d.member, key, reading, self.clock())
        if reading.retry_at is not None:
            ticket.cooled_until = max(ticket.cooled_until or 0.0, reading.retry_at)

    async def succeeded(self, ticket: Ticket, usage: Usage | None) -> None:
        """The answer ended well: mark the member healthy, settle the real cost, record it."""
        await self._close(ticket, _ANSWERED, usage)

    async def failed(
        self, ticket: Ticket, error: UpstreamError, usage: Usage | None = None
    ) -> None:
        """The attempt failed: cool the member down as the provider asks, and record it."""
        d, now = ticket.deployment, self.clock()
        verdict = verdict_of(error.outcome(started=ticket.first_token is not None), now)
        if verdict.counts_failure and not ticket.counts:  # one request, one failure a member
            verdict = dataclasses.replace(verdict, counts_failure=False)
        if verdict.alarm is Alarm.MODEL_GONE:
            log.error(
                "%s answered %s for %s: it is out of rotation. Remove it from your configuration"
                " or set %s_MODEL to a current model (see `ai-api config check`).",
                d.name,
                error.code,
                d.model,
                d.spec.env_prefix,
            )
        elif verdict.alarm is Alarm.KEY_REFUSED and verdict.status == 401:
            # The key itself is bad: out for every model. A 402 or 403 may be about one model
            # or one prompt (a paid model, moderation): only this member rests.
            self.refused.refuse(d, verdict.status, verdict.rest_until or now, now)
        elif verdict.alarm is Alarm.KEY_REFUSED:
            log.error(
                "%s refused %s (HTTP %d): check %s",
                d.name,
                d.model,
                verdict.status,
                d.key_env or d.spec.key_env or "its API key variable",
            )
        await self._close(ticket, verdict, usage, now)

    def stop(self) -> None:
        """The gateway is ending the attempts still running (its drain's grace ran out): one
        cancelled from now on is recorded as `shutdown`, not as its client's leaving."""
        self._stopping = True

    def cancelled(self, ticket: Ticket) -> None:
        """The client went away (or the gateway stopped a continuation that diverged, or ended
        the attempt as it stopped): record what was spent, with status 499 (200 and
        `continuation_diverged`; `shutdown`), in the background: the request's task may be
        being cancelled."""
        if ticket.diverged:
            verdict = _DIVERGED
        elif self._stopping:
            verdict = _SHUTDOWN if ticket.first_token is not None else _SHUTDOWN_EARLY
        else:
            verdict = _LEFT
        task = asyncio.get_running_loop().create_task(self._close(ticket, verdict, None))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _close(
        self, ticket: Ticket, verdict: Verdict, usage: Usage | None, at: float | None = None
    ) -> None:
        """End the attempt in the shared state (at `at`, the verdict's moment, if given) and
        record it."""
        if ticket.closed:
            return
        ticket.closed = True
        now = self.clock()
        estimated = usage is None
        if usage is None:
            completion = ticket.completion_estimate
            prompt = ticket.prompt_tokens if verdict.charges_prompt else 0
        else:
            prompt, completion = usage.prompt_tokens, usage.completion_tokens
        d = ticket.deployment
        if verdict.healthy and ticket.first_token is not None:
            self.expect(d.budget_key, completion)
        end = end_of(verdict, prompt + completion)
        ready = await self.state.end(d.member, ticket.hold, end, now if at is None else at)
        learned = None if end.exhausts is None else await self._ceiling(d, end.exhausts, now)
        # Only a failure may have rested the member or opened its circuit; otherwise nothing
        # but the provider's headers did (the state may know of older rests: not this attempt's).
        if verdict.healthy or not verdict.may_rest:
            ready = ticket.cooled_until or 0.0
        attempt = self._attempt(
            ticket, verdict.status, verdict.error, prompt, completion, estimated, now, ready=ready
        )
        if learned is not None:
            window, limit = f"{learned[0]}|{learned[1]:g}", learned[2]
            attempt = msgspec.structs.replace(attempt, learned_window=window, learned_limit=limit)
        self.ledger.record(attempt)
        attempted(attempt)
        if ticket.hold.probe and verdict.healthy:
            log.info("%s answered its probe: its circuit is closed again", d.public_name)
        elif not verdict.healthy and verdict.may_rest and ready > now:
            await self._tell_rest(d, verdict, ready, now, probe=ticket.hold.probe)

    async def _tell_rest(
        self, d: Deployment, verdict: Verdict, ready: float, now: float, *, probe: bool
    ) -> None:
        """Log, once, that a failure rested `d` until `ready`, and whether its circuit is
        open (a failure that only rests it is told at INFO, an open circuit at WARNING)."""
        circuit = (await self.snapshot(d)).health.circuit
        rest = f"{ready - now:.0f} s"
        if circuit == "closed":
            log.info("%s rests for %s after %s", d.public_name, rest, verdict.error)
        elif probe:
            log.warning(
                "%s failed its probe (%s): its circuit stays open for %s",
                d.public_name,
                verdict.error,
                rest,
            )
        else:
            log.warning(
                "%s: circuit open after %s; it rests for %s", d.public_name, verdict.error, rest
            )

    @staticmethod
    def _attempt(
        ticket: Ticket,
        status: int,
        error: str | None,
        prompt: int,
        completion: int,
        estimated: bool,
        now: float,
        *,
        ready: float = 0.0,
    ) -> Attempt:
        """The ledger's record of `ticket` as of `now` (`ready`: its member's cooldown end)."""
        d = ticket.deployment
        return Attempt(
            at=ticket.started,
            request_id=ticket.request_id,
            route=ticket.route,
            provider=d.name,
            account=d.budget_key.split("|", 1)[0],
            model=d.model,
            status=status,
            error=error,
            prompt_tokens=prompt,
            completion_tokens=completion,
            estimated=estimated,
            ttft=None if ticket.first_token is None else ticket.first_token - ticket.started,
            duration=now - ticket.started,
            cooldown_until=ready or None,
            origin=d.origin or None,
            attempt_id=ticket.attempt_id,
            key=d.key or None,
        )

    async def _ceiling(
        self, d: Deployment, spent: Exhaustion, now: float
    ) -> tuple[Kind, float, int] | None:
        """A 429 named a window: if no header describes it, what was sent in it when the 429
        came is the provider's ceiling there, learned for the budget (and returned)."""
        if spent.kind is None or spent.period is None:
            return None
        limits = self.limits(d)
        snapshot = await self.state.snapshot(d.budget_key, limits, d.member, now)
        at = (spent.kind, spent.period)
        window = next((w for w in snapshot.windows if (w.kind, w.period) == at), None)
        source = "unknown" if window is None else source_of(window, limits)
        if window is None or source == "reported":
            return None
        if source == "unknown":  # a window first seen now: what the ledger says was sent
            ceiling = await self._sent(d, window.kind, window.period, now)
        else:  # the refused request was counted in its request windows: it did not fit
            ceiling = int(window.used) - (1 if window.kind == "requests" else 0)
        known = self.learned.get(d.budget_key, {}).get((window.kind, window.period))
        if ceiling < 1 or (known is not None and ceiling >= known):
            return None
        self.learn(d.budget_key, window.kind, window.period, ceiling)
        log.info(
            "%s answered 429 on %s/%s for %s, a window its headers do not describe: learned a"
            " ceiling of %d there",
            d.name,
            window.kind,
            period_name(window.period),
            d.model,
            ceiling,
        )
        return window.kind, window.period, ceiling

    async def _sent(self, d: Deployment, kind: Kind, period: float, now: float) -> int:
        """What the ledger holds as answered on `d`'s budget in the last `period` seconds."""
        account, model = d.budget_key.split("|", 1)
        answered = [
            a
            for a in await self.ledger.attempts_since(now - period)
            if a.account == account and (model == "*" or a.model == model) and a.status == 200
        ]
        if kind == "requests":
            return len(answered)
        return sum(a.prompt_tokens + a.completion_tokens for a in answered)

    def learn(self, key: str, kind: Kind, period: float, ceiling: int) -> None:
        """Hold `key` to `ceiling` in its (`kind`, `period`) window from now on."""
        self.learned.setdefault(key, {})[kind, period] = ceiling
        self._held.clear()

    async def recall(self, deployments: Iterable[Deployment]) -> int:
        """The ceilings the ledger holds from recent 429s, learned again (after a restart)."""
        by_name = {(d.name, d.model, d.key): d for d in deployments}
        count = 0
        for a in await self.ledger.ceilings_since(self.clock() - CEILING_MEMORY):
            d = by_name.get((a.provider, a.model, a.key or ""))
            if d is None or a.learned_window is None or a.learned_limit is None:
                continue
            name, _, period = a.learned_window.partition("|")
            kind = next((k for k in KINDS if k == name), None)
            if kind is not None:
                self.learn(d.budget_key, kind, float(period), a.learned_limit)
                count += 1
        return count

    async def rebuild(self, deployments: Iterable[Deployment]) -> int:
        """Learn again from the ledger after a restart: the ceilings of recent 429s and the
        expected completions of the last day, whatever the state's home; and replay that day
        into an in-memory state (a persistent one kept everything itself). The attempts
        replayed (0 for a persistent state)."""
        deployments = list(deployments)
        await self.recall(deployments)
        memory = self.state if isinstance(self.state, MemoryState) else None
        now = self.clock()
        by_key = {(d.name, d.model, d.key): d for d in deployments}
        attempts = await self.ledger.attempts_since(now - DAY)
        for a in attempts:
            d = by_key.get((a.provider, a.model, a.key or ""))
            if d is None:
                continue
            if a.error is None and not a.estimated:
                self.expect(d.budget_key, a.completion_tokens)
            if memory is None:
                continue
            # Charged as it happened: a replay may exceed a limit; it is not refused.
            budget = memory.budget(d.budget_key, self.limits(d))
            budget.reserve(Cost(tokens=a.prompt_tokens + a.completion_tokens), a.at)
            # A rest is the upstream's: after a restart with another base URL it starts afresh.
            same = a.origin is None or a.origin == d.origin
            if same and a.cooldown_until is not None and a.cooldown_until > now:
                memory.book.cool(d.member, a.cooldown_until)
        return len(attempts) if memory is not None else 0

    async def drain(self) -> None:
        """Wait for background recordings (at shutdown)."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
