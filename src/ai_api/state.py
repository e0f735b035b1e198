"""What the running app holds, under one typed key, and the one way handlers start answers."""

from __future__ import annotations

import itertools
import os
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .attempts import Ask, Bounds, Opened, open_stream
from .rationing import Rationing
from .routing import Route, Router
from .schemas import Message
from .settings import Settings
from .tokens import prompt_tokens


class Ids:
    """Unique ids, cheaply: a random prefix per process and a counter (no syscall per id)."""

    __slots__ = ("_counter", "_prefix")

    def __init__(self) -> None:
        self._prefix = os.urandom(6).hex()
        self._counter = itertools.count()

    def next(self) -> str:
        """A new id."""
        return f"{self._prefix}{next(self._counter):08x}"


@dataclass(slots=True)
class Gateway:
    """The live state behind the HTTP handlers."""

    settings: Settings
    router: Router
    rationing: Rationing
    bounds: Bounds
    ids: Ids = field(default_factory=lambda: Ids())

    async def open(
        self,
        route: Route,
        messages: tuple[Message, ...],
        *,
        max_tokens: int | None = None,
        options: dict[str, Any] | None = None,
        whole: bool = False,
    ) -> Opened:
        """Start the answer to `messages` on `route` (see `attempts.open_stream`); `whole`:
        the client wants it at once, so failures until its end may go to another member."""
        fields: Collection[str] = options.keys() if options else ()
        ask = Ask(
            request_id=self.ids.next(),
            prompt_tokens=prompt_tokens(messages),
            max_tokens=max_tokens,
            required=fields,
            build=lambda d: d.request(
                messages, max_tokens=max_tokens, options=options, whole=whole
            ),
            whole=whole,
        )
        return await open_stream(route, ask, self.rationing, self.bounds)


GATEWAY = web.AppKey("gateway", Gateway)
