"""Coding agents against a demo gateway: the pinned Claude Code's plain prompt and tool loop
(tests/agents/claude_code.py). Needs node and npm; the package comes from the npm registry
by `npm ci` from tests/agents' lock, into a cache directory, once."""

from __future__ import annotations

import asyncio
import shutil

import pytest

from .agents import claude_code

CHECK_SECONDS = 90


@pytest.fixture(scope="session")
def claude() -> list[str]:
    """The command that runs the pinned claude, installed if it was not."""
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        pytest.skip("the Claude Code check needs node and npm on PATH")
    try:
        return claude_code.install(npm, claude_code.cache_dir())
    except claude_code.Unavailable as exc:  # only an unreachable registry skips
        pytest.skip(str(exc))


async def test_claude_code_answers_and_runs_a_tool_loop(claude):
    async with asyncio.timeout(CHECK_SECONDS):
        (plain_name, plain), (tool_name, tool) = await claude_code.check_all(claude)
    assert (plain_name, tool_name) == ("plain prompt", "tool loop")
    assert plain.startswith("Hello from the fake ")
    assert "the tool said: File created successfully" in tool
