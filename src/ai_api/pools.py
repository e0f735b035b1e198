"""The keys of a provider that has several (a pool): the order they are tried in, and the
ones the provider refused, which are out of rotation for every model until their rest ends."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence

from .routing import Deployment, Member

log = logging.getLogger("ai_api.rationing")


def key_name(d: Deployment) -> str:
    """The key `d` uses, by name: `provider`, or `provider#label` for a key of a pool."""
    return f"{d.name}#{d.key}" if d.key else d.name


def runs(members: Sequence[Member]) -> Iterator[list[Member]]:
    """`members` cut into runs of one pool's keys (consecutive members of one `provider/model`),
    in order."""
    start = 0
    for end in range(1, len(members) + 1):
        same = end < len(members)
        if same and members[end].deployment.public_name == members[start].deployment.public_name:
            continue
        yield list(members[start:end])
        start = end


def keys_first(run: list[Member], prefer: str | None, shares: Mapping[str, float]) -> list[Member]:
    """One pool's keys in the order to try them: `prefer` (the member that served this
    conversation) first, then the largest share left (`shares`, by member); a stable sort, so
    keys with as much keep the order given (the caller turns it, for them to take turns)."""
    return sorted(run, key=lambda m: (m.deployment.member != prefer, -shares[m.deployment.member]))


class Refusals:
    """The keys their provider refused (401/403), by `key_name`, until when they are out."""

    __slots__ = ("_until",)

    def __init__(self) -> None:
        self._until: dict[str, float] = {}

    def __bool__(self) -> bool:
        return bool(self._until)

    def out(self, d: Deployment, now: float) -> bool:
        """Whether `d`'s key is out of rotation at `now`."""
        return self._until.get(key_name(d), 0.0) > now

    def items(self, now: float) -> list[tuple[str, float]]:
        """The keys out at `now` and until when, by name."""
        return sorted((name, until) for name, until in self._until.items() if until > now)

    def refuse(self, d: Deployment, status: int, until: float, now: float) -> None:
        """The provider refused `d`'s key with `status`: out until `until`, told once (by its
        label, never by any part of the key)."""
        told = self.out(d, now)
        self._until[key_name(d)] = until
        if told:
            return
        variable = d.key_env or d.spec.key_env or "its API key variable"
        if d.key:
            log.error(
                "%s refused its key %s (HTTP %d): that key is out of rotation for %.0f s;"
                " check it in %s",
                d.name,
                d.key,
                status,
                until - now,
                variable,
            )
        else:
            log.error("%s refused the key (HTTP %d): check %s", d.name, status, variable)
