"""A provider's keys as the configuration gives them: one, or several (a pool), from a variable
that may hold several separated by commas, or from the config file's `api_key_env` list."""

from __future__ import annotations

import re
from collections.abc import Mapping

from .config_file import PoolKeyEntry, ProviderEntry
from .settings import ConfigError, PoolKey, Secret, key_label

_LABEL = re.compile(r"[A-Za-z0-9_.-]{1,32}")


def split_keys(raw: str | None) -> list[str]:
    """The keys a provider's variable holds: one, or several separated by commas."""
    return [key.strip() for key in (raw or "").split(",") if key.strip()]


def one_key(raw: str | None) -> str:
    """The first key a variable holds, "" when it holds none."""
    keys = split_keys(raw)
    return keys[0] if keys else ""


def pool_of(given: list[tuple[str, str, str, str | None]]) -> tuple[PoolKey, ...]:
    """The pool of (variable, key, account, label) entries: () for fewer than two keys (one
    key is no pool: its names stay the provider's own); `ConfigError` for a key given twice
    or two keys with one label."""
    if len(given) < 2:
        return ()
    keys: dict[str, PoolKey] = {}
    seen: set[str] = set()
    for variable, secret, account, label in given:
        if secret in seen:
            raise ConfigError(f"{variable}: a key is listed twice.")
        seen.add(secret)
        label = label or key_label(secret)
        if label in keys:
            raise ConfigError(f"{variable}: two keys are labelled {label!r}; give each a label.")
        keys[label] = PoolKey(label, Secret(secret), account, variable)
    return tuple(keys.values())


def entry_keys(
    name: str,
    entry: ProviderEntry,
    preset_env: str | None,
    env: Mapping[str, str],
    problems: list[str],
) -> tuple[str | None, tuple[PoolKey, ...] | None] | None:
    """The provider's key variable and, for `api_key_env = [...]`, its keys (None: read from
    the variable); None (and a problem) when no key is set."""
    if isinstance(entry.api_key_env, list):
        keys = listed_keys(name, entry.api_key_env, env, problems)
        return None if keys is None else (keys[0].key_env, keys)
    key_env = entry.api_key_env or preset_env
    if key_env and not split_keys(env.get(key_env)):
        problems.append(f"providers.{name}: {key_env} is not set; provider inactive")
        return None
    return key_env, None


def listed_keys(
    name: str, listed: list[str | PoolKeyEntry], env: Mapping[str, str], problems: list[str]
) -> tuple[PoolKey, ...] | None:
    """`api_key_env = [...]`: the pool of the variables set (each may hold several keys), or
    None (and a problem) when none is; a variable not set is a problem, its key left out."""
    given: list[tuple[str, str, str, str | None]] = []
    for item in listed:
        entry = item if isinstance(item, PoolKeyEntry) else PoolKeyEntry(env=item)
        secrets = split_keys(env.get(entry.env))
        if not secrets:
            problems.append(f"providers.{name}: {entry.env} is not set; its key left out")
        if entry.label is not None and len(secrets) > 1:
            raise ConfigError(f"providers.{name}: {entry.env} holds several keys; one label.")
        if entry.label is not None and not _LABEL.fullmatch(entry.label):
            raise ConfigError(
                f"providers.{name}: label {entry.label!r}: use 1-32 letters, digits, '.', '_'"
                " or '-'."
            )
        given += [(entry.env, s, entry.account or "", entry.label) for s in secrets]
    if not given:
        problems.append(f"providers.{name}: none of its key variables is set; provider inactive")
        return None
    if len(given) == 1:
        variable, secret, account, label = given[0]
        return (PoolKey(label or "", Secret(secret), account, variable),)
    return pool_of(given)
