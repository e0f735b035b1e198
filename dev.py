"""The two commands for a fresh machine with Python 3.11+:

    python3 dev.py demo     run the gateway in demo mode (fake providers, no keys needed)
    python3 dev.py test     run the whole test suite: ruff, mypy, pytest

Each makes `.venv/` beside this file if needed and installs into it exactly the pinned,
hash-checked dependencies it uses. Extra arguments go to `ai-api serve --demo` or to pytest.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
LOCKS = {
    "demo": ["requirements.txt", "requirements-build.txt"],
    "test": ["requirements.txt", "requirements-build.txt", "requirements-dev.txt"],
}


def ensure_venv(purpose: str) -> None:
    """Create `.venv` and install what `purpose` needs, unless that was already done."""
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py may be run by an older python3
        sys.exit("ai-api needs Python 3.11 or newer.")
    locks = LOCKS[purpose]
    digest = hashlib.sha256(b"".join((ROOT / f).read_bytes() for f in locks)).hexdigest()[:16]
    stamp = VENV / f".installed-{purpose}-{digest}"
    if stamp.exists():
        return
    if not PYTHON.exists():
        print(f"dev.py: creating {VENV}", flush=True)
        venv.create(VENV, with_pip=True)
    pip = [str(PYTHON), "-m", "pip", "--disable-pip-version-check", "-q"]
    requirements = [arg for f in locks for arg in ("-r", str(ROOT / f))]
    print(f"dev.py: installing pinned dependencies for {purpose}", flush=True)
    # The build lock first, alone: it pins pip itself. The pip a new venv carries may be too
    # old to resolve the other locks (before 23.3 it took an extra of a pinned package, such
    # as httpx[http2], from the newest release and stopped in --require-hashes mode).
    run([*pip, "install", "--require-hashes", "-r", str(ROOT / "requirements-build.txt")])
    run([*pip, "install", "--require-hashes", *requirements])
    run([*pip, "install", "--no-deps", "--no-build-isolation", "-e", str(ROOT)])
    stamp.touch()


def run(command: list[str]) -> None:
    """Run a command in the project folder; stop with its exit code if it fails."""
    code = subprocess.call(command, cwd=ROOT)
    if code != 0:
        sys.exit(code)


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in LOCKS:
        sys.exit(__doc__)
    purpose, rest = argv[0], argv[1:]
    ensure_venv(purpose)
    if purpose == "demo":
        os.execv(str(PYTHON), [str(PYTHON), "-m", "ai_api", "serve", "--demo", *rest])
    tool = [str(PYTHON), "-m"]
    run([*tool, "ruff", "check", "."])
    run([*tool, "ruff", "format", "--check", "."])
    run([*tool, "mypy"])
    run([*tool, "pytest", *rest])


if __name__ == "__main__":
    main(sys.argv[1:])
