"""Choosing who answers: deployments, routes and their strategies, and the failover loop."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .config import Settings, Strategy
from .errors import InvalidRequest, NoProviders, NotFound, UpstreamError, UpstreamStatus
from .params import missing
from .providers import Provider, ProviderSpec
from .schemas import ChatRequest, Chunk, Message

log = logging.getLogger("ai_api.routing")

DEFAULT_ROUTE = "auto"

# Upstream statuses that say nothing against the request itself: another member may serve it.
# 413 is there because Groq answers 413 when one request exceeds its tokens-per-minute budget.
_RETRYABLE = frozenset({401, 402, 403, 404, 408, 409, 413, 429, 498})


@dataclass(frozen=True, slots=True)
class Deployment:
    """A provider serving one upstream model with a completion-token cap."""

    provider: Provider
    spec: ProviderSpec
    model: str
    max_tokens: int

    @property
    def name(self) -> str:
        """The provider's name."""
        return self.provider.name

    @property
    def public_name(self) -> str:
        """`provider/model`, the name that pins this deployment."""
        return f"{self.provider.name}/{self.model}"

    def request(
        self,
        messages: tuple[Message, ...],
        *,
        max_tokens: int | None = None,
        options: dict[str, Any] | None = None,
    ) -> ChatRequest:
        """The request sent here; a client's cap is honoured up to the deployment's own."""
        cap = self.max_tokens if max_tokens is None else min(max_tokens, self.max_tokens)
        return ChatRequest(
            messages=messages, model=self.model, max_tokens=cap, options=options or {}
        )


class Route:
    """A public model name served by an ordered list of deployments.

    `round-robin` starts each request at the next member, as the original did (Groq, Cerebras,
    Groq...); `fallback` always starts at the first. Either way the others follow in order if
    the first fails before answering. `order()` does not await, so on one event loop
    concurrent requests each take their own turn.
    """

    __slots__ = ("_turn", "members", "name", "strategy")

    def __init__(self, name: str, strategy: Strategy, members: Sequence[Deployment]) -> None:
        self.name = name
        self.strategy = strategy
        self.members = tuple(members)
        self._turn = 0

    def order(self) -> list[Deployment]:
        """The members in the order this request tries them."""
        members = self.members
        if self.strategy == "fallback" or len(members) < 2:
            return list(members)
        start = self._turn % len(members)
        self._turn += 1
        return [*members[start:], *members[:start]]


class Router:
    """Public model names -> routes; `auto` (or no model) is the default route."""

    def __init__(self, routes: Mapping[str, Route]) -> None:
        self.routes = dict(routes)

    def route(self, model: str | None) -> Route:
        """The route serving `model`; 404 listing the available names if there is none."""
        route = self.routes.get(model or DEFAULT_ROUTE)
        if route is None:
            names = ", ".join(sorted(self.routes))
            raise NotFound(
                f"The model `{model}` does not exist on this gateway. Available: {names}.",
                code="model_not_found",
                param="model",
            )
        return route


@dataclass(slots=True)
class Opened:
    """A stream that has produced its first chunk: who serves it and after how many tries."""

    deployment: Deployment
    first: Chunk | None
    chunks: AsyncGenerator[Chunk, None]
    attempts: int


def retryable(error: UpstreamError) -> bool:
    """Whether another member might succeed where this one failed."""
    if isinstance(error, UpstreamStatus):
        return error.upstream_status in _RETRYABLE or error.upstream_status >= 500
    return True


async def open_stream(
    route: Route,
    build: Callable[[Deployment], ChatRequest],
    required: Collection[str] = (),
) -> Opened:
    """Start the answer on the first member that can take it and produces a first chunk.

    Members that do not take a `required` field are skipped. A member failing before its
    first chunk with a retryable error passes the request to the next; the last error is
    raised, its message naming every attempt.
    """
    candidates = [d for d in route.order() if not missing(d.spec, required)]
    if not candidates:
        if not route.members:
            raise NoProviders(f"The route `{route.name}` has no active provider.")
        fields = ", ".join(f"`{f}`" for f in required)
        raise InvalidRequest(
            f"No provider of `{route.name}` takes {fields}; "
            f"members: {', '.join(d.public_name for d in route.members)}.",
            param=next(iter(required), None),
        )
    failures: list[str] = []
    for attempt, deployment in enumerate(candidates, 1):
        chunks = deployment.provider.stream(build(deployment))
        try:
            first = await anext(chunks, None)
        except UpstreamError as exc:
            await chunks.aclose()
            failures.append(exc.message)
            log.warning("attempt %d on %s failed: %s", attempt, deployment.public_name, exc.message)
            if attempt == len(candidates) or not retryable(exc):
                if len(failures) > 1:
                    exc.message = f"{len(failures)} attempts failed: " + "; ".join(failures)
                exc.headers["X-AI-API-Attempts"] = str(attempt)
                raise
            continue
        except BaseException:
            await chunks.aclose()
            raise
        return Opened(deployment, first, chunks, attempt)
    raise AssertionError("unreachable: the loop returns or raises")


def build_router(settings: Settings, providers: Mapping[str, Provider]) -> Router:
    """Every public name: the configured routes, `auto`, each `provider/model`, and each
    upstream model name served by the providers that list it (round-robin)."""
    deployments: dict[tuple[str, str], Deployment] = {}
    by_model: dict[str, list[Deployment]] = {}
    for p in settings.providers:
        for m in p.models:
            d = Deployment(providers[p.name], p.spec, m.name, m.max_tokens)
            deployments[(p.name, m.name)] = d
            by_model.setdefault(m.name, []).append(d)
    routes: dict[str, Route] = {
        name: Route(name, "round-robin", members) for name, members in by_model.items()
    }
    routes.update(
        {d.public_name: Route(d.public_name, "fallback", [d]) for d in deployments.values()}
    )
    routes[DEFAULT_ROUTE] = Route(
        DEFAULT_ROUTE, "round-robin", [deployments[(p.name, p.model)] for p in settings.providers]
    )
    caps = {p.name: p.models[0].max_tokens for p in settings.providers}
    specs = {p.name: p.spec for p in settings.providers}
    for r in settings.routes:
        members = [
            deployments.get((provider, model))
            or Deployment(providers[provider], specs[provider], model, caps[provider])
            for provider, model in r.members
        ]
        routes[r.name] = Route(r.name, r.strategy, members)
    return Router(routes)
