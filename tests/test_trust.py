"""Trust stores per provider: a `ca_bundle` trusted instead of the system's CAs, a client
certificate for servers that require one (mutual TLS), one TLS context per distinct setting,
and the config file's errors for files that cannot serve. Real TLS on 127.0.0.1."""

from __future__ import annotations

import ssl
import subprocess
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest

from ai_api.config import load_settings
from ai_api.fakes import FakeUpstream
from ai_api.http_client import HTTPClient
from ai_api.server import running
from ai_api.settings import ConfigError
from ai_api.trust import TrustStore

from .certs import self_signed, server_context
from .conftest import settings_for
from .forward_proxy import tls_front
from .test_http_client import Conn, body_of, keep_answering, ok, raw_server

Pair = tuple[Path, Path]


@pytest.fixture
def server(tmp_path: Path) -> Pair:
    """The server's self-signed certificate (its own CA) for 127.0.0.1, and its key."""
    return self_signed(tmp_path, "server", "127.0.0.1", "localhost")


@pytest.fixture
def stranger(tmp_path: Path) -> Pair:
    """Another CA, which signed nothing the server shows."""
    return self_signed(tmp_path, "stranger", "127.0.0.1")


@pytest.fixture
def gateway_cert(tmp_path: Path) -> Pair:
    """The certificate the gateway shows a server that asks for one."""
    return self_signed(tmp_path, "gateway", "ai-api-gateway")


async def test_a_ca_bundle_is_trusted_instead_of_the_systems_and_its_connections_kept_apart(
    server, stranger
):
    client = HTTPClient()
    try:
        async with raw_server(keep_answering(ok()), tls=server_context(*server)) as raw:
            url = raw.url("/v1", scheme="https")
            trusted = client.trusting(TrustStore(ca_bundle=str(server[0]))).endpoint(url, {})
            assert await body_of(trusted) == b"ok"  # and its connection is kept, idle
            with pytest.raises(ssl.SSLCertVerificationError):  # not on the trusted one
                await client.endpoint(url, {}).post(b"{}")  # the system's CAs
            other = client.trusting(TrustStore(ca_bundle=str(stranger[0])))
            with pytest.raises(ssl.SSLCertVerificationError):
                await other.endpoint(url, {}).post(b"{}")
            assert await body_of(trusted) == b"ok"
            assert len(raw.requests) == 2  # the refused ones never sent a request
    finally:
        await client.close()


def test_one_tls_context_per_distinct_trust_store(server, stranger):
    client = HTTPClient()
    first = client.tls(TrustStore(ca_bundle=str(server[0])))
    assert client.tls(TrustStore(ca_bundle=str(server[0]))) is first
    assert client.tls(TrustStore(ca_bundle=str(stranger[0]))) is not first
    assert client.tls() is client.tls()
    assert client.tls() is not first


async def test_a_server_requiring_a_client_certificate_accepts_the_one_configured(
    server, gateway_cert, tmp_path
):
    served: list[str] = []

    async def handle(conn: Conn) -> None:
        shown = conn.writer.get_extra_info("peercert")
        served.append(dict(item[0] for item in shown["subject"])["commonName"])
        while True:
            await conn.request()
            conn.send(ok(b"known"))

    tls = server_context(*server, client_ca=gateway_cert[0])
    combined = tmp_path / "combined.pem"  # the key in the certificate's file
    combined.write_bytes(gateway_cert[0].read_bytes() + gateway_cert[1].read_bytes())
    client = HTTPClient()
    try:
        async with raw_server(handle, tls=tls) as raw:
            url = raw.url("/v1", scheme="https")
            ca = str(server[0])
            shown = TrustStore(ca, str(gateway_cert[0]), str(gateway_cert[1]))
            assert await body_of(client.trusting(shown).endpoint(url, {})) == b"known"
            together = TrustStore(ca, str(combined))
            assert await body_of(client.trusting(together).endpoint(url, {})) == b"known"
            # TLS 1.3: refused once the client's side of the handshake is over; TLS 1.2: in it
            with pytest.raises((ConnectionResetError, ssl.SSLError)):
                await client.trusting(TrustStore(ca)).endpoint(url, {}).post(b"{}")
            assert served == ["ai-api-gateway", "ai-api-gateway"]
            assert len(raw.requests) == 2
    finally:
        await client.close()


async def test_the_gateway_reaches_a_provider_whose_ca_it_was_given_and_not_another(
    groq: FakeUpstream, server, client: aiohttp.ClientSession
):
    settings = settings_for(groq)
    body = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}
    async with tls_front(int(groq.base_url.rsplit(":", 1)[1]), server_context(*server)) as port:
        provider = replace(settings.providers[0], base_url=f"https://127.0.0.1:{port}")
        trusted = replace(provider, trust=TrustStore(ca_bundle=str(server[0])))
        async with (
            running(replace(settings, providers=(trusted,))) as url,
            client.post(url + "/v1/chat/completions", json=body) as answer,
        ):
            assert answer.status == 200
            assert (await answer.json())["choices"][0]["message"]["content"]
        async with (
            running(replace(settings, providers=(provider,))) as url,
            client.post(url + "/v1/chat/completions", json=body) as refused,
        ):
            assert refused.status == 502
            assert "certificate verify failed" in (await refused.json())["error"]["message"]


# The config file's settings


def load(tmp_path: Path, provider: str) -> object:
    path = tmp_path / "ai-api.toml"
    path.write_text(
        "[providers.internal]\nkind = 'openai'\nbase_url = 'https://llm.internal/v1'\n"
        f"models = ['m']\n{provider}"
    )
    return load_settings({}, path)


def test_trust_store_paths_are_taken_from_the_config_files_directory(tmp_path, server):
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "ca.pem").write_bytes(server[0].read_bytes())
    settings = load(tmp_path, "ca_bundle = 'certs/ca.pem'\n")
    (internal,) = settings.providers  # type: ignore[attr-defined]
    assert internal.trust == TrustStore(ca_bundle=str(tmp_path / "certs" / "ca.pem"))
    settings = load(tmp_path, f"client_cert = '{server[0]}'\nclient_key = '{server[1]}'\n")
    (internal,) = settings.providers  # type: ignore[attr-defined]
    assert internal.trust == TrustStore(None, str(server[0]), str(server[1]))
    (internal,) = load(tmp_path, "").providers  # type: ignore[attr-defined]
    assert internal.trust is None


CONTENT = "SECRET-CONTENT-OF-THE-FILE"


@pytest.fixture
def bad_files(tmp_path: Path, server: Pair) -> Path:
    """Beside the config file: a file of junk, a directory, the server's key encrypted."""
    (tmp_path / "junk.pem").write_text(CONTENT)
    (tmp_path / "certs").mkdir()
    command = ["openssl", "pkey", "-in", str(server[1]), "-aes256", "-passout", "pass:pw"]
    command += ["-out", str(tmp_path / "locked.key")]
    subprocess.run(command, check=True, capture_output=True, timeout=60)
    return tmp_path


@pytest.mark.parametrize(
    ("setting", "said"),
    [
        ("ca_bundle = 'missing.pem'", "ca_bundle '{dir}/missing.pem' cannot be read: No such file"),
        ("ca_bundle = 'certs'", "ca_bundle '{dir}/certs' cannot be read: Is a directory"),
        ("ca_bundle = 'junk.pem'", "ca_bundle '{dir}/junk.pem' holds no PEM certificate"),
        ("client_cert = 'missing.pem'", "client_cert '{dir}/missing.pem' cannot be read"),
        ("client_cert = 'junk.pem'", "client_cert '{dir}/junk.pem' and its key in"),
        ("client_cert = '{cert}'\nclient_key = 'nokey'", "client_key '{dir}/nokey' cannot be read"),
        ("client_cert = '{cert}'\nclient_key = '{other}'", "matching key (KEY_VALUES_MISMATCH)"),
        (
            "client_cert = '{cert}'\nclient_key = 'locked.key'",
            "'{dir}/locked.key': the key is encrypted",
        ),
        ("client_key = '{key}'", "client_key needs client_cert"),
    ],
)
def test_a_trust_store_file_that_cannot_serve_is_an_error_naming_provider_and_setting(
    bad_files, server, stranger, setting, said
):
    values = {"dir": bad_files, "cert": server[0], "key": server[1], "other": stranger[1]}
    with pytest.raises(ConfigError) as caught:
        load(bad_files, setting.format(**values) + "\n")
    message = str(caught.value)
    assert message.startswith("providers.internal: ")
    assert said.format(**values) in message
    assert CONTENT not in message
