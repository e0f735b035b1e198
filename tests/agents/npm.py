"""The coding agents' npm packages, installed once from tests/agents' lock into a cache.

`install()` runs `npm ci` from `package-lock.json` (integrity hashes, no registry URLs) into
`$XDG_CACHE_HOME/ai-api/agents-<hash of the lock>` (or ~/.cache/...) unless that install is
complete, and answers the `node_modules` folder. Only a registry out of reach makes the
agents unavailable (the checks are then skipped); any other failure is a failure.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

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
