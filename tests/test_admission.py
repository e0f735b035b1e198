"""No web page can use the gateway: unknown hosts, origins and content types are refused before
any provider is asked; CORS is opt-in per origin. Driven over real HTTP."""

from __future__ import annotations

import json

import openai
import pytest

from ai_api.admission import host_name, origin_problem, served_hosts
from ai_api.config import load_settings
from ai_api.server import running
from ai_api.settings import ConfigError, GatewayKey, Secret, Settings

from .conftest import settings_for

HI = {"model": "auto", "messages": [{"role": "user", "content": "Hola"}]}
BODY = json.dumps(HI)
PATHS = ["/chat", "/v1/chat/completions"]
APP = "https://app.example"


@pytest.mark.parametrize(
    ("given", "name"),
    [
        ("127.0.0.1:3000", "127.0.0.1"),
        ("LocalHost.", "localhost"),
        ("[::1]:80", "[::1]"),
        ("::1", "[::1]"),
        ("rebind.evil.example:3000", "rebind.evil.example"),
        ("[::1", ""),
    ],
)
def test_host_names_lose_their_port_and_case(given, name):
    assert host_name(given) == name


def test_served_hosts_are_the_bound_ones_and_loopback_unless_bound_everywhere():
    assert served_hosts(Settings(host="10.0.0.5")) == frozenset(
        {
            "localhost",
            "127.0.0.1",
            "[::1]",
            "10.0.0.5",
        }
    )
    assert served_hosts(Settings(host="0.0.0.0")) is None
    assert served_hosts(Settings(host="::", allowed_hosts=("gw.lan",))) == frozenset(
        {
            "localhost",
            "127.0.0.1",
            "[::1]",
            "gw.lan",
        }
    )
    assert served_hosts(Settings(allowed_hosts=("*",))) is None


def test_origins_and_hosts_come_from_the_variables_and_the_file(tmp_path):
    env = {"AI_API_CORS_ORIGINS": "https://App.example/, http://localhost:5173"}
    settings = load_settings(env)
    assert settings.cors_origins == ("https://App.example/", "http://localhost:5173")
    path = tmp_path / "ai-api.toml"
    path.write_text('[server]\nallowed_hosts = ["gw.lan"]\ncors_origins = ["https://a.example"]\n')
    settings = load_settings({}, path)
    assert (settings.allowed_hosts, settings.cors_origins) == (("gw.lan",), ("https://a.example",))
    assert origin_problem("*")
    assert origin_problem("https://a.example/app")
    with pytest.raises(ConfigError, match="AI_API_CORS_ORIGINS"):
        load_settings({"AI_API_CORS_ORIGINS": "*"})


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None],
)
async def test_a_body_not_declared_json_is_a_415_and_reaches_no_provider(
    groq, client, path, content_type
):
    """What an HTML form can send across origins (and what `curl -d` sends without -H)."""
    headers = {"Content-Type": content_type} if content_type else {}
    async with (
        running(settings_for(groq)) as url,
        client.post(
            url + path, data=BODY.encode(), headers=headers, skip_auto_headers=["Content-Type"]
        ) as response,
    ):
        assert response.status == 415
        error = (await response.json())["error"]
    assert error["code"] == "unsupported_media_type"
    assert error["type"] == "invalid_request_error"
    assert groq.requests == []


@pytest.mark.parametrize("path", PATHS)
async def test_json_with_a_charset_is_served(groq, client, path):
    headers = {"Content-Type": "application/json; charset=utf-8"}
    async with (
        running(settings_for(groq)) as url,
        client.post(url + path, data=BODY, headers=headers) as response,
    ):
        assert response.status == 200
        await response.read()
    assert len(groq.requests) == 1


@pytest.mark.parametrize("path", PATHS)
async def test_a_host_the_gateway_does_not_serve_is_a_421(groq, client, path):
    """DNS rebinding: a page of rebind.evil.example whose name now points at 127.0.0.1."""
    async with running(settings_for(groq)) as url:
        port = url.rsplit(":", 1)[1]
        for host in ("rebind.evil.example", f"rebind.evil.example:{port}"):
            async with client.post(url + path, json=HI, headers={"Host": host}) as response:
                assert response.status == 421
                error = (await response.json())["error"]
            assert error["code"] == "unknown_host"
        for host in ("localhost", f"localhost:{port}", "127.0.0.1", f"[::1]:{port}"):
            async with client.post(url + path, json=HI, headers={"Host": host}) as response:
                assert response.status == 200, host
                await response.read()
    assert len(groq.requests) == 4


async def test_allowed_hosts_adds_names_and_every_address_serves_any_host(groq, client):
    async with running(settings_for(groq, allowed_hosts=("gw.lan",))) as url:
        async with client.get(url + "/v1/models", headers={"Host": "GW.lan:1"}) as response:
            assert response.status == 200
        async with client.get(url + "/v1/models", headers={"Host": "other.lan"}) as response:
            assert response.status == 421
    async with running(settings_for(groq, host="0.0.0.0")) as url:
        port = url.rsplit(":", 1)[1]
        async with client.get(f"http://127.0.0.1:{port}/v1/models", headers={"Host": "x"}) as r:
            assert r.status == 200


@pytest.mark.parametrize("path", PATHS)
async def test_a_page_of_another_origin_is_refused_with_403(groq, client, path):
    async with running(settings_for(groq, cors_origins=(APP,))) as url:
        headers = {"Origin": "https://evil.example"}
        async with client.post(url + path, json=HI, headers=headers) as response:
            assert response.status == 403
            assert "Access-Control-Allow-Origin" not in response.headers
            error = (await response.json())["error"]
        async with client.options(
            url + path, headers={**headers, "Access-Control-Request-Method": "POST"}
        ) as response:
            assert response.status == 403
    assert error["code"] == "origin_not_allowed"
    assert groq.requests == []


async def test_without_cors_origins_any_origin_is_refused_and_options_is_405(groq, client):
    async with running(settings_for(groq)) as url:
        async with client.post(
            url + "/chat", json=HI, headers={"Origin": "http://127.0.0.1"}
        ) as response:
            assert response.status == 403
        async with client.options(url + "/v1/chat/completions") as response:
            assert response.status == 405
    assert groq.requests == []


@pytest.mark.parametrize("path", PATHS)
async def test_an_allowed_origin_gets_a_preflight_and_its_header_on_streams(groq, client, path):
    async with running(settings_for(groq, cors_origins=(APP + "/",))) as url:
        async with client.options(
            url + path,
            headers={
                "Origin": APP,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type, x-stainless-os",
            },
        ) as response:
            assert response.status == 204
            head = response.headers
        assert head["Access-Control-Allow-Origin"] == APP
        assert head["Access-Control-Allow-Methods"] == "OPTIONS, POST"
        allowed = head["Access-Control-Allow-Headers"].lower()
        assert "authorization" in allowed
        assert "content-type" in allowed
        assert "x-stainless-os" in allowed
        assert int(head["Access-Control-Max-Age"]) > 0
        body = {**HI, "stream": True}
        async with client.post(url + path, json=body, headers={"Origin": APP}) as response:
            assert response.status == 200
            assert response.headers["Access-Control-Allow-Origin"] == APP
            assert "X-AI-API-Provider" in response.headers["Access-Control-Expose-Headers"]
            await response.read()


async def test_a_preflight_needs_no_gateway_key(groq, client):
    settings = settings_for(
        groq, cors_origins=(APP,), gateway_keys=(GatewayKey("k", Secret("k" * 24)),)
    )
    async with running(settings) as url:
        headers = {"Origin": APP, "Access-Control-Request-Method": "POST"}
        async with client.options(url + "/v1/chat/completions", headers=headers) as response:
            assert response.status == 204
        async with client.post(
            url + "/v1/chat/completions", json=HI, headers={"Origin": APP}
        ) as response:
            assert response.status == 401
            assert response.headers["Access-Control-Allow-Origin"] == APP


async def test_the_openai_sdk_sends_json_and_no_origin(groq):
    async with running(settings_for(groq)) as url:
        sdk = openai.AsyncOpenAI(api_key="unused", base_url=url + "/v1", max_retries=0)
        async with sdk:
            completion = await sdk.chat.completions.create(
                model="auto", messages=[{"role": "user", "content": "Hola"}]
            )
    assert completion.choices[0].message.content
