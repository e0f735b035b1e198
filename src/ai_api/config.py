"""Settings, read once from the environment, a `.env` file and an optional TOML file, then
passed in. Nothing here reads the environment except through the mapping it is given.

The file's shape is `config_file`; the settings themselves and the table of server settings
that both the file and a variable can set are `settings`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from dotenv import dotenv_values

from .admission import origin_problem
from .config_file import (
    ConfigFile,
    KeyEntry,
    MemberEntry,
    ModelEntry,
    ProviderEntry,
    RouteEntry,
    read_file,
)
from .config_keys import entry_keys, one_key, pool_of, split_keys
from .providers.presets import GENERIC, LOCAL_KEY, PREFILLS, PRESETS, ProviderSpec, preset
from .proxies import Proxies, Proxy, parse_proxy
from .settings import (
    KNOBS,
    SCOPES,
    ConfigError,
    GatewayKey,
    Knob,
    MemberSettings,
    ModelSettings,
    PoolKey,
    ProviderSettings,
    RouteSettings,
    Secret,
    Settings,
)
from .trust import TrustStore, tls_context


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
    settings = Settings(
        providers=tuple(preset_settings(spec, env) for spec in PRESETS if preset_active(spec, env))
    )
    path = config_file or (Path(env["AI_API_CONFIG"]) if env.get("AI_API_CONFIG") else None)
    if path is not None:
        settings = apply_file(settings, read_file(path), path, env)
    keys = _full_keys(env.get("AI_API_KEYS", "").split(","), "AI_API_KEYS")
    settings = settings.with_overrides(
        gateway_keys=settings.gateway_keys + keys or None,
        redis_url=Secret(env["REDIS_URL"]) if env.get("REDIS_URL") else None,
        **{knob.name: _from_env(knob, env) for knob in KNOBS},
    )
    return replace(settings, proxies=proxies_from(env)) if settings.trust_env else settings


def proxies_from(env: Mapping[str, str]) -> Proxies:
    """The proxies the variables name: `HTTPS_PROXY` for https, `HTTP_PROXY` for http,
    `ALL_PROXY` for either when its own is unset, `NO_PROXY` for the hosts reached directly;
    each in lower case first (as urllib, requests and httpx read them), empty as unset."""

    def variable(name: str) -> tuple[str, str] | None:
        for key in (name.lower(), name):
            value = env.get(key, "").strip()
            if value:
                return key, value
        return None

    def proxy(name: str) -> Proxy | None:
        found = variable(name) or variable("ALL_PROXY")
        if found is None:
            return None
        key, value = found
        try:
            return parse_proxy(value)
        except ValueError as exc:  # the message holds no part of the URL: it may hold a password
            raise ConfigError(f"{key}: {exc}.") from None

    no_proxy = variable("NO_PROXY")
    entries = () if no_proxy is None else tuple(e.strip() for e in no_proxy[1].split(","))
    return Proxies(
        http=proxy("HTTP_PROXY"),
        https=proxy("HTTPS_PROXY"),
        no_proxy=tuple(e for e in entries if e),
    )


def _from_env(knob: Knob, env: Mapping[str, str]) -> Any:
    """The knob's variable as a value, None when unset; `ConfigError` if invalid."""
    if knob.choices or knob.kind is bool:
        return choice(env, knob.env, knob.choices) if knob.choices else switch(env, knob.env)
    listed = knob.kind is tuple
    if listed or knob.kind is str:
        raw = env.get(knob.env)
        if raw is None or not (raw or knob.empty_is_value):
            return None
        if listed:
            items = [item.strip() for item in raw.split(",") if item.strip()]
            return _listed(knob, items, knob.env)
        return raw.upper() if knob.upper else raw
    if knob.kind is int:
        return number(env, knob.env, None, int, minimum=int(knob.minimum or 0))
    return number(env, knob.env, None, float, minimum=float(knob.minimum or 0))


def _from_file(knob: Knob, value: Any, path: Path) -> Any:
    """A `[server]` value, checked as its variable would be."""
    if value is None:
        return None
    if knob.kind is tuple:
        return _listed(knob, value, f"{path}: [server] {knob.name}")
    if knob.minimum is not None and value < knob.minimum:
        raise ConfigError(
            f"{path}: [server] {knob.name} = {value!r} must be at least {knob.minimum:g}."
        )
    return value.upper() if knob.upper else value


def _listed(knob: Knob, items: list[str], where: str) -> tuple[str, ...]:
    """A list knob's entries, each checked (origins must be `scheme://host[:port]`)."""
    if knob.name == "cors_origins":
        for item in items:
            problem = origin_problem(item)
            if problem:
                raise ConfigError(f"{where}: {item!r} {problem}")
    return tuple(items)


def preset_active(spec: ProviderSpec, env: Mapping[str, str]) -> bool:
    """A preset is active when its key is set, or for a local server, when its model is."""
    if spec.key_env is None:
        return bool(env.get(f"{spec.env_prefix}_MODEL", "").strip())
    return bool(split_keys(env.get(spec.key_env)))


def preset_settings(
    spec: ProviderSpec,
    env: Mapping[str, str],
    *,
    name: str | None = None,
    key_env: str | None = None,
    base_url: str | None = None,
    models: tuple[str, ...] | None = None,
    max_tokens: int | None = None,
    keys: tuple[PoolKey, ...] | None = None,
) -> ProviderSettings:
    """A provider from its spec, the `<PREFIX>_*` variables and explicit overrides. Its key
    variable may hold several keys, separated by commas (a pool); `keys` overrides it."""
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
    if keys is None:
        keys = pool_of([(key_env, secret, "", None) for secret in split_keys(env.get(key_env))])
    return ProviderSettings(
        name=name or spec.name,
        spec=spec,
        # Local servers take any key; clients must send one, so send a placeholder.
        api_key=keys[0].secret if keys else Secret(one_key(env.get(key_env)) or LOCAL_KEY),
        base_url=url.rstrip("/"),
        models=tuple(
            ModelSettings(m, cap, spec.limits_for(m), spec.contexts.get(m), spec.images.get(m))
            for m in models
        ),
        key_env=key_env,
        keys=keys,
    )


N = TypeVar("N", int, float)


def choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str | None:
    """`env[name]` if it is one of `choices` (any case), None when unset; else `ConfigError`."""
    raw = env.get(name, "").strip().lower()
    if not raw:
        return None
    if raw not in choices:
        raise ConfigError(f"{name}={raw!r} is not one of: {', '.join(choices)}.")
    return raw


_SWITCH = dict.fromkeys(("1", "true", "yes", "on"), True) | dict.fromkeys(
    ("0", "false", "no", "off"), False
)


def switch(env: Mapping[str, str], name: str) -> bool | None:
    """`env[name]` as on or off, None when unset; else `ConfigError`."""
    raw = env.get(name, "").strip().lower()
    if not raw:
        return None
    if raw not in _SWITCH:
        raise ConfigError(f"{name}={raw!r} is not one of: 1, 0, true, false, yes, no, on, off.")
    return _SWITCH[raw]


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


def apply_file(
    settings: Settings, file: ConfigFile, path: Path, env: Mapping[str, str]
) -> Settings:
    """`settings` with the file's providers, routes and server values applied."""
    problems: list[str] = []
    providers = {p.name: p for p in settings.providers}
    for name, entry in file.providers.items():
        if "/" in name or name == "auto":
            raise ConfigError(f"{path}: provider name {name!r} may not be 'auto' or contain '/'.")
        provider = _provider(name, entry, env, problems, path.absolute().parent)
        if provider is None:
            providers.pop(name, None)
        else:
            providers[name] = provider
    known = {spec.name for spec in PRESETS} | set(file.providers)
    routes = tuple(
        _route(name, entry, providers, known, problems) for name, entry in file.routes.items()
    )
    server = file.server
    keys = _full_keys(server.gateway_keys, "gateway_keys")
    if server.gateway_keys_env:
        raw = env.get(server.gateway_keys_env, "")
        if not raw.strip():
            problems.append(f"gateway keys: {server.gateway_keys_env} is not set")
        keys += _full_keys(raw.split(","), server.gateway_keys_env)
    names = _model_names(providers.values(), routes)
    aliases = _aliases(file.aliases, names, known, path, problems)
    names |= {alias for alias, _ in aliases}
    keys += tuple(
        key
        for name, entry in file.keys.items()
        if (key := _key(name, entry, env, names, problems)) is not None
    )
    return replace(
        settings,
        providers=tuple(providers.values()),
        routes=routes,
        aliases=aliases,
        gateway_keys=keys,
        problems=settings.problems + tuple(problems),
    ).with_overrides(
        redis_url=_secret(env, server.redis_url_env),
        **{k.name: _from_file(k, getattr(server, k.name), path) for k in KNOBS if k.in_file},
    )


def _full_keys(values: Iterable[str], name: str) -> tuple[GatewayKey, ...]:
    """Keys that may do everything, called `name` (where they were set)."""
    return tuple(GatewayKey(name, Secret(v.strip())) for v in values if v.strip())


def _model_names(
    providers: Iterable[ProviderSettings], routes: Iterable[RouteSettings]
) -> set[str]:
    """Every name a request's `model` may route by."""
    names = {"auto"} | {route.name for route in routes}
    for provider in providers:
        names |= {f"{provider.name}/*"}
        names |= {m.name for m in provider.models}
        names |= {f"{provider.name}/{m.name}" for m in provider.models}
    return names


def _aliases(
    table: Mapping[str, str],
    names: set[str],
    known: set[str],
    path: Path,
    problems: list[str],
) -> tuple[tuple[str, str], ...]:
    """`[aliases]` checked: an alias may not be a model name already, and its target must be
    one; a target of a known provider that is inactive leaves the alias out (a problem)."""
    aliases = []
    for alias, target in table.items():
        if alias in names:
            raise ConfigError(f"{path}: aliases.{alias}: already a model name; pick another.")
        if target in names:
            aliases.append((alias, target))
        elif target.partition("/")[0] in known and "/" in target:
            problems.append(f"aliases.{alias}: {target!r} is not served (provider inactive)")
        else:
            raise ConfigError(
                f"{path}: aliases.{alias}: {target!r} is not a model name this gateway serves"
                " (a route, auto, provider/model or a model a provider lists)."
            )
    return tuple(aliases)


def _key(
    name: str, entry: KeyEntry, env: Mapping[str, str], names: set[str], problems: list[str]
) -> GatewayKey | None:
    """`[keys.NAME]` as a key, or None (and a problem) when its variable is not set."""
    raw = env.get(entry.key_env, "").strip()
    if not raw:
        problems.append(f"keys.{name}: {entry.key_env} is not set; key inactive")
        return None
    for model in entry.models or ():
        if model not in names:
            problems.append(f"keys.{name}: model {model!r} is not a model name this serves")
    return GatewayKey(
        name,
        Secret(raw),
        frozenset(entry.scopes) if entry.scopes is not None else SCOPES,
        tuple(entry.models) if entry.models is not None else None,
    )


def _secret(env: Mapping[str, str], name: str | None) -> Secret | None:
    value = env.get(name, "") if name else ""
    return Secret(value) if value else None


def _spec(name: str, entry: ProviderEntry) -> ProviderSpec:
    """The provider's spec: its kind's preset (the generic one for `openai`), as the entry
    changes it (`prefill`, `catalogue`); `ConfigError` for an unknown kind."""
    kind = entry.kind or (name if preset(name) else None)
    spec = preset(kind) if kind else None
    if spec is None:
        known = "openai (any OpenAI-compatible endpoint) or a preset name"
        raise ConfigError(f"providers.{name}: unknown kind {kind!r}; use {known}.")
    if spec is GENERIC and entry.enabled and not (entry.base_url and entry.models):
        raise ConfigError(f"providers.{name}: kind 'openai' needs base_url and models.")
    if entry.prefill is not None:
        spec = replace(spec, prefill=PREFILLS.get(entry.prefill))
    if entry.catalogue is not None:
        spec = replace(spec, catalogue=entry.catalogue)
    return spec


def _provider(
    name: str, entry: ProviderEntry, env: Mapping[str, str], problems: list[str], root: Path
) -> ProviderSettings | None:
    spec = _spec(name, entry)
    if not entry.enabled:
        return None
    found = entry_keys(name, entry, spec.key_env, env, problems)
    if found is None:
        return None
    key_env, keys = found
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
        keys=keys,
    )
    resolved = []
    for m in settings.models:
        override = entries.get(m.name)
        if override is not None:
            cap = override.max_tokens or m.max_tokens
            context = override.context or m.context
            images = m.images if override.images is None else override.images
            limits = override.limits(m.limits)
            m = replace(m, max_tokens=cap, limits=limits, context=context, images=images)
        if not entry.guesses:
            m = replace(m, limits=tuple(lim for lim in m.limits if not lim.guess))
        resolved.append(m)
    account = entry.account or ""
    return replace(
        settings,
        models=tuple(resolved),
        account=account,
        guesses=entry.guesses,
        trust=_trust(name, entry, root),
    )


def _trust(name: str, entry: ProviderEntry, root: Path) -> TrustStore | None:
    """The provider's trust store, its paths taken from the file's directory, each file
    checked now (a message names the setting and the file, never what the file holds)."""
    if entry.client_key is not None and entry.client_cert is None:
        raise ConfigError(f"providers.{name}: client_key needs client_cert.")
    paths = [entry.ca_bundle, entry.client_cert, entry.client_key]
    if not any(paths):
        return None
    ca_bundle, client_cert, client_key = (str(root / p) if p else None for p in paths)
    trust = TrustStore(ca_bundle, client_cert, client_key)
    try:
        tls_context(trust)
    except ValueError as exc:
        raise ConfigError(f"providers.{name}: {exc}.") from None
    return trust


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
        name=name,
        strategy=entry.strategy,
        members=tuple(members),
        burst=entry.burst,
        continuation=entry.continuation,
        sticky=entry.sticky,
        cache=entry.cache,
        cache_sampled=entry.cache_sampled,
    )
