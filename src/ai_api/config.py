"""Settings, read once from the environment and a `.env` file, then passed in."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from dotenv import dotenv_values

from .providers.presets import PRESETS, ProviderSpec


class ConfigError(Exception):
    """The configuration cannot be used; the message says what to change."""


class Secret:
    """A string that never shows itself in a repr, a log line or an error."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself, for the one place that must send it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('****')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    """One active provider: its preset, key, upstream root, model and completion cap."""

    spec: ProviderSpec
    api_key: Secret
    base_url: str
    model: str
    max_tokens: int

    @property
    def name(self) -> str:
        """The preset's name."""
        return self.spec.name


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the server needs, resolved; built by the CLI or a test."""

    providers: tuple[ProviderSettings, ...] = ()
    host: str = "127.0.0.1"
    port: int = 3000
    max_body_bytes: int = 1024 * 1024
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    """Longest silence allowed from an upstream: before its headers and between chunks."""
    demo: bool = False
    log_level: str = "INFO"

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


def load_settings(env: Mapping[str, str]) -> Settings:
    """Settings from variables (see `read_environment`); raises `ConfigError` on bad values."""
    providers = tuple(_provider(spec, env) for spec in PRESETS if env.get(spec.key_env, "").strip())
    return Settings(
        providers=providers,
        host=env.get("HOST") or "127.0.0.1",
        port=_number(env, "PORT", 3000, int, minimum=0),
        max_body_bytes=_number(env, "AI_API_MAX_BODY_BYTES", 1024 * 1024, int, minimum=1),
        connect_timeout=_number(env, "AI_API_CONNECT_TIMEOUT", 10.0, float, minimum=0.001),
        read_timeout=_number(env, "AI_API_READ_TIMEOUT", 60.0, float, minimum=0.001),
        log_level=(env.get("AI_API_LOG_LEVEL") or "INFO").upper(),
    )


def _provider(spec: ProviderSpec, env: Mapping[str, str]) -> ProviderSettings:
    prefix = spec.env_prefix
    return ProviderSettings(
        spec=spec,
        api_key=Secret(env[spec.key_env].strip()),
        base_url=(env.get(f"{prefix}_BASE_URL") or spec.base_url).rstrip("/"),
        model=env.get(f"{prefix}_MODEL") or spec.default_model,
        max_tokens=_number(env, f"{prefix}_MAX_TOKENS", spec.default_max_tokens, int, minimum=1),
    )


N = TypeVar("N", int, float)


def _number(env: Mapping[str, str], name: str, default: N, kind: type[N], *, minimum: N) -> N:
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
