"""`ai-api serve --workers N`: N processes serving one listening socket.

The parent binds the socket and hands it to each worker, so the kernel spreads connections
over them; the workers share turns, budgets and health through a SQLite file (or Redis) and
write one usage ledger. A worker that dies is restarted; SIGINT or SIGTERM stops them all:
the parent stops restarting, passes SIGTERM on, closes its copy of the socket (so that, once
the workers close theirs as their drain begins, new connections are refused) and waits for
each worker's drain, killing only a worker still running past its grace and a margin.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType

log = logging.getLogger("ai_api.workers")

_MAX_RESTARTS = 20
STOP_MARGIN = 10.0
"""Seconds past the drain's grace a parent waits for its server process to exit (the drain's
end, the ledger's flush) before it kills it."""
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def run_workers(
    count: int,
    host: str,
    port: int,
    child_args: Sequence[str],
    env: dict[str, str],
    stop_wait: float = 30.0,
) -> int:
    """Serve with `count` worker processes until signalled; the exit status: 0 when every
    worker stopped cleanly (`stop_wait`: the longest wait for them)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=4096)
    sock.set_inheritable(True)
    bound = sock.getsockname()
    shown = f"[{bound[0]}]" if family == socket.AF_INET6 else bound[0]
    log.info("listening on http://%s:%d with %d workers", shown, bound[1], count)
    fd = sock.fileno()
    command = [sys.executable, "-m", "ai_api", "serve", *child_args, "--fd", str(fd)]
    env = {**env, "AI_API_WORKERS": "1"}

    def spawn() -> subprocess.Popen[bytes]:
        return subprocess.Popen(command, pass_fds=[fd], env=env)

    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    # Before the first worker starts: a signal from now on stops them all, never orphans one.
    previous = {sig: signal.signal(sig, stop) for sig in _SIGNALS}
    children: list[subprocess.Popen[bytes]] = []
    restarts = 0
    clean = False
    try:
        for _ in range(count):
            if not stopping:
                children.append(spawn())
        while not stopping:
            time.sleep(0.2)
            for i, child in enumerate(children):
                code = child.poll()
                if code is None or stopping:
                    continue
                if restarts >= _MAX_RESTARTS:
                    log.error("worker exited with %s; too many restarts, stopping", code)
                    stopping = True
                    break
                restarts += 1
                log.warning("worker %d exited with %s; restarting it", child.pid, code)
                children[i] = spawn()
    finally:
        try:
            clean = _stop(children, sock, stop_wait)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    return 0 if clean and restarts < _MAX_RESTARTS else 1


def _stop(children: list[subprocess.Popen[bytes]], sock: socket.socket, wait: float) -> bool:
    """SIGTERM to every worker, the socket closed here, then their drains awaited for up to
    `wait` seconds (a worker still running then is killed); whether all exited with 0."""
    running = [child for child in children if child.poll() is None]
    for child in running:
        child.send_signal(signal.SIGTERM)
    sock.close()
    if running:
        log.info("stopping %d workers (waiting up to %g s for their drain)", len(running), wait)
    deadline = time.monotonic() + wait
    clean = True
    for child in children:
        try:
            code = child.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.error("worker %d still running %g s after SIGTERM: killed", child.pid, wait)
            child.kill()
            code = child.wait()
        clean = clean and code == 0
    return clean


def inherited_socket(fd: int) -> socket.socket:
    """The listening socket a parent handed down."""
    sock = socket.socket(fileno=fd)
    os.set_blocking(fd, False)
    return sock
