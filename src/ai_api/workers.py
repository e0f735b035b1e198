"""`ai-api serve --workers N`: N processes serving one listening socket.

The parent binds the socket and hands it to each worker, so the kernel spreads connections
over them; the workers share turns, budgets and health through a SQLite file (or Redis) and
write one usage ledger. A worker that dies is restarted; SIGINT or SIGTERM stops them all.
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


def run_workers(
    count: int, host: str, port: int, child_args: Sequence[str], env: dict[str, str]
) -> int:
    """Serve with `count` worker processes until signalled; the exit status."""
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

    children = [spawn() for _ in range(count)]
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    restarts = 0
    try:
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
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        sock.close()
    return 0 if restarts < _MAX_RESTARTS else 1


def inherited_socket(fd: int) -> socket.socket:
    """The listening socket a parent handed down."""
    sock = socket.socket(fileno=fd)
    os.set_blocking(fd, False)
    return sock
