"""`serve --reload` at SIGTERM: the reloader passes it on and waits for its server's drain."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from ai_api.fakes import FakeUpstream

from .conftest import KEYS, parse_events
from .test_cli import HELLO, ai_api
from .test_server import first_bytes, gateway_env, ledger_rows
from .test_workers import alive


def children_of(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
async def test_sigterm_to_the_reloader_drains_its_server_and_leaves_no_orphan(tmp_path):
    ledger = tmp_path / "usage.sqlite3"
    slow = FakeUpstream("groq", api_key=KEYS["groq"], token_delay=0.3, answer_tokens=40)
    async with slow as groq:
        env = gateway_env(groq, ledger, AI_API_DRAIN_GRACE="1")
        async with ai_api("--reload", cwd=tmp_path, env=env) as (process, url):
            [server] = children_of(process.pid)
            async with aiohttp.ClientSession() as s, s.post(url + "/chat", json=HELLO) as chat:
                head = await first_bytes(chat)
                process.send_signal(signal.SIGTERM)
                text = (head + await chat.read()).decode()
            assert await asyncio.wait_for(process.wait(), timeout=20) == 0
            assert process.stderr is not None
            log = (await process.stderr.read()).decode()
    assert not alive(server)
    events = parse_events(text)  # the server drained: it was not killed mid-stream
    assert events[-1][0] == "error"
    assert events[-1][1]["error"]["code"] == "shutting_down"
    assert "drained: 0 requests finished, 1 ended at the end of the grace" in log
    assert ledger_rows(ledger) == [(200, "shutdown")]
