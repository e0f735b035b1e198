"""The Failover Bench fault scenarios (methodology v0.1) run end to end against ai-api.

    python3 bench/failover.py [--json] [--only S01,S15]

The system under test is ai-api on its defaults with one `fallback` route, Groq then Cerebras,
both served by the project's fake upstreams on 127.0.0.1 (real HTTP). Each of the sixteen
scenarios starts fresh fakes and a fresh gateway, breaks the primary (Groq) the way the
methodology describes, makes the call a client would make (a stream on `/v1/chat/completions`),
reads what the fakes saw, scores the methodology's checks and gives a verdict: pass, partial,
safe or fail. One line per scenario, then `P pass, Q partial, R safe, S fail of 16`. The exit
code is 0 whatever the verdicts.

Every healthy answer is one set sixty-word text (`CANONICAL`, the fakes' `answer_text`), so an
answer stitched from two members can be checked word for word, as the methodology's canonical
answer is.

Time is compressed: the methodology's long waits would take minutes. S06, S07 and S09 (silence,
a slow first token, a stall) run with every duration of the scenario (the fault's, ai-api's
default timeouts and the checks' limits) multiplied by `COMPRESSED`, so they keep their order;
their seconds are reported in the methodology's (uncompressed) terms. S15 (a primary down for
60 s, twenty requests 4 s apart) runs on a stepping clock shared by the gateway and the fakes,
which jumps to each request's send time. Everything else runs in real time (S01 waits the 2 s
its Retry-After asks for); tokens come 1 ms apart (the methodology's 15 ms, shortened).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import itertools
import json
import logging
import os
import re
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

try:
    import aiohttp
except ModuleNotFoundError:  # a python3 without the project's dependencies: use the repo's venv
    _VENV = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "python"
    if __name__ == "__main__" and _VENV.exists() and Path(sys.executable) != _VENV:
        os.execv(str(_VENV), [str(_VENV), *sys.argv])
    raise

from ai_api.config import preset_settings
from ai_api.fakes import FLAVORS, FakeUpstream, Fault, SeenRequest
from ai_api.fakes.answer import prompt_tokens
from ai_api.providers.presets import CEREBRAS, GROQ, ProviderSpec
from ai_api.server import running
from ai_api.settings import MemberSettings, ProviderSettings, RouteSettings, Settings

METHODOLOGY = "0.1"
ROUTE = "failover-bench"
PROMPT = "In sixty words: why is a gateway judged on the days its providers fail?"
CANONICAL = (
    "A gateway is judged on the bad days, not the good ones. When a provider stalls, resets,"
    " refuses or cuts an answer halfway, the caller should receive one whole reply or a clear"
    " error, quickly and without surprises. Retries must stay bounded, fallbacks deliberate,"
    " and a provider that has healed should be welcomed back soon, not left out for good."
)
KEYS = {"groq": "gsk_failover_bench_0123456789", "cerebras": "csk-failover-bench-0123456789"}

# The methodology's `full` timing profile, in seconds (and stream positions, in tokens).
RETRY_AFTER = 2.0
SLOW_FIRST_TOKEN = 20.0
STALL = 30.0
NO_RESPONSE = 120.0
FLAP_DOWN = 60.0
CUT_AFTER = 40
STALL_AFTER = 20
MALFORMED_AT = 10
ALIVE_LIMIT = 10.0

TOKEN_DELAY = 0.001
COMPRESSED = 0.1
"""The time scale of the scenarios whose waits are long (S06, S07, S09)."""
START = 1_800_000_000.0  # the stepping clock's epoch: 2027-01-15T08:00:00Z
_TIMEOUTS = ("connect_timeout", "read_timeout", "first_token_timeout", "total_timeout", "deadline")

Verdict = Literal["pass", "partial", "safe", "fail"]
VERDICTS: tuple[Verdict, ...] = ("pass", "partial", "safe", "fail")
Status = Literal["pass", "fail", "info", "na"]


# The scenario table


@dataclass(frozen=True, slots=True)
class Check:
    """One machine check of a scenario, in the methodology's terms: `kind` names what is
    measured, `value` (and `window`, seconds) its limit. A failing `advisory` check makes a
    rescue partial instead of failing the scenario; an `informational` one never counts;
    `needs_fallback` ones are n/a for a system without a fallback (ai-api has one)."""

    id: str
    kind: str
    value: float = 0.0
    window: float = 0.0
    advisory: bool = False
    informational: bool = False
    needs_fallback: bool = False


@dataclass(frozen=True, slots=True)
class Faults:
    """What breaks the primary: `first` faults for its next requests, one each; `always` for
    every other one (for `down_for` seconds only, when set); and whether the fallback refuses
    a prefill (a conversation ending with a partial assistant answer)."""

    first: tuple[Fault, ...] = ()
    always: Fault | None = None
    down_for: float | None = None
    fallback_refuses_prefill: bool = False


@dataclass(frozen=True, slots=True)
class Sequence:
    """A sequence scenario's requests: how many, how far apart, and each one's hang limit."""

    count: int = 20
    interval: float = 4.0
    per_request_max_wall: float = 30.0


@dataclass(frozen=True, slots=True)
class Scenario:
    """One row of the catalogue: the fault, what a correct system does, and the checks."""

    id: str
    title: str
    fault: str
    correct: str
    faults: Faults
    checks: tuple[Check, ...]
    max_wall: float = 45.0
    """A call still running after this many seconds is a hang."""
    ideal: Literal["success", "error"] = "success"
    scale: float = 1.0
    sequence: Sequence | None = None


def _check(id: str, kind: str, value: float = 0.0, **more: Any) -> Check:
    return Check(id, kind, value, **more)


NO_HANG = _check("no_hang", "no_hang")
NOT_TRUNCATED = _check("no_truncated_success", "no_truncated_success")
ALIVE = _check("alive_after", "alive_after")
BOUNDED_6 = _check("bounded_attempts", "attempts_primary_max", 6)

SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "S01",
        "429 with Retry-After",
        "The first attempt gets HTTP 429 with `Retry-After: 2`; later attempts succeed.",
        "Wait as the header asks (about 2 s) and retry, or fail over; never loop tightly.",
        Faults(first=(Fault(status=429, retry_after=RETRY_AFTER),)),
        (
            _check("retried", "attempts_primary_min", 2, advisory=True),
            _check("retry_after_honoured", "first_gap_min_s", 1.8, advisory=True),
            _check("no_hammer", "max_attempts_within", 2, window=1.5),
        ),
        max_wall=20,
    ),
    Scenario(
        "S02",
        "429 without Retry-After, persistent",
        "Every attempt gets HTTP 429 without a Retry-After header.",
        "Back off, then fail over (or fail cleanly); never hammer the provider.",
        Faults(always=Fault(status=429)),
        (_check("no_hammer", "max_attempts_within", 4, window=3), BOUNDED_6, NO_HANG),
        max_wall=40,
    ),
    Scenario(
        "S03",
        "500 once, then healthy",
        "The first attempt gets HTTP 500; the next succeeds.",
        "Retry once on the same provider; failing over instead is accepted but noted.",
        Faults(first=(Fault(status=500),)),
        (NO_HANG, _check("same_provider_retry", "attempts_primary_min", 2, advisory=True)),
        max_wall=20,
    ),
    Scenario(
        "S04",
        "503 persistent",
        "Every attempt gets HTTP 503 (overloaded).",
        "Fail over within the retry budget; with nowhere to go, surface the original error.",
        Faults(always=Fault(status=503)),
        (BOUNDED_6, NO_HANG),
        max_wall=40,
    ),
    Scenario(
        "S05",
        "TCP reset before headers",
        "The first attempt's connection is reset before any response byte; later ones succeed.",
        "Retry the request or fail over: answer either way.",
        Faults(first=(Fault(drop=True, reset=True),)),
        (NO_HANG,),
        max_wall=20,
    ),
    Scenario(
        "S06",
        "No response at all",
        "The provider takes the request and stays silent (up to 120 s).",
        "End the call within the configured budget (100 s); failing over after the first"
        " timeout, not retrying the silent route, is the mature behaviour (advisory).",
        Faults(always=Fault(headers_delay=NO_RESPONSE)),
        (
            _check("within_budget", "wall_max_s", 100),
            NO_HANG,
            _check("silent_route_not_retried", "attempts_primary_max", 1, advisory=True),
        ),
        max_wall=130,
        scale=COMPRESSED,
    ),
    Scenario(
        "S07",
        "Slow first token",
        "Headers come at once, the first token after 20 s, the rest at the normal pace.",
        "Answer; a first-token limit that fails over (within 15 s) is the mature behaviour.",
        Faults(always=Fault(first_token_delay=SLOW_FIRST_TOKEN)),
        (NO_HANG, _check("ttft_limit", "wall_max_s", 15, advisory=True, needs_fallback=True)),
        max_wall=60,
        scale=COMPRESSED,
    ),
    Scenario(
        "S08",
        "Stream cut mid-answer",
        "The stream dies after 40 of the 60 tokens, without its terminating chunk.",
        "Fail over and deliver the whole answer, or a clear error; never a truncated success.",
        Faults(always=Fault(cut_after=CUT_AFTER)),
        (NOT_TRUNCATED, NO_HANG),
        max_wall=40,
    ),
    Scenario(
        "S09",
        "Stream stalls",
        "After 20 tokens the connection stays open and silent for 30 s, then closes.",
        "Notice the stall within a bounded time, fail over or fail cleanly, stay healthy.",
        Faults(always=Fault(stall_after=STALL_AFTER, stall_seconds=STALL)),
        (_check("bounded", "wall_max_s", 45), NOT_TRUNCATED, ALIVE, NO_HANG),
        max_wall=70,
        scale=COMPRESSED,
    ),
    Scenario(
        "S10",
        "Malformed chunk in the stream",
        "After ten tokens one SSE event is not JSON; the stream otherwise completes.",
        "Skip it or fail cleanly; nothing partial reaches the caller; the process stays up.",
        Faults(always=Fault(malformed_after=MALFORMED_AT)),
        (
            ALIVE,
            _check("no_garbage", "no_truncated_success"),
            NO_HANG,
            _check("recovered_in_place", "complete", advisory=True),
        ),
        max_wall=30,
    ),
    Scenario(
        "S11",
        "Stream ends without [DONE]",
        "A complete stream, properly ended at the HTTP level, but without `data: [DONE]`.",
        "Finish the answer promptly and report usage; do not wait for the missing sentinel.",
        Faults(always=Fault(no_done=True)),
        (
            _check("prompt_finalise", "wall_max_s", 8),
            _check("usage_reported", "usage_present", advisory=True),
        ),
        max_wall=30,
    ),
    Scenario(
        "S12",
        "Context length exceeded",
        "Every attempt gets HTTP 400 with code `context_length_exceeded`.",
        "Never resend the same request to the model; use a larger-context model if one is"
        " configured, else fail cleanly.",
        Faults(always=Fault(status=400, code="context_length_exceeded")),
        (
            _check("no_blind_retry", "context_retry_discipline"),
            _check("bounded_attempts", "attempts_primary_max", 2),
            NO_HANG,
        ),
        max_wall=20,
    ),
    Scenario(
        "S13",
        "Content-filter rejection",
        "Every attempt gets HTTP 400 with code `content_policy_violation`.",
        "Do not retry the model; pass the provider's reason on. Failing over is noted only.",
        Faults(always=Fault(status=400, code="content_policy_violation")),
        (
            _check("no_same_model_retry", "attempts_primary_eq", 1),
            NO_HANG,
            _check("fallback_attempted", "fallback_used", advisory=True, informational=True),
        ),
        max_wall=20,
        ideal="error",
    ),
    Scenario(
        "S14",
        "Fallback target rejects prefill",
        "The primary's stream dies after 40 tokens; the fallback refuses any request whose"
        " last message is an assistant prefill.",
        "Continue only where the fallback can, else restart cleanly; the prefill's 400 must"
        " not be the caller's final error.",
        Faults(always=Fault(cut_after=CUT_AFTER), fallback_refuses_prefill=True),
        (_check("no_prefill_masking", "no_prefill_masking"), NOT_TRUNCATED),
        max_wall=40,
    ),
    Scenario(
        "S15",
        "Primary flaps: down, then healthy",
        "The primary answers 503 for its first 60 s, then is healthy; twenty requests 4 s apart.",
        "Serve from the fallback while the primary is down, probe it, and return to it within"
        " 30 s of its recovery.",
        Faults(always=Fault(status=503), down_for=FLAP_DOWN),
        (
            _check("no_hang", "seq_no_hang"),
            _check("served_during_outage", "seq_served_during_outage", needs_fallback=True),
            _check("recovered", "seq_recovered_within_s", 30, needs_fallback=True),
            _check("probe_discipline", "seq_probe_discipline", advisory=True, informational=True),
        ),
        max_wall=200,
        sequence=Sequence(),
    ),
    Scenario(
        "S16",
        "Fail-over accounting",
        "Every primary attempt gets HTTP 503; the fallback answers.",
        "The caller sees the fallback's model name and usage.",
        Faults(always=Fault(status=503)),
        (
            _check("reports_fallback_model", "reported_model_is_fallback", needs_fallback=True),
            _check("usage_present", "usage_present", advisory=True, needs_fallback=True),
            BOUNDED_6,
        ),
        max_wall=40,
    ),
)
BY_ID = {s.id: s for s in SCENARIOS}


# What was measured: the caller's view and the provider's


Outcome = Literal["success", "error", "hang"]
_SPACES = re.compile(r"\s+")


def normalised(text: str) -> str:
    return _SPACES.sub(" ", text.strip())


@dataclass(slots=True)
class Call:
    """One call as the client saw it (`elapsed` in the methodology's seconds)."""

    outcome: Outcome
    content: str = ""
    error: str | None = None
    elapsed: float = 0.0
    model: str | None = None
    usage: dict[str, Any] | None = None

    @property
    def complete(self) -> bool:
        """Whether the content is the whole answer, word for word."""
        return normalised(self.content) == normalised(CANONICAL)


@dataclass(frozen=True, slots=True)
class Attempt:
    """One request a fake upstream saw: whose, when (seconds into the scenario), its status,
    its prompt's size and whether it ended with an assistant prefill."""

    primary: bool
    at: float
    status: int
    prompt_tokens: int = 0
    prefill: bool = False


@dataclass(frozen=True, slots=True)
class SequenceStats:
    """A sequence scenario's measures (times in seconds from its start)."""

    requests: int
    hangs: int
    during_down: int
    served_during_down: int
    primary_during_down: int
    recovered_after: float | None


@dataclass(slots=True)
class Measured:
    """Everything a scenario's checks read."""

    call: Call
    attempts: list[Attempt]
    fallback_model: str
    alive_after: bool = True
    alive_error: str | None = None
    sequence: SequenceStats | None = None

    @property
    def primary(self) -> list[Attempt]:
        return [a for a in self.attempts if a.primary]

    @property
    def fallback(self) -> list[Attempt]:
        return [a for a in self.attempts if not a.primary]

    @property
    def first_gap(self) -> float | None:
        times = [a.at for a in self.primary]
        return times[1] - times[0] if len(times) >= 2 else None

    @property
    def prefill_rejections(self) -> int:
        return sum(1 for a in self.fallback if a.prefill and a.status == 400)


# Scoring


@dataclass(frozen=True, slots=True)
class Scored:
    """One check's result."""

    id: str
    status: Status
    detail: str
    advisory: bool


Judge = Callable[[Check, Measured], tuple[bool | None, str]]


def _attempts(m: Measured, ok: Callable[[int], bool]) -> tuple[bool, str]:
    n = len(m.primary)
    return ok(n), f"{n} primary attempt(s)"


def _no_hang(c: Check, m: Measured) -> tuple[bool | None, str]:
    return m.call.outcome != "hang", f"ended after {m.call.elapsed:.1f} s ({m.call.outcome})"


def _complete(c: Check, m: Measured) -> tuple[bool | None, str]:
    ok = m.call.outcome == "success" and m.call.complete
    return ok, "the complete answer" if ok else f"not the complete answer ({m.call.outcome})"


def _not_truncated(c: Check, m: Measured) -> tuple[bool | None, str]:
    if m.call.outcome == "success" and not m.call.complete:
        words = len(normalised(m.call.content).split())
        return False, f"success claimed with {words} of {len(CANONICAL.split())} words"
    return True, "no truncated answer presented as a success"


def _primary_min(c: Check, m: Measured) -> tuple[bool | None, str]:
    return _attempts(m, lambda n: n >= c.value)


def _primary_max(c: Check, m: Measured) -> tuple[bool | None, str]:
    return _attempts(m, lambda n: n <= c.value)


def _primary_eq(c: Check, m: Measured) -> tuple[bool | None, str]:
    return _attempts(m, lambda n: n == c.value)


def _retry_discipline(c: Check, m: Measured) -> tuple[bool | None, str]:
    """One attempt, or retries each strictly smaller than the one before (a compaction)."""
    sizes = [a.prompt_tokens for a in m.primary]
    if len(sizes) <= 1:
        return True, f"{len(sizes)} primary attempt(s)"
    shrinking = all(b < a for a, b in itertools.pairwise(sizes))
    return shrinking, f"{len(sizes)} primary attempts, prompt sizes {sizes}"


def _first_gap(c: Check, m: Measured) -> tuple[bool | None, str]:
    gap = m.first_gap
    if gap is None:
        return False, "no second primary attempt"
    return gap >= c.value, f"{gap:.2f} s between the first two primary attempts"


def _attempts_within(c: Check, m: Measured) -> tuple[bool | None, str]:
    times = [a.at for a in m.primary]
    n = sum(1 for t in times if t - times[0] < c.window)
    return n <= c.value, f"{n} primary attempt(s) in the first {c.window:g} s"


def _wall_max(c: Check, m: Measured) -> tuple[bool | None, str]:
    return m.call.outcome != "hang" and m.call.elapsed <= c.value, f"{m.call.elapsed:.2f} s"


def _alive(c: Check, m: Measured) -> tuple[bool | None, str]:
    return m.alive_after, "a healthy call succeeded afterwards" if m.alive_after else (
        f"a healthy call failed afterwards: {m.alive_error}"
    )


def _fallback_used(c: Check, m: Measured) -> tuple[bool | None, str]:
    return bool(m.fallback), f"{len(m.fallback)} fallback attempt(s)"


def _reported_fallback(c: Check, m: Measured) -> tuple[bool | None, str]:
    if not m.fallback:
        return None, "n/a: the fallback was never used"
    return m.call.model == m.fallback_model, f"the answer's model is {m.call.model!r}"


def _usage(c: Check, m: Measured) -> tuple[bool | None, str]:
    return bool(m.call.usage), f"usage {m.call.usage}" if m.call.usage else "no usage block"


def _prefill_masking(c: Check, m: Measured) -> tuple[bool | None, str]:
    n = m.prefill_rejections
    masked = m.call.outcome == "error" and n > 0
    return not masked, f"{n} prefill refusal(s) at the fallback; the call ended {m.call.outcome}"


def _seq(m: Measured) -> SequenceStats:
    if m.sequence is None:
        raise ValueError("a sequence check on a scenario that is not a sequence")
    return m.sequence


def _seq_no_hang(c: Check, m: Measured) -> tuple[bool | None, str]:
    s = _seq(m)
    return s.hangs == 0, f"{s.hangs} of {s.requests} request(s) hung"


def _seq_served(c: Check, m: Measured) -> tuple[bool | None, str]:
    s = _seq(m)
    ok = s.during_down > 0 and s.served_during_down == s.during_down
    return ok, f"{s.served_during_down}/{s.during_down} answered while the primary was down"


def _seq_recovered(c: Check, m: Measured) -> tuple[bool | None, str]:
    after = _seq(m).recovered_after
    if after is None:
        return False, "the primary was not used again after it recovered"
    return after <= c.value, f"the primary answered again {after:+.1f} s after recovering"


def _seq_probes(c: Check, m: Measured) -> tuple[bool | None, str]:
    s = _seq(m)
    ok = s.primary_during_down <= s.during_down
    return ok, f"{s.primary_during_down} primary attempt(s) for {s.during_down} during the outage"


JUDGES: dict[str, Judge] = {
    "no_hang": _no_hang,
    "complete": _complete,
    "no_truncated_success": _not_truncated,
    "attempts_primary_min": _primary_min,
    "attempts_primary_max": _primary_max,
    "attempts_primary_eq": _primary_eq,
    "context_retry_discipline": _retry_discipline,
    "first_gap_min_s": _first_gap,
    "max_attempts_within": _attempts_within,
    "wall_max_s": _wall_max,
    "alive_after": _alive,
    "fallback_used": _fallback_used,
    "reported_model_is_fallback": _reported_fallback,
    "usage_present": _usage,
    "no_prefill_masking": _prefill_masking,
    "seq_no_hang": _seq_no_hang,
    "seq_served_during_outage": _seq_served,
    "seq_recovered_within_s": _seq_recovered,
    "seq_probe_discipline": _seq_probes,
}


def score(check: Check, m: Measured, has_fallback: bool = True) -> Scored:
    """One check against what was measured."""
    if check.needs_fallback and not has_fallback:
        return Scored(check.id, "na", "n/a: no fallback", check.advisory)
    ok, detail = JUDGES[check.kind](check, m)
    status: Status = "na" if ok is None else "pass" if ok else "fail"
    if status == "fail" and check.informational:
        status = "info"
    return Scored(check.id, status, detail, check.advisory)


def verdict_of(scenario: Scenario, checks: list[Scored], m: Measured) -> tuple[Verdict, str]:
    """The methodology's verdict: a hang, a truncated success or a failed required check
    fails; a rescue (the ideal outcome) passes, or is partial with an advisory check failed;
    else a bounded clean error is safe. For an ideal error, an answer is partial."""
    call = m.call
    if call.outcome == "hang":
        return "fail", "hang"
    if scenario.ideal == "success" and call.outcome == "success" and not call.complete:
        return "fail", "truncated answer presented as a success"
    required = [c.id for c in checks if c.status == "fail" and not c.advisory]
    if required:
        return "fail", "failed: " + ", ".join(required)
    advisory = [c.id for c in checks if c.status == "fail" and c.advisory]
    if scenario.ideal == "error" and call.outcome == "success":
        return "partial", "answered by routing around the rejection"
    rescued = call.outcome == "error" if scenario.ideal == "error" else call.complete
    if not rescued:
        return "safe", f"not rescued, clean error: {(call.error or '')[:100]}"
    if advisory:
        return "partial", "rescued; advisory: " + ", ".join(advisory)
    return "pass", "rescued"


# The system under test: two fakes and ai-api, on one clock


class SteppingClock:
    """Real time from `START`, plus the jumps asked for: the gateway's and the fakes' clock."""

    def __init__(self, start: float = START) -> None:
        self._origin = time.monotonic() - start
        self.skipped = 0.0

    def __call__(self) -> float:
        return time.monotonic() - self._origin + self.skipped

    def reach(self, moment: float) -> None:
        """Jump to `moment` unless it has passed (a wait that takes no time)."""
        self.skipped += max(0.0, moment - self())


@dataclass(slots=True)
class System:
    """One scenario's running system: the fakes, the gateway's URL and a client session."""

    scenario: Scenario
    clock: SteppingClock
    primary: FakeUpstream
    fallback: FakeUpstream
    url: str
    session: aiohttp.ClientSession
    started: float = 0.0
    fallback_model: str = ""


def _fake(name: str, clock: SteppingClock, refuses_prefill: bool = False) -> FakeUpstream:
    flavor = FLAVORS[name]
    if refuses_prefill:
        rules = dataclasses.replace(flavor.rules, prefill=False)
        flavor = dataclasses.replace(flavor, rules=rules)
    fake = FakeUpstream(flavor, api_key=KEYS[name], token_delay=TOKEN_DELAY, clock=clock)
    fake.answer_text = CANONICAL
    return fake


def _provider(spec: ProviderSpec, fake: FakeUpstream) -> ProviderSettings:
    return preset_settings(spec, {str(spec.key_env): KEYS[spec.name]}, base_url=fake.base_url)


def settings_of(primary: FakeUpstream, fallback: FakeUpstream, scale: float = 1.0) -> Settings:
    """ai-api's defaults (with the presets' limits) and one `fallback` route, Groq then
    Cerebras, in memory; every timeout times `scale`."""
    providers = (_provider(GROQ, primary), _provider(CEREBRAS, fallback))
    members = tuple(MemberSettings(p.name, p.model) for p in providers)
    route = RouteSettings(ROUTE, "fallback", members)
    settings = Settings(providers=providers, routes=(route,), port=0, ledger="")
    if scale == 1.0:
        return settings
    return settings.with_overrides(**{k: getattr(settings, k) * scale for k in _TIMEOUTS})


@asynccontextmanager
async def system(scenario: Scenario) -> AsyncIterator[System]:
    """Fresh fakes and a fresh gateway for `scenario`, stopped at exit."""
    clock = SteppingClock()
    async with AsyncExitStack() as stack:
        primary = await stack.enter_async_context(_fake("groq", clock))
        refuses = scenario.faults.fallback_refuses_prefill
        fallback = await stack.enter_async_context(_fake("cerebras", clock, refuses))
        settings = settings_of(primary, fallback, scenario.scale)
        url = await stack.enter_async_context(running(settings, clock=clock))
        timeout = aiohttp.ClientTimeout(total=None)
        session = await stack.enter_async_context(aiohttp.ClientSession(timeout=timeout))
        model = settings.providers[1].model
        yield System(scenario, clock, primary, fallback, url, session, clock(), model)


def _scaled(fault: Fault, scale: float) -> Fault:
    return dataclasses.replace(
        fault,
        headers_delay=fault.headers_delay * scale,
        first_token_delay=fault.first_token_delay * scale,
        stall_seconds=fault.stall_seconds * scale,
    )


def break_primary(s: System) -> None:
    """Apply the scenario's faults to the primary, from now on."""
    faults, scale = s.scenario.faults, s.scenario.scale
    for fault in faults.first:
        s.primary.add_fault(_scaled(fault, scale))
    if faults.always is None:
        return
    if faults.down_for is None:
        s.primary.default_fault = _scaled(faults.always, scale)
    else:
        s.primary.down_until(s.clock() + faults.down_for * scale, faults.always)


# The client


def _message(text: str) -> str:
    try:
        error = json.loads(text).get("error") or {}
    except (ValueError, AttributeError):
        return text[:200]
    return str(error.get("message", text[:200]))


async def _read_stream(response: aiohttp.ClientResponse) -> Call:
    """The answer of an OpenAI stream: its content, model and usage; an in-band error event
    makes it an error whatever came before."""
    content: list[str] = []
    model: str | None = None
    usage: dict[str, Any] | None = None
    async for raw in response.content:
        line = raw.decode().strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        data = json.loads(line.removeprefix("data: "))
        if "error" in data:
            text = "".join(content)
            return Call("error", text, data["error"].get("message"), model=model)
        model = data.get("model", model)
        usage = data.get("usage") or usage
        content.extend(c["delta"].get("content") or "" for c in data.get("choices", ()))
    return Call("success", "".join(content), model=model, usage=usage)


async def _post(s: System, stream: bool) -> Call:
    body: dict[str, Any] = {
        "model": ROUTE,
        "messages": [{"role": "user", "content": PROMPT}],
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    try:
        async with s.session.post(s.url + "/v1/chat/completions", json=body) as response:
            if response.status != 200:
                said = _message(await response.text())
                return Call("error", error=f"HTTP {response.status}: {said}")
            if stream:
                return await _read_stream(response)
            data = await response.json()
    except (aiohttp.ClientError, ValueError) as exc:
        return Call("error", error=f"{type(exc).__name__}: {exc}")
    text = data["choices"][0]["message"]["content"] or ""
    return Call("success", text, model=data.get("model"), usage=data.get("usage"))


async def ask(s: System, *, limit: float, stream: bool = True) -> Call:
    """One call through the gateway, ended as a hang after `limit` real seconds."""
    begun = time.monotonic()
    try:
        async with asyncio.timeout(limit):
            call = await _post(s, stream)
    except TimeoutError:
        call = Call("hang", error=f"no result within {limit:g} s")
    call.elapsed = (time.monotonic() - begun) / s.scenario.scale
    return call


# Running a scenario


def _attempt(seen: SeenRequest, primary: bool, s: System) -> Attempt:
    messages = seen.body.get("messages") or []
    last = messages[-1] if messages else {}
    return Attempt(
        primary=primary,
        at=(seen.started - s.started) / s.scenario.scale,
        status=seen.status,
        prompt_tokens=prompt_tokens(messages),
        prefill=isinstance(last, dict) and last.get("role") == "assistant",
    )


def attempts_of(s: System) -> list[Attempt]:
    """What the fakes saw so far, oldest first."""
    seen = [_attempt(r, True, s) for r in s.primary.requests]
    seen += [_attempt(r, False, s) for r in s.fallback.requests]
    return sorted(seen, key=lambda a: a.at)


async def alive(s: System) -> tuple[bool, str | None]:
    """A healthy call after the scenario (the fakes healed): does the gateway still answer?"""
    s.primary.heal()
    s.fallback.heal()
    call = await ask(s, limit=ALIVE_LIMIT * s.scenario.scale + 1.0, stream=False)
    ok = call.outcome == "success" and call.complete
    return ok, None if ok else (call.error or "not the complete answer")


def _summary(calls: list[tuple[float, Call]]) -> Call:
    """The calls of a sequence as one: a hang if one hung, a success if all succeeded, its
    content the first that is not the whole answer (else the last call's)."""
    outcomes = {c.outcome for _, c in calls}
    outcome: Outcome = (
        "hang" if "hang" in outcomes else "error" if "error" in outcomes else "success"
    )
    last = calls[-1][1]
    error = next((c.error for _, c in calls if c.outcome != "success"), None)
    content = next((c.content for _, c in calls if not c.complete), last.content)
    elapsed = sum(c.elapsed for _, c in calls)
    return Call(outcome, content, error, elapsed, last.model, last.usage)


def sequence_stats(calls: list[tuple[float, Call]], attempts: list[Attempt]) -> SequenceStats:
    """The sequence's measures against the primary's outage of `FLAP_DOWN` seconds."""
    during = [c for at, c in calls if at < FLAP_DOWN]
    primary = [a for a in attempts if a.primary]
    healed = [a.at for a in primary if a.status == 200 and a.at >= FLAP_DOWN]
    return SequenceStats(
        requests=len(calls),
        hangs=sum(1 for _, c in calls if c.outcome == "hang"),
        during_down=len(during),
        served_during_down=sum(1 for c in during if c.outcome == "success"),
        primary_during_down=sum(1 for a in primary if a.at < FLAP_DOWN),
        recovered_after=min(healed) - FLAP_DOWN if healed else None,
    )


async def _single(s: System) -> Measured:
    call = await ask(s, limit=s.scenario.max_wall * s.scenario.scale + 1.0)
    return Measured(call, attempts_of(s), s.fallback_model)


async def _sequence(s: System, plan: Sequence) -> Measured:
    calls: list[tuple[float, Call]] = []
    for i in range(plan.count):
        s.clock.reach(s.started + i * plan.interval)
        calls.append((s.clock() - s.started, await ask(s, limit=plan.per_request_max_wall)))
    attempts = attempts_of(s)
    stats = sequence_stats(calls, attempts)
    return Measured(_summary(calls), attempts, s.fallback_model, sequence=stats)


@dataclass(slots=True)
class Result:
    """One scenario's verdict, why, its checks and the headline measures."""

    id: str
    title: str
    verdict: Verdict
    reason: str
    checks: list[Scored]
    outcome: Outcome
    attempts_primary: int
    attempts_fallback: int
    elapsed: float
    seconds: float = field(default=0.0)  # how long it ran, really

    def line(self) -> str:
        seen = f"{self.attempts_primary}p/{self.attempts_fallback}f"
        return (
            f"{self.id} {self.verdict.upper():<7} {self.title:<36} {seen:<6}"
            f" {self.elapsed:6.1f} s  {self.reason}"
        )


def judge(scenario: Scenario, m: Measured) -> Result:
    """Score `m`, what `scenario` measured."""
    checks = [score(c, m) for c in scenario.checks]
    verdict, reason = verdict_of(scenario, checks, m)
    return Result(
        scenario.id,
        scenario.title,
        verdict,
        reason,
        checks,
        m.call.outcome,
        len(m.primary),
        len(m.fallback),
        m.call.elapsed,
    )


async def run_scenario(scenario: Scenario) -> Result:
    """Run `scenario` on a fresh system and score it."""
    begun = time.monotonic()
    async with system(scenario) as s:
        break_primary(s)
        if scenario.sequence is None:
            measured = await _single(s)
        else:
            measured = await _sequence(s, scenario.sequence)
        measured.alive_after, measured.alive_error = await alive(s)
    result = judge(scenario, measured)
    result.seconds = time.monotonic() - begun
    return result


def scorecard(results: list[Result]) -> str:
    counts = {v: sum(1 for r in results if r.verdict == v) for v in VERDICTS}
    tally = ", ".join(f"{counts[v]} {v}" for v in VERDICTS)
    return f"{tally} of {len(results)}"


async def run_all(scenarios: tuple[Scenario, ...], echo: bool) -> list[Result]:
    results = []
    for scenario in scenarios:
        result = await run_scenario(scenario)
        if echo:
            print(result.line(), flush=True)
        results.append(result)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--only", default="", help="scenario ids, comma-separated")
    args = parser.parse_args(argv)
    logging.getLogger("ai_api").setLevel(logging.CRITICAL)  # its warnings are the faults
    wanted = {i.strip().upper() for i in args.only.split(",") if i.strip()}
    scenarios = tuple(s for s in SCENARIOS if not wanted or s.id in wanted)
    begun = time.monotonic()
    results = asyncio.run(run_all(scenarios, echo=not args.json))
    if args.json:
        doc = {
            "methodology": METHODOLOGY,
            "scorecard": scorecard(results),
            "results": [dataclasses.asdict(r) for r in results],
        }
        print(json.dumps(doc, indent=2))
    else:
        print(scorecard(results), flush=True)
    print(f"ran in {time.monotonic() - begun:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
