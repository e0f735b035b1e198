"""The optional TOML configuration file: providers, their models, routes, server settings.

```toml
[server]
port = 3000
gateway_keys_env = "AI_API_KEYS"     # a variable holding comma-separated gateway keys

[providers.groq]                     # a preset: everything below is optional
models = ["openai/gpt-oss-120b", { name = "llama-3.1-8b-instant", max_tokens = 2048 }]

[providers.gpu-box]                  # any OpenAI-compatible endpoint
kind = "openai"
base_url = "http://10.0.0.5:8000/v1"
api_key_env = "GPU_BOX_KEY"
models = ["qwen3-32b"]

[routes.smart]
strategy = "fallback"                # or "round-robin" (the default)
members = ["groq/openai/gpt-oss-120b", "gpu-box/qwen3-32b"]
```

Presets stay active by their key variables as without a file; a `[providers.NAME]` table
overrides a preset of that name or adds a provider, and `enabled = false` turns one off.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, TypeVar

import msgspec

from .config import (
    ConfigError,
    MemberSettings,
    ProviderSettings,
    RouteSettings,
    Secret,
    Settings,
    Strategy,
    preset_active,
    preset_settings,
)
from .limits import Limit
from .providers.presets import GENERIC, PRESETS, preset, rates


class ModelEntry(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A model with its own completion cap and limits (overriding the built-in ones)."""

    name: str
    max_tokens: int | None = None
    context: int | None = None
    rpm: int | None = None
    rph: int | None = None
    rpd: int | None = None
    rpmonth: int | None = None
    tpm: int | None = None
    tph: int | None = None
    tpd: int | None = None
    tpmonth: int | None = None

    def limits(self, builtin: tuple[Limit, ...]) -> tuple[Limit, ...]:
        """The built-in limits with this entry's values in their place."""
        given = rates(
            rpm=self.rpm,
            rph=self.rph,
            rpd=self.rpd,
            rpmonth=self.rpmonth,
            tpm=self.tpm,
            tph=self.tph,
            tpd=self.tpd,
            tpmonth=self.tpmonth,
        )
        keys = {(lim.kind, lim.period) for lim in given}
        return tuple(lim for lim in builtin if (lim.kind, lim.period) not in keys) + given


class ProviderEntry(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """`[providers.NAME]`."""

    kind: str | None = None
    enabled: bool = True
    account: str | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    models: list[str | ModelEntry] | None = None
    max_tokens: int | None = None


class MemberEntry(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A route member with options."""

    member: str
    weight: int = 1
    pace: bool = False


class RouteEntry(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """`[routes.NAME]`."""

    members: list[str | MemberEntry]
    strategy: Strategy = "round-robin"
    burst: float = 0.1


class ServerEntry(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """`[server]`; environment variables win over these."""

    host: str | None = None
    port: int | None = None
    max_body_bytes: int | None = None
    connect_timeout: float | None = None
    read_timeout: float | None = None
    first_token_timeout: float | None = None
    total_timeout: float | None = None
    max_attempts: int | None = None
    deadline: float | None = None
    ledger: str | None = None
    redis_url_env: str | None = None
    workers: int | None = None
    log_level: str | None = None
    event_loop: Literal["auto", "uvloop", "asyncio"] | None = None
    gateway_keys_env: str | None = None
    gateway_keys: list[str] = []


class _Sections(msgspec.Struct, forbid_unknown_fields=True):
    server: ServerEntry = msgspec.field(default_factory=ServerEntry)
    providers: dict[str, dict[str, Any]] = {}
    routes: dict[str, dict[str, Any]] = {}


@dataclass(frozen=True, slots=True)
class ConfigFile:
    """The whole file, type-checked."""

    server: ServerEntry
    providers: dict[str, ProviderEntry]
    routes: dict[str, RouteEntry]


def read_file(path: Path) -> ConfigFile:
    """Parse and type-check the file; `ConfigError` names the bad key and where it is."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        sections = msgspec.convert(raw, _Sections)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return ConfigFile(
        server=sections.server,
        providers={
            name: _typed(path, f"providers.{name}", entry, ProviderEntry)
            for name, entry in sections.providers.items()
        },
        routes={
            name: _typed(path, f"routes.{name}", entry, RouteEntry)
            for name, entry in sections.routes.items()
        },
    )


T = TypeVar("T")


def _typed(path: Path, where: str, entry: dict[str, Any], kind: type[T]) -> T:
    try:
        return msgspec.convert(entry, kind)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{path}: [{where}]: {exc}") from None


def apply_file(settings: Settings, path: Path, env: Mapping[str, str]) -> Settings:
    """`settings` with the file's providers, routes and server values applied."""
    file = read_file(path)
    problems: list[str] = []
    providers = {p.name: p for p in settings.providers}
    for name, entry in file.providers.items():
        if "/" in name or name == "auto":
            raise ConfigError(f"{path}: provider name {name!r} may not be 'auto' or contain '/'.")
        provider = _provider(name, entry, env, problems)
        if provider is None:
            providers.pop(name, None)
        else:
            providers[name] = provider
    known = {spec.name for spec in PRESETS} | set(file.providers)
    routes = tuple(
        _route(name, entry, providers, known, problems) for name, entry in file.routes.items()
    )
    server = file.server
    keys = list(server.gateway_keys)
    if server.gateway_keys_env:
        raw = env.get(server.gateway_keys_env, "")
        if not raw.strip():
            problems.append(f"gateway keys: {server.gateway_keys_env} is not set")
        keys += [k.strip() for k in raw.split(",") if k.strip()]
    return replace(
        settings,
        providers=tuple(providers.values()),
        routes=routes,
        gateway_keys=tuple(Secret(k) for k in keys),
        problems=settings.problems + tuple(problems),
    ).with_overrides(
        host=server.host,
        port=server.port,
        max_body_bytes=server.max_body_bytes,
        connect_timeout=server.connect_timeout,
        read_timeout=server.read_timeout,
        first_token_timeout=server.first_token_timeout,
        total_timeout=server.total_timeout,
        max_attempts=server.max_attempts,
        deadline=server.deadline,
        ledger=server.ledger,
        redis_url=_secret(env, server.redis_url_env),
        workers=server.workers,
        log_level=server.log_level and server.log_level.upper(),
        event_loop=server.event_loop,
    )


def _secret(env: Mapping[str, str], name: str | None) -> Secret | None:
    value = env.get(name, "") if name else ""
    return Secret(value) if value else None


def _provider(
    name: str, entry: ProviderEntry, env: Mapping[str, str], problems: list[str]
) -> ProviderSettings | None:
    kind = entry.kind or (name if preset(name) else None)
    spec = preset(kind) if kind else None
    if spec is None:
        known = "openai (any OpenAI-compatible endpoint) or a preset name"
        raise ConfigError(f"providers.{name}: unknown kind {kind!r}; use {known}.")
    if not entry.enabled:
        return None
    if spec is GENERIC and not (entry.base_url and entry.models):
        raise ConfigError(f"providers.{name}: kind 'openai' needs base_url and models.")
    key_env = entry.api_key_env or spec.key_env
    if key_env and not env.get(key_env, "").strip():
        problems.append(f"providers.{name}: {key_env} is not set; provider inactive")
        return None
    if spec.local and entry.models is None and not preset_active(spec, env):
        problems.append(f"providers.{name}: no model; set models or {spec.env_prefix}_MODEL")
        return None
    entries: dict[str, ModelEntry] = {}
    models = None
    if entry.models is not None:
        if not entry.models:
            raise ConfigError(f"providers.{name}: models is empty.")
        for model in entry.models:
            given = model if isinstance(model, ModelEntry) else ModelEntry(name=model)
            entries[given.name] = given
        models = tuple(entries)
    settings = preset_settings(
        spec,
        env,
        name=name,
        key_env=key_env,
        base_url=entry.base_url,
        models=models,
        max_tokens=entry.max_tokens,
    )
    resolved = []
    for m in settings.models:
        override = entries.get(m.name)
        if override is not None:
            cap = override.max_tokens or m.max_tokens
            context = override.context or m.context
            m = replace(m, max_tokens=cap, limits=override.limits(m.limits), context=context)
        resolved.append(m)
    return replace(settings, models=tuple(resolved), account=entry.account or "")


def _route(
    name: str,
    entry: RouteEntry,
    providers: Mapping[str, ProviderSettings],
    known: set[str],
    problems: list[str],
) -> RouteSettings:
    if "/" in name:
        raise ConfigError(f"routes.{name}: a route name may not contain '/' (that pins a model).")
    members = []
    seen = set()
    for item in entry.members:
        given = item if isinstance(item, MemberEntry) else MemberEntry(member=item)
        provider, _, model = given.member.partition("/")
        if not model:
            raise ConfigError(f"routes.{name}: member {given.member!r} is not 'provider/model'.")
        if given.member in seen:
            raise ConfigError(f"routes.{name}: member {given.member!r} is listed twice.")
        if given.weight < 1:
            raise ConfigError(
                f"routes.{name}: member {given.member!r} needs a weight of 1 or more."
            )
        seen.add(given.member)
        if provider not in known:
            raise ConfigError(f"routes.{name}: member {given.member!r} names no provider.")
        if provider not in providers:
            problems.append(
                f"routes.{name}: {given.member} skipped, provider {provider!r} is inactive"
            )
            continue
        members.append(MemberSettings(provider, model, given.weight, given.pace))
    if not members:
        problems.append(f"routes.{name}: no active member")
    return RouteSettings(
        name=name, strategy=entry.strategy, members=tuple(members), burst=entry.burst
    )
