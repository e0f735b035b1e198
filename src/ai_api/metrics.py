"""`GET /metrics`: the gateway in Prometheus's text format, through `prometheus_client`.

Two kinds of figures. What happened (requests, attempts, tokens, time to first token and
duration) is counted as each request ends (`Metrics.observe`, an `outcomes` observer); with
`--workers` each process writes its counts to a shared folder (`settings.metrics_dir`, the
library's multiprocess mode) and any worker's scrape sums them all. What is now (each
window's headroom and limit, each member's circuit and cooldown) is read at scrape time from
the shared state, as `/usage` reads it: right across workers and instances. Labels hold
names from the configuration and bounded codes, never a key or a message.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable, Iterator, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from .gateway import GATEWAY
from .headroom import source_of
from .limits import period_name
from .rationing import Rationing
from .routing import Deployment
from .store.ledger import Attempt, RequestRecord

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_SECONDS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0, 300.0)


class Metrics:
    """The counters and histograms of one process (in `multiprocess_dir` when given, where
    every worker's are summed at scrape time)."""

    def __init__(self, multiprocess_dir: str = "") -> None:
        if multiprocess_dir and os.environ.get("PROMETHEUS_MULTIPROC_DIR") != multiprocess_dir:
            raise RuntimeError(
                "the metrics folder must be in PROMETHEUS_MULTIPROC_DIR before the process"
                " starts (`ai-api serve --workers` sets it)"
            )
        self.multiprocess_dir = multiprocess_dir
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self.requests = Counter(
            "ai_api_requests",
            "Client requests, by API, route, the member that answered (or was tried last)"
            " and the HTTP status the client got.",
            ["api", "route", "provider", "model", "status"],
            registry=r,
        )
        self.attempts = Counter(
            "ai_api_upstream_attempts",
            "Attempts on upstream members, by outcome: ok, or the gateway's error code (`key`:"
            " the label of the key, for a provider with several).",
            ["provider", "model", "key", "outcome"],
            registry=r,
        )
        self.tokens = Counter(
            "ai_api_tokens",
            "Tokens spent, by member, key (for a provider with several) and kind (prompt or"
            " completion).",
            ["provider", "model", "key", "kind"],
            registry=r,
        )
        self.cache = Counter(
            "ai_api_cache_requests",
            "Requests the answer cache looked at, by outcome: hit (no provider asked) or miss.",
            ["route", "outcome"],
            registry=r,
        )
        self.saved = Counter(
            "ai_api_cache_tokens_saved",
            "Tokens the answer cache's hits did not spend, by kind (prompt or completion).",
            ["kind"],
            registry=r,
        )
        self.ttft = Histogram(
            "ai_api_time_to_first_token_seconds",
            "From a request's arrival to its answer's first token.",
            ["api", "route"],
            buckets=_SECONDS,
            registry=r,
        )
        self.duration = Histogram(
            "ai_api_request_duration_seconds",
            "From a request's arrival to its answer's end.",
            ["api", "route"],
            buckets=_SECONDS,
            registry=r,
        )

        # The labelled children, by their labels: `labels()` checks and joins them each time
        # (microseconds a call, on every request); a dict lookup does not.
        self._children: dict[tuple[object, ...], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (metric, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def observe(self, record: RequestRecord, attempts: Sequence[Attempt]) -> None:
        """Count a request as it ends (an `outcomes` observer)."""
        route = record.route or ""
        child = self._child
        status = str(record.status)
        child(
            self.requests, record.api, route, record.provider or "", record.model or "", status
        ).inc()
        for a in attempts:
            key = a.key or ""
            child(self.attempts, a.provider, a.model, key, a.error or "ok").inc()
            if a.prompt_tokens:
                child(self.tokens, a.provider, a.model, key, "prompt").inc(a.prompt_tokens)
            if a.completion_tokens:
                child(self.tokens, a.provider, a.model, key, "completion").inc(a.completion_tokens)
        if record.cache is not None:
            child(self.cache, route, record.cache).inc()
            if record.cache == "hit":
                child(self.saved, "prompt").inc(record.prompt_tokens)
                child(self.saved, "completion").inc(record.completion_tokens)
        if record.ttft is not None:
            child(self.ttft, record.api, route).observe(record.ttft)
        child(self.duration, record.api, route).observe(record.duration)

    def counted(self) -> bytes:
        """The counters and histograms in the text format: this process's, or every worker's."""
        if not self.multiprocess_dir:
            return generate_latest(self.registry)
        registry = CollectorRegistry(auto_describe=False)
        MultiProcessCollector(registry, self.multiprocess_dir)  # type: ignore[no-untyped-call]
        return generate_latest(registry)


METRICS = web.AppKey("metrics", Metrics)


class _Now:
    """A collector of families read beforehand (the state is read asynchronously)."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


async def state_families(
    rationing: Rationing,
    deployments: Iterable[Deployment],
    queued: int,
    gone: Collection[tuple[str, str]] = (),
) -> list[Metric]:
    """What is now: headroom and limit per window, circuit and cooldown per member, the keys
    refused and the models withdrawn (`gone`), the ledger's queue, the build."""
    withdrawn = GaugeMetricFamily(
        "ai_api_model_withdrawn",
        "1 for each configured model its provider no longer lists (routed around).",
        labels=["provider", "model"],
    )
    for provider, model in sorted(gone):
        withdrawn.add_metric([provider, model], 1.0)
    refused = GaugeMetricFamily(
        "ai_api_key_refused_until_seconds",
        "Until when (Unix time) a key its provider refused is out of rotation.",
        labels=["key"],
    )
    for name, until in rationing.refused.items(rationing.clock()):
        refused.add_metric([name], until)
    remaining = GaugeMetricFamily(
        "ai_api_window_remaining",
        "What a budget's window has left (requests or tokens); absent when unknown.",
        labels=["account", "model", "kind", "period", "source"],
    )
    limit = GaugeMetricFamily(
        "ai_api_window_limit",
        "A budget's window's limit, and where it comes from (builtin, configured, reported,"
        " learned).",
        labels=["account", "model", "kind", "period", "source"],
    )
    circuit = GaugeMetricFamily(
        "ai_api_circuit_state",
        "1 for the state each member's circuit is in (closed, open, half-open).",
        labels=["member", "key", "account", "state"],
    )
    cooldown = GaugeMetricFamily(
        "ai_api_cooldown_until_seconds",
        "Until when (Unix time) a member rests; 0 when it does not.",
        labels=["member", "key", "account"],
    )
    seen: set[str] = set()
    now = rationing.clock()
    for d in sorted(deployments, key=lambda d: (d.public_name, d.key)):
        snapshot = await rationing.snapshot(d)
        account, model = d.budget_key.split("|", 1)
        if d.budget_key not in seen:
            seen.add(d.budget_key)
            limits = rationing.limits(d)
            for w in snapshot.windows:
                labels = [account, model, w.kind, period_name(w.period), source_of(w, limits)]
                if w.limit is not None:
                    limit.add_metric(labels, w.limit)
                if w.remaining is not None:
                    remaining.add_metric(labels, max(0.0, w.remaining))
        for state in ("closed", "open", "half-open"):
            value = 1.0 if snapshot.health.circuit == state else 0.0
            circuit.add_metric([d.public_name, d.key, account, state], value)
        rest = snapshot.ready_at if snapshot.ready_at > now else 0.0
        cooldown.add_metric([d.public_name, d.key, account], rest)
    depth = GaugeMetricFamily(
        "ai_api_ledger_queue_depth",
        "Records waiting to be written to the usage ledger (in the process that answered).",
        value=queued,
    )
    build = GaugeMetricFamily(
        "ai_api_build_info", "The running ai-api's version.", labels=["version"]
    )
    build.add_metric([_version()], 1.0)
    return [remaining, limit, circuit, cooldown, withdrawn, refused, depth, build]


def _version() -> str:
    try:
        return version("ai-api")
    except PackageNotFoundError:  # run from a checkout without being installed
        return "unknown"


async def metrics(request: web.Request) -> web.Response:
    """`GET /metrics`: the Prometheus text format."""
    gateway = request.app[GATEWAY]
    counted = request.app[METRICS].counted()
    rationing = gateway.rationing
    deployments = [*gateway.router.deployments(), *gateway.embeddings.deployments()]
    families = await state_families(
        rationing, deployments, rationing.ledger.queued, gateway.catalogue.gone
    )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Now(families))
    body = counted + generate_latest(registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


def add_routes(app: web.Application, made: Metrics) -> None:
    """Serve `/metrics` from `made`, which the gateway's observers feed."""
    app[METRICS] = made
    app.router.add_get("/metrics", metrics)
