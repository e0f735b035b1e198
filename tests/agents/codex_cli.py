"""End to end: the real Codex CLI, the version pinned in tests/agents/package-lock.json, against
a demo gateway, through the Responses API.

Installs the pinned packages (`npm.py`), starts a demo gateway (fake providers, in this
process), writes a `config.toml` with a custom provider (`wire_api = "responses"`, the
README's), runs `codex exec --json` for a plain prompt and for a task that takes one shell
command, and checks the events Codex printed and what the command did. The last user turn
tells the demo's fake which call to make (`fake-tool-call:`, see `ai_api.fakes.tools`): none
for the plain prompt (Codex always offers tools), and `exec_command` with a real command for
the task. `python -m tests.agents.codex_cli` prints each check and exits 1 if one fails;
tests/test_agents.py runs the same checks under pytest.
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

PACKAGE = "@openai/codex"
VERSION = packages.pinned(PACKAGE)
RUN_SECONDS = 60
MODEL = "auto"
"""A gateway model name Codex does not know: it warns that it has no metadata for it, and it
offers no tool the facade refuses (with one of its own names it adds `tool_search`)."""
TASK_COMMAND = "printf done > done.txt && cat done.txt"
CONFIG = """\
model = "{model}"
model_provider = "aiapi"
web_search = "disabled"

[model_providers.aiapi]
name = "ai-api"
base_url = "{gateway}/v1"
env_key = "AI_API_KEY"
wire_api = "responses"
"""


def command_in(node_modules: Path) -> list[str]:
    """The command that runs the pinned `codex` of an install."""
    command = [str(node_modules / ".bin" / "codex")]
    version = packages.version_of(command, RUN_SECONDS)
    if version != f"codex-cli {VERSION}":
        raise CheckFailed(f"no runnable codex {VERSION} in {node_modules} (got {version!r})")
    return command


@dataclass(frozen=True, slots=True)
class Run:
    """What one `codex exec --json` printed: its exit status and its events."""

    status: int
    events: list[dict[str, Any]]
    stderr: str

    def items(self, kind: str) -> list[dict[str, Any]]:
        """The completed items of one type (`agent_message`, `command_execution`...)."""
        done = (e.get("item") for e in self.events if e.get("type") == "item.completed")
        return [i for i in done if isinstance(i, dict) and i.get("type") == kind]

    def said(self) -> str:
        """The agent's last message."""
        messages = self.items("agent_message")
        return str(messages[-1].get("text", "")) if messages else ""


async def run_codex(
    command: list[str], gateway: str, workdir: Path, home: Path, prompt: str
) -> Run:
    """`codex exec --json PROMPT` in `workdir`, with a CODEX_HOME of its own whose
    config.toml points at `gateway`, and nothing else from this environment. The command
    runs unsandboxed: the check is of the gateway, and Codex's bubblewrap sandbox needs user
    namespaces that a CI container may not have."""
    (home / "config.toml").write_text(CONFIG.format(model=MODEL, gateway=gateway))
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "CODEX_HOME": str(home),
        "AI_API_KEY": "demo",
    }
    process = await asyncio.create_subprocess_exec(
        *command,
        "exec",
        "--json",
        "--skip-git-repo-check",
        "--ephemeral",
        "--dangerously-bypass-approvals-and-sandbox",
        prompt,
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
        raise CheckFailed(f"codex exec did not finish in {RUN_SECONDS} s") from None
    try:
        events = [json.loads(line) for line in out.splitlines() if line.strip()]
    except ValueError:
        raise CheckFailed(f"codex printed a line that is not JSON:\n{out!r}") from None
    return Run(process.returncode or 0, events, err.decode())


def expect(condition: bool, what: str, run: Run) -> None:
    if not condition:
        printed = "\n".join(json.dumps(e) for e in run.events)
        raise CheckFailed(f"{what}; codex exited {run.status} with\n{printed}\n{run.stderr}")


def expect_a_finished_turn(run: Run) -> None:
    kinds = [e.get("type") for e in run.events]
    expect(run.status == 0, "it failed", run)
    expect("turn.completed" in kinds and "turn.failed" not in kinds, "no finished turn", run)
    expect(not any(e.get("type") == "error" for e in run.events), "an error event", run)


async def check_plain_prompt(command: list[str], gateway: str, scratch: Path) -> str:
    """`codex exec "say hello"`: the fake's answer in one model call, no command run."""
    workdir, home = scratch / "plain", scratch / "plain-home"
    workdir.mkdir()
    home.mkdir()
    run = await run_codex(command, gateway, workdir, home, "say hello\nfake-tool-call: none")
    expect_a_finished_turn(run)
    expect(not run.items("command_execution"), "a command ran", run)
    text = run.said()
    expect(text.startswith("Hello from the fake "), "not the demo's answer", run)
    expect("You said:" in text, "not an answer to the prompt", run)
    return text


async def check_tool_loop(command: list[str], gateway: str, scratch: Path) -> str:
    """A task whose answer is one `exec_command` call: the command runs in the work folder,
    its output goes back through the gateway, and the fake answers quoting it."""
    workdir, home = scratch / "tool", scratch / "tool-home"
    workdir.mkdir()
    home.mkdir()
    told = json.dumps({"cmd": TASK_COMMAND})
    run = await run_codex(
        command, gateway, workdir, home, f"create done.txt\nfake-tool-call: exec_command {told}"
    )
    expect_a_finished_turn(run)
    commands = run.items("command_execution")
    expect(len(commands) == 1, "not one command", run)
    expect(TASK_COMMAND in str(commands[0].get("command")), "not the told command", run)
    expect(commands[0].get("exit_code") == 0, "the command failed", run)
    expect(commands[0].get("aggregated_output") == "done", "not the command's output", run)
    written = workdir / "done.txt"
    expect(written.exists() and written.read_text() == "done", "no file written", run)
    text = run.said()
    # Codex hands the command's result back framed ("Chunk ID: ...", then the exit code and
    # output); the fake quotes the start of what it was given.
    expect("the tool said: Chunk ID:" in text, "no answer after the tool", run)
    return text


def demo_settings() -> Settings:
    """A demo gateway on a free port."""
    return Settings(port=0, ledger="", demo=True)


async def check_all(command: list[str]) -> list[tuple[str, str]]:
    """Both checks against one demo gateway: (name, what the agent answered) each."""
    checks = (("plain prompt", check_plain_prompt), ("tool loop", check_tool_loop))
    return await packages.run_checks(command, demo_settings(), checks)


if __name__ == "__main__":
    sys.exit(packages.main(f"codex {VERSION}", command_in, check_all))
