"""Coding agents against a demo gateway: the pinned Claude Code's and Codex CLI's plain prompt
and tool loop (tests/agents/claude_code.py, tests/agents/codex_cli.py). Needs node and npm; the
packages come from the npm registry by `npm ci` from tests/agents' lock, into a cache
directory, once."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from .agents import claude_code, codex_cli, npm

CHECK_SECONDS = 120


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """The pinned agents' install, made if it was not."""
    command = shutil.which("npm")
    if command is None or shutil.which("node") is None:
        pytest.skip("the coding-agent checks need node and npm on PATH")
    try:
        return npm.install(command)
    except npm.Unavailable as exc:  # only an unreachable registry skips
        pytest.skip(str(exc))


async def test_claude_code_answers_and_runs_a_tool_loop(node_modules):
    claude = claude_code.command_in(node_modules)
    async with asyncio.timeout(CHECK_SECONDS):
        (plain_name, plain), (tool_name, tool) = await claude_code.check_all(claude)
    assert (plain_name, tool_name) == ("plain prompt", "tool loop")
    assert plain.startswith("Hello from the fake ")
    assert "the tool said: File created successfully" in tool


async def test_codex_cli_answers_and_runs_a_tool_loop(node_modules):
    codex = codex_cli.command_in(node_modules)
    async with asyncio.timeout(CHECK_SECONDS):
        (plain_name, plain), (tool_name, tool) = await codex_cli.check_all(codex)
    assert (plain_name, tool_name) == ("plain prompt", "tool loop")
    assert plain.startswith("Hello from the fake ")
    assert "the tool said: Chunk ID:" in tool
