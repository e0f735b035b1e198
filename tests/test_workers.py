"""`serve --workers N` at SIGTERM: the parent passes it on, each worker drains, none is left."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time

import aiohttp

from ai_api.fakes import FakeUpstream
from ai_api.workers import _stop

from .conftest import KEYS, parse_events
from .test_cli import HELLO, ai_api
from .test_server import first_bytes, gateway_env, ledger_rows, refused


async def worker_pids(process: asyncio.subprocess.Process, count: int) -> set[int]:
    """The pids of the `count` workers, once each logged that it listens."""
    assert process.stderr is not None
    pids: set[int] = set()
    while len(pids) < count:
        line = (await process.stderr.readline()).decode()
        assert line, "the parent exited before its workers listened"
        if match := re.search(r"worker (\d+) listening on", line):
            pids.add(int(match.group(1)))
    return pids


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_sigterm_to_the_parent_drains_every_worker_and_leaves_none(tmp_path):
    ledger = tmp_path / "usage.sqlite3"
    slow = FakeUpstream("groq", api_key=KEYS["groq"], token_delay=0.3, answer_tokens=40)
    async with slow as groq:
        env = gateway_env(groq, ledger, AI_API_DRAIN_GRACE="1")
        async with ai_api("--workers", "2", cwd=tmp_path, env=env) as (process, url):
            pids = await asyncio.wait_for(worker_pids(process, 2), timeout=30)
            async with aiohttp.ClientSession() as s, s.post(url + "/chat", json=HELLO) as chat:
                head = await first_bytes(chat)
                signalled = time.monotonic()
                process.send_signal(signal.SIGTERM)
                await asyncio.sleep(0.3)
                assert await refused(url)  # the parent and the workers closed the socket
                text = (head + await chat.read()).decode()
            assert await asyncio.wait_for(process.wait(), timeout=20) == 0
            took = time.monotonic() - signalled
            assert process.stderr is not None
            log = (await process.stderr.read()).decode()
    assert not [pid for pid in pids if alive(pid)]  # no worker outlives the parent
    events = parse_events(text)
    assert events[-1][0] == "error"
    assert events[-1][1]["error"]["code"] == "shutting_down"
    assert took < 5  # the grace (1 s) and a little: no worker waited for the parent's SIGKILL
    assert log.count("draining: ") == 2  # each worker drained
    assert "drained: 0 requests finished, 1 ended at the end of the grace" in log
    assert "killed" not in log
    assert ledger_rows(ledger) == [(200, "shutdown")]


STAND_IN = """
import signal, sys, time
def drain(*_):
    time.sleep(1)
    sys.exit(0)
signal.signal(signal.SIGTERM, drain if sys.argv[1] == "drains" else signal.SIG_IGN)
print(flush=True)
time.sleep(30)
"""


def test_the_parent_waits_for_a_slow_drain_and_kills_only_past_its_wait():
    """`_stop` with stand-in workers: one takes 1 s to exit after SIGTERM (its drain) and is
    waited for, one never exits and is killed once the wait is over."""
    children = [
        subprocess.Popen([sys.executable, "-c", STAND_IN, how], stdout=subprocess.PIPE)
        for how in ("drains", "stuck")
    ]
    for child in children:
        assert child.stdout is not None
        child.stdout.readline()  # its handler is in place
        child.stdout.close()
    sock = socket.create_server(("127.0.0.1", 0))
    started = time.monotonic()
    assert _stop(children, sock, 2.0) is False  # one had to be killed
    took = time.monotonic() - started
    assert sock.fileno() == -1
    assert [child.returncode for child in children] == [0, -signal.SIGKILL]
    assert 2.0 <= took < 4
