"""The catalogue: what each provider serves now, read from its own model list at start and
every few hours, so that a configured model it withdrew is routed around (not tried on user
requests) and used again when it comes back.

The list is the provider's own evidence, so it outranks the configuration; a list that cannot
be read changes nothing (a guess never takes a model out), and neither does one that is empty
or a preset whose list is not authoritative (`ProviderSpec.catalogue`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field

from .errors import UpstreamError
from .providers import Lister, Provider
from .routing import Deployment, Route

log = logging.getLogger("ai_api.catalogue")

EVERY = 6 * 3600.0
"""How often the lists are read again by default (`catalogue_every`)."""


@dataclass(frozen=True, slots=True)
class Source:
    """One provider to read: its lister (its first key's), what is configured of it, and how
    to tell its operator to change that."""

    name: str
    lister: Lister
    configured: tuple[str, ...]
    variable: str
    """`<PREFIX>_MODEL`: what the log line says to set."""


@dataclass(slots=True)
class Catalogue:
    """The models each provider listed when last read, and the configured ones it did not."""

    sources: tuple[Source, ...]
    clock: Callable[[], float]
    listed: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """By provider: the models its list held when last read (absent: never read)."""
    read_at: dict[str, float] = field(default_factory=dict)
    gone: set[tuple[str, str]] = field(default_factory=set)
    """(provider, model) configured and not listed: routed around."""
    first: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once every list was read (or failed to be) once."""

    def withdrawn(self, d: Deployment) -> bool:
        """Whether `d`'s provider no longer lists its model."""
        return (d.name, d.model) in self.gone

    def answerable(self, route: Route) -> bool:
        """Whether some member of `route` is a model its provider still lists."""
        return not self.gone or any(not self.withdrawn(d) for d in route.deployments)

    async def refresh(self) -> None:
        """Read every provider's list (at once) and update what is withdrawn."""
        await asyncio.gather(*(self._read(source) for source in self.sources))
        self.first.set()

    async def run(self, every: float) -> None:
        """Refresh now and every `every` seconds, until cancelled."""
        while True:
            await self.refresh()
            await asyncio.sleep(every)

    async def _read(self, source: Source) -> None:
        try:
            async with asyncio.timeout(LIST_TIMEOUT):
                models = await source.lister.models()
        except (UpstreamError, TimeoutError) as exc:
            code = exc.code if isinstance(exc, UpstreamError) else "timeout"
            log.info(
                "%s: its model list could not be read (%s): nothing changed", source.name, code
            )
            return
        except Exception:  # a bug must not stop the readings for good
            log.exception("%s: reading its model list failed: nothing changed", source.name)
            return
        self.read_at[source.name] = self.clock()
        if not models:  # an empty list says nothing of what it serves
            return
        self.listed[source.name] = tuple(models)
        # A variant (`:latest`, `:nitro`, `:free`) counts as its model's: only a model absent
        # in every form is taken out.
        served = set(models) | {m.partition(":")[0] for m in models}
        for model in source.configured:
            key = (source.name, model)
            listed = model in served or model.partition(":")[0] in served
            if not listed and key not in self.gone:
                self.gone.add(key)
                offered = ", ".join(sorted(models)[:8])
                log.warning(
                    "%s no longer lists %s: it is out of rotation until it does. Remove it from"
                    " your configuration or set %s to a listed model (%s%s)",
                    source.name,
                    model,
                    source.variable,
                    offered,
                    ", ..." if len(served) > 8 else "",
                )
            elif listed and key in self.gone:
                self.gone.discard(key)
                log.info("%s lists %s again: it is back in rotation", source.name, model)


def sources_of(
    deployments: Iterable[Deployment], providers: Mapping[str, Provider]
) -> tuple[Source, ...]:
    """One source per provider (by name) that lists its models authoritatively, with its
    configured models."""
    listers = {name: p for name, p in providers.items() if isinstance(p, Lister)}
    configured: dict[str, dict[str, None]] = {}
    firsts: dict[str, Deployment] = {}
    for d in deployments:
        if d.spec.catalogue and d.name in listers:
            configured.setdefault(d.name, {})[d.model] = None
            firsts.setdefault(d.name, d)
    return tuple(
        Source(name, listers[name], tuple(models), f"{firsts[name].spec.env_prefix}_MODEL")
        for name, models in configured.items()
    )


FIRST_WAIT = 3.0
"""How long the start waits for the first lists (the rest come in the background: a request
to a withdrawn model meanwhile is refused by its provider, and fails over)."""
LIST_TIMEOUT = 10.0
"""How long one provider's list may take."""


@contextlib.asynccontextmanager
async def watching(catalogue: Catalogue, every: float) -> AsyncIterator[Catalogue]:
    """Read the lists now (waiting `FIRST_WAIT` at most) and every `every` seconds in the
    background; 0: never."""
    if every <= 0:
        yield catalogue
        return
    task = asyncio.get_running_loop().create_task(catalogue.run(every))
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(FIRST_WAIT):
            await catalogue.first.wait()
    try:
        yield catalogue
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
