"""The resolved settings the server is built from, and the table of the server settings that
the config file's `[server]` table and the environment can both set (read by `ai_api.config`)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from .limits import Limit
from .providers.presets import ProviderSpec
from .proxies import Proxies
from .trust import TrustStore


class ConfigError(Exception):
    """The configuration cannot be used; the message says what to change."""


class Secret:
    """A string that never shows itself in a repr, a log line or an error."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself, for the one place that must use it."""
        return self._value

    def masked(self) -> str:
        """A hint for humans: the first characters of a long key, never the rest."""
        return self._value[:4] + "****" if len(self._value) >= 20 else "****"

    def __repr__(self) -> str:
        return "Secret('****')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True)
class ModelSettings:
    """One upstream model a provider serves, its completion-token cap and its known limits."""

    name: str
    max_tokens: int
    limits: tuple[Limit, ...] = ()
    context: int | None = None
    images: bool | None = None
    """Whether it takes image input; None: not known (tried)."""


@dataclass(frozen=True, slots=True)
class PoolKey:
    """One key of a provider that has several (a pool): each is tried as a member of its own."""

    label: str
    """How the ledger, `/usage`, the dashboard, `/metrics` and the logs name it: a digest of the
    key (stable whatever the order of the list), or the label the config file gives."""
    secret: Secret
    account: str = ""
    """Keys with the same account share one budget; "" (the default): its own."""
    key_env: str = ""
    """The variable it was read from."""


def key_label(secret: str) -> str:
    """A key's stable short label: six hex digits of its SHA-256 (never any of the key)."""
    return hashlib.sha256(secret.encode()).hexdigest()[:6]


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    """One active provider: its spec, key, upstream root and models (the first is its default)."""

    name: str
    spec: ProviderSpec
    api_key: Secret
    """Its key (the first of `keys` for a pool)."""
    base_url: str
    models: tuple[ModelSettings, ...]
    key_env: str | None = None
    account: str = ""
    """Providers with the same account share one budget (keys of one organisation)."""
    keys: tuple[PoolKey, ...] = ()
    """Its keys when it has several: each a member of its own (its own budget unless it names
    an account, its own cooldowns and circuit); () for one key (`api_key`)."""
    guesses: bool = True
    """Whether the preset's built-in limits apply (to models not listed too)."""
    trust: TrustStore | None = None
    """Its TLS's CAs and client certificate; None: the system's CAs, no certificate."""

    @property
    def budget_account(self) -> str:
        """The account whose budgets this provider spends."""
        return self.account or self.name

    @property
    def pool(self) -> tuple[PoolKey, ...]:
        """Every key it may use: `keys`, or its one key (labelled "")."""
        return self.keys or (PoolKey("", self.api_key, self.account, self.key_env or ""),)

    @property
    def model(self) -> str:
        """The default model: the one the `auto` route uses."""
        return self.models[0].name


Strategy = Literal["round-robin", "fallback", "weighted", "budget"]
Sticky = Literal["keys", "members", "off"]
"""Where a conversation goes back to the member that served it: among the keys of a pool (the
default: the route's turn still picks the provider), across the route's members, or nowhere."""


@dataclass(frozen=True, slots=True)
class MemberSettings:
    """One member of a route: a provider's model, its weight and whether it is paced."""

    provider: str
    model: str
    weight: int = 1
    pace: bool = False

    @property
    def name(self) -> str:
        """`provider/model`."""
        return f"{self.provider}/{self.model}"


@dataclass(frozen=True, slots=True)
class RouteSettings:
    """A public model name and its members, in order."""

    name: str
    strategy: Strategy
    members: tuple[MemberSettings, ...]
    burst: float = 0.1
    """For paced members: the share of a day's quota usable ahead of the day's pace."""
    continuation: bool = True
    """Whether a stream whose member fails mid-answer goes on on the next member."""
    sticky: Sticky = "keys"
    cache: bool = False
    """Whether its answers are kept and replayed (`ai_api.cache`) without the header asking."""
    cache_sampled: bool = False
    """Whether requests with `temperature > 0` are cached too."""


SCOPES = frozenset({"chat", "models", "usage"})
"""What a gateway key may be allowed to do (`ai_api.keys`)."""


@dataclass(frozen=True, slots=True)
class GatewayKey:
    """A key clients send as `Authorization: Bearer <key>`, and what it may do."""

    name: str
    """How logs and errors call it: never the key itself."""
    secret: Secret
    scopes: frozenset[str] = SCOPES
    models: tuple[str, ...] | None = None
    """The model names it may ask for (`provider/*`: any of that provider's); None: any."""

    def may_use(self, model: str) -> bool:
        """Whether this key may ask for `model` (a route or `provider/model` name)."""
        if self.models is None:
            return True
        return any(
            model == allowed or (allowed.endswith("/*") and model.startswith(allowed[:-1]))
            for allowed in self.models
        )


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the server needs, resolved; built by the CLI or a test."""

    providers: tuple[ProviderSettings, ...] = ()
    routes: tuple[RouteSettings, ...] = ()
    aliases: tuple[tuple[str, str], ...] = ()
    """(alias, model name): the alias is served as that name (the same route, its turns and
    budgets); `[aliases]` of the config file."""
    gateway_keys: tuple[GatewayKey, ...] = ()
    host: str = "127.0.0.1"
    port: int = 3000
    max_body_bytes: int = 1024 * 1024
    max_answer_bytes: int = 32 * 1024 * 1024
    """Most bytes of an upstream's body for an answer taken whole (a non-streamed request):
    past it the upstream failed (a protocol error), and the request fails over."""
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    """Longest silence allowed from an upstream: before its headers and between chunks."""
    first_token_timeout: float = 10.0
    """Longest wait for a provider's first chunk, once it has accepted the request (reasoning
    models stream reasoning early: a provider silent this long is left for the next, soon
    enough that the next one's first token still reaches the client within 15 s)."""
    probe_timeout: float = 5.0
    """Longest wait for the first chunk of an attempt that probes a member whose circuit is
    open (a provider that was failing): past it the request moves on to the next member."""
    total_timeout: float = 600.0
    """Longest any one upstream request may last."""
    ping_interval: float = 15.0
    """Longest silence in an Anthropic Messages stream: past it the gateway sends a `ping`
    event (Claude Code drops a stream silent for 300 s; a hidden reasoning is silent)."""
    max_attempts: int = 3
    """Members tried for one request before giving up."""
    deadline: float = 60.0
    """Longest time to find a member that answers, across attempts."""
    continuation: str = "on"
    """`on`: a stream whose member fails mid-answer goes on on the next member (`off`: it
    ends with the in-band error); a route may turn it off for itself."""
    ledger: str = "ai-api-usage.sqlite3"
    """The usage ledger's SQLite file; empty for an in-memory ledger (lost at exit)."""
    redis_url: Secret | None = None
    """Where instances share turns, budgets and health; None: this machine only."""
    state_file: str = ""
    """The SQLite file where the worker processes of one machine share them; empty: this
    process only (a single worker without Redis)."""
    workers: int = 1
    demo: bool = False
    log_level: str = "INFO"
    log_format: str = "text"
    """`text` (one readable line a record) or `json` (one JSON object a line: `logs`)."""
    metrics_public: bool = False
    """Whether `GET /metrics` is served without a gateway key (a scraper inside the network
    that holds none); otherwise it needs a key with the `usage` scope."""
    metrics_dir: str = ""
    """The folder where the worker processes of `--workers` keep their metrics for each other
    (made and removed by the parent); empty: this process counts alone."""
    event_loop: str = "auto"
    """`uvloop`, `asyncio`, or `auto`: uvloop where it is installed (not on Windows)."""
    allowed_hosts: tuple[str, ...] = ()
    """Host names (or `*`) accepted in the `Host` header besides the bound address and the
    loopback names; when bound to every address (0.0.0.0, ::) and empty, any host is."""
    cors_origins: tuple[str, ...] = ()
    """Web origins (`https://app.example`) whose pages may call the gateway; empty: none."""
    keepalive_timeout: float = 75.0
    """Longest an idle client connection is kept open between requests."""
    header_timeout: float = 10.0
    """Longest a client may take to send a request's headers (from its first byte, or from
    the connection's start)."""
    body_timeout: float = 30.0
    """Longest a client may take to send a request's body."""
    max_connections: int = 1024
    """Open client connections at most (per worker); past it new ones get a 503 and are closed."""
    drain_grace: float = 20.0
    """Seconds the requests and streams in flight at SIGTERM (or SIGINT) have to finish before
    the ones still running are ended with the API's in-band error (`server.serve`)."""
    upstream_connections: int = 512
    """Open connections to one provider's origin at most (per worker); past it a request waits
    for one to come back, within the connect timeout."""
    cache_max_bytes: int = 64 * 1024 * 1024
    """The answer cache's bound in bytes (the oldest entries go first past it)."""
    cache_ttl: float = 86400.0
    """Seconds an answer stays in the cache."""
    catalogue_every: float = 21600.0
    """Seconds between readings of each provider's model list (`ai_api.catalogue`); 0: the
    lists are never read (nothing is taken for withdrawn but what a provider answers)."""
    trust_env: bool = True
    """Whether the proxy variables (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`)
    apply to calls to providers, as in httpx and the OpenAI SDK (aiohttp's default is off)."""
    proxies: Proxies = field(default_factory=Proxies)
    """The proxies those variables name (read by `config` when `trust_env`); none: direct."""
    problems: tuple[str, ...] = ()
    """What was configured but cannot be used (a missing key variable...); served without."""

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with some fields changed (None values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


EVENT_LOOPS = ("auto", "uvloop", "asyncio")


@dataclass(frozen=True, slots=True)
class Knob:
    """A server setting that both the file's `[server]` table and a variable can set."""

    name: str
    """The `Settings` field, and the key in `[server]`."""
    env: str
    """The environment variable (it wins over the file)."""
    kind: type[bool] | type[int] | type[float] | type[str] | type[tuple[str, ...]]
    """`tuple`: a list in the file, comma-separated in the variable; `bool`: true or false in
    the file, 1/0, true/false, yes/no or on/off in the variable."""
    minimum: float | None = None
    choices: tuple[str, ...] = ()
    """The values allowed (any case in the variable)."""
    empty_is_value: bool = False
    """An empty variable sets an empty value (the ledger: in memory) instead of nothing."""
    upper: bool = False
    in_file: bool = True


KNOBS = (
    Knob("host", "HOST", str),
    Knob("port", "PORT", int, minimum=0),
    Knob("max_body_bytes", "AI_API_MAX_BODY_BYTES", int, minimum=1),
    Knob("max_answer_bytes", "AI_API_MAX_ANSWER_BYTES", int, minimum=1),
    Knob("connect_timeout", "AI_API_CONNECT_TIMEOUT", float, minimum=0.001),
    Knob("read_timeout", "AI_API_READ_TIMEOUT", float, minimum=0.001),
    Knob("first_token_timeout", "AI_API_FIRST_TOKEN_TIMEOUT", float, minimum=0.001),
    Knob("probe_timeout", "AI_API_PROBE_TIMEOUT", float, minimum=0.001),
    Knob("total_timeout", "AI_API_TOTAL_TIMEOUT", float, minimum=0.001),
    Knob("ping_interval", "AI_API_PING_INTERVAL", float, minimum=0.001),
    Knob("max_attempts", "AI_API_MAX_ATTEMPTS", int, minimum=1),
    Knob("deadline", "AI_API_DEADLINE", float, minimum=0.001),
    Knob("continuation", "AI_API_CONTINUATION", str, choices=("on", "off")),
    Knob("ledger", "AI_API_LEDGER", str, empty_is_value=True),
    Knob("state_file", "AI_API_STATE_FILE", str, in_file=False),
    Knob("workers", "AI_API_WORKERS", int, minimum=1),
    Knob("log_level", "AI_API_LOG_LEVEL", str, upper=True),
    Knob("log_format", "AI_API_LOG_FORMAT", str, choices=("text", "json")),
    Knob("metrics_public", "AI_API_METRICS_PUBLIC", bool),
    Knob("metrics_dir", "AI_API_METRICS_DIR", str, in_file=False),
    Knob("event_loop", "AI_API_EVENT_LOOP", str, choices=EVENT_LOOPS),
    Knob("allowed_hosts", "AI_API_ALLOWED_HOSTS", tuple, empty_is_value=True),
    Knob("cors_origins", "AI_API_CORS_ORIGINS", tuple, empty_is_value=True),
    Knob("keepalive_timeout", "AI_API_KEEPALIVE_TIMEOUT", float, minimum=0.001),
    Knob("header_timeout", "AI_API_HEADER_TIMEOUT", float, minimum=0.001),
    Knob("body_timeout", "AI_API_BODY_TIMEOUT", float, minimum=0.001),
    Knob("max_connections", "AI_API_MAX_CONNECTIONS", int, minimum=1),
    Knob("drain_grace", "AI_API_DRAIN_GRACE", float, minimum=0),
    Knob("upstream_connections", "AI_API_UPSTREAM_CONNECTIONS", int, minimum=1),
    Knob("trust_env", "AI_API_TRUST_ENV", bool),
    Knob("catalogue_every", "AI_API_CATALOGUE_EVERY", float, minimum=0),
    Knob("cache_max_bytes", "AI_API_CACHE_MAX_BYTES", int, minimum=1024),
    Knob("cache_ttl", "AI_API_CACHE_TTL", float, minimum=0.001),
)
"""Every such setting, once: `config` reads the variables and the file through it."""
