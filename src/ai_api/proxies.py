"""Which upstream requests go through a forward proxy, and which proxy: the values of the
`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` variables (read by `config`, which
hands them here) made into one value the HTTP client asks once per origin.

`NO_PROXY` is read as curl and httpx read it: comma-separated host names (each matching its
subdomains too, with or without a leading dot), `*` for every host, IP addresses and CIDR
blocks, and `host:port` entries. Unlike them, a loopback destination (`localhost`,
127.0.0.0/8, ::1) never goes through a proxy, as with Go's net/http: a proxy elsewhere would
reach its own machine, never this one's local servers (Ollama, the demo's fake providers).
"""

from __future__ import annotations

import base64
import ipaddress
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

_LOOPBACK_NAMES = ("localhost", "localhost.")


@dataclass(frozen=True, slots=True)
class Proxy:
    """An HTTP forward proxy: where it listens and the `Proxy-Authorization` it is sent."""

    host: str
    port: int
    authorization: str | None = field(default=None, repr=False, compare=True)
    """`Basic ...` from the URL's user and password; never in a repr, a log line or an error."""

    @property
    def address(self) -> str:
        """`host:port`, an IPv6 host in brackets."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def __str__(self) -> str:
        return f"http://{self.address}"


@dataclass(frozen=True, slots=True)
class Proxies:
    """The proxy for each scheme (None: direct), and the hosts always reached directly."""

    http: Proxy | None = None
    https: Proxy | None = None
    no_proxy: tuple[str, ...] = ()

    def for_origin(self, scheme: str, host: str, port: int) -> Proxy | None:
        """The proxy a request to `scheme://host:port` goes through; None: straight there."""
        proxy = self.https if scheme == "https" else self.http
        if proxy is None or bypassed(host, port, self.no_proxy):
            return None
        return proxy

    def describe(self) -> str:
        """For a log line (no credentials): `https via http://proxy:3128, http direct...`."""
        parts = [
            f"{scheme} {'via ' + str(proxy) if proxy else 'direct'}"
            for scheme, proxy in (("https", self.https), ("http", self.http))
        ]
        if self.no_proxy:
            parts.append("not for " + ",".join(self.no_proxy))
        return "; ".join(parts)


def parse_proxy(url: str) -> Proxy:
    """A proxy from its URL (`http://user:pass@host:port`; `host:port` means http). Raises
    `ValueError` with a message that never holds the URL (it may hold a password)."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme.lower() != "http":
        raise ValueError(
            f"a {parts.scheme}:// proxy is not supported (only http://, which tunnels https)"
        )
    try:
        port = parts.port or 80
    except ValueError:
        raise ValueError("the proxy's port is not a number from 0 to 65535") from None
    if not parts.hostname:
        raise ValueError("the proxy URL has no host")
    authorization = None
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
    return Proxy(parts.hostname, port, authorization)


def bypassed(host: str, port: int, entries: tuple[str, ...]) -> bool:
    """Whether `host:port` is reached directly: a loopback host, or one `entries` (NO_PROXY's
    items) match."""
    host = host.lower().strip("[]")
    ip = _ip(host)
    if host in _LOOPBACK_NAMES or (ip is not None and ip.is_loopback):
        return True
    name = host.rstrip(".")
    for entry in entries:
        entry = entry.strip().lower()
        if entry == "*":
            return True
        wanted, wanted_port = _split_port(entry)
        if not wanted or (wanted_port is not None and wanted_port != port):
            continue
        if "/" in wanted:
            if ip is not None and _in_block(ip, wanted):
                return True
            continue
        if ip is not None or _ip(wanted) is not None:
            if ip is not None and ip == _ip(wanted):
                return True
            continue
        wanted = wanted.removeprefix("*").lstrip(".").rstrip(".")
        if wanted and (name == wanted or name.endswith("." + wanted)):
            return True
    return False


def _split_port(entry: str) -> tuple[str, int | None]:
    """`host:port`, `[v6]:port`, a bare IPv6 address or a host: the host and the port."""
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        return host, _port(rest[1:]) if rest.startswith(":") else None
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        return host, _port(port)
    return entry, None


def _port(text: str) -> int | None:
    return int(text) if text.isdigit() else -1  # -1: no port matches a malformed one


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _in_block(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, block: str) -> bool:
    try:
        network = ipaddress.ip_network(block, strict=False)
    except ValueError:
        return False
    return ip.version == network.version and ip in network
