"""One arithmetic, three homes: the same random operations give the same answers everywhere.

Seeded and bounded: each trial drives a `MemoryState`, a `SQLiteState` (a real file) and a
`RedisState` (a real redis-server) with one random sequence of operations on a fake clock
(begin, reserve, claim, settle, finish, failed, release, succeeded, cool, provider readings,
429s, time passing) and asks every home the same questions after each step (the answer to the
operation itself, `windows`, `free_at`, `ready_at`, `health`). Any answer that differs fails
the trial, with its seed and the steps that led there.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from ai_api.limits import DAY, HOUR, MINUTE, Cost, Kind, Limit
from ai_api.ratelimits import RateReading, WindowReading
from ai_api.store.sqlite_state import SQLiteState
from ai_api.store.state import Hold, MemoryState, SharedState, Snapshot

from . import homes as h
from .home_redis import RedisServer, require_redis, running_redis

T0 = 1_800_000_000.0 - 1_800_000_000.0 % DAY + 3600  # one hour into a UTC day
TRIALS = 20
STEPS = 40
MEMBERS = ("m1", "m2")
# Every window a provider may report for "k" (some configured, some only ever learned).
WINDOWS: tuple[tuple[Kind, float], ...] = (
    ("requests", MINUTE),
    ("tokens", MINUTE),
    ("tokens", HOUR),
    ("requests", DAY),
    ("tokens", DAY),
)
# Steps of the fake clock, in seconds: the same instant again, within a bucket, across
# buckets and windows, and past the UTC day's end. Quarter seconds, so that every time, bucket
# edge and reset is exact in binary floating point and the homes' answers can be compared
# exactly (each writes bucket edges its own way: `now - now % span`, `floor(now / span) *
# span`, `(floor(now * 60 / period) + 1) * period / 60`).
STEPS_OF_TIME = (0.0, 0.0, 0.25, 0.5, 1.0, 2.75, 7.0, 20.0, 45.0, 61.0, 200.0, 3700.0, 82_000.0)


def quarter(x: float) -> float:
    return round(x * 4) / 4


class Trial:
    """Three homes, one sequence of steps, and what each home answered."""

    def __init__(self, rng: random.Random, states: list[SharedState], seed: int) -> None:
        self.rng = rng
        self.states = states
        self.seed = seed
        self.now = T0
        self.log: list[str] = []
        self.holds: list[tuple[str | None, list[Hold]]] = []  # member (None: reserve), holds
        self.specs = (
            Limit("requests", MINUTE, rng.choice([2, 5, 20])),
            Limit("tokens", MINUTE, rng.choice([150, 400, 1000])),
            Limit("tokens", DAY, rng.choice([None, 600, 5000])),
        )

    async def each(
        self, what: str, op: Callable[[SharedState, int], Awaitable[Any]], *, step: bool = True
    ) -> list[Any]:
        """Run `op` on every home (a step, logged, or a question); the answers, after checking
        they are all the same."""
        if step:
            self.log.append(f"T0+{self.now - T0:g} {what}")
        answers = [await op(state, i) for i, state in enumerate(self.states)]
        shown = [describe(answer) for answer in answers]
        assert shown[0] == shown[1] == shown[2], self.failure(what, shown)
        return answers

    def failure(self, what: str, shown: list[Any]) -> str:
        steps = "\n  ".join(self.log[-25:])
        return (
            f"seed {self.seed}, at T0+{self.now - T0:g}: {what} answered\n"
            f"  memory {shown[0]}\n  sqlite {shown[1]}\n  redis  {shown[2]}\n"
            f"after (last 25 steps):\n  {steps}"
        )

    def cost(self) -> Cost:
        return Cost(tokens=self.rng.choice([0, 10, 50, 80, 120, 300, 700]))

    async def step(self) -> None:
        roll = self.rng.random()
        member = self.rng.choice(MEMBERS)
        for upto, op in OPS:
            # An op that cannot run now (no hold to settle) leaves its share to the next.
            if roll < upto and await op(self, member):
                break
        await self.ask()

    async def time_passes(self, member: str) -> bool:
        self.now = quarter(self.now + self.rng.choice(STEPS_OF_TIME))
        self.log.append(f"time -> T0+{self.now - T0:g}")
        return True

    async def begin(self, member: str) -> bool:
        cost, now = self.cost(), self.now
        got = await self.each(
            f"begin({member}, {cost.tokens})",
            lambda s, _: s.begin(member, "k", self.specs, cost, now),
        )
        if isinstance(got[0], Hold):
            self.holds.append((member, got))
        return True

    async def reserve(self, member: str) -> bool:
        cost, now = self.cost(), self.now
        got = await self.each(
            f"reserve({cost.tokens})", lambda s, _: h.reserve(s, "k", self.specs, cost, now)
        )
        if isinstance(got[0], Hold):
            self.holds.append((None, got))
        return True

    async def settle(self, member: str) -> bool:
        if not self.holds:
            return False
        rng, now = self.rng, self.now
        owner, holds = rng.choice(self.holds)
        tokens = rng.choice([0, 5, 40, 100, 250, 600])
        if owner is not None and rng.random() < 0.5:
            await self.each(
                f"finish({owner}, {holds[0].tokens} -> {tokens})",
                lambda s, i: h.finish(s, owner, holds[i], tokens, now),
            )
        else:
            await self.each(
                f"settle({holds[0].tokens} -> {tokens})",
                lambda s, i: h.settle(s, holds[i], tokens, now),
            )
        return True

    async def observe(self, member: str) -> bool:
        reading, now = self.reading(), self.now
        await self.each(f"observe({reading})", lambda s, _: s.observe("m", "k", reading, now))
        return True

    async def exhaust(self, member: str) -> bool:
        rng, now = self.rng, self.now
        named: list[tuple[Kind | None, float | None]] = [*WINDOWS, (None, None)]
        kind, period = rng.choice([*named, ("requests", None), ("tokens", None)])
        until = quarter(now + rng.choice([1, 10, 30, 90]))
        await self.each(
            f"exhaust({kind}, {period}, until T0+{until - T0:g})",
            lambda s, _: h.exhaust(s, "k", kind, period, until, now),
        )
        return True

    async def failed(self, member: str) -> bool:
        rng, now = self.rng, self.now
        retry = rng.choice([None, None, quarter(now + rng.choice([1, 5, 30]))])
        await self.each(f"failed({member}, {retry})", lambda s, _: h.failed(s, member, now, retry))
        return True

    async def cool(self, member: str) -> bool:
        now = self.now
        until = quarter(now + self.rng.choice([-5, 3, 20]))
        await self.each(
            f"cool({member}, T0+{until - T0:g})", lambda s, _: h.cool(s, member, until, now)
        )
        return True

    async def claim(self, member: str) -> bool:
        now = self.now
        await self.each(f"claim({member})", lambda s, _: h.claim(s, member, now))
        return True

    async def release(self, member: str) -> bool:
        await self.each(f"release({member})", lambda s, _: h.release(s, member))
        return True

    async def succeeded(self, member: str) -> bool:
        await self.each(f"succeeded({member})", lambda s, _: h.succeeded(s, member))
        return True

    def reading(self) -> RateReading:
        rng, now = self.rng, self.now
        windows = []
        for kind, period in rng.sample(WINDOWS, rng.randint(1, 2)):
            limit = rng.choice([None, 0, 100, 500, 2000])
            remaining = rng.choice([None, 0, 30, 100, 250, 1000])
            reset = rng.choice([None, quarter(now + rng.choice([0.5, 5, 30, 59, 300]))])
            windows.append(WindowReading(kind, period, limit, remaining, reset))
        return RateReading(tuple(windows), None)

    async def ask(self) -> None:
        """The questions every home must answer alike after each step."""
        now = self.now
        for member in MEMBERS:
            await self.each(
                f"snapshot({member})",
                snapshot(self.specs, member, now),
                step=False,
            )


# Each step's share of the rolls, as upper bounds of a roll in [0, 1).
OPS: tuple[tuple[float, Callable[[Trial, str], Awaitable[bool]]], ...] = (
    (0.15, Trial.time_passes),
    (0.35, Trial.begin),
    (0.42, Trial.reserve),
    (0.55, Trial.settle),
    (0.68, Trial.observe),
    (0.73, Trial.exhaust),
    (0.81, Trial.failed),
    (0.85, Trial.cool),
    (0.90, Trial.claim),
    (0.95, Trial.release),
    (1.00, Trial.succeeded),
)


def snapshot(
    specs: tuple[Limit, ...], member: str, now: float
) -> Callable[[SharedState, int], Awaitable[Snapshot]]:
    return lambda state, _: state.snapshot("k", specs, member, now)


def describe(answer: Any) -> Any:
    """An answer as a comparable value: a hold by the tokens it holds (its handle is each
    home's own), windows by (kind, period) (their order is each home's own)."""
    if isinstance(answer, Hold):
        return ("hold", answer.key, answer.tokens)
    if isinstance(answer, Snapshot):
        windows = answer.windows
        shown = sorted(((w.kind, w.period), w.limit, w.used, w.remaining, w.today) for w in windows)
        return (shown, answer.health, answer.ready_at)
    return answer


@pytest.fixture
async def redis_server() -> AsyncIterator[RedisServer]:
    require_redis()
    async with running_redis() as server:
        yield server


async def test_every_home_answers_every_question_alike(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    from ai_api.store.redis_state import RedisState

    for seed in range(TRIALS):
        memory = MemoryState()
        sqlite = await SQLiteState(tmp_path / f"state-{seed}.sqlite3").open()
        redis = await RedisState(redis_server.url, prefix=f"t{seed}:").open()
        try:
            trial = Trial(random.Random(seed), [memory, sqlite, redis], seed)
            for _ in range(STEPS):
                await trial.step()
        finally:
            for state in (memory, sqlite, redis):
                await state.close()
