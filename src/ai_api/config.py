"""Settings, read once from the environment, a `.env` file and an optional TOML file, then
passed in. Nothing here reads the environment except through the mapping it is given."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, TypeVar

from dotenv import dotenv_values

from .limits import Limit
from .providers.presets import PRESETS, ProviderSpec


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


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    """One active provider: its spec, key, upstream root and models (the first is its default)."""

    name: str
    spec: ProviderSpec
    api_key: Secret
    base_url: str
    models: tuple[ModelSettings, ...]
    key_env: str | None = None
    account: str = ""
    """Providers with the same account share one budget (keys of one organisation)."""

    @property
    def budget_account(self) -> str:
        """The account whose budgets this provider spends."""
        return self.account or self.name

    @property
    def model(self) -> str:
        """The default model: the one the `auto` route uses."""
        return self.models[0].name


Strategy = Literal["round-robin", "fallback", "weighted", "budget"]


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


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the server needs, resolved; built by the CLI or a test."""

    providers: tuple[ProviderSettings, ...] = ()
    routes: tuple[RouteSettings, ...] = ()
    gateway_keys: tuple[Secret, ...] = ()
    host: str = "127.0.0.1"
    port: int = 3000
    max_body_bytes: int = 1024 * 1024
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    """Longest silence allowed from an upstream: before its headers and between chunks."""
    first_token_timeout: float = 30.0
    """Longest wait for a provider's first chunk, once it has accepted the request."""
    total_timeout: float = 600.0
    """Longest any one upstream request may last."""
    max_attempts: int = 3
    """Members tried for one request before giving up."""
    deadline: float = 60.0
    """Longest time to find a member that answers, across attempts."""
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
    event_loop: str = "auto"
    """`uvloop`, `asyncio`, or `auto`: uvloop where it is installed (not on Windows)."""
    problems: tuple[str, ...] = ()
    """What was configured but cannot be used (a missing key variable...); served without."""

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with some fields changed (None values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def read_environment(environ: Mapping[str, str], dotenv_path: Path | None) -> dict[str, str]:
    """The `.env` file's values overlaid by the real environment (real variables win)."""
    merged: dict[str, str] = {}
    if dotenv_path is not None and dotenv_path.is_file():
        merged.update({k: v for k, v in dotenv_values(dotenv_path).items() if v is not None})
    merged.update(environ)
    return merged


def load_settings(env: Mapping[str, str], config_file: Path | None = None) -> Settings:
    """Settings from variables (see `read_environment`) and an optional TOML file.

    The file is `config_file`, else `AI_API_CONFIG` if set. Raises `ConfigError`.
    """
    from .config_file import apply_file

    settings = Settings(
        providers=tuple(preset_settings(spec, env) for spec in PRESETS if preset_active(spec, env))
    )
    path = config_file or (Path(env["AI_API_CONFIG"]) if env.get("AI_API_CONFIG") else None)
    if path is not None:
        settings = apply_file(settings, path, env)
    keys = tuple(Secret(k.strip()) for k in env.get("AI_API_KEYS", "").split(",") if k.strip())
    return settings.with_overrides(
        gateway_keys=settings.gateway_keys + keys or None,
        host=env.get("HOST") or None,
        port=number(env, "PORT", None, int, minimum=0),
        max_body_bytes=number(env, "AI_API_MAX_BODY_BYTES", None, int, minimum=1),
        connect_timeout=number(env, "AI_API_CONNECT_TIMEOUT", None, float, minimum=0.001),
        read_timeout=number(env, "AI_API_READ_TIMEOUT", None, float, minimum=0.001),
        first_token_timeout=number(env, "AI_API_FIRST_TOKEN_TIMEOUT", None, float, minimum=0.001),
        total_timeout=number(env, "AI_API_TOTAL_TIMEOUT", None, float, minimum=0.001),
        max_attempts=number(env, "AI_API_MAX_ATTEMPTS", None, int, minimum=1),
        deadline=number(env, "AI_API_DEADLINE", None, float, minimum=0.001),
        ledger=env.get("AI_API_LEDGER"),
        redis_url=Secret(env["REDIS_URL"]) if env.get("REDIS_URL") else None,
        state_file=env.get("AI_API_STATE_FILE") or None,
        workers=number(env, "AI_API_WORKERS", None, int, minimum=1),
        log_level=(env.get("AI_API_LOG_LEVEL") or "").upper() or None,
        event_loop=choice(env, "AI_API_EVENT_LOOP", EVENT_LOOPS),
    )


def preset_active(spec: ProviderSpec, env: Mapping[str, str]) -> bool:
    """A preset is active when its key is set, or for a local server, when its model is."""
    if spec.key_env is None:
        return bool(env.get(f"{spec.env_prefix}_MODEL", "").strip())
    return bool(env.get(spec.key_env, "").strip())


def preset_settings(
    spec: ProviderSpec,
    env: Mapping[str, str],
    *,
    name: str | None = None,
    key_env: str | None = None,
    base_url: str | None = None,
    models: tuple[str, ...] | None = None,
    max_tokens: int | None = None,
) -> ProviderSettings:
    """A provider from its spec, the `<PREFIX>_*` variables and explicit overrides."""
    prefix = spec.env_prefix
    key_env = key_env or spec.key_env or f"{prefix}_API_KEY"
    cap = max_tokens or number(env, f"{prefix}_MAX_TOKENS", spec.default_max_tokens, int, minimum=1)
    if models is None:
        first = env.get(f"{prefix}_MODEL") or spec.default_model
        if first is None:
            raise ConfigError(f"{spec.label} needs a model: set {prefix}_MODEL.")
        models = (first, *(m for m in spec.models if m != first))
    url = base_url or env.get(f"{prefix}_BASE_URL") or spec.base_url
    if "{" in url:
        try:
            url = url.format_map(env)
        except KeyError as exc:
            raise ConfigError(f"{spec.label} needs {exc.args[0]} for its URL.") from None
    return ProviderSettings(
        name=name or spec.name,
        spec=spec,
        # Local servers take any key; clients must send one, so send a placeholder.
        api_key=Secret(env.get(key_env, "").strip() or "local"),
        base_url=url.rstrip("/"),
        models=tuple(
            ModelSettings(m, cap, spec.limits_for(m), spec.contexts.get(m)) for m in models
        ),
        key_env=key_env,
    )


N = TypeVar("N", int, float)


EVENT_LOOPS = ("auto", "uvloop", "asyncio")


def choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str | None:
    """`env[name]` if it is one of `choices` (any case), None when unset; else `ConfigError`."""
    raw = env.get(name, "").strip().lower()
    if not raw:
        return None
    if raw not in choices:
        raise ConfigError(f"{name}={raw!r} is not one of: {', '.join(choices)}.")
    return raw


def number(env: Mapping[str, str], name: str, default: Any, kind: type[N], *, minimum: N) -> Any:
    """`env[name]` as a number of `kind`, or `default` when unset; `ConfigError` if invalid."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a valid {kind.__name__}.") from None
    if value < minimum:
        raise ConfigError(f"{name}={raw!r} must be at least {minimum}.")
    return value
