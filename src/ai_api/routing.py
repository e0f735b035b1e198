"""Who may answer a model name: deployments, routes and their strategies, the public names."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import NotFound
from .limits import Limit
from .providers import Provider, ProviderSpec
from .schemas import ChatRequest, Message
from .settings import ProviderSettings, RouteSettings, Settings, Strategy

DEFAULT_ROUTE = "auto"


@dataclass(frozen=True, slots=True)
class Deployment:
    """A provider serving one upstream model with a completion-token cap.

    Its names are worked out once, here: every request reads them.
    """

    provider: Provider
    spec: ProviderSpec
    model: str
    max_tokens: int
    account: str = ""
    limits: tuple[Limit, ...] = ()
    context: int | None = None
    upstream: str = ""
    """The provider's base URL (its health is that upstream's: another URL starts afresh)."""
    key_env: str = ""
    """The variable its key was read from (for the log line when the key is refused)."""
    images: bool | None = None
    """Whether its model takes image input; None: not known, so it is tried."""
    public_name: str = field(init=False)
    """`provider/model`, the name that pins this deployment."""
    origin: str = field(init=False)
    """A short digest of `upstream` (never the URL, which may carry a secret); "" without."""
    member: str = field(init=False)
    """Its key for cooldowns and circuits: `provider/model@origin`."""
    budget_key: str = field(init=False)
    """`account|model` whose budget this deployment spends; `*` for account-wide limits."""
    guessed: bool = field(init=False)
    """Whether any of its limits is a preset's guess."""

    def __post_init__(self) -> None:
        name = self.provider.name
        model = "*" if self.spec.account_wide else self.model
        object.__setattr__(self, "public_name", f"{name}/{self.model}")
        origin = hashlib.sha256(self.upstream.encode()).hexdigest()[:12] if self.upstream else ""
        object.__setattr__(self, "origin", origin)
        member = f"{name}/{self.model}@{origin}" if origin else f"{name}/{self.model}"
        object.__setattr__(self, "member", member)
        object.__setattr__(self, "budget_key", f"{self.account or name}|{model}")
        object.__setattr__(self, "guessed", any(lim.guess for lim in self.limits))

    @property
    def name(self) -> str:
        """The provider's name."""
        return self.provider.name

    def cap(self, requested: int | None) -> int:
        """The completion cap sent: the client's, up to the deployment's own."""
        return self.max_tokens if requested is None else min(requested, self.max_tokens)

    def request(
        self,
        messages: tuple[Message, ...],
        *,
        max_tokens: int | None = None,
        options: dict[str, Any] | None = None,
        whole: bool = False,
    ) -> ChatRequest:
        """The request sent here."""
        return ChatRequest(
            messages=messages,
            model=self.model,
            max_tokens=self.cap(max_tokens),
            options=options or {},
            whole=whole,
        )


@dataclass(frozen=True, slots=True)
class Member:
    """A deployment in a route, with its weight and pacing."""

    deployment: Deployment
    weight: int = 1
    pace: bool = False


@dataclass(slots=True)
class Route:
    """A public model name served by an ordered list of members.

    `round-robin` starts each request at the next member (the original's Groq, Cerebras,
    Groq...); `fallback` always starts at the first; `weighted` spreads requests by weight
    (smooth weighted round-robin); `budget` prefers the member with the largest share of its
    daily quota left (the rationing decides that order). The others follow as fallbacks.
    """

    name: str
    strategy: Strategy
    members: tuple[Member, ...]
    burst: float = 0.1
    continuation: bool = True
    """Whether a stream whose member fails mid-answer may go on on the next member."""
    _sequence: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        self._sequence = _smooth_weighted(tuple(m.weight for m in self.members))

    @property
    def deployments(self) -> tuple[Deployment, ...]:
        """The members' deployments, in configured order."""
        return tuple(m.deployment for m in self.members)

    @property
    def rotates(self) -> bool:
        """Whether each request takes the next turn (round-robin and weighted routes)."""
        return self.strategy in ("round-robin", "weighted") and len(self.members) > 1

    def order(self, turn: int = 0) -> list[Member]:
        """The members in the order request number `turn` considers them."""
        members = self.members
        if not self.rotates:
            return list(members)
        if self.strategy == "weighted":
            first = self._sequence[turn % len(self._sequence)]
            rest = sorted((m for i, m in enumerate(members) if i != first), key=lambda m: -m.weight)
            return [members[first], *rest]
        start = turn % len(members)
        return [*members[start:], *members[:start]]


def _smooth_weighted(weights: tuple[int, ...]) -> tuple[int, ...]:
    """One cycle of nginx's smooth weighted round-robin: who goes first at each turn."""
    current = [0] * len(weights)
    total = sum(weights)
    sequence = []
    for _ in range(total):
        for i, weight in enumerate(weights):
            current[i] += weight
        best = max(range(len(weights)), key=lambda i: current[i])
        current[best] -= total
        sequence.append(best)
    return tuple(sequence)


class Router:
    """Public model names -> routes; `auto` (or no model) is the default route."""

    def __init__(self, routes: Mapping[str, Route]) -> None:
        self.routes = dict(routes)

    def deployments(self) -> list[Deployment]:
        """Every deployment of every route, once each."""
        unique = {d.public_name: d for r in self.routes.values() for d in r.deployments}
        return list(unique.values())

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

    def resolve(self, model: str | None) -> str:
        """The model name `model` stands for: the target of an alias, else itself."""
        route = self.routes.get(model or DEFAULT_ROUTE)
        return route.name if route is not None else model or DEFAULT_ROUTE


def build_router(settings: Settings, providers: Mapping[str, Provider]) -> Router:
    """Every public name: the configured routes, `auto`, each `provider/model`, and each
    upstream model name served by the providers that list it (round-robin)."""
    deployments: dict[tuple[str, str], Deployment] = {}
    by_model: dict[str, list[Member]] = {}
    for p in settings.providers:
        for m in p.models:
            d = Deployment(
                providers[p.name],
                p.spec,
                m.name,
                m.max_tokens,
                p.account,
                m.limits,
                m.context,
                p.base_url,
                p.key_env or "",
                m.images,
            )
            deployments[(p.name, m.name)] = d
            by_model.setdefault(m.name, []).append(Member(d))
    routes = {name: Route(name, "round-robin", tuple(ms)) for name, ms in by_model.items()}
    routes.update(
        {
            d.public_name: Route(d.public_name, "fallback", (Member(d),))
            for d in deployments.values()
        }
    )
    auto = tuple(Member(deployments[(p.name, p.model)]) for p in settings.providers)
    routes[DEFAULT_ROUTE] = Route(DEFAULT_ROUTE, "round-robin", auto)
    by_name = {p.name: p for p in settings.providers}
    for r in settings.routes:
        routes[r.name] = _configured(r, deployments, by_name, providers)
    for alias, target in settings.aliases:
        routes[alias] = routes[target]  # the same route: one rotation, one set of budgets
    return Router(routes)


def _configured(
    route: RouteSettings,
    deployments: Mapping[tuple[str, str], Deployment],
    by_name: Mapping[str, ProviderSettings],
    providers: Mapping[str, Provider],
) -> Route:
    members = []
    for m in route.members:
        d = deployments.get((m.provider, m.model))
        if d is None:  # a model the provider does not list: its defaults apply
            p = by_name[m.provider]
            d = Deployment(
                providers[p.name],
                p.spec,
                m.model,
                p.models[0].max_tokens,
                p.account,
                p.spec.limits_for(m.model) if p.guesses else (),
                upstream=p.base_url,
                key_env=p.key_env or "",
                images=p.spec.images.get(m.model),
            )
        members.append(Member(d, m.weight, m.pace))
    return Route(route.name, route.strategy, tuple(members), route.burst, route.continuation)
