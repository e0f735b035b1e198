"""End to end: the real Claude Code, the version pinned in tests/agents/package-lock.json,
against a demo gateway.

Installs the pinned packages with `npm ci` into a cache directory when they are not there yet
(`npm.py`), starts a demo gateway (fake providers, in this process) whose `[aliases]` map
Claude Code's default model names to `auto`, runs `claude -p` for a plain prompt and for a
task that takes one tool call (the fake calls the first tool offered, `Write`, with example
arguments), and checks what Claude Code printed and did. `python -m tests.agents.claude_code`
prints each check and exits 1 if one fails; tests/test_agents.py runs the same checks under
pytest.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ai_api.settings import Settings

from . import npm as packages
from .npm import CheckFailed

PACKAGE = "@anthropic-ai/claude-code"
VERSION = packages.pinned(PACKAGE)
DEFAULT_MODELS = ("claude-opus-5-5", "claude-sonnet-5-5", "claude-haiku-5-5", "claude-fable-5-2")
"""The names Claude Code `VERSION` asks for by default (and for `--model opus`, `sonnet`,
`haiku`, `fable`): the README's alias table."""
RUN_SECONDS = 45


def command_in(node_modules: Path) -> list[str]:
    """The command that runs the pinned `claude` of an install."""
    # The package's postinstall puts the platform's native binary in place of bin/claude.exe;
    # where install scripts did not run, its wrapper finds and runs that binary.
    for command in (
        [str(node_modules / ".bin" / "claude")],
        ["node", str(node_modules / PACKAGE / "cli-wrapper.cjs")],
    ):
        version = packages.version_of(command, RUN_SECONDS)
        if version is not None and version.startswith(VERSION):
            return command
    raise CheckFailed(f"no runnable claude {VERSION} in {node_modules}")


@dataclass(frozen=True, slots=True)
class Run:
    """What one `claude -p` printed: its exit status and the `--output-format json` result."""

    status: int
    result: dict[str, Any]
    stderr: str


async def run_claude(
    command: list[str], gateway: str, workdir: Path, home: Path, *args: str
) -> Run:
    """`claude -p ... --output-format json` in `workdir`, pointed at `gateway`, with a `home`
    of its own and nothing else from this environment."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": gateway,
        "ANTHROPIC_API_KEY": "demo",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
    }
    process = await asyncio.create_subprocess_exec(
        *command,
        *args,
        "--output-format",
        "json",
        cwd=workdir,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), RUN_SECONDS)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise CheckFailed(f"claude {' '.join(args)} did not finish in {RUN_SECONDS} s") from None
    try:
        result = json.loads(out)
    except ValueError:
        raise CheckFailed(f"claude printed no JSON result:\n{out!r}\n{err.decode()}") from None
    return Run(process.returncode or 0, result, err.decode())


def expect(condition: bool, what: str, run: Run) -> None:
    if not condition:
        raise CheckFailed(f"{what}; claude exited {run.status} with {run.result}\n{run.stderr}")


async def check_plain_prompt(command: list[str], gateway: str, scratch: Path) -> str:
    """`claude -p "say hello"` with no tools: the fake's answer, exit 0."""
    workdir, home = scratch / "plain", scratch / "plain-home"
    workdir.mkdir()
    home.mkdir()
    run = await run_claude(command, gateway, workdir, home, "-p", "say hello", "--tools", "")
    expect(run.status == 0 and run.result.get("is_error") is False, "it failed", run)
    text = run.result.get("result", "")
    expect(text.startswith("Hello from the fake "), "not the demo's answer", run)
    expect("You said:" in text and run.result.get("num_turns") == 1, "not a one-turn answer", run)
    return text


async def check_tool_loop(command: list[str], gateway: str, scratch: Path) -> str:
    """A task whose answer is one `Write` call: the file is written and the fake answers
    quoting the tool's result, in two turns."""
    workdir, home = scratch / "tool", scratch / "tool-home"
    workdir.mkdir()
    home.mkdir()
    args = ("-p", "write a file", "--tools", "Write", "--permission-mode", "acceptEdits")
    run = await run_claude(command, gateway, workdir, home, *args, "--max-turns", "4")
    expect(run.status == 0 and run.result.get("is_error") is False, "it failed", run)
    written = workdir / "example"  # the fake's example arguments: file_path and content
    expect(written.exists() and written.read_text() == "example", "no file written", run)
    text = run.result.get("result", "")
    expect("the tool said: File created successfully" in text, "no answer after the tool", run)
    expect(run.result.get("num_turns") == 2, "not one tool call then an answer", run)
    return text


def demo_settings() -> Settings:
    """A demo gateway on a free port whose aliases are Claude Code's default model names."""
    return Settings(
        port=0, ledger="", demo=True, aliases=tuple((name, "auto") for name in DEFAULT_MODELS)
    )


async def check_all(command: list[str]) -> list[tuple[str, str]]:
    """Both checks against one demo gateway: (name, what the agent answered) each."""
    checks = (("plain prompt", check_plain_prompt), ("tool loop", check_tool_loop))
    return await packages.run_checks(command, demo_settings(), checks)


if __name__ == "__main__":
    sys.exit(packages.main(f"claude {VERSION}", command_in, check_all))
