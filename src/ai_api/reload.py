"""Development mode: run the server in a child process and restart it when code or `.env` changes.

The original's `bun run dev`. Polling twice a second keeps this free of dependencies; it runs
only under `--reload`, never in the served process.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

log = logging.getLogger("ai_api.reload")


def snapshot(paths: Iterable[Path]) -> dict[Path, float]:
    """Modification times of the watched files (`*.py` under directories, files as given)."""
    times: dict[Path, float] = {}
    for path in paths:
        files = path.rglob("*.py") if path.is_dir() else [path]
        for file in files:
            try:
                times[file] = file.stat().st_mtime
            except FileNotFoundError:
                continue
    return times


class _Terminated(Exception):
    """SIGTERM reached the reloader: stop the server child, then exit."""


def _terminated(signum: int, frame: object) -> None:
    raise _Terminated


def run_with_reload(
    child_args: Sequence[str], watch: Sequence[Path], interval: float = 0.5, stop_wait: float = 30.0
) -> int:
    """Run `python -m ai_api <child_args>`; restart it on every change under `watch`. SIGTERM
    and Ctrl-C stop the child (its drain, for up to `stop_wait` seconds) before the reloader
    exits: it never leaves a server behind (a second Ctrl-C or SIGTERM kills it at once)."""
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        return _reload(child_args, watch, interval, stop_wait)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _reload(child_args: Sequence[str], watch: Sequence[Path], interval: float, wait: float) -> int:
    seen = snapshot(watch)
    while True:
        child = subprocess.Popen([sys.executable, "-m", "ai_api", *child_args])
        try:
            seen = _next_change(watch, seen, interval)
            _stop(child, wait)
        except (KeyboardInterrupt, _Terminated):
            with contextlib.suppress(KeyboardInterrupt, _Terminated):
                _stop(child, wait)
            return 0
        finally:
            if child.poll() is None:  # anything else went wrong: the child goes too
                child.kill()
                child.wait()


def _next_change(
    watch: Sequence[Path], seen: dict[Path, float], interval: float
) -> dict[Path, float]:
    """Wait for a change under `watch` since `seen`; the new snapshot."""
    while True:
        time.sleep(interval)
        now = snapshot(watch)
        if now != seen:
            changed = sorted(
                str(p)
                for p in now.keys() ^ seen.keys()
                | {p for p in now.keys() & seen.keys() if now[p] != seen[p]}
            )
            log.info("change in %s: restarting", ", ".join(changed) or "watched files")
            return now
        # A child that exits (say, on a syntax error) waits here for the next change.


def _stop(child: subprocess.Popen[bytes], wait: float) -> None:
    """SIGTERM to the child, then its drain awaited for up to `wait` seconds; killed if it is
    still running then, or at once if a signal interrupts the wait (which is raised again)."""
    if child.poll() is not None:
        return
    child.terminate()
    try:
        child.wait(timeout=wait)
    except subprocess.TimeoutExpired:
        log.error("the server is still running %g s after SIGTERM: killed", wait)
        child.kill()
        child.wait()
    except BaseException:
        child.kill()
        child.wait()
        raise
