"""The coding agents' npm packages, installed once from tests/agents' lock into a cache.

`install()` runs `npm ci` from `package-lock.json` (integrity hashes, no registry URLs) into
`$XDG_CACHE_HOME/ai-api/agents-<hash of the lock>` (or ~/.cache/...) unless that install is
complete, and answers the `node_modules` folder. Only a registry out of reach makes the
agents unavailable (the checks are then skipped); any other failure is a failure.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from ai_api.server import running
from ai_api.settings import Settings

AGENTS_DIR = Path(__file__).resolve().parent
FILES = ("package.json", "package-lock.json", ".npmrc")
INSTALL_SECONDS = 300
# npm's words for a registry it could not reach: only then is a check unavailable, not failed.
OFFLINE = ("ENOTFOUND", "EAI_AGAIN", "ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "ENETUNREACH")


class Unavailable(Exception):
    """The agents cannot be installed here: the npm registry is out of reach."""


class CheckFailed(AssertionError):
    """An agent did not do what its check expected."""


def pinned(package: str) -> str:
    """The version of `package` that package.json pins."""
    manifest = json.loads((AGENTS_DIR / "package.json").read_text())
    return str(manifest["dependencies"][package])


def cache_dir() -> Path:
    """Where the lock is installed: a folder named by the lock's hash, so a new lock gets a
    fresh install and an old one stays usable."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    digest = hashlib.sha256((AGENTS_DIR / "package-lock.json").read_bytes()).hexdigest()[:12]
    return Path(root) / "ai-api" / f"agents-{digest}"


def install(npm: str, into: Path | None = None) -> Path:
    """`node_modules` of the lock's install in `into` (the cache by default), made by `npm ci`
    unless a finished install is there."""
    into = into or cache_dir()
    into.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        text = (AGENTS_DIR / name).read_text()
        target = into / name
        if not target.exists() or target.read_text() != text:
            target.write_text(text)
    done_stamp = into / "node_modules" / ".ai-api-installed"
    if done_stamp.exists():
        return into / "node_modules"
    run = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"],
        cwd=into,
        capture_output=True,
        text=True,
        timeout=INSTALL_SECONDS,
    )
    said = run.stdout + run.stderr
    if run.returncode != 0 and any(code in said for code in OFFLINE):
        raise Unavailable(f"npm ci could not reach the registry:\n{said}")
    if run.returncode != 0:
        raise CheckFailed(f"npm ci in {into} failed:\n{said}")
    done_stamp.touch()
    return into / "node_modules"


def version_of(command: list[str], timeout: float) -> str | None:
    """What `command --version` prints, or None if it does not run."""
    try:
        done = subprocess.run(
            [*command, "--version"], capture_output=True, text=True, timeout=timeout
        )
    except OSError:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


Check = Callable[[list[str], str, Path], Awaitable[str]]
"""One check of an agent: (its command, the gateway's URL, a scratch folder) -> its answer."""


async def run_checks(
    command: list[str], settings: Settings, checks: Sequence[tuple[str, Check]]
) -> list[tuple[str, str]]:
    """Each check against one gateway of `settings`: (name, what the agent answered) each."""
    with tempfile.TemporaryDirectory(prefix="ai-api-agent-") as scratch:
        async with running(settings) as gateway:
            return [(name, await check(command, gateway, Path(scratch))) for name, check in checks]


def main(
    label: str,
    command_in: Callable[[Path], list[str]],
    check_all: Callable[[list[str]], Coroutine[Any, Any, list[tuple[str, str]]]],
) -> int:
    """Install, run every check and print each; 1 if one failed, 2 if the agent is not
    available here."""
    npm = shutil.which("npm")
    if npm is None:
        print(f"{label}: npm is not on PATH", file=sys.stderr)
        return 2
    try:
        command = command_in(install(npm))
        checks = asyncio.run(check_all(command))
    except Unavailable as exc:
        print(f"{label}: unavailable: {exc}", file=sys.stderr)
        return 2
    except CheckFailed as exc:
        print(f"{label}: FAILED: {exc}", file=sys.stderr)
        return 1
    for name, text in checks:
        print(f"{label}, {name}: ok: {text[:100]}")
    return 0
