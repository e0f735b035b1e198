"""What a `RedisState` knows of each reservation (hold) it made: where Redis charged it, the
count it counts for there, the settlements asked for and confirmed; or, for one charged in
memory while Redis was away, what its replay will send. Settlements are ranked so that a
replayed one never undoes a later one (see `redis_scripts`, SETTLE)."""

from __future__ import annotations

from dataclasses import dataclass

from ..limits import Cost, Reservation
from .state import WindowSpec


@dataclass(slots=True)
class Placed:
    """A reservation charged in Redis as hold `hold` (to its token `windows`, at `at`), and its
    mirror. `tokens` is what Redis counts for it as last confirmed here (settlement `done`);
    `asked` the count last asked for, by settlement `rank`."""

    at: float
    windows: tuple[str, ...]
    tokens: int
    mirror: Reservation | None
    hold: str
    asked: int
    rank: int = 0
    done: int = 0

    def ask(self, tokens: int) -> int | None:
        """The rank of a new settlement to `tokens`; None when that is the count asked for."""
        if tokens == self.asked:
            return None
        self.asked, self.rank = tokens, self.rank + 1
        return self.rank

    def settlement(self, rank: int, tokens: int, now: float) -> list[str]:
        """SETTLE's arguments for settlement `rank`, to `tokens`."""
        args = [repr(now), repr(self.at), self.hold, str(rank), str(self.tokens), str(tokens)]
        return args + list(self.windows)

    def confirm(self, rank: int, tokens: int) -> None:
        """Redis has settlement `rank` (applied now or before)."""
        if rank > self.done:
            self.done, self.tokens = rank, tokens


@dataclass(slots=True)
class Stranded:
    """A reservation charged to the fallback while Redis was away, as hold `hold`: once Redis
    is back, its charge as first sent (`cost`), then a settlement to the count last asked for
    (`asked`, by settlement `rank`)."""

    key: str
    specs: tuple[WindowSpec, ...]
    cost: Cost
    at: float
    mirror: Reservation | None
    hold: str
    asked: int
    rank: int = 0
    placed: Placed | None = None
