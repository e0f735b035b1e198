"""The `ai-api` command as a user runs it: real processes, real ports."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

from ai_api.cli import main
from ai_api.server import running
from ai_api.settings import Settings

from .certs import self_signed
from .conftest import content_of, parse_events

HELLO = {"messages": [{"role": "user", "content": "hola"}]}
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_BASE_URL"))}


def test_no_provider_exits_non_zero_and_says_what_to_set(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for name in ("GROQ_API_KEY", "CEREBRAS_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "GROQ_API_KEY" in err
    assert "CEREBRAS_API_KEY" in err
    assert "--demo" in err


def test_bad_setting_exits_2(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PORT", "abc")
    assert main(["serve", "--demo"]) == 2
    assert "PORT='abc'" in capsys.readouterr().err


@asynccontextmanager
async def ai_api(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """`python -m ai_api serve ...` in a child process; yields it and the URL it logged."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ai_api",
        "serve",
        "--port",
        "0",
        *args,
        cwd=cwd,
        env={**CLEAN_ENV, **(env or {})},
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        url = await asyncio.wait_for(next_url(process), timeout=20)
        yield process, url
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
            await asyncio.wait_for(process.wait(), timeout=20)


async def next_url(process: asyncio.subprocess.Process) -> str:
    assert process.stderr is not None
    log = ""
    while True:
        line = (await process.stderr.readline()).decode()
        if not line:
            raise AssertionError(f"exited before listening:\n{log}")
        log += line
        match = re.search(r"listening on (http://\S+)", line)
        if match:
            process.listening_line = line  # type: ignore[attr-defined]
            return match.group(1)


async def test_demo_mode_serves_real_streams_and_says_it_is_a_demo(tmp_path):
    async with ai_api("--demo", cwd=tmp_path) as (process, url), aiohttp.ClientSession() as s:
        async with s.post(url + "/chat", json=HELLO) as response:
            assert response.status == 200
            events = parse_events(await response.text())
        async with s.get(url + "/health") as response:
            assert (await response.json())["demo"] is True
    assert process.returncode == 0
    assert len(content_of(events)) > 100
    assert events[-1][0] == "done"
    assert events[-1][1]["demo"] is True
    assert events[-1][1]["usage"]["completion_tokens"] > 0


@pytest.mark.parametrize("choice", ["auto", "asyncio"])
async def test_the_server_runs_on_the_event_loop_chosen(tmp_path, choice):
    installed = importlib.util.find_spec("uvloop") is not None
    expected = "uvloop" if choice == "auto" and installed else "asyncio"
    env = {"AI_API_EVENT_LOOP": choice}
    async with (
        ai_api("--demo", cwd=tmp_path, env=env) as (process, url),
        aiohttp.ClientSession() as s,
        s.post(url + "/chat", json=HELLO) as response,
    ):
        assert parse_events(await response.text())[-1][0] == "done"
    assert f"event loop: {expected})" in process.listening_line  # type: ignore[attr-defined]


def test_an_unknown_event_loop_is_a_configuration_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AI_API_EVENT_LOOP", "trio")
    assert main(["serve", "--demo"]) == 2
    assert "AI_API_EVENT_LOOP='trio'" in capsys.readouterr().err


async def test_demo_in_process_alternates_over_both_fakes():
    async with running(Settings(port=0, demo=True, ledger="")) as url, aiohttp.ClientSession() as s:
        seen = []
        for _ in range(2):
            async with s.post(url + "/chat?format=text", json=HELLO) as response:
                assert response.status == 200
                assert "fake" in (await response.text()).lower()
                seen.append(response.headers["X-AI-API-Provider"])
    assert seen == ["groq", "cerebras"]


async def test_reload_restarts_when_dotenv_changes(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text("GROQ_API_KEY=k\nGROQ_BASE_URL=http://127.0.0.1:9\nGROQ_MODEL=model-a\n")
    async with ai_api("--reload", cwd=tmp_path) as (process, url):
        async with aiohttp.ClientSession() as s, s.get(url + "/health") as response:
            assert (await response.json())["providers"][0]["model"] == "model-a"
        dotenv.write_text(dotenv.read_text().replace("model-a", "model-b"))
        stat = dotenv.stat()
        os.utime(dotenv, (stat.st_atime, stat.st_mtime + 5))
        url = await asyncio.wait_for(next_url(process), timeout=20)
        async with aiohttp.ClientSession() as s, s.get(url + "/health") as response:
            assert (await response.json())["providers"][0]["model"] == "model-b"


@pytest.mark.parametrize("entry", [["-m", "ai_api"], ["-c", "from ai_api.cli import main; main()"]])
async def test_help_runs(entry):
    process = await asyncio.create_subprocess_exec(
        sys.executable, *entry, "serve", "--help", stdout=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    assert process.returncode == 0
    assert b"--demo" in out


def test_config_check_prints_the_resolved_setup_with_keys_masked(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    secret = "gsk_0123456789abcdefghijklmnop"
    (tmp_path / ".env").write_text(f"GROQ_API_KEY={secret}\nCEREBRAS_API_KEY=csk-short\n")
    (tmp_path / "ai-api.toml").write_text(
        '[routes.smart]\nstrategy = "fallback"\n'
        'members = ["cerebras/gpt-oss-120b", "groq/openai/gpt-oss-120b"]\n'
    )
    assert main(["config", "check", "--config", "ai-api.toml"]) == 0
    out = capsys.readouterr().out
    assert "groq (Groq) https://api.groq.com  GROQ_API_KEY=gsk_****" in out
    assert "CEREBRAS_API_KEY=****" in out
    assert "smart (fallback): cerebras/gpt-oss-120b, groq/openai/gpt-oss-120b" in out
    assert "auto (round-robin): groq/openai/gpt-oss-120b, cerebras/gpt-oss-120b" in out
    assert "Gateway keys: none (open gateway)" in out
    assert secret[4:] not in out
    assert "csk-short" not in out


def test_config_check_shows_the_proxies_without_credentials_and_the_trust_stores(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    for name in ("https_proxy", "http_proxy", "all_proxy", "no_proxy", "ALL_PROXY", "HTTP_PROXY"):
        monkeypatch.delenv(name, raising=False)
    password = "pr0xy-secret-0123456789"
    monkeypatch.setenv("HTTPS_PROXY", f"http://gw:{password}@proxy.corp:3128")
    monkeypatch.setenv("NO_PROXY", ".internal")
    ca, _ = self_signed(tmp_path, "ca", "box.internal")
    (tmp_path / "ai-api.toml").write_text(
        "[providers.box]\nkind = 'openai'\nbase_url = 'https://box.internal/v1'\n"
        "models = ['m']\nca_bundle = 'ca.pem'\n"
    )
    assert main(["config", "check", "--config", "ai-api.toml"]) == 0
    out = capsys.readouterr().out
    assert (
        "Calls to providers: https via http://proxy.corp:3128; http direct; not for .internal"
        in out
    )
    assert f"    tls: ca_bundle={ca}" in out
    assert password not in out
    assert "gw:" not in out
    monkeypatch.setenv("AI_API_TRUST_ENV", "off")
    assert main(["config", "check", "--config", "ai-api.toml"]) == 0
    assert "direct (trust_env off" in capsys.readouterr().out


def test_config_check_reports_problems_and_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for name in ("GROQ_API_KEY", "CEREBRAS_API_KEY", "MISTRAL_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "a.toml").write_text("[providers.mistral]\n")
    assert main(["config", "check", "--config", "a.toml"]) == 1
    assert "MISTRAL_API_KEY is not set" in capsys.readouterr().out
    (tmp_path / "b.toml").write_text("[providers.mistral]\nmodel = 'x'\n")
    assert main(["config", "check", "--config", "b.toml"]) == 2
    assert "unknown field `model`" in capsys.readouterr().err


async def test_usage_reports_from_the_ledger_file(tmp_path, monkeypatch, capsys):
    from ai_api.fakes import FakeUpstream

    from .conftest import KEYS, settings_for

    ledger = tmp_path / "usage.sqlite3"
    async with FakeUpstream("groq", api_key=KEYS["groq"]) as groq:
        settings = settings_for(groq, limits=True, ledger=str(ledger))
        async with running(settings) as url, aiohttp.ClientSession() as s:
            for _ in range(3):
                async with s.post(url + "/chat", json=HELLO) as response:
                    await response.read()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GROQ_API_KEY", KEYS["groq"])
    monkeypatch.setenv("AI_API_LEDGER", str(ledger))
    assert await asyncio.to_thread(main, ["usage"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if "groq/openai/gpt-oss-120b" in line)
    assert row.split()[2:4] == ["3", "0"]  # requests, errors
    assert "groq/openai/gpt-oss-120b:" in out
    assert "requests/day 997 of 1000" in out
    assert await asyncio.to_thread(main, ["usage", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["days"][0]["requests"] == 3


def test_no_provider_also_names_the_local_servers(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for name in ("GROQ_API_KEY", "CEREBRAS_API_KEY", "OLLAMA_MODEL"):
        monkeypatch.delenv(name, raising=False)
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    for variable in ("OLLAMA_MODEL", "LMSTUDIO_MODEL", "VLLM_MODEL"):
        assert variable in err


def test_config_check_shows_limits_their_source_and_unset_keys(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GROQ_API_KEY", "gsk_0123456789abcdefghijklmnop")
    monkeypatch.delenv("OPENAI_COMPATIBLE_API_KEY", raising=False)
    monkeypatch.setenv("CEREBRAS_API_KEY", "csk-0123456789abcdefghijkl")
    (tmp_path / "ai-api.toml").write_text(
        "[providers.groq]\nmodels = [{name = 'openai/gpt-oss-120b', rpm = 10}]\n"
        "[providers.mine]\nkind = 'openai'\nbase_url = 'http://127.0.0.1:9/v1'\n"
        "models = ['m']\n[providers.cerebras]\nguesses = false\n"
    )
    main(["config", "check", "--config", "ai-api.toml"])
    out = capsys.readouterr().out
    assert "requests/minute 10 (configured)" in out
    assert "tokens/minute 8000 (built-in)" in out
    mine = out.split("mine (")[1].split("\n")[0]
    assert mine.endswith("no key")  # not a masked placeholder, as if a key were set
    assert "built-in limits off (guesses = false)" in out


def test_usage_days_is_checked_as_the_endpoint_does(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        main(["usage", "--days", "0"])
    assert info.value.code == 2
    assert "1 to 366" in capsys.readouterr().err


async def test_usage_into_a_closed_pipe_ends_quietly(tmp_path):
    read, write = os.pipe()
    os.close(read)  # `ai-api usage | head` once head has gone
    env = {**CLEAN_ENV, "GROQ_API_KEY": "gsk_0123456789abcdefghijklmnop"}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ai_api",
        "usage",
        cwd=tmp_path,
        env=env,
        stdout=write,
        stderr=asyncio.subprocess.PIPE,
    )
    os.close(write)
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0
    assert b"Traceback" not in err


async def test_sigterm_to_the_reloader_stops_its_server_too(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text("GROQ_API_KEY=k\nGROQ_BASE_URL=http://127.0.0.1:9\n")
    async with ai_api("--reload", cwd=tmp_path) as (process, url):
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=20) == 0
        # The server child is gone with it: nothing listens on its port any more.
        async with aiohttp.ClientSession() as s:
            with pytest.raises(aiohttp.ClientConnectionError):
                await s.get(url + "/health", timeout=aiohttp.ClientTimeout(total=5))


async def test_a_demo_with_workers_writes_no_file_where_it_runs(tmp_path):
    async with ai_api("--demo", "--workers", "2", cwd=tmp_path) as (_, url):
        status = await post_hello(url)
    assert status == 200
    assert list(tmp_path.iterdir()) == []  # no ledger, no state file with fake budgets


async def post_hello(url: str) -> int:
    """POST /chat once, read whole; its status."""
    async with aiohttp.ClientSession() as s, s.post(url + "/chat", json=HELLO) as response:
        await response.read()
        return response.status


async def test_kill_9_mid_burst_loses_no_attempt_the_upstream_received(tmp_path):
    import sqlite3

    from ai_api.fakes import FakeUpstream
    from ai_api.store import SQLiteLedger

    from .conftest import KEYS

    ledger = tmp_path / "usage.sqlite3"
    # Slow answers: every attempt is in flight when the gateway is killed.
    async with FakeUpstream("groq", api_key=KEYS["groq"], token_delay=0.5) as groq:
        env = {"GROQ_API_KEY": KEYS["groq"], "GROQ_BASE_URL": groq.base_url}
        env["AI_API_LEDGER"] = str(ledger)
        async with ai_api(cwd=tmp_path, env=env) as (process, url), aiohttp.ClientSession() as s:
            sent = [asyncio.create_task(s.post(url + "/chat", json=HELLO)) for _ in range(20)]
            for _ in range(750):  # until the upstream has every request (15 s on a busy machine)
                if len(groq.requests) == 20:
                    break
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.3)  # past the ledger's flush interval (50 ms)
            process.kill()
            await process.wait()
            for task in sent:
                task.cancel()
            await asyncio.gather(*sent, return_exceptions=True)
    assert len(groq.requests) == 20
    with sqlite3.connect(ledger) as conn:
        rows = conn.execute("SELECT error FROM attempts").fetchall()
    assert rows == [("in_progress",)] * 20  # every attempt the upstream received is there
    again = await SQLiteLedger(ledger).open()
    try:
        [day] = await again.usage("2000-01-01")
        assert (day.requests, day.errors) == (20, 20)  # interrupted, at the next start
    finally:
        await again.close()
