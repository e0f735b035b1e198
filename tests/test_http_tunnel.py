"""Calls to providers through an HTTP forward proxy (`tests/forward_proxy.py`, on 127.0.0.1):
https by a CONNECT tunnel, http in the absolute form, the hosts reached directly, a proxy that
refuses or misbehaves, and the gateway failing over past it. Each test runs on asyncio's loop
and on uvloop (conftest.py).

Origins are named `upstream.test`: the client never looks the name up (the proxy does, and
dials 127.0.0.1 for any name), and loopback destinations are never proxied."""

from __future__ import annotations

import asyncio
import base64
import logging
import sys
from dataclasses import replace
from pathlib import Path
from urllib.parse import quote, urlsplit

import aiohttp
import pytest

from ai_api.fakes import FakeUpstream
from ai_api.http_client import HTTPClient, ProxyError
from ai_api.proxies import Proxies, parse_proxy
from ai_api.server import running
from ai_api.trust import TrustStore

from .certs import self_signed, server_context
from .conftest import settings_for
from .forward_proxy import ForwardProxy, forward_proxy
from .test_http_client import Conn, body_of, keep_answering, ok, raw_server

HOST = "upstream.test"
USER, PASSWORD = "gw-user", "pr0xy:pass/0123456789"
BASIC = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


def through(proxy: ForwardProxy, *no_proxy: str, credentials: bool = True) -> Proxies:
    """Both schemes through `proxy`, with the test's credentials in its URL."""
    login = f"{USER}:{quote(PASSWORD, safe='')}@" if credentials else ""
    chosen = parse_proxy(f"http://{login}127.0.0.1:{proxy.port}")
    return Proxies(http=chosen, https=chosen, no_proxy=no_proxy)


@pytest.fixture
def named(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for upstream.test and its key."""
    return self_signed(tmp_path, "upstream", HOST)


async def test_https_goes_through_a_connect_tunnel_and_tls_is_with_the_real_host(named):
    names: list[str | None] = []
    tls = server_context(*named)
    tls.sni_callback = lambda sock, name, context: names.append(name)
    async with forward_proxy() as proxy, raw_server(keep_answering(ok(b"sealed")), tls=tls) as raw:
        client = HTTPClient(proxies=through(proxy))
        try:
            trusting = client.trusting(TrustStore(ca_bundle=str(named[0])))
            endpoint = trusting.endpoint(f"https://{HOST}:{raw.port}/v1", {"X-Key": "k"})
            assert await body_of(endpoint, b"one") == b"sealed"
            assert await body_of(endpoint, b"two") == b"sealed"
        finally:
            await client.close()
    assert proxy.connects == [f"{HOST}:{raw.port}"]
    assert proxy.hosts == [f"{HOST}:{raw.port}"]
    assert proxy.authorizations == [BASIC]
    assert names == [HOST]  # the certificate checked is the host's, not the proxy's
    assert (proxy.connections, raw.connections) == (1, 1)  # kept alive through the tunnel
    assert raw.requests[0].startswith(f"POST /v1 HTTP/1.1\r\nHost: {HOST}:{raw.port}\r\n".encode())
    assert not any(b"proxy-authorization" in r.lower() for r in raw.requests)  # the proxy's own


async def test_http_through_a_proxy_sends_the_absolute_form_and_the_credentials_each_time():
    async with forward_proxy() as proxy, raw_server(keep_answering(ok(b"plain"))) as raw:
        client = HTTPClient(proxies=through(proxy))
        try:
            endpoint = client.endpoint(f"http://{HOST}:{raw.port}/v1/chat?x=1", {})
            assert await body_of(endpoint) == b"plain"
            assert await body_of(endpoint) == b"plain"
        finally:
            await client.close()
    assert proxy.requests == [f"POST http://{HOST}:{raw.port}/v1/chat?x=1 HTTP/1.1"] * 2
    assert proxy.hosts == [f"{HOST}:{raw.port}"] * 2
    assert proxy.authorizations == [BASIC] * 2
    assert not proxy.connects
    assert proxy.connections == 1


async def test_a_proxy_without_credentials_is_sent_none():
    async with forward_proxy() as proxy, raw_server(keep_answering(ok())) as raw:
        client = HTTPClient(proxies=through(proxy, credentials=False))
        try:
            assert await body_of(client.endpoint(f"http://{HOST}:{raw.port}/", {})) == b"ok"
        finally:
            await client.close()
    assert proxy.authorizations == [None]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_loopback_hosts_are_reached_directly(host):
    async with forward_proxy() as proxy, raw_server(keep_answering(ok())) as raw:
        client = HTTPClient(proxies=through(proxy))
        try:
            assert await body_of(client.endpoint(f"http://{host}:{raw.port}/", {})) == b"ok"
        finally:
            await client.close()
    assert (proxy.connections, raw.connections) == (0, 1)


@pytest.mark.skipif(sys.platform != "linux", reason="Linux connects 0.0.0.0 to this machine")
@pytest.mark.parametrize(
    ("no_proxy", "proxied"),
    [
        ((), True),
        (("0.0.0.0",), False),
        (("0.0.0.0/8",), False),
        (("*",), False),
        (("other.example", "0.0.0.1"), True),
        (("0.0.0.0:1",), True),  # another port
    ],
)
async def test_hosts_no_proxy_lists_are_reached_directly(no_proxy, proxied):
    """0.0.0.0 is not loopback (so a proxy is used unless NO_PROXY lists it) but, connected
    to, reaches this machine: the one non-loopback host a test can reach directly."""
    async with forward_proxy() as proxy, raw_server(keep_answering(ok())) as raw:
        client = HTTPClient(proxies=through(proxy, *no_proxy))
        try:
            assert await body_of(client.endpoint(f"http://0.0.0.0:{raw.port}/", {})) == b"ok"
        finally:
            await client.close()
    assert proxy.connections == (1 if proxied else 0)


@pytest.mark.parametrize(
    ("status", "said"), [(407, "407 Proxy Authentication Required"), (403, "403 Forbidden")]
)
async def test_a_proxy_refusing_the_tunnel_is_a_proxy_error_naming_its_status(status, said, caplog):
    caplog.set_level(logging.DEBUG)
    async with forward_proxy(refuse=status) as proxy:
        client = HTTPClient(proxies=through(proxy), connections=1, connect_timeout=2)
        try:
            endpoint = client.endpoint(f"https://{HOST}:8443/v1", {})
            for _ in range(2):  # and the place it held is free again (a cap of one)
                with pytest.raises(ProxyError) as caught:
                    await endpoint.post(b"{}")
        finally:
            await client.close()
    message = str(caught.value)
    assert isinstance(caught.value, OSError)
    assert message == f"the proxy {proxy.url} refused a tunnel to {HOST}:8443: {said}"
    assert proxy.connects == [f"{HOST}:8443"] * 2
    for text in (message, caplog.text):
        assert PASSWORD not in text
        assert quote(PASSWORD, safe="") not in text
        assert BASIC.split()[1] not in text


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        (b"", "closed the connection instead of answering"),
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "did not answer CONNECT in HTTP/1.1"),
        (b"HTTP/1.1 200 OK\r\nX: " + b"y" * 70_000, "answered CONNECT with over 65536 bytes"),
        (b"HTTP/1.1 200 OK\r\n\r\nearly", "sent bytes past its answer to CONNECT"),
    ],
    ids=["closed", "not-http", "too-long", "bytes-past"],
)
async def test_a_proxy_that_does_not_answer_as_a_proxy_is_a_proxy_error(answer, said):
    async with forward_proxy(answer=answer) as proxy:
        client = HTTPClient(proxies=through(proxy), connect_timeout=2)
        try:
            with pytest.raises(ProxyError, match=said):
                await client.endpoint(f"https://{HOST}/v1", {}).post(b"{}")
        finally:
            await client.close()
    assert proxy.connects == [f"{HOST}:443"]


async def test_the_connect_timeout_bounds_a_proxy_that_never_answers_connect():
    async with raw_server(Conn.until_closed) as silent:
        chosen = parse_proxy(f"http://127.0.0.1:{silent.port}")
        client = HTTPClient(proxies=Proxies(https=chosen), connect_timeout=0.2)
        try:
            async with asyncio.timeout(2):
                with pytest.raises(TimeoutError, match="connect timeout"):
                    await client.endpoint(f"https://{HOST}/v1", {}).post(b"{}")
        finally:
            await client.close()


# The gateway behind a proxy


def behind(fake: FakeUpstream, scheme: str = "http") -> str:
    """The fake's base URL under the name only the proxy resolves."""
    return f"{scheme}://{HOST}:{urlsplit(fake.base_url).port}"


async def test_the_gateway_calls_a_provider_through_the_proxy(groq, cerebras, client):
    async with forward_proxy() as proxy:
        settings = settings_for(groq, cerebras)
        first = replace(settings.providers[0], base_url=behind(groq))
        settings = replace(settings, providers=(first, *settings.providers[1:]))
        async with running(replace(settings, proxies=through(proxy))) as url:
            body = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}
            async with client.post(url + "/v1/chat/completions", json=body) as answer:
                assert answer.status == 200
                assert answer.headers["x-ai-api-provider"] == "groq"
    port = urlsplit(groq.base_url).port
    assert proxy.requests == [f"POST http://{HOST}:{port}/openai/v1/chat/completions HTTP/1.1"]
    assert proxy.authorizations == [BASIC]


async def test_a_provider_behind_a_refusing_proxy_is_failed_over_and_no_secret_shows(
    groq, cerebras, client: aiohttp.ClientSession, caplog
):
    caplog.set_level(logging.DEBUG)
    async with forward_proxy(refuse=407) as proxy:
        settings = settings_for(groq, cerebras)
        first = replace(settings.providers[0], base_url=behind(groq, "https"))
        settings = replace(settings, proxies=through(proxy))
        body = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}
        both = replace(settings, providers=(first, *settings.providers[1:]))
        async with (
            running(both) as url,
            client.post(url + "/v1/chat/completions", json=body) as answer,
        ):
            assert answer.status == 200
            assert answer.headers["x-ai-api-provider"] == "cerebras"  # direct: loopback
            assert answer.headers["x-ai-api-attempts"] == "2"
            text = await answer.text()
        alone = replace(settings, providers=(first,))
        async with (
            running(alone) as url,
            client.post(url + "/v1/chat/completions", json=body) as refused,
        ):
            error = (await refused.json())["error"]
            assert refused.status == 502
            assert "407 Proxy Authentication Required" in error["message"]
            text += str(error)
    assert proxy.connects == [f"{HOST}:{urlsplit(groq.base_url).port}"] * 2
    for shown in (text, caplog.text):
        assert PASSWORD not in shown
        assert quote(PASSWORD, safe="") not in shown
        assert BASIC.split()[1] not in shown
