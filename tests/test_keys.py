"""Gateway keys held to scopes and models, over real HTTP with the official SDK."""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import openai
import pytest

from ai_api.cli import describe
from ai_api.config import load_settings
from ai_api.keys import check_model
from ai_api.server import running
from ai_api.settings import SCOPES, ConfigError, GatewayKey, Secret

from .conftest import settings_for

HI: Any = [{"role": "user", "content": "hi"}]
FULL = "full-key-0123456789abcdef"
CHAT = "chat-key-0123456789abcdef"
LISTER = "list-key-0123456789abcdef"
KEYS = (
    GatewayKey("AI_API_KEYS", Secret(FULL)),
    GatewayKey("ci", Secret(CHAT), frozenset({"chat"}), ("groq/*",)),
    GatewayKey("lister", Secret(LISTER), frozenset({"models"}), ("auto", "cerebras/gpt-oss-120b")),
)


def client(url: str, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=url + "/v1", api_key=key, max_retries=0)


async def test_a_scoped_key_reaches_only_its_models_and_paths(groq, cerebras, caplog):
    caplog.set_level(logging.DEBUG)
    async with running(settings_for(groq, cerebras, gateway_keys=KEYS)) as url:
        async with client(url, CHAT) as ci:
            done = await ci.chat.completions.create(model="groq/openai/gpt-oss-120b", messages=HI)
            assert done.choices[0].message.content
            for model in ("auto", "cerebras/gpt-oss-120b", "gpt-oss-120b"):
                with pytest.raises(openai.PermissionDeniedError) as info:
                    await ci.chat.completions.create(model=model, messages=HI)
                assert info.value.code == "permission_denied"
                assert info.value.param == "model"
                assert "'ci'" in info.value.message
            with pytest.raises(openai.PermissionDeniedError):
                await ci.models.list()  # no `models` scope
        async with aiohttp.ClientSession() as session:
            bearer = {"Authorization": f"Bearer {CHAT}"}
            async with session.get(url + "/usage", headers=bearer) as response:
                assert response.status == 403
                error = (await response.json())["error"]
                assert error["type"] == "permission_error"
                assert CHAT not in error["message"]
            # /chat always answers from `auto`, which this key may not use.
            async with session.post(url + "/chat", json={"messages": HI}, headers=bearer) as r:
                assert r.status == 403
            async with session.get(url + "/nowhere", headers=bearer) as response:
                assert response.status == 404
            async with session.get(url + "/health") as response:
                assert response.status == 200
        # Nothing the refused requests asked reached a provider.
        assert len(groq.requests) == 1
        assert not cerebras.requests
    for secret in (FULL, CHAT, LISTER):
        assert secret not in caplog.text


async def test_models_lists_what_the_key_may_use(groq, cerebras):
    async with running(settings_for(groq, cerebras, gateway_keys=KEYS)) as url:
        async with client(url, LISTER) as lister:
            listed = [m.id async for m in lister.models.list()]
            assert listed == ["auto", "cerebras/gpt-oss-120b"]
            with pytest.raises(openai.PermissionDeniedError):  # no `chat` scope
                await lister.chat.completions.create(model="auto", messages=HI)
        async with client(url, FULL) as full:
            everything = [m.id async for m in full.models.list()]
            assert len(everything) > 2
            assert "groq/openai/gpt-oss-120b" in everything
            assert (await full.chat.completions.create(model="auto", messages=HI)).choices
        async with (
            aiohttp.ClientSession() as session,
            session.get(url + "/usage", headers={"Authorization": f"Bearer {FULL}"}) as response,
        ):
            assert response.status == 200


def test_model_patterns():
    key = GatewayKey("k", Secret("x"), SCOPES, ("smart", "groq/*"))
    assert key.may_use("smart")
    assert key.may_use("groq/llama-3.1-8b-instant")
    assert not key.may_use("smart2")
    assert not key.may_use("groqx/m")
    assert not key.may_use("auto")
    assert GatewayKey("k", Secret("x")).may_use("anything")
    assert not GatewayKey("k", Secret("x"), SCOPES, ()).may_use("auto")


def test_check_model_without_keys_allows_all():
    from aiohttp.test_utils import make_mocked_request

    check_model(make_mocked_request("POST", "/v1/chat/completions"), "any")


def load(tmp_path, text, **env):
    path = tmp_path / "ai-api.toml"
    path.write_text(text)
    return load_settings({"GROQ_API_KEY": "g", **env}, path)


def test_named_keys_from_the_file(tmp_path):
    settings = load(
        tmp_path,
        """
[keys.ci]
key_env = "CI_KEY"
scopes = ["chat"]
models = ["auto", "groq/*", "nonesuch"]

[keys.ops]
key_env = "OPS_KEY"

[keys.gone]
key_env = "UNSET_KEY"
""",
        CI_KEY="ci-secret-0123456789abcdef",
        OPS_KEY="ops-secret-0123456789abcdef",
        AI_API_KEYS="env-secret-0123456789abcdef",
    )
    ci, ops, env = settings.gateway_keys
    assert (ci.name, ci.scopes, ci.models) == (
        "ci",
        frozenset({"chat"}),
        ("auto", "groq/*", "nonesuch"),
    )
    assert ci.secret.reveal() == "ci-secret-0123456789abcdef"
    assert (ops.scopes, ops.models) == (SCOPES, None)
    assert env.name == "AI_API_KEYS"
    assert env.scopes == SCOPES
    assert any("keys.gone: UNSET_KEY is not set" in p for p in settings.problems)
    assert any("'nonesuch'" in p for p in settings.problems)
    assert not any("groq/*" in p or "'auto'" in p for p in settings.problems)
    text = describe(settings)
    assert "ci ci-s****: chat; auto, groq/*, nonesuch" in text
    assert "ops-secret" not in text
    assert "ci-secret" not in text


@pytest.mark.parametrize(
    "entry",
    ['scopes = ["admin"]', 'key = "inline"', "models = 3"],
)
def test_a_bad_key_entry_is_a_config_error(tmp_path, entry):
    with pytest.raises(ConfigError, match=r"keys\.ci"):
        load(tmp_path, f'[keys.ci]\nkey_env = "CI_KEY"\n{entry}\n', CI_KEY="x")
