"""Throwaway certificates for the TLS tests, made by openssl (CI installs it)."""

from __future__ import annotations

import ipaddress
import ssl
import subprocess
from pathlib import Path


def self_signed(directory: Path, stem: str, *names: str) -> tuple[Path, Path]:
    """A self-signed certificate (its own CA) for `names` (host names or IP addresses), in
    `directory`, and its unencrypted key."""
    cert, key = directory / f"{stem}.pem", directory / f"{stem}.key"
    alt = ",".join(f"IP:{n}" if _is_ip(n) else f"DNS:{n}" for n in names)
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            f"/CN={names[0] if names else stem}",
            *(["-addext", f"subjectAltName={alt}"] if alt else []),
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def server_context(cert: Path, key: Path, *, client_ca: Path | None = None) -> ssl.SSLContext:
    """A server's context showing `cert`; with `client_ca`, requiring a client certificate
    it signed."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=client_ca)
    return context


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
