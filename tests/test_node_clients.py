"""The gateway driven by Node clients as users use them: openai-node and the Vercel AI SDK.

Each scenario is a script in tests/node that prints one JSON result. The packages are pinned in
tests/node/package-lock.json; `npm ci` installs them there when node_modules is missing or
older than the lock. Node.js 18+ and npm must be on PATH: without them these tests fail.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ai_api.fakes import FakeUpstream

from .test_api_openai import WEATHER_TOOL, fake_text

NODE_DIR = Path(__file__).resolve().parent / "node"
MODEL = "openai/gpt-oss-120b"
WEATHER_ARGUMENTS = {"city": "example", "days": 1}
WEATHER_RESULT = "sunny in example for 1 days"
SCRIPT_SECONDS = 60


def _installed_after_the_lock() -> bool:
    stamp = NODE_DIR / "node_modules" / ".package-lock.json"  # npm ci writes it last
    lock = NODE_DIR / "package-lock.json"
    return stamp.exists() and stamp.stat().st_mtime >= lock.stat().st_mtime


@pytest.fixture(scope="session")
def node() -> str:
    """The path of node, with tests/node's packages installed from the lock."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("the Node client tests need Node.js 18+ and npm on PATH")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True)
    major = int(version.stdout.strip().lstrip("v").split(".")[0])
    if major < 18:
        pytest.fail(f"the Node client tests need Node.js 18+, found {version.stdout.strip()}")
    if not _installed_after_the_lock():
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0:
            pytest.fail(f"npm ci in {NODE_DIR} failed:\n{done.stdout}\n{done.stderr}")
    return node


async def run_script(node: str, script: str, gateway: str, *args: str) -> Any:
    """Run tests/node/`script` against the gateway; its printed JSON result."""
    process = await asyncio.create_subprocess_exec(
        node,
        str(NODE_DIR / script),
        gateway,
        *args,
        cwd=NODE_DIR,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), SCRIPT_SECONDS)
    except TimeoutError:
        process.kill()
        await process.wait()
        pytest.fail(f"{script} did not finish in {SCRIPT_SECONDS} s")
    assert process.returncode == 0, f"{script} exited {process.returncode}:\n{err.decode()}"
    return json.loads(out)


async def test_openai_node_streams_text_and_usage(node, gateway, groq):
    result = await run_script(node, "openai_stream_text.mjs", gateway)
    assert result["text"] == await fake_text(groq, MODEL)
    assert result["finish_reasons"] == ["stop"]
    assert result["models"] == [MODEL]
    usage = result["usage"]
    assert usage["choices"] == 0  # the usage chunk comes last, on its own
    assert usage["completion_tokens"] == groq.answer_tokens
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
    assert groq.requests[0].body["stream_options"] == {"include_usage": True}


async def test_openai_node_stream_helper_assembles_the_tool_call(node, gateway, groq):
    result = await run_script(node, "openai_stream_tool_call.mjs", gateway)
    (call,) = result["tool_calls"]
    assert call["name"] == "get_weather"
    assert call["arguments"] == WEATHER_ARGUMENTS
    assert call["id"].startswith("call_")
    assert call["type"] == "function"
    assert result["content"] is None
    assert result["finish_reason"] == "tool_calls"
    assert result["arguments_done"] == ["get_weather"]
    assert groq.requests[0].body["tools"] == [WEATHER_TOOL]


async def test_openai_node_tool_loop_answers_after_the_tool_result(node, gateway, groq):
    result = await run_script(node, "openai_tool_loop.mjs", gateway)
    assert result["turns"] == [
        {"finish_reason": "tool_calls", "tool_calls": ["get_weather"]},
        {"finish_reason": "stop", "tool_calls": []},
    ]
    (first, second) = (r.body for r in groq.requests)
    assert first["tools"] == second["tools"] == [WEATHER_TOOL]
    call, result_message = second["messages"][-2:]
    (sent_call,) = call["tool_calls"]
    assert sent_call["function"]["name"] == "get_weather"
    assert json.loads(sent_call["function"]["arguments"]) == WEATHER_ARGUMENTS
    assert result_message == {
        "role": "tool",
        "tool_call_id": sent_call["id"],
        "content": WEATHER_RESULT,
    }
    assert result["text"] == await fake_text(groq, MODEL, second["messages"])
    assert WEATHER_RESULT in result["text"]


async def test_openai_node_responses_tool_loop(node, gateway, groq):
    result = await run_script(node, "openai_responses.mjs", gateway)
    assert result["kinds"][0] == "response.created"
    assert result["kinds"][-1] == "response.completed"
    assert "response.function_call_arguments.done" in result["kinds"]
    assert result["first_status"] == result["status"] == "completed"
    assert result["calls"] == [{"name": "get_weather", "arguments": WEATHER_ARGUMENTS}]
    sent = groq.requests[1].body["messages"]
    assert sent[-1] == {
        "role": "tool",
        "tool_call_id": sent[-2]["tool_calls"][0]["id"],
        "content": WEATHER_RESULT,
    }
    assert WEATHER_RESULT in result["text"]


@pytest.mark.parametrize("mode", ["stream", "generate"])
async def test_the_ai_sdk_runs_a_tool_then_answers(node, gateway, groq: FakeUpstream, mode):
    result = await run_script(node, "ai_sdk.mjs", gateway, mode)
    assert result["errors"] == []
    tool_step, text_step = result["steps"]
    assert tool_step["finish_reason"] == "tool-calls"
    assert tool_step["tool_calls"] == [{"name": "get_weather", "input": WEATHER_ARGUMENTS}]
    assert tool_step["tool_results"] == [WEATHER_RESULT]
    assert text_step["finish_reason"] == result["finish_reason"] == "stop"
    assert text_step["tool_calls"] == []
    sent = groq.requests[-1].body["messages"]
    assert sent[-1]["role"] == "tool"
    assert result["text"] == text_step["text"] == await fake_text(groq, MODEL, sent)
    assert WEATHER_RESULT in result["text"]
    for step in result["steps"]:
        assert step["usage"]["inputTokens"] > 0
        assert step["usage"]["outputTokens"] > 0
    usage = result["usage"]
    assert usage["outputTokens"] == sum(s["usage"]["outputTokens"] for s in result["steps"])


def test_the_lock_pins_every_package_by_hash_without_its_download_address():
    lock = json.loads((NODE_DIR / "package-lock.json").read_text(encoding="utf-8"))
    packages = {path: entry for path, entry in lock["packages"].items() if path}
    assert packages
    for path, entry in packages.items():
        assert entry["version"], path
        assert entry["integrity"].startswith("sha512-"), path
        assert "resolved" not in entry, path
    direct = json.loads((NODE_DIR / "package.json").read_text(encoding="utf-8"))["dependencies"]
    assert {name: packages[f"node_modules/{name}"]["version"] for name in direct} == direct


@pytest.mark.parametrize("mode", ["generate", "stream"])
async def test_the_ai_sdk_generates_an_object(node, gateway, groq: FakeUpstream, mode):
    result = await run_script(node, "ai_sdk_object.mjs", gateway, mode)
    forecast = result["object"]
    assert forecast["unit"] == "celsius"
    assert len(forecast["days"]) == 1
    assert isinstance(forecast["city"], str)
    assert result["finish_reason"] == "stop"
    assert groq.requests[-1].body["response_format"]["type"] == "json_schema"
