"""The answers of a request that no member was tried for: a field no member takes, a request
no window can ever take (413), every member out of room or resting (429, backed by evidence)."""

from __future__ import annotations

import logging
import math
from collections.abc import Collection, Sequence
from typing import NoReturn

from .errors import InvalidRequest, NoProviders, NotFound, PayloadTooLarge, RateLimited
from .rationing import Rationing
from .routing import Member, Route

log = logging.getLogger("ai_api.refusals")


def refuse(route: Route, required: Collection[str]) -> NoReturn:
    """No member of `route` takes the fields `required` (or it has no member)."""
    if not route.members:
        raise NoProviders(f"The route `{route.name}` has no active provider.")
    fields = ", ".join(f"`{f}`" for f in required if f)
    names = ", ".join(d.public_name for d in route.deployments)
    raise InvalidRequest(
        f"No provider of `{route.name}` takes {fields}; members: {names}.",
        param=next(iter(required), None),
    )


def refuse_images(route: Route) -> NoReturn:
    """The request carries images and every member of `route` is known not to take them."""
    names = ", ".join(d.public_name for d in route.deployments)
    raise InvalidRequest(
        f"The messages carry images and no model of `{route.name}` takes them ({names}):"
        " route to a model that does, or mark one with `images = true` in the config file.",
        param="messages",
        code="images_not_supported",
    )


def refuse_withdrawn(route: Route) -> NoReturn:
    """Every member of `route` is a model its provider no longer lists (`ai_api.catalogue`)."""
    names = ", ".join(sorted({d.public_name for d in route.deployments}))
    raise NotFound(
        f"The model `{route.name}` cannot answer now: its providers no longer list {names}"
        " (withdrawn). Pick another model; GET /v1/models lists the ones that can answer.",
        code="model_not_found",
        param="model",
    )


def too_large(
    route: Route, prompt_tokens: int, request_id: str, members: Sequence[Member]
) -> PayloadTooLarge:
    """No member's windows can take the request, even empty: waiting would not help."""
    names = ", ".join(m.deployment.public_name for m in members)
    log.warning("request %s is larger than any window of `%s` can take", request_id, route.name)
    return PayloadTooLarge(
        f"The request (about {prompt_tokens} prompt tokens, plus its completion) is larger"
        f" than any member of `{route.name}` takes in a window, however empty ({names}):"
        " shorten it or lower max_tokens.",
        code="request_too_large",
    )


async def pooled_429(
    route: Route, next_free: float | None, rationing: Rationing, members: Sequence[Member]
) -> RateLimited:
    """Every member is out of room or resting: when the first has room again, and what
    is left of each kind of window (the headers providers send)."""
    now = rationing.clock()
    wait = max(1, math.ceil((next_free or now + 60) - now))
    headers = {"Retry-After": str(wait), "X-AI-API-Attempts": "0"}
    states = [(await rationing.snapshot(m.deployment)).windows for m in members]
    for kind in ("requests", "tokens"):
        limit = remaining = 0
        for windows in states:
            of_kind = [w for w in windows if w.kind == kind]
            if of_kind:
                w = min(of_kind, key=lambda w: w.period)
                limit += w.limit or 0
                remaining += max(0, int(w.remaining or 0))
        headers[f"x-ratelimit-limit-{kind}"] = str(limit)
        headers[f"x-ratelimit-remaining-{kind}"] = str(remaining)
        headers[f"x-ratelimit-reset-{kind}"] = f"{wait}s"
    message = (
        f"Every provider of `{route.name}` is out of headroom or cooling down; the first"
        f" has room again in {wait} s."
    )
    log.warning("429 answered without an attempt: %s", message)
    return RateLimited(message, headers=headers)
