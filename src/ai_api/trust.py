"""Whom a provider's TLS trusts and what it shows: a `ca_bundle` of CAs its server certificate
is checked against instead of the system's, and a `client_cert` (with its `client_key`) for
servers that require one (mutual TLS). One `ssl.SSLContext` per distinct setting, made by
`tls_context`, which `config` also calls to refuse a file that cannot serve at load time."""

from __future__ import annotations

import ssl
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TrustStore:
    """Paths of PEM files; None: the system's CAs, no client certificate."""

    ca_bundle: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    """The client certificate's key, when not in `client_cert`'s file."""


def tls_context(trust: TrustStore | None = None) -> ssl.SSLContext:
    """A client context that verifies servers against `trust`'s CAs (else the system's) and
    shows its client certificate, offering HTTP/1.1 only (ALPN), so that no server picks
    HTTP/2. Raises `ValueError` naming the setting and the file, never what it holds."""
    ca_bundle = trust.ca_bundle if trust else None
    if ca_bundle is not None:
        _readable("ca_bundle", ca_bundle)
    try:
        context = ssl.create_default_context(cafile=ca_bundle)
    except ssl.SSLError as exc:
        raise ValueError(
            f"ca_bundle {ca_bundle!r} holds no PEM certificate it can use ({exc.reason})"
        ) from None
    if trust is not None and trust.client_cert is not None:
        _readable("client_cert", trust.client_cert)
        if trust.client_key is not None:
            _readable("client_key", trust.client_key)
        key = trust.client_key or trust.client_cert
        try:  # an encrypted key is refused, never asked a password for on a terminal
            context.load_cert_chain(trust.client_cert, trust.client_key, password=_no_password)
        except _Encrypted:
            setting = "client_key" if trust.client_key else "client_cert"
            raise ValueError(
                f"{setting} {key!r}: the key is encrypted; give it unencrypted"
            ) from None
        except ssl.SSLError as exc:
            why = f" ({exc.reason})" if exc.reason else ""
            raise ValueError(
                f"client_cert {trust.client_cert!r} and its key in {key!r} are not a PEM "
                f"certificate and its matching key{why}"
            ) from None
    context.set_alpn_protocols(["http/1.1"])
    return context


def _readable(setting: str, path: str) -> None:
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise ValueError(f"{setting} {path!r} cannot be read: {exc.strerror}") from None


class _Encrypted(Exception):
    pass


def _no_password() -> bytes:
    raise _Encrypted
