"""What is known of a budget's windows: where each limit comes from (a guess, the user, the
provider's headers, a 429), the limits a deployment is held to, and the day's share and pace.

Pure functions over limits and window snapshots; `rationing` keeps the state they read.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .limits import DAY, Kind, Limit
from .ratelimits import RateReading
from .store.state import WindowState

EXPECTATION_WEIGHT = 0.2
"""How much each answer moves the expected completion of its (account, model)."""
COLD_COMPLETION = 256
"""The completion tokens expected before any answer of a budget was seen: a short answer's
worth. Reserving the cap instead (the most an answer may cost) refused a burst at a cold start
on a guess: two requests at Groq's 4,096-token cap fill its 8,000 tokens a minute, and the
third got a 429 for a minute. Expecting too little risks only the provider's own 429, which is
evidence, and fails over."""
CEILING_MEMORY = 7 * DAY
"""How long a ceiling a 429 taught is remembered (from the ledger, across restarts)."""


def source_of(window: WindowState, limits: Sequence[Limit]) -> str:
    """Where a window's limit comes from: `built-in` (a preset's guess), `configured`,
    `learned` (from a 429), `reported` (the provider's headers), or `unknown`."""
    at = (window.kind, window.period)
    for lim in limits:
        if (lim.kind, lim.period) == at and lim.limit is not None and window.limit == lim.limit:
            return lim.source
    return "unknown" if window.limit is None else "reported"


def held_to(
    limits: Sequence[Limit], learned: dict[tuple[Kind, float], int], guesses: bool
) -> tuple[Limit, ...]:
    """The limits a deployment is held to: `limits` with the learned ceilings in their place
    (a configured figure keeps the lower of the two), and the preset's guesses as unknown
    limits unless `guesses` (the windows stay: they count, and readings and 429s reach them)."""
    held = []
    for lim in limits:
        ceiling = learned.get((lim.kind, lim.period))
        if ceiling is not None and (lim.guess or lim.limit is None or ceiling < lim.limit):
            lim = Limit(lim.kind, lim.period, ceiling, "learned")
        elif lim.guess and not guesses:
            lim = Limit(lim.kind, lim.period, None, "built-in")
        held.append(lim)
    named = {(lim.kind, lim.period) for lim in limits}
    held += [
        Limit(kind, period, n, "learned")
        for (kind, period), n in sorted(learned.items())
        if (kind, period) not in named
    ]
    return tuple(held)


def contradicts(limits: Sequence[Limit], reading: RateReading) -> bool:
    """Whether the provider reports, for a window the preset guesses, another limit (the
    account is not on the tier the guesses describe)."""
    guessed = {(lim.kind, lim.period): lim.limit for lim in limits if lim.guess}
    return any(
        r.limit is not None and r.limit > 0 and guessed.get((r.kind, r.period), r.limit) != r.limit
        for r in reading.windows
    )


def daily_share(windows: Iterable[WindowState]) -> float:
    """The smallest remaining share of a daily (or longer) limit; 1.0 when there is none."""
    shares = [
        max(0.0, w.remaining) / w.limit
        for w in windows
        if w.period >= DAY and w.limit and w.remaining is not None
    ]
    return min(shares, default=1.0)


def headroom_share(windows: Iterable[WindowState]) -> float:
    """The smallest remaining share of any window whose limit and use are known (what the
    keys of a pool are ordered by); 1.0 when none is."""
    shares = [
        max(0.0, w.remaining) / w.limit for w in windows if w.limit and w.remaining is not None
    ]
    return min(shares, default=1.0)


def ahead_of_pace(windows: Iterable[WindowState], now: float, burst: float) -> bool:
    """Whether today's spending passed the elapsed share of the UTC day plus `burst`."""
    elapsed = (now % DAY) / DAY
    return any(
        w.period == DAY and w.limit and w.today >= w.limit * min(1.0, elapsed + burst)
        for w in windows
    )
