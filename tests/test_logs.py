"""The access log (one line per request at INFO, text or JSON) and the lines that tell of a
failover, a rest and a circuit: what they say, and that no key or conversation is in them."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import aiohttp
import pytest

from ai_api.fakes import FakeUpstream, Fault
from ai_api.logs import JSONFormatter
from ai_api.server import running
from ai_api.settings import GatewayKey, Secret

from .conftest import KEYS, settings_for
from .test_cli import ai_api
from .test_server import gateway_env

SECRET_PROMPT = "the-purple-elephant-sings-at-dawn"
ASK = [{"role": "user", "content": SECRET_PROMPT}]
GATEWAY_KEY = "gw-logs-test-key-0123456789"


def access_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "ai_api.access"]


async def test_a_success_a_failover_and_a_429_each_leave_one_line(
    groq: FakeUpstream,
    cerebras: FakeUpstream,
    client: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    keys = (GatewayKey("AI_API_KEYS", Secret(GATEWAY_KEY)),)
    auth = {"Authorization": f"Bearer {GATEWAY_KEY}"}
    async with running(settings_for(groq, cerebras, gateway_keys=keys)) as url:
        chat = url + "/v1/chat/completions"
        async with client.post(chat, json={"messages": ASK, "stream": True}, headers=auth) as r:
            assert r.status == 200
            await r.read()
        cerebras.add_fault(Fault(status=503, retry_after=30))  # its turn: Groq takes over
        async with client.post(chat, json={"messages": ASK}, headers=auth) as r:
            assert r.status == 200
        groq.add_fault(Fault(status=429, retry_after=30))  # both resting now
        async with client.post(chat, json={"messages": ASK}, headers=auth) as r:
            assert r.status == 429
        async with client.post(chat, json={"messages": ASK}, headers=auth) as r:
            assert r.status == 429
    success, failover, last_one, refused = access_lines(caplog)
    assert success.startswith("POST /v1/chat/completions 200 api=openai route=auto")
    assert "member=groq/openai/gpt-oss-120b attempts=1 " in success
    assert "error=-" in success
    assert "ttft=-" not in success
    assert failover.startswith("POST /v1/chat/completions 200 ")
    assert "member=groq/openai/gpt-oss-120b attempts=2 " in failover
    assert last_one.startswith("POST /v1/chat/completions 429 ")
    assert "member=groq/openai/gpt-oss-120b attempts=1 " in last_one
    assert refused.startswith("POST /v1/chat/completions 429 ")
    assert "member=- attempts=0 " in refused
    assert "ttft=- " in refused
    assert refused.endswith("error=rate_limit_exceeded")

    text = "\n".join(r.getMessage() for r in caplog.records)
    # The failover and each rest are told once, with the provider's reason.
    assert text.count("attempt 1 on cerebras/gpt-oss-120b failed (service_unavailable)") == 1
    assert text.count("cerebras/gpt-oss-120b rests for 30 s after service_unavailable") == 1
    assert text.count("groq/openai/gpt-oss-120b rests for 30 s after rate_limit_exceeded") == 1
    for secret in (*KEYS.values(), GATEWAY_KEY, SECRET_PROMPT):
        assert secret not in text
        assert secret[: len(secret) // 2] not in text


async def test_a_circuit_that_opens_is_told_once_at_warning(
    groq: FakeUpstream, client: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    groq.add_fault(Fault(status=500), times=10)
    async with running(settings_for(groq)) as url:
        for _ in range(4):
            async with client.post(url + "/v1/chat/completions", json={"messages": ASK}) as r:
                await r.read()
    opened = [
        r
        for r in caplog.records
        if r.levelno == logging.WARNING and "circuit open after" in r.getMessage()
    ]
    assert len(opened) == 1
    assert opened[0].getMessage().startswith("groq/openai/gpt-oss-120b: circuit open after ")


def test_the_json_form_holds_the_access_fields() -> None:
    record = logging.LogRecord("ai_api.access", logging.INFO, "x", 1, "GET %s", ("/x",), None)
    record.access = {"status": 200, "route": None}
    line = json.loads(JSONFormatter().format(record))
    assert line["message"] == "GET /x"
    assert line["level"] == "INFO"
    assert line["logger"] == "ai_api.access"
    assert line["status"] == 200
    assert line["route"] is None
    assert line["time"].endswith("Z")


async def test_ai_api_log_format_json_writes_one_object_a_line(tmp_path: Path) -> None:
    async with FakeUpstream("groq", api_key=KEYS["groq"], token_delay=0.0) as groq:
        env = gateway_env(groq, tmp_path / "usage.sqlite3", AI_API_LOG_FORMAT="json")
        async with ai_api(cwd=tmp_path, env=env) as (process, url), aiohttp.ClientSession() as s:
            body = {"messages": ASK, "stream": True}
            async with s.post(url + "/v1/chat/completions", json=body) as r:
                assert r.status == 200
                await r.read()
            async with s.get(url + "/nowhere") as r:
                assert r.status == 404
        assert process.stderr is not None
        err = (await asyncio.wait_for(process.stderr.read(), 20)).decode()
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]
    access = [line for line in lines if line["logger"] == "ai_api.access"]
    answered, missing = access
    assert answered["status"] == 200
    assert answered["api"] == "openai"
    assert answered["provider"] == "groq"
    assert answered["attempts"] == 1
    assert answered["completion_tokens"] > 0
    assert answered["ttft"] is not None
    assert missing["status"] == 404
    assert missing["api"] == "other"
    assert missing["error"] == "not_found"
    assert SECRET_PROMPT not in err
    assert KEYS["groq"] not in err
