"""The `ai-api` command: `ai-api serve`, `ai-api usage` and `ai-api config check`."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .config import load_settings, read_environment
from .limits import Limit, period_name
from .logs import configure
from .providers import PRESETS
from .providers.presets import LOCAL_KEY
from .settings import SCOPES, ConfigError, GatewayKey, ProviderSettings, Settings

if TYPE_CHECKING:
    from .catalogue import Catalogue

NO_PROVIDERS = """\
ai-api: no provider is configured.
Set at least one API key, in the environment or in a .env file (see .env.example):
{variables}
or name the model of a server on this machine:
{local}
or try the gateway with built-in fake providers: ai-api serve --demo"""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `ai-api` console script and of `python -m ai_api`."""
    args = _parser().parse_args(argv)
    try:
        env = read_environment(os.environ, Path(args.env_file))
        settings = load_settings(env, args.config)
    except ConfigError as exc:
        print(f"ai-api: {exc}", file=sys.stderr)
        return 2
    if args.command == "config":
        print(describe(settings))
        return 1 if settings.problems or not settings.providers else 0
    if args.command == "models":
        return asyncio.run(_models(settings))
    if args.command == "usage":
        found = bool(settings.ledger) and Path(settings.ledger).is_file()
        if not found:
            print(
                f"ai-api: no usage ledger at {settings.ledger or '(memory)'} yet", file=sys.stderr
            )
        try:
            return asyncio.run(_usage(settings, args.days, args.json, found))
        except BrokenPipeError:  # `ai-api usage | head`: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
    return _serve_command(settings, args, argv)


def _serve_command(settings: Settings, args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    """`ai-api serve`: one process, a set of workers, or one that reloads on changes."""
    settings = settings.with_overrides(host=args.host, port=args.port, demo=args.demo or None)
    _configure_logging(settings)
    if not settings.providers and not settings.demo:
        variables = "\n".join(
            f"  {spec.key_env}  ({spec.label})" for spec in PRESETS if spec.key_env
        )
        local = "\n".join(
            f"  {spec.env_prefix}_MODEL  ({spec.label}, {spec.base_url})"
            for spec in PRESETS
            if spec.local
        )
        print(NO_PROVIDERS.format(variables=variables, local=local), file=sys.stderr)
        return 2
    if args.workers is not None:
        settings = settings.with_overrides(workers=args.workers)
    if settings.workers > 1 and args.fd is None:
        return _workers(settings, args, argv)
    if args.reload:
        from .reload import run_with_reload
        from .workers import STOP_MARGIN

        child = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--reload"]
        watch = [Path(__file__).parent, Path(args.env_file)]
        if args.config:
            watch.append(args.config)
        return run_with_reload(child, watch, stop_wait=settings.drain_grace + STOP_MARGIN)
    return _serve(settings, args.fd)


def _workers(settings: Settings, args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    from .workers import STOP_MARGIN, run_workers

    env = dict(os.environ)
    if settings.redis_url is None and (settings.demo or not settings.state_file):
        # The workers of one machine share their state in the ledger's file; a demo's fake
        # budgets stay out of every real file, in a folder of their own.
        scratch = str(Path(tempfile.mkdtemp(prefix="ai-api-")) / "state.sqlite3")
        env["AI_API_STATE_FILE"] = scratch if settings.demo else settings.ledger or scratch
    raw = list(argv if argv is not None else sys.argv[1:])[1:]  # without "serve"
    child = _without(raw, valued={"--workers", "--host", "--port"}, flags={"--reload"})
    stop_wait = settings.drain_grace + STOP_MARGIN
    # The workers count into one folder, which any worker's /metrics sums (`ai_api.metrics`);
    # the counts of one run end with it.
    counts = tempfile.mkdtemp(prefix="ai-api-metrics-")
    env["PROMETHEUS_MULTIPROC_DIR"] = env["AI_API_METRICS_DIR"] = counts
    try:
        return run_workers(settings.workers, settings.host, settings.port, child, env, stop_wait)
    finally:
        shutil.rmtree(counts, ignore_errors=True)


def _days(raw: str) -> int:
    """`--days`: a whole number from 1 to 366, as `/usage?days=` takes."""
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 366:
        raise argparse.ArgumentTypeError("must be a whole number from 1 to 366")
    return int(raw)


def limits_text(limits: Sequence[Limit]) -> str:
    """`requests/minute 30 (built-in), ...`: each window, its figure and where it comes from."""
    return ", ".join(
        f"{lim.kind}/{period_name(lim.period)} {lim.limit} ({lim.source})" for lim in limits
    )


def describe(settings: Settings) -> str:
    """The resolved configuration for humans, keys masked."""
    lines = [f"Providers ({len(settings.providers)} active):"]
    for p in settings.providers:
        lines += _provider_lines(p)
    lines.append("Routes:")
    auto = ", ".join(f"{p.name}/{p.model}" for p in settings.providers) or "(empty)"
    lines.append(f"  auto (round-robin): {auto}")
    for r in settings.routes:
        members = ", ".join(m.name for m in r.members) or "(no active member)"
        lines.append(f"  {r.name} ({r.strategy}): {members}")
    for alias, target in settings.aliases:
        lines.append(f"  {alias} -> {target}")
    lines += _keys_text(settings.gateway_keys)
    lines.append(f"Listen: {settings.host}:{settings.port}")
    proxies = settings.proxies
    if proxies.http or proxies.https:
        lines.append(f"Calls to providers: {proxies.describe()}")
    elif not settings.trust_env:
        lines.append("Calls to providers: direct (trust_env off: proxy variables not read)")
    lines.append(
        "Limits: built-in ones are guesses about a free tier (they order members, never refuse);"
        " a provider's headers (reported) and its 429s (learned) replace them: see `ai-api usage`."
    )
    if settings.problems:
        lines.append("Problems:")
        lines += [f"  - {problem}" for problem in settings.problems]
    if not settings.providers:
        lines.append("No provider is active: set an API key (see .env.example).")
    return "\n".join(lines)


def _keys_text(keys: tuple[GatewayKey, ...]) -> list[str]:
    if not keys:
        return ["Gateway keys: none (open gateway)"]
    lines = [f"Gateway keys: {len(keys)}"]
    for key in keys:
        scopes = "all scopes" if key.scopes == SCOPES else ", ".join(sorted(key.scopes))
        models = "any model" if key.models is None else ", ".join(key.models) or "no model"
        lines.append(f"  {key.name} {key.secret.masked()}: {scopes}; {models}")
    return lines


def _provider_lines(p: ProviderSettings) -> list[str]:
    unset = p.api_key.reveal() == LOCAL_KEY
    if not (p.spec.key_env or p.key_env) or (unset and p.spec.local):
        key = "no key"
    elif unset:
        key = f"{p.key_env} not set"
    else:
        key = f"{p.key_env}={p.api_key.masked()}"
    if len(p.keys) > 1:
        key = f"{len(p.keys)} keys"
    lines = [f"  {p.name} ({p.spec.label}) {p.base_url}  {key}"]
    if len(p.keys) > 1:
        for k in p.keys:
            account = f", account {k.account}" if k.account else ", its own budget"
            lines.append(f"    key {k.label} from {k.key_env}{account}")
    if p.trust is not None:
        shown = {"ca_bundle": p.trust.ca_bundle, "client_cert": p.trust.client_cert}
        lines.append("    tls: " + ", ".join(f"{k}={v}" for k, v in shown.items() if v))
    if not p.guesses:
        lines.append("    built-in limits off (guesses = false)")
    for m in p.models:
        lines.append(f"    {p.name}/{m.name}  max_tokens={m.max_tokens}")
        if m.limits:
            lines.append(f"      limits: {limits_text(m.limits)}")
    offer = p.spec.embeddings
    if offer is not None:
        names = ", ".join(f"{p.name}/{m}" for m in offer.models) or f"{p.name}/<any model>"
        lines.append(f"    embeddings: {names}")
    return lines


async def _usage(settings: Settings, days: int, as_json: bool, found: bool) -> int:
    """Replay the ledger as the gateway does at start, and report; no provider is called."""
    import dataclasses
    import json

    from .gateway import build_gateway
    from .usage import render, report

    # This machine's view: the ledger file if there is one, replayed into memory.
    local = dataclasses.replace(
        settings, ledger=settings.ledger if found else "", redis_url=None, state_file=""
    )
    async with build_gateway(local) as gateway:
        data = await report(gateway.rationing, gateway.router.deployments(), days)
    print(json.dumps(data, indent=2) if as_json else render(data))
    return 0


async def _models(settings: Settings) -> int:
    """Read each provider's model list now and print what it serves, which of those this
    gateway routes, and what it routes that the provider no longer lists (exit 1 then)."""
    import dataclasses

    from .gateway import build_gateway

    local = dataclasses.replace(
        settings, ledger="", redis_url=None, state_file="", catalogue_every=0
    )
    async with build_gateway(local) as gateway:
        await gateway.catalogue.refresh()
        print(catalogue_text(settings, gateway.catalogue))
        return 1 if gateway.catalogue.gone else 0


def catalogue_text(settings: Settings, catalogue: Catalogue) -> str:
    """`ai-api models`: per provider, its listed models, the routed ones marked with their
    free-tier facts as the presets date them, and the configured ones it no longer lists."""
    lines = []
    for p in settings.providers:
        configured = {m.name: m for m in p.models}
        listed = catalogue.listed.get(p.name)
        head = f"{p.name} ({p.spec.label})"
        if not p.spec.catalogue:
            lines.append(f"{head}: no authoritative model list; routes {', '.join(configured)}")
            continue
        if listed is None:
            lines.append(f"{head}: its model list could not be read (see the log)")
            continue
        lines.append(f"{head}: lists {len(listed)} models")
        for name in sorted(listed):
            m = configured.get(name)
            if m is None:
                lines.append(f"    {name}")
                continue
            facts = [f"max_tokens {m.max_tokens}"]
            if m.context:
                facts.append(f"context {m.context}")
            if m.images is not None:
                facts.append("images" if m.images else "text only")
            if m.limits:
                facts.append(limits_text(m.limits))
            lines.append(f"  * {name}  routed as {p.name}/{name}: {'; '.join(facts)}")
        for name in configured:
            if (p.name, name) in catalogue.gone:
                lines.append(f"  ! {name}  configured but no longer listed: routed around")
        if p.spec.note:
            lines.append(f"    free tier: {p.spec.note}")
    if not lines:
        lines.append("No provider is active: set an API key (see .env.example).")
    lines.append("* routed by this gateway; ! withdrawn by its provider (not tried)")
    return "\n".join(lines)


def _without(args: Sequence[str], *, valued: set[str], flags: set[str]) -> list[str]:
    """`args` less the options named (and the values of the `valued` ones)."""
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        name, equals, _ = arg.partition("=")
        if name in valued:
            skip = not equals
        elif arg not in flags:
            kept.append(arg)
    return kept


def _serve(settings: Settings, fd: int | None = None) -> int:
    from .server import loop_factory, serve

    sock = None
    if fd is not None:
        from .workers import inherited_socket

        sock = inherited_socket(fd)
    try:
        factory = loop_factory(settings.event_loop)
    except ConfigError as exc:
        print(f"ai-api: {exc}", file=sys.stderr)
        return 2
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(serve(settings, sock))
    except OSError as exc:
        print(f"ai-api: cannot listen on {settings.host}:{settings.port}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ai-api", description="One chat API over many LLM providers."
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, help="TOML configuration file (AI_API_CONFIG)")
    common.add_argument("--env-file", default=".env", help="dotenv file to read (default .env)")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", parents=[common], help="run the HTTP gateway")
    serve.add_argument("--host", help="address to bind (HOST; default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to bind, 0 for any (PORT; default 3000)")
    serve.add_argument(
        "--reload", action="store_true", help="restart when the code or .env changes (development)"
    )
    serve.add_argument(
        "--demo", action="store_true", help="serve answers from built-in fake providers"
    )
    serve.add_argument(
        "--workers",
        type=int,
        help="worker processes sharing the port and the budget (AI_API_WORKERS)",
    )
    serve.add_argument("--fd", type=int, help=argparse.SUPPRESS)
    usage = commands.add_parser(
        "usage", parents=[common], help="spending per day and the free quota left"
    )
    usage.add_argument(
        "--days", type=_days, default=7, help="days of history, 1 to 366 (default 7)"
    )
    usage.add_argument("--json", action="store_true", help="print the /usage JSON instead")
    commands.add_parser(
        "models", parents=[common], help="what each provider lists now, and what is routed"
    )
    config = commands.add_parser("config", parents=[common], help="inspect the configuration")
    config.add_argument("action", choices=["check"], help="check: validate and print it")
    return parser


def _configure_logging(settings: Settings) -> None:
    configure(settings.log_level, settings.log_format)
