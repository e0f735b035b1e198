"""What the running app holds: settings and the router, under one typed key."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from .config import Settings
from .routing import Router


@dataclass(slots=True)
class Gateway:
    """The live state behind the HTTP handlers."""

    settings: Settings
    router: Router


GATEWAY = web.AppKey("gateway", Gateway)
