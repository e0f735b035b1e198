"""Embeddings: which providers serve an embedding model's name, and the failover loop.

Names: `provider/model` for each embedding model a preset lists (`ProviderSpec.embeddings`),
the bare `model` round-robin over the providers that list it, and for a provider that lists
none (a local server, a generic OpenAI-compatible endpoint) `provider/<any name>`.

The loop is a small one of its own over the same `Rationing` calls as chat's (`attempts`):
an embeddings answer comes whole, so there is no first chunk to wait for and nothing to
continue. Members are tried in turn; a 429, a 5xx or a failure to connect hands the request
to the next (`verdicts.retry_of`), up to `max_attempts` and the deadline; every attempt is
settled and recorded in the ledger.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from .attempts import Bounds
from .embeddings_wire import EmbeddingAsk, read_answer, takes, upstream_body
from .errors import InvalidRequest, NotFound, UpstreamError, UpstreamTimeout
from .providers import Embedder, Provider
from .rationing import Rationing, Ticket
from .refusals import pooled_429, too_large
from .routing import Deployment, Member, Route, instance_name, pool_deployments
from .schemas import Usage
from .settings import ProviderSettings, Settings
from .verdicts import Retry, retry_of

log = logging.getLogger("ai_api.embeddings")

MAX_MADE = 256
"""The most routes kept for names of providers that take any model name (others are made
again for each request: a route is cheap, and its budgets and health live in the state)."""


@dataclass(frozen=True, slots=True)
class Embedding:
    """An embeddings answer: its vectors in input order, usage, who served it, after how many
    attempts."""

    vectors: list[list[float]]
    usage: Usage
    deployment: Deployment
    attempts: int


@dataclass(slots=True)
class EmbeddingRouter:
    """The embedding model names the gateway serves, and the providers behind them."""

    routes: dict[str, Route]
    open_ended: Mapping[str, ProviderSettings]
    """Providers that take any model name (`provider/<name>`), by name."""
    providers: Mapping[str, Provider]
    _made: dict[str, Route] = field(default_factory=dict)

    def route(self, name: str) -> Route:
        """The route serving `name`; 404 in OpenAI's shape if none does."""
        route = self.routes.get(name) or self._made.get(name)
        if route is not None:
            return route
        provider, _, model = name.partition("/")
        p = self.open_ended.get(provider)
        if p is None or not model:
            known = ", ".join(sorted(self.routes)) or "none"
            raise NotFound(
                f"The embedding model `{name}` does not exist on this gateway. Available: {known}.",
                code="model_not_found",
                param="model",
            )
        made = Route(name, "fallback", _pool(p, model, self.providers))
        if len(self._made) < MAX_MADE:  # clients choose these names: keep only so many
            self._made[name] = made
        return made

    def names(self) -> list[str]:
        """Every listed embedding model name."""
        return sorted(self.routes)

    def deployments(self) -> list[Deployment]:
        """Every listed deployment, once."""
        found = {d.member: d for r in self.routes.values() for d in r.deployments}
        return list(found.values())


def _pool(p: ProviderSettings, model: str, providers: Mapping[str, Provider]) -> tuple[Member, ...]:
    limits = p.spec.embedding_limits(model) if p.guesses else ()
    return tuple(map(Member, pool_deployments(p, model, providers, max_tokens=0, limits=limits)))


def build_embeddings(settings: Settings, providers: Mapping[str, Provider]) -> EmbeddingRouter:
    """The embedding routes of the providers configured whose presets have embeddings."""
    routes: dict[str, Route] = {}
    by_model: dict[str, list[Member]] = {}
    open_ended: dict[str, ProviderSettings] = {}
    for p in settings.providers:
        offer = p.spec.embeddings
        first = providers.get(instance_name(p.name, p.pool[0].label))
        if offer is None or not isinstance(first, Embedder):
            continue
        if not offer.models:
            open_ended[p.name] = p
        for model in offer.models:
            pool = _pool(p, model, providers)
            name = pool[0].deployment.public_name
            routes[name] = Route(name, "fallback", pool)
            by_model.setdefault(model, []).extend(pool)
    for model, members in by_model.items():
        routes.setdefault(model, Route(model, "round-robin", tuple(members)))
    return EmbeddingRouter(routes, open_ended, providers)


async def embed(
    route: Route, ask: EmbeddingAsk, request_id: str, rationing: Rationing, bounds: Bounds
) -> Embedding:
    """The embeddings from the first member of `route` that gives them; else the last
    failure (naming every attempt), or a pooled 429 when no member had room."""
    offers = [(m, m.deployment.spec.embeddings) for m in route.order(await rationing.turn(route))]
    members = [m for m, offer in offers if offer is not None and takes(offer, ask)]
    if not members:
        raise _refused(route, ask)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + bounds.deadline
    queue = list(await rationing.plan(route, members))
    attempts, failures, lost = 0, [], []
    error: UpstreamError | None = None
    while queue and attempts < bounds.max_attempts and loop.time() < deadline:
        member = queue.pop(0)
        d = member.deployment
        ticket = await rationing.begin(d, route.name, request_id, ask.prompt_tokens, 0)
        if not isinstance(ticket, Ticket):
            lost.append(ticket)
            continue
        attempts += 1
        try:
            vectors, usage = await _attempt(d, ask, rationing, ticket, deadline - loop.time())
        except UpstreamError as exc:
            await rationing.failed(ticket, exc)
            error = exc
            failures.append(exc.message)
            log.warning("embeddings attempt %d on %s failed: %s", attempts, d.public_name, exc)
            if retry_of(exc.outcome()) is Retry.NONE:
                break
            continue
        except BaseException:
            rationing.cancelled(ticket)
            raise
        await rationing.succeeded(ticket, usage)
        return Embedding(vectors, usage, d, attempts)
    if error is None:
        if lost and all(math.isinf(at) for at in lost):
            raise too_large(route, ask.prompt_tokens, request_id, members)
        soonest = min((at for at in lost if not math.isinf(at)), default=None)
        raise await pooled_429(route, soonest, rationing, members)
    if len(failures) > 1:
        error.message = f"{len(failures)} attempts failed: " + "; ".join(failures)
    error.headers["X-AI-API-Attempts"] = str(attempts)
    raise error


async def _attempt(
    d: Deployment, ask: EmbeddingAsk, rationing: Rationing, ticket: Ticket, wait: float
) -> tuple[list[list[float]], Usage]:
    """One member's vectors and usage (the estimate when it reports none)."""
    embedder = d.provider
    assert isinstance(embedder, Embedder)
    assert d.spec.embeddings is not None
    body = upstream_body(d.spec.embeddings, d.model, ask)
    try:
        async with asyncio.timeout(max(0.0, wait)):
            answer = await embedder.embed(d.model, body)
    except TimeoutError:
        raise UpstreamTimeout(d.name, "no answer before the deadline") from None
    if answer.rate is not None:
        await rationing.observe(ticket, answer.rate)
    vectors, usage = read_answer(d.name, answer.body, len(ask.texts), d.spec.embeddings.dialect)
    if usage is None or usage.total_tokens == 0:
        usage = Usage(ask.prompt_tokens, 0, ask.prompt_tokens)
    return vectors, Usage(usage.prompt_tokens, 0, usage.total_tokens or usage.prompt_tokens)


def _refused(route: Route, ask: EmbeddingAsk) -> InvalidRequest:
    """No member of `route` can take `ask`: say which field none takes."""
    names = ", ".join(d.public_name for d in route.deployments)
    if ask.dimensions is not None and not any(
        d.spec.embeddings is not None and d.spec.embeddings.dimensions_field
        for d in route.deployments
    ):
        return InvalidRequest(
            f"No provider of `{route.name}` ({names}) takes `dimensions`.", param="dimensions"
        )
    cap = max(
        (d.spec.embeddings.max_inputs for d in route.deployments if d.spec.embeddings), default=0
    )
    return InvalidRequest(
        f"`{route.name}` takes at most {cap} inputs a request; {len(ask.texts)} were sent.",
        param="input",
    )
