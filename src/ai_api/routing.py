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
from .settings import ProviderSettings, RouteSettings, Settings, Sticky, Strategy

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
    key: str = ""
    """The label of its key when its provider has several (a pool), else ""."""
    public_name: str = field(init=False)
    """`provider/model`, the name that pins this deployment."""
    origin: str = field(init=False)
    """A short digest of `upstream` (never the URL, which may carry a secret); "" without."""
    member: str = field(init=False)
    """Its key for cooldowns and circuits: `provider/model@origin` (`provider#key/...` for a
    key of a pool)."""
    budget_key: str = field(init=False)
    """`account|model` whose budget this deployment spends; `*` for account-wide limits."""
    guessed: bool = field(init=False)
    """Whether any of its limits is a preset's guess."""

    def __post_init__(self) -> None:
        name = self.provider.name
        keyed = f"{name}#{self.key}" if self.key else name
        model = "*" if self.spec.account_wide else self.model
        object.__setattr__(self, "public_name", f"{name}/{self.model}")
        origin = hashlib.sha256(self.upstream.encode()).hexdigest()[:12] if self.upstream else ""
        object.__setattr__(self, "origin", origin)
        member = f"{keyed}/{self.model}@{origin}" if origin else f"{keyed}/{self.model}"
        object.__setattr__(self, "member", member)
        object.__setattr__(self, "budget_key", f"{self.account or keyed}|{model}")
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
    sticky: Sticky = "keys"
    """Where a conversation goes back to the member that served it (`ai_api.affinity`)."""
    cache: bool = False
    """Whether its answers are kept and replayed unless a request says otherwise."""
    cache_sampled: bool = False
    """Whether a request with `temperature > 0` may be cached too."""
    pools: tuple[tuple[Member, ...], ...] = ()
    """The members grouped by `provider/model`: the keys of one pool together. The strategy
    turns over pools; within one the rationing orders the keys by headroom."""
    _sequence: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        pools: list[list[Member]] = []
        for m in self.members:
            if pools and pools[-1][0].deployment.public_name == m.deployment.public_name:
                pools[-1].append(m)
            else:
                pools.append([m])
        self.pools = tuple(tuple(pool) for pool in pools)
        self._sequence = _smooth_weighted(tuple(pool[0].weight for pool in self.pools))

    @property
    def deployments(self) -> tuple[Deployment, ...]:
        """The members' deployments, in configured order."""
        return tuple(m.deployment for m in self.members)

    @property
    def pooled(self) -> bool:
        """Whether any member is a pool of several keys."""
        return len(self.pools) < len(self.members)

    @property
    def rotates(self) -> bool:
        """Whether each request takes the next turn (round-robin and weighted routes)."""
        return self.strategy in ("round-robin", "weighted") and len(self.pools) > 1

    def order(self, turn: int = 0) -> list[Member]:
        """The members in the order request number `turn` considers them."""
        if not self.rotates:
            return list(self.members)
        pools = self.pools
        if self.strategy == "weighted":
            first = self._sequence[turn % len(self._sequence)]
            rest = sorted(
                (p for i, p in enumerate(pools) if i != first), key=lambda p: -p[0].weight
            )
            ordered = [pools[first], *rest]
        else:
            start = turn % len(pools)
            ordered = [*pools[start:], *pools[:start]]
        return [m for pool in ordered for m in pool]


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
        unique = {d.member: d for r in self.routes.values() for d in r.deployments}
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


def instance_name(provider: str, key: str) -> str:
    """The name of one key's provider object: `provider`, or `provider#label` in a pool."""
    return f"{provider}#{key}" if key else provider


def pool_deployments(
    p: ProviderSettings,
    model: str,
    providers: Mapping[str, Provider],
    *,
    max_tokens: int,
    limits: tuple[Limit, ...],
    context: int | None = None,
    images: bool | None = None,
) -> tuple[Deployment, ...]:
    """`p` serving `model`: one deployment per key of its pool (its one key's alone)."""
    return tuple(
        Deployment(
            providers[instance_name(p.name, k.label)],
            p.spec,
            model,
            max_tokens,
            k.account or p.account,
            limits,
            context,
            p.base_url,
            k.key_env or p.key_env or "",
            images,
            k.label,
        )
        for k in p.pool
    )


def build_router(settings: Settings, providers: Mapping[str, Provider]) -> Router:
    """Every public name: the configured routes, `auto`, each `provider/model`, and each
    upstream model name served by the providers that list it (round-robin). A provider with
    several keys serves each name with all of them (a pool)."""
    deployments: dict[tuple[str, str], tuple[Deployment, ...]] = {}
    by_model: dict[str, list[Member]] = {}
    for p in settings.providers:
        for m in p.models:
            pool = pool_deployments(
                p,
                m.name,
                providers,
                max_tokens=m.max_tokens,
                limits=m.limits,
                context=m.context,
                images=m.images,
            )
            deployments[(p.name, m.name)] = pool
            by_model.setdefault(m.name, []).extend(Member(d) for d in pool)
    routes = {name: Route(name, "round-robin", tuple(ms)) for name, ms in by_model.items()}
    routes.update(
        {
            pool[0].public_name: Route(pool[0].public_name, "fallback", tuple(map(Member, pool)))
            for pool in deployments.values()
        }
    )
    auto = tuple(Member(d) for p in settings.providers for d in deployments[(p.name, p.model)])
    routes[DEFAULT_ROUTE] = Route(DEFAULT_ROUTE, "round-robin", auto)
    by_name = {p.name: p for p in settings.providers}
    for r in settings.routes:
        routes[r.name] = _configured(r, deployments, by_name, providers)
    for alias, target in settings.aliases:
        routes[alias] = routes[target]  # the same route: one rotation, one set of budgets
    return Router(routes)


def _configured(
    route: RouteSettings,
    deployments: Mapping[tuple[str, str], tuple[Deployment, ...]],
    by_name: Mapping[str, ProviderSettings],
    providers: Mapping[str, Provider],
) -> Route:
    members = []
    for m in route.members:
        pool = deployments.get((m.provider, m.model))
        if pool is None:  # a model the provider does not list: its defaults apply
            p = by_name[m.provider]
            pool = pool_deployments(
                p,
                m.model,
                providers,
                max_tokens=p.models[0].max_tokens,
                limits=p.spec.limits_for(m.model) if p.guesses else (),
                images=p.spec.images.get(m.model),
            )
        members += [Member(d, m.weight, m.pace) for d in pool]
    return Route(
        route.name,
        route.strategy,
        tuple(members),
        route.burst,
        route.continuation,
        route.sticky,
        route.cache,
        route.cache_sampled,
    )
