"""The running gateway, built once from settings: its ledger, shared state, upstream client,
providers and routes, and the one way handlers start answers."""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from .affinity import Affinity, conversation
from .attempts import Ask, Bounds, Opened, open_stream
from .cache import AnswerCache, key_of, mode_of
from .catalogue import Catalogue, sources_of, watching
from .continuation import Prefills
from .embeddings import EmbeddingRouter, build_embeddings
from .http_client import HTTPClient
from .outcomes import MODEL_APIS, Observer, RequestRecord, routed
from .providers import OpenAICompatible, Provider
from .rationing import Rationing
from .routing import Route, Router, build_router, instance_name
from .schemas import Message, has_images
from .settings import Settings
from .store import Attempt, MemoryLedger, SQLiteLedger, UsageLedger
from .store.cache import AnswerStore, MemoryAnswers
from .store.state import MemoryState, SharedState
from .tokens import prompt_tokens

log = logging.getLogger("ai_api")


class Ids:
    """Unique ids, cheaply: a random prefix per process and a counter (no syscall per id)."""

    __slots__ = ("_counter", "_prefix")

    def __init__(self) -> None:
        self._prefix = os.urandom(6).hex()
        self._counter = itertools.count()

    def next(self) -> str:
        """A new id."""
        return f"{self._prefix}{next(self._counter):08x}"


@dataclass(slots=True)
class Gateway:
    """The live state behind the HTTP handlers."""

    settings: Settings
    router: Router
    rationing: Rationing
    bounds: Bounds
    embeddings: EmbeddingRouter
    """The embedding model names and their routes (`POST /v1/embeddings`)."""
    catalogue: Catalogue
    """What each provider lists now (`ai_api.catalogue`)."""
    cache: AnswerCache
    """The answers kept for requests asked again (`ai_api.cache`)."""
    ids: Ids = field(default_factory=lambda: Ids())
    prefills: Prefills = field(default_factory=lambda: Prefills())
    """Which members refused a prefill, for continuations."""
    affinity: Affinity = field(default_factory=lambda: Affinity())
    """Which member served each conversation (`Route.sticky`)."""
    observers: list[Observer] = field(default_factory=list)
    """Told of each request as it ends (`ai_api.outcomes`): the ledger's requests table, and
    whatever else is added at startup (the access log, the metrics)."""

    def answerable(self, route: Route) -> bool:
        """Whether `route` has a member that can answer now: a model its provider lists, on
        a key it has not refused."""
        now = self.rationing.clock()
        refused = self.rationing.refused
        return any(
            not self.catalogue.withdrawn(d) and not refused.out(d, now) for d in route.deployments
        )

    async def open(
        self,
        route: Route,
        messages: tuple[Message, ...],
        *,
        max_tokens: int | None = None,
        options: dict[str, Any] | None = None,
        whole: bool = False,
        cache: str | None = None,
    ) -> Opened:
        """Start the answer to `messages` on `route` (see `attempts.open_stream`); `whole`:
        the client wants it at once, so failures until its end may go to another member.
        `cache`: the request's `X-AI-API-Cache` header (`ai_api.cache`): a kept answer is
        replayed, and a new one kept, as it and the route say."""
        request_id = self.ids.next()
        routed(route.name, request_id)
        mode = mode_of(cache, route, options)
        key = None
        if mode != "skip":
            key = key_of(route.name, messages, max_tokens, options)
            hit = await self.cache.hit(key) if mode == "use" else None
            if hit is not None:
                return hit
        fields: Collection[str] = options.keys() if options else ()
        digest = None
        if route.sticky == "members" or (route.sticky == "keys" and route.pooled):
            digest = conversation(route.name, messages)
        ask = Ask(
            request_id=request_id,
            prompt_tokens=prompt_tokens(messages),
            max_tokens=max_tokens,
            required=fields,
            build=lambda d: d.request(
                messages, max_tokens=max_tokens, options=options, whole=whole
            ),
            whole=whole,
            images=has_images(messages),
            prefer=None if digest is None else self.affinity.member(digest),
            gone=self.catalogue.gone,
        )
        opened = await open_stream(route, ask, self.rationing, self.bounds, self.prefills)
        if digest is not None:
            self.affinity.served(digest, opened.deployment.member)
        return opened if key is None else self.cache.keeping(key, opened)


GATEWAY = web.AppKey("gateway", Gateway)


@asynccontextmanager
async def build_gateway(
    settings: Settings, clock: Callable[[], float] = time.time
) -> AsyncIterator[Gateway]:
    """The gateway for `settings`, its resources open; they close at exit. `clock` drives
    every budget, cooldown and ledger time (tests pass a fake one)."""
    async with AsyncExitStack() as stack:
        ledger: UsageLedger = MemoryLedger()
        if settings.ledger:
            ledger = await SQLiteLedger(Path(settings.ledger)).open()
        stack.push_async_callback(ledger.close)
        state = await open_state(settings)
        stack.push_async_callback(state.close)
        rationing = Rationing(ledger, state, clock=clock)
        stack.push_async_callback(rationing.drain)
        client = HTTPClient(
            connect_timeout=settings.connect_timeout,
            connections=settings.upstream_connections,
            proxies=settings.proxies,
        )
        stack.push_async_callback(client.close)
        if settings.proxies.http or settings.proxies.https:
            log.info("calls to providers: %s", settings.proxies.describe())
        providers = make_providers(settings, client, clock)
        router = build_router(settings, providers)
        embeddings = build_embeddings(settings, providers)
        listers = {
            p.name: providers[instance_name(p.name, p.pool[0].label)] for p in settings.providers
        }
        catalogue = Catalogue(sources_of(router.deployments(), listers), clock)
        await stack.enter_async_context(watching(catalogue, settings.catalogue_every))
        answers = await open_answers(settings, clock)
        stack.push_async_callback(answers.close)
        replayed = await rationing.rebuild([*router.deployments(), *embeddings.deployments()])
        if replayed:
            log.info(
                "usage ledger: replayed %d attempts of the last day into the budgets", replayed
            )
        yield Gateway(
            observers=[keep_request(ledger)],
            settings=settings,
            router=router,
            embeddings=embeddings,
            catalogue=catalogue,
            cache=AnswerCache(answers, router.deployments),
            rationing=rationing,
            bounds=Bounds(
                max_attempts=settings.max_attempts,
                deadline=settings.deadline,
                first_token_timeout=settings.first_token_timeout,
                probe_timeout=settings.probe_timeout,
                continuation=settings.continuation == "on",
            ),
        )


def keep_request(ledger: UsageLedger) -> Observer:
    """The observer that keeps the ledger's record of each request to a model API."""

    def keep(record: RequestRecord, attempts: Sequence[Attempt]) -> None:
        if record.api in MODEL_APIS:
            ledger.record_request(record)

    return keep


async def open_answers(settings: Settings, clock: Callable[[], float]) -> AnswerStore:
    """Where the answer cache keeps its entries: Redis when instances share one, else a table
    of the ledger's file (shared by the workers of one machine), else this process's memory."""
    size, ttl = settings.cache_max_bytes, settings.cache_ttl
    if settings.redis_url is not None:
        from .store.cache import RedisAnswers

        return RedisAnswers(settings.redis_url.reveal(), size, ttl, clock)
    if settings.ledger:
        from .store.cache import SQLiteAnswers

        return await SQLiteAnswers(Path(settings.ledger), size, ttl, clock).open()
    return MemoryAnswers(size, ttl, clock)


async def open_state(settings: Settings) -> SharedState:
    """Where turns, budgets and health live: Redis across machines, a SQLite file across the
    worker processes of one machine, else this process's memory."""
    if settings.redis_url is not None:
        from .store.redis_state import RedisState

        state: SharedState = await RedisState(
            settings.redis_url.reveal(), fallback=MemoryState()
        ).open()
        log.info("shared state: Redis")
        return state
    if settings.state_file:
        from .store.sqlite_state import SQLiteState

        log.info("shared state: %s", settings.state_file)
        return await SQLiteState(Path(settings.state_file)).open()
    return MemoryState()


def make_providers(
    settings: Settings,
    client: HTTPClient,
    clock: Callable[[], float],
) -> dict[str, Provider]:
    """One provider object per key of each configured provider (`routing.instance_name`),
    sharing one HTTP client."""
    return {
        instance_name(p.name, key.label): OpenAICompatible(
            p.spec,
            name=p.name,
            api_key=key.secret.reveal(),
            base_url=p.base_url,
            client=client.trusting(p.trust),
            read_timeout=settings.read_timeout,
            total_timeout=settings.total_timeout,
            max_answer_bytes=settings.max_answer_bytes,
            clock=clock,
        )
        for p in settings.providers
        for key in p.pool
    }
