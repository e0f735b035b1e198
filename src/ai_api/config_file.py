"""The optional TOML configuration file: providers, their models, routes, server settings.

```toml
[server]
port = 3000
gateway_keys_env = "AI_API_KEYS"     # a variable holding comma-separated gateway keys
upstream_connections = 512           # open to one provider at most; then requests wait
trust_env = true                     # HTTPS_PROXY, HTTP_PROXY, NO_PROXY apply (default)

[providers.groq]                     # a preset: everything below is optional
models = ["openai/gpt-oss-120b", { name = "llama-3.1-8b-instant", max_tokens = 2048 }]

[providers.gpu-box]                  # any OpenAI-compatible endpoint
kind = "openai"
base_url = "http://10.0.0.5:8000/v1"
api_key_env = "GPU_BOX_KEY"
models = ["qwen3-32b"]

[providers.internal]                 # https with a private CA and a client certificate
kind = "openai"
base_url = "https://llm.internal:8443/v1"
models = ["llama-3.3-70b"]
ca_bundle = "certs/internal-ca.pem"  # PEM CAs trusted instead of the system's
client_cert = "certs/gateway.pem"    # mutual TLS; its key in the same file or in client_key
client_key = "certs/gateway.key"     # paths are relative to this file

[routes.smart]
strategy = "fallback"                # or "round-robin" (the default)
members = ["groq/openai/gpt-oss-120b", "gpu-box/qwen3-32b"]
continuation = false                 # a stream failing mid-answer ends (default: goes on)

[keys.ci]                            # a gateway key held to some scopes and models
key_env = "CI_GATEWAY_KEY"           # the variable holding it
scopes = ["chat"]                    # of chat, models, usage (default: all three)
models = ["smart", "groq/*"]         # default: any

[aliases]                            # more names for a model name (clients' default names)
"claude-sonnet-4-5" = "smart"
```

Presets stay active by their key variables as without a file; a `[providers.NAME]` table
overrides a preset of that name or adds a provider, and `enabled = false` turns one off.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import msgspec

from .limits import Limit
from .providers.presets import RATES, rates
from .settings import KNOBS, ConfigError, Knob, Sticky, Strategy


class ModelEntry(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A model with its own completion cap and limits (overriding the built-in ones)."""

    name: str
    max_tokens: int | None = None
    context: int | None = None
    images: bool | None = None
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
        given = rates("configured", **{name: getattr(self, name) for name in RATES})
        keys = {(lim.kind, lim.period) for lim in given}
        return tuple(lim for lim in builtin if (lim.kind, lim.period) not in keys) + given


class PoolKeyEntry(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One key of a provider's `api_key_env` list: its variable, and optionally the account
    it shares a budget with and the label it is shown by."""

    env: str
    account: str | None = None
    label: str | None = None


class ProviderEntry(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """`[providers.NAME]`."""

    kind: str | None = None
    enabled: bool = True
    account: str | None = None
    base_url: str | None = None
    api_key_env: str | list[str | PoolKeyEntry] | None = None
    """The variable of its key (which may hold several, separated by commas), or a list of
    them (a pool of keys)."""
    models: list[str | ModelEntry] | None = None
    max_tokens: int | None = None
    prefill: Literal["trailing", "mistral", "vllm", "none"] | None = None
    """How it continues a partial answer (see `presets.PREFILLS`); `none`: it is asked anew."""
    catalogue: bool | None = None
    """Whether its model list is read and a configured model missing from it taken as withdrawn
    (`ai_api.catalogue`); None: the preset's choice."""
    guesses: bool = True
    """Whether the preset's built-in limits (guesses about a free tier) apply; false: only
    the configured ones and what the provider reports or a 429 teaches."""
    ca_bundle: str | None = None
    """A PEM file of the CAs its server's certificate is checked against (not the system's)."""
    client_cert: str | None = None
    """A PEM certificate it is shown (mutual TLS), with its key unless `client_key` has it."""
    client_key: str | None = None


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
    continuation: bool = True
    sticky: Sticky = "keys"
    cache: bool = False
    cache_sampled: bool = False


def _knob_type(knob: Knob) -> Any:
    kind: Any = Literal.__getitem__(knob.choices) if knob.choices else knob.kind
    if kind is tuple:
        kind = list[str]
    return kind | None


ServerEntry: type[msgspec.Struct] = msgspec.defstruct(
    "ServerEntry",
    [
        *((knob.name, _knob_type(knob), None) for knob in KNOBS if knob.in_file),
        ("redis_url_env", str | None, None),
        ("gateway_keys_env", str | None, None),
        ("gateway_keys", list[str], []),
    ],
    kw_only=True,
    forbid_unknown_fields=True,
)
"""`[server]`: a key per `settings.KNOBS` entry (variables win over these) and where the
Redis URL and the gateway keys come from."""


class KeyEntry(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """`[keys.NAME]`: a gateway key held to some scopes and models (`ai_api.keys`)."""

    key_env: str
    """The variable holding the key (a key is a secret: it is not written in the file)."""
    scopes: list[Literal["chat", "models", "usage"]] | None = None
    models: list[str] | None = None


class _Sections(msgspec.Struct, forbid_unknown_fields=True):
    server: dict[str, Any] = {}
    providers: dict[str, dict[str, Any]] = {}
    routes: dict[str, dict[str, Any]] = {}
    keys: dict[str, dict[str, Any]] = {}
    aliases: dict[str, str] = {}


@dataclass(frozen=True, slots=True)
class ConfigFile:
    """The whole file, type-checked."""

    server: Any
    """A `ServerEntry`."""
    providers: dict[str, ProviderEntry]
    routes: dict[str, RouteEntry]
    keys: dict[str, KeyEntry]
    aliases: dict[str, str]
    """`[aliases]`: another name -> the model name it stands for."""


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
        server=_typed(path, "server", sections.server, ServerEntry),
        providers={
            name: _typed(path, f"providers.{name}", entry, ProviderEntry)
            for name, entry in sections.providers.items()
        },
        routes={
            name: _typed(path, f"routes.{name}", entry, RouteEntry)
            for name, entry in sections.routes.items()
        },
        keys={
            name: _typed(path, f"keys.{name}", entry, KeyEntry)
            for name, entry in sections.keys.items()
        },
        aliases=sections.aliases,
    )


T = TypeVar("T")


def _typed(path: Path, where: str, entry: dict[str, Any], kind: type[T]) -> T:
    try:
        return msgspec.convert(entry, kind)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{path}: [{where}]: {exc}") from None
