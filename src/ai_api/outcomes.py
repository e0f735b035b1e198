"""What became of each client request: the `Trace` its attempts add to while it runs, and
the `RequestRecord` made of it when it ends, which the access log, the metrics, the dashboard
and the ledger's requests table all read (`Observers`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING

from .store.ledger import Attempt, RequestRecord

if TYPE_CHECKING:
    from .routing import Deployment

__all__ = ["MODEL_APIS", "Observer", "RequestRecord", "Trace", "api_of", "attempted", "routed"]

Observer = Callable[[RequestRecord, Sequence[Attempt]], None]
"""Told of every request as it ends, with its attempts that ended (as the ledger records
them); cheap and synchronous (it runs on the request's path)."""

_APIS = {
    "/chat": "chat",
    "/v1/chat/completions": "openai",
    "/v1/messages": "anthropic",
    "/v1/responses": "responses",
    "/v1/embeddings": "embeddings",
    "/v1/models": "models",
    "/usage": "usage",
    "/health": "health",
    "/metrics": "metrics",
}
MODEL_APIS = frozenset({"chat", "openai", "anthropic", "responses", "embeddings"})
"""The APIs whose requests ask a model: the ones the ledger keeps a record of."""

_TRACE: ContextVar[Trace | None] = ContextVar("ai_api_trace", default=None)


def api_of(path: str) -> str:
    """The API a request path speaks: `chat` (the seed's `/chat`), `openai`, `anthropic`,
    `responses`, `embeddings`, `count_tokens`, `models`, `usage`, `health`, `metrics`,
    `dashboard`, else
    `other` (a bounded set: it labels metrics)."""
    api = _APIS.get(path)
    if api is not None:
        return api
    if path.startswith("/openai/v1/"):  # Groq's layout, which the OpenAI paths also take
        return api_of(path[7:])
    if path.startswith("/v1/models/"):
        return "models"
    if path == "/v1/messages/count_tokens":
        return "count_tokens"
    if path == "/dashboard" or path.startswith("/dashboard/") or path.startswith("/usage/"):
        return "dashboard"
    return "other"


class Trace:
    """One request while it runs: when it began, its route and id once chosen, and what its
    ended attempts spent. The front middleware makes one per request (`begin`); the code that
    routes and rations it adds to it through `routed` and `attempted`, without being passed
    it (they run in the request's task, or in tasks it started)."""

    __slots__ = ("at", "cache", "ended", "error", "hit", "keeps", "request_id", "route")

    def __init__(self, at: float) -> None:
        self.at = at
        self.route: str | None = None
        self.request_id: str | None = None
        self.ended: list[Attempt] = []  # as the ledger records them, in the order they ended
        self.error: str | None = None  # set when the request was answered with an error
        self.cache: str | None = None  # what the answer cache did (`ai_api.cache`)
        self.hit: Attempt | None = None  # a cache hit: who gave the answer kept, what it cost
        self.keeps: list[Callable[[], Awaitable[None]]] = []  # done once answered (`settle`)

    def begin(self) -> Callable[[], None]:
        """Make this the running request's trace; returns what undoes that."""
        token = _TRACE.set(self)
        return lambda: _TRACE.reset(token)

    async def settle(self, status: int) -> None:
        """The handler answered with `status`: if that is the whole answer (no error, and its
        last attempt ended well), do what waited for it (keep it in the answer cache)."""
        keeps, self.keeps = self.keeps, []
        last = self.ended[-1] if self.ended else None
        if status >= 400 or self.error is not None or (last is not None and last.error):
            return
        for keep in keeps:
            await keep()

    def record(self, method: str, path: str, status: int, now: float) -> RequestRecord:
        """The request's record as it ends at `now`, answered with `status`."""
        ended = self.ended
        # What the answer cost: its attempts, or for a cache hit the answer it replayed.
        spent = ended or ([self.hit] if self.hit is not None else [])
        last = spent[-1] if spent else None
        first = next((a for a in ended if a.ttft is not None), None)  # gave the first token
        error = self.error
        if error is None and last is not None and last.error is not None and status < 400:
            error = last.error  # its answer failed (or its client left) after the first byte
        ttft = None
        if first is not None and first.ttft is not None:
            ttft = max(0.0, first.at + first.ttft - self.at)
        return RequestRecord(
            at=self.at,
            request_id=self.request_id,
            method=method,
            path=path,
            api=api_of(path),
            route=self.route,
            status=status,
            error=error,
            provider=None if last is None else last.provider,
            account=None if last is None else last.account,
            model=None if last is None else last.model,
            attempts=len(ended),
            ttft=ttft,
            duration=max(0.0, now - self.at),
            prompt_tokens=sum(a.prompt_tokens for a in spent),
            completion_tokens=sum(a.completion_tokens for a in spent),
            key=None if last is None else last.key,
            cache=self.cache,
        )


def routed(route: str, request_id: str) -> None:
    """The running request goes to `route` under `request_id`."""
    trace = _TRACE.get()
    if trace is not None:
        trace.route = route
        trace.request_id = request_id


def cached(outcome: str, d: Deployment | None = None, prompt: int = 0, completion: int = 0) -> None:
    """The answer cache's `outcome` for the running request: `miss`, or `hit` with the
    member whose answer was kept and what that answer cost (the tokens the hit saved)."""
    trace = _TRACE.get()
    if trace is None:
        return
    trace.cache = outcome
    if d is not None:
        account = d.budget_key.split("|", 1)[0]
        trace.hit = Attempt(
            trace.at,
            trace.request_id or "",
            trace.route or "",
            d.name,
            account,
            d.model,
            200,
            None,
            prompt,
            completion,
            False,
            None,
            0.0,
            key=d.key or None,
        )


def when_answered(keep: Callable[[], Awaitable[None]]) -> bool:
    """Run `keep` once the running request is answered whole (`Trace.settle`); False when no
    request is running (the caller decides then)."""
    trace = _TRACE.get()
    if trace is None:
        return False
    trace.keeps.append(keep)
    return True


def attempted(attempt: Attempt) -> None:
    """One of the running request's attempts ended, as the ledger records it."""
    trace = _TRACE.get()
    if trace is not None:
        trace.ended.append(attempt)
