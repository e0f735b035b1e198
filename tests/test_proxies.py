"""Which proxy a call to a provider goes through: the proxy URLs, NO_PROXY's matching, and the
variables as `config` reads them (with `trust_env`). Plain values, no I/O."""

from __future__ import annotations

import base64

import pytest

from ai_api.config import load_settings
from ai_api.proxies import Proxies, Proxy, bypassed, parse_proxy
from ai_api.settings import ConfigError

SECRET = "hunter2-0123456789"


def test_a_proxy_url_gives_its_address_and_basic_credentials_never_shown():
    proxy = parse_proxy(f"http://ann%40corp:{SECRET.replace('-', '%2D')}@proxy.corp:3128/")
    assert (proxy.host, proxy.port, proxy.address) == ("proxy.corp", 3128, "proxy.corp:3128")
    assert (
        proxy.authorization == "Basic " + base64.b64encode(f"ann@corp:{SECRET}".encode()).decode()
    )
    for text in (str(proxy), repr(proxy), Proxies(https=proxy).describe()):
        assert SECRET not in text
        assert "ann" not in text
        assert proxy.authorization not in text
    assert str(proxy) == "http://proxy.corp:3128"


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("proxy.corp:8080", "proxy.corp:8080"),  # no scheme: http
        ("http://proxy.corp", "proxy.corp:80"),
        ("HTTP://10.0.0.1:3128", "10.0.0.1:3128"),
        ("http://[fd00::1]:3128", "[fd00::1]:3128"),
    ],
)
def test_proxy_urls_without_scheme_or_port_take_http_and_80(url, address):
    proxy = parse_proxy(url)
    assert proxy.address == address
    assert proxy.authorization is None


@pytest.mark.parametrize(
    ("url", "said"),
    [
        (f"socks5://u:{SECRET}@proxy:1080", "socks5:// proxy is not supported"),
        (f"https://u:{SECRET}@proxy:443", "https:// proxy is not supported"),
        (f"http://u:{SECRET}@proxy:port", "port is not a number"),
        (f"http://u:{SECRET}@:3128", "no host"),
    ],
)
def test_unusable_proxy_urls_are_refused_without_showing_them(url, said):
    with pytest.raises(ValueError, match=said) as caught:
        parse_proxy(url)
    assert SECRET not in str(caught.value)


NO_PROXY = (
    "example.com",
    ".corp.internal",
    "*.lan",
    "10.0.0.0/8",
    "192.168.1.5",
    "::ff",
    "svc:8443",
)


@pytest.mark.parametrize(
    ("host", "port", "direct"),
    [
        ("example.com", 443, True),
        ("api.example.com", 443, True),  # a name matches its subdomains
        ("notexample.com", 443, False),
        ("example.com.evil", 443, False),
        ("corp.internal", 443, True),  # a leading dot matches the name itself too
        ("llm.corp.internal", 443, True),
        ("box.lan", 80, True),
        ("10.20.30.40", 443, True),  # CIDR
        ("11.0.0.1", 443, False),
        ("192.168.1.5", 8000, True),
        ("192.168.1.6", 8000, False),
        ("::ff", 443, True),
        ("0:0::ff", 443, True),  # the same address, written otherwise
        ("svc", 8443, True),  # host:port: that port only
        ("svc", 443, False),
        ("API.EXAMPLE.COM.", 443, True),  # any case, a trailing dot
        ("groq.com", 443, False),
        ("localhost", 11434, True),  # loopback: never through a proxy, listed or not
        ("127.0.0.1", 8000, True),
        ("127.1.2.3", 8000, True),
        ("::1", 8000, True),
        ("[::1]", 8000, True),
    ],
)
def test_no_proxy_matches_names_subdomains_addresses_blocks_and_ports(host, port, direct):
    assert bypassed(host, port, NO_PROXY) is direct


def test_a_star_in_no_proxy_means_every_host_and_empty_entries_none():
    assert bypassed("api.groq.com", 443, ("*",))
    assert not bypassed("api.groq.com", 443, ("", " ", "."))
    assert not bypassed("api.groq.com", 443, ("10.0.0.0/99", "[::1", "a:b"))  # malformed


def test_for_origin_picks_the_schemes_proxy_unless_the_host_is_direct():
    http, https = Proxy("h", 3128), Proxy("s", 3129)
    proxies = Proxies(http=http, https=https, no_proxy=("internal",))
    assert proxies.for_origin("https", "api.groq.com", 443) is https
    assert proxies.for_origin("http", "api.groq.com", 80) is http
    assert proxies.for_origin("https", "llm.internal", 443) is None
    assert Proxies(http=http).for_origin("https", "api.groq.com", 443) is None


# As config reads the variables


def test_the_proxy_variables_are_read_lower_case_first_with_all_proxy_for_either():
    settings = load_settings(
        {
            "HTTPS_PROXY": "http://upper:1",
            "https_proxy": "http://lower:2",
            "ALL_PROXY": "http://every:3",
            "no_proxy": "a.example, b.example,,",
        }
    )
    assert settings.trust_env is True
    assert settings.proxies == Proxies(
        http=Proxy("every", 3), https=Proxy("lower", 2), no_proxy=("a.example", "b.example")
    )
    assert load_settings({"HTTP_PROXY": "proxy:8080"}).proxies == Proxies(http=Proxy("proxy", 8080))
    assert load_settings({"HTTPS_PROXY": "  "}).proxies == Proxies()


@pytest.mark.parametrize("off", ["0", "false", "OFF", "no"])
def test_trust_env_off_ignores_the_proxy_variables(off, tmp_path):
    env = {"HTTPS_PROXY": "http://proxy:3128", "HTTP_PROXY": "http://proxy:3128"}
    assert load_settings({**env, "AI_API_TRUST_ENV": off}).proxies == Proxies()
    config = tmp_path / "ai-api.toml"
    config.write_text("[server]\ntrust_env = false\n")
    assert load_settings(env, config).proxies == Proxies()
    assert load_settings({**env, "AI_API_TRUST_ENV": "1"}, config).proxies.https == Proxy(
        "proxy", 3128
    )


def test_a_bad_proxy_variable_is_a_config_error_naming_it_not_its_value():
    with pytest.raises(ConfigError, match="https_proxy: a socks5:// proxy") as caught:
        load_settings({"https_proxy": f"socks5://u:{SECRET}@p:1080"})
    assert SECRET not in str(caught.value)
    with pytest.raises(ConfigError, match="AI_API_TRUST_ENV='maybe'"):
        load_settings({"AI_API_TRUST_ENV": "maybe"})


def test_the_proxy_credentials_never_show_in_the_settings():
    settings = load_settings({"HTTPS_PROXY": f"http://u:{SECRET}@proxy:3128"})
    assert settings.proxies.https is not None
    assert settings.proxies.https.authorization is not None
    assert SECRET not in repr(settings)
    assert settings.proxies.https.authorization not in repr(settings)
